package live

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh/meshtest"
)

// unreachableMedia makes media connections that gather no candidates, so
// that ICE never connects to them.
func unreachableMedia(t *testing.T) *media {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetIPFilter(func(net.IP) bool { return false })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return &media{api: newAPI(t, se)}
}

// TestAttachDropsParentWithoutMedia: a node that wants a room tries first
// a parent that advertises the room at the top of the tree but delivers
// nothing (its connection never comes up, or comes up and carries no
// packets); the node gives it up when the attach timeout ends, attaches
// to the next candidate, a real relay, and its viewer gets media.
func TestAttachDropsParentWithoutMedia(t *testing.T) {
	for _, tc := range []struct {
		name string
		ice  bool // whether the bad parent's connection comes up
	}{{"ice never connects", false}, {"connects and sends nothing", true}} {
		t.Run(tc.name, func(t *testing.T) {
			testutil.CheckGoroutines(t)
			cfg := testConfig(1)
			cfg.AttachTimeout = 2 * time.Second
			nw := meshtest.NewNetwork()
			a := newTNode(t, nw, "a", cfg)
			g := newTNode(t, nw, "g", cfg)
			// x has places to spare: a child it took stays on its list
			// until ICE gives the child up, and must not make x look full.
			xcfg := cfg
			xcfg.Fanout = 8
			x := newTNode(t, nw, "x", xcfg)
			c := newTNode(t, nw, "c", cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			room, _ := publishRoom(t, ctx, a, "silent parent", nil)
			waitRoom(t, room.ID, a, g, c)
			vg, _ := watch(t, g, room.ID) // a's one place goes to g
			waitMedia(t, vg, "media at g")

			// x claims to carry the room at depth 0 with room to spare,
			// but has no media for it.
			rs := videoRoom(room.ID)
			x.svc.mu.Lock()
			if !tc.ice {
				x.svc.media = unreachableMedia(t)
			}
			x.svc.rooms[rs.id] = rs
			x.svc.mu.Unlock()
			testutil.WaitFor(t, 30*time.Second, "c seeing x first, then g, as candidates", func() bool {
				cs := c.svc.candidates(room.ID, a.node.ID())
				return len(cs) >= 2 && cs[0] == x.node.ID() && cs[1] == g.node.ID()
			})

			v, _ := watch(t, c, room.ID)
			waitMedia(t, v, "media at c's viewer")
			ti, err := c.svc.Tree(room.ID)
			if err != nil || ti.Parent != g.node.ID() {
				t.Fatalf("c's tree %+v, %v: want parent g", ti, err)
			}
		})
	}
}

// firstVideo records the first video packets a viewer gets.
type firstVideo struct {
	mu   sync.Mutex
	pkts []rtp.Packet
}

func (f *firstVideo) add(p *rtp.Packet) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.pkts) < 8 {
		f.pkts = append(f.pkts, *p)
	}
}

// keyframe says whether the first packets are one whole keyframe, and
// describes them.
func (f *firstVideo) keyframe() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.pkts) < 3 {
		return false, "fewer than 3 packets"
	}
	p := f.pkts[:3]
	whole := isVP8KeyframeStart(p[0].Payload) && p[2].Marker &&
		p[1].Timestamp == p[0].Timestamp && p[2].Timestamp == p[0].Timestamp &&
		p[1].SequenceNumber == p[0].SequenceNumber+1 && p[2].SequenceNumber == p[0].SequenceNumber+2
	b, _ := json.Marshal(map[string]any{"first_key": isVP8KeyframeStart(p[0].Payload), "seq": p[0].SequenceNumber, "ts": p[0].Timestamp})
	return whole, string(b)
}

