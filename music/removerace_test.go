package music

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/shards"
)

// TestUserRemovalRacesCacheRemoval: the user removes b's finished download
// of a track the player fetched (DELETE /api/shards/{id}) while the cache
// removes its copy of it (removeCopy, from a list taken before), at once,
// a few dozen times. The user's removal leaves a finished file where it is
// (it is the user's); the cache deletes its own copy. So whichever of them
// removed the download decides: if the user's did, the file stays. The
// cache used to delete it anyway: with the download gone it took the
// file's word from its stale list, and when both ran at once both removed
// the download, each handed the file.
func TestUserRemovalRacesCacheRemoval(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newMesh(t, 2)
	dirA := t.TempDir()
	id := writeWAV(t, filepath.Join(dirA, "a.wav"), 901)
	newTestNode(t, nodes[0], dirA)
	b := newTestNode(t, nodes[1])
	tracksBy(t, b, "a's track", func(m map[shards.MD5]Track) bool { return len(m[id].Sources) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const rounds = 30
	userWon := 0
	for round := range rounds {
		c, err := b.music.Stream(ctx, id) // starts the cache's download
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		path := waitDone(t, b, []shards.MD5{id})[id]
		listed, ok := transferOf(t, b, id)
		if !ok || listed.For != resourceName {
			t.Fatalf("round %d: the cache's download is not listed as music's: %+v", round, listed)
		}
		var wg sync.WaitGroup
		var userErr, cacheErr error
		wg.Go(func() { userErr = b.shards.Remove(ctx, id) })
		wg.Go(func() { cacheErr = b.music.removeCopy(ctx, listed) })
		wg.Wait()
		if cacheErr != nil {
			t.Fatalf("round %d: the cache's removal: %v", round, cacheErr)
		}
		_, statErr := os.Stat(path)
		switch {
		case userErr == nil:
			userWon++
			if statErr != nil {
				t.Fatalf("round %d: the user removed the download, and its finished file %s went with it: %v", round, path, statErr)
			}
			// The user's now; out of the way of the next round's.
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		case errors.Is(userErr, shards.ErrUnknown):
			if !errors.Is(statErr, os.ErrNotExist) {
				t.Fatalf("round %d: the cache removed its copy and left the file %s (%v)", round, path, statErr)
			}
		default:
			t.Fatalf("round %d: the user's removal: %v", round, userErr)
		}
		if _, ok := transferOf(t, b, id); ok {
			t.Fatalf("round %d: the download is still listed", round)
		}
	}
	t.Logf("the user's removal came first in %d of %d rounds", userWon, rounds)
}
