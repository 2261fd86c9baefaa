package calls

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// evilNode is a node without the service, linked to the given nodes, that
// speaks the call protocol by hand.
type evilNode struct {
	node *mesh.Node
	seq  uint64
}

func newEvilNode(t *testing.T, tn *testNet, to ...int) *evilNode {
	t.Helper()
	ev := &evilNode{node: tn.nw.NewNode(t, "evil", meshtest.Options{Configure: meshtest.Fast})}
	for _, i := range to {
		testutil.WaitFor(t, wait, "a link to the hostile node", func() bool {
			return ev.node.Connect(context.Background(), tn.nodes[i].ID()) == nil
		})
	}
	return ev
}

// ask sends a numbered call message to node to and returns the answer.
func (ev *evilNode) ask(t *testing.T, to mesh.ID, r request) ([]byte, error) {
	t.Helper()
	ev.seq++
	r.Seq = ev.seq
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	return ev.node.Request(ctx, to, Protocol, b)
}

// TestReservedSeatsCountForTheirMaker: a node that joins rooms as a
// member moving from an earlier owner, naming another node's sessions as
// its peers, has those seats reserved on its own count of seats, not on
// the named node's: it cannot use up that node's count and lock it out
// of every room the owner holds. (The reserved seats used to count as the
// named node's.)
func TestReservedSeatsCountForTheirMaker(t *testing.T) {
	testutil.CheckGoroutines(t)
	const limit = 4
	tn := newTestNet(t, 2, func(c *Config) { c.MaxSeatsPerNode = limit })
	owner, victim := tn.nodes[0].ID(), tn.nodes[1].ID()
	ev := newEvilNode(t, tn, 0)
	rooms := tn.roomsOwnedBy(t, 0, "reserve", limit+1)
	for i, room := range rooms[:limit] {
		// Refused once its own count is used up: that is the point.
		ev.ask(t, owner, request{Op: opJoin, Room: room, Session: fmt.Sprint("evil", i), Refresh: true,
			Peer: &Member{Node: victim, Session: fmt.Sprint("ghost", i)}})
	}
	a := tn.open(t, 1)
	res, err := tn.svcs[1].Join(context.Background(), a.ID(), rooms[limit])
	if err != nil || res.State != "joined" {
		t.Fatalf("the named node's own join after the reservations: %+v, %v", res, err)
	}
	own := tn.svcs[0].own
	own.mu.Lock()
	defer own.mu.Unlock()
	if n := own.byNode[ev.node.ID()]; n > limit {
		t.Fatalf("the hostile node holds %d seats, limit %d", n, limit)
	}
	if n := own.byNode[victim]; n != 1 {
		t.Fatalf("the named node's count is %d, want its one seat", n)
	}
}

// holdingNet is n nodes whose only links are to a hostile node in the
// middle; node 0 cannot link to node 1 (the owner of the test's rooms),
// and the hostile node carries no links or bridges between them, so node
// 0's call messages to node 1 go only through it.
type holdingNet struct {
	*testNet
	h     *hostileRelay
	owner mesh.ID
	mu    sync.Mutex
	held  []envelope
	// passed holds the nonce of the last message passed on, by op and
	// session.
	passed map[string][]byte
}

func newHoldingNet(t *testing.T, n int) *holdingNet {
	t.Helper()
	tn := &testNet{nw: meshtest.NewNetwork(), meshConf: func(c *mesh.Config) { c.ManualLinks = true }}
	for i := range n {
		tn.add(t, fmt.Sprintf("n%d", i))
	}
	h := &hostileRelay{answers: make(map[string]int)}
	h.node = tn.nw.NewNode(t, "evil", meshtest.Options{Configure: func(c *mesh.Config) { meshtest.Fast(c); c.ManualLinks = true }})
	h.node.Handle(RouteProtocol, mesh.HandlerFunc(h.serve))
	for _, proto := range []string{"mesh/sig/1", "mesh/bridge/1"} {
		h.node.Handle(proto, mesh.HandlerFunc(func(context.Context, *mesh.Message) ([]byte, error) {
			return nil, errors.New("evil: not passed on")
		}))
	}
	h.set(passOut, passBack)
	for _, n := range tn.nodes {
		testutil.WaitFor(t, wait, "a link to the hostile node", func() bool { return h.node.Connect(context.Background(), n.ID()) == nil })
	}
	hn := &holdingNet{testNet: tn, h: h, owner: tn.nodes[1].ID(), passed: make(map[string][]byte)}
	tn.nw.Block(tn.nodes[0].ID(), hn.owner)
	tn.converge(t)
	testutil.WaitFor(t, wait, "a route to the owner through the hostile node", func() bool { return tn.svcs[0].pathTo(hn.owner) != nil })
	return hn
}

