package mesh_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// A peer that floods a node faster than the node handles its frames (a
// busy machine, a slow phone) is cut off all the same: its frames count
// against its rate as they arrive, including those the full link queue
// drops. Here the node's handler for the flooder's link is held up
// outright, so that not one flood frame is handled before the cut.
func TestFloodIsChargedWhileHandlersLag(t *testing.T) {
	nw := meshtest.NewNetwork()
	const rate, burst, flood = 10, 100, 4000 // flood: over the link queue (Config.MessageQueue)
	a := nw.NewNode(t, "a", meshtest.Options{Configure: func(c *mesh.Config) {
		manualNode(c)
		c.BroadcastRate, c.BroadcastBurst = rate, burst
	}})
	mallory := nw.NewNode(t, "mallory", meshtest.Options{Configure: manualNode})

	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock() // before the nodes close, which waits for the handler
	a.ValidateBroadcast("slow/1", func(mesh.BroadcastMsg) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return nil
	})
	linkAll(t, a, mallory)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := mallory.Send(ctx, a.ID(), mesh.BcastProto, mesh.EncodeGossip(mallory.ID(), "slow/1", []byte("x"), time.Now())); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("a never checked the message that holds up its handler")
	}
	junk := mesh.EncodeIHave(mesh.MsgID{1})
	for range flood {
		if err := mallory.Send(ctx, a.ID(), mesh.BcastProto, junk); err != nil {
			break // cut off
		}
	}
	testutil.WaitFor(t, 20*time.Second, "a to cut mallory off while its handler is held up", func() bool {
		return a.BroadcastStats().Dropped > 0 && !hasPeer(a, mallory.ID())
	})
	unblock()
}
