package shards

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh/meshtest"
)

// ownEntry is s's own catalog entry of id.
func ownEntry(s *Service, id MD5) (Entry, bool) {
	return s.catalog.l.Get(id)
}

// TestCatalogMergesSources: a resource this node both shares and
// downloaded is listed once, worked out from both, in whichever order
// they come: internal only while both are a service's, named as the
// user's one names it; when one goes the other's entry is listed again.
func TestCatalogMergesSources(t *testing.T) {
	user := Entry{ID: MD5{9}, Manifest: Hash{2}, Size: 10, Name: "holiday.jpg", Type: "image/jpeg"}
	svc := Entry{ID: MD5{9}, Manifest: Hash{2}, Size: 10, Name: "0123abcd.jpg", Type: "image/jpeg", Internal: true}
	for _, tc := range []struct {
		name       string
		share, dl  Entry
		want       Entry
		shareFirst bool
	}{
		{"service's share, then the user's download", svc, user, user, true},
		{"the user's download, then a service's share", svc, user, user, false},
		{"the user's share, then a service's download", user, svc, user, true},
		{"a service's download, then the user's share", user, svc, user, false},
		{"both a service's", svc, svc, svc, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCatalog()
			if tc.shareFirst {
				c.put(ownShares, tc.share)
				c.put(ownDownloads, tc.dl)
			} else {
				c.put(ownDownloads, tc.dl)
				c.put(ownShares, tc.share)
			}
			if e, _ := c.l.Get(user.ID); e != tc.want {
				t.Fatalf("listed %+v, want %+v", e, tc.want)
			}
			if n, _ := c.summary(); n != 1 {
				t.Fatalf("%d entries, want 1", n)
			}
			// The same entries give the same version, however they came.
			want := newCatalog()
			want.put(ownShares, tc.want)
			if _, v := c.summary(); v != want.l.Summary().Version {
				t.Fatalf("version %x, want %x", v, want.l.Summary().Version)
			}
			c.remove(ownDownloads, user.ID)
			if e, _ := c.l.Get(user.ID); e != tc.share {
				t.Fatalf("download gone: listed %+v, want the share's %+v", e, tc.share)
			}
			c.put(ownDownloads, tc.dl)
			c.remove(ownShares, user.ID)
			if e, _ := c.l.Get(user.ID); e != tc.dl {
				t.Fatalf("share gone: listed %+v, want the download's %+v", e, tc.dl)
			}
			c.remove(ownDownloads, user.ID)
			if n, v := c.summary(); n != 0 || v != 0 || len(c.both) != 0 {
				t.Fatalf("both gone: %d entries, version %x, %d merged", n, v, len(c.both))
			}
		})
	}
}

// TestUserDownloadAndServiceShare: b's user downloads a's file, then
// b's music shares the same bytes for itself (a cover it extracted). b
// lists it as the user's, under the download's name, before and after a
// restart; a service's download of a file b's user shares, finished
// after the share, does not hide it either.
func TestUserDownloadAndServiceShare(t *testing.T) {
	testutil.CheckGoroutines(t)
	a, b := newPair(t)
	sa := serveTest(t, testConfig(t, a))
	cfg := testConfig(t, b)
	sb, stop := startTest(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	dir := t.TempDir()
	data := writeRandom(t, filepath.Join(dir, "holiday.jpg"), 200<<10, 61)
	l := shareLink(t, ctx, sa, filepath.Join(dir, "holiday.jpg"))
	if _, err := sb.Fetch(ctx, l); err != nil {
		t.Fatal(err)
	}
	waitState(t, sb.downloads, l.ID, StateDone, time.Minute)
	coverPath := filepath.Join(t.TempDir(), "0123abcd.jpg")
	if err := os.WriteFile(coverPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if tr, err := sb.ShareFor(ctx, coverPath, "music"); err != nil || tr.ID != l.ID {
		t.Fatalf("music's share: %+v, %v", tr, err)
	}
	check := func(when string) {
		t.Helper()
		e, ok := ownEntry(sb, l.ID)
		if !ok || e.Internal || e.Name != "holiday.jpg" {
			t.Fatalf("%s: b lists %+v (%v), want the user's holiday.jpg", when, e, ok)
		}
	}
	check("music shared it after the download")
	stop()
	sb, stop = startTest(t, cfg)
	check("after a restart")
	stop()

	// The reverse, on a third node: a service's download finishes after
	// the user shared the same bytes (onDone comes late, as when the
	// download had started before the share).
	c := meshtest.NewNetwork().NewNode(t, "c", meshtest.Options{Configure: meshtest.Fast})
	sc := serveTest(t, testConfig(t, c))
	minePath := filepath.Join(t.TempDir(), "mine.jpg")
	if err := os.WriteFile(minePath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Share(ctx, minePath); err != nil {
		t.Fatal(err)
	}
	sc.downloadDone(Transfer{ID: l.ID, Manifest: l.Manifest, Size: int64(len(data)), Name: "0123abcd.jpg", For: "music"})
	if e, ok := ownEntry(sc, l.ID); !ok || e.Internal || e.Name != "mine.jpg" {
		t.Fatalf("c lists %+v (%v), want the user's mine.jpg", e, ok)
	}
}

// TestShareFileGoneRefreshes: a resource shared from the user's file in
// a shared folder and from music's cover outside it is the user's; when
// the user deletes theirs, the cover alone holds it and it is listed
// internal (it stayed listed as the user's).
func TestShareFileGoneRefreshes(t *testing.T) {
	testutil.CheckGoroutines(t)
	node := meshtest.NewNetwork().NewNode(t, "a", meshtest.Options{Configure: meshtest.Fast})
	cfg := testConfig(t, node)
	folder := t.TempDir()
	cfg.Folders = []string{folder}
	userPath := filepath.Join(folder, "holiday.jpg")
	data := writeRandom(t, userPath, 100<<10, 62)
	s := serveTest(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	coverPath := filepath.Join(t.TempDir(), "0123abcd.jpg")
	if err := os.WriteFile(coverPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	tr, err := s.ShareFor(ctx, coverPath, "music")
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the folder's file to be shared", func() bool {
		return s.shares.isShared(userPath)
	})
	if e, ok := ownEntry(s, tr.ID); !ok || e.Internal || e.Name != "holiday.jpg" {
		t.Fatalf("listed %+v (%v), want the user's holiday.jpg", e, ok)
	}
	if err := os.Remove(userPath); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the user's file to go", func() bool {
		return !s.shares.isShared(userPath)
	})
	if e, ok := ownEntry(s, tr.ID); !ok || !e.Internal {
		t.Fatalf("the user's file gone: listed %+v (%v), want music's cover internal", e, ok)
	}
}
