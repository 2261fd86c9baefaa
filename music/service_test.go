package music

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// countPages wraps a music service's list handler to count the pages it
// serves.
func countPages(s *Service, n *mesh.Node) *atomic.Int64 {
	var c atomic.Int64
	n.Handle(ProtoList, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		c.Add(1)
		return s.handleList(ctx, m)
	}))
	return &c
}

// TestLibrary20kAcrossNodes lists a library of 20,000 tracks held by one
// node, a quarter of them by another too, from a third: each track once
// with its sources, its tags from the owner's list, paged from the owner
// alone and cached by version (an unchanged list is not fetched again).
// When a node goes offline its sources leave, and its tracks with them.
func TestLibrary20kAcrossNodes(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw, nodes := newMesh(t, 3)
	a, b, c := newTestNode(t, nodes[0], t.TempDir()), newTestNode(t, nodes[1]), newTestNode(t, nodes[2], t.TempDir())
	pagesA := countPages(a.music, a.node)
	const n = 20_000
	ts, tags := genTracks(n, 1, a.music.folders[0])
	a.addExtra(t, ts, tags)
	shared := slices.Clone(ts[:n/4])
	for i := range shared {
		shared[i].Path = filepath.Join(c.music.folders[0], filepath.Base(shared[i].Path))
	}
	c.addExtra(t, shared, tags)

	got := tracksBy(t, b, "20,000 tracks with their sources", func(m map[shards.MD5]Track) bool {
		if len(m) != n {
			return false
		}
		for i, tr := range ts {
			if want := 1 + b2i(i < n/4); len(m[tr.ID].Sources) != want {
				return false
			}
		}
		return true
	})
	for _, i := range []int{0, n / 4, n - 1} {
		tr, want := got[ts[i].ID], tags[ts[i].ID]
		if tr.Title != want.Title || tr.Artist != want.Artist || tr.Album != want.Album || tr.Duration != want.Duration ||
			tr.Name != ts[i].Name || tr.Local || tr.Cached || !slices.Contains(tr.Sources, a.node.ID()) {
			t.Fatalf("track %d: %+v, want the tags %+v", i, tr, want)
		}
	}
	if p := pagesA.Load(); p < n/MaxPage {
		t.Fatalf("a served %d pages, want at least %d", p, n/MaxPage)
	}
	// Unchanged lists come from the cache.
	before := pagesA.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b.music.mu.Lock()
	b.music.gen++ // a merge again, not the merged library kept
	b.music.mu.Unlock()
	if ts2, err := b.music.Tracks(ctx, false); err != nil || len(ts2) != n {
		t.Fatalf("again: %d tracks, %v", len(ts2), err)
	}
	if p := pagesA.Load(); p != before {
		t.Fatalf("an unchanged list was fetched again: %d more pages", p-before)
	}
	// a's own view has its tracks as local.
	own := tracksBy(t, a, "a's library", func(m map[shards.MD5]Track) bool { return len(m) == n })
	if tr := own[ts[0].ID]; !tr.Local || !slices.Contains(tr.Sources, a.node.ID()) {
		t.Fatalf("a's own track: %+v", tr)
	}

	// c goes offline: the shared quarter keeps a as its only source.
	nw.Kill(c.node.ID())
	tracksBy(t, b, "c's sources to leave", func(m map[shards.MD5]Track) bool {
		tr := m[ts[0].ID]
		return len(m) == n && len(tr.Sources) == 1 && tr.Sources[0] == a.node.ID()
	})
	// a goes offline: its tracks leave.
	nw.Kill(a.node.ID())
	tracksBy(t, b, "a's tracks to leave", func(m map[shards.MD5]Track) bool { return len(m) == 0 })
}

