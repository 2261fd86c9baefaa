package live

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh/meshtest"
)

// preferFirst moves the payload types of codec name (e.g. "H265") to the
// front of the offer's m=<kind> line, as a client that prefers it sends.
func preferFirst(t *testing.T, offer, kind, name string) string {
	t.Helper()
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		t.Fatal(err)
	}
	for _, md := range d.MediaDescriptions {
		if md.MediaName.Media != kind {
			continue
		}
		var first, rest []string
		for _, pt := range md.MediaName.Formats {
			if strings.EqualFold(rtpmap(md)[pt], name) {
				first = append(first, pt)
			} else {
				rest = append(rest, pt)
			}
		}
		if len(first) == 0 {
			t.Fatalf("the offer lists no %s", name)
		}
		md.MediaName.Formats = append(first, rest...)
	}
	b, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// rtpmap maps md's payload types to their codec names.
func rtpmap(md *sdp.MediaDescription) map[string]string {
	m := map[string]string{}
	for _, a := range md.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		pt, enc, _ := strings.Cut(a.Value, " ")
		name, _, _ := strings.Cut(enc, "/")
		m[pt] = name
	}
	return m
}

// answerCodecs returns the codec names of the answer's m=<kind> line, in
// its order.
func answerCodecs(t *testing.T, answer, kind string) []string {
	t.Helper()
	var d sdp.SessionDescription
	if err := d.UnmarshalString(answer); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, md := range d.MediaDescriptions {
		if md.MediaName.Media != kind {
			continue
		}
		for _, pt := range md.MediaName.Formats {
			if name, ok := rtpmap(md)[pt]; ok {
				out = append(out, strings.ToLower(kind+"/"+name))
			}
		}
	}
	return out
}

// TestPublishIgnoresUnsupportedCodecs: a WHIP client that lists H.265
// video and PCMU audio before VP8 and Opus (as a client preferring them
// does) gets a room of VP8 and Opus, the codecs the tree forwards and the
// keyframe cache knows; the answer lists nothing else.
func TestPublishIgnoresUnsupportedCodecs(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	a := newTNode(t, nw, "a", testConfig(3))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	room, err := a.svc.Create(ctx, "codecs", "", "")
	if err != nil {
		t.Fatal(err)
	}
	pub, offer := newPublisher(t)
	offer = preferFirst(t, offer, "video", "H265")
	offer = preferFirst(t, offer, "audio", "PCMU")
	ans, _, err := a.svc.Publish(ctx, room.ID, room.Token, offer)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"video", "audio"} {
		cs := answerCodecs(t, ans, kind)
		if len(cs) == 0 {
			t.Fatalf("the answer has no %s codec", kind)
		}
		for _, c := range cs {
			if !supported[c] && c != "video/rtx" {
				t.Errorf("the answer's %s lists %s (all: %v)", kind, c, cs)
			}
		}
	}
	pub.start(t, ans)
	a.svc.mu.Lock()
	h := a.svc.rooms[room.ID].hub
	a.svc.mu.Unlock()
	testutil.WaitFor(t, 20*time.Second, "the room's VP8 and Opus tracks", func() bool {
		s := h.codecs()
		return s[0] != nil && s[1] != nil && strings.EqualFold(s[0].codec.MimeType, "video/vp8") && strings.EqualFold(s[1].codec.MimeType, "audio/opus")
	})
}

// TestRegisteredCodecsSupported: every codec the media engine offers is
// one a room may carry, so no peer can pick another.
func TestRegisteredCodecsSupported(t *testing.T) {
	cfg := testConfig(3)
	cfg.Logger = slog.New(slog.DiscardHandler)
	m, err := newMedia(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := m.newPC()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, kind := range []string{"video", "audio"} {
		if _, err := pc.AddTransceiverFromKind(webrtc.NewRTPCodecType(kind)); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"video", "audio"} {
		cs := answerCodecs(t, offer.SDP, kind)
		if len(cs) == 0 {
			t.Fatalf("no %s codec registered", kind)
		}
		for _, c := range cs {
			if !supported[c] && c != "video/rtx" {
				t.Errorf("%s registered", c)
			}
		}
	}
}
