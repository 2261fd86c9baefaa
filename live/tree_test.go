package live

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// carrying makes a node that carries a room (it hosts it and its hub has
// a video track), for tests of the attach protocol at the parent.
func carrying(t *testing.T, fanout int) (*tnode, *roomState) {
	t.Helper()
	n := newTNode(t, meshtest.NewNetwork(), "parent", testConfig(fanout))
	rs := videoRoom("room")
	n.svc.mu.Lock()
	n.svc.rooms[rs.id] = rs
	n.svc.mu.Unlock()
	return n, rs
}

// answerTo answers a parent's offer as a child's media connection would.
func answerTo(t *testing.T, offer string) string {
	t.Helper()
	pc, err := clientAPI(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		t.Fatal(err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return gathered(t, pc, ans)
}

// TestFanoutHeldWhileChildAnswers: while a child's answer is applied, its
// place stays taken, so that another child asking meanwhile is told the
// parent is full and the parent never forwards to more than fanout.
func TestFanoutHeldWhileChildAnswers(t *testing.T) {
	n, rs := carrying(t, 1)
	s := n.svc
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 5 {
		a, b := mesh.ID("child-a"), mesh.ID("child-b")
		resp, err := s.serveAttach(ctx, a, rs.id)
		if err != nil || resp.Full {
			t.Fatalf("round %d: attach a: full=%v err=%v", i, resp.Full, err)
		}
		sdp := answerTo(t, resp.Offer)
		var done atomic.Bool
		errc := make(chan error, 1)
		go func() {
			errc <- s.serveAnswer(a, treeReq{Op: opAnswer, Room: rs.id, Session: resp.Session, SDP: sdp})
			done.Store(true)
		}()
		// Ask for b's place as long as a's answer is being applied.
		for !done.Load() {
			rb, err := s.serveAttach(ctx, b, rs.id)
			if err != nil {
				t.Fatalf("round %d: attach b: %v", i, err)
			}
			if !rb.Full {
				t.Fatalf("round %d: b was offered a place while a's answer was applied (fanout 1)", i)
			}
		}
		if err := <-errc; err != nil {
			t.Fatalf("round %d: answer a: %v", i, err)
		}
		s.mu.Lock()
		kids, reserved := len(rs.children), rs.reserved
		c := rs.children[a]
		s.mu.Unlock()
		if kids != 1 || reserved != 0 {
			t.Fatalf("round %d: %d children and %d reserved, want 1 and 0", i, kids, reserved)
		}
		s.dropChild(c)
	}
}

// TestRepeatedAttachHoldsOnePlace: a peer that asks to attach again and
// again without answering holds one place, not the whole fanout.
func TestRepeatedAttachHoldsOnePlace(t *testing.T) {
	n, rs := carrying(t, 2)
	s := n.svc
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 4 {
		resp, err := s.serveAttach(ctx, "greedy", rs.id)
		if err != nil || resp.Full {
			t.Fatalf("attach %d of the same peer: full=%v err=%v", i, resp.Full, err)
		}
	}
	resp, err := s.serveAttach(ctx, "other", rs.id)
	if err != nil || resp.Full {
		t.Fatalf("another peer was refused after one peer asked four times: full=%v err=%v", resp.Full, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) != 2 || rs.reserved != 2 {
		t.Fatalf("%d pending and %d reserved, want 2 and 2", len(s.pending), rs.reserved)
	}
}

// TestIndexBounded: room records are signed, but keys are free: a peer
// that sends records of ever new rooms, from one key or many, fills the
// index up to its bounds and no further, and a host keeps its rooms in it.
func TestIndexBounded(t *testing.T) {
	cfg := testConfig(3)
	cfg.RoomTTL = time.Hour // nothing expires while the test signs
	n := newTNode(t, meshtest.NewNetwork(), "n", cfg)
	s := n.svc
	record := func(ident *mesh.Identity, i int) mesh.BroadcastMsg {
		nonce := []byte(fmt.Sprintf("nonce-%d", i))
		r := Room{ID: roomID(ident.ID, nonce), Nonce: nonce, Host: ident.ID, Title: "flood", Live: true, Seq: 1}
		env, err := seal(ident, roomContext, r)
		if err != nil {
			t.Fatal(err)
		}
		return mesh.BroadcastMsg{Origin: ident.ID, Topic: roomTopic, Payload: env}
	}
	one, err := mesh.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 * maxRoomsPerHost {
		s.onRecord(record(one, i))
	}
	if got := len(s.Rooms()); got != maxRoomsPerHost {
		t.Fatalf("one host's flood: %d rooms in the index, want %d", got, maxRoomsPerHost)
	}
	// Many keys, a few rooms each.
	for range maxIndex/4 + 10 {
		ident, err := mesh.NewIdentity()
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			s.onRecord(record(ident, i))
		}
	}
	if got := len(s.Rooms()); got != maxIndex {
		t.Fatalf("many hosts' flood: %d rooms in the index, want %d", got, maxIndex)
	}
	// This node's own rooms are refused beyond the bound, not dropped by others.
	for i := range maxRoomsPerHost + 1 {
		_, err := s.Create(context.Background(), fmt.Sprintf("room %d", i), "", "")
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrBadInput) {
			t.Fatalf("room %d: %v, want ErrBadInput", i, err)
		}
		return
	}
	t.Fatal("a full index took every room this node created")
}

// TestWatchHoldsRoom: a WHEP request that waits for the room's media
// keeps the room at its node though it has no viewer yet: the node does
// not let go of it after Linger and stop attaching, and the request gets
// the media once the host has it.
func TestWatchHoldsRoom(t *testing.T) {
	cfg := testConfig(3)
	cfg.Linger = time.Millisecond
	nw := meshtest.NewNetwork()
	host := newTNode(t, nw, "host", cfg)
	v := newTNode(t, nw, "v", cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	room, err := host.svc.Create(ctx, "wait", "", "")
	if err != nil {
		t.Fatal(err)
	}
	waitRoom(t, room.ID, host, v)
	viewer, offer := newViewer(t)
	type result struct {
		ans string
		err error
	}
	done := make(chan result, 1)
	go func() {
		ans, _, err := v.svc.Watch(ctx, room.ID, offer)
		done <- result{ans, err}
	}()
	// The host has no media yet, so v's attaches fail; give the node's
	// tidying (every 250 ms) time to pass Linger several times over.
	testutil.WaitFor(t, 20*time.Second, "a failed attach at v", func() bool {
		v.svc.mu.Lock()
		defer v.svc.mu.Unlock()
		rs := v.svc.rooms[room.ID]
		return rs != nil && rs.lastErr != nil
	})
	time.Sleep(time.Second)
	pub, poffer := newPublisher(t)
	ans, _, err := host.svc.Publish(ctx, room.ID, room.Token, poffer)
	if err != nil {
		t.Fatal(err)
	}
	pub.start(t, ans)
	r := <-done
	if r.err != nil {
		t.Fatalf("watch while the room had no media: %v", r.err)
	}
	viewer.answer(t, r.ans)
	waitMedia(t, viewer, "media at v's viewer")
}
