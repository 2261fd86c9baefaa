package shards

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// procIO reads a counter of /proc/self/io (the whole process's).
func procIO(t testing.TB, field string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && k == field {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/io", field)
	return 0
}

// TestDownloadSpanWrites: the pieces of a span answer (four 64 KiB pieces
// of a 16 MiB file) go to the part file in one write, not one a piece:
// the process makes at most about one write system call per block
// answered (plus the store's few), where it made one a piece before (at
// least 256 for the file's 256 pieces, against about 100 answers).
func TestDownloadSpanWrites(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	data, src := testFile(t, 16<<20, 35)
	var log requestLog
	(&testServer{sources: []pieceSource{src}, onBlock: log.add}).register(nodes[0])
	dir := t.TempDir()
	d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w0, start := procIO(t, "syscw"), time.Now()
	if _, err := d.fetch(ctx, src.link(nodes[0].ID(), "writes.bin")); err != nil {
		t.Fatal(err)
	}
	tr := waitState(t, d.downloads, src.id, StateDone, 2*time.Minute)
	writes, took := procIO(t, "syscw")-w0, time.Since(start)
	if got := fileMD5(t, tr.Path); got != src.id {
		t.Fatalf("finished file md5 %s, want %s", got, src.id)
	}
	reqs := log.all()
	spans := 0
	for _, r := range reqs {
		if int64(r.Len) > src.man.PieceSize {
			spans++
		}
	}
	pieces := src.man.NumPieces()
	t.Logf("%d pieces, %d answers (%d spans), %d write system calls in %v", pieces, len(reqs), spans, writes, took.Round(time.Millisecond))
	if spans < len(reqs)/2 {
		t.Fatalf("%d of %d answers were spans: the test proves nothing", spans, len(reqs))
	}
	// The store (bbolt) writes a few pages each time the download's
	// record or bitfield is committed, the bitfield at most once a
	// second (a loaded machine makes the download, and so these, last
	// longer).
	storeWrites := 32 + 8*int64(took/time.Second)
	if writes > int64(len(reqs))+storeWrites {
		t.Errorf("%d write system calls for %d answers of %d pieces: more than one write an answer", writes, len(reqs), pieces)
	}

	// The downloader serves spans of what it holds in one read, and
	// none that runs over a piece it does not hold.
	ps := src.man.PieceSize
	p := make([]byte, 4*ps)
	r := blockReq{ID: src.id, Piece: 20, Len: uint32(len(p))}
	if err := readSpan(ctx, d.downloads, src.man, r, p); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, data[20*ps:24*ps]) {
		t.Fatal("span served by the downloader: wrong bytes")
	}
	dl := d.get(src.id)
	dl.mu.Lock()
	dl.have.Clear(22)
	dl.mu.Unlock()
	if err := readSpan(ctx, d.downloads, src.man, r, p); !errors.Is(err, ErrUnknown) {
		t.Errorf("span over a piece not held: %v, want ErrUnknown", err)
	}
}
