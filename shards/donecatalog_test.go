package shards

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// TestDoneOnlyOnceListed: a download is reported done only once the node
// lists the file among what it holds, so a script or a page that sees
// "done" and asks the node's catalog (or tells a friend to fetch from it)
// finds it there. The catalog is put late on purpose: before, the done
// event and state went out first and the catalog followed.
func TestDoneOnlyOnceListed(t *testing.T) {
	testutil.CheckGoroutines(t)
	a, b := newPair(t)
	sa := serveTest(t, testConfig(t, a))
	sb := serveTest(t, testConfig(t, b))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 5
	var links []Link
	for i := range n {
		path := filepath.Join(t.TempDir(), "f.bin")
		writeRandom(t, path, 300<<10+i, uint64(40+i))
		l := shareLink(t, ctx, sa, path)
		links = append(links, l)
	}
	orig := sb.downloads.onDone
	sb.downloads.onDone = func(tr Transfer) {
		time.Sleep(100 * time.Millisecond)
		orig(tr)
	}
	listed := func(id MD5) bool {
		es, _ := sb.catalog.entries()
		return slices.ContainsFunc(es, func(e Entry) bool { return e.ID == id })
	}
	sub := sb.SubscribeShards()
	defer sub.Close()
	for _, l := range links {
		if _, err := sb.Fetch(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	done := make(map[MD5]bool)
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	for len(done) < n {
		select {
		case e := <-sub.C():
			if e.Transfer == nil || e.Transfer.State != StateDone || done[e.Transfer.ID] {
				continue
			}
			done[e.Transfer.ID] = true
			if !listed(e.Transfer.ID) {
				t.Errorf("%s: done before the node lists it", e.Transfer.ID)
			}
		case <-deadline.C:
			t.Fatalf("%d of %d downloads done", len(done), n)
		}
	}
	for _, l := range links {
		tr, _ := sb.Transfer(ctx, l.ID)
		if tr.State != StateDone {
			t.Errorf("%s: %s", l.ID, tr.State)
		}
	}
}

// TestDoneFailedToPlaceNotListed: a download whose whole file checked out
// but could not be moved into place (here the output folder cannot be
// made) ends failed and is not left in the node's catalog: listed there
// it was advertised as a finished file the node does not hold.
func TestDoneFailedToPlaceNotListed(t *testing.T) {
	testutil.CheckGoroutines(t)
	a, b := newPair(t)
	sa := serveTest(t, testConfig(t, a))
	cfg := testConfig(t, b)
	blocker := filepath.Join(t.TempDir(), "not-a-folder")
	writeRandom(t, blocker, 10, 1)
	cfg.Downloads.OutDir = filepath.Join(blocker, "downloads")
	sb := serveTest(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "f.bin")
	writeRandom(t, path, 3<<20+17, 7)
	l := shareLink(t, ctx, sa, path)
	if _, err := sb.Fetch(ctx, l); err != nil {
		t.Fatal(err)
	}
	got := waitState(t, sb.downloads, l.ID, StateFailed, time.Minute)
	es, _ := sb.catalog.entries()
	if slices.ContainsFunc(es, func(e Entry) bool { return e.ID == l.ID }) {
		t.Errorf("failed download (%s) still listed in the catalog", got.Error)
	}
}
