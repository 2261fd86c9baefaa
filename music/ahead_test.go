package music

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/shards"
)

// TestPrefetchLeavesPausedDownloadPaused: the user paused b's downloads of
// six tracks as they ran (three they fetched in the Files view, three the
// player started). The player's prefetch of each (the next track in its
// queue) fails at once with ErrPaused and leaves it paused and whose it
// was; only playing it resumes it. A seventh track, never fetched, is
// prefetched as before: its download starts.
func TestPrefetchLeavesPausedDownloadPaused(t *testing.T) {
	testutil.CheckGoroutines(t)
	const n, size = 7, 1 << 20
	// 7 MiB at 1 MiB/s: each download runs for seconds.
	b, ids := slowSharer(t, func(dir string) []shards.MD5 { return writeBigWAVs(t, dir, n, size, 700) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	users := func(i int) bool { return i%2 == 0 }
	paused, fresh := ids[:n-1], ids[n-1]
	for i, id := range paused {
		if users(i) {
			userFetch(ctx, t, b, shards.Link{ID: id, Name: fmt.Sprintf("%d.wav", i), Size: size})
		} else {
			c, err := b.music.Stream(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		}
		if err := b.shards.Pause(ctx, id); err != nil { // as POST /api/shards/pause does
			t.Fatal(err)
		}
	}
	owner := func(i int) string {
		if users(i) {
			return ""
		}
		return resourceName
	}
	for i, id := range paused {
		if err := b.music.Prefetch(ctx, id, 64<<10); !errors.Is(err, ErrPaused) {
			t.Errorf("prefetch of paused track %d: %v, want ErrPaused", i, err)
		}
		if c, err := b.music.StreamAhead(ctx, id); !errors.Is(err, ErrPaused) {
			if c != nil {
				c.Close()
			}
			t.Errorf("stream ahead of paused track %d: %v, want ErrPaused", i, err)
		}
		if tr, _ := transferOf(t, b, id); tr.State != shards.StatePaused || tr.For != owner(i) {
			t.Errorf("track %d after its prefetch: %s for %q, want paused for %q", i, tr.State, tr.For, owner(i))
		}
	}
	if err := b.music.Prefetch(ctx, fresh, 64<<10); err != nil {
		t.Errorf("prefetch of a track never fetched: %v", err)
	}
	if tr, ok := transferOf(t, b, fresh); !ok || tr.For != resourceName || tr.State == shards.StatePaused {
		t.Errorf("the prefetched track's download: %+v (listed %v), want one of the cache's running", tr, ok)
	}
	// Playing is the wish the prefetch was not.
	c, err := b.music.Stream(ctx, paused[0])
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(c)
	c.Close()
	if err != nil || md5.Sum(data) != paused[0] {
		t.Fatalf("play paused track 0: %d bytes, %v", len(data), err)
	}
	waitDone(t, b, []shards.MD5{paused[0], fresh})
	for i, id := range paused[1:] {
		if tr, _ := transferOf(t, b, id); tr.State != shards.StatePaused {
			t.Errorf("track %d, never played: %s, want paused", i+1, tr.State)
		}
	}
}

// userFetch is the user's fetch of l in b's Files view, once b's catalog
// names a holder: it learns of a peer's files a little after its library
// lists them (a fetch before says shards.ErrNoHolders).
func userFetch(ctx context.Context, t *testing.T, b *testNode, l shards.Link) {
	t.Helper()
	var err error
	testutil.WaitFor(t, time.Minute, "the user's fetch to find a holder", func() bool {
		_, err = b.shards.Fetch(ctx, l)
		return !errors.Is(err, shards.ErrNoHolders)
	})
	if err != nil {
		t.Fatal(err)
	}
}