// TestBans checks that bans hide and refuse tracks by title, artist,
// album or file name, that an invalid list changes nothing and says why,
// and that the list survives a restart.
func TestBans(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newMesh(t, 2)
	a, b := newTestNode(t, nodes[0], t.TempDir()), newTestNode(t, nodes[1])
	ts, tags := genTracks(500, 2, a.music.folders[0])
	a.addExtra(t, ts, tags)
	tracksBy(t, b, "500 tracks", func(m map[shards.MD5]Track) bool { return len(m) == 500 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// artist-3 by artist (and artist-30..39), Song 7 by title, 00042 by name.
	pats := []string{`^artist-3$`, `^Song 7$`, `^00042 `}
	if err := b.music.SetBans(ctx, pats); err != nil {
		t.Fatal(err)
	}
	banned := func(i int) bool { return i%97 == 3 || i == 7 || i == 42 }
	list, err := b.music.Tracks(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for i := range ts {
		if !banned(i) {
			want++
		}
	}
	if len(list) != want {
		t.Fatalf("%d tracks listed, want %d not banned", len(list), want)
	}
	all, _ := b.music.Tracks(ctx, true)
	for _, tr := range all {
		i := slices.IndexFunc(ts, func(x shards.Transfer) bool { return x.ID == tr.MD5 })
		if tr.Banned != banned(i) {
			t.Fatalf("track %d banned=%v", i, tr.Banned)
		}
	}
	if _, err := b.music.Stream(ctx, ts[7].ID); !errors.Is(err, ErrBanned) {
		t.Fatalf("stream a banned track: %v, want ErrBanned", err)
	}
	if _, err := b.music.Stream(ctx, shards.MD5{1}); !errors.Is(err, ErrUnknown) {
		t.Fatalf("stream an unknown track: %v, want ErrUnknown", err)
	}

	// An invalid pattern: refused with the reason, nothing changed.
	err = b.music.SetBans(ctx, []string{`fine`, `(unclosed`})
	if !errors.Is(err, ErrBadPattern) || !bytes.Contains([]byte(err.Error()), []byte("missing closing )")) {
		t.Fatalf("invalid pattern: %v", err)
	}
	if got, _ := b.music.Bans(ctx); !slices.Equal(got, pats) {
		t.Fatalf("bans after a refused change: %q, want %q", got, pats)
	}
	if l2, _ := b.music.Tracks(ctx, false); len(l2) != want {
		t.Fatalf("after a refused change %d tracks listed, want %d", len(l2), want)
	}

	// A restart keeps the list.
	b.stop()
	b.start(t)
	if got, _ := b.music.Bans(ctx); !slices.Equal(got, pats) {
		t.Fatalf("bans after a restart: %q, want %q", got, pats)
	}
}

func testPNG(t *testing.T, c color.Color) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 600, 400))
	for y := range 400 {
		for x := range 600 {
			img.Set(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestStreamAttachRemoveCache plays a track of a's from b (the bytes are
// the file's), has b attach a cover and lyrics that reach a with the
// track, removes b's cached copy (the track stays while a holds it), and
// keeps b's cached copy playable when a goes offline.
func TestStreamAttachRemoveCache(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw, nodes := newMesh(t, 2)
	dirA := t.TempDir()
	wav := filepath.Join(dirA, "Some Artist", "A Song.wav")
	id := writeWAV(t, wav, 1)
	want, _ := os.ReadFile(wav)
	a, b := newTestNode(t, nodes[0], dirA), newTestNode(t, nodes[1])
	tracksBy(t, b, "a's track", func(m map[shards.MD5]Track) bool {
		tr := m[id]
		return tr.Title == "A Song" && tr.Format == "wav" && tr.Name == "A Song.wav" && tr.Size == int64(len(want))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	c, err := b.music.Stream(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	// The stream is named after the track (the web UI types it by its
	// name), and so is the cached copy.
	if c.Name() != "A Song.wav" {
		t.Errorf("a remote stream is named %q", c.Name())
	}
	if _, err := c.Seek(int64(len(want))*3/4, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	tail, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(tail, want[len(want)*3/4:]) {
		t.Fatalf("read from 75%%: %d bytes, %v", len(tail), err)
	}
	c.Close()

	// Attachments made on b travel to a.
	cover := testPNG(t, color.RGBA{200, 10, 10, 255})
	if err := b.music.SetCover(ctx, id, "image/png", cover); err != nil {
		t.Fatal(err)
	}
	if err := b.music.SetCover(ctx, id, "image/png", []byte("not an image")); !errors.Is(err, ErrBadInput) {
		t.Fatalf("a bad cover: %v, want ErrBadInput", err)
	}
	const lyr = "[00:01.00]first line\n[00:02.50]second line\n"
	if err := b.music.SetLyrics(ctx, id, lyr); err != nil {
		t.Fatal(err)
	}
	tracksBy(t, a, "b's cover and lyrics to reach a", func(m map[shards.MD5]Track) bool {
		return m[id].HasCover && m[id].HasLyrics
	})
	// b's shards advertise the attachments' resources on their own
	// round, which may reach a after b's track list.
	var mime string
	var got []byte
	testutil.WaitFor(t, 30*time.Second, "b's cover to be fetched", func() bool {
		mime, got, err = a.music.Cover(ctx, id, false)
		return err == nil
	})
	if err != nil || mime != "image/png" || !bytes.Equal(got, cover) {
		t.Fatalf("a's cover: %s %d bytes, %v", mime, len(got), err)
	}
	mime, thumb, err := a.music.Cover(ctx, id, true)
	if err != nil || mime != "image/jpeg" {
		t.Fatalf("a's thumbnail: %s, %v", mime, err)
	}
	if cfg, _, err := image.DecodeConfig(bytes.NewReader(thumb)); err != nil || cfg.Width != 256 {
		t.Fatalf("thumbnail %dx%d, %v", cfg.Width, cfg.Height, err)
	}
	l, err := a.music.Lyrics(ctx, id)
	if err != nil || !l.Synced || len(l.Lines) < 2 || l.Lines[1].T != 2.5 || l.Lines[1].Text != "second line" {
		t.Fatalf("a's lyrics: %+v, %v", l, err)
	}

	// b's copy is cached; removing it leaves the track, held by a.
	tracksBy(t, b, "b's copy to be cached", func(m map[shards.MD5]Track) bool { return m[id].Cached })
	c, err = b.music.Stream(ctx, id) // a whole read: the download finishes
	if err != nil {
		t.Fatal(err)
	}
	if all, err := io.ReadAll(c); err != nil || !bytes.Equal(all, want) {
		t.Fatalf("whole read: %d bytes, %v", len(all), err)
	}
	c.Close()
	tracksBy(t, b, "b to list its cached copy", func(m map[shards.MD5]Track) bool {
		return m[id].Cached && slices.Contains(m[id].Sources, b.node.ID())
	})
	if err := b.music.RemoveCache(ctx, id); err != nil {
		t.Fatal(err)
	}
	tracksBy(t, b, "the track to stay, uncached", func(m map[shards.MD5]Track) bool {
		tr, ok := m[id]
		return ok && !tr.Cached && slices.Equal(tr.Sources, []mesh.ID{a.node.ID()})
	})

	// Cached again, a leaves: b still lists and plays it, with its tags.
	c, err = b.music.Stream(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, c)
	c.Close()
	tracksBy(t, b, "b to list its cached copy again", func(m map[shards.MD5]Track) bool {
		return slices.Contains(m[id].Sources, b.node.ID())
	})
	nw.Kill(a.node.ID())
	tracksBy(t, b, "a's source to leave", func(m map[shards.MD5]Track) bool {
		tr := m[id]
		return tr.Cached && tr.Title == "A Song" && slices.Equal(tr.Sources, []mesh.ID{b.node.ID()})
	})
	c, err = b.music.Stream(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if all, err := io.ReadAll(c); err != nil || !bytes.Equal(all, want) {
		t.Fatalf("cached copy with a offline: %d bytes, %v", len(all), err)
	}
}

// TestRenameKeepsIdentity renames a track's file: it keeps its MD5, its
// attachments, and its tags are not read again.
func TestRenameKeepsIdentity(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newMesh(t, 1)
	dir := t.TempDir()
	old := filepath.Join(dir, "old name.wav")
	id := writeWAV(t, old, 3)
	a := newTestNode(t, nodes[0], dir)
	tracksBy(t, a, "the track", func(m map[shards.MD5]Track) bool { return m[id].Local })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.music.SetLyrics(ctx, id, "plain words"); err != nil {
		t.Fatal(err)
	}
	// A record only the tag cache has: if the renamed file were read
	// again, its title would go.
	a.music.mu.Lock()
	r := a.music.tags[id]
	a.music.mu.Unlock()
	r.Title = "Cached Title"
	putTags(t, a.db, map[shards.MD5]tagRecord{id: r})
	a.music.mu.Lock()
	delete(a.music.tags, id)
	a.music.mu.Unlock()

	os.MkdirAll(filepath.Join(dir, "sub"), 0o700)
	if err := os.Rename(old, filepath.Join(dir, "sub", "new name.wav")); err != nil {
		t.Fatal(err)
	}
	tracksBy(t, a, "the renamed track", func(m map[shards.MD5]Track) bool {
		tr := m[id]
		return len(m) == 1 && tr.Name == "new name.wav" && tr.Title == "Cached Title" && tr.HasLyrics && tr.Local
	})
	if l, err := a.music.Lyrics(ctx, id); err != nil || l.Synced || l.Raw != "plain words" {
		t.Fatalf("lyrics after the rename: %+v, %v", l, err)
	}
	st, _ := a.music.Scan(ctx)
	testutil.WaitFor(t, 30*time.Second, "the scan to end", func() bool {
		st, _ = a.music.Scan(ctx)
		return st.State == "idle"
	})
	if st.Files != 1 || st.Done != 1 {
		t.Fatalf("scan status %+v", st)
	}
}
