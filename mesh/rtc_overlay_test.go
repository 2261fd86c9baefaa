package mesh_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
)

// TestRTCTenNodesSurviveRendezvousLoss runs ten nodes over real WebRTC on
// loopback through a rendezvous, then stops the rendezvous and kills three
// nodes: the other seven must make new links through the mesh alone, stay
// connected, and deliver a broadcast to each of them once.
func TestRTCTenNodesSurviveRendezvousLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("ten WebRTC nodes")
	}
	rv := startRendezvous(t, true)
	var nodes []*mesh.Node
	stops := map[mesh.ID]func(){}
	for i := range 10 {
		n, stop := rtcNode(t, rv.url(), rtcOpts{name: fmt.Sprint("n", i), configure: func(c *mesh.Config) {
			fastOverlay(c)
			c.RecordRefresh, c.RecordTTL = 2*time.Second, 7*time.Second
			c.ReplaceInterval = -1
		}})
		nodes = append(nodes, n)
		stops[n.ID()] = stop
	}
	waitFor(t, 60*time.Second, "10 nodes with 3..8 links each, connected, each directory listing all 10", func() bool {
		for _, n := range nodes {
			if k := len(n.Peers()); k < 3 || k > 8 || !knowsAll(n, nodes) {
				return false
			}
		}
		return connected(nodes)
	})
	waitStable(t, nodes)

	// Kill three neighbours of a node with at least four links, so that
	// it keeps a link but must dial again, through the mesh.
	var hub *mesh.Node
	for _, n := range nodes {
		if len(n.Peers()) >= 4 {
			hub = n
			break
		}
	}
	if hub == nil {
		t.Fatal("no node with four links")
	}
	var victims []mesh.ID
	for _, p := range hub.Peers()[:3] {
		victims = append(victims, p.ID)
	}
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
	waitFor(t, 60*time.Second, "the 7 survivors to hold 3+ links each and be connected", func() bool {
		for _, n := range alive {
			if len(n.Peers()) < 3 {
				return false
			}
			for _, p := range n.Peers() {
				if slices.Contains(victims, p.ID) {
					return false
				}
			}
		}
		return connected(alive)
	})
	newLinks := 0
	for _, p := range hub.Peers() {
		if p.Since.After(cut) {
			newLinks++
		}
	}
	if newLinks == 0 {
		t.Fatalf("%s made no new link after the rendezvous stopped: %+v", hub.Name(), hub.Peers())
	}
	t.Logf("%s made %d new links through the mesh", hub.Name(), newLinks)

	d := countDeliveries("after/1", alive...)
	id, err := alive[0].Broadcast(context.Background(), "after/1", []byte("still one mesh"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the broadcast to reach all 7", func() bool { c, _ := d.all(id, alive[0].ID()); return c })
	time.Sleep(500 * time.Millisecond)
	if _, dup := d.all(id, alive[0].ID()); dup {
		t.Fatal("a node got the broadcast twice")
	}
}
