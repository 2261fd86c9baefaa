package mesh_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// hungCandidates is a transport whose candidate list never comes, as with a
// rendezvous that accepts the /peers request and then hangs.
type hungCandidates struct {
	*meshtest.Transport
	asked, abandoned atomic.Int32
}

func (h *hungCandidates) Candidates(ctx context.Context) ([]mesh.ID, error) {
	h.asked.Add(1)
	<-ctx.Done()
	h.abandoned.Add(1)
	return nil, ctx.Err()
}

// serveNode runs a node made from cfg until the test ends.
func serveNode(t *testing.T, cfg mesh.Config) *mesh.Node {
	t.Helper()
	n, err := mesh.NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("node %s: %v", cfg.Name, err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("node %s did not stop", cfg.Name)
		}
	})
	return n
}

// TestHungRendezvousDoesNotStopMaintenance: while the transport's
// candidate list hangs, the node still dials its bootstrap nodes and the
// directory's, and the hung request is given up after CandidatesTimeout.
func TestHungRendezvousDoesNotStopMaintenance(t *testing.T) {
	nw := meshtest.NewNetwork()
	a := nw.NewNode(t, "a", meshtest.Options{Configure: func(c *mesh.Config) { c.ManualLinks = true }})
	c := nw.NewNode(t, "c", meshtest.Options{Configure: func(c *mesh.Config) { c.ManualLinks = true }})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Connect(ctx, a.ID()); err != nil {
		t.Fatal(err)
	}

	ident, err := mesh.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	hung := &hungCandidates{Transport: nw.Transport(ident.ID)}
	cfg := mesh.DefaultConfig()
	cfg.Identity, cfg.Name, cfg.Transport = ident, "b", hung
	cfg.Bootstrap = []mesh.ID{a.ID()}
	cfg.TargetPeers, cfg.LowPeers = 2, 2
	cfg.MaintainInterval = 200 * time.Millisecond
	cfg.CandidatesTimeout = time.Second
	cfg.Logger = testLogger(t)
	b := serveNode(t, cfg)

	// a from the bootstrap list, then c from the directory a sends.
	testutil.WaitFor(t, 20*time.Second, "b to link a and c", func() bool { return hasPeer(b, a.ID()) && hasPeer(b, c.ID()) })
	testutil.WaitFor(t, 20*time.Second, "the hung candidate request to be given up", func() bool { return hung.abandoned.Load() > 0 })
	if n := hung.asked.Load() - hung.abandoned.Load(); n > 1 {
		t.Fatalf("%d candidate requests hang at once, want at most one", n)
	}
}
