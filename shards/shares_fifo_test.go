//go:build linux

package shards

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// unblockFIFO opens path for writing, which lets an open that hangs on it
// (for reading) return; for the failing case of the tests below.
func unblockFIFO(path string) {
	if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		w.Close()
	}
}

// TestShareFIFORefused: sharing a FIFO (by path, or one found in a shared
// folder, or one put where a shared file was) is refused at once: opening
// it to read would wait for a writer forever, holding the API call or a
// peer's block request.
func TestShareFIFORefused(t *testing.T) {
	testutil.CheckGoroutines(t)
	a, b := newPair(t)
	sa := serveTest(t, testConfig(t, a))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	shareErr := make(chan error, 1)
	go func() {
		_, err := sa.Share(ctx, fifo)
		shareErr <- err
	}()
	select {
	case err := <-shareErr:
		if !errors.Is(err, ErrNotFile) {
			t.Fatalf("sharing a FIFO: %v, want ErrNotFile", err)
		}
	case <-time.After(20 * time.Second):
		unblockFIFO(fifo)
		<-shareErr
		t.Fatal("sharing a FIFO hung")
	}

	// A shared file replaced by a FIFO: its blocks are refused, not hung.
	path := filepath.Join(dir, "song.bin")
	writeRandom(t, path, 300<<10, 30)
	tr, err := sa.Share(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := fetchManifest(ctx, b, a.ID(), tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	_, err = fetchBlock(rctx, b, a.ID(), blockReq{ID: tr.ID, Piece: 0, Len: uint32(min(BlockSize, m.PieceLen(0)))})
	if rctx.Err() != nil {
		unblockFIFO(path)
		t.Fatal("a block of a file replaced by a FIFO hung")
	}
	if err == nil {
		t.Fatal("a block of a file replaced by a FIFO was served")
	}
	t.Logf("refused: %v", err)
}
