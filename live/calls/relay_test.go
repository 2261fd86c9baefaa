package calls

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// manualNet starts n nodes with the service, linked only along links
// (pairs of indexes); every other pair cannot link, so their call
// messages travel along routes. It waits until every node has a route to
// every other.
func manualNet(t *testing.T, n int, links [][2]int) *testNet {
	t.Helper()
	tn := &testNet{nw: meshtest.NewNetwork(), meshConf: func(c *mesh.Config) { c.ManualLinks = true }}
	for i := range n {
		tn.add(t, fmt.Sprintf("n%d", i))
	}
	for i := range n {
		for j := i + 1; j < n; j++ {
			if !slices.Contains(links, [2]int{i, j}) && !slices.Contains(links, [2]int{j, i}) {
				tn.nw.Block(tn.nodes[i].ID(), tn.nodes[j].ID())
			}
		}
	}
	for _, l := range links {
		a, b := tn.nodes[l[0]], tn.nodes[l[1]]
		testutil.WaitFor(t, wait, "a link", func() bool { return a.Connect(context.Background(), b.ID()) == nil })
	}
	tn.converge(t)
	testutil.WaitFor(t, wait, "a route between every two nodes", func() bool {
		for _, s := range tn.svcs {
			for _, d := range tn.nodes {
				if d.ID() != s.self && s.pathTo(d.ID()) == nil {
					return false
				}
			}
		}
		return true
	})
	return tn
}

// TestRouteBurstBesideHungNode: dozens of calls signal through one middle
// node while calls through the same node to a hung one wait for answers
// that never come (renewals at an owner whose machine hangs). Every
// signal is delivered, at once: the middle node holds nothing for a
// message it passed on. (When every hop held a request until the answer,
// the hung calls took the middle node's request slots for the link from
// the signals' node, and the signals waited behind them until they timed
// out.)
func TestRouteBurstBesideHungNode(t *testing.T) {
	testutil.CheckGoroutines(t)
	const a, m, d, h = 0, 1, 2, 3
	tn := manualNet(t, 4, [][2]int{{a, m}, {m, d}, {m, h}})
	const calls, candidates, hung = 24, 8, 48
	var rooms []string
	for k := 0; len(rooms) < calls; k++ {
		if room := fmt.Sprintf("burst%d", k); tn.ownerIndex(room) != h {
			rooms = append(rooms, room)
		}
	}
	as, ds := make([]*Session, calls), make([]*Session, calls)
	for i, room := range rooms {
		as[i], ds[i] = tn.open(t, a), tn.open(t, d)
		joinPair(t, room, as[i], ds[i])
	}
	if slices.ContainsFunc(tn.nodes[a].Peers(), func(p mesh.PeerInfo) bool { return p.ID == tn.nodes[d].ID() }) {
		t.Fatal("the signals' nodes linked directly; the test needs them to route")
	}

	tn.nw.Freeze(tn.nodes[h].ID())
	svc := tn.svcs[a]
	routed := svc.routed.Load()
	var wg sync.WaitGroup
	hungErrs := make(chan error, hung)
	for i := range hung {
		wg.Go(func() {
			_, err := svc.ask(context.Background(), tn.nodes[h].ID(), &request{Op: opCheck, Room: "hung", Session: fmt.Sprintf("s%d", i)})
			hungErrs <- err
		})
	}
	testutil.WaitFor(t, wait, "the calls to the hung node to be on their way", func() bool {
		return svc.routed.Load()-routed >= hung
	})

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	errs := make(chan error, calls*(1+candidates))
	for i := range calls {
		wg.Go(func() {
			errs <- svc.Signal(ctx, as[i].ID(), rooms[i], Signal{Type: "offer", SDP: sdpOffer})
		})
		for c := range candidates {
			wg.Go(func() {
				cand := &Candidate{Candidate: fmt.Sprintf("candidate:%d 1 udp 1 127.0.0.1 %d typ host", c, 9000+c)}
				errs <- svc.Signal(ctx, as[i].ID(), rooms[i], Signal{Type: "candidate", Candidate: cand})
			})
		}
	}
	var failed []error
	for range calls * (1 + candidates) {
		if err := <-errs; err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		t.Fatalf("%d of %d signals failed beside %d calls to a hung node; first: %v", len(failed), calls*(1+candidates), hung, failed[0])
	}
	for i, s := range ds {
		got := 0
		for got < 1+candidates {
			if ev := next(t, s); ev.Type == "offer" || ev.Type == "candidate" {
				got++
			}
		}
		if i == 0 {
			t.Logf("call %d: %d signals delivered", i, got)
		}
	}
	wg.Wait()
	close(hungErrs)
	for err := range hungErrs {
		if err == nil {
			t.Fatal("a hung node answered")
		}
	}
	if n := svc.pending.waitingFor(tn.nodes[h].ID()); n != 0 {
		t.Fatalf("%d routed calls to the hung node still wait for answers after they failed", n)
	}
}

