package calls

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

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
