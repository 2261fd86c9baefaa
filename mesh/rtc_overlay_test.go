package mesh_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestRTCTenNodesSurviveRendezvousLoss runs ten nodes over real WebRTC on
// loopback through a rendezvous, then stops the rendezvous and kills all
// neighbours but one of a node: the survivors must make new links through
// the mesh alone, stay connected, and deliver a broadcast to each of them
// once.
func TestRTCTenNodesSurviveRendezvousLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("ten WebRTC nodes")
	}
	rv := startRendezvous(t, true)
	var nodes []*mesh.Node
	stops := map[mesh.ID]func(){}
	for i := range 10 {
		n, stop := rtcNode(t, rv.url(), rtcOpts{name: fmt.Sprint("n", i), configure: func(c *mesh.Config) {
			meshtest.Fast(c)
			c.RecordRefresh, c.RecordTTL = 2*time.Second, 7*time.Second
			c.ReplaceInterval = -1
		}})
		nodes = append(nodes, n)
		stops[n.ID()] = stop
	}
	// The deadline only bounds a failure. While the first links churn
	// (every node trims the links it got at once), an offer or answer
	// relayed through the mesh can be lost at a hop whose link just went;
	// the hop says so and the dial ends at once (ErrSignalLost), so no
	// dial waits out DialTimeout. Under -race at load 13 on two cores the
	// ten took 13 s at most.
	// On a failure it says which nodes were short: the next CI failure
	// (two of two beside busy loops at twice the load the comment above
	// measured) then tells links from directories.
	// Traced beside busy loops: the directories are complete within 5 s;
	// the long tail is one node left with 0-2 links when all its
	// neighbours trim it at once (each reads its neighbour count from a
	// record that lags; now they ask it first,
	// TestNeighboursTrimmingAtOnceLeaveTheNodeItsLinks), whose redials then
	// waited out DialTimeout (20 s): answers the mesh lost twice (now sent
	// again through the rendezvous,
	// TestRTCLostAnswerIsSentAgainThroughTheRendezvous), and offers that
	// vanished with the link they went out on, with no hop to report them
	// (now sent again, TestRTCOfferLostWithItsLinkIsSentAgain).
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, n := range nodes {
			t.Logf("%s: %d links, %d records, connected %v", n.Name(), len(n.Peers()), len(n.Directory()), connected(nodes))
		}
	})
	took := testutil.WaitFor(t, time.Minute, "10 nodes with 3..8 links each, connected, each directory listing all 10", func() bool {
		for _, n := range nodes {
			if k := len(n.Peers()); k < 3 || k > 8 || !knowsAll(n, nodes) {
				return false
			}
		}
		return connected(nodes)
	})
	t.Logf("ten nodes linked in %v", took.Round(time.Millisecond))
	waitStable(t, nodes)

	// Pick a hub and kill all its neighbours but one: it falls below its
	// low mark, so it must dial again, and with the rendezvous gone it can
	// only do so through the mesh. Take the hub with the fewest links
	// whose loss of neighbours leaves the survivors' links connected, so
	// that every survivor can still signal through the mesh.
	//
	// The links are read while the mesh lives (a node may be between a
	// dropped link and its replacement), so the choice is made again
	// until one holds, for a while.
	var hub *mesh.Node
	var victims []mesh.ID
	links := map[*mesh.Node][]mesh.PeerInfo{}
	pick := func() bool {
		var byLinks []*mesh.Node
		for _, n := range nodes {
			if links[n] = n.Peers(); len(links[n]) >= 3 {
				byLinks = append(byLinks, n)
			}
		}
		slices.SortStableFunc(byLinks, func(a, b *mesh.Node) int { return len(links[a]) - len(links[b]) })
		for _, n := range byLinks {
			peers := links[n]
			var kill []mesh.ID
			for _, p := range peers[1:] {
				kill = append(kill, p.ID)
			}
			var rest []*mesh.Node
			for _, o := range nodes {
				if !slices.Contains(kill, o.ID()) {
					rest = append(rest, o)
				}
			}
			if connected(rest) {
				hub, victims = n, kill
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(30 * time.Second); !pick() && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
	}
	if hub == nil {
		for _, n := range nodes {
			t.Logf("%s: %d links", n.Name(), len(links[n]))
		}
		t.Fatal("no node with 3+ links whose neighbours but one can go without splitting the mesh")
	}
	t.Logf("hub %s: killing %d of its %d neighbours", hub.Name(), len(victims), len(victims)+1)
	rv.stop()
	cut := time.Now()
	for _, id := range victims {
		stops[id]()
	}
	var alive []*mesh.Node
	for _, n := range nodes {
		if !slices.Contains(victims, n.ID()) {
			alive = append(alive, n)
		}
	}
	low := min(3, len(alive)-1)
	testutil.WaitFor(t, 90*time.Second, "the hub to make a new link through the mesh, and every survivor to hold enough links to survivors, all connected", func() bool {
		for _, n := range alive {
			if len(n.Peers()) < low {
				return false
			}
			for _, p := range n.Peers() {
				if slices.Contains(victims, p.ID) {
					return false
				}
			}
		}
		for _, p := range hub.Peers() {
			if p.Since.After(cut) {
				return connected(alive)
			}
		}
		return false
	})

	d := countDeliveries("after/1", alive...)
	id, err := alive[0].Broadcast(context.Background(), "after/1", []byte("still one mesh"))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the broadcast to reach every survivor", func() bool { c, _ := d.all(id, alive[0].ID()); return c })
	time.Sleep(500 * time.Millisecond)
	if _, dup := d.all(id, alive[0].ID()); dup {
		t.Fatal("a node got the broadcast twice")
	}
}
