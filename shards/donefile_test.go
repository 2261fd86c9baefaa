package shards

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// doneDownload has node b download a file node a shares, and waits for it
// to be done; b looks at its finished files every 20 ms.
func doneDownload(t *testing.T, ctx context.Context, size int) (a, b *mesh.Node, sb *Service, want []byte, tr Transfer, m *Manifest) {
	t.Helper()
	return doneDownloadEvery(t, ctx, size, 20*time.Millisecond)
}

// doneDownloadEvery is doneDownload with b looking at its finished files
// every interval.
func doneDownloadEvery(t *testing.T, ctx context.Context, size int, every time.Duration) (a, b *mesh.Node, sb *Service, want []byte, tr Transfer, m *Manifest) {
	t.Helper()
	a, b = newPair(t)
	sa := serveTest(t, testConfig(t, a))
	cfg := testConfig(t, b)
	cfg.Downloads.CheckInterval = every
	sb = serveTest(t, cfg)
	path := filepath.Join(t.TempDir(), "f.bin")
	want = writeRandom(t, path, size, 90)
	l := shareLink(t, ctx, sa, path)
	if _, err := sb.Fetch(ctx, l); err != nil {
		t.Fatal(err)
	}
	tr = waitState(t, sb.downloads, l.ID, StateDone, time.Minute)
	m, ok := sb.downloads.manifestOf(l.ID)
	if !ok {
		t.Fatal("no manifest")
	}
	return a, b, sb, want, tr, m
}

func listedIn(s *Service, id MD5) bool {
	es, _ := s.catalog.entries()
	return slices.ContainsFunc(es, func(e Entry) bool { return e.ID == id })
}

// TestDoneFileGoneUnlisted: a finished download whose file the user
// deleted or moved away is no longer listed nor held (it stayed "done"
// in the catalog, the node claiming a file it did not have), ends failed
// with why, and its open file is closed (a deleted file's space stayed
// taken). Resumed, it downloads again.
func TestDoneFileGoneUnlisted(t *testing.T) {
	for _, how := range []string{"delete", "move"} {
		t.Run(how, func(t *testing.T) {
			testutil.CheckGoroutines(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			a, b, sb, want, tr, m := doneDownload(t, ctx, 700<<10)
			if !listedIn(sb, tr.ID) {
				t.Fatal("a finished download is not listed")
			}
			// Served once, so the file is open.
			if got, err := fetchBlock(ctx, a, b.ID(), blockReq{ID: tr.ID, Len: uint32(min(BlockSize, m.PieceLen(0)))}); err != nil || !bytes.Equal(got, want[:len(got)]) {
				t.Fatalf("block before: %v", err)
			}
			if how == "delete" {
				if err := os.Remove(tr.Path); err != nil {
					t.Fatal(err)
				}
			} else if err := os.Rename(tr.Path, filepath.Join(t.TempDir(), "elsewhere.bin")); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, 30*time.Second, "the download to be unlisted", func() bool {
				got, _ := sb.Transfer(ctx, tr.ID)
				return !listedIn(sb, tr.ID) && got.State == StateFailed
			})
			got, _ := sb.Transfer(ctx, tr.ID)
			if !strings.Contains(got.Error, "deleted or moved") || got.Have != 0 {
				t.Errorf("after the file went: %+v", got)
			}
			if h := sb.downloads.haveOf(tr.ID); h.Count() != 0 {
				t.Errorf("still says it holds %d pieces", h.Count())
			}
			dl := sb.downloads.get(tr.ID)
			dl.mu.Lock()
			open := dl.file != nil
			dl.mu.Unlock()
			if open {
				t.Error("the lost file is still open")
			}
			if _, err := fetchBlock(ctx, a, b.ID(), blockReq{ID: tr.ID, Len: uint32(min(BlockSize, m.PieceLen(0)))}); err == nil {
				t.Error("a block of a file gone was served")
			}
			// The user wants it back: it downloads again.
			if err := sb.Resume(ctx, tr.ID); err != nil {
				t.Fatal(err)
			}
			again := waitState(t, sb.downloads, tr.ID, StateDone, time.Minute)
			if b, err := os.ReadFile(again.Path); err != nil || !bytes.Equal(b, want) {
				t.Fatalf("downloaded again: %v", err)
			}
			testutil.WaitFor(t, 10*time.Second, "listed again", func() bool { return listedIn(sb, tr.ID) })
		})
	}
}

