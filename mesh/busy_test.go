package mesh_test

import (
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

// TestBusyPeerStillHeard: alice sends bob as many requests as he takes at
// once (his slots and their queue), to a handler that holds them. While
// bob's slots stay full, everything else alice sends him still gets
// through: answers to bob's requests, one-way messages, pongs. Before,
// bob's link reader waited for a free slot and all of it waited behind
// alice's requests. Then alice gives up on her requests, which bob still
// holds, and asks more: those are answered busy at once (ErrBusy, not a
// RemoteError, no offence). Once bob's handler lets go, alice is served
// again.
func TestBusyPeerStillHeard(t *testing.T) {
	testutil.CheckGoroutines(t)
	const slots, queue, extra = 32, 32, 200
	nw := meshtest.NewNetwork()
	opts := meshtest.Options{Logger: testLogger(t), Configure: func(cfg *mesh.Config) {
		meshtest.Fast(cfg)
		cfg.ManualLinks = true
		cfg.MaxConcurrentRequests = slots
		cfg.RequestQueue = queue
		cfg.PingInterval = 50 * time.Millisecond
	}}
	a := nw.NewNode(t, "alice", opts)
	b := nw.NewNode(t, "bob", opts)

	release := make(chan struct{})
	letGo := sync.OnceFunc(func() { close(release) })
	t.Cleanup(letGo) // runs before the nodes stop
	var held atomic.Int32
	b.Handle("test/hold", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		held.Add(1)
		select {
		case <-release:
			return append([]byte("done:"), m.Payload...), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}))
	a.Handle("test/echo", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		return append([]byte("echo:"), m.Payload...), nil
	}))
	const notes = 100
	var noted atomic.Int32
	b.Handle("test/note", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		noted.Add(1)
		return nil, nil
	}))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Connect(ctx, b.ID()); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "bob's end of the link", func() bool { _, ok := peerOf(b, a.ID()); return ok })

	// requests sends n requests to bob's test/hold from alice, and counts
	// how they end.
	var wg sync.WaitGroup
	defer wg.Wait()
	var busy, gaveUp atomic.Int32
	errs := make(chan error, slots+queue+extra)
	requests := func(ctx context.Context, n int) {
		for i := range n {
			wg.Go(func() {
				got, err := a.Request(ctx, b.ID(), "test/hold", fmt.Appendf(nil, "%d", i))
				var remote *mesh.RemoteError
				switch {
				case errors.Is(err, mesh.ErrBusy) && !errors.As(err, &remote):
					busy.Add(1)
				case errors.Is(err, context.Canceled) && ctx.Err() != nil:
					gaveUp.Add(1)
				case err != nil:
					errs <- fmt.Errorf("request %d: %w", i, err)
				default:
					errs <- fmt.Errorf("request %d: answer %q while bob holds his handler", i, got)
				}
			})
		}
	}
	first, giveUp := context.WithCancel(ctx)
	defer giveUp()
	requests(first, slots+queue)
	testutil.WaitFor(t, 30*time.Second, "bob's handler slots to fill", func() bool { return held.Load() == slots })

	// Answers to bob's own requests come through.
	for i := range 100 {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		got, err := b.Request(rctx, a.ID(), "test/echo", fmt.Appendf(nil, "%d", i))
		rcancel()
		if want := fmt.Sprintf("echo:%d", i); err != nil || string(got) != want {
			t.Fatalf("bob's request %d to alice while his slots are full: %q, %v; want %q", i, got, err, want)
		}
	}
	// So do one-way messages.
	for i := range notes {
		if err := a.Send(ctx, b.ID(), "test/note", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 20*time.Second, "alice's notes to reach bob", func() bool { return noted.Load() == notes })
	// And pongs: bob's RTT to alice is measured anew at each one.
	rtt := func() time.Duration { p, _ := peerOf(b, a.ID()); return p.RTT }
	for range 5 {
		last := rtt()
		testutil.WaitFor(t, 20*time.Second, "a pong from alice", func() bool { return rtt() != last })
	}

	// Alice gives up on her requests; bob still holds them, so alice's
	// next ones find no room.
	giveUp()
	testutil.WaitFor(t, 20*time.Second, "alice's first requests to end", func() bool { return gaveUp.Load() == slots+queue })
	requests(ctx, extra)
	testutil.WaitFor(t, 30*time.Second, "alice's next requests to be answered busy", func() bool { return busy.Load() == extra })
	if n := held.Load(); n != slots {
		t.Fatalf("bob's handler took %d requests while %d slots were full", n, slots)
	}

	// Bob lets go: alice is served again. Bob may still be busy a moment
	// with the requests alice gave up on, so she tries again after busy,
	// as a caller should.
	letGo()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var again sync.WaitGroup
	var served atomic.Int32
	for i := range slots + queue {
		again.Go(func() {
			want := fmt.Sprintf("done:%d", i)
			for {
				got, err := a.Request(ctx, b.ID(), "test/hold", []byte(want[5:]))
				if errors.Is(err, mesh.ErrBusy) {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if err != nil || string(got) != want {
					t.Errorf("request %d once bob let go: %q, %v", i, got, err)
					return
				}
				served.Add(1)
				return
			}
		})
	}
	again.Wait()
	if served.Load() != slots+queue {
		t.Fatalf("%d of %d requests served once bob's handler let go", served.Load(), slots+queue)
	}
	for _, end := range [][2]*mesh.Node{{a, b}, {b, a}} {
		if p, ok := peerOf(end[0], end[1].ID()); !ok || p.Failures != 0 {
			t.Fatalf("%s's link to %s: %+v (found %v), want up with no failures", end[0].Name(), end[1].Name(), p, ok)
		}
	}
}
