package shards

import (
	"context"
	"crypto/md5"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestFetchIntoDir: a fetch with Link.Dir keeps the part file in that
// folder and leaves the finished file there, seeded from there: one copy
// on disk (`catnest get -o DIR` made a second one out of the node's
// downloads folder). A Dir the node cannot use is refused before anything
// is listed.
func TestFetchIntoDir(t *testing.T) {
	testutil.CheckGoroutines(t)
	na, nb := newPair(t)
	a := serveTest(t, testConfig(t, na))
	bcfg := testConfig(t, nb)
	b := serveTest(t, bcfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	path := filepath.Join(t.TempDir(), "film.mkv")
	data := writeRandom(t, path, 3<<20+17, 3)
	link := shareLink(t, ctx, a, path)

	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"relative/dir", notDir, filepath.Join(t.TempDir(), "missing")} {
		l := link
		l.Dir = dir
		if tr, err := b.Fetch(ctx, l); !errors.Is(err, ErrBadDir) {
			t.Errorf("fetch into %q = %+v, %v; want ErrBadDir", dir, tr, err)
		}
		if _, err := b.Transfer(ctx, link.ID); !errors.Is(err, ErrUnknown) {
			t.Fatalf("a refused fetch into %q left a transfer: %v", dir, err)
		}
	}

	dst := t.TempDir()
	l := link
	l.Dir = dst + "/" // cleaned
	if _, err := b.Fetch(ctx, l); err != nil {
		t.Fatal(err)
	}
	// Its record keeps the folder, for a restart half-way.
	recs, _, _, err := loadDownloads(bcfg.DB)
	if err != nil || len(recs) != 1 || recs[0].Link.Dir != dst {
		t.Fatalf("stored records %+v, %v; want one with Dir %s", recs, err, dst)
	}
	tr := waitState(t, b.downloads, link.ID, StateDone, 60*time.Second)
	want := filepath.Join(dst, "film.mkv")
	if tr.Path != want {
		t.Fatalf("finished file at %q, want %q", tr.Path, want)
	}
	entries, _ := os.ReadDir(dst)
	if len(entries) != 1 {
		t.Errorf("%s holds %d entries, want the file alone (no part file)", dst, len(entries))
	}
	for _, d := range []string{"downloads", "shards"} {
		ents, _ := os.ReadDir(filepath.Join(bcfg.Dir, d))
		for _, e := range ents {
			if e.Type().IsRegular() {
				t.Errorf("the node's %s folder holds %s: a second copy", d, e.Name())
			}
		}
	}
	// Seeded from where it is.
	r, err := b.Open(ctx, link.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || md5.Sum(got) != md5.Sum(data) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
}

// TestFetchIntoDirTwoNodes: two nodes on one machine fetching the same
// id into the same folder each keep a part file of their own. They shared
// one: the first to finish renamed it into place, the other went on
// writing into that finished file (its seeder then refused it as changed
// on disk) and failed when its own rename found no part file.
func TestFetchIntoDirTwoNodes(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	na := nw.NewNode(t, "a", meshtest.Options{Configure: meshtest.Fast})
	nb := nw.NewNode(t, "b", meshtest.Options{Configure: meshtest.Fast})
	nc := nw.NewNode(t, "c", meshtest.Options{Configure: meshtest.Fast})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, n := range []*mesh.Node{nb, nc} {
		if err := n.Connect(ctx, na.ID()); err != nil {
			t.Fatal(err)
		}
	}
	a := serveTest(t, testConfig(t, na))
	b := serveTest(t, testConfig(t, nb))
	c := serveTest(t, testConfig(t, nc))

	path := filepath.Join(t.TempDir(), "film.mkv")
	data := writeRandom(t, path, 3<<20+17, 7)
	link := shareLink(t, ctx, a, path)
	dst := t.TempDir()
	link.Dir = dst

	// b stops after its first piece is on disk, until c has finished.
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	b.downloads.afterWrite = func(MD5, int, []byte) {
		once.Do(func() {
			close(held)
			select {
			case <-release:
			case <-ctx.Done():
			}
		})
	}
	if _, err := b.Fetch(ctx, link); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("b wrote no piece")
	}
	if _, err := c.Fetch(ctx, link); err != nil {
		t.Fatal(err)
	}
	tc := waitState(t, c.downloads, link.ID, StateDone, 60*time.Second)
	close(release)
	tb := waitState(t, b.downloads, link.ID, StateDone, 60*time.Second)
	if tb.Path == tc.Path || filepath.Dir(tb.Path) != dst || filepath.Dir(tc.Path) != dst {
		t.Fatalf("b saved %s, c saved %s; want two files in %s", tb.Path, tc.Path, dst)
	}
	for _, s := range []*Service{b, c} {
		r, err := s.Open(ctx, link.ID)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || md5.Sum(got) != md5.Sum(data) {
			t.Fatalf("seeded %d bytes, %v; want the file", len(got), err)
		}
	}
	if ents, _ := os.ReadDir(dst); len(ents) != 2 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("%s holds %v; want the two files alone (no part file)", dst, names)
	}
}