// waitingFor counts the calls to dst that wait for answers.
func (p *pending) waitingFor(dst mesh.ID) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.m {
		if c.path[len(c.path)-1] == dst {
			n++
		}
	}
	return n
}

// hostileRelay is a mesh node without the service that sits between two
// nodes and does to their routed messages what its hooks say.
type hostileRelay struct {
	node *mesh.Node
	mu   sync.Mutex
	// out and back return what to send on for a message on its way out
	// (to the destination) or an answer on its way back (to the sender).
	out, back func(e envelope) []envelope
	// answers counts the destination's answers by nonce.
	answers map[string]int
}

func (h *hostileRelay) serve(ctx context.Context, m *mesh.Message) ([]byte, error) {
	var e envelope
	if err := json.Unmarshal(m.Payload, &e); err != nil {
		return nil, err
	}
	h.mu.Lock()
	f := h.out
	if e.Back {
		f = h.back
		h.answers[string(e.Nonce)]++
	}
	h.mu.Unlock()
	for _, o := range f(e) {
		b, _ := json.Marshal(o)
		if err := h.node.Send(ctx, o.Path[o.Hop], RouteProtocol, b); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

func (h *hostileRelay) set(out, back func(e envelope) []envelope) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.out, h.back = out, back
}

func (h *hostileRelay) answersTo(nonce []byte) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.answers[string(nonce)]
}

// passOut and passBack pass a message on honestly.
func passOut(e envelope) []envelope  { e.Hop++; return []envelope{e} }
func passBack(e envelope) []envelope { e.Hop--; return []envelope{e} }

