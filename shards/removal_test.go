package shards

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/testutil"
)

// removalResult is what a removal run on its own goroutine answered.
type removalResult struct {
	tr  Transfer
	err error
}

// holdInFinish fetches l with d.placeMu held until release (also
// deferred: a test that fails must not leave a run waiting there): every
// piece comes in and the run waits in finish, where it picks the file's
// name, so that a removal begun now waits for that run.
func holdInFinish(t *testing.T, ctx context.Context, d *downloads, l Link) (release func()) {
	t.Helper()
	d.placeMu.Lock()
	release = sync.OnceFunc(d.placeMu.Unlock)
	if _, err := d.fetch(ctx, l); err != nil {
		release()
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "every piece of "+l.Name, func() bool {
		tr := d.get(l.ID).transfer()
		return tr.Have == tr.Size && tr.State == StateDownloading
	})
	return release
}

// removalBegun reports whether a removal of id has begun or is over.
func removalBegun(d *downloads, id MD5, res chan removalResult) bool {
	if len(res) > 0 {
		return true
	}
	dl := d.get(id)
	if dl == nil {
		return true
	}
	tr := dl.transfer()
	return tr.State == StateFailed && tr.Error == "removed"
}

// hasRecord reports whether db holds a download record of id: one that
// would come back as the download at the next start.
func hasRecord(t *testing.T, db *bolt.DB, id MD5) bool {
	t.Helper()
	found := false
	if err := db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketDownloads); b != nil {
			found = b.Get(id[:]) != nil
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return found
}

