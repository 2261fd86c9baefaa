package live

import (
	"context"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestChildThatNeverConnectsFreesItsPlace: a hostile node asks the host
// to attach it, answers the offer with an SDP whose connection can never
// come up, and does nothing more. The host's one place (fanout 1) is free
// again once the attach timeout ends, long before ICE would give the
// child up (ParentSilence is a minute here), and an honest node attaches
// and plays.
func TestChildThatNeverConnectsFreesItsPlace(t *testing.T) {
	testutil.CheckGoroutines(t)
	cfg := testConfig(1)
	cfg.AttachTimeout = 2 * time.Second
	acfg := cfg
	acfg.ParentSilence = time.Minute // ICE gives a child up after minutes
	nw := meshtest.NewNetwork()
	a := newTNode(t, nw, "a", acfg)
	h := newTNode(t, nw, "h", cfg)
	c := newTNode(t, nw, "c", cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	room, _ := publishRoom(t, ctx, a, "pinned", nil)
	waitRoom(t, room.ID, a, h, c)
	testutil.WaitFor(t, 30*time.Second, "media at the host", func() bool {
		a.svc.mu.Lock()
		defer a.svc.mu.Unlock()
		return a.svc.rooms[room.ID].carriesLocked()
	})

	// h attaches by hand, with a connection that gathers no candidates.
	resp, err := h.svc.request(ctx, a.node.ID(), treeReq{Op: opAttach, Room: room.ID})
	if err != nil || resp.Offer == "" {
		t.Fatalf("attach: %+v, %v", resp, err)
	}
	pc, err := unreachableMedia(t).newPC()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: resp.Offer}); err != nil {
		t.Fatal(err)
	}
	sd, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.request(ctx, a.node.ID(), treeReq{Op: opAnswer, Room: room.ID, Session: resp.Session, SDP: gathered(t, pc, sd)}); err != nil {
		t.Fatal(err)
	}
	if ti, _ := a.svc.Tree(room.ID); len(ti.Children) != 1 || ti.Children[0] != h.node.ID() {
		t.Fatalf("the host's tree %+v: want h as its one child", ti)
	}
	testutil.WaitFor(t, 60*time.Second, "the host letting go of the child that never came up", func() bool {
		ti, _ := a.svc.Tree(room.ID)
		return len(ti.Children) == 0
	})
	v, _ := watch(t, c, room.ID)
	waitMedia(t, v, "media at c's viewer")
	if ti, _ := c.svc.Tree(room.ID); ti.Parent != a.node.ID() {
		t.Fatalf("c's tree %+v: want a as parent", ti)
	}
}

// TestChildDroppedWhileStartingLeavesNoOutput: a child's connection comes
// up (its forwarding starts) just as it is dropped (its connection fails,
// or it never came up in time). The hub must not end up forwarding to the
// dropped child's output for as long as the room lasts.
func TestChildDroppedWhileStartingLeavesNoOutput(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	a := newTNode(t, nw, "a", testConfig(3))
	x := newTNode(t, nw, "x", testConfig(3))
	rs := videoRoom("r")
	pc, out := hubOutput(t, a, rs)
	c := &childLink{id: x.node.ID(), room: rs.id, pc: pc, out: out, timer: time.AfterFunc(time.Hour, func() {})}
	a.svc.mu.Lock()
	a.svc.rooms[rs.id] = rs
	rs.children[c.id] = c
	a.svc.mu.Unlock()

	// The start is held inside the hub (the cache's lock) after it found
	// the child still there; the drop comes then.
	rs.hub.vmu.Lock()
	var wg sync.WaitGroup
	wg.Go(func() { a.svc.startChild(c) })
	testutil.WaitFor(t, 30*time.Second, "the start waiting inside the hub", func() bool {
		buf := make([]byte, 1<<20)
		return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "(*hub).attachOutput")
	})
	a.svc.dropChild(c)
	rs.hub.vmu.Unlock()
	wg.Wait()
	if n := len(*rs.hub.outs.Load()); n != 0 {
		t.Fatalf("the hub forwards to %d outputs after its only child was dropped", n)
	}
}

// TestViewerStoppedWhileStartingLeavesNoOutput: the same for a WHEP
// viewer whose session ends as its connection comes up.
func TestViewerStoppedWhileStartingLeavesNoOutput(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	a := newTNode(t, nw, "a", testConfig(3))
	rs := videoRoom("r")
	pc, out := hubOutput(t, a, rs)
	ss := &session{id: newSessionID(viewerSession), room: rs.id, pc: pc, out: out}
	a.svc.mu.Lock()
	a.svc.rooms[rs.id] = rs
	rs.viewers[ss.id] = ss
	a.svc.sessions[ss.id] = ss
	a.svc.mu.Unlock()

	rs.hub.vmu.Lock()
	var wg sync.WaitGroup
	wg.Go(func() { a.svc.startViewer(rs, ss) })
	testutil.WaitFor(t, 30*time.Second, "the start waiting inside the hub", func() bool {
		buf := make([]byte, 1<<20)
		return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "(*hub).attachOutput")
	})
	if err := a.svc.Stop(rs.id, ss.id); err != nil {
		t.Fatal(err)
	}
	rs.hub.vmu.Unlock()
	wg.Wait()
	if n := len(*rs.hub.outs.Load()); n != 0 {
		t.Fatalf("the hub forwards to %d outputs after its only viewer stopped", n)
	}
}

