package music

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/shards"
)

// TestHostileAttachments has a node name, as a track's lyrics, a shared
// resource of 2 MiB (over MaxLyrics) and, as its cover, a text file.
// Another node refuses both, and the download that opening the big one
// started is gone (it would fetch all of it), while a download the user
// started before is left alone.
func TestHostileAttachments(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newMesh(t, 2)
	dirB := t.TempDir()
	id := writeWAV(t, filepath.Join(dirB, "Track.wav"), 5)
	a, b := newTestNode(t, nodes[0]), newTestNode(t, nodes[1], dirB)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	share := func(name string, data []byte) shards.MD5 {
		t.Helper()
		p := filepath.Join(b.dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		tr, err := b.shards.Share(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return tr.ID
	}
	big := make([]byte, 2<<20)
	rand.Read(big)
	bigID := share("film.mkv", big)
	textID := share("cover.txt", []byte("<html><script>alert(1)</script></html>"))
	tracksBy(t, a, "b's track", func(m map[shards.MD5]Track) bool { return m[id].Title == "Track" })
	// b lists them as the track's attachments, as a hostile node would.
	b.music.mu.Lock()
	b.music.atts[id] = attachment{Cover: textID, Lyrics: bigID, At: time.Now().UnixMilli()}
	b.music.mu.Unlock()
	if b.music.syncOwn() {
		b.music.changed()
	}
	tracksBy(t, a, "the attachments listed", func(m map[shards.MD5]Track) bool { return m[id].HasCover && m[id].HasLyrics })

	var err error
	testutil.WaitFor(t, 30*time.Second, "the lyrics' holders known", func() bool {
		_, err = a.music.Lyrics(ctx, id)
		return !errors.Is(err, shards.ErrNoHolders)
	})
	if !errors.Is(err, ErrNoLyrics) || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("lyrics of 2 MiB: %v, want ErrNoLyrics over the limit", err)
	}
	held := func(res shards.MD5) bool {
		all, _ := a.shards.Shares(ctx)
		return slices.ContainsFunc(all, func(t shards.Transfer) bool { return t.ID == res })
	}
	if held(bigID) {
		t.Fatal("the refused lyrics' download is left fetching")
	}
	testutil.WaitFor(t, 30*time.Second, "the cover's holders known", func() bool {
		_, _, err = a.music.Cover(ctx, id, false)
		return !errors.Is(err, shards.ErrNoHolders)
	})
	if !errors.Is(err, ErrNoCover) {
		t.Fatalf("a text file as the cover: %v, want ErrNoCover", err)
	}

	// A download of the same resource the user started is theirs.
	if _, err := a.shards.Fetch(ctx, shards.Link{ID: bigID}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.music.Lyrics(ctx, id); !errors.Is(err, ErrNoLyrics) {
		t.Fatalf("lyrics of 2 MiB again: %v", err)
	}
	if !held(bigID) {
		t.Fatal("the user's own download was removed")
	}
}

// TestRemoveCacheKeepsEditedFile plays a peer's track whole (its download
// finishes): RemoveCache deletes the finished file. Cached again, the user
// edits the file: RemoveCache drops the download but leaves the file,
// which is the user's now.
func TestRemoveCacheKeepsEditedFile(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newMesh(t, 2)
	dirA := t.TempDir()
	id := writeWAV(t, filepath.Join(dirA, "Song.wav"), 6)
	newTestNode(t, nodes[0], dirA)
	b := newTestNode(t, nodes[1])
	tracksBy(t, b, "a's track", func(m map[shards.MD5]Track) bool { return m[id].Title == "Song" })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cache := func() string {
		t.Helper()
		c, err := b.music.Stream(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, c)
		c.Close()
		var path string
		testutil.WaitFor(t, 30*time.Second, "the download to finish", func() bool {
			all, _ := b.shards.Shares(ctx)
			i := slices.IndexFunc(all, func(t shards.Transfer) bool { return t.ID == id && t.State == shards.StateDone })
			if i >= 0 {
				path = all[i].Path
			}
			return i >= 0
		})
		return path
	}
	// Unedited, the cached copy goes.
	path := cache()
	if err := b.music.RemoveCache(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the cached copy after RemoveCache: %v", err)
	}
	path = cache()
	// An edit that keeps the size, as a tag editor writing into the
	// padding does.
	edited, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	copy(edited[100:], "the user's own edit")
	if err := os.WriteFile(path, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.music.RemoveCache(ctx, id); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, edited) {
		t.Fatalf("the user's edited file after RemoveCache: %d bytes, %v", len(got), err)
	}
}