// TestFetchDuringRemovalFetchesAnew: the user fetches a download (pastes
// its link again, or the player streams a track) while it is being
// removed, for a dozen files, half of them the user's removals and half
// a service's. The fetch waits for the removal, then downloads the file
// anew: the download is listed and recorded, finishes with the right MD5,
// and the downloads folder holds exactly the removed download's file (it
// finished during the removal) and the new one's. The fetch used to
// resume the download the removal was deleting: it was handed a transfer
// that was gone the moment after, no record stayed, and a run went on
// with nothing listing it.
func TestFetchDuringRemovalFetchesAnew(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	const n = 12
	var srcs []*readerSource
	var sources []pieceSource
	for i := range n {
		_, src := testFile(t, 256<<10+i*1000, byte(40+i))
		srcs, sources = append(srcs, src), append(sources, src)
	}
	(&testServer{sources: sources}).register(nodes[0])
	dir := t.TempDir()
	db := openTestDB(t, filepath.Join(dir, "db"))
	d := startDownloads(t, nodes[1], dir, db, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const svc = "music"
	for i, src := range srcs {
		name := fmt.Sprintf("%d.bin", i)
		l := src.link(nodes[0].ID(), name)
		if i%2 == 1 {
			l.For = svc
		}
		release := holdInFinish(t, ctx, d.downloads, l)
		defer release()
		removed := make(chan removalResult, 1)
		go func() {
			var r removalResult
			if l.For == "" {
				r.tr, r.err = d.removeIf(ctx, src.id, func(string) bool { return true }) // remove's
			} else {
				r.tr, r.err = d.removeFor(ctx, src.id, svc)
			}
			removed <- r
		}()
		testutil.WaitFor(t, 30*time.Second, "the removal of "+name+" to begin", func() bool {
			return removalBegun(d.downloads, src.id, removed)
		})
		fetched := make(chan removalResult, 1)
		go func() {
			tr, err := d.fetch(ctx, src.link(nodes[0].ID(), name))
			fetched <- removalResult{tr, err}
		}()
		release()
		rm, f := <-removed, <-fetched
		if rm.err != nil {
			t.Fatalf("%s: removal: %v", name, rm.err)
		}
		if f.err != nil {
			t.Fatalf("%s: fetch during the removal: %v", name, f.err)
		}
		if d.get(src.id) == nil {
			t.Fatalf("%s: fetched during its removal (answered %s), and not listed once both returned", name, f.tr.State)
		}
		if !hasRecord(t, db, src.id) {
			t.Fatalf("%s: fetched during its removal, and no record of it is kept", name)
		}
		tr := waitState(t, d.downloads, src.id, StateDone, 30*time.Second)
		if got := fileMD5(t, tr.Path); got != src.id {
			t.Fatalf("%s: md5 %s", name, got)
		}
		// The removal's run, held in finish, most often moved its file
		// into place meanwhile: left where it is (the user's, or the
		// service's to delete).
		want := []string{tr.Path}
		if rm.tr.State == StateDone {
			want = append(want, rm.tr.Path)
		}
		ents, err := os.ReadDir(d.cfg.OutDir)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range ents {
			got = append(got, filepath.Join(d.cfg.OutDir, e.Name()))
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, slices.Compact(want)) {
			t.Fatalf("%s: the downloads folder holds %q, want %q", name, got, want)
		}
		for _, p := range got { // out of the next round's way
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.remove(ctx, src.id); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCancelledRemovalLeavesDownloadAsItWas: a removal whose request
// ends before the download's run has stopped (the user closed the page,
// the client timed out) gives up, and the download goes on as it was:
// it used to stay listed as failed ("removed") with its run stopped,
// though it was not removed. A later removal removes it.
func TestCancelledRemovalLeavesDownloadAsItWas(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	_, src := testFile(t, 1<<20, 77)
	// 1 MiB at 1 MiB/s: it runs while it is removed.
	(&testServer{sources: []pieceSource{src}, limit: rate.NewLimiter(rate.Limit(1<<20), BlockSize)}).register(nodes[0])
	dir := t.TempDir()
	db := openTestDB(t, filepath.Join(dir, "db"))
	d := startDownloads(t, nodes[1], dir, db, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gone, cancelGone := context.WithCancel(ctx)
	cancelGone()
	cancelled := false
	for round := 0; round < 40 && !cancelled; round++ {
		if _, err := d.fetch(ctx, src.link(nodes[0].ID(), fmt.Sprintf("r%d.bin", round))); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 30*time.Second, "the run to start", func() bool {
			dl := d.get(src.id)
			dl.mu.Lock()
			defer dl.mu.Unlock()
			return dl.cancel != nil
		})
		// The run stops at the removal's cancel; the removal gives up
		// first when its own ctx wins the race (most rounds).
		err := d.remove(gone, src.id)
		if err == nil {
			continue
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: removal: %v", round, err)
		}
		cancelled = true
		tr := d.get(src.id).transfer()
		if tr.State != StateDownloading && tr.State != StateDone {
			t.Fatalf("round %d: a removal that gave up left the download %s (%q)", round, tr.State, tr.Error)
		}
		tr = waitState(t, d.downloads, src.id, StateDone, 60*time.Second)
		if got := fileMD5(t, tr.Path); got != src.id {
			t.Fatalf("md5 %s", got)
		}
		if err := d.remove(ctx, src.id); err != nil {
			t.Fatalf("the removal after one that gave up: %v", err)
		}
		if d.get(src.id) != nil || hasRecord(t, db, src.id) {
			t.Fatal("still listed or recorded after its removal")
		}
	}
	if !cancelled {
		t.Fatal("no removal gave up: the test did not test it")
	}
}

// TestRemovalWaitsForOneThatGivesUp: a service removes its download while
// the user's removal of it is under way, and the user's gives up (its
// request ended) before the run stopped; for ten files. The service's
// removal waits for the user's and then removes the download itself,
// handed the file that finished meanwhile. It used to be told at once
// that the download was unknown, and the download stayed, the service
// believing it gone (music then forgot its cached copy and never pruned
// it).
func TestRemovalWaitsForOneThatGivesUp(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	const n = 10
	var srcs []*readerSource
	var sources []pieceSource
	for i := range n {
		_, src := testFile(t, 256<<10+i*1000, byte(120+i))
		srcs, sources = append(srcs, src), append(sources, src)
	}
	(&testServer{sources: sources}).register(nodes[0])
	dir := t.TempDir()
	db := openTestDB(t, filepath.Join(dir, "db"))
	d := startDownloads(t, nodes[1], dir, db, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const svc = "music"
	for i, src := range srcs {
		name := fmt.Sprintf("%d.bin", i)
		l := src.link(nodes[0].ID(), name)
		l.For = svc
		release := holdInFinish(t, ctx, d.downloads, l)
		defer release()
		userCtx, userGivesUp := context.WithCancel(ctx)
		user := make(chan removalResult, 1)
		go func() { user <- removalResult{err: d.remove(userCtx, src.id)} }()
		testutil.WaitFor(t, 30*time.Second, "the user's removal of "+name+" to begin", func() bool {
			return removalBegun(d.downloads, src.id, user)
		})
		service := make(chan removalResult, 1)
		go func() {
			tr, err := d.removeFor(ctx, src.id, svc)
			service <- removalResult{tr, err}
		}()
		// Time for the service's removal to meet the user's under way.
		// Should it come after the user's gave up, it removes the
		// download all the same: this only decides what is tested.
		select {
		case r := <-service:
			t.Fatalf("%s: the service's removal returned while the user's went on: %v", name, r.err)
		case <-time.After(100 * time.Millisecond):
		}
		userGivesUp()
		if r := <-user; !errors.Is(r.err, context.Canceled) {
			t.Fatalf("%s: the user's removal, given up: %v", name, r.err)
		}
		release()
		r := <-service
		if r.err != nil {
			t.Fatalf("%s: the service's removal after the user's gave up: %v", name, r.err)
		}
		if r.tr.State != StateDone || fileMD5(t, r.tr.Path) != src.id {
			t.Fatalf("%s: the service was handed %s at %q, not the file that finished", name, r.tr.State, r.tr.Path)
		}
		if d.get(src.id) != nil || hasRecord(t, db, src.id) {
			t.Fatalf("%s: still listed or recorded after the service's removal", name)
		}
		if err := os.Remove(r.tr.Path); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPauseRacingRemovalLeavesNoTrace: the user pauses a download whose
// run is finishing, and removes it while the pause waits for that run
// (two clicks), twenty times. Once both returned, the Removed event is
// the last word on it: the removal used to go on without waiting for the
// run the pause had stopped, and the pause's event came after the
// Removed one, which listed the download again in the Files view,
// paused, for good. No record of it is left either.
func TestPauseRacingRemovalLeavesNoTrace(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	_, src := testFile(t, 256<<10, 99)
	(&testServer{sources: []pieceSource{src}}).register(nodes[0])
	dir := t.TempDir()
	db := openTestDB(t, filepath.Join(dir, "db"))
	d := startDownloads(t, nodes[1], dir, db, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sub := d.events.Subscribe(4096)
	defer sub.Close()
	for round := range 20 {
		name := fmt.Sprintf("r%d.bin", round)
		release := holdInFinish(t, ctx, d.downloads, src.link(nodes[0].ID(), name))
		defer release()
		paused := make(chan error, 1)
		go func() { paused <- d.pause(ctx, src.id) }()
		testutil.WaitFor(t, 30*time.Second, name+" paused", func() bool {
			return d.get(src.id).transfer().State == StatePaused
		})
		removed := make(chan error, 1)
		go func() { removed <- d.remove(ctx, src.id) }()
		testutil.WaitFor(t, 30*time.Second, "the removal of "+name+" to begin", func() bool {
			return len(removed) > 0 || d.get(src.id) == nil || d.get(src.id).transfer().Error == "removed"
		})
		release()
		if err := <-removed; err != nil {
			t.Fatalf("%s: removal: %v", name, err)
		}
		if err := <-paused; err != nil {
			t.Fatalf("%s: pause: %v", name, err)
		}
		removedSeen := false
	drain:
		for {
			select {
			case e := <-sub.C():
				switch {
				case e.Removed != nil && *e.Removed == src.id:
					removedSeen = true
				case e.Transfer != nil && e.Transfer.ID == src.id:
					if removedSeen {
						t.Fatalf("%s: a %s event after the Removed one", name, e.Transfer.State)
					}
				}
			default:
				break drain
			}
		}
		if !removedSeen {
			t.Fatalf("%s: no Removed event", name)
		}
		if d.get(src.id) != nil || hasRecord(t, db, src.id) {
			t.Fatalf("%s: still listed or recorded after its removal", name)
		}
	}
	if n := sub.Missed(); n > 0 {
		t.Fatalf("%d events missed: the test did not see them all", n)
	}
}
