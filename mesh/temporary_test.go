package mesh_test

import (
	"context"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestTemporaryLinksBeyondHighPeers: a node whose HighPeers are taken
// refuses another ordinary link but takes (and makes) temporary ones, for
// transfers, up to MaxTemporary more, and marks them temporary on both
// ends; beyond that it refuses those too.
func TestTemporaryLinksBeyondHighPeers(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	conf := func(c *mesh.Config) {
		c.ManualLinks = true
		c.TargetPeers, c.LowPeers, c.HighPeers = 2, 1, 2
		c.MaxTemporary = 3
	}
	hub := nw.NewNode(t, "hub", meshtest.Options{Configure: conf})
	var others []*mesh.Node
	for range 9 {
		others = append(others, nw.NewNode(t, "n", meshtest.Options{Configure: conf}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, o := range others[:2] {
		if err := o.Connect(ctx, hub.ID()); err != nil {
			t.Fatalf("ordinary link under HighPeers: %v", err)
		}
	}
	// The refused nodes are not used again: one end of a refused link
	// may hold it for a moment.
	if err := others[7].Connect(ctx, hub.ID()); err == nil {
		t.Fatal("an ordinary link beyond HighPeers was taken")
	}
	if err := hub.Connect(ctx, others[8].ID()); err == nil {
		t.Fatal("the hub made an ordinary link beyond HighPeers")
	}
	// Temporary links, either way: two inbound, one outbound.
	if err := others[2].Expand(ctx, hub.ID()); err != nil {
		t.Fatalf("inbound temporary link: %v", err)
	}
	if err := others[3].Expand(ctx, hub.ID()); err != nil {
		t.Fatalf("inbound temporary link: %v", err)
	}
	if err := hub.Expand(ctx, others[4].ID()); err != nil {
		t.Fatalf("outbound temporary link: %v", err)
	}
	temporary := func(n *mesh.Node, peer mesh.ID) bool {
		for _, p := range n.Peers() {
			if p.ID == peer {
				return p.Temporary
			}
		}
		return false
	}
	// Each end registers the link in its own time: wait for both.
	testutil.WaitFor(t, 20*time.Second, "the hub's three links to be temporary on both ends", func() bool {
		for _, o := range others[2:5] {
			if !temporary(hub, o.ID()) || !temporary(o, hub.ID()) {
				return false
			}
		}
		return len(hub.Peers()) == 5
	})
	if err := others[5].Expand(ctx, hub.ID()); err == nil {
		t.Error("a temporary link beyond HighPeers + MaxTemporary was taken")
	}
	if err := hub.Expand(ctx, others[6].ID()); err == nil {
		t.Error("the hub made a temporary link beyond HighPeers + MaxTemporary")
	}
}