// hold makes the hostile node hold back the messages of op for session,
// claiming it could not pass them on, and pass on the rest.
func (hn *holdingNet) hold(op, session string) {
	hn.h.set(func(e envelope) []envelope {
		var r request
		json.Unmarshal(e.Body, &r)
		hn.mu.Lock()
		defer hn.mu.Unlock()
		if r.Op == op && (r.Session == session || r.From == session) {
			hn.held = append(hn.held, e)
			f := envelope{Path: e.Path, Hop: e.Hop - 1, Back: true, Nonce: e.Nonce, Fail: "evil: no link"}
			return []envelope{f}
		}
		hn.passed[r.Op+" "+r.Session] = e.Nonce
		return passOut(e)
	}, passBack)
}

// release passes on what the hostile node held back, and waits until the
// owner has answered and sent its notices.
func (hn *holdingNet) release(t *testing.T) {
	t.Helper()
	hn.mu.Lock()
	hs := hn.held
	hn.held = nil
	hn.mu.Unlock()
	if len(hs) == 0 {
		t.Fatal("the hostile node held nothing: the test shows nothing")
	}
	for _, e := range hs {
		out := passOut(e)[0]
		raw, _ := json.Marshal(out)
		if err := hn.h.node.Send(context.Background(), out.Path[out.Hop], RouteProtocol, raw); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range hs {
		testutil.WaitFor(t, wait, "an answer to what was held back", func() bool { return hn.h.answersTo(e.Nonce) > 0 })
	}
	for _, s := range hn.svcs {
		flushJobs(t, s)
	}
}

// quiet fails the test if the page heard the other come or go.
func quiet(t *testing.T, s *Session, when string) {
	t.Helper()
	for _, ev := range drain(s) {
		if ev.Type == "other_left" || ev.Type == "other_joined" {
			t.Fatalf("the other page heard %+v %s", ev, when)
		}
	}
}

// TestHeldBackLeaveAndJoin: a hostile node in the middle of the only
// route from a member's node to the room's owner holds back a leave (and,
// later, a join) and claims it could not pass it on; the member's node
// cannot link to the owner, so its leave (its join) fails. When the page
// has joined again, the leave held back does not free its new seat; when
// the page has left after its join failed, the join held back does not
// seat it. The owner takes a session's joins and leaves only in the order
// its node sent them. (It used to act on them in the order they came:
// the other page heard "other_left", then "other_joined" from a page that
// had gone.)
func TestHeldBackLeaveAndJoin(t *testing.T) {
	testutil.CheckGoroutines(t)
	hn := newHoldingNet(t, 2)
	ctx := context.Background()
	rooms := hn.roomsOwnedBy(t, 1, "landing", 2)

	// A leave held back until the page joined again.
	a, b := hn.open(t, 0), hn.open(t, 1)
	joinPair(t, rooms[0], a, b)
	hn.hold(opLeave, a.ID())
	if err := hn.svcs[0].Leave(ctx, a.ID(), rooms[0]); err != nil {
		t.Fatal(err)
	}
	hn.h.set(passOut, passBack)
	if res, err := hn.svcs[0].Join(ctx, a.ID(), rooms[0]); err != nil || res.State != "joined" || res.Peer == nil {
		t.Fatalf("join again: %+v, %v", res, err)
	}
	drain(a)
	quiet(t, b, "while a's leave was held back")
	hn.release(t)
	quiet(t, b, "when a's leave held back arrived")
	if got := hn.svcs[1].own.members(rooms[0]); len(got) != 2 {
		t.Fatalf("the owner holds %+v after a's leave held back arrived", got)
	}

	// A join held back until the page left.
	c, d := hn.open(t, 0), hn.open(t, 1)
	if res, err := hn.svcs[1].Join(ctx, d.ID(), rooms[1]); err != nil || res.State != "joined" {
		t.Fatalf("d's join: %+v, %v", res, err)
	}
	hn.hold(opJoin, c.ID())
	if _, err := hn.svcs[0].Join(ctx, c.ID(), rooms[1]); err == nil {
		t.Fatal("c's join held back succeeded")
	}
	// The leave after the failed join gets through.
	testutil.WaitFor(t, wait, "the leave after c's failed join to be answered", func() bool {
		hn.mu.Lock()
		nonce := hn.passed[opLeave+" "+c.ID()]
		hn.mu.Unlock()
		return nonce != nil && hn.h.answersTo(nonce) > 0
	})
	drain(d)
	hn.release(t)
	quiet(t, d, "when c's join held back arrived")
	if got := hn.svcs[1].own.members(rooms[1]); len(got) != 1 || got[0] != member(d) {
		t.Fatalf("the owner holds %+v after c's join held back arrived", got)
	}
}

// TestHeldBackOffer: a hostile node in the middle of the only route
// between two members' nodes holds back a page's offer and claims it
// could not pass it on; the page's next offer gets through. The offer
// held back, passed on later, does not reach the other page: an offer or
// answer older than one the page has had from the same peer is refused.
// (The other page took the old offer after the new one and negotiated
// again with a description the first page had dropped.)
func TestHeldBackOffer(t *testing.T) {
	testutil.CheckGoroutines(t)
	hn := newHoldingNet(t, 2)
	ctx := context.Background()
	room := hn.roomOwnedBy(t, 1, "hallway")
	a, b := hn.open(t, 0), hn.open(t, 1)
	joinPair(t, room, a, b)
	first := strings.Replace(sdpOffer, "o=- 1 2", "o=- 1 3", 1)
	second := strings.Replace(sdpOffer, "o=- 1 2", "o=- 1 4", 1)
	hn.hold(opSignal, a.ID())
	if err := hn.svcs[0].Signal(ctx, a.ID(), room, Signal{Type: "offer", SDP: first}); err == nil {
		t.Fatal("the offer held back was delivered")
	}
	hn.h.set(passOut, passBack)
	if err := hn.svcs[0].Signal(ctx, a.ID(), room, Signal{Type: "offer", SDP: second}); err != nil {
		t.Fatal(err)
	}
	if ev := expect(t, b, "offer")[0]; ev.SDP != second {
		t.Fatalf("b heard the offer %q", ev.SDP)
	}
	hn.release(t)
	if evs := drain(b); len(evs) != 0 {
		t.Fatalf("b heard %+v when the offer held back arrived", evs)
	}
}

// TestLeftMemoryBounded: an owner remembers a bounded number of leaves,
// however many a node sends for sessions it makes up, and forgets them
// once no join sent before them can still arrive.
func TestLeftMemoryBounded(t *testing.T) {
	cfg := DefaultConfig()
	o := newOwner(&cfg)
	now := time.Now()
	for i := range 20000 {
		o.leave("evil", "room", fmt.Sprint("s", i), uint64(i+1), now)
	}
	if len(o.left) > maxLeft || len(o.leftOrder) > maxLeft {
		t.Fatalf("remembers %d leaves (%d in order), bound %d", len(o.left), len(o.leftOrder), maxLeft)
	}
	// The latest are remembered: a join sent before one is refused.
	req := &request{Op: opJoin, Room: "room", Session: "s19999", Seq: 1}
	if _, _, err := o.join("evil", req, "", now); err != errStale {
		t.Fatalf("a join sent before the session's leave: %v", err)
	}
	o.leave("evil", "room", "late", 1, now.Add(seqKeep+time.Second))
	if len(o.left) != 1 {
		t.Fatalf("remembers %d leaves after the others went stale", len(o.left))
	}
}

// TestSeqAfterRestartWithClockBack: a node that restarts with its clock
// set back numbers its messages below those its last run sent, which the
// owner still remembers; it learns where to count from and its page
// still joins. (Its messages were refused until the owner forgot it,
// which it never did while the node kept renewing.)
func TestSeqAfterRestartWithClockBack(t *testing.T) {
	testutil.CheckGoroutines(t)
	tn := newTestNet(t, 2)
	room := tn.roomOwnedBy(t, 1, "clock")
	// The node's last run counted from an hour ahead of this clock.
	ahead := uint64(time.Now().Add(time.Hour).UnixNano())
	m, first, err := tn.svcs[1].taken.begin(tn.nodes[0].ID(), ahead, true, time.Now())
	if !first || err != nil {
		t.Fatal(first, err)
	}
	tn.svcs[1].taken.end(m, nil, nil, false)
	a := tn.open(t, 0)
	res, err := tn.svcs[0].Join(context.Background(), a.ID(), room)
	if err != nil || res.State != "joined" {
		t.Fatalf("join after the restart: %+v, %v", res, err)
	}
	if got := tn.svcs[1].own.members(room); len(got) != 1 || got[0] != member(a) {
		t.Fatalf("owner holds %+v", got)
	}
}

// TestHungMemberHoldsBackOnlyItsNotices: a node that holds seats in
// several rooms and never answers the owner's notices (it joins each room
// with a second session, so that the owner tells the first) holds back
// only the notices to itself: two honest pages that meet in another room
// at the same owner still hear each other at once. (The owner sent all
// notices from four senders, which the hung node kept busy.)
func TestHungMemberHoldsBackOnlyItsNotices(t *testing.T) {
	testutil.CheckGoroutines(t)
	// Notices to the hung node wait as long as the test runs, and no
	// renewal tells the pages what the notices should.
	tn := newTestNet(t, 3, func(c *Config) { c.RequestTimeout, c.Refresh, c.Lease = 10*wait, 10*wait, 20*wait })
	owner := tn.nodes[0].ID()
	ev := newEvilNode(t, tn, 0)
	release := make(chan struct{})
	var hung atomic.Int64
	ev.node.Handle(Protocol, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		hung.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, errors.New("evil: hung")
	}))
	defer close(release)
	const rooms = 8 // twice the senders there used to be
	for i, room := range tn.roomsOwnedBy(t, 0, "trap", rooms) {
		for _, s := range []string{"first", "second"} {
			if _, err := ev.ask(t, owner, request{Op: opJoin, Room: room, Session: fmt.Sprint(s, i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	testutil.WaitFor(t, wait, "the hung node to hold a notice", func() bool { return hung.Load() > 0 })
	a, b := tn.open(t, 1), tn.open(t, 2)
	joinPair(t, tn.roomOwnedBy(t, 0, "honest"), a, b)
}

// TestProbeNotQueuedAskedLater: when the queue to a member's node is full
// as its seat's lease runs out, the owner asks at a later round instead:
// the seat is not left waiting for an answer to a question never sent.
func TestProbeNotQueuedAskedLater(t *testing.T) {
	svc := idleService(t) // Serve does not run: the queue stays full
	member := newIDs(t, 1)[0].ID
	now := time.Now()
	if _, _, err := svc.own.join(member, &request{Op: opJoin, Seq: 1, Room: "attic", Session: "s1"}, "", now); err != nil {
		t.Fatal(err)
	}
	for range maxJobsPerDest {
		if !svc.enqueue(member, func(context.Context) {}) {
			t.Fatal("queue full before its bound")
		}
	}
	// Online, so that it is asked rather than its seat freed.
	svc.expire(now.Add(svc.cfg.Lease+time.Second), func(mesh.ID) bool { return true })
	svc.own.mu.Lock()
	defer svc.own.mu.Unlock()
	if st := svc.own.rooms["attic"].seats[0]; st.probing {
		t.Fatal("the seat waits for an answer to a probe that was never queued")
	}
}
