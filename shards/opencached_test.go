package shards

import (
	"context"
	"crypto/md5"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestOpenFromCachedCatalog: opening a file this node does not hold yet
// (the gallery, after Files listed it) starts from the catalogs already
// cached that list it. It waited for every changed catalog to be fetched
// again first, twice (Fetch's lookup, then the holders check), each up to
// holdersTimeout: one node that does not answer its catalog held every
// gallery open for 10 s, whatever node held the image.
func TestOpenFromCachedCatalog(t *testing.T) {
	testutil.CheckGoroutines(t)
	was := holdersTimeout
	holdersTimeout = time.Hour // only the fix lets Open end before ctx
	t.Cleanup(func() { holdersTimeout = was })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	na, nb, mute := muteNet(t, ctx)
	a := serveTest(t, testConfig(t, na))
	bcfg := testConfig(t, nb)
	bcfg.CatalogTimeout = time.Hour
	bcfg.RequestTimeout = time.Hour
	b := serveTest(t, bcfg)

	path := filepath.Join(t.TempDir(), "cat.png")
	data := writeRandom(t, path, 1<<20+3, 11)
	link := shareLink(t, ctx, a, path)
	testutil.WaitFor(t, 30*time.Second, "b to list a's file", func() bool {
		files, err := b.Files(ctx)
		return err == nil && len(files) == 1 && files[0].ID == link.ID
	})
	// Now a node whose catalog changed and never comes.
	muteChanged(t, nb, mute)
	octx, ocancel := context.WithTimeout(ctx, 30*time.Second)
	defer ocancel()
	r, err := b.Open(octx, link.ID)
	if err != nil {
		t.Fatalf("open while a catalog does not come: %v", err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || md5.Sum(got) != md5.Sum(data) || r.Name() != "cat.png" {
		t.Fatalf("read %d bytes of %q, %v", len(got), r.Name(), err)
	}
}

// TestHoldersRefreshBesideDownload: the download's lookups of the holders
// after its first go on beside it. Each waits up to holdersTimeout for a
// node whose changed catalog does not come, and made in the run loop one
// held a download whose every piece had come (Have == Size, still
// "downloading"), every HaveInterval: a gallery open of a file that took
// more than HaveInterval read it all and was done 10 s later.
func TestHoldersRefreshBesideDownload(t *testing.T) {
	testutil.CheckGoroutines(t)
	was := holdersTimeout
	holdersTimeout = time.Hour // only the fix lets the download end
	t.Cleanup(func() { holdersTimeout = was })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	na, nb, mute := muteNet(t, ctx)
	acfg := testConfig(t, na)
	acfg.UploadRate = 1 << 20 // the download takes seconds: lookups are due meanwhile
	a := serveTest(t, acfg)
	bcfg := testConfig(t, nb)
	bcfg.CatalogTimeout = time.Hour
	bcfg.RequestTimeout = time.Hour
	bcfg.Downloads.HaveInterval = 100 * time.Millisecond
	b := serveTest(t, bcfg)

	path := filepath.Join(t.TempDir(), "clip.mp4")
	data := writeRandom(t, path, 2<<20+3, 12)
	link := shareLink(t, ctx, a, path)
	testutil.WaitFor(t, 30*time.Second, "b to list a's file", func() bool {
		files, err := b.Files(ctx)
		return err == nil && len(files) == 1 && files[0].ID == link.ID
	})
	muteChanged(t, nb, mute)
	if _, err := b.Fetch(ctx, link); err != nil {
		t.Fatal(err)
	}
	tr := waitState(t, b.downloads, link.ID, StateDone, 60*time.Second)
	got, err := os.ReadFile(tr.Path)
	if err != nil || md5.Sum(got) != md5.Sum(data) {
		t.Fatalf("saved %d bytes, %v", len(got), err)
	}
}

// TestFetchByIDNamedWhileACatalogDoesNotCome: a fetch by id (`catnest
// get MD5`, a file not in the catalogs cached yet) whose catalog lookup
// ends at holdersTimeout because one node does not send its changed
// catalog takes the name and manifest from the catalogs that did come.
// The lookup dropped them all: the file was saved named by its MD5,
// without an extension, from the first manifest a peer served.
func TestFetchByIDNamedWhileACatalogDoesNotCome(t *testing.T) {
	testutil.CheckGoroutines(t)
	was := holdersTimeout
	holdersTimeout = 5 * time.Second // a's catalog comes well within it
	t.Cleanup(func() { holdersTimeout = was })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	na, nb, mute := muteNet(t, ctx)
	a := serveTest(t, testConfig(t, na))
	bcfg := testConfig(t, nb)
	bcfg.CatalogTimeout = time.Hour
	bcfg.RequestTimeout = time.Hour
	b := serveTest(t, bcfg)

	path := filepath.Join(t.TempDir(), "film.mkv")
	data := writeRandom(t, path, 1<<20+7, 13)
	link := shareLink(t, ctx, a, path)
	muteChanged(t, nb, mute)
	testutil.WaitFor(t, 20*time.Second, "a's record to list the file", func() bool {
		r, ok := nb.Lookup(na.ID())
		sm, adv := advertised(r)
		return ok && adv && sm.Count == 1
	})
	if _, err := b.Fetch(ctx, Link{ID: link.ID}); err != nil {
		t.Fatal(err)
	}
	tr := waitState(t, b.downloads, link.ID, StateDone, 60*time.Second)
	got, err := os.ReadFile(tr.Path)
	if err != nil || md5.Sum(got) != md5.Sum(data) {
		t.Fatalf("saved %d bytes, %v", len(got), err)
	}
	if tr.Name != "film.mkv" || filepath.Base(tr.Path) != "film.mkv" || tr.Manifest != link.Manifest {
		t.Fatalf("saved as %q (%s), manifest %s; want film.mkv, %s", tr.Name, tr.Path, tr.Manifest, link.Manifest)
	}
}

// muteNet makes nodes a and b, and a node b links to that never answers
// for its catalog (until the test ends).
func muteNet(t *testing.T, ctx context.Context) (na, nb, mute *mesh.Node) {
	t.Helper()
	nw := meshtest.NewNetwork()
	na = nw.NewNode(t, "a", meshtest.Options{Configure: meshtest.Fast})
	nb = nw.NewNode(t, "b", meshtest.Options{Configure: meshtest.Fast})
	mute = nw.NewNode(t, "mute", meshtest.Options{Configure: meshtest.Fast})
	for _, n := range []*mesh.Node{na, mute} {
		if err := nb.Connect(ctx, n.ID()); err != nil {
			t.Fatal(err)
		}
	}
	quit := make(chan struct{})
	t.Cleanup(func() { close(quit) })
	mute.Handle(ProtoList, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		<-quit
		return nil, context.Canceled
	}))
	return na, nb, mute
}

// muteChanged makes the mute node advertise a changed catalog, which it
// never sends, and waits until nb sees it.
func muteChanged(t *testing.T, nb, mute *mesh.Node) {
	t.Helper()
	if err := mute.SetResource(resourceName, summary{Count: 10, Version: 1}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the mute node's record", func() bool {
		r, ok := nb.Lookup(mute.ID())
		_, adv := advertised(r)
		return ok && adv
	})
}
