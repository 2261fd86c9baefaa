package shards

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// TestHeldSpanGoesToReader: a span answer held for the next one (holdSpans)
// is checked and written as soon as a reader opens on its pieces (a seek,
// music playback, the gallery), not when the hold ends: the music issue
// wants a stream's first byte 150 ms after a seek, and a critical piece
// must never wait on the lanes. The hold is made an hour long here, and
// every answer after the span's is kept back by the holder, so a held span
// would keep the reader waiting until the test's deadline; before, it did.
func TestHeldSpanGoesToReader(t *testing.T) {
	testutil.CheckGoroutines(t)
	oldHold := holdMax
	holdMax = time.Hour
	t.Cleanup(func() { holdMax = oldHold })
	_, nodes := newTestNet(t, "holder", "dl")
	data, src := testFile(t, 16<<20, 38)
	m := src.man
	dir := t.TempDir()
	d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), nil, nil)

	// Until the first span is asked for, every block is served. After
	// it, only the blocks of pieces already begun; the rest wait for
	// release. The span's answer waits until those pieces are written,
	// so that it comes to the fetch loop alone, with requests in flight:
	// the case holdSpans holds.
	release := make(chan struct{})
	spanAt := make(chan blockReq, 1)
	var mu sync.Mutex
	begun := map[int]bool{}
	spanSeen := false
	srv := &testServer{sources: []pieceSource{src}}
	srv.onBlock = func(_ mesh.ID, r blockReq) {
		mu.Lock()
		span := int64(r.Off)+int64(r.Len) > m.PieceLen(int(r.Piece))
		switch {
		case !spanSeen && !span:
			begun[int(r.Piece)] = true
			mu.Unlock()
			return
		case !span && begun[int(r.Piece)]:
			mu.Unlock()
			return
		case !spanSeen:
			spanSeen = true
			mu.Unlock()
			waitWritten(t, d.downloads, src.id, begun, &mu)
			spanAt <- r
			return
		}
		mu.Unlock()
		<-release
	}
	srv.register(nodes[0])
	t.Cleanup(func() { close(release) }) // before the downloads stop

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.fetch(ctx, src.link(nodes[0].ID(), "held.bin")); err != nil {
		t.Fatal(err)
	}
	var r blockReq
	select {
	case r = <-spanAt:
	case <-ctx.Done():
		t.Fatal("no span was asked for: the test proves nothing")
	}
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	c, err := d.open(rctx, src.id)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	off := m.PieceOffset(int(r.Piece))
	if _, err := c.Seek(off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, m.PieceLen(int(r.Piece)))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read of piece %d, whose span answer came in: %v (held for the next answer?)", r.Piece, err)
	}
	if !bytes.Equal(got, data[off:off+int64(len(got))]) {
		t.Fatalf("piece %d reads wrong bytes", r.Piece)
	}
}

// waitWritten waits until every piece of begun (under mu) is held by the
// download of id.
func waitWritten(t *testing.T, d *downloads, id MD5, begun map[int]bool, mu *sync.Mutex) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		dl := d.get(id)
		done := dl != nil
		if dl != nil {
			mu.Lock()
			dl.mu.Lock()
			for i := range begun {
				done = done && dl.have.Has(i)
			}
			dl.mu.Unlock()
			mu.Unlock()
		}
		if done {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Error("the pieces served before the span were not written")
}
