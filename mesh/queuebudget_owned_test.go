package mesh_test

import (
	"context"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestQueueBudgetHandlerOwnsPayload: a request handler owns its message
// and consumes the payload as it parses it (m.Payload = m.Payload[n:]).
// The node's queue budget still gets back all that the request held: a
// peer's 300 requests of 48 KiB, many times the budget in all, are all
// answered, and the budget holds nothing once they are. Before, the
// budget counted back the payload as the handler left it, so each
// request kept its bytes counted until the link closed; after 53 the
// link's share and the pool were gone and every request was answered
// busy.
func TestQueueBudgetHandlerOwnsPayload(t *testing.T) {
	testutil.CheckGoroutines(t)
	const requests, size = 300, 48 << 10
	nw := meshtest.NewNetwork()
	hub := nw.NewNode(t, "hub", meshtest.Options{Configure: func(c *mesh.Config) {
		manualNode(c)
		c.TargetPeers, c.HighPeers, c.MaxTemporary = 2, 4, -1
		c.QueueBytes = 4 << 20 // half in shares, half in the pool
	}, Logger: testLogger(t)})
	peer := nw.NewNode(t, "peer", meshtest.Options{Configure: manualNode})
	hub.Handle("consume/1", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		var sum byte
		for len(m.Payload) > 0 {
			sum += m.Payload[0]
			m.Payload = m.Payload[1:]
		}
		return []byte{sum}, nil
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := peer.Connect(ctx, hub.ID()); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, size)
	for i := range requests {
		payload[0] = byte(i)
		got, err := peer.Request(ctx, hub.ID(), "consume/1", payload)
		if err != nil {
			t.Fatalf("request %d of %d: %v (budget %+v)", i, requests, err, mesh.QueueUseOf(hub))
		}
		if len(got) != 1 || got[0] != byte(i) {
			t.Fatalf("request %d: answer %v", i, got)
		}
	}
	// The handler's goroutine gives the bytes back after it has answered.
	testutil.WaitFor(t, 30*time.Second, "the hub's queue budget to hold nothing", func() bool {
		u := mesh.QueueUseOf(hub)
		return u.Counted == 0 && u.Pooled == 0
	})
}
