package shards

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// TestDoneFileGoneResumedAsRunEnds: a finished download whose file goes
// (lose) and is resumed while the run that finished it is still storing
// it downloads again. The resume's start found that run not yet ended and
// did nothing, and the run then ended without starting it: the download
// said "downloading" with nothing running, for ever (seen on a loaded
// machine, where the run's store of the finished download was slow).
func TestDoneFileGoneResumedAsRunEnds(t *testing.T) {
	testutil.CheckGoroutines(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, b := newPair(t)
	sa := serveTest(t, testConfig(t, a))
	cfg := testConfig(t, b)
	cfg.Downloads.CheckInterval = 20 * time.Millisecond
	sb := serveTest(t, cfg)
	// The first run is held as it ends, done, until the resume is in.
	reached, release := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	hold := func(MD5) {
		if once.CompareAndSwap(false, true) {
			close(reached)
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
	}
	sb.downloads.afterDone.Store(&hold)
	path := filepath.Join(t.TempDir(), "f.bin")
	want := writeRandom(t, path, 700<<10, 91)
	l := shareLink(t, ctx, sa, path)
	if _, err := sb.Fetch(ctx, l); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reached:
	case <-ctx.Done():
		t.Fatal("the download never finished")
	}
	tr := waitState(t, sb.downloads, l.ID, StateDone, time.Minute)
	if err := os.Rename(tr.Path, filepath.Join(t.TempDir(), "elsewhere.bin")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the download to fail", func() bool {
		got, _ := sb.Transfer(ctx, l.ID)
		return got.State == StateFailed
	})
	if err := sb.Resume(ctx, l.ID); err != nil {
		t.Fatal(err)
	}
	close(release)
	again := waitState(t, sb.downloads, l.ID, StateDone, 30*time.Second)
	if got, err := os.ReadFile(again.Path); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("downloaded again: %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, "listed again", func() bool { return listedIn(sb, l.ID) })
}
