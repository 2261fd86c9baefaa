package shards

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// TestShareSpanOneRead: a span (ProtoSpan: four 64 KiB pieces of a shared
// 16 MiB file) is read from the user's file in one read system call, the
// file opened and its stamp checked once for the span; before, every
// piece was opened, stat'ed and read on its own (four reads a span). The
// bytes are the file's. A span of a racy file (changed just before it was
// hashed, so every piece it serves is checked against its MD5) reads
// right too, and a byte changed in a span's third piece, size and mtime
// kept, is never served.
func TestShareSpanOneRead(t *testing.T) {
	testutil.CheckGoroutines(t)
	a, _ := newPair(t)
	cfg := testConfig(t, a)
	s := serveTest(t, cfg)
	dir := t.TempDir()
	path := filepath.Join(dir, "old.bin")
	data := writeRandom(t, path, 16<<20, 41)
	// Not racy: its last change is racyWindow before the hashing.
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	ctime := time.Unix(0, fi.Sys().(*syscall.Stat_t).Ctim.Nano())
	testutil.WaitFor(t, 10*time.Second, "the file to age past racyWindow", func() bool {
		return time.Since(ctime) > racyWindow+50*time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tr, err := s.Share(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	src, man := s.source(tr.ID)
	if man == nil || man.PieceSize != 64<<10 {
		t.Fatalf("manifest %v: the test needs 64 KiB pieces", man)
	}
	sh := s.shares.get(tr.ID)
	if sh == nil || sh.files[0].Racy {
		t.Fatalf("share %v: the test needs a file that is not racy", sh)
	}
	span := func(first int) blockReq {
		return blockReq{ID: tr.ID, Piece: uint32(first), Len: uint32(4 * man.PieceSize)}
	}
	spans := man.NumPieces() / 4
	p := make([]byte, 4*man.PieceSize)
	r0 := procIO(t, "syscr")
	for k := range spans {
		if err := readSpan(ctx, src, man, span(4*k), p); err != nil {
			t.Fatalf("span %d: %v", k, err)
		}
		if off := int64(4*k) * man.PieceSize; !bytes.Equal(p, data[off:off+int64(len(p))]) {
			t.Fatalf("span %d: wrong bytes", k)
		}
	}
	reads := procIO(t, "syscr") - r0
	t.Logf("%d spans of 4 pieces: %d read system calls", spans, reads)
	if reads > int64(spans)+8 {
		t.Errorf("%d read system calls for %d spans: more than one a span", reads, spans)
	}

	// A racy file: shared right after it was written.
	racyPath := filepath.Join(dir, "new.bin")
	fresh := writeRandom(t, racyPath, 16<<20, 42)
	tr2, err := s.Share(ctx, racyPath)
	if err != nil {
		t.Fatal(err)
	}
	if sh := s.shares.get(tr2.ID); sh == nil || !sh.files[0].Racy {
		t.Fatalf("share %v: a file written just now should be racy", sh)
	}
	src2, man2 := s.source(tr2.ID)
	if err := readSpan(ctx, src2, man2, blockReq{ID: tr2.ID, Piece: 8, Len: uint32(4 * man2.PieceSize)}, p); err != nil {
		t.Fatal(err)
	}
	if off := 8 * man2.PieceSize; !bytes.Equal(p, fresh[off:off+int64(len(p))]) {
		t.Fatal("racy file: wrong bytes")
	}
	fi, err = os.Stat(racyPath)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(racyPath, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	bad := fresh[14*man2.PieceSize+5] ^ 0x55 // piece 14: the third of the span from 12
	if _, err := f.WriteAt([]byte{bad}, 14*man2.PieceSize+5); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(racyPath, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	err = readSpan(ctx, src2, man2, blockReq{ID: tr2.ID, Piece: 12, Len: uint32(4 * man2.PieceSize)}, p)
	if !errors.Is(err, ErrUnknown) {
		t.Errorf("span over a piece changed on disk: %v, want it refused (ErrUnknown)", err)
	}
}
