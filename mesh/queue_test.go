package mesh_test

import (
	"context"
	"encoding/binary"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
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
	testutil.WaitFor(t, 10*time.Second, "b to link a", func() bool { return hasPeer(b, a.ID()) })

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
	testutil.WaitFor(t, 20*time.Second, "b to drop what its queue cannot hold", func() bool { return dropped() >= sent-queue-1 })
	close(release)
	released = true
	testutil.WaitFor(t, 20*time.Second, "b to handle what it queued", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order)+dropped() == sent
	})
	// A last message, now that the queue has room again, comes through
	// after the ones that waited, all in the order sent.
	send(sent)
	testutil.WaitFor(t, 20*time.Second, "b to handle the last message", func() bool {
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

// TestServiceBacklogLeavesRoomForTheMesh: a stuck service handler whose
// queue is full up to its byte bound (8 MiB of one-way messages) does
// not take the room of the mesh's own traffic: a broadcast still arrives.
func TestServiceBacklogLeavesRoomForTheMesh(t *testing.T) {
	nw := meshtest.NewNetwork()
	opt := meshtest.Options{Configure: func(c *mesh.Config) { c.ManualLinks = true }, Logger: testLogger(t)}
	a := nw.NewNode(t, "a", opt)
	b := nw.NewNode(t, "b", opt)
	release := make(chan struct{})
	defer close(release)
	b.Handle("slow/1", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	}))
	got := make(chan []byte, 1)
	b.HandleBroadcast("news/1", func(m mesh.BroadcastMsg) {
		select {
		case got <- m.Payload:
		default:
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Connect(ctx, b.ID()); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "b to link a", func() bool { return hasPeer(b, a.ID()) })

	const size, held = 64 << 10, 128 // 8 MiB
	const sent = held + 44
	for range sent {
		if err := a.Send(ctx, b.ID(), "slow/1", make([]byte, size)); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 20*time.Second, "b's service queue to fill", func() bool {
		for _, p := range b.Peers() {
			if p.ID == a.ID() {
				return p.Dropped >= sent-held-1 // one is in the handler
			}
		}
		return false
	})
	if _, err := a.Broadcast(ctx, "news/1", []byte("still heard")); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if string(p) != "still heard" {
			t.Fatalf("got %q", p)
		}
	case <-ctx.Done():
		t.Fatal("a broadcast did not reach b while a service's queue was full")
	}
}
