package shards

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// TestSharesPage: a node with 100,000 shares and a few downloads (one of
// them also shared) pages through them 5,000 at a time: every one comes
// exactly once, newest first then by id, the shared copy of the one both
// shared and downloaded, and the total counts each once. Transfer finds a
// share, a download, and refuses an unknown id.
func TestSharesPage(t *testing.T) {
	testutil.CheckGoroutines(t)
	a, _ := newPair(t)
	s, err := New(testConfig(t, a))
	if err != nil {
		t.Fatal(err)
	}
	const nShares, nDownloads = 100_000, 20
	r := rand.New(rand.NewPCG(7, 7))
	man := &Manifest{Size: 1, PieceSize: MinPieceSize, Pieces: []MD5{{1}}}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	randID := func() MD5 {
		var id MD5
		for j := range id {
			id[j] = byte(r.Uint32())
		}
		return id
	}
	type want struct {
		id    MD5
		added time.Time
		state State
	}
	var all []want
	s.shares.mu.Lock()
	for i := range nShares {
		id := randID()
		// Many share a time, as files found in one scan do: the id
		// breaks the tie.
		added := base.Add(time.Duration(r.IntN(nShares/10)) * time.Second)
		s.shares.byID[id] = &share{id: id, name: fmt.Sprintf("f%d.txt", i), man: man, hash: man.Hash(), added: added,
			files: []shareFile{{Path: fmt.Sprintf("/music/f%d.txt", i)}}}
		all = append(all, want{id, added, StateSeeding})
	}
	s.shares.mu.Unlock()
	var sharedToo MD5
	s.downloads.mu.Lock()
	for i := range nDownloads {
		id := randID()
		if i == 0 { // downloaded and then shared: listed once, as shared
			id = all[0].id
			sharedToo = id
		}
		dl := s.downloads.newDownload(Link{ID: id, Name: fmt.Sprintf("d%d.bin", i)})
		dl.added, dl.state = base.Add(time.Duration(r.IntN(nShares/10))*time.Second), StatePaused
		s.downloads.all[id] = dl
		if i > 0 {
			all = append(all, want{id, dl.added, StatePaused})
		}
	}
	s.downloads.mu.Unlock()

	ctx := context.Background()
	const pageSize = 5000
	var got []Transfer
	for offset := 0; ; offset += pageSize {
		page, total, err := s.SharesPage(ctx, offset, pageSize)
		if err != nil {
			t.Fatal(err)
		}
		if total != len(all) {
			t.Fatalf("total %d, want %d", total, len(all))
		}
		if len(page) > pageSize {
			t.Fatalf("a page of %d", len(page))
		}
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
	}
	if len(got) != len(all) {
		t.Fatalf("paged through %d, want %d", len(got), len(all))
	}
	seen := make(map[MD5]bool)
	for i, tr := range got {
		if seen[tr.ID] {
			t.Fatalf("%s listed twice", tr.ID)
		}
		seen[tr.ID] = true
		if i > 0 {
			prev := got[i-1]
			if c := tr.Added.Compare(prev.Added); c > 0 || c == 0 && bytes.Compare(prev.ID[:], tr.ID[:]) >= 0 {
				t.Fatalf("entry %d (%s, %v) out of order after %s, %v", i, tr.ID, tr.Added, prev.ID, prev.Added)
			}
		}
		if tr.ID == sharedToo && tr.State != StateSeeding {
			t.Errorf("the shared download is listed as %s, want seeding", tr.State)
		}
	}
	for _, w := range all {
		if !seen[w.id] {
			t.Fatalf("%s missing", w.id)
		}
	}
	// No limit: all from offset; past the end: none.
	if rest, _, _ := s.SharesPage(ctx, len(all)-5, -1); len(rest) != 5 || rest[4].ID != got[len(got)-1].ID {
		t.Errorf("the last 5 without a limit: %d", len(rest))
	}
	if none, total, _ := s.SharesPage(ctx, len(all)+10, 10); len(none) != 0 || total != len(all) {
		t.Errorf("past the end: %d entries, total %d", len(none), total)
	}
	if _, _, err := s.SharesPage(ctx, -1, 10); err == nil {
		t.Error("a negative offset was taken")
	}

	if tr, err := s.Transfer(ctx, all[5].id); err != nil || tr.State != StateSeeding || tr.Link == "" {
		t.Errorf("Transfer of a share: %+v, %v", tr, err)
	}
	if tr, err := s.Transfer(ctx, all[nShares].id); err != nil || tr.State != StatePaused {
		t.Errorf("Transfer of a download: %+v, %v", tr, err)
	}
	if _, err := s.Transfer(ctx, MD5{0xfe, 0xed}); !errors.Is(err, ErrUnknown) {
		t.Errorf("Transfer of an unknown id: %v", err)
	}
}

