package live

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestParentPathMustStartAtHost: a relay x claims to be at the top of the
// tree (its path is empty: it offers children the path [x] and advertises
// depth 0). c, to whom x looks the best parent, refuses it, since the
// path does not start at the room's host a, and attaches to the honest
// relay g at depth 2. A path message from g that does not start at a
// makes c leave g rather than take it; c's attach that follows tries g
// before x, whose path it refused (it would answer the same again), so c
// asks x to take it once in all.
func TestParentPathMustStartAtHost(t *testing.T) {
	testutil.CheckGoroutines(t)
	cfg := testConfig(2)
	nw := meshtest.NewNetwork()
	a := newTNode(t, nw, "a", cfg)
	xcfg := cfg
	xcfg.Fanout = 8
	x := newTNode(t, nw, "x", xcfg)
	g := newTNode(t, nw, "g", cfg)
	c := newTNode(t, nw, "c", cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	room, _ := publishRoom(t, ctx, a, "forged path", nil)
	waitRoom(t, room.ID, a, x, g, c)
	vx, _ := watch(t, x, room.ID)
	waitMedia(t, vx, "media at x")
	vg, _ := watch(t, g, room.ID)
	waitMedia(t, vg, "media at g")
	if ti, err := g.svc.Tree(room.ID); err != nil || ti.Parent != a.node.ID() {
		t.Fatalf("g's tree = %+v, %v; want a's child", ti, err)
	}

	// x counts the attaches c asks of it.
	var asked sync.Mutex
	attaches := 0
	x.node.Handle(treeProto, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		var req treeReq
		if _, err := open(m.Payload, maxTreeMsg, treeContext, &req); err == nil && req.Op == opAttach && m.From == c.node.ID() {
			asked.Lock()
			attaches++
			asked.Unlock()
		}
		return x.svc.serveTree(ctx, m)
	}))
	testutil.WaitFor(t, 30*time.Second, "c seeing x, claiming depth 0, as the best parent", func() bool {
		x.svc.mu.Lock()
		x.svc.rooms[room.ID].path = nil
		x.svc.mu.Unlock()
		cs := c.svc.candidates(room.ID, a.node.ID())
		return len(cs) > 0 && cs[0] == x.node.ID()
	})
	v, _ := watch(t, c, room.ID)
	waitMedia(t, v, "media at c's viewer")
	ti, err := c.svc.Tree(room.ID)
	if err != nil || ti.Parent != g.node.ID() || !slices.Equal(ti.Path, []mesh.ID{a.node.ID(), g.node.ID()}) || ti.Depth != 2 {
		t.Fatalf("c's tree = %+v, %v; want g's child at depth 2, path a, g", ti, err)
	}

	c.svc.mu.Lock()
	crs := c.svc.rooms[room.ID]
	pl := crs.parent
	c.svc.mu.Unlock()
	forged, err := json.Marshal(treeMsg{Path: []mesh.ID{x.node.ID(), g.node.ID()}})
	if err != nil {
		t.Fatal(err)
	}
	c.svc.onParentMsg(crs, pl, forged)
	c.svc.mu.Lock()
	kept, path := crs.parent == pl, slices.Clone(crs.path)
	c.svc.mu.Unlock()
	if kept || (len(path) > 0 && path[0] != a.node.ID()) {
		t.Fatalf("after a path from x through g, c kept g: %v, path %v", kept, path)
	}
	testutil.WaitFor(t, 60*time.Second, "c attached again", func() bool {
		c.svc.mu.Lock()
		defer c.svc.mu.Unlock()
		return crs.parent != nil && crs.parent != pl && !crs.attaching
	})
	waitMedia(t, v, "media at c's viewer again")
	if ti, err := c.svc.Tree(room.ID); err != nil || ti.Parent != g.node.ID() {
		t.Fatalf("c's tree = %+v, %v; want g's child again", ti, err)
	}
	asked.Lock()
	defer asked.Unlock()
	if attaches != 1 {
		t.Fatalf("c asked x to take it %d times; after refusing x's path once, c should try g first", attaches)
	}
}

// TestCheckPath: the paths a parent may report, and those it may not.
func TestCheckPath(t *testing.T) {
	const host, p, self, o = mesh.ID("host"), mesh.ID("p"), mesh.ID("self"), mesh.ID("o")
	long := make([]mesh.ID, maxPathLen+1)
	for i := range long {
		long[i] = mesh.ID(rune('a' + i%26))
	}
	long[0], long[len(long)-1] = host, p
	for _, tc := range []struct {
		name   string
		path   []mesh.ID
		ok     bool
		parent mesh.ID // p if empty
	}{
		{"host is parent", []mesh.ID{host}, true, host},
		{"parent is host", []mesh.ID{p}, false, ""},
		{"child of host", []mesh.ID{host, p}, true, ""},
		{"deeper", []mesh.ID{host, o, p}, true, ""},
		{"empty", nil, false, ""},
		{"not from host", []mesh.ID{o, p}, false, ""},
		{"not to parent", []mesh.ID{host, o}, false, ""},
		{"through self", []mesh.ID{host, self, p}, false, ""},
		{"twice", []mesh.ID{host, o, o, p}, false, ""},
		{"too long", long, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkPath(tc.path, host, cmp.Or(tc.parent, p), self); (err == nil) != tc.ok {
				t.Fatalf("checkPath(%v) = %v, want ok %v", tc.path, err, tc.ok)
			}
		})
	}
}
