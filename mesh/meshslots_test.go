package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestMeshRequestsWithinRoomNeverBusy: alice keeps as many mesh requests
// (bridge opens) in flight to bob as her calling side lets her (4), 16
// callers at once, 10000 in all, and bob answers each at once: none may be
// answered busy. Alice sends her next request as soon as she has an
// answer, so bob's slot for the one answered must be free by then. Before,
// bob held the slot until his send of the answer returned, and a request
// that overtook that return found all 4 taken.
func TestMeshRequestsWithinRoomNeverBusy(t *testing.T) {
	testutil.CheckGoroutines(t)
	const (
		callers  = 16
		requests = 10000
	)
	nw := meshtest.NewNetwork()
	opts := meshtest.Options{Logger: testLogger(t), Configure: func(c *mesh.Config) {
		meshtest.Fast(c)
		c.ManualLinks = true
	}}
	a := nw.NewNode(t, "alice", opts)
	b := nw.NewNode(t, "bob", opts)
	b.Handle(mesh.BridgeProto, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		return m.Payload, nil
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := a.Connect(ctx, b.ID()); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	busy, failed := 0, 0
	var firstErr error
	for c := range callers {
		wg.Go(func() {
			for i := c; i < requests; i += callers {
				want := fmt.Sprintf("open %d", i)
				got, err := a.Request(ctx, b.ID(), mesh.BridgeProto, []byte(want))
				if err == nil && string(got) == want {
					continue
				}
				mu.Lock()
				if errors.Is(err, mesh.ErrBusy) {
					busy++
				} else {
					failed++
				}
				if firstErr == nil {
					firstErr = fmt.Errorf("request %d: %q, %v", i, got, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if busy > 0 || failed > 0 {
		t.Fatalf("of %d mesh requests within alice's room, %d answered busy and %d failed otherwise; first: %v", requests, busy, failed, firstErr)
	}
}
