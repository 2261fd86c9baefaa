package shards

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestShareForStaysOutOfFiles: a file a service shares for its peers
// (ShareFor: music's cover) is left out of every node's Files, yet found
// by id: b fetches it by id alone, and c's lookup finds a and b (b's
// finished download is listed internal too). The same bytes shared by
// a's user are listed, under the user's name.
func TestShareForStaysOutOfFiles(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	var nodes []*mesh.Node
	for _, name := range []string{"a", "b", "c"} {
		nodes = append(nodes, nw.NewNode(t, name, meshtest.Options{Configure: meshtest.Fast}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, n := range nodes[1:] {
		if err := n.Connect(ctx, nodes[0].ID()); err != nil {
			t.Fatal(err)
		}
	}
	var svcs []*Service
	for _, n := range nodes {
		svcs = append(svcs, serveTest(t, testConfig(t, n)))
	}
	a, b, c := svcs[0], svcs[1], svcs[2]

	dir := t.TempDir()
	coverPath := filepath.Join(dir, "0123abcd.jpg")
	data := writeRandom(t, coverPath, 300<<10, 3)
	cover, err := a.ShareFor(ctx, coverPath, "music")
	if err != nil {
		t.Fatal(err)
	}
	if cover.For != "music" {
		t.Fatalf("the share's transfer says For %q, want music", cover.For)
	}
	notePath := filepath.Join(dir, "note.txt")
	writeRandom(t, notePath, 1000, 4)
	note, err := a.Share(ctx, notePath)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(fs []File) []MD5 {
		var out []MD5
		for _, f := range fs {
			out = append(out, f.ID)
		}
		return out
	}
	// The note and the cover are in one catalog version: once b lists
	// the note, it has the cover's entry too.
	testutil.WaitFor(t, 30*time.Second, "b to list a's note", func() bool {
		fs, err := b.Files(ctx)
		return err == nil && slices.Contains(ids(fs), note.ID)
	})
	for name, s := range map[string]*Service{"a": a, "b": b} {
		fs, err := s.Files(ctx)
		if err != nil || len(fs) != 1 || fs[0].ID != note.ID {
			t.Fatalf("%s's Files: %+v, %v; want the note alone", name, fs, err)
		}
	}

	// b's service fetches the cover by id alone, as music does.
	if _, err := b.Fetch(ctx, Link{ID: cover.ID, For: "music"}); err != nil {
		t.Fatal(err)
	}
	r, err := b.Open(ctx, cover.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(got) != string(data) {
		t.Fatalf("b read %d bytes of the cover, %v", len(got), err)
	}
	testutil.WaitFor(t, 30*time.Second, "c to find a and b hold the cover", func() bool {
		hs, err := c.lookupHolders(ctx, cover.ID)
		return err == nil && sameIDs(hs, []mesh.ID{a.node.ID(), b.node.ID()})
	})
	if fs, err := c.Files(ctx); err != nil || len(fs) != 1 || fs[0].ID != note.ID {
		t.Fatalf("c's Files: %+v, %v; want the note alone", fs, err)
	}

	// a's user shares the same bytes: now it is listed, by their name,
	// with both holders.
	minePath := filepath.Join(dir, "holiday.jpg")
	if err := os.WriteFile(minePath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if mine, err := a.Share(ctx, minePath); err != nil || mine.ID != cover.ID || mine.For != "" {
		t.Fatalf("the user's share of the same bytes: %+v, %v", mine, err)
	}
	testutil.WaitFor(t, 30*time.Second, "c to list the user's holiday.jpg", func() bool {
		fs, err := c.Files(ctx)
		if err != nil {
			return false
		}
		i := slices.IndexFunc(fs, func(f File) bool { return f.ID == cover.ID })
		return i >= 0 && fs[i].Name == "holiday.jpg" && len(fs[i].Holders) == 2
	})
}

// TestShareForKeepsOwner: whose a file is survives a restart, and a file
// that changed while the node was down (hashed again) stays the
// service's; Share of the path makes it the user's.
func TestShareForKeepsOwner(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	node := nw.NewNode(t, "a", meshtest.Options{Configure: meshtest.Fast})
	cfg := testConfig(t, node)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "lyrics.lrc")
	writeRandom(t, path, 5000, 1)
	own := func(s *Service) []Entry {
		es, _ := s.catalog.entries()
		return es
	}
	s, stop := startTest(t, cfg)
	if _, err := s.ShareFor(ctx, path, "music"); err != nil {
		t.Fatal(err)
	}
	if es := own(s); len(es) != 1 || !es[0].Internal {
		t.Fatalf("catalog %+v, want the lyrics internal", es)
	}
	stop()
	s, stop = startTest(t, cfg)
	if es := own(s); len(es) != 1 || !es[0].Internal {
		t.Fatalf("after a restart: catalog %+v, want the lyrics internal", es)
	}
	stop()
	// Changed while the node was down: hashed again, still music's.
	writeRandom(t, path, 6000, 2)
	s, stop = startTest(t, cfg)
	testutil.WaitFor(t, 30*time.Second, "the changed file to be shared again", func() bool {
		es := own(s)
		return len(es) == 1 && es[0].Size == 6000
	})
	if es := own(s); !es[0].Internal {
		t.Fatalf("hashed again: %+v, want it internal", es)
	}
	if tr, err := s.Share(ctx, path); err != nil || tr.For != "" {
		t.Fatalf("the user's Share: %+v, %v", tr, err)
	}
	if es := own(s); len(es) != 1 || es[0].Internal {
		t.Fatalf("after the user's Share: %+v, want it the user's", es)
	}
	stop()
}

// TestMergeCatalogsInternal: a peer may lie about the mark. Marking a
// file internal hides only its own listing: a file this node or another
// holder lists as the user's stays in Files. Marking a service's file as
// the user's shows it (clutter, as sharing any file could). Lookups by id
// ignore the mark.
func TestMergeCatalogsInternal(t *testing.T) {
	self, _ := mesh.ParseID("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	x, _ := mesh.ParseID("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	liar, _ := mesh.ParseID("22222222222222222222222222222222")
	user := Entry{ID: MD5{7}, Manifest: Hash{1}, Size: 10, Name: "a.png", Type: "image/png"}
	internal := user
	internal.Internal = true
	for _, tc := range []struct {
		name   string
		lists  map[mesh.ID][]Entry
		listed bool
	}{
		{"this node's own, a liar marks it internal", map[mesh.ID][]Entry{self: {user}, liar: {internal}}, true},
		{"another holder's, a liar marks it internal", map[mesh.ID][]Entry{x: {user}, liar: {internal}}, true},
		{"every holder marks it internal", map[mesh.ID][]Entry{self: {internal}, x: {internal}}, false},
		{"a liar lists a service's file as the user's", map[mesh.ID][]Entry{x: {internal}, liar: {user}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := mergeCatalogs(self, tc.lists)
			if len(files) != 1 || len(files[0].Holders) != 2 {
				t.Fatalf("merged %+v: lookups must see every holder", files)
			}
			if files[0].internal == tc.listed {
				t.Fatalf("internal %v, want listed %v", files[0].internal, tc.listed)
			}
		})
	}
}

// startTest runs a service until stop, which waits for Serve to end (a
// restart reopens cfg's database).
func startTest(t *testing.T, cfg Config) (*Service, func()) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	testutil.WaitFor(t, 10*time.Second, "Serve to start", s.open)
	var stopped bool
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return s, stop
}
