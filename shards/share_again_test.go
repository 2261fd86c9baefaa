package shards

import (
	"context"
	"crypto/md5"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestShareAgainUnchanged: music shares a track's embedded cover once per
// track, so a library shares the same file thousands of times. Sharing
// again a file that is shared and unchanged must neither write the
// database nor (once its stamp can vouch for it) hash it again; a file
// that did change is hashed and written as before.
func TestShareAgainUnchanged(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	cfg := testConfig(t, nw.NewNode(t, "a", meshtest.Options{Configure: meshtest.Fast}))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	writes := func() int64 {
		st := cfg.DB.Stats()
		return st.TxStats.GetWrite()
	}

	path := filepath.Join(t.TempDir(), "cover.jpg")
	data := writeRandom(t, path, 300<<10, 9)
	tr, err := s.Share(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if tr.ID != md5.Sum(data) {
		t.Fatalf("shared as %s, want %x", tr.ID, md5.Sum(data))
	}
	s.shares.mu.Lock()
	racy := s.shares.byID[tr.ID].files[0].Racy
	s.shares.mu.Unlock()
	if !racy {
		t.Fatal("a file written just before it was hashed is not marked racy")
	}

	// Racy: hashed again (its stamp cannot vouch for it), but the
	// database already holds it.
	w, h := writes(), s.shares.hashed.Load()
	const times = 1000
	for range times {
		again, err := s.Share(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if again.ID != tr.ID || again.Path != path {
			t.Fatalf("shared again as %+v, want %s at %s", again, tr.ID, path)
		}
	}
	if got := writes() - w; got != 0 {
		t.Errorf("sharing an unchanged racy file %d times wrote the database %d times", times, got)
	}
	// (Once the file is older than racyWindow, a hash finds it no
	// longer racy, and the later shares cost a stat.)
	if got := s.shares.hashed.Load() - h; got < 1 || got > times {
		t.Errorf("an unchanged racy file shared %d times was hashed %d times", times, got)
	}

	// Hashed long after its last change: a stat is enough.
	s.shares.mu.Lock()
	sh := s.shares.byID[tr.ID]
	files := append([]shareFile(nil), sh.files...)
	files[0].Racy = false
	sh.files = files
	s.shares.mu.Unlock()
	w, h = writes(), s.shares.hashed.Load()
	for range times {
		again, err := s.Share(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if again.ID != tr.ID {
			t.Fatalf("shared again as %s, want %s", again.ID, tr.ID)
		}
	}
	if got := writes() - w; got != 0 {
		t.Errorf("sharing an unchanged file %d times wrote the database %d times", times, got)
	}
	if got := s.shares.hashed.Load() - h; got != 0 {
		t.Errorf("an unchanged file shared %d times was hashed %d times", times, got)
	}

	// Changed: hashed, shared under its new id and written at once.
	data = append(data, "more"...)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	w = writes()
	changed, err := s.Share(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if changed.ID != md5.Sum(data) {
		t.Fatalf("a changed file shared as %s, want %x", changed.ID, md5.Sum(data))
	}
	if writes() == w {
		t.Error("a changed file's share was not written")
	}
	if _, ok := s.shares.transfer(tr.ID); ok {
		t.Error("the file's old content is still shared")
	}
}

// TestClaimRacyShare: a service's claim (ShareFor) of a file the user
// shared just after writing it (racy, as music's covers are) changes the
// owner without hashing the file again or syncing the database; the
// record stays racy, so its pieces are still checked when served.
func TestClaimRacyShare(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	cfg := testConfig(t, nw.NewNode(t, "a", meshtest.Options{Configure: meshtest.Fast}))
	s := serveTest(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "0123abcd.jpg")
	writeRandom(t, path, 300<<10, 11)
	tr, err := s.Share(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	writes := func() int64 {
		st := cfg.DB.Stats()
		return st.TxStats.GetWrite()
	}
	w, h := writes(), s.shares.hashed.Load()
	claimed, err := s.ShareFor(ctx, path, "music")
	if err != nil {
		t.Fatal(err)
	}
	if claimed.ID != tr.ID || claimed.For != "music" {
		t.Fatalf("claimed as %s for %q, want %s for music", claimed.ID, claimed.For, tr.ID)
	}
	if got := s.shares.hashed.Load() - h; got != 0 {
		t.Errorf("the claim hashed the file %d times, want 0", got)
	}
	if got := writes() - w; got != 0 {
		t.Errorf("the claim wrote the database %d times, want 0 (written at the next checkpoint)", got)
	}
	s.shares.mu.Lock()
	racy := s.shares.byID[tr.ID].files[0].Racy
	s.shares.mu.Unlock()
	if !racy {
		t.Error("the claimed record is no longer racy: its stamp cannot vouch for its bytes")
	}
}
