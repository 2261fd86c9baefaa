package music

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"image"
	pngenc "image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/shards"
)

// transferOf is n's shards transfer of id, if any.
func transferOf(t *testing.T, tn *testNode, id shards.MD5) (shards.Transfer, bool) {
	t.Helper()
	all, err := tn.shards.Shares(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range all {
		if tr.ID == id {
			return tr, true
		}
	}
	return shards.Transfer{}, false
}

// TestPartialDownloadNotCached plays the start of a track a holds (a
// serves slowly, so b's download of it stays partial): b lists it as not
// cached while the download runs, and when a leaves the track leaves b's
// library with it; a partial copy cannot play it.
func TestPartialDownloadNotCached(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw, nodes := newMesh(t, 2)
	dirA := t.TempDir()
	id := writeBigWAV(t, filepath.Join(dirA, "Slow.wav"), 4<<20, 1)
	slow := func(c *shards.Config) { c.UploadRate = 128 << 10 } // 4 MiB: half a minute
	a := newTestNodeTuned(t, nodes[0], nil, slow, dirA)
	b := newTestNode(t, nodes[1])
	tracksBy(t, b, "a's track", func(m map[shards.MD5]Track) bool { return len(m[id].Sources) == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := b.music.Stream(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	partial := func() bool {
		tr, ok := transferOf(t, b, id)
		return ok && tr.State == shards.StateDownloading && tr.Have > 0 && tr.Have < tr.Size
	}
	testutil.WaitFor(t, 30*time.Second, "b's partial download", partial)
	// A directory change merges the library again; so does this.
	b.music.mu.Lock()
	b.music.gen++
	b.music.mu.Unlock()
	ts, err := b.music.Tracks(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if !partial() {
		t.Skip("the download ended before the library was read: the machine is too slow for this test's upload cap")
	}
	if len(ts) != 1 || ts[0].Cached || ts[0].Local {
		t.Fatalf("b's library with the track partly downloaded: %+v, want one track not cached", ts)
	}

	// a leaves: the track goes with it, partial copy and all.
	nw.Kill(a.node.ID())
	tracksBy(t, b, "a's track to leave b's library", func(m map[shards.MD5]Track) bool { return len(m) == 0 })
}

// TestCacheLimitEvictsLeastRecentlyPlayed plays six tracks of a's on b,
// whose cache holds three: the least recently played go first (a track
// played again moves to the back), the one playing stays however long
// ago it started, and b's own music and the user's own download of a
// track are never touched. The cache's clock is the test's.
func TestCacheLimitEvictsLeastRecentlyPlayed(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newMesh(t, 2)
	dirA, dirB := t.TempDir(), t.TempDir()
	const size = 300 << 10 // writeWAV's
	ids := writeWAVs(t, dirA, 7, 10)
	mine := writeWAV(t, filepath.Join(dirB, "mine.wav"), 99)
	clock := newCacheClock()
	later := clock.later
	newTestNode(t, nodes[0], dirA)
	b := newCachingNode(t, nodes[1], 3*size+size/2, clock, dirB)
	tracksBy(t, b, "a's tracks and b's own", func(m map[shards.MD5]Track) bool {
		return len(m) == len(ids)+1 && m[mine].Local && len(m[ids[6]].Sources) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The user downloads track 6 from the Files view: not the cache's.
	if _, err := b.shards.Fetch(ctx, shards.Link{ID: ids[6], Name: "6.wav", Size: size}); err != nil {
		t.Fatal(err)
	}
	// play reads a track whole, as the player does, and leaves its stream
	// open if keep.
	play := func(i int, keep bool) shards.Content {
		t.Helper()
		c := playWhole(t, ctx, b, ids, i)
		if !keep {
			c.Close()
		}
		return c
	}
	cachedOnB := func(want ...int) func(map[shards.MD5]Track) bool {
		return func(m map[shards.MD5]Track) bool {
			for i := range 6 {
				if m[ids[i]].Cached != slices.Contains(want, i) {
					return false
				}
			}
			return m[mine].Local && m[ids[6]].Cached
		}
	}

	// Track 0 starts first and plays on (its stream stays open).
	playing := play(0, true)
	defer playing.Close()
	later()
	play(1, false)
	later()
	play(2, false)
	tracksBy(t, b, "tracks 0, 1 and 2 cached", cachedOnB(0, 1, 2))
	paths := map[int]string{}
	for _, i := range []int{1, 2} {
		tr, _ := transferOf(t, b, ids[i])
		paths[i] = tr.Path
	}
	later()
	// Track 3 takes the cache over its limit: 1 goes, not 0, which
	// started before it but plays.
	play(3, false)
	tracksBy(t, b, "track 1 to leave the cache", cachedOnB(0, 2, 3))
	tr, _ := transferOf(t, b, ids[3])
	paths[3] = tr.Path
	later()
	play(2, false) // again: now 3 is the least recently played
	later()
	play(4, false)
	tracksBy(t, b, "track 3 to leave the cache", cachedOnB(0, 2, 4))

	// What left the cache left the disk and b's transfers; b's own file
	// and the user's download stayed.
	for _, i := range []int{1, 3} {
		if tr, ok := transferOf(t, b, ids[i]); ok {
			t.Errorf("track %d left the cache but its transfer stays: %+v", i, tr)
		}
		if _, err := os.Stat(paths[i]); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("track %d left the cache but its file %s stays: %v", i, paths[i], err)
		}
	}
	if _, err := os.Stat(paths[2]); err != nil {
		t.Errorf("track 2, cached, lost its file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dirB, "mine.wav")); err != nil {
		t.Errorf("b's own track: %v", err)
	}
	if tr, ok := transferOf(t, b, ids[6]); !ok || tr.State != shards.StateDone {
		t.Errorf("the user's download: %+v", tr)
	}
	// A track that left the cache plays again from a.
	play(1, false)
}

// TestPeerAttachmentsFetchedForMusic: the cover and lyrics a peer
// attached to its track, read on b, are downloads for music (Link.For),
// which the Files view leaves out of the user's transfers.
func TestPeerAttachmentsFetchedForMusic(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newMesh(t, 2)
	dirA := t.TempDir()
	id := writeWAV(t, filepath.Join(dirA, "Song.wav"), 5)
	a, b := newTestNode(t, nodes[0], dirA), newTestNode(t, nodes[1])
	tracksBy(t, a, "a's track", func(m map[shards.MD5]Track) bool { return m[id].Local })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	img := image.NewRGBA(image.Rect(0, 0, 40, 30))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7)
	}
	var png bytes.Buffer
	if err := pngenc.Encode(&png, img); err != nil {
		t.Fatal(err)
	}
	const words = "[00:01.00]first line\n[00:02.00]second line\n"
	if err := a.music.SetCover(ctx, id, "image/png", png.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := a.music.SetLyrics(ctx, id, words); err != nil {
		t.Fatal(err)
	}
	tracksBy(t, b, "a's track with its cover and lyrics", func(m map[shards.MD5]Track) bool {
		return m[id].HasCover && m[id].HasLyrics
	})
	if _, _, err := b.music.Cover(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	if l, err := b.music.Lyrics(ctx, id); err != nil || len(l.Lines) != 2 {
		t.Fatalf("lyrics on b: %+v, %v", l, err)
	}
	atts := map[string]shards.MD5{"cover": md5.Sum(png.Bytes()), "lyrics": md5.Sum([]byte(words))}
	for what, rid := range atts {
		tr, ok := transferOf(t, b, rid)
		if !ok || tr.For != resourceName {
			t.Errorf("b's download of the %s: %+v (listed %v), want one for %q", what, tr, ok, resourceName)
		}
	}
	// a shared them for music (ShareFor), and b fetched them for music:
	// no node's Files lists them, only the track of a's music folder,
	// which the user shared. Once b's download of the lyrics is done, b
	// lists it too, internal: a's Files must still leave it out.
	testutil.WaitFor(t, 30*time.Second, "b's downloads of the attachments to finish", func() bool {
		for _, rid := range atts {
			if tr, ok := transferOf(t, b, rid); !ok || tr.State != shards.StateDone {
				return false
			}
		}
		return true
	})
	for name, n := range map[string]*testNode{"a": a, "b": b} {
		testutil.WaitFor(t, 30*time.Second, name+" to list a's track", func() bool {
			fs, err := n.shards.Files(ctx)
			return err == nil && slices.ContainsFunc(fs, func(f shards.File) bool { return f.ID == id && len(f.Holders) == 1 })
		})
		fs, _ := n.shards.Files(ctx)
		for what, rid := range atts {
			if slices.ContainsFunc(fs, func(f shards.File) bool { return f.ID == rid }) {
				t.Errorf("%s's Files lists the %s: %+v", name, what, fs)
			}
		}
	}
}

// TestCacheSparesTheUsersDownloadAfterRemove: b plays a track (the cache
// fetches it), the user removes that transfer in the Files view and
// downloads the track again there: the new copy is the user's, and when
// the cache goes over its limit it removes its own tracks, not that one.
func TestCacheSparesTheUsersDownloadAfterRemove(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newMesh(t, 2)
	dirA := t.TempDir()
	const size = 300 << 10 // writeWAV's
	ids := writeWAVs(t, dirA, 3, 30)
	clock := newCacheClock()
	later := clock.later
	newTestNode(t, nodes[0], dirA)
	b := newCachingNode(t, nodes[1], size+size/2, clock)
	tracksBy(t, b, "a's tracks", func(m map[shards.MD5]Track) bool {
		return len(m) == len(ids) && len(m[ids[2]].Sources) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	play := func(i int) {
		t.Helper()
		playWhole(t, ctx, b, ids, i).Close()
	}
	play(0)
	tracksBy(t, b, "track 0 cached", func(m map[shards.MD5]Track) bool { return m[ids[0]].Cached })

	// The Files view: remove the transfer, then download the track again.
	if err := b.shards.Remove(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := b.shards.Fetch(ctx, shards.Link{ID: ids[0], Name: "mine.wav", Size: size}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the user's download", func() bool {
		tr, ok := transferOf(t, b, ids[0])
		return ok && tr.State == shards.StateDone
	})
	mine, _ := transferOf(t, b, ids[0])

	// The cache goes over its limit: its own tracks go, the user's stays.
	later()
	play(1)
	later()
	play(2)
	tracksBy(t, b, "track 1 to leave the cache", func(m map[shards.MD5]Track) bool {
		return !m[ids[1]].Cached && m[ids[2]].Cached
	})
	if tr, ok := transferOf(t, b, ids[0]); !ok || tr.State != shards.StateDone {
		t.Errorf("the user's download of track 0 after the cache pruned: %+v (present %v)", tr, ok)
	}
	if _, err := os.Stat(mine.Path); err != nil {
		t.Errorf("the user's download's file: %v", err)
	}
}

// TestCacheSparesTrackTheUserFetched: b plays tracks (the cache fetches
// them), and while the cache's download of track 0 exists the user
// downloads track 0 in the Files view: that download is the user's now.
// Track 0 is the least recently played when the cache goes over its
// limit, yet the cache removes its own track 1 and leaves the user's copy
// and file; RemoveCache refuses it too.
func TestCacheSparesTrackTheUserFetched(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newMesh(t, 2)
	dirA := t.TempDir()
	const size = 300 << 10 // writeWAV's
	ids := writeWAVs(t, dirA, 4, 50)
	clock := newCacheClock()
	later := clock.later
	newTestNode(t, nodes[0], dirA)
	b := newCachingNode(t, nodes[1], 2*size+size/2, clock)
	tracksBy(t, b, "a's tracks", func(m map[shards.MD5]Track) bool {
		return len(m) == len(ids) && len(m[ids[3]].Sources) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	play := func(i int) {
		t.Helper()
		playWhole(t, ctx, b, ids, i).Close()
	}
	play(0)
	later()
	play(1)
	tracksBy(t, b, "tracks 0 and 1 cached, by the cache", func(m map[shards.MD5]Track) bool {
		return m[ids[0]].Cached && m[ids[1]].Cached && m[ids[0]].CacheRemovable && m[ids[1]].CacheRemovable
	})
	if tr, ok := transferOf(t, b, ids[0]); !ok || tr.For != resourceName {
		t.Errorf("the cache's download of track 0: %+v (listed %v), want one for %q", tr, ok, resourceName)
	}

	// The Files view: the user downloads track 0, which the cache holds.
	mine, err := b.shards.Fetch(ctx, shards.Link{ID: ids[0]})
	if err != nil {
		t.Fatal(err)
	}
	if mine.For != "" {
		t.Errorf("the user's fetch returned the cache's transfer: %+v", mine)
	}
	// The library says so at once: still cached, no longer the cache's to
	// remove (the UI would offer a removal the API refuses).
	tracksBy(t, b, "track 0 to be the user's", func(m map[shards.MD5]Track) bool {
		return m[ids[0]].Cached && !m[ids[0]].CacheRemovable && m[ids[1]].CacheRemovable
	})
	// Played again, it stays the user's.
	later()
	play(0)

	// Over the limit: track 0 is the least recently played but the
	// user's; 1 goes.
	later()
	play(2)
	later()
	play(3)
	tracksBy(t, b, "track 1 to leave the cache", func(m map[shards.MD5]Track) bool {
		return !m[ids[1]].Cached && m[ids[2]].Cached && m[ids[3]].Cached
	})
	if tr, ok := transferOf(t, b, ids[0]); !ok || tr.State != shards.StateDone || tr.For != "" {
		t.Errorf("the user's download of track 0 after the cache pruned: %+v (present %v)", tr, ok)
	}
	if _, err := os.Stat(mine.Path); err != nil {
		t.Errorf("the user's download's file: %v", err)
	}
	if err := b.music.RemoveCache(ctx, ids[0]); !errors.Is(err, ErrUsersCopy) {
		t.Errorf("RemoveCache of the user's download: %v, want ErrUsersCopy", err)
	}
	if _, err := os.Stat(mine.Path); err != nil {
		t.Errorf("the user's download's file after RemoveCache: %v", err)
	}
}

// TestRemoveCacheSparesDownloadBeforePlay: the user downloads a track in
// the Files view, then plays it: "remove cached copy" must not delete the
// user's file, while it does remove a track the cache fetched.
func TestRemoveCacheSparesDownloadBeforePlay(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newMesh(t, 2)
	dirA := t.TempDir()
	ids := []shards.MD5{writeWAV(t, filepath.Join(dirA, "0.wav"), 70), writeWAV(t, filepath.Join(dirA, "1.wav"), 71)}
	newTestNode(t, nodes[0], dirA)
	b := newTestNode(t, nodes[1])
	tracksBy(t, b, "a's tracks", func(m map[shards.MD5]Track) bool {
		return len(m) == 2 && len(m[ids[0]].Sources) == 1 && len(m[ids[1]].Sources) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := b.shards.Fetch(ctx, shards.Link{ID: ids[0], Name: "0.wav"}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the user's download", func() bool {
		tr, ok := transferOf(t, b, ids[0])
		return ok && tr.State == shards.StateDone
	})
	mine, _ := transferOf(t, b, ids[0])
	for _, id := range ids {
		c, err := b.music.Stream(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if all, err := io.ReadAll(c); err != nil || md5.Sum(all) != id {
			t.Fatalf("track %s: %d bytes, %v", id, len(all), err)
		}
		c.Close()
	}
	lib := tracksBy(t, b, "both tracks here", func(m map[shards.MD5]Track) bool { return m[ids[0]].Cached && m[ids[1]].Cached })
	// What the UI offers follows what RemoveCache does: the user's copy
	// is not the cache's to remove, the one playing fetched is.
	if lib[ids[0]].CacheRemovable || !lib[ids[1]].CacheRemovable {
		t.Errorf("cache_removable: the user's download %v, the cache's %v; want false, true", lib[ids[0]].CacheRemovable, lib[ids[1]].CacheRemovable)
	}
	cached, _ := transferOf(t, b, ids[1])

	if err := b.music.RemoveCache(ctx, ids[0]); !errors.Is(err, ErrUsersCopy) {
		t.Errorf("RemoveCache of the user's download: %v, want ErrUsersCopy", err)
	}
	if tr, ok := transferOf(t, b, ids[0]); !ok || tr.State != shards.StateDone {
		t.Errorf("the user's download after RemoveCache: %+v (present %v)", tr, ok)
	}
	if _, err := os.Stat(mine.Path); err != nil {
		t.Errorf("the user's file after RemoveCache: %v", err)
	}

	if err := b.music.RemoveCache(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	if tr, ok := transferOf(t, b, ids[1]); ok {
		t.Errorf("the cache's download after RemoveCache: %+v", tr)
	}
	if _, err := os.Stat(cached.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cache's file after RemoveCache: %v", err)
	}
}
