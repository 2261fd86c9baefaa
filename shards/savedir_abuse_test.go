package shards

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// TestFetchIntoDirPartSymlink: a symlink planted in the user's folder
// under the part file's name (anyone who can write to DIR can) does not
// have the node size and write the file it points to: the download fails
// and that file is as it was. It was truncated to the resource's size and
// overwritten, then the symlink was renamed into place as the "file".
func TestFetchIntoDirPartSymlink(t *testing.T) {
	testutil.CheckGoroutines(t)
	na, nb := newPair(t)
	a := serveTest(t, testConfig(t, na))
	b := serveTest(t, testConfig(t, nb))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	path := filepath.Join(t.TempDir(), "film.mkv")
	writeRandom(t, path, 1<<20+5, 4)
	link := shareLink(t, ctx, a, path)
	victim := filepath.Join(t.TempDir(), "notes.txt")
	mine := []byte("the user's own notes\n")
	if err := os.WriteFile(victim, mine, 0o600); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := os.Symlink(victim, filepath.Join(dst, ".catnest-"+link.ID.String()+".part")); err != nil {
		t.Fatal(err)
	}
	l := link
	l.Dir = dst
	if _, err := b.Fetch(ctx, l); err != nil {
		t.Fatal(err)
	}
	var (
		tr  Transfer
		err error
	)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if tr, err = b.Transfer(ctx, link.ID); err != nil {
			t.Fatal(err)
		}
		if tr.State == StateFailed || tr.State == StateDone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for the download to end: %+v", tr)
		}
	}
	if got, err := os.ReadFile(victim); err != nil || !bytes.Equal(got, mine) {
		t.Fatalf("the symlink's target holds %d bytes (%v) after the download (%+v), want the user's %d", len(got), err, tr, len(mine))
	}
	if _, err := os.Lstat(filepath.Join(dst, "film.mkv")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("film.mkv in the folder: %v; want none", err)
	}
}

// TestRenameNoReplace: a finished file never replaces one that took its
// name after finalPath found it free (os.Rename did, silently).
func TestRenameNoReplace(t *testing.T) {
	dir := t.TempDir()
	part, dst := filepath.Join(dir, "x.part"), filepath.Join(dir, "song.mp3")
	if err := os.WriteFile(part, []byte("downloaded"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, []byte("the user's"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := renameNoReplace(part, dst); !errors.Is(err, os.ErrExist) {
		t.Fatalf("rename onto an existing file: %v, want ErrExist", err)
	}
	if got, _ := os.ReadFile(dst); string(got) != "the user's" {
		t.Fatalf("the existing file holds %q", got)
	}
	free := filepath.Join(dir, "song (2).mp3")
	if err := renameNoReplace(part, free); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(free); string(got) != "downloaded" {
		t.Fatalf("moved file holds %q", got)
	}
	if _, err := os.Lstat(part); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("part file still there: %v", err)
	}
	// The portable way too.
	if err := os.WriteFile(part, []byte("again"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := linkRename(part, dst); !errors.Is(err, os.ErrExist) {
		t.Fatalf("linkRename onto an existing file: %v, want ErrExist", err)
	}
	if got, _ := os.ReadFile(dst); string(got) != "the user's" {
		t.Fatalf("the existing file holds %q", got)
	}
}

// TestFolderSkipsOwnPartFiles: a download into a shared folder (`catnest
// get -o ~/Music`, ~/Music shared) keeps its part file there: the folder
// scan and the watcher leave it (and checkDir's probe) alone. The part
// file, GiBs with holes, was hashed whenever it was quiet and shared.
func TestFolderSkipsOwnPartFiles(t *testing.T) {
	testutil.CheckGoroutines(t)
	dir := t.TempDir()
	part := ".catnest-" + MD5{1, 2, 3}.String() + ".part"
	writeRandom(t, filepath.Join(dir, part), 70000, 1)
	writeRandom(t, filepath.Join(dir, ".catnest-probe-123"), 10, 2)
	writeRandom(t, filepath.Join(dir, ownPartName(MD5{7, 8})), 70000, 7) // beside another node's
	writeRandom(t, filepath.Join(dir, "a.mp3"), 5000, 3)
	// Not the node's: shared as any file.
	writeRandom(t, filepath.Join(dir, ".catnest-notes.part"), 300, 4)
	na, _ := newPair(t)
	cfg := testConfig(t, na)
	cfg.Folders = []string{dir}
	s := serveTest(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	names := func() map[string]bool {
		sh, err := s.Shares(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := make(map[string]bool)
		for _, x := range sh {
			out[x.Name] = true
		}
		return out
	}
	testutil.WaitFor(t, 60*time.Second, "the scan to end", func() bool {
		return !s.Scan().Scanning && names()["a.mp3"]
	})
	// Made while watched: the part file first, so it is due first.
	writeRandom(t, filepath.Join(dir, ".catnest-"+MD5{4, 5, 6}.String()+".part"), 80000, 5)
	writeRandom(t, filepath.Join(dir, "b.mp3"), 6000, 6)
	testutil.WaitFor(t, 60*time.Second, "b.mp3 to be shared", func() bool {
		return !s.Scan().Scanning && names()["b.mp3"]
	})
	got := names()
	for n := range got {
		if ownTemp(n) {
			t.Errorf("the node's own %s is shared", n)
		}
	}
	if !got[".catnest-notes.part"] || len(got) != 3 {
		t.Errorf("shared %v, want a.mp3, b.mp3 and .catnest-notes.part", got)
	}
}
