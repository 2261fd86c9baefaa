package shards

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/testutil"
)

// TestRemoveForReturnsFileFinishedDuringRemoval: a service removes its
// downloads of twenty files each just as it finishes: every piece is in,
// and the run is about to move the file into place (held at placeMu, where
// finish picks its name) when the removal begins. The run moves the file
// while the removal waits for it to stop; RemoveFor's answer must say so
// (StateDone and that file's Path), or the service, which deletes the
// files of its downloads it removes, leaves it in the downloads folder
// with nothing pointing to it. A removal that stopped the run before it
// moved the file answers that it had not finished, and no file is there.
func TestRemoveForReturnsFileFinishedDuringRemoval(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	const n = 20
	var srcs []*readerSource
	var sources []pieceSource
	for i := range n {
		_, src := testFile(t, 256<<10+i*1000, byte(90+i))
		srcs = append(srcs, src)
		sources = append(sources, src)
	}
	(&testServer{sources: sources}).register(nodes[0])
	dir := t.TempDir()
	d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const svc = "music"
	finishedDuring := 0
	for i, src := range srcs {
		name := fmt.Sprintf("%d.wav", i)
		final := filepath.Join(d.cfg.OutDir, name)
		d.placeMu.Lock()
		l := src.link(nodes[0].ID(), name)
		l.For = svc
		if _, err := d.fetch(ctx, l); err != nil {
			d.placeMu.Unlock()
			t.Fatal(err)
		}
		testutil.WaitFor(t, 30*time.Second, "every piece of "+name, func() bool {
			tr := d.get(src.id).transfer()
			return tr.Have == tr.Size && tr.State == StateDownloading
		})
		type result struct {
			tr  Transfer
			err error
		}
		res := make(chan result, 1)
		go func() {
			tr, err := d.removeFor(ctx, src.id, svc)
			res <- result{tr, err}
		}()
		// Begun, or already over: a run not yet at placeMu when the
		// removal stopped it stops at once, and the removal ends without
		// it (the case below with no file).
		testutil.WaitFor(t, 30*time.Second, "the removal of "+name+" to begin", func() bool {
			if len(res) > 0 {
				return true
			}
			dl := d.get(src.id)
			if dl == nil {
				return true
			}
			tr := dl.transfer()
			return tr.State == StateFailed && tr.Error == "removed"
		})
		d.placeMu.Unlock()
		r := <-res
		if r.err != nil {
			t.Fatalf("%s: removeFor: %v", name, r.err)
		}
		_, err := os.Stat(final)
		switch {
		case err == nil:
			finishedDuring++
			if r.tr.State != StateDone || r.tr.Path != final {
				t.Errorf("%s finished as it was removed, to %s; removeFor answered %s at %q", name, final, r.tr.State, r.tr.Path)
			}
		case errors.Is(err, os.ErrNotExist):
			if r.tr.State == StateDone {
				t.Errorf("%s: removeFor answered done at %q, but no file is there", name, r.tr.Path)
			}
		default:
			t.Fatal(err)
		}
		if r.tr.ID != src.id || r.tr.For != svc {
			t.Errorf("%s: removeFor answered %+v", name, r.tr)
		}
		if d.get(src.id) != nil {
			t.Errorf("%s is still listed", name)
		}
	}
	if finishedDuring == 0 {
		t.Fatalf("no download of %d finished during its removal: the test did not test it", n)
	}
	t.Logf("%d of %d finished during their removal", finishedDuring, n)
}

// TestFetchResumesPausedDownload: a fetch (a service's or the user's) of
// a paused download starts it again, as it does a failed one, and leaves
// its owner as it was; the files come whole.
func TestFetchResumesPausedDownload(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	const n = 8
	var srcs []*readerSource
	var sources []pieceSource
	for i := range n {
		_, src := testFile(t, 512<<10+i*1000, byte(130+i))
		srcs = append(srcs, src)
		sources = append(sources, src)
	}
	// 4 MiB at 2 MiB/s: none is done when it is paused.
	(&testServer{sources: sources, limit: rate.NewLimiter(rate.Limit(2<<20), BlockSize)}).register(nodes[0])
	dir := t.TempDir()
	d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const svc = "music"
	owner := func(i int) string {
		if i%2 == 0 {
			return ""
		}
		return svc
	}
	for i, src := range srcs {
		l := src.link(nodes[0].ID(), fmt.Sprintf("%d.bin", i))
		l.For = owner(i)
		if _, err := d.fetch(ctx, l); err != nil {
			t.Fatal(err)
		}
		if err := d.pause(ctx, src.id); err != nil {
			t.Fatal(err)
		}
		if tr := d.get(src.id).transfer(); tr.State != StatePaused {
			t.Fatalf("download %d not paused: %s", i, tr.State)
		}
	}
	for i, src := range srcs {
		l := Link{ID: src.id, For: owner(i)}
		tr, err := d.fetch(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		if tr.State != StateDownloading && tr.State != StateDone {
			t.Errorf("download %d after a fetch: %s", i, tr.State)
		}
	}
	for i, src := range srcs {
		tr := waitState(t, d.downloads, src.id, StateDone, 30*time.Second)
		if tr.For != owner(i) {
			t.Errorf("download %d is now for %q, want %q", i, tr.For, owner(i))
		}
		if got := fileMD5(t, tr.Path); got != src.id {
			t.Errorf("download %d: file md5 %s", i, got)
		}
	}
}
