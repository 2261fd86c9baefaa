package shards

import (
	"context"
	"crypto/md5"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
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
	if fi, err := os.Stat(want); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("saved file: %v, %v; want mode 0644 (the user's file)", fi, err)
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
