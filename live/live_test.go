package live

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestWHIPToWHEP: a Go WHIP client publishes on one node, a WHEP viewer on
// another node gets its video and audio through the tree.
func TestWHIPToWHEP(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	a := newTNode(t, nw, "a", testConfig(3))
	b := newTNode(t, nw, "b", testConfig(3))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	room, err := a.svc.Create(ctx, "test room", "a test", "")
	if err != nil {
		t.Fatal(err)
	}
	publishTo(t, ctx, a, room, nil)
	waitRoom(t, room.ID, a, b)
	v, _ := watch(t, b, room.ID)
	waitMedia(t, v, "media at b's viewer")
	ti, err := b.svc.Tree(room.ID)
	if err != nil || ti.Parent != a.node.ID() || ti.Depth != 1 {
		t.Fatalf("b's tree = %+v, %v; want parent a at depth 1", ti, err)
	}
	testutil.WaitFor(t, 30*time.Second, "the host counting b's viewer", func() bool {
		r, _ := a.svc.Room(room.ID)
		return r.Viewers == 1
	})
}

// TestChainReattach: with fanout 1 the tree is a chain a → b → c; when b
// goes, c attaches to a and its viewer gets media again.
func TestChainReattach(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	a := newTNode(t, nw, "a", testConfig(1))
	b := newTNode(t, nw, "b", testConfig(1))
	c := newTNode(t, nw, "c", testConfig(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	room, _ := publishRoom(t, ctx, a, "chain", nil)
	waitRoom(t, room.ID, a, b, c)
	vb, _ := watch(t, b, room.ID)
	waitMedia(t, vb, "media at b")
	vc, _ := watch(t, c, room.ID)
	waitMedia(t, vc, "media at c")
	ti, _ := c.svc.Tree(room.ID)
	if ti.Parent != b.node.ID() || !slices.Equal(ti.Path, []mesh.ID{a.node.ID(), b.node.ID()}) {
		t.Fatalf("c's tree = %+v; want the chain a → b → c", ti)
	}
	if ta, _ := a.svc.Tree(room.ID); len(ta.Children) != 1 {
		t.Fatalf("a has children %v with fanout 1", ta.Children)
	}
	b.stop()
	nw.Kill(b.node.ID())
	testutil.WaitFor(t, 20*time.Second, "c attached to a", func() bool {
		ti, _ := c.svc.Tree(room.ID)
		return ti.Parent == a.node.ID()
	})
	waitMedia(t, vc, "media at c again")
}
