package calls

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// gate is a node whose call messages to one other node fail (or hang
// until they time out, with hang) while it is shut: links too busy for a
// renewal to get through, while both nodes are online.
type gate struct {
	*mesh.Node
	hang    bool
	mu      sync.Mutex
	to      mesh.ID
	blocked atomic.Int64
	// holdLeaves, when set, holds leaves until a join has been answered.
	holdLeaves chan struct{}
	leavesDone atomic.Int64 // held leaves sent or given up
}

func (g *gate) shut(to mesh.ID) {
	g.mu.Lock()
	g.to = to
	g.mu.Unlock()
}

func (g *gate) Request(ctx context.Context, to mesh.ID, proto string, payload []byte, opts ...mesh.SendOption) ([]byte, error) {
	g.mu.Lock()
	shut := g.to != "" && g.to == to
	hold := g.holdLeaves
	g.mu.Unlock()
	if hold != nil && bytes.Contains(payload, []byte(`"op":"leave"`)) {
		defer g.leavesDone.Add(1)
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !shut {
		b, err := g.Node.Request(ctx, to, proto, payload, opts...)
		if hold != nil && err == nil && bytes.Contains(payload, []byte(`"op":"join"`)) {
			g.mu.Lock()
			if g.holdLeaves == hold {
				close(hold)
				g.holdLeaves = nil
			}
			g.mu.Unlock()
		}
		return b, err
	}
	g.blocked.Add(1)
	if g.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return nil, errors.New("gate: shut")
}

// gatedNet starts n nodes; node 0's service talks through a gate.
func gatedNet(t *testing.T, n int, hang bool, configure ...func(*Config)) (*testNet, *gate) {
	t.Helper()
	g := &gate{hang: hang}
	tn := &testNet{nw: meshtest.NewNetwork(), wrap: func(name string, node *mesh.Node) Node {
		if name != "n0" {
			return node
		}
		g.Node = node
		return g
	}}
	for i := range n {
		tn.add(t, fmt.Sprintf("n%d", i), configure...)
	}
	tn.converge(t)
	// The tests shut the gate to a node that is online: one that some
	// record lists as a neighbour, or node 0 takes it for gone and skips it.
	testutil.WaitFor(t, wait, "node 0 to see every node linked", func() bool {
		for _, nd := range tn.nodes[1:] {
			if !tn.svcs[0].linked(nd.ID()) {
				return false
			}
		}
		return true
	})
	return tn, g
}

func (o *owner) overdueCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.overdue
}

// TestLateRenewalsKeepSeat: a member whose renewals cannot reach the
// owner while its node is online (links busy under a burst) keeps its
// seat past the lease, so a third joiner is refused rather than let into
// the call; when that member's page goes away and its leave is lost too,
// the owner learns it by asking and the seat is freed.
func TestLateRenewalsKeepSeat(t *testing.T) {
	testutil.CheckGoroutines(t)
	tn, g := gatedNet(t, 4, false, func(c *Config) { c.Lease = 2 * time.Second })
	ctx := context.Background()
	a, b, c := tn.open(t, 0), tn.open(t, 1), tn.open(t, 2)
	const ownerIdx = 3
	room := tn.roomOwnedBy(t, ownerIdx, "lobby")
	own := tn.svcs[ownerIdx].own
	joinPair(t, room, a, b)

	g.shut(tn.nodes[ownerIdx].ID())
	start := own.overdueCount()
	testutil.WaitFor(t, wait, "a's seat to run past its lease while its renewals fail", func() bool {
		return own.overdueCount() > start && g.blocked.Load() >= 2
	})
	if got := own.members(room); len(got) != 2 {
		t.Fatalf("owner holds %+v after a's renewals failed", got)
	}
	res, err := tn.svcs[2].Join(ctx, c.ID(), room)
	if err != nil || res.State != "full" {
		t.Fatalf("a third joiner while a's renewals fail: %+v, %v", res, err)
	}
	if p := peerOf(a); p == nil || *p != member(b) {
		t.Fatalf("a's peer is %+v", p)
	}
	if p := peerOf(b); p == nil || *p != member(a) {
		t.Fatalf("b's peer is %+v", p)
	}
	for _, ev := range drain(b) {
		if ev.Type == "other_left" || ev.Type == "other_joined" {
			t.Fatalf("b heard %+v while a's renewals failed", ev)
		}
	}

	// a's page goes; its leave does not get through either.
	blockedBefore := g.blocked.Load()
	a.Close()
	testutil.WaitFor(t, wait, "b to hear that a left", func() bool {
		for _, ev := range drain(b) {
			if ev.Type == "other_left" {
				return true
			}
		}
		return false
	})
	if g.blocked.Load() == blockedBefore {
		t.Fatal("a's leave was not blocked: the test shows nothing")
	}
	if got := own.members(room); len(got) != 1 || got[0] != member(b) {
		t.Fatalf("owner holds %+v after a's page went", got)
	}
	c2 := tn.open(t, 2)
	if res, err := tn.svcs[2].Join(ctx, c2.ID(), room); err != nil || res.State != "joined" || res.Peer == nil {
		t.Fatalf("a newcomer after a's page went: %+v, %v", res, err)
	}
}

