package mesh_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// gatedTransport holds its first dial until release is closed or the
// dial's ctx ends; later dials go straight through.
type gatedTransport struct {
	*meshtest.Transport
	dials   atomic.Int64
	release chan struct{}
}

func (g *gatedTransport) Dial(ctx context.Context, id mesh.ID) (mesh.Conn, error) {
	if g.dials.Add(1) == 1 {
		select {
		case <-g.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.Transport.Dial(ctx, id)
}

// gatedPair makes two manual nodes on nw, a dialing through a gate.
func gatedPair(t *testing.T, nw *meshtest.Network) (a, b *mesh.Node, g *gatedTransport) {
	b = nw.NewNode(t, "b", meshtest.Options{Configure: func(c *mesh.Config) { c.ManualLinks = true }})
	ident, err := mesh.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	g = &gatedTransport{Transport: nw.Transport(ident.ID), release: make(chan struct{})}
	cfg := mesh.DefaultConfig()
	cfg.Identity, cfg.Name, cfg.Transport, cfg.ManualLinks = ident, "a", g, true
	a, err = mesh.NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("a's Serve: %v", err)
		}
	})
	return a, b, g
}

// TestConnectOutlivesAnotherCallersCancel: a Connect that waits for a dial
// another caller started (explore with its DialTimeout, a request given
// up) gets its link with its own ctx when that caller's ctx ends, not the
// other caller's context.Canceled.
func TestConnectOutlivesAnotherCallersCancel(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	a, b, _ := gatedPair(t, nw)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	firstCtx, firstCancel := context.WithCancel(ctx)
	defer firstCancel()
	first := make(chan error, 1)
	go func() { first <- a.Connect(firstCtx, b.ID()) }()
	testutil.WaitFor(t, 20*time.Second, "the first dial", func() bool { return mesh.Dialing(a, b.ID()) })
	second := make(chan error, 1)
	go func() { second <- a.Connect(ctx, b.ID()) }()
	testutil.WaitFor(t, 20*time.Second, "the second Connect to wait for the first dial", func() bool {
		return mesh.DialWaiters(a, b.ID()) == 1
	})
	firstCancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("the cancelled Connect returned %v, want context.Canceled", err)
	}
	if err := <-second; err != nil {
		t.Fatalf("the waiting Connect, its ctx alive, returned %v", err)
	}
	if !hasPeer(a, b.ID()) {
		t.Fatal("no link after the waiting Connect returned")
	}
}

// TestExpandJoiningConnectKeepsLinkOrdinary: Expand that waits for an
// ordinary dial in flight (the maintainer's, explore's) does not make the
// link it brings temporary, which dropIdle would then close.
func TestExpandJoiningConnectKeepsLinkOrdinary(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	a, b, g := gatedPair(t, nw)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	connected := make(chan error, 1)
	go func() { connected <- a.Connect(ctx, b.ID()) }()
	testutil.WaitFor(t, 20*time.Second, "the Connect's dial", func() bool { return mesh.Dialing(a, b.ID()) })
	expanded := make(chan error, 1)
	go func() { expanded <- a.Expand(ctx, b.ID()) }()
	testutil.WaitFor(t, 20*time.Second, "Expand to wait for the dial", func() bool {
		return mesh.DialWaiters(a, b.ID()) == 1
	})
	close(g.release)
	if err := <-connected; err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if err := <-expanded; err != nil {
		t.Fatalf("Expand: %v", err)
	}
	for _, p := range a.Peers() {
		if p.ID == b.ID() && p.Temporary {
			t.Fatal("the ordinary link Connect made is temporary after Expand waited for it")
		}
	}
	if !hasPeer(a, b.ID()) {
		t.Fatal("no link")
	}
}
