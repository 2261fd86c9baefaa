package shards

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// dirtyBytes returns how many bytes of path's pages are dirty in the page
// cache (cachestat, Linux 6.5): written and not yet on their way to disk.
func dirtyBytes(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var st unix.Cachestat_t
	if err := unix.Cachestat(uint(f.Fd()), &unix.CachestatRange{}, &st, 0); err != nil {
		return 0, err
	}
	return int64(st.Dirty) * int64(os.Getpagesize()), nil
}

// skipWithoutWriteback skips the test where dirty pages cannot be counted
// (a kernel older than 6.5) or where startWriteback leaves them dirty (a
// file system without writeback, such as tmpfs): there it has nothing to
// show.
func skipWithoutWriteback(t *testing.T, dir string) {
	t.Helper()
	path := filepath.Join(dir, "probe")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	n, err := dirtyBytes(path)
	if errors.Is(err, unix.ENOSYS) {
		t.Skip("no cachestat (Linux 6.5): dirty pages cannot be counted")
	}
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Skip("the file system of the test's temporary folder keeps no dirty pages")
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := startWriteback(f); err != nil {
		t.Fatal(err)
	}
	if n, err := dirtyBytes(path); err != nil || n > 0 {
		t.Skipf("the file system of the test's temporary folder does not start writeback on request (%d bytes still dirty, %v)", n, err)
	}
}

// TestDownloadStartsWriteback: a download starts the writeback of the
// pieces it writes every writebackBytes, so its part file never holds
// much more than that in dirty pages, and the sync before it is reported
// done has that much at most left to wait for. Before, everything written
// since the last commit of the bitfield (persistInterval) was dirty: on a
// fast link the whole file, and the sync at the end took 20-35 ms of a
// 0.8 s download of 64 MiB.
func TestDownloadStartsWriteback(t *testing.T) {
	testutil.CheckGoroutines(t)
	dir := t.TempDir()
	skipWithoutWriteback(t, dir)
	_, nodes := newTestNet(t, "holder", "dl")
	_, src := testFile(t, 48<<20, 9)
	(&testServer{sources: []pieceSource{src}}).register(nodes[0])
	holders := []mesh.ID{nodes[0].ID()}
	var most, checked, failed atomic.Int64
	d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), func(MD5) []mesh.ID { return holders },
		func(_ *DownloadsConfig, d *downloads) {
			d.afterWrite = func(id MD5, _ int, _ []byte) {
				n, err := dirtyBytes(partPath(dir, id))
				if err != nil {
					failed.Add(1)
					return
				}
				checked.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
			}
		})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := d.fetch(ctx, src.link(nodes[0].ID(), "writeback.bin")); err != nil {
		t.Fatal(err)
	}
	tr := waitState(t, d.downloads, src.id, StateDone, 2*time.Minute)
	if got := fileMD5(t, tr.Path); got != src.id {
		t.Fatalf("finished file md5 %s, want %s", got, src.id)
	}
	if failed.Load() > 0 || checked.Load() < int64(src.man.NumPieces()) {
		t.Fatalf("dirty pages counted after %d of %d pieces (%d failed)", checked.Load(), src.man.NumPieces(), failed.Load())
	}
	// At most what was written since the last start: under writebackBytes
	// before the last run of pieces, and that run (at most a block).
	if limit := int64(writebackBytes + BlockSize); most.Load() > limit {
		t.Fatalf("the part file held %d KiB of dirty pages, want at most %d KiB", most.Load()>>10, limit>>10)
	}
	t.Logf("most dirty: %d KiB of a %d MiB file", most.Load()>>10, src.man.Size>>20)
}
