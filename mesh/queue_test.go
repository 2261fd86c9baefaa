package mesh_test

import (
	"context"
	"encoding/binary"
	"slices"
	"sync"
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
	var mu sync.Mutex
	var order []int // the sequence numbers handled, in order
	b.Handle("slow/1", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		mu.Lock()
		order = append(order, int(binary.BigEndian.Uint32(m.Payload)))
		mu.Unlock()
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
	send := func(seq int) {
		t.Helper()
		if err := a.Send(ctx, b.ID(), "slow/1", binary.BigEndian.AppendUint32(nil, uint32(seq))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range sent {
		send(i)
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
	dropped := func() int {
		for _, p := range b.Peers() {
			if p.ID == a.ID() {
				return p.Dropped
			}
		}
		t.Fatal("the link closed")
		return 0
	}
	waitFor(t, 20*time.Second, "b to drop what its queue cannot hold", func() bool { return dropped() >= sent-queue-1 })
	close(release)
	released = true
	waitFor(t, 20*time.Second, "b to handle what it queued", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order)+dropped() == sent
	})
	// A last message, now that the queue has room again, comes through
	// after the ones that waited, all in the order sent.
	send(sent)
	waitFor(t, 20*time.Second, "b to handle the last message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) > 0 && order[len(order)-1] == sent
	})
	mu.Lock()
	defer mu.Unlock()
	if order[0] != 0 || len(order) > queue+2 || !slices.IsSorted(order) {
		t.Fatalf("handled %v", order)
	}
	if len(order)+dropped() != sent+1 {
		t.Fatalf("handled %d and dropped %d of %d", len(order), dropped(), sent+1)
	}
}
