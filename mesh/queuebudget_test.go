package mesh_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestQueueBudgetHostileFlood: 40 hostile peers link to a hub and flood
// it with one-way messages to a handler that is stuck and with requests
// whose answers they never read, each well within its link's own caps.
// Sampled continuously, what the hub holds for its peers (by its links'
// own counters and by its budget) stays under Config.QueueBytes; an
// honest peer's requests are all answered (none busy) and its one-way
// messages all handled (none dropped) while the hostile peers keep the
// budget full. Before, each hostile link held up to 8 MiB of waiting
// requests and 8 MiB of messages, whatever the others held: 40 of them
// made the hub hold 60 MiB here, against a budget of 16.
func TestQueueBudgetHostileFlood(t *testing.T) {
	testutil.CheckGoroutines(t)
	const (
		hostiles   = 40
		budget     = 16 << 20
		messages   = 48 // one-way, each of msgSize
		msgSize    = 32 << 10
		requests   = 100 // each of reqSize
		reqSize    = 16 << 10
		honestReqs = 200
	)
	nw := meshtest.NewNetwork()
	hub := nw.NewNode(t, "hub", meshtest.Options{Configure: func(c *mesh.Config) {
		c.ManualLinks = true
		c.TargetPeers, c.HighPeers, c.MaxTemporary = 4, 48, -1
		c.QueueBytes = budget
		c.PenaltyThreshold = -1 // the flood is not what this test is about
	}, Logger: testLogger(t)})
	honest := nw.NewNode(t, "honest", meshtest.Options{Configure: manualNode})

	stuck := make(chan struct{})
	var unstick sync.Once
	release := func() { unstick.Do(func() { close(stuck) }) }
	defer release() // before the nodes stop, which waits for the handlers
	hub.Handle("stuck/1", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		select {
		case <-stuck:
		case <-ctx.Done():
		}
		return nil, nil
	}))
	hub.Handle("fast/1", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		return []byte("answer"), nil
	}))
	var handled atomic.Int64
	hub.Handle("count/1", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		handled.Add(1)
		return nil, nil
	}))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := honest.Connect(ctx, hub.ID()); err != nil {
		t.Fatal(err)
	}

	// The hostile peers speak the link protocol by hand on raw links, and
	// never read: what the hub sends them piles up on its side.
	mallory := dialHostiles(t, ctx, nw, hub, hostiles)
	send := func(h *hostile, ch mesh.Channel, frame []byte) error { return h.send(ctx, ch, frame) }
	testutil.WaitFor(t, 30*time.Second, "the hub to take every hostile link", func() bool {
		return len(hub.Peers()) == hostiles+1
	})

	// Sample what the hub holds, from before the flood to the end.
	var done atomic.Bool
	var mostQueued, mostCounted, limit int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for !done.Load() {
			u := mesh.QueueUseOf(hub)
			mostQueued, mostCounted, limit = max(mostQueued, u.Queued), max(mostCounted, u.Counted), u.Limit
			time.Sleep(200 * time.Microsecond) // not a spin: the flood needs the cores
		}
	}()
	stopSampling := func() {
		if !done.Swap(true) {
			<-sampled
		}
	}
	defer stopSampling()

	// flood has every hostile peer send messages to the stuck handler and
	// requests, and waits until the hub has read all they sent.
	flood := func(what string, messages, requests int) {
		t.Helper()
		var wg sync.WaitGroup
		for _, h := range mallory {
			wg.Go(func() {
				msg := make([]byte, msgSize)
				req := make([]byte, reqSize)
				for i := range max(messages, requests) {
					if i < messages && send(h, mesh.Bulk, mesh.MessageFrame("stuck/1", msg)) != nil {
						return
					}
					if i < requests && send(h, mesh.Bulk, mesh.RequestFrame(uint64(i+1), "fast/1", req)) != nil {
						return
					}
				}
			})
		}
		wg.Wait()
		testutil.WaitFor(t, 60*time.Second, "the hub to read the "+what, func() bool {
			read := 0
			for _, p := range hub.Peers() {
				for _, h := range mallory {
					if p.ID == h.id && p.BytesIn == h.sent.Load() {
						read++
					}
				}
			}
			return read == hostiles
		})
	}
	flood("flood", messages, requests)
	// The requests the hub served gave back their room; more messages
	// take it, so that the pool, which the links share beyond their own
	// shares, has less room left than a message (with its overhead) takes.
	flood("top-up", 8, 0)
	if u := mesh.QueueUseOf(hub); u.Pooled <= u.Pool-2*msgSize {
		t.Fatalf("the flood left room in the hub's budget: %+v", u)
	}

	// The honest peer is served all the same, within its share: its
	// messages fit in it even if the hub handled none before the last.
	payload, note := make([]byte, 4<<10), make([]byte, 256)
	for i := range honestReqs {
		if _, err := honest.Request(ctx, hub.ID(), "fast/1", payload); err != nil {
			busy := errors.Is(err, mesh.ErrBusy)
			t.Fatalf("honest request %d while the hostile peers fill the budget: %v (busy %v)", i, err, busy)
		}
		if err := honest.Send(ctx, hub.ID(), "count/1", note); err != nil {
			t.Fatalf("honest message %d: %v", i, err)
		}
	}
	testutil.WaitFor(t, 30*time.Second, "the hub to handle the honest peer's messages", func() bool {
		return handled.Load() == honestReqs
	})
	for _, p := range hub.Peers() {
		if p.ID == honest.ID() && p.Dropped > 0 {
			t.Errorf("%d of the honest peer's messages dropped", p.Dropped)
		}
	}
	stopSampling()
	t.Logf("most held: %d bytes by the links' counters, %d by the budget; limit %d", mostQueued, mostCounted, limit)
	if limit > budget {
		t.Errorf("the budget's limit is %d, over Config.QueueBytes %d", limit, budget)
	}
	if mostQueued > budget || mostCounted > budget {
		t.Errorf("the hub held up to %d bytes in its links' queues (%d by its budget's count) for %d hostile peers; limit %d",
			mostQueued, mostCounted, hostiles, budget)
	}
	release()
}
