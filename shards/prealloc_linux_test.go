package shards

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPartPreallocated: a new part file has its blocks allocated at once
// (fallocate), so the pieces written into it go to blocks the file system
// has (cheaper a byte than filling a hole, and no disk full near the end);
// before, it was a hole of its size. Its bytes read as zeros (recheck
// counts on it), and a part file that exists keeps what it holds.
func TestPartPreallocated(t *testing.T) {
	dir := t.TempDir()
	probe, err := os.Create(filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	err = unix.Fallocate(int(probe.Fd()), 0, 0, 4096)
	probe.Close()
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		t.Skipf("the temp dir's file system cannot preallocate: %v", err)
	}
	const size = 40<<20 + 123
	path := filepath.Join(dir, "shards", "x.part")
	f, err := createPart(path, size)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != size {
		t.Fatalf("part file of %d bytes, want %d", fi.Size(), size)
	}
	if got := fi.Sys().(*syscall.Stat_t).Blocks * 512; got < size {
		t.Errorf("%d bytes allocated to a part file of %d: not preallocated", got, size)
	}
	buf := make([]byte, 1<<20)
	if _, err := f.ReadAt(buf, size-int64(len(buf))); err != nil {
		t.Fatal(err)
	}
	if !allZero(buf) {
		t.Error("a preallocated part file does not read as zeros")
	}
	if _, err := f.WriteAt([]byte("piece"), 1000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	f, err = createPart(path, size) // opened again, as after a restart
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, 5)
	if _, err := f.ReadAt(got, 1000); err != nil || string(got) != "piece" {
		t.Errorf("reopened part file reads %q, %v: want what was written", got, err)
	}
}
