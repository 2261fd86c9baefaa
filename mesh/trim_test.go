package mesh_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestNeighboursTrimmingAtOnceLeaveTheNodeItsLinks links node X to five
// neighbours, each of which holds one more link than its target and finds
// X the only link it may drop: X's record lists five neighbours, more than
// the two each must leave it. All five trim at once, as when they read the
// same record (in TestRTCTenNodesSurviveRendezvousLoss a node fell from
// five links to none in under a second). Each asks X first, and X lets
// only three go: it keeps two.
func TestNeighboursTrimmingAtOnceLeaveTheNodeItsLinks(t *testing.T) {
	const neighbours, spare = 5, 2
	nw := meshtest.NewNetwork()
	opt := meshtest.Options{Configure: func(c *mesh.Config) {
		meshtest.Fast(c)
		c.ManualLinks = true
		c.TargetPeers, c.LowPeers, c.HighPeers = 1, 1, 8
		c.IdleTimeout = time.Millisecond // links idle at once: trim may take them
	}}
	x := nw.NewNode(t, "x", opt)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ns []*mesh.Node
	for i := range neighbours {
		n := nw.NewNode(t, fmt.Sprint("n", i), opt)
		// A leaf of its own, whose record (one neighbour) trim spares.
		leaf := nw.NewNode(t, fmt.Sprint("leaf", i), opt)
		for _, to := range []*mesh.Node{x, leaf} {
			if err := n.Connect(ctx, to.ID()); err != nil {
				t.Fatal(err)
			}
		}
		ns = append(ns, n)
	}
	testutil.WaitFor(t, 30*time.Second, "every neighbour to read x's record with its five links", func() bool {
		for _, n := range ns {
			r, ok := n.Lookup(x.ID())
			if !ok || len(r.Neighbors) != neighbours {
				return false
			}
			for _, p := range n.Peers() {
				if time.Since(p.Since) < time.Second { // trim spares young links
					return false
				}
			}
		}
		return true
	})
	var wg sync.WaitGroup
	var mu sync.Mutex
	dropped := 0
	for _, n := range ns {
		wg.Go(func() {
			if mesh.Trim(n, spare) == x.ID() {
				mu.Lock()
				dropped++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if dropped != neighbours-spare {
		t.Fatalf("%d of x's %d neighbours dropped it at once, want %d: x keeps %d links", dropped, neighbours, neighbours-spare, neighbours-dropped)
	}
}

// TestTrimRefusedForTooLongDropsAllTheSame: a peer that says no to every
// trim while its record lists more links than it must keep would hold its
// slot for good. Its no holds for TrimRefuseLimit; then the link goes.
func TestTrimRefusedForTooLongDropsAllTheSame(t *testing.T) {
	n, x := refusingNeighbour(t)
	for range 3 {
		if got := mesh.Trim(n, 2); got != "" {
			t.Fatalf("n dropped %s while x says no", got)
		}
	}
	mesh.AgeTrimRefusal(n, x.ID(), mesh.TrimRefuseLimit)
	if got := mesh.Trim(n, 2); got != x.ID() {
		t.Fatalf("n dropped %q after x said no for %v, want x", got, mesh.TrimRefuseLimit)
	}
}

// TestTrimRefusedLongAgoDoesNotCount: a peer's no, once the peer has not
// been asked for a while (n fell back to its target, or the record caught
// up), counts no more. Its next no starts a new run: it spares the link,
// where counting from the old no dropped an honest peer at its first no
// in an hour (one said to a trim while links it had let go were leaving).
func TestTrimRefusedLongAgoDoesNotCount(t *testing.T) {
	n, x := refusingNeighbour(t)
	if got := mesh.Trim(n, 2); got != "" {
		t.Fatalf("n dropped %s while x says no", got)
	}
	mesh.PauseTrimAsks(n, x.ID(), time.Hour)
	if got := mesh.Trim(n, 2); got != "" {
		t.Fatalf("n dropped %s at x's first no in an hour", got)
	}
	// The new run holds for TrimRefuseLimit, as the first did.
	mesh.AgeTrimRefusal(n, x.ID(), mesh.TrimRefuseLimit)
	if got := mesh.Trim(n, 2); got != x.ID() {
		t.Fatalf("n dropped %q after x said no for %v, want x", got, mesh.TrimRefuseLimit)
	}
}

// refusingNeighbour links n to x, which says no to every trim, and to a
// leaf; x's record, which n has read, lists four links, so that n's trim
// with spare 2 asks x and only x.
func refusingNeighbour(t *testing.T) (n, x *mesh.Node) {
	t.Helper()
	nw := meshtest.NewNetwork()
	opt := meshtest.Options{Configure: func(c *mesh.Config) {
		meshtest.Fast(c)
		c.ManualLinks = true
		c.TargetPeers, c.LowPeers, c.HighPeers = 1, 1, 8
		c.IdleTimeout = time.Millisecond
	}}
	x = nw.NewNode(t, "x", opt)
	mesh.RefuseTrims(x)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n = nw.NewNode(t, "n", opt)
	for i := range 3 {
		// x's other links, so that its record says it can spare n.
		o := nw.NewNode(t, fmt.Sprint("o", i), opt)
		if err := x.Connect(ctx, o.ID()); err != nil {
			t.Fatal(err)
		}
	}
	leaf := nw.NewNode(t, "leaf", opt)
	for _, to := range []*mesh.Node{x, leaf} {
		if err := n.Connect(ctx, to.ID()); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 30*time.Second, "n to read x's record with its four links", func() bool {
		r, ok := n.Lookup(x.ID())
		if !ok || len(r.Neighbors) != 4 {
			return false
		}
		for _, p := range n.Peers() {
			if time.Since(p.Since) < time.Second {
				return false
			}
		}
		return true
	})
	return n, x
}
