package mesh_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// bridgeTrio is alice and bob, who cannot link directly, and carol,
// linked to both.
func bridgeTrio(t *testing.T, configure func(*mesh.Config)) (nw *meshtest.Network, a, b, c *mesh.Node) {
	t.Helper()
	nw = meshtest.NewNetwork()
	opts := meshtest.Options{Logger: testLogger(t), Configure: func(cfg *mesh.Config) {
		meshtest.Fast(cfg)
		cfg.ManualLinks = true
		if configure != nil {
			configure(cfg)
		}
	}}
	a = nw.NewNode(t, "alice", opts)
	b = nw.NewNode(t, "bob", opts)
	c = nw.NewNode(t, "carol", opts)
	nw.Block(a.ID(), b.ID())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range []*mesh.Node{a, b} {
		if err := c.Connect(ctx, n.ID()); err != nil {
			t.Fatal(err)
		}
	}
	// alice learns from the directory that carol is bob's neighbour.
	testutil.WaitFor(t, 30*time.Second, "alice to see carol among bob's neighbours", func() bool {
		r, ok := a.Lookup(b.ID())
		return ok && slices.Contains(r.Neighbors, c.ID())
	})
	return nw, a, b, c
}

func peerOf(n *mesh.Node, id mesh.ID) (mesh.PeerInfo, bool) {
	for _, p := range n.Peers() {
		if p.ID == id {
			return p, true
		}
	}
	return mesh.PeerInfo{}, false
}

// TestBridgeLinksBlockedPair: two nodes whose direct dials fail with
// ErrNoPath get a link bridged by their common neighbour, marked as such
// at both ends; thousands of requests and megabytes of bulk frames of the
// largest size cross it intact and in order.
func TestBridgeLinksBlockedPair(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, a, b, c := bridgeTrio(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	if err := a.Connect(ctx, b.ID()); err != nil {
		t.Fatalf("alice to bob through carol: %v", err)
	}
	// Connect returns when alice's end is up; bob's follows its hello.
	testutil.WaitFor(t, 20*time.Second, "bob's end of the link", func() bool { _, ok := peerOf(b, a.ID()); return ok })
	for _, end := range [][2]*mesh.Node{{a, b}, {b, a}} {
		p, ok := peerOf(end[0], end[1].ID())
		if !ok || p.Route != mesh.RouteBridge || !p.Relayed {
			t.Fatalf("%s's link to %s: %+v (found %v), want route bridge", end[0].Name(), end[1].Name(), p, ok)
		}
	}
	if _, ok := peerOf(c, a.ID()); !ok {
		t.Fatal("carol lost alice")
	}

	b.Handle("test/echo", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		return append([]byte("echo:"), m.Payload...), nil
	}))
	const requests = 2000
	var wg sync.WaitGroup
	errs := make(chan error, requests)
	for i := range requests {
		wg.Go(func() {
			want := fmt.Sprintf("echo:%d", i)
			got, err := a.Request(ctx, b.ID(), "test/echo", []byte(want[5:]))
			if err == nil && string(got) != want {
				err = fmt.Errorf("request %d: got %q", i, got)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Bulk: frames of the largest payload, each with its index and a
	// digest of its content, must arrive whole and in order.
	const frames = 48 // 12 MiB
	got := make(chan error, frames)
	next := 0
	b.Handle("test/sink", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		p := m.Payload
		sum := sha256.Sum256(p[32:])
		var err error
		switch {
		case !bytes.Equal(sum[:], p[:32]):
			err = errors.New("a bulk frame arrived altered")
		case int(p[32]) != next:
			err = fmt.Errorf("bulk frame %d arrived as number %d", p[32], next)
		}
		next++
		got <- err
		return nil, nil
	}))
	size := mesh.MaxPayload(mesh.Bulk)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range frames {
		p := make([]byte, size)
		for j := 33; j < size; j += 8 {
			p[j] = byte(rng.Uint32())
		}
		p[32] = byte(i)
		sum := sha256.Sum256(p[32:])
		copy(p, sum[:])
		if err := a.Send(ctx, b.ID(), "test/sink", p, mesh.OverBulk()); err != nil {
			t.Fatalf("bulk frame %d: %v", i, err)
		}
	}
	for range frames {
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("bulk frames did not all arrive: %v", ctx.Err())
		}
	}

	// carol counted what it carried: at least the bulk frames, both ways
	// of its links to alice and bob.
	pa, _ := peerOf(c, a.ID())
	pb, _ := peerOf(c, b.ID())
	if min(pa.BytesIn, pb.BytesOut) < int64(frames*size) {
		t.Errorf("carol received %d bytes from alice and sent %d to bob, want at least %d", pa.BytesIn, pb.BytesOut, frames*size)
	}

	// When carol goes, so does the bridged link.
	a.Disconnect(c.ID())
	testutil.WaitFor(t, 20*time.Second, "the bridged link to close with its carrier", func() bool {
		_, ab := peerOf(a, b.ID())
		_, ba := peerOf(b, a.ID())
		return !ab && !ba
	})
}