// TestNewViewerGetsKeyframe: the publisher sends one keyframe at the
// start and never again (it ignores keyframe requests, like an encoder
// with a long keyframe interval). Viewers that join later, one hop and
// two hops from the host, get that keyframe whole before anything else,
// from the relays' caches, and keyframe requests reach the publisher.
func TestNewViewerGetsKeyframe(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	a := newTNode(t, nw, "a", testConfig(1))
	b := newTNode(t, nw, "b", testConfig(1))
	c := newTNode(t, nw, "c", testConfig(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var keyNow atomic.Bool
	room, pub := publishRoom(t, ctx, a, "keyframes", func(p *publisher) {
		p.keyframe = func(int) bool { return keyNow.CompareAndSwap(true, false) }
	})
	waitRoom(t, room.ID, a, b, c)
	a.svc.mu.Lock()
	hub := a.svc.rooms[room.ID].hub
	a.svc.mu.Unlock()
	// Once media flows (what was sent before the connection was up is
	// lost), one keyframe, and it has gone by long before anyone watches.
	testutil.WaitFor(t, 30*time.Second, "media at the host", func() bool { return hub.packetsIn.Load() > 30 })
	keyNow.Store(true)
	testutil.WaitFor(t, 30*time.Second, "the host forwarding well past the keyframe", func() bool {
		hub.vmu.Lock()
		defer hub.vmu.Unlock()
		return len(hub.keys.key) > 0 && hub.lastSeq-hub.keys.key[0].SequenceNumber > 200
	})
	plis := pub.plis.Load()
	for _, n := range []*tnode{b, c} {
		fv := &firstVideo{}
		v, offer := newViewer(t)
		v.onVideo = fv.add
		ans, _, err := n.svc.Watch(ctx, room.ID, offer)
		if err != nil {
			t.Fatalf("watch on %s: %v", n.node.Name(), err)
		}
		v.answer(t, ans)
		waitMedia(t, v, "media at "+n.node.Name())
		if ok, desc := fv.keyframe(); !ok {
			t.Fatalf("the first video packets at %s's viewer are not the keyframe: %s", n.node.Name(), desc)
		}
	}
	if ti, _ := c.svc.Tree(room.ID); ti.Parent != b.node.ID() {
		t.Fatalf("c's tree %+v: want the chain a → b → c", ti)
	}
	testutil.WaitFor(t, 10*time.Second, "keyframe requests at the publisher", func() bool { return pub.plis.Load() > plis })
}

// TestKeyframeCacheBounded: a "keyframe" of more packets than the cache
// takes is not cached, a keyframe with a packet missing is not cached,
// and a whole one replaces the last.
func TestKeyframeCacheBounded(t *testing.T) {
	h := newHub("r", time.Second)
	gen := h.upstream(1, nil)
	h.setSlot(gen, webrtc.RTPCodecTypeVideo, vp8Codec)
	seq := uint16(0)
	frame := func(ts uint32, n int, key bool, skip int) {
		for i := range n {
			pl := make([]byte, 100)
			if i == 0 {
				pl[0] = 0x10
				if !key {
					pl[1] = 0x01
				}
			}
			seq++
			if i == skip {
				continue
			}
			h.forward(gen, webrtc.RTPCodecTypeVideo, &rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: ts, Marker: i == n-1}, Payload: pl})
		}
	}
	cached := func() (int, uint32) {
		h.vmu.Lock()
		defer h.vmu.Unlock()
		if len(h.keys.key) == 0 {
			return 0, 0
		}
		return len(h.keys.key), h.keys.key[0].Timestamp
	}
	frame(1, 4, true, -1)
	if n, ts := cached(); n != 4 || ts != 1 {
		t.Fatalf("after a keyframe of 4 packets: %d cached of ts %d", n, ts)
	}
	frame(2, 3, false, -1)
	frame(3, maxKeyframePackets+1, true, -1)
	frame(4, 5, true, 2)
	if n, ts := cached(); n != 4 || ts != 1 {
		t.Fatalf("after an oversized and a broken keyframe: %d cached of ts %d, want the first", n, ts)
	}
	frame(5, 6, true, -1)
	if n, ts := cached(); n != 6 || ts != 5 {
		t.Fatalf("after a whole keyframe: %d cached of ts %d", n, ts)
	}
	// Garbage payloads are no keyframe starts.
	for _, pl := range [][]byte{nil, {}, {0x90}, {0x90, 0x80}, {0x10}} {
		if isVP8KeyframeStart(pl) {
			t.Fatalf("%x taken for a keyframe start", pl)
		}
	}
}