// TestSharesPageUsersOnly: GET /api/shards is the user's list (the web UI
// shows no service's transfer), so SharesPage leaves out what a service
// shares or fetches (For set: music's covers and lyrics, the tracks a
// player caches) from its pages and from its total. Counted, they made
// pages short once the UI dropped them, and files.js stops at a short
// page: user transfers after them were never read. Here the services'
// are the newest, so they would fill the first pages.
func TestSharesPageUsersOnly(t *testing.T) {
	testutil.CheckGoroutines(t)
	a, _ := newPair(t)
	s, err := New(testConfig(t, a))
	if err != nil {
		t.Fatal(err)
	}
	const nUser, nService = 3000, 2500
	man := &Manifest{Size: 1, PieceSize: MinPieceSize, Pieces: []MD5{{1}}}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	idOf := func(kind byte, i int) MD5 { return MD5{kind, byte(i >> 16), byte(i >> 8), byte(i)} }
	users := make(map[MD5]bool)
	s.shares.mu.Lock()
	for i := range nUser {
		id := idOf(1, i)
		s.shares.byID[id] = &share{id: id, name: fmt.Sprintf("u%d.txt", i), man: man, hash: man.Hash(), added: base.Add(time.Duration(i) * time.Second),
			files: []shareFile{{Path: fmt.Sprintf("/home/u%d.txt", i)}}}
		users[id] = true
	}
	for i := range nService {
		id := idOf(2, i)
		s.shares.byID[id] = &share{id: id, name: fmt.Sprintf("%x.jpg", id), man: man, hash: man.Hash(), added: base.Add(time.Hour + time.Duration(i)*time.Second),
			files: []shareFile{{Path: fmt.Sprintf("/data/music/%x.jpg", id), For: "music"}}}
	}
	// One file of both: the user shared the cover's bytes too.
	both := idOf(2, 0)
	s.shares.byID[both].files = append(s.shares.byID[both].files, shareFile{Path: "/home/holiday.jpg"})
	users[both] = true
	s.shares.mu.Unlock()
	s.downloads.mu.Lock()
	for i := range 40 {
		id, owner := idOf(3, i), ""
		if i%2 == 0 {
			owner = "music"
		} else {
			users[id] = true
		}
		dl := s.downloads.newDownload(Link{ID: id, Name: fmt.Sprintf("d%d.mp3", i), For: owner})
		dl.added, dl.state = base.Add(2*time.Hour+time.Duration(i)*time.Second), StatePaused
		s.downloads.all[id] = dl
	}
	s.downloads.mu.Unlock()

	// As files.js reads them: pages of 1000 until a short one.
	ctx := context.Background()
	const pageSize = 1000
	seen := make(map[MD5]bool)
	for offset := 0; ; offset += pageSize {
		page, total, err := s.SharesPage(ctx, offset, pageSize)
		if err != nil {
			t.Fatal(err)
		}
		if total != len(users) {
			t.Fatalf("total %d, want the user's %d", total, len(users))
		}
		for _, tr := range page {
			if tr.For != "" || !users[tr.ID] {
				t.Fatalf("page at %d lists %s, a service's (For %q)", offset, tr.ID, tr.For)
			}
			seen[tr.ID] = true
		}
		if len(page) < pageSize {
			break
		}
	}
	if len(seen) != len(users) {
		t.Fatalf("read %d of the user's %d transfers", len(seen), len(users))
	}
}
