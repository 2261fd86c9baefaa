package live

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestBadInput: malformed SDP, a wrong or missing token, an unknown room
// and an offer with no usable codec get their errors, and the room plays
// on for the viewer already watching.
func TestBadInput(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	a := newTNode(t, nw, "a", testConfig(3))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	room, err := a.svc.Create(ctx, "room", "", "")
	if err != nil {
		t.Fatal(err)
	}
	pub, offer := newPublisher(t)
	ans, _, err := a.svc.Publish(ctx, room.ID, room.Token, offer)
	if err != nil {
		t.Fatal(err)
	}
	pub.start(t, ans)
	v, _ := watch(t, a, room.ID)
	waitMedia(t, v, "media before the bad input")

	_, good := newViewer(t)
	audioOnly := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:0 PCMU/8000\r\na=recvonly\r\n"
	videoH263 := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 34\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:34 H263/90000\r\na=sendonly\r\n"
	for _, tt := range []struct {
		name string
		call func() error
		want error
	}{
		{"publish without token", func() error { _, _, err := a.svc.Publish(ctx, room.ID, "", offer); return err }, ErrBadToken},
		{"publish with a wrong token", func() error { _, _, err := a.svc.Publish(ctx, room.ID, room.Token+"x", offer); return err }, ErrBadToken},
		{"publish to an unknown room", func() error { _, _, err := a.svc.Publish(ctx, "nope", room.Token, offer); return err }, ErrUnknownRoom},
		{"publish malformed SDP", func() error {
			_, _, err := a.svc.Publish(ctx, room.ID, room.Token, "v=0\r\nthis is not sdp")
			return err
		}, ErrBadSDP},
		{"publish an unusable codec", func() error { _, _, err := a.svc.Publish(ctx, room.ID, room.Token, videoH263); return err }, ErrNoCodec},
		{"watch an unknown room", func() error { _, _, err := a.svc.Watch(ctx, "nope", good); return err }, ErrUnknownRoom},
		{"watch with malformed SDP", func() error { _, _, err := a.svc.Watch(ctx, room.ID, "garbage"); return err }, ErrBadSDP},
		{"watch with no usable codec", func() error { _, _, err := a.svc.Watch(ctx, room.ID, audioOnly); return err }, ErrNoCodec},
		{"stop an unknown session", func() error { return a.svc.Stop(room.ID, "vnope") }, ErrUnknownSession},
	} {
		if err := tt.call(); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	waitMedia(t, v, "media after the bad input")
	if p := pub.sent.Load(); p == 0 {
		t.Fatal("the publisher stopped")
	}
}
