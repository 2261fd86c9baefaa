package music

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/shards"
)

// waitDone waits until n's transfer of each id is finished, and returns
// their files.
func waitDone(t *testing.T, tn *testNode, ids []shards.MD5) map[shards.MD5]string {
	t.Helper()
	paths := make(map[shards.MD5]string)
	testutil.WaitFor(t, 60*time.Second, "the downloads to finish", func() bool {
		for _, id := range ids {
			tr, ok := transferOf(t, tn, id)
			if !ok || tr.State != shards.StateDone {
				return false
			}
			paths[id] = tr.Path
		}
		return true
	})
	return paths
}

// cacheRecords lists the records of n's cache bucket.
func cacheRecords(t *testing.T, tn *testNode) map[shards.MD5]bool {
	t.Helper()
	got := make(map[shards.MD5]bool)
	err := tn.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketCache).ForEach(func(k, _ []byte) error {
			got[shards.MD5(k)] = true
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestRemoveCopyOfDownloadFinishedSinceListed: the cache decides what to
// remove from a list of the transfers taken before; b's downloads of a
// dozen tracks were listed while they ran, and finished before the cache
// removed them. Each removal takes its finished file with it: none is
// left in the downloads folder with nothing pointing to it.
func TestRemoveCopyOfDownloadFinishedSinceListed(t *testing.T) {
	testutil.CheckGoroutines(t)
	const n = 12
	// 3.6 MB at 1 MiB/s: the downloads run for seconds after they start.
	b, ids := slowSharer(t, func(dir string) []shards.MD5 { return writeWAVs(t, dir, n, 200) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, id := range ids {
		c, err := b.music.Stream(ctx, id) // starts the cache's download
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	all, err := b.shards.Shares(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var listed []shards.Transfer
	for _, tr := range all {
		if tr.For == resourceName && tr.State == shards.StateDownloading {
			listed = append(listed, tr)
		}
	}
	if len(listed) < n/2 {
		t.Fatalf("only %d of %d downloads were running when listed", len(listed), n)
	}
	var running []shards.MD5
	for _, tr := range listed {
		running = append(running, tr.ID)
	}
	paths := waitDone(t, b, running)
	for _, tr := range listed {
		if err := b.music.removeCopy(ctx, tr); err != nil {
			t.Fatalf("remove the cached copy of %s: %v", tr.ID, err)
		}
	}
	for _, tr := range listed {
		if got, ok := transferOf(t, b, tr.ID); ok {
			t.Errorf("%s: transfer stays: %+v", tr.ID, got)
		}
		if _, err := os.Stat(paths[tr.ID]); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: its finished file %s stays with nothing pointing to it (%v)", tr.ID, paths[tr.ID], err)
		}
	}
	recs := cacheRecords(t, b)
	for _, tr := range listed {
		if recs[tr.ID] {
			t.Errorf("%s: its cache record stays", tr.ID)
		}
	}
}

// TestStreamResumesPausedDownload: the user paused b's downloads of four
// tracks as they ran (two they fetched in the Files view, two the player
// started); playing each resumes it and reads it whole instead of waiting
// with no end, and each stays whose it was.
func TestStreamResumesPausedDownload(t *testing.T) {
	testutil.CheckGoroutines(t)
	const n, size = 4, 1 << 20
	// 4 MiB at 1 MiB/s: each download runs for seconds.
	b, ids := slowSharer(t, func(dir string) []shards.MD5 { return writeBigWAVs(t, dir, n, size, 300) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	users := func(i int) bool { return i%2 == 0 }
	for i, id := range ids {
		if users(i) {
			userFetch(ctx, t, b, shards.Link{ID: id, Name: fmt.Sprintf("%d.wav", i), Size: size})
		} else {
			c, err := b.music.Stream(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		}
		if err := b.shards.Pause(ctx, id); err != nil { // as POST /api/shards/pause does
			t.Fatal(err)
		}
		if tr, _ := transferOf(t, b, id); tr.State != shards.StatePaused {
			t.Fatalf("track %d not paused: %+v", i, tr)
		}
	}
	for i, id := range ids {
		pctx, pcancel := context.WithTimeout(ctx, 45*time.Second)
		c, err := b.music.Stream(pctx, id)
		if err != nil {
			pcancel()
			t.Fatal(err)
		}
		data, err := io.ReadAll(c)
		c.Close()
		pcancel()
		if err != nil || md5.Sum(data) != id {
			t.Fatalf("play paused track %d: %d bytes, %v", i, len(data), err)
		}
	}
	waitDone(t, b, ids)
	for i, id := range ids {
		tr, _ := transferOf(t, b, id)
		want := resourceName
		if users(i) {
			want = ""
		}
		if tr.For != want {
			t.Errorf("track %d: its download is now for %q, want %q", i, tr.For, want)
		}
	}
}

// TestCacheForgetsDownloadsRemovedInFiles: b plays a dozen of a's tracks,
// then the user removes eight of their downloads through the Files API
// (shards' Remove, as DELETE /api/shards does). Their records leave the
// cache's bucket; the other four stay. A record left by an older node
// for a download long gone goes when the node starts.
func TestCacheForgetsDownloadsRemovedInFiles(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newMesh(t, 2)
	dirA := t.TempDir()
	const n, removed = 12, 8
	ids := writeWAVs(t, dirA, n, 400)
	newTestNode(t, nodes[0], dirA)
	b := newTestNode(t, nodes[1])
	waitOneSource(t, b, ids)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i, id := range ids {
		c, err := b.music.Stream(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(c)
		c.Close()
		if err != nil || md5.Sum(data) != id {
			t.Fatalf("track %d: %d bytes, %v", i, len(data), err)
		}
	}
	waitDone(t, b, ids)
	if recs := cacheRecords(t, b); len(recs) != n {
		t.Fatalf("%d cache records after playing %d tracks", len(recs), n)
	}
	for _, id := range ids[:removed] {
		if err := b.shards.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	left := func() bool {
		recs := cacheRecords(t, b)
		b.music.mu.Lock()
		defer b.music.mu.Unlock()
		for i, id := range ids {
			_, mem := b.music.fetched[id]
			if keep := i >= removed; recs[id] != keep || mem != keep {
				return false
			}
		}
		return len(recs) == n-removed
	}
	testutil.WaitFor(t, 30*time.Second, "the removed downloads' cache records to go", left)

	// A record an older node leaked: its download is long gone.
	b.stop()
	var leaked shards.MD5
	leaked[0], leaked[15] = 0xca, 0x7e
	var v [16]byte
	if err := b.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketCache).Put(leaked[:], v[:]) }); err != nil {
		t.Fatal(err)
	}
	b.start(t)
	testutil.WaitFor(t, 30*time.Second, "the leaked record to go", func() bool {
		return !cacheRecords(t, b)[leaked] && left()
	})
}