// TestHungOwnerHoldsBackOnlyItsRooms: a node whose renewal hangs at one
// owner goes on renewing its seats at the others.
func TestHungOwnerHoldsBackOnlyItsRooms(t *testing.T) {
	testutil.CheckGoroutines(t)
	// A long lease: no probe renews a seat in the owner's stead.
	tn, g := gatedNet(t, 3, true, func(c *Config) { c.Lease = time.Minute })
	ctx := context.Background()
	r1, r2 := tn.roomOwnedBy(t, 1, "one"), tn.roomOwnedBy(t, 2, "two")
	a1, a2 := tn.open(t, 0), tn.open(t, 0)
	for _, j := range []struct {
		s    *Session
		room string
	}{{a1, r1}, {a2, r2}} {
		if res, err := tn.svcs[0].Join(ctx, j.s.ID(), j.room); err != nil || res.State != "joined" {
			t.Fatalf("join %s: %+v, %v", j.room, res, err)
		}
	}
	g.shut(tn.nodes[1].ID())
	testutil.WaitFor(t, wait, "a renewal to hang at node 1", func() bool { return g.blocked.Load() > 0 })
	hung := time.Now()
	own := tn.svcs[2].own
	testutil.WaitFor(t, wait, "a2's seat at node 2 to be renewed a while after a renewal at node 1 hung", func() bool {
		own.mu.Lock()
		defer own.mu.Unlock()
		r := own.rooms[r2]
		if r == nil || len(r.seats) != 1 {
			return false
		}
		// Four renewal periods: a round that was under way when the
		// renewal hung cannot account for it.
		return r.seats[0].renewed.After(hung.Add(4 * 250 * time.Millisecond))
	})
}

// TestLiveOwnerUnreachable: a joiner that cannot reach the room's owner
// while that node is online (others link to it) is refused with
// ErrNoOwner; the next node down never seats it, which would make two
// owners of one room.
func TestLiveOwnerUnreachable(t *testing.T) {
	testutil.CheckGoroutines(t)
	tn, g := gatedNet(t, 3, false)
	ctx := context.Background()
	ids := []mesh.ID{tn.nodes[0].ID(), tn.nodes[1].ID(), tn.nodes[2].ID()}
	// A room that node 1 owns and node 2 would take after it.
	var room string
	for k := 0; room == ""; k++ {
		if r := fmt.Sprintf("cellar%d", k); rank(r, ids)[0] == ids[1] && rank(r, ids)[1] == ids[2] {
			room = r
		}
	}
	g.shut(ids[1])
	a := tn.open(t, 0)
	if res, err := tn.svcs[0].Join(ctx, a.ID(), room); !errors.Is(err, ErrNoOwner) {
		t.Fatalf("join with the owner unreachable: %+v, %v; want ErrNoOwner", res, err)
	}
	if got := tn.svcs[2].own.members(room); len(got) != 0 {
		t.Fatalf("the next node down seated %+v", got)
	}
	if g.blocked.Load() == 0 {
		t.Fatal("the join never tried the owner")
	}
	// Reachable again, the owner seats the joiner.
	g.shut("")
	if res, err := tn.svcs[0].Join(ctx, a.ID(), room); err != nil || res.State != "joined" {
		t.Fatalf("join with the owner back: %+v, %v", res, err)
	}
	if got := tn.svcs[1].own.members(room); len(got) != 1 || got[0] != member(a) {
		t.Fatalf("owner holds %+v", got)
	}
}

// TestStaleLeaveAfterFailedJoin: a failed join sends a leave after it, in
// case the owner seated the session before the answer was lost; a page
// that joins again before that leave arrives keeps its new seat.
func TestStaleLeaveAfterFailedJoin(t *testing.T) {
	testutil.CheckGoroutines(t)
	// No renewal or lease within the test: only joins and leaves move
	// the seat.
	tn, g := gatedNet(t, 2, false, func(c *Config) {
		c.RequestTimeout = 2 * time.Second
		c.Refresh, c.Lease = time.Minute, 2*time.Minute
	})
	ctx := context.Background()
	room := tn.roomOwnedBy(t, 1, "stairs")
	a := tn.open(t, 0)
	g.mu.Lock()
	g.holdLeaves = make(chan struct{})
	g.mu.Unlock()
	g.shut(tn.nodes[1].ID())
	if _, err := tn.svcs[0].Join(ctx, a.ID(), room); !errors.Is(err, ErrNoOwner) {
		t.Fatalf("join with the owner unreachable: %v", err)
	}
	// The leave that follows the failed join is held until the page's
	// next join has been answered (or it gives up).
	g.shut("")
	if res, err := tn.svcs[0].Join(ctx, a.ID(), room); err != nil || res.State != "joined" {
		t.Fatalf("join again: %+v, %v", res, err)
	}
	flushJobs(t, tn.svcs[0])
	if got := tn.svcs[1].own.members(room); len(got) != 1 || got[0] != member(a) {
		t.Fatalf("owner holds %+v after a stale leave; want the page that joined again", got)
	}
}

// flushJobs returns once every message svc queued before the call has
// been sent or given up: it queues a mark behind every lane's messages
// and waits for them all.
func flushJobs(t *testing.T, svc *Service) {
	t.Helper()
	svc.out.mu.Lock()
	var lanes []mesh.ID
	for to := range svc.out.lanes {
		lanes = append(lanes, to)
	}
	svc.out.mu.Unlock()
	done := make(chan struct{}, len(lanes))
	for _, to := range lanes {
		if !svc.enqueue(to, func(context.Context) { done <- struct{}{} }) {
			t.Fatal("no room in the queue for a mark")
		}
	}
	for range lanes {
		select {
		case <-done:
		case <-time.After(wait):
			t.Fatal("the senders did not get through the queue")
		}
	}
}
