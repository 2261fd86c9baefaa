package shards

import (
	"context"
	"crypto/md5"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh/meshtest"
)

// sharedPaths maps each shared path to its resource id.
func sharedPaths(s *Service) map[string]MD5 {
	s.shares.mu.Lock()
	defer s.shares.mu.Unlock()
	out := make(map[string]MD5, len(s.shares.byPath))
	for p, id := range s.shares.byPath {
		out[p] = id
	}
	return out
}

// TestFolderWatch shares a folder and changes it: files added, changed,
// renamed, deleted, a folder made with files in it, a symlink to a file
// outside: the shares and the advertised catalog follow within seconds.
func TestFolderWatch(t *testing.T) {
	testutil.CheckGoroutines(t)
	a, b := newPair(t)
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret.key")
	writeRandom(t, outside, 1000, 10)
	if err := os.Symlink(outside, filepath.Join(dir, "link.key")); err != nil {
		t.Fatal(err)
	}
	aData := writeRandom(t, filepath.Join(dir, "a.txt"), 5000, 11)
	bPath := filepath.Join(dir, "sub", "b.bin")
	bData := writeRandom(t, bPath, 2<<20+3, 12)
	cfg := testConfig(t, a)
	cfg.Folders = []string{dir}
	sa := serveTest(t, cfg)
	sb := serveTest(t, testConfig(t, b))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	const deadline = 20 * time.Second
	want := func(what string, paths map[string][]byte) {
		t.Helper()
		testutil.WaitFor(t, deadline, what, func() bool {
			got := sharedPaths(sa)
			if len(got) != len(paths) {
				return false
			}
			for p, data := range paths {
				if got[p] != md5.Sum(data) {
					return false
				}
			}
			return true
		})
	}
	files := map[string][]byte{filepath.Join(dir, "a.txt"): aData, bPath: bData}
	want("the first scan", files)
	testutil.WaitFor(t, deadline, "the scan to report done", func() bool {
		st := sa.Scan()
		return !st.Scanning && st.Found == 2 && st.Pending == 0
	})

	cPath := filepath.Join(dir, "c.txt")
	files[cPath] = writeRandom(t, cPath, 300<<10, 13)
	want("an added file", files)

	files[filepath.Join(dir, "a.txt")] = writeRandom(t, filepath.Join(dir, "a.txt"), 7000, 14)
	want("a changed file", files)

	b2Path := filepath.Join(dir, "sub", "renamed.bin")
	hashed := sa.shares.hashed.Load()
	if err := os.Rename(bPath, b2Path); err != nil {
		t.Fatal(err)
	}
	delete(files, bPath)
	files[b2Path] = bData
	want("a renamed file", files)
	if n := sa.shares.hashed.Load(); n != hashed {
		t.Fatalf("a renamed file was hashed again (%d hashes)", n-hashed)
	}
	sh, _ := sa.Shares(ctx)
	for _, tr := range sh {
		if tr.ID == md5.Sum(bData) && (tr.Name != "renamed.bin" || tr.Path != b2Path) {
			t.Fatalf("renamed file listed as %s at %s", tr.Name, tr.Path)
		}
	}

	if err := os.Remove(cPath); err != nil {
		t.Fatal(err)
	}
	delete(files, cPath)
	want("a deleted file", files)

	newDir := filepath.Join(dir, "new", "deeper")
	dPath := filepath.Join(newDir, "d.txt")
	files[dPath] = writeRandom(t, dPath, 10, 15)
	want("a file in a new folder", files)

	if err := os.RemoveAll(filepath.Join(dir, "new")); err != nil {
		t.Fatal(err)
	}
	delete(files, dPath)
	want("a removed folder", files)

	// A file unshared by the user stays unshared when it changes.
	if err := sa.Unshare(md5.Sum(bData)); err != nil {
		t.Fatal(err)
	}
	delete(files, b2Path)
	writeRandom(t, b2Path, 1000, 16)
	ePath := filepath.Join(dir, "e.txt")
	files[ePath] = writeRandom(t, ePath, 10, 17)
	want("an unshared file left alone while another is added", files)
	testutil.WaitFor(t, deadline, "the queue to drain", func() bool { return sa.shares.pending() == 0 })
	if _, ok := sharedPaths(sa)[b2Path]; ok {
		t.Fatal("an unshared file was shared again")
	}

	// The other node sees the folder's files.
	count, version := sa.catalog.summary()
	if count != len(files) {
		t.Fatalf("catalog holds %d, want %d", count, len(files))
	}
	waitAdvertised(t, b, a.ID(), summary{Count: count, Version: version})
	list, err := sb.Files(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(files) {
		t.Fatalf("the other node lists %d files, want %d", len(list), len(files))
	}
}

// TestFolderRescanAfterRestart: files changed, added and deleted while the
// node was down are found by the first scan; unchanged ones are not hashed
// again.
func TestFolderRescanAfterRestart(t *testing.T) {
	testutil.CheckGoroutines(t)
	a, _ := newPair(t)
	dir := t.TempDir()
	keep := filepath.Join(dir, "keep.bin")
	keepData := writeRandom(t, keep, 1<<20, 20)
	gone := filepath.Join(dir, "gone.bin")
	writeRandom(t, gone, 1000, 21)
	cfg := testConfig(t, a)
	cfg.Folders = []string{dir}

	s1, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, p := range []string{keep, gone} {
		s1.shares.update(ctx, p, dir, "")
	}
	if err := s1.shares.flush(); err != nil {
		t.Fatal(err)
	}
	added := s1.shares.list()

	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	newPath := filepath.Join(dir, "new.bin")
	newData := writeRandom(t, newPath, 2000, 22)

	s2 := serveTest(t, cfg)
	testutil.WaitFor(t, 20*time.Second, "the rescan", func() bool {
		got := sharedPaths(s2)
		return len(got) == 2 && got[keep] == md5.Sum(keepData) && got[newPath] == md5.Sum(newData)
	})
	for _, tr := range s2.shares.list() {
		for _, old := range added {
			if old.ID == tr.ID && !old.Added.Equal(tr.Added) {
				t.Fatal("an unchanged file was shared anew")
			}
		}
	}
	if n := s2.shares.hashed.Load(); n != 1 {
		t.Fatalf("%d files hashed after the restart; only the new one should be", n)
	}
}

// stormShares fills s with n shared files under root, as a scan of a
// folder of n files leaves it, without hashing any.
func stormShares(s *Service, root string, n int) []string {
	paths := make([]string, n)
	s.shares.mu.Lock()
	defer s.shares.mu.Unlock()
	for i := range paths {
		paths[i] = filepath.Join(root, "sub", fmt.Sprintf("f%05d.bin", i))
		id := MD5(md5.Sum([]byte(paths[i])))
		s.shares.byID[id] = &share{id: id, name: "f.bin", man: &Manifest{}, files: []shareFile{{Path: paths[i], Folder: root}}}
		s.shares.byPath[paths[i]] = id
	}
	return paths
}

// TestFolderRemoveStormIsLinear: removing one shared file of a folder of
// 20,000 (rm -rf sends one event per file) must not look at every shared
// path: that made rm -rf of the folder cost 20,000² string compares, all
// under the lock the block handler needs. A removed folder still queues
// the files under it.
func TestFolderRemoveStormIsLinear(t *testing.T) {
	testutil.CheckGoroutines(t)
	a, _ := newPair(t)
	s, err := New(testConfig(t, a))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	paths := stormShares(s, root, 20000)
	f := &folders{svc: s, roots: []string{root}}
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		f.event(nil, fsnotify.Event{Name: paths[i], Op: fsnotify.Remove})
		i++
	})
	if allocs > 20 {
		t.Fatalf("a removed file's event cost %.0f allocations with 20,000 files shared", allocs)
	}
	f.event(nil, fsnotify.Event{Name: filepath.Join(root, "sub"), Op: fsnotify.Remove})
	if n := s.shares.pending(); n != len(paths)+1 {
		t.Fatalf("a removed folder queued %d paths, want its %d files and itself", n, len(paths)+1)
	}
}

// BenchmarkFolderRemoveStorm: the events of rm -rf on a shared folder of
// 20,000 files.
func BenchmarkFolderRemoveStorm(b *testing.B) {
	a := meshtest.NewNetwork().NewNode(b, "a", meshtest.Options{Configure: meshtest.Fast})
	dir := b.TempDir()
	cfg := DefaultConfig()
	cfg.Node = a
	cfg.DB = testDB(b, dir)
	for b.Loop() {
		b.StopTimer()
		s, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		paths := stormShares(s, dir, 20000)
		f := &folders{svc: s, roots: []string{dir}}
		b.StartTimer()
		for _, p := range paths {
			f.event(nil, fsnotify.Event{Name: p, Op: fsnotify.Remove})
		}
		f.event(nil, fsnotify.Event{Name: filepath.Join(dir, "sub"), Op: fsnotify.Remove})
	}
}
