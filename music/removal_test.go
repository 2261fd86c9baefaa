package music

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// hookedShards is a shards service that runs a hook of the call's ctx
// (withHook) at set points of music's calls: where another party (the
// user, the player) acts between music's look and its act. Calls of
// music's own goroutines (rescans, pruning) carry none.
type hookedShards struct {
	Shards
}

// hooks are the points a hookedShards runs them at.
type hooks struct {
	afterShares    func() // Shares has listed
	afterRemoveFor func() // RemoveFor has removed
}

type hooksKey struct{}

func withHooks(ctx context.Context, h hooks) context.Context {
	return context.WithValue(ctx, hooksKey{}, h)
}

func hooksOf(ctx context.Context) hooks {
	h, _ := ctx.Value(hooksKey{}).(hooks)
	return h
}

func (h *hookedShards) Shares(ctx context.Context) ([]shards.Transfer, error) {
	all, err := h.Shards.Shares(ctx)
	if f := hooksOf(ctx).afterShares; f != nil {
		f()
	}
	return all, err
}

func (h *hookedShards) RemoveFor(ctx context.Context, id shards.MD5, owner string) (shards.Transfer, error) {
	tr, err := h.Shards.RemoveFor(ctx, id, owner)
	if f := hooksOf(ctx).afterRemoveFor; f != nil {
		f()
	}
	return tr, err
}

// newHookedNode is newTestNode with music's shards a hookedShards.
func newHookedNode(t *testing.T, n *mesh.Node) *testNode {
	t.Helper()
	return newTestNodeWith(t, n, func(c *Config) { c.Shards = &hookedShards{Shards: c.Shards} })
}

// cachedTracks has b stream each of n tracks a shares, and waits for the
// downloads to finish.
func cachedTracks(t *testing.T, a, b *mesh.Node, n int, seed uint64) (*testNode, []shards.MD5, map[shards.MD5]string) {
	t.Helper()
	dirA := t.TempDir()
	var ids []shards.MD5
	for i := range n {
		ids = append(ids, writeWAV(t, filepath.Join(dirA, fmt.Sprintf("t%d.wav", i)), seed+uint64(i)))
	}
	newTestNode(t, a, dirA)
	tb := newHookedNode(t, b)
	tracksBy(t, tb, "a's tracks", func(m map[shards.MD5]Track) bool {
		for _, id := range ids {
			if len(m[id].Sources) != 1 {
				return false
			}
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, id := range ids {
		c, err := tb.music.Stream(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	return tb, ids, waitDone(t, tb, ids)
}

// TestRemoveCacheLeavesFileTheUserRemovalLeft: the user asks the player
// to remove a cached track (RemoveCache) while, in the Files view, they
// remove the same finished download (DELETE /api/shards/{id}), which
// leaves its file to them; for a dozen tracks, the Files view's removal
// landing between RemoveCache's listing and its removal. The file stays:
// RemoveCache deleted it from its listing's word though the download it
// listed was gone, removed by the user.
func TestRemoveCacheLeavesFileTheUserRemovalLeft(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newMesh(t, 2)
	b, ids, paths := cachedTracks(t, nodes[0], nodes[1], 12, 700)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, id := range ids {
		var userErr error
		err := b.music.RemoveCache(withHooks(ctx, hooks{afterShares: func() { userErr = b.shards.Remove(ctx, id) }}), id)
		if userErr != nil {
			t.Fatalf("the user's removal: %v", userErr)
		}
		if err != nil {
			t.Fatalf("RemoveCache: %v", err)
		}
		if _, err := os.Stat(paths[id]); err != nil {
			t.Fatalf("the user removed the download of %s, which left them its file, and RemoveCache then deleted %s: %v", id, paths[id], err)
		}
		if _, ok := transferOf(t, b, id); ok {
			t.Fatalf("%s is still listed", id)
		}
	}
}

// TestRemoveCopyKeepsEntryOfStreamStartedSince: the cache removes its
// copy of a track (removeCopy) just as the player streams the track
// again, which starts a new download of it; for a dozen tracks, the
// Stream landing between the removal of the old download and the end of
// removeCopy. The new download is the cache's: its entry stays, so it is
// counted and pruned later. removeCopy used to forget the track whatever
// its entry, and the new download stayed on disk for good, counted by
// nothing.
func TestRemoveCopyKeepsEntryOfStreamStartedSince(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newMesh(t, 2)
	b, ids, _ := cachedTracks(t, nodes[0], nodes[1], 12, 800)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, id := range ids {
		listed, ok := transferOf(t, b, id)
		if !ok {
			t.Fatalf("%s not listed", id)
		}
		var streamErr error
		stream := func() {
			c, err := b.music.Stream(ctx, id)
			if err != nil {
				streamErr = err
				return
			}
			streamErr = c.Close()
		}
		if err := b.music.removeCopy(withHooks(ctx, hooks{afterRemoveFor: stream}), listed); err != nil {
			t.Fatalf("removeCopy: %v", err)
		}
		if streamErr != nil {
			t.Fatalf("the stream started during removeCopy: %v", streamErr)
		}
		again, ok := transferOf(t, b, id)
		if !ok || again.For != resourceName || again.Added.Equal(listed.Added) {
			t.Fatalf("%s: no new download of the cache's after the stream: %+v", id, again)
		}
		b.music.mu.Lock()
		e := b.music.fetched[id]
		b.music.mu.Unlock()
		if e == nil || !e.added.Equal(again.Added) {
			t.Fatalf("%s: the cache forgot the download the stream started during removeCopy (entry %+v)", id, e)
		}
		if !cacheRecords(t, b)[id] {
			t.Fatalf("%s: the cache's record of the new download was deleted", id)
		}
	}
}
