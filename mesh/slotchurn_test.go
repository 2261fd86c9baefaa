package mesh_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestSlotsChurn: 50 nodes (HighPeers 6,
// MaxTemporary 2) while the test churns them for 1,500 steps: links cut
// from either end, ordinary and temporary dials, pairs that dial each
// other at once, a partition that cuts a third of the nodes off and heals,
// requests and one-way messages over whatever links there are. Then every
// node's slots are held by exactly its registered links (one slot per
// peer, none left by a link that ended), none holds more slots than its
// limits, and its queue budget holds nothing once the traffic has ended.
func TestSlotsChurn(t *testing.T) {
	testutil.CheckGoroutines(t)
	const (
		nodes, high, temporary = 50, 6, 2
		steps, workers         = 1500, 4
	)
	nw := meshtest.NewNetwork()
	conf := func(c *mesh.Config) {
		// meshtest's timers, not Fast's: 50 nodes gossiping every 10 ms
		// take both cores under -race. The test makes and cuts every
		// link, so that once it stops, nothing does: a link's slot left
		// behind, or a link registered without one, stays to be seen.
		c.ManualLinks = true
		c.TargetPeers, c.LowPeers, c.HighPeers, c.MaxTemporary = 4, 2, high, temporary
		c.PenaltyThreshold = -1 // links cut at random are not offences
	}
	var ns []*mesh.Node
	for i := range nodes {
		n := nw.NewNode(t, fmt.Sprintf("n%02d", i), meshtest.Options{Configure: conf})
		n.Handle("echo/1", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
			return m.Payload, nil
		}))
		n.Handle("note/1", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
			return nil, nil
		}))
		ns = append(ns, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// randomPeer is one of n's peers, or nil.
	randomPeer := func(rng *rand.Rand, n *mesh.Node) *mesh.PeerInfo {
		ps := n.Peers()
		if len(ps) == 0 {
			return nil
		}
		return &ps[rng.IntN(len(ps))]
	}
	// While the network is split, dials stay within a's side: a dial
	// across would wait out a bridge's HelloTimeout.
	var split atomic.Bool
	step := func(rng *rand.Rand, i int) {
		ai, bi := rng.IntN(nodes), rng.IntN(nodes)
		if split.Load() && (ai < nodes/3) != (bi < nodes/3) {
			bi = ai
		}
		a, b := ns[ai], ns[bi]
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		switch op := rng.IntN(10); {
		case op < 2:
			if p := randomPeer(rng, a); p != nil {
				a.Disconnect(p.ID)
			}
		case op < 4:
			a.Connect(sctx, b.ID())
		case op < 5:
			a.Expand(sctx, b.ID())
		case op < 6:
			// Both ends dial at once: one of the two links is dropped
			// on both ends, and they share the peer's slot meanwhile.
			var wg sync.WaitGroup
			wg.Go(func() { a.Connect(sctx, b.ID()) })
			wg.Go(func() { b.Connect(sctx, a.ID()) })
			wg.Wait()
		case op < 8:
			if p := randomPeer(rng, a); p != nil {
				a.Request(sctx, p.ID, "echo/1", make([]byte, rng.IntN(4<<10)))
			}
		default:
			if p := randomPeer(rng, a); p != nil {
				a.Send(sctx, p.ID, "note/1", make([]byte, rng.IntN(4<<10)))
			}
		}
		if i == steps/2 {
			var cut []mesh.ID
			for _, n := range ns[:nodes/3] {
				cut = append(cut, n.ID())
			}
			split.Store(true)
			nw.Partition(cut)
		}
		if i == steps/2+steps/10 {
			nw.Heal()
			split.Store(false)
		}
		if i%100 == 0 {
			t.Logf("step %d", i)
		}
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := w; i < steps; i += workers {
				step(rng, i)
			}
		})
	}
	wg.Wait()

	// Links in their hello, and those that lost a race and drain, end
	// within HelloTimeout: each node is checked until it is seen at rest,
	// its slots held by its links and none other.
	bad := func(n *mesh.Node) string {
		slots := mesh.SlotPeers(n)
		peers := n.Peers()
		ordinary := 0
		for _, p := range peers {
			if !p.Temporary {
				ordinary++
			}
		}
		if len(slots) > high+temporary || ordinary > high {
			return fmt.Sprintf("%d slots, %d links (%d ordinary): over the limits", len(slots), len(peers), ordinary)
		}
		if len(slots) != len(peers) {
			return fmt.Sprintf("%d slots, %d links", len(slots), len(peers))
		}
		for _, p := range peers {
			if slots[p.ID] != 1 {
				return fmt.Sprintf("peer %s: %d links hold its slot, 1 registered", p.ID.Short(), slots[p.ID])
			}
		}
		if u := mesh.QueueUseOf(n); u.Counted != 0 || u.Pooled != 0 {
			return fmt.Sprintf("the queue budget holds %d bytes (%d pooled) with no traffic", u.Counted, u.Pooled)
		}
		return ""
	}
	rest := map[mesh.ID]bool{}
	last := map[mesh.ID]string{}
	deadline := time.Now().Add(60 * time.Second)
	for len(rest) < nodes && time.Now().Before(deadline) {
		for _, n := range ns {
			if rest[n.ID()] {
				continue
			}
			if why := bad(n); why != "" {
				last[n.ID()] = why
			} else {
				rest[n.ID()] = true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, n := range ns {
		if !rest[n.ID()] {
			t.Errorf("node %s never at rest: %s", n.ID().Short(), last[n.ID()])
		}
	}
}
