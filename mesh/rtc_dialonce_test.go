package mesh_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// TestRTCConnectsAtOnceMakeOneDial: the maintainer, explore, a live room's
// tree and a transfer may each ask for a link to the same node at once.
// Every one of them gets it: the node makes one dial and the others wait
// for it. Two offers at once made the peer take the first as given up and
// cancel its handshake, so that dial failed ("link closed: during setup",
// "not ready: context canceled"), as the demo logged on a loaded machine.
func TestRTCConnectsAtOnceMakeOneDial(t *testing.T) {
	testutil.CheckGoroutines(t)
	rv := startRendezvous(t, true)
	const peers, callers = 3, 4
	a, _ := rtcNode(t, rv.url(), rtcOpts{name: "alice", manual: true})
	var others []*mesh.Node
	for range peers {
		n, _ := rtcNode(t, rv.url(), rtcOpts{manual: true})
		others = append(others, n)
	}
	testutil.WaitFor(t, 20*time.Second, "every node to register", func() bool {
		ids := rv.srv.Clients()
		for _, n := range append(others, a) {
			if !slices.Contains(ids, string(n.ID())) {
				return false
			}
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	type result struct {
		to  mesh.ID
		err error
	}
	results := make(chan result, peers*callers)
	for _, o := range others {
		for range callers {
			go func() { results <- result{o.ID(), a.Connect(ctx, o.ID())} }()
		}
	}
	for range peers * callers {
		if r := <-results; r.err != nil {
			t.Errorf("Connect to %s: %v", r.to.Short(), r.err)
		}
	}
	for _, o := range others {
		if !hasPeer(a, o.ID()) {
			t.Errorf("alice has no link to %s after every Connect returned", o.ID().Short())
		}
		// The far end registers the link after its hello, which may come
		// after alice's.
		testutil.WaitFor(t, 20*time.Second, o.ID().Short()+"'s end of the link", func() bool { return hasPeer(o, a.ID()) })
	}
}