// TestReattachTriesSilentParentLast: a node x advertises the room as a
// child of the host a (a path that checks: it starts at a, ends at x,
// and what lies between cannot be checked) with places to spare and,
// once it took a child, sends it nothing. c sees x above the relay g (a's
// child h is full; g is h's child), tries x first, gives it up after the
// attach timeout and attaches to g. When c has to attach again (its
// parent gone), it tries g before x, instead of losing another attach
// timeout to x. A parent whose path is refused is tried last too:
// TestParentPathMustStartAtHost.
func TestReattachTriesSilentParentLast(t *testing.T) {
	testutil.CheckGoroutines(t)
	cfg := testConfig(1)
	cfg.AttachTimeout = 2 * time.Second
	nw := meshtest.NewNetwork()
	a := newTNode(t, nw, "a", cfg)
	h := newTNode(t, nw, "h", cfg)
	gcfg := cfg
	gcfg.Fanout = 3
	g := newTNode(t, nw, "g", gcfg)
	xcfg := cfg
	xcfg.Fanout = 8
	x := newTNode(t, nw, "x", xcfg)
	c := newTNode(t, nw, "c", cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	room, _ := publishRoom(t, ctx, a, "silent parent again", nil)
	waitRoom(t, room.ID, a, h, g, x, c)
	vh, _ := watch(t, h, room.ID) // a's one place goes to h
	waitMedia(t, vh, "media at h")
	vg, _ := watch(t, g, room.ID) // h's one place goes to g
	waitMedia(t, vg, "media at g")
	if ti, err := g.svc.Tree(room.ID); err != nil || !slices.Equal(ti.Path, []mesh.ID{a.node.ID(), h.node.ID()}) {
		t.Fatalf("g's tree = %+v, %v; want h's child", ti, err)
	}

	// x claims to carry the room as a's child (depth 1) with room to
	// spare, but has no media for it; it counts the attaches c asks of
	// it.
	rs := videoRoom(room.ID)
	rs.path = []mesh.ID{a.node.ID()}
	x.svc.mu.Lock()
	x.svc.rooms[rs.id] = rs
	x.svc.mu.Unlock()
	var asked sync.Mutex
	attaches, answers := 0, 0
	x.node.Handle(treeProto, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		var req treeReq
		if _, err := open(m.Payload, maxTreeMsg, treeContext, &req); err == nil && m.From == c.node.ID() {
			asked.Lock()
			switch req.Op {
			case opAttach:
				attaches++
			case opAnswer:
				answers++
			}
			asked.Unlock()
		}
		return x.svc.serveTree(ctx, m)
	}))
	testutil.WaitFor(t, 30*time.Second, "c seeing x first, then g, as candidates", func() bool {
		cs := c.svc.candidates(room.ID, a.node.ID())
		return len(cs) >= 2 && cs[0] == x.node.ID() && cs[1] == g.node.ID()
	})
	v, _ := watch(t, c, room.ID)
	waitMedia(t, v, "media at c's viewer")
	parentOfC := func() *parentLink {
		c.svc.mu.Lock()
		defer c.svc.mu.Unlock()
		return c.svc.rooms[room.ID].parent
	}
	first := parentOfC()
	if first == nil || first.id != g.node.ID() {
		t.Fatal("c is not g's child")
	}
	// c loses g and attaches again.
	c.svc.mu.Lock()
	crs := c.svc.rooms[room.ID]
	c.svc.mu.Unlock()
	c.svc.lostParent(crs, first)
	testutil.WaitFor(t, 60*time.Second, "c attached again", func() bool {
		c.svc.mu.Lock()
		defer c.svc.mu.Unlock()
		rs := c.svc.rooms[room.ID]
		return rs.parent != nil && rs.parent != first && !rs.attaching
	})
	waitMedia(t, v, "media at c's viewer again")
	asked.Lock()
	defer asked.Unlock()
	if answers != 1 {
		t.Fatalf("c answered x's offer %d times, want once: c should take x's path and find x silent", answers)
	}
	if attaches != 1 {
		t.Fatalf("c asked x to take it %d times; after x sent nothing once, c should try g first", attaches)
	}
}
