package mesh_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
	"github.com/catnest/catnest/mesh/signal"
)

// TestRTCOfferLostAtAHopEndsTheDial runs five nodes over real WebRTC. A
// dials through the mesh along routes that break at a hop: B has no link
// to the next node (as when a hop's link goes while an offer is on its
// way, or a route learned a moment ago is stale). B must tell A, and A
// must give the dial up at once, its slot free, and link elsewhere. Dials
// here may otherwise wait 10 minutes (DialTimeout), far past the test's
// deadline: only the failure notice can end them.
func TestRTCOfferLostAtAHopEndsTheDial(t *testing.T) {
	if testing.Short() {
		t.Skip("five WebRTC nodes")
	}
	testutil.CheckGoroutines(t)
	rv := startRendezvous(t, false)
	manual := func(c *mesh.Config) { meshtest.Fast(c); c.ManualLinks = true }
	nodes := map[string]*mesh.Node{}
	for _, name := range []string{"b", "c", "d", "e"} {
		nodes[name], _ = rtcNode(t, rv.url(), rtcOpts{name: name, configure: manual})
	}
	b, c, d, e := nodes["b"], nodes["c"], nodes["d"], nodes["e"]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The line b - d - e - c: b has no link to c or e.
	for _, pair := range [][2]*mesh.Node{{b, d}, {d, e}, {e, c}} {
		if err := pair[0].Connect(ctx, pair[1].ID()); err != nil {
			t.Fatalf("%s to %s: %v", pair[0].Name(), pair[1].Name(), err)
		}
	}
	a, _ := rtcNode(t, rv.url(), rtcOpts{name: "a", bootstrap: []mesh.ID{b.ID()}, configure: func(cfg *mesh.Config) {
		meshtest.Fast(cfg)
		cfg.TargetPeers, cfg.LowPeers = 3, 3
		cfg.ReplaceInterval = -1
		cfg.DialTimeout = 10 * time.Minute
	}})
	// Offers to c and d go to b, which cannot pass them on.
	plant := func() {
		mesh.PlantRoute(a, a.ID(), b.ID(), c.ID())
		mesh.PlantRoute(a, a.ID(), b.ID(), e.ID(), d.ID())
	}
	plant()
	// a wants three links and has b: it dials two of c, d, e at once, so
	// at least one of its first dials goes to c or d.
	testutil.WaitFor(t, 90*time.Second, "a to link b and e, its dials to c and d given up, their slots free", func() bool {
		plant()
		return hasPeer(a, b.ID()) && hasPeer(a, e.ID()) &&
			mesh.BackedOff(a, c.ID()) && mesh.BackedOff(a, d.ID()) &&
			!mesh.Dialing(a, c.ID()) && !mesh.Dialing(a, d.ID())
	})
	for _, to := range []*mesh.Node{c, d} {
		plant()
		err := a.Connect(ctx, to.ID())
		if !errors.Is(err, mesh.ErrSignalLost) {
			t.Fatalf("a's dial to %s: %v, want ErrSignalLost", to.Name(), err)
		}
		t.Logf("a to %s: %v", to.Name(), err)
	}
	if hasPeer(a, c.ID()) || hasPeer(a, d.ID()) {
		t.Fatalf("a linked c or d along a broken route: %+v", a.Peers())
	}
}