// TestViewersCapped: a node serves at most MaxViewers WHEP viewers: of
// many requests at once, that many get a session and the rest ErrBusy;
// when one leaves, a new viewer gets its place.
func TestViewersCapped(t *testing.T) {
	testutil.CheckGoroutines(t)
	const limit, asks = 6, 16
	cfg := testConfig(3)
	cfg.MaxViewers = limit
	nw := meshtest.NewNetwork()
	a := newTNode(t, nw, "a", testConfig(3))
	b := newTNode(t, nw, "b", cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	room, _ := publishRoom(t, ctx, a, "busy", nil)
	waitRoom(t, room.ID, a, b)
	type result struct {
		sid string
		err error
	}
	results := make(chan result, asks)
	var wg sync.WaitGroup
	for range asks {
		_, offer := newViewer(t)
		wg.Go(func() {
			_, sid, err := b.svc.Watch(ctx, room.ID, offer)
			results <- result{sid, err}
		})
	}
	wg.Wait()
	close(results)
	var sids []string
	for r := range results {
		switch {
		case r.err == nil:
			sids = append(sids, r.sid)
		case !errors.Is(r.err, ErrBusy):
			t.Fatalf("watch: %v, want a session or ErrBusy", r.err)
		}
	}
	if len(sids) != limit {
		t.Fatalf("%d of %d viewers admitted, limit %d", len(sids), asks, limit)
	}
	if err := b.svc.Stop(room.ID, sids[0]); err != nil {
		t.Fatal(err)
	}
	v, sid := watch(t, b, room.ID)
	waitMedia(t, v, "media at the viewer that took the freed place")
	if sid == "" {
		t.Fatal("no session")
	}
}

// TestChildViewerCountCapped: a child that reports billions of viewers
// moves the host's count to the bound of its subtree (MaxViewers per node
// the directory shows below the host), not to its claim.
func TestChildViewerCountCapped(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	cfg := testConfig(3)
	a := newTNode(t, nw, "a", cfg)
	b := newTNode(t, nw, "b", cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	room, _ := publishRoom(t, ctx, a, "count", nil)
	waitRoom(t, room.ID, a, b)
	v, _ := watch(t, b, room.ID)
	waitMedia(t, v, "media at b")
	testutil.WaitFor(t, 30*time.Second, "the host counting b's viewer", func() bool {
		r, _ := a.svc.Room(room.ID)
		return r.Viewers == 1
	})
	// b turns hostile: it claims 2e9 viewers on the tree channel.
	b.svc.mu.Lock()
	dc := b.svc.rooms[room.ID].parentDC
	b.svc.mu.Unlock()
	if err := dc.Send([]byte(`{"viewers":2000000000}`)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the host taking b's claim", func() bool {
		a.svc.mu.Lock()
		defer a.svc.mu.Unlock()
		c := a.svc.rooms[room.ID].children[b.node.ID()]
		return c != nil && c.viewers == 2000000000
	})
	var r Room
	testutil.WaitFor(t, 30*time.Second, "the host's room record counting the claim", func() bool {
		r, _ = a.svc.Room(room.ID)
		return r.Viewers != 1
	})
	if r.Viewers > cfg.MaxViewers {
		t.Fatalf("the host shows %d viewers after a claim of one child with no children of its own; bound %d", r.Viewers, cfg.MaxViewers)
	}
	if ti, _ := a.svc.Tree(room.ID); ti.Below > cfg.MaxViewers {
		t.Fatalf("the host's tree counts %d viewers below; bound %d", ti.Below, cfg.MaxViewers)
	}
}
