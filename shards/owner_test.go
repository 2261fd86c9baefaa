package shards

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// TestUserFetchTakesOverServiceDownload: a service (music) fetches a dozen
// files for its own use (Link.For); the user then fetches some of them, as
// the Files view does. Those become the user's: listed, announced and
// stored without For, a service's fetch does not take them back, and the
// service's RemoveFor leaves them (and their files) alone while it removes
// the ones still its own.
func TestUserFetchTakesOverServiceDownload(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	const n = 12
	var srcs []*readerSource
	var sources []pieceSource
	for i := range n {
		_, src := testFile(t, 256<<10+i*4096, byte(40+i))
		srcs = append(srcs, src)
		sources = append(sources, src)
	}
	(&testServer{sources: sources}).register(nodes[0])
	dir := t.TempDir()
	d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const svc = "music"
	for i, src := range srcs {
		l := src.link(nodes[0].ID(), fmt.Sprintf("%d.wav", i))
		l.For = svc
		tr, err := d.fetch(ctx, l)
		if err != nil || tr.For != svc {
			t.Fatalf("service fetch %d: %+v, %v", i, tr, err)
		}
	}
	// Half finish before the user's fetch, half may still run.
	for i := range n / 2 {
		waitState(t, d.downloads, srcs[i].id, StateDone, time.Minute)
	}
	sub := d.events.Subscribe(4 * n)
	defer sub.Close()
	users := func(i int) bool { return i%2 == 0 }
	for i, src := range srcs {
		if !users(i) {
			continue
		}
		tr, err := d.fetch(ctx, Link{ID: src.id}) // the Files view's fetch by id
		if err != nil || tr.For != "" {
			t.Fatalf("the user's fetch of service download %d: %+v, %v", i, tr, err)
		}
		// The service asking again does not take it back.
		l := src.link(nodes[0].ID(), "again.wav")
		l.For = svc
		if tr, err := d.fetch(ctx, l); err != nil || tr.For != "" {
			t.Fatalf("the service's fetch of the user's download %d: %+v, %v", i, tr, err)
		}
	}
	// The Files view learns of each one taken over (it left them out).
	announced := map[MD5]bool{}
	testutil.WaitFor(t, 10*time.Second, "events of the downloads taken over", func() bool {
		for {
			select {
			case ev := <-sub.C():
				if ev.Transfer != nil && ev.Transfer.For == "" {
					announced[ev.Transfer.ID] = true
				}
				continue
			default:
			}
			break
		}
		for i, src := range srcs {
			if users(i) && !announced[src.id] {
				return false
			}
		}
		return true
	})
	for i := range srcs {
		waitState(t, d.downloads, srcs[i].id, StateDone, time.Minute)
	}
	if _, err := d.removeFor(ctx, srcs[1].id, ""); err == nil {
		t.Fatal("removeFor with no service removed a download")
	}
	if _, err := d.removeFor(ctx, srcs[1].id, "plugins"); !errors.Is(err, ErrNotOwned) {
		t.Fatalf("another service's removeFor of music's download: %v, want ErrNotOwned", err)
	}
	paths := map[MD5]string{}
	for _, tr := range d.transfers() {
		paths[tr.ID] = tr.Path
	}
	for i, src := range srcs {
		_, err := d.removeFor(ctx, src.id, svc)
		if users(i) && !errors.Is(err, ErrNotOwned) {
			t.Errorf("removeFor of the user's download %d: %v, want ErrNotOwned", i, err)
		}
		if !users(i) && err != nil {
			t.Errorf("removeFor of the service's download %d: %v", i, err)
		}
	}
	listed := map[MD5]Transfer{}
	for _, tr := range d.transfers() {
		listed[tr.ID] = tr
	}
	recs, _, _, err := loadDownloads(d.db)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[MD5]downloadRecord{}
	for _, r := range recs {
		stored[r.ID] = r
	}
	for i, src := range srcs {
		tr, ok := listed[src.id]
		r, kept := stored[src.id]
		switch {
		case users(i) && (!ok || tr.State != StateDone || tr.For != ""):
			t.Errorf("the user's download %d after the service's removal: %+v (listed %v)", i, tr, ok)
		case users(i) && (!kept || r.Link.For != ""):
			t.Errorf("the user's download %d is stored as %+v (stored %v), want no For", i, r.Link, kept)
		case !users(i) && (ok || kept):
			t.Errorf("the service's download %d stays: listed %v, stored %v", i, ok, kept)
		}
		if users(i) {
			if _, err := os.Stat(paths[src.id]); err != nil {
				t.Errorf("the user's download %d lost its file: %v", i, err)
			}
		}
	}
}