// TestRTCLostAnswerIsSentAgainThroughTheRendezvous runs three nodes over
// real WebRTC with the rendezvous up. A, with no links, dials C through
// the rendezvous; C answers through the mesh along C - D - A, a path its
// records still draw after D's link to A went (as when every neighbour of
// a node trims it at once, CI's ten-node test), and D cannot pass the
// answer on. Every path C's stale records draw breaks the same way: after
// the first resend through the mesh is lost too, C must send the answer
// through the rendezvous, not give up, or A waits out its DialTimeout (10
// minutes here, 20 s by default) for an answer that never comes.
func TestRTCLostAnswerIsSentAgainThroughTheRendezvous(t *testing.T) {
	if testing.Short() {
		t.Skip("three WebRTC nodes")
	}
	testutil.CheckGoroutines(t)
	rv := startRendezvous(t, false)
	manual := func(c *mesh.Config) { meshtest.Fast(c); c.ManualLinks = true }
	d, _ := rtcNode(t, rv.url(), rtcOpts{name: "d", configure: manual})
	a, _ := rtcNode(t, rv.url(), rtcOpts{name: "a", configure: func(c *mesh.Config) {
		manual(c)
		c.DialTimeout = 10 * time.Minute
	}})
	c, _ := rtcNode(t, rv.url(), rtcOpts{name: "c", configure: manual, beforeServe: func(c *mesh.Node) {
		mesh.StaleRoute(c, c.ID(), d.ID(), a.ID())
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Dials fail at once until the nodes have registered.
	connect := func(from, to *mesh.Node) error {
		for {
			err := from.Connect(ctx, to.ID())
			if !errors.Is(err, signal.ErrNotConnected) {
				return err
			}
			select {
			case <-ctx.Done():
				return err
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	if err := connect(c, d); err != nil {
		t.Fatalf("c to d: %v", err)
	}
	// ctx only bounds a failure: the answer goes astray once, which D
	// reports at once, and then comes through the rendezvous.
	if err := connect(a, c); err != nil {
		t.Fatalf("a's dial to c, whose answer the mesh lost: %v", err)
	}
	if !hasPeer(a, c.ID()) {
		t.Fatalf("a has no link to c: %+v", a.Peers())
	}
}

// TestRTCLostAnswerReachesADialerOffTheRendezvous runs four nodes over
// real WebRTC. A, linked to E only, has lost its rendezvous connection (as
// a node on another rendezvous, or whose connection is down, would be)
// and dials C through E. C answers along C - D - A, the route it learned
// before D's link to A went, and D cannot pass the answer on. C must send
// the answer again through the mesh, by the fresh path C - E - A: its
// rendezvous would take the answer and hold it for a dialer that is not
// there, and A would wait out its DialTimeout (10 minutes here).
func TestRTCLostAnswerReachesADialerOffTheRendezvous(t *testing.T) {
	if testing.Short() {
		t.Skip("four WebRTC nodes")
	}
	testutil.CheckGoroutines(t)
	rv := startRendezvous(t, true)
	px := startCutProxy(t, rv.addr)
	manual := func(c *mesh.Config) { meshtest.Fast(c); c.ManualLinks = true }
	d, _ := rtcNode(t, rv.url(), rtcOpts{name: "d", configure: manual})
	e, _ := rtcNode(t, rv.url(), rtcOpts{name: "e", configure: manual})
	a, _ := rtcNode(t, "http://"+px.addr+"/myapp", rtcOpts{name: "a", configure: func(c *mesh.Config) {
		manual(c)
		c.DialTimeout = 10 * time.Minute
	}})
	c, _ := rtcNode(t, rv.url(), rtcOpts{name: "c", configure: manual, beforeServe: func(c *mesh.Node) {
		mesh.StaleAnswerRoute(c, c.ID(), d.ID(), a.ID())
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, pair := range [][2]*mesh.Node{{e, a}, {e, c}, {c, d}} {
		for {
			err := pair[0].Connect(ctx, pair[1].ID())
			if err == nil {
				break
			}
			// Dials fail at once until the nodes have registered.
			if !errors.Is(err, signal.ErrNotConnected) || ctx.Err() != nil {
				t.Fatalf("%s to %s: %v", pair[0].Name(), pair[1].Name(), err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// A finds its way to C, and C its way back, from E's record.
	lists := func(n, of *mesh.Node, nb mesh.ID) bool {
		for _, r := range n.Directory() {
			if r.ID == of.ID() && slices.Contains(r.Neighbors, nb) {
				return true
			}
		}
		return false
	}
	testutil.WaitFor(t, 30*time.Second, "a and c to know e's links", func() bool {
		return lists(a, e, c.ID()) && lists(c, e, a.ID())
	})
	px.cut()
	peers := "http://" + rv.addr + "/myapp/" + rv.cfg.Key + "/peers"
	testutil.WaitFor(t, 30*time.Second, "the rendezvous to drop a", func() bool {
		resp, err := http.Get(peers)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var ids []string
		return json.NewDecoder(resp.Body).Decode(&ids) == nil && len(ids) > 0 && !slices.Contains(ids, string(a.ID()))
	})
	// ctx only bounds a failure: D reports the lost answer at once.
	if err := a.Connect(ctx, c.ID()); err != nil {
		t.Fatalf("a's dial to c, whose answer the mesh lost: %v", err)
	}
	if !hasPeer(a, c.ID()) {
		t.Fatalf("a has no link to c: %+v", a.Peers())
	}
}

// cutProxy passes TCP connections on to a server until cut, which closes
// them and refuses new ones: a node behind it loses the server alone.
// mend lets connections through again.
type cutProxy struct {
	addr string
	mu   sync.Mutex
	done bool
	open map[net.Conn]struct{}
	// refused counts the connections refused while cut.
	refused int
}

func startCutProxy(t testing.TB, upstream string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{addr: ln.Addr().String(), open: map[net.Conn]struct{}{}}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			if !p.track(in) {
				continue
			}
			wg.Go(func() {
				defer in.Close()
				out, err := net.Dial("tcp", upstream)
				if err != nil || !p.track(out) {
					return
				}
				defer out.Close()
				wg.Go(func() { io.Copy(out, in); out.Close() })
				io.Copy(in, out)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		wg.Wait()
	})
	return p
}

// track keeps c to close on cut, or closes it when cut already.
func (p *cutProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		c.Close()
		p.refused++
		return false
	}
	p.open[c] = struct{}{}
	return true
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = true
	for c := range p.open {
		c.Close()
	}
}

func (p *cutProxy) mend() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = false
}

func (p *cutProxy) refusedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused
}

// TestRTCConnectWaitsForTheFirstRegistration dials from a node that has not
// registered with its rendezvous yet. The rendezvous lists a client before
// the client has read its OPEN, so a caller that waited for the listing
// dialed into that gap and got signal.ErrNotConnected at once: the offer
// flood test's capture dial failed so in a CI run ("no offer captured"),
// and it failed every time with the client's OPEN held back 300 ms. Here
// the gap is widened further: A's way to the rendezvous is cut until A has
// been refused once and is dialing. The dial must wait for the
// registration and link.
func TestRTCConnectWaitsForTheFirstRegistration(t *testing.T) {
	if testing.Short() {
		t.Skip("two WebRTC nodes")
	}
	testutil.CheckGoroutines(t)
	rv := startRendezvous(t, false)
	px := startCutProxy(t, rv.addr)
	px.cut()
	manual := func(c *mesh.Config) { meshtest.Fast(c); c.ManualLinks = true }
	b, _ := rtcNode(t, rv.url(), rtcOpts{name: "b", configure: manual})
	a, _ := rtcNode(t, "http://"+px.addr+"/myapp", rtcOpts{name: "a", configure: manual})
	testutil.WaitFor(t, 20*time.Second, "b to register and a to be refused", func() bool {
		return slices.Contains(rv.srv.Clients(), string(b.ID())) && px.refusedCount() > 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dialed := make(chan error, 1)
	go func() { dialed <- a.Connect(ctx, b.ID()) }()
	px.mend()
	if err := <-dialed; err != nil {
		t.Fatalf("a's dial before its first registration: %v", err)
	}
	if !hasPeer(a, b.ID()) {
		t.Fatalf("a has no link to b: %+v", a.Peers())
	}
}

// TestRTCOfferLostWithItsLinkIsSentAgain runs four nodes over real WebRTC.
// A, linked to H and E, dials D along A - H - D, and H closes its link to
// A when the offer comes. In "dropped", H drops the offer, as a node
// trimming A does with the offer still queued on the link (CI's ten-node
// test, where every neighbour of a node trims it at once). No node
// reports that loss: A must see the link go and send the offer again by
// its other path, A - E - D, or it waits out its DialTimeout (10 minutes
// here, 20 s by default). In "late", H passes the offer on after all,
// once A has D's answer to the copy it sent again and the link is not up
// yet: A cannot tell a lost offer from a late one. D must take the late
// copy as a sign that its answer went astray, not as a new dial that
// replaces the handshake in progress (which broke it: A held an answer
// from a closed connection and waited out its DialTimeout).
//
// The late copy must come in the few milliseconds between A taking the
// answer and the link coming up; where it misses them (the link is up
// first), that run tests only that a late copy leaves a link alone, and
// the scenario runs again, up to offerLateTries times in all.
func TestRTCOfferLostWithItsLinkIsSentAgain(t *testing.T) {
	if testing.Short() {
		t.Skip("four WebRTC nodes")
	}
	t.Run("dropped", func(t *testing.T) { offerLostWithItsLink(t, false) })
	t.Run("late", func(t *testing.T) {
		for try := 1; ; try++ {
			var inTime bool
			t.Run(fmt.Sprint("try", try), func(t *testing.T) { inTime = offerLostWithItsLink(t, true) })
			if inTime || t.Failed() {
				return
			}
			if try == offerLateTries {
				t.Fatalf("the late offer came after the link was up in all %d tries: nothing tested", try)
			}
		}
	})
}

// offerLateTries bounds the runs of the "late" scenario: in a run in five
// the copy misses its window.
const offerLateTries = 6

// offerLostWithItsLink runs one scenario of
// TestRTCOfferLostWithItsLinkIsSentAgain; with late, it reports whether
// the late copy came before the link was up.
func offerLostWithItsLink(t *testing.T, late bool) (inTime bool) {
	testutil.CheckGoroutines(t)
	rv := startRendezvous(t, false)
	manual := func(c *mesh.Config) { meshtest.Fast(c); c.ManualLinks = true }
	d, _ := rtcNode(t, rv.url(), rtcOpts{name: "d", configure: manual})
	h, _ := rtcNode(t, rv.url(), rtcOpts{name: "h", configure: manual})
	e, _ := rtcNode(t, rv.url(), rtcOpts{name: "e", configure: manual})
	a, _ := rtcNode(t, rv.url(), rtcOpts{name: "a", configure: func(c *mesh.Config) {
		manual(c)
		c.DialTimeout = 10 * time.Minute
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, pair := range [][2]*mesh.Node{{h, d}, {e, d}, {a, h}, {a, e}} {
		if err := pair[0].Connect(ctx, pair[1].ID()); err != nil {
			t.Fatalf("%s to %s: %v", pair[0].Name(), pair[1].Name(), err)
		}
	}
	// A draws its second path from E's record.
	testutil.WaitFor(t, 30*time.Second, "a's directory to list e's link to d", func() bool {
		for _, r := range a.Directory() {
			if r.ID == e.ID() && slices.Contains(r.Neighbors, d.ID()) {
				return true
			}
		}
		return false
	})
	mesh.PlantRoute(a, a.ID(), h.ID(), d.ID())
	var passOn func() bool
	var missed atomic.Bool
	if late {
		// A has D's answer and the link is not up yet: a new handshake
		// at D would leave A with a dead answer.
		passOn = func() bool {
			if hasPeer(a, d.ID()) {
				missed.Store(true)
				return true
			}
			return mesh.Answering(d, a.ID()) && mesh.GotAnswer(a, d.ID())
		}
	}
	passed := mesh.CloseLinkOnOffer(h, a.ID(), passOn)
	if err := a.Connect(ctx, d.ID()); err != nil {
		t.Fatalf("a's dial to d, whose offer went with a's link to h: %v", err)
	}
	// A direct link: when the direct attempt fails (its answer came from
	// a handshake the late offer cancelled), after ICE's failed timeout
	// (20 s), a bridge through E takes over.
	if p, ok := peerOf(a, d.ID()); !ok || p.Route != mesh.RouteDirect {
		t.Fatalf("a's link to d: %+v (found %v), want route direct", p, ok)
	}
	if hasPeer(a, h.ID()) {
		t.Fatal("a's link to h is up: the offer did not go through h, and the test tested nothing")
	}
	if !late {
		return false
	}
	select {
	case <-passed:
	case <-ctx.Done():
		t.Fatal("h never passed the late offer on")
	}
	// The late offer must not have broken the link.
	testutil.WaitFor(t, 20*time.Second, "d's end of the link", func() bool { return hasPeer(d, a.ID()) })
	if !hasPeer(a, d.ID()) {
		t.Fatalf("a's link to d went after the late offer: %+v", a.Peers())
	}
	return !missed.Load()
}