// TestDoneFileChangedNotServed: a finished file edited in place, its mtime
// put back, is never served (its size and mtime were all that was
// checked, and the open file read the edited bytes to peers), and the
// download is dropped; one only touched (chmod, a new mtime) is checked
// again and served as before.
func TestDoneFileChangedNotServed(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit bool
	}{{"edited", true}, {"touched", false}} {
		t.Run(tc.name, func(t *testing.T) {
			testutil.CheckGoroutines(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			a, b, sb, want, tr, m := doneDownload(t, ctx, 700<<10)
			fi, err := os.Stat(tr.Path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fetchBlock(ctx, a, b.ID(), blockReq{ID: tr.ID, Len: 1024}); err != nil {
				t.Fatal(err)
			}
			if tc.edit {
				f, err := os.OpenFile(tr.Path, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				edited := slices.Clone(want)
				for i := range m.NumPieces() {
					edited[m.PieceOffset(i)+7] ^= 0xff
				}
				if _, err := f.WriteAt(edited, 0); err != nil {
					t.Fatal(err)
				}
				f.Close()
				if err := os.Chtimes(tr.Path, fi.ModTime(), fi.ModTime()); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := os.Chmod(tr.Path, 0o640); err != nil {
					t.Fatal(err)
				}
				later := fi.ModTime().Add(time.Hour)
				if err := os.Chtimes(tr.Path, later, later); err != nil {
					t.Fatal(err)
				}
			}
			// Every block served is the resource's, whatever the check
			// has got to.
			read := func() bool {
				for i := range m.NumPieces() {
					n := min(BlockSize, m.PieceLen(i))
					got, err := fetchBlock(ctx, a, b.ID(), blockReq{ID: tr.ID, Piece: uint32(i), Len: uint32(n)})
					if err != nil {
						return false
					}
					if off := m.PieceOffset(i); !bytes.Equal(got, want[off:off+n]) {
						t.Fatalf("piece %d served changed bytes", i)
					}
				}
				return true
			}
			if tc.edit {
				testutil.WaitFor(t, 30*time.Second, "the download to be dropped", func() bool {
					read()
					got, _ := sb.Transfer(ctx, tr.ID)
					return !listedIn(sb, tr.ID) && got.State == StateFailed
				})
				if got, _ := sb.Transfer(ctx, tr.ID); !strings.Contains(got.Error, "changed") {
					t.Errorf("after the edit: %+v", got)
				}
				return
			}
			testutil.WaitFor(t, 30*time.Second, "the touched file to be served again", read)
			got, _ := sb.Transfer(ctx, tr.ID)
			if got.State != StateDone || !listedIn(sb, tr.ID) {
				t.Errorf("after a touch: %+v, listed %v", got, listedIn(sb, tr.ID))
			}
		})
	}
}

// TestDoneFileHostileReads: nothing a peer asks for makes the node drop a
// finished file it holds: blocks out of range, of pieces past the end,
// of unknown ids, of wrong lengths, many at once. The file is still
// listed, held and served right after.
func TestDoneFileHostileReads(t *testing.T) {
	testutil.CheckGoroutines(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, b, sb, want, tr, m := doneDownload(t, ctx, 700<<10)
	n := uint32(m.NumPieces())
	bad := []blockReq{
		{ID: tr.ID, Piece: n, Len: 1024},
		{ID: tr.ID, Piece: n + 1000, Len: 1024},
		{ID: tr.ID, Piece: 0, Off: uint32(m.PieceSize), Len: 1024},
		{ID: tr.ID, Piece: n - 1, Off: uint32(m.PieceLen(int(n-1))) - 1, Len: 1024},
		{ID: tr.ID, Piece: 0, Len: 0},
		{ID: tr.ID, Piece: 0, Len: BlockSize + 1},
		{ID: MD5{1}, Len: 1024},
		{ID: tr.ID, Piece: ^uint32(0), Off: ^uint32(0), Len: ^uint32(0)},
	}
	for range 20 {
		for _, r := range bad {
			if _, err := fetchBlock(ctx, a, b.ID(), r); err == nil {
				t.Errorf("%+v was answered", r)
			}
		}
	}
	// A look at the files has run since: the next one to end began after
	// the requests (a sleep did not make sure of it on a loaded machine).
	for range 2 {
		select {
		case <-sb.downloads.looked():
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	got, _ := sb.Transfer(ctx, tr.ID)
	if got.State != StateDone || !listedIn(sb, tr.ID) || sb.downloads.haveOf(tr.ID).Count() != m.NumPieces() {
		t.Fatalf("after a peer's bad requests: %+v, listed %v", got, listedIn(sb, tr.ID))
	}
	// Read through the node's own reader: b may have cut a for its
	// malformed frames, which is the mesh's answer to them.
	c, err := sb.Open(ctx, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	whole, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(whole, want) {
		t.Fatalf("served after: %v", err)
	}
}

// TestDoneFileTouchedStillReads: the node's own reader of a finished file
// whose metadata only changed (a chmod, as a backup tool or chmod -R does
// to a whole music folder) gets the file's bytes: it waits for the file to
// be checked. The read failed with "changed on disk" until the next look
// at the files (every 5 s, longer behind other files' checks), and music
// stopped playing the track.
func TestDoneFileTouchedStillReads(t *testing.T) {
	testutil.CheckGoroutines(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// No look but the ones reads ask for.
	_, _, sb, want, tr, _ := doneDownloadEvery(t, ctx, 700<<10, time.Hour)
	if err := os.Chmod(tr.Path, 0o640); err != nil {
		t.Fatal(err)
	}
	c, err := sb.Open(ctx, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read of a chmod'ed finished file: %d bytes, %v", len(got), err)
	}
	// An edit stays refused: the reader's wait ends with the download
	// dropped, not with the edited bytes.
	f, err := os.OpenFile(tr.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("edited"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := c.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(c); err == nil || bytes.HasPrefix(got, []byte("edited")) {
		t.Fatalf("read of an edited finished file: %q..., %v", got[:min(len(got), 8)], err)
	}
	if got, _ := sb.Transfer(ctx, tr.ID); got.State != StateFailed {
		t.Errorf("after the edit: %+v", got)
	}
}

// TestDoneFileGoneWhileOthersHash: a finished file deleted while others,
// only touched (a backup changed their ctime), are checked piece by piece
// is dropped without waiting for that hashing: the stat of every file
// goes on beside it. It stayed listed for the whole hashing, hours after
// a backup touched a terabyte of downloads.
func TestDoneFileGoneWhileOthersHash(t *testing.T) {
	testutil.CheckGoroutines(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, b := newPair(t)
	sa := serveTest(t, testConfig(t, a))
	cfg := testConfig(t, b)
	cfg.Downloads.CheckInterval = 20 * time.Millisecond
	sb := serveTest(t, cfg)
	var trs []Transfer
	for i := range 4 {
		path := filepath.Join(t.TempDir(), "f.bin")
		writeRandom(t, path, 300<<10, uint64(100+i))
		l := shareLink(t, ctx, sa, path)
		if _, err := sb.Fetch(ctx, l); err != nil {
			t.Fatal(err)
		}
		trs = append(trs, waitState(t, sb.downloads, l.ID, StateDone, time.Minute))
	}
	gone := trs[len(trs)-1]
	// The touched files' check hangs, as a long hash would, until the
	// test ends.
	hold, hashing := make(chan struct{}), make(chan struct{}, 1)
	defer close(hold)
	verify := func(MD5) {
		select {
		case hashing <- struct{}{}:
		default:
		}
		<-hold
	}
	sb.downloads.beforeVerify.Store(&verify)
	for _, tr := range trs[:len(trs)-1] {
		if err := os.Chmod(tr.Path, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-hashing:
	case <-ctx.Done():
		t.Fatal("no touched file was checked")
	}
	if err := os.Remove(gone.Path); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the deleted file's download to be unlisted", func() bool {
		got, _ := sb.Transfer(ctx, gone.ID)
		return got.State == StateFailed && !listedIn(sb, gone.ID)
	})
}
