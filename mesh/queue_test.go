package mesh_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestBlockedOneWayHandlerHoldsBackNothingElse: while b's handler of a
// one-way protocol is stuck and a keeps sending it messages, requests
// between a and b are answered both ways; the messages over b's queue are
// dropped and counted, and the rest are handled once the handler is free.
func TestBlockedOneWayHandlerHoldsBackNothingElse(t *testing.T) {
	nw := meshtest.NewNetwork()
	const queue = 64
	opt := meshtest.Options{Configure: func(c *mesh.Config) {
		c.ManualLinks = true
		c.MessageQueue = queue
	}, Logger: testLogger(t)}
	a := nw.NewNode(t, "a", opt)
	b := nw.NewNode(t, "b", opt)
	release := make(chan struct{})
	var handled atomic.Int64
	b.Handle("slow/1", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		handled.Add(1)
		return nil, nil
	}))
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	for _, n := range []*mesh.Node{a, b} {
		n.Handle("echo/1", mesh.HandlerFunc(echo))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Connect(ctx, b.ID()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "b to link a", func() bool { return hasPeer(b, a.ID()) })

	const sent = 4 * queue
	for range sent {
		if err := a.Send(ctx, b.ID(), "slow/1", []byte("wait for me")); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
		_, errB := b.Request(rctx, a.ID(), "echo/1", []byte("from b"))
		_, errA := a.Request(rctx, b.ID(), "echo/1", []byte("from a"))
		rcancel()
		if errA != nil || errB != nil {
			t.Fatalf("request %d while a one-way handler is stuck: a->b %v, b->a %v", i, errA, errB)
		}
	}
	dropped := func() int64 {
		for _, p := range b.Peers() {
			if p.ID == a.ID() {
				return int64(p.Dropped)
			}
		}
		return -1
	}
	waitFor(t, 20*time.Second, "b to drop what its queue cannot hold", func() bool { return dropped() >= sent-queue-1 })
	close(release)
	released = true
	waitFor(t, 20*time.Second, "b to handle the rest", func() bool { return handled.Load()+dropped() == sent })
	if d := dropped(); d > sent-queue {
		t.Fatalf("b dropped %d of %d with a queue of %d", d, sent, queue)
	}
}