// TestBridgeRefused: a node that bridges for nobody is not used, and the
// dial fails with the direct path's error.
func TestBridgeRefused(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, a, b, _ := bridgeTrio(t, func(c *mesh.Config) { c.BridgeRate = -1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := a.Connect(ctx, b.ID())
	if err == nil || !errors.Is(err, mesh.ErrNoPath) {
		t.Fatalf("Connect through a node that does not bridge: %v, want ErrNoPath", err)
	}
	if _, ok := peerOf(a, b.ID()); ok {
		t.Fatal("alice linked to bob anyway")
	}
}

// TestBridgeLimit: a node carries at most MaxBridges bridges; one more
// pair that needs it is refused, and gets its bridge once one closes.
func TestBridgeLimit(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw, a, b, c := bridgeTrio(t, func(cfg *mesh.Config) { cfg.MaxBridges = 1 })
	d := nw.NewNode(t, "dave", meshtest.Options{Logger: testLogger(t), Configure: func(cfg *mesh.Config) {
		meshtest.Fast(cfg)
		cfg.ManualLinks = true
	}})
	nw.Block(a.ID(), d.ID())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Connect(ctx, d.ID()); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "alice to see carol among dave's neighbours", func() bool {
		r, ok := a.Lookup(d.ID())
		return ok && slices.Contains(r.Neighbors, c.ID())
	})
	if err := a.Connect(ctx, b.ID()); err != nil {
		t.Fatalf("the first bridge: %v", err)
	}
	if err := a.Connect(ctx, d.ID()); err == nil || !errors.Is(err, mesh.ErrNoPath) {
		t.Fatalf("a second bridge through carol, who carries one at most: %v, want refused", err)
	}
	a.Disconnect(b.ID())
	testutil.WaitFor(t, 30*time.Second, "a bridge to dave once the first one closed", func() bool {
		return a.Connect(ctx, d.ID()) == nil
	})
	if p, ok := peerOf(a, d.ID()); !ok || p.Route != mesh.RouteBridge {
		t.Fatalf("alice's link to dave: %+v, want bridged", p)
	}
}

// BenchmarkBridgeCap sends 16 MiB over a bridged link whose bridging node
// paces each bridge to 4 MiB/s, on the in-memory network, and reports
// the goodput and its ratio to the cap (at most about 1, plus the burst
// of a second's worth at the start).
//
//	go test -run '^$' -bench BridgeCap ./mesh/
func BenchmarkBridgeCap(b *testing.B) {
	const capRate = 4 << 20
	const total = 16 << 20
	nw := meshtest.NewNetwork()
	opts := meshtest.Options{Configure: func(cfg *mesh.Config) {
		meshtest.Fast(cfg)
		cfg.ManualLinks = true
		cfg.BridgeRate = capRate
	}}
	x, y, z := nw.NewNode(b, "alice", opts), nw.NewNode(b, "bob", opts), nw.NewNode(b, "carol", opts)
	nw.Block(x.ID(), y.ID())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, n := range []*mesh.Node{x, y} {
		if err := z.Connect(ctx, n.ID()); err != nil {
			b.Fatal(err)
		}
	}
	testutil.WaitFor(b, 30*time.Second, "the directory", func() bool {
		r, ok := x.Lookup(y.ID())
		return ok && slices.Contains(r.Neighbors, z.ID())
	})
	if err := x.Connect(ctx, y.ID()); err != nil {
		b.Fatal(err)
	}
	got := make(chan int, 1024)
	y.Handle("test/sink", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		got <- len(m.Payload)
		return nil, nil
	}))
	p := make([]byte, 64<<10)
	b.ResetTimer()
	var rates []float64
	for range b.N {
		start := time.Now()
		go func() {
			for sent := 0; sent < total; sent += len(p) {
				if x.Send(ctx, y.ID(), "test/sink", p, mesh.OverBulk()) != nil {
					return
				}
			}
		}()
		for n := 0; n < total; n += <-got {
		}
		rates = append(rates, total/time.Since(start).Seconds())
	}
	b.StopTimer()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(rates)/1e6, "MB/s")
	b.ReportMetric(median(rates)/capRate, "ratio-to-cap")
}

// TestBridgeAfterDeadline: a Connect whose direct dial used up its time
// (ErrNoPath with the deadline past) still gets its bridge, which has time
// of its own. The context.AfterFunc that ends the bridge dial when ctx is
// cancelled runs at once here (ctx is already done) while connect goes on
// to use the bridge: run with -race, it must share no variable with
// connect (it read ctx while connect set ctx to the bridge's context).
func TestBridgeAfterDeadline(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, a, b, _ := bridgeTrio(t, nil)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if err := a.Connect(ctx, b.ID()); err != nil {
		t.Fatalf("alice to bob through carol after alice's deadline: %v", err)
	}
	if p, ok := peerOf(a, b.ID()); !ok || p.Route != mesh.RouteBridge {
		t.Fatalf("alice's link to bob: %+v (found %v), want bridged", p, ok)
	}
}
