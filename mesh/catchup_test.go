package mesh_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// A link that comes up in the millisecond a node took a message in is
// told of that message in its catch-up list: the node spread it before it
// knew the peer, and without a gossip round (here an hour away) nothing
// else would announce it. TestCatchUpLeavesOutDirectoryRecords lost the
// messages of the link's millisecond whenever broadcasting and linking
// fell in one.
func TestCatchUpIncludesItsOwnMillisecond(t *testing.T) {
	nw := meshtest.NewNetwork()
	n := nw.NewNode(t, "n", meshtest.Options{Configure: func(c *mesh.Config) {
		manualNode(c)
		c.GossipInterval = time.Hour
	}})
	const msgs = 1000
	var ids []mesh.MsgID
	for range msgs {
		id, err := n.Broadcast(context.Background(), "c/1", []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	last, ok := mesh.TakenAt(n, ids[msgs-1])
	if !ok {
		t.Fatal("n does not hold the message it just sent")
	}
	if got := mesh.CatchUpAt(n, last); !slices.Equal(got, ids) {
		missing := 0
		for _, id := range ids {
			if !slices.Contains(got, id) {
				missing++
			}
		}
		t.Fatalf("a link up in the millisecond of the last message is told of %d of the %d messages taken by then (%d missing)", len(got), msgs, missing)
	}
	// A message is due when taken: a link up a millisecond earlier is
	// not told of the last one (it would have had it by spread).
	if got := mesh.CatchUpAt(n, last.Add(-time.Millisecond)); slices.Contains(got, ids[msgs-1]) {
		t.Fatal("a link up before the last message was taken is told of it")
	}
}
