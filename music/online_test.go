package music

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
	"github.com/catnest/catnest/shards"
)

// TestTracksLeaveWithTheirNode: a node that stops cleanly, and one that
// dies, take their tracks out of the others' library within seconds,
// while their records are still in the directory (the record TTL is the
// real one, 65 s); the stopped node's tracks come back with it.
func TestTracksLeaveWithTheirNode(t *testing.T) {
	testutil.CheckGoroutines(t)
	realTTL := func(c *mesh.Config) {
		meshtest.Fast(c)
		d := mesh.DefaultConfig()
		c.RecordRefresh, c.RecordTTL = d.RecordRefresh, d.RecordTTL
	}
	nw := meshtest.NewNetwork()
	hub := nw.NewNode(t, "hub", meshtest.Options{Configure: realTTL})
	bn := nw.NewNode(t, "b", meshtest.Options{Configure: realTTL})
	cn := nw.NewNode(t, "c", meshtest.Options{Configure: realTTL})

	// a is served by hand so that it can stop and come back with its
	// identity.
	ident, err := mesh.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	startA := func() (*mesh.Node, context.CancelFunc) {
		cfg := mesh.DefaultConfig()
		cfg.Identity, cfg.Name, cfg.Transport = ident, "a", nw.Transport(ident.ID)
		realTTL(&cfg)
		n, err := mesh.NewNode(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		wg.Go(func() {
			if err := n.Serve(ctx); err != nil {
				t.Errorf("a: %v", err)
			}
		})
		return n, cancel
	}
	an, stopMeshA := startA()
	t.Cleanup(func() { stopMeshA(); wg.Wait() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, n := range []*mesh.Node{bn, cn, an} {
		testutil.WaitFor(t, 30*time.Second, "a link to the hub", func() bool { return n.Connect(ctx, hub.ID()) == nil })
	}

	a, b, c := newTestNode(t, an, t.TempDir()), newTestNode(t, bn), newTestNode(t, cn, t.TempDir())
	newTestNode(t, hub)
	const n = 2000
	ts, tags := genTracks(n, 1, a.music.folders[0])
	a.addExtra(t, ts, tags)
	tsC, tagsC := genTracks(n, 2, c.music.folders[0])
	c.addExtra(t, tsC, tagsC)
	tracksBy(t, b, "a's and c's tracks", func(m map[shards.MD5]Track) bool { return len(m) == 2*n })

	inDirectory := func(id mesh.ID) bool {
		_, ok := bn.Lookup(id)
		return ok
	}
	leaves := func(what string, id mesh.ID, left func(map[shards.MD5]Track) bool) {
		t.Helper()
		start := time.Now()
		tracksBy(t, b, what, left)
		if !inDirectory(id) {
			t.Fatalf("%s only when the record expired (%v)", what, time.Since(start))
		}
		t.Logf("%s: %v after, record still held", what, time.Since(start).Round(time.Millisecond))
	}

	// a stops cleanly, as catnest serve does on Ctrl-C.
	a.stop()
	stopMeshA()
	leaves("a's tracks to leave", an.ID(), func(m map[shards.MD5]Track) bool {
		_, hasA := m[ts[0].ID]
		return len(m) == n && !hasA
	})

	// c dies: its links are cut, nothing is said.
	nw.Kill(cn.ID())
	leaves("c's tracks to leave", cn.ID(), func(m map[shards.MD5]Track) bool { return len(m) == 0 })

	// a comes back, same identity and database: its tracks return.
	nw.Kill(an.ID()) // its transport is spent; a new one takes its place
	an, stopMeshA = startA()
	testutil.WaitFor(t, 30*time.Second, "a's link to the hub", func() bool { return an.Connect(ctx, hub.ID()) == nil })
	a.node = an
	a.start(t, a.music.folders...)
	a.addExtra(t, ts, tags)
	tracksBy(t, b, "a's tracks to return", func(m map[shards.MD5]Track) bool {
		tr, ok := m[ts[0].ID]
		return len(m) == n && ok && len(tr.Sources) == 1 && tr.Sources[0] == an.ID()
	})
}