// TestHostileRelay: a node in the middle of a route can drop a call
// message (the sender gives up when its time is up, and forgets it), but
// the sender never takes an answer that the destination did not sign for
// that very message: a changed answer, one signed by the relay, or the
// destination's answer to another message. A message replayed to the
// destination is served once; a forged or bent one not at all.
func TestHostileRelay(t *testing.T) {
	testutil.CheckGoroutines(t)
	tn := newTestNet(t, 2, func(c *Config) { c.RequestTimeout = 3 * time.Second })
	a, d := tn.svcs[0], tn.svcs[1]
	var evilIdent *mesh.Identity
	h := &hostileRelay{answers: make(map[string]int)}
	h.node = tn.nw.NewNode(t, "evil", meshtest.Options{Configure: func(c *mesh.Config) { meshtest.Fast(c); evilIdent = c.Identity }})
	h.node.Handle(RouteProtocol, mesh.HandlerFunc(h.serve))
	h.set(passOut, passBack)
	ctx := context.Background()
	for _, n := range tn.nodes {
		testutil.WaitFor(t, wait, "links to the hostile node", func() bool { return h.node.Connect(ctx, n.ID()) == nil })
	}
	path := []mesh.ID{tn.nodes[0].ID(), h.node.ID(), tn.nodes[1].ID()}
	// D's answer to a check of a session it does not have: "full".
	const want = `{"state":"full"}`
	call := func(name string) ([]byte, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		check, _ := json.Marshal(request{Op: opCheck, Seq: a.seqs.take(path[2]), Room: "yard", Session: "nosuch"})
		out, err := a.route(ctx, path, check)
		if err == nil && string(out) != want {
			t.Fatalf("%s: took the answer %q, want %q", name, out, want)
		}
		return out, err
	}
	// The first call may find a link to the relay being replaced (the
	// nodes' overlays dial it too, and one of two links between a pair
	// is closed); once through, the links stay.
	testutil.WaitFor(t, wait, "a call through the honest relay", func() bool {
		_, err := call("honest")
		return err == nil
	})
	// An answer to an earlier message: an error (a request D cannot
	// decode), to be replayed later.
	var old envelope
	h.set(passOut, func(e envelope) []envelope { old = e; return passBack(e) })
	bad, _ := json.Marshal(request{Op: "nosuchop", Seq: a.seqs.take(path[2]), Room: "yard", Session: "x"})
	var remote *mesh.RemoteError
	if _, err := a.route(ctx, path, bad); !errors.As(err, &remote) {
		t.Fatalf("an undecodable request: %v, want the destination's error", err)
	}

	for _, c := range []struct {
		name string
		back func(e envelope) []envelope
	}{
		{"changed answer", func(e envelope) []envelope {
			forged := e
			forged.Body = []byte(`{"state":"joined","peer":{"node":"` + string(path[2]) + `","session":"x"}}`)
			return append(passBack(forged), passBack(e)...)
		}},
		{"answer signed by the relay", func(e envelope) []envelope {
			forged := e
			forged.Body = []byte(`{"state":"joined"}`)
			var err error
			if forged.Key, forged.Sig, err = sign(evilIdent.Key, replySigned(&forged)); err != nil {
				t.Error(err)
			}
			return append(passBack(forged), passBack(e)...)
		}},
		{"answer to another message", func(e envelope) []envelope {
			replay, moved := old, old
			moved.Nonce = e.Nonce // D signed the other nonce
			return append(append(passBack(replay), passBack(moved)...), passBack(e)...)
		}},
		{"error notice for the message", func(e envelope) []envelope {
			// Unsigned, in place of D's answer: a hop may say that the
			// route failed (as it may drop), never what D answered.
			forged := envelope{Path: e.Path, Hop: e.Hop, Back: true, Nonce: e.Nonce, Err: "calls: full"}
			return append(passBack(forged), passBack(e)...)
		}},
	} {
		h.set(passOut, c.back)
		if _, err := call(c.name); err != nil {
			t.Fatalf("%s: the genuine answer was not taken after the forged one: %v", c.name, err)
		}
	}

	// Dropped: the call fails when its time is up and is forgotten.
	h.set(func(envelope) []envelope { return nil }, passBack)
	if _, err := call("dropped"); !errors.Is(err, errNoRoute) {
		t.Fatalf("a dropped message: %v, want errNoRoute", err)
	}
	if n := a.pending.waitingFor(path[2]); n != 0 {
		t.Fatalf("%d calls still wait after they failed", n)
	}

	// Replayed to the destination: served once.
	var sent envelope
	h.set(func(e envelope) []envelope { sent = e; return append(passOut(e), passOut(e)...) }, passBack)
	if _, err := call("replayed"); err != nil {
		t.Fatal(err)
	}
	// The replay came before the next message on the link, and is refused
	// when it is taken, not later.
	h.set(passOut, passBack)
	if _, err := call("after the replay"); err != nil {
		t.Fatal(err)
	}
	if n := h.answersTo(sent.Nonce); n != 1 {
		t.Fatalf("the destination answered a replayed message %d times", n)
	}

	// Forged and bent messages, sent by the relay as its own.
	b := tn.open(t, 1)
	joinPair(t, "yard", tn.open(t, 0), b)
	leave, _ := json.Marshal(request{Op: opLeave, Seq: 3, Room: "yard", Session: b.ID()})
	mk := func(p []mesh.ID, key *mesh.Identity) []byte {
		e := envelope{Path: p, Hop: 2, Time: time.Now().UnixMilli(), Nonce: make([]byte, nonceLen), Body: leave}
		var err error
		if e.Key, e.Sig, err = sign(key.Key, envSigned(&e)); err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(e)
		return raw
	}
	for name, raw := range map[string][]byte{
		"forged sender": mk([]mesh.ID{tn.nodes[0].ID(), h.node.ID(), tn.nodes[1].ID()}, evilIdent),
		"bent path":     mk([]mesh.ID{h.node.ID(), tn.nodes[0].ID(), tn.nodes[1].ID()}, evilIdent),
	} {
		if e, err := d.takeRoute(raw, h.node.ID(), time.Now()); e != nil || err == nil {
			t.Fatalf("%s: taken", name)
		}
		if err := h.node.Send(ctx, tn.nodes[1].ID(), RouteProtocol, raw); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := call("after the forgeries"); err != nil {
		t.Fatal(err)
	}
	if p := peerOf(b); p == nil {
		t.Fatal("b lost its peer to a forged message")
	}
	if evs := drain(b); len(evs) != 0 {
		t.Fatalf("b heard %+v", evs)
	}
}

// TestRelayTurns: what a node passes on to one next hop is taken in turns
// by neighbour and, within a neighbour, by sender, each within its bound:
// a sender that floods, and a neighbour that makes up thousands of
// senders, fill only their own part, and the others' messages go out
// among the first.
func TestRelayTurns(t *testing.T) {
	ids := make([]mesh.ID, 8)
	for i := range ids {
		id, err := mesh.NewIdentity()
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id.ID
	}
	hop, p1, p2, p3, flooder, honest1, honest2 := ids[0], ids[1], ids[2], ids[3], ids[4], ids[5], ids[6]
	r := newRelay()
	msg := make([]byte, 1000)
	floodTaken := 0
	for range 10000 {
		if r.push(hop, &relayItem{b: msg, prev: p1, by: flooder}) {
			floodTaken++
		}
	}
	mintedTaken := 0
	for i := range 10000 {
		if r.push(hop, &relayItem{b: msg, prev: p3, by: mesh.ID(fmt.Sprintf("minted%d", i))}) {
			mintedTaken++
		}
	}
	const honest = 20
	for range honest {
		if !r.push(hop, &relayItem{b: msg, prev: p1, by: honest1}) || !r.push(hop, &relayItem{b: msg, prev: p2, by: honest2}) {
			t.Fatal("an honest sender's message was refused beside a flood")
		}
	}
	if max := maxLaneBytes / (len(msg) + queuedOverhead); floodTaken > max {
		t.Fatalf("a flooding sender queued %d messages, bound %d", floodTaken, max)
	}
	if max := maxPrevBytes / (len(msg) + queuedOverhead); mintedTaken > max {
		t.Fatalf("a neighbour's made-up senders queued %d messages, bound %d", mintedTaken, max)
	}
	// p1's turns alternate between the flooder and honest1, and p1, p2
	// and p3 take turns: every honest message is among the first
	// 2*3*honest sent.
	left := 2 * honest
	sent := 0
	for left > 0 {
		it := r.pop(hop)
		if it == nil {
			t.Fatalf("queue empty with %d honest messages unsent", left)
		}
		sent++
		if it.by == honest1 || it.by == honest2 {
			left--
		}
	}
	if sent > 2*3*honest {
		t.Fatalf("the honest messages went out among the first %d, want at most %d", sent, 2*3*honest)
	}
	for r.pop(hop) != nil {
	}
	if q := r.queued(); q != 0 || len(r.perPrev) != 0 || len(r.hops) != 0 {
		t.Fatalf("drained relay holds %d bytes, %d neighbours, %d hops", q, len(r.perPrev), len(r.hops))
	}
	t.Logf("flood: %d of 10000 queued; made-up senders: %d of 10000; honest out among the first %d", floodTaken, mintedTaken, sent)
}

// TestServingTurns: the routed calls addressed to this node are served in
// turns by sender, at most maxServingPerSender of one sender at once, and
// a sender that floods queues only up to its bound.
func TestServingTurns(t *testing.T) {
	var c serving
	mk := func(from string) *envelope {
		return &envelope{Path: []mesh.ID{mesh.ID(from), "m", "d"}, Body: make([]byte, 1000)}
	}
	flooded := 0
	for range 10000 {
		if c.add(mk("flooder")) {
			flooded++
		}
	}
	if max := maxServingQueuePerSender / (1000 + queuedOverhead); flooded > max {
		t.Fatalf("a flooding sender queued %d calls, bound %d", flooded, max)
	}
	const others = 50
	for i := range others {
		if !c.add(mk(fmt.Sprintf("honest%d", i))) {
			t.Fatal("an honest sender's call was refused beside a flood")
		}
	}
	running := map[mesh.ID]int{}
	got := 0
	for e := c.take(""); e != nil; e = c.take("") {
		running[e.Path[0]]++
		if e.Path[0] != "flooder" {
			got++
		}
	}
	if running["flooder"] != maxServingPerSender || got != others {
		t.Fatalf("served at once: %d of the flooder's (bound %d), %d of %d others'", running["flooder"], maxServingPerSender, got, others)
	}
	// One of the flooder's calls ends: the next is the flooder's own.
	if e := c.take("flooder"); e == nil || e.Path[0] != "flooder" {
		t.Fatalf("after a flooder's call ended: %+v", e)
	}
}
