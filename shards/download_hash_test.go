package shards

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// TestDownloadNotHeldByTheWholeHash: the whole-file MD5 is fed off the
// peers' loops. While it is held up (here: its lock held, as a read-back
// of 256 pieces verified ahead of it holds it for tens of milliseconds)
// every piece is still fetched, checked and written; the download is done
// only after the hash has caught up, with the right MD5. Before, each
// peer's loop fed the hash itself after every write and waited for it:
// nothing more was fetched until it was free.
func TestDownloadNotHeldByTheWholeHash(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	_, src := testFile(t, 24<<20, 11)
	(&testServer{sources: []pieceSource{src}}).register(nodes[0])
	holders := []mesh.ID{nodes[0].ID()}
	dir := t.TempDir()
	d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), func(MD5) []mesh.ID { return holders }, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := d.fetch(ctx, src.link(nodes[0].ID(), "held.bin")); err != nil {
		t.Fatal(err)
	}
	dl := d.get(src.id)
	dl.hashMu.Lock()
	held := true
	defer func() {
		if held {
			dl.hashMu.Unlock()
		}
	}()
	// Every byte verified and written while the hash cannot move.
	deadline := time.Now().Add(time.Minute)
	var tr Transfer
	for tr = dl.transfer(); tr.Have < src.man.Size; tr = dl.transfer() {
		if tr.State == StateFailed {
			t.Fatalf("download failed: %s", tr.Error)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d bytes verified while the whole-file hash was held", tr.Have, src.man.Size)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if tr.State == StateDone {
		t.Fatal("done before the whole file was hashed")
	}
	dl.hashMu.Unlock()
	held = false
	tr = waitState(t, d.downloads, src.id, StateDone, time.Minute)
	if got := fileMD5(t, tr.Path); got != src.id {
		t.Fatalf("finished file md5 %s, want %s", got, src.id)
	}
}
