package mesh_test

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// A node whose directory is full (a mesh past its size, or one that a
// hostile node has filled with made-up nodes) refuses new records without
// scoring down the neighbours that pass them on, by broadcast or in a
// snapshot: they cannot know, and penalties ban, so the node would
// otherwise cut itself off from every honest relay.
func TestFullDirectoryScoresNobodyDown(t *testing.T) {
	nw := meshtest.NewNetwork()
	a := nw.NewNode(t, "a", meshtest.Options{Configure: manualNode})
	relay := newRawPeer(t, nw, "relay")
	linkAll(t, a, relay.Node)
	mesh.FillDirectory(a)

	var ids []mesh.ID
	var snap []byte
	for i := range 40 {
		ident, err := mesh.NewIdentity()
		if err != nil {
			t.Fatal(err)
		}
		env, err := mesh.SignRecord(ident, mesh.WireRecord{ID: ident.ID, Name: fmt.Sprint("new", i), Seq: uint64(time.Now().UnixNano())})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ident.ID)
		if i%2 == 0 {
			relay.send(t, a.ID(), mesh.EncodeGossip(ident.ID, mesh.DirTopic, env, time.Now()))
		} else {
			snap = append(binary.AppendUvarint(snap, uint64(len(env))), env...)
		}
	}
	relay.sendProto(t, a.ID(), mesh.DirProto, snap)
	// One-way messages of a link are handled in order: once a grafts a
	// fresh id from the relay, it has dealt with all of the above.
	relay.flush(t, a)
	for _, id := range ids {
		if _, ok := a.Lookup(id); ok {
			t.Fatalf("a took a record into a full directory")
		}
	}
	if n := offences(a); n != 0 {
		t.Fatalf("a scored its relay down %d times for a's own full directory", n)
	}
}

// Changes that come while a node waits out RecordDebounce go into the one
// record it issues then, not into a second one a debounce later: under
// churn, a link lost and refilled within one debounce would otherwise
// cost two records, each checked by every node of the mesh.
func TestChangesWithinDebounceMakeOneRecord(t *testing.T) {
	const debounce = time.Second
	nw := meshtest.NewNetwork()
	n := nw.NewNode(t, "n", meshtest.Options{Configure: func(c *mesh.Config) {
		manualNode(c)
		c.RecordDebounce = debounce
		c.RecordRefresh = time.Hour
		c.RecordTTL = 2 * time.Hour
	}})
	testutil.WaitFor(t, 20*time.Second, "n's first record", func() bool { return n.BroadcastStats().Originated >= 1 })
	base := n.BroadcastStats().Originated
	// Two changes in a row: the second comes while the first waits.
	for v := range 2 {
		if err := n.SetResource("svc", v); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 20*time.Second, "n's record with both changes", func() bool {
		r, _ := n.Lookup(n.ID())
		return string(r.Resources["svc"]) == "1"
	})
	if got := n.BroadcastStats().Originated - base; got != 1 {
		t.Fatalf("%d records issued for one burst of changes, want 1", got)
	}
	// A redundant record would follow one debounce later.
	time.Sleep(3 * debounce)
	if got := n.BroadcastStats().Originated - base; got != 1 {
		t.Fatalf("%d records issued for one burst of changes, want 1", got)
	}
}
