package shards

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// TestHoldersRefreshRacesPauseRemove: the later holder lookups run beside
// the download loop; the user pauses, resumes, removes and fetches again a
// download while they hang, many times, and the downloads stop while some
// still do. Under -race: no race, no goroutine left, the last fetch ends.
func TestHoldersRefreshRacesPauseRemove(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	_, src := testFile(t, 1<<20, 98)
	srv := &testServer{sources: []pieceSource{src}, limit: rate.NewLimiter(rate.Limit(512<<10), 64<<10)}
	srv.register(nodes[0])
	dir := t.TempDir()
	db := openTestDB(t, filepath.Join(dir, "db"))
	gate := make(chan struct{})
	var lookups, hung atomic.Int64
	holders := func(MD5) []mesh.ID {
		// The first of each download answers at once; the later ones
		// hang until the gate opens, as for a node whose changed catalog
		// does not come.
		if lookups.Add(1)%2 == 0 {
			hung.Add(1)
			<-gate
		}
		return []mesh.ID{nodes[0].ID()}
	}
	d := startDownloads(t, nodes[1], dir, db, holders, func(c *DownloadsConfig, _ *downloads) {
		c.HaveInterval = 20 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for round := range 10 {
		l := src.link(nodes[0].ID(), fmt.Sprintf("r%d.bin", round))
		if _, err := d.fetch(ctx, l); err != nil {
			t.Fatal(err)
		}
		want := hung.Load() + 1
		testutil.WaitFor(t, 30*time.Second, "a refresh to hang", func() bool { return hung.Load() >= want })
		if err := d.pause(ctx, src.id); err != nil {
			t.Fatal(err)
		}
		if err := d.resume(ctx, src.id); err != nil {
			t.Fatal(err)
		}
		if err := d.remove(ctx, src.id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.fetch(ctx, src.link(nodes[0].ID(), "last.bin")); err != nil {
		t.Fatal(err)
	}
	close(gate)
	waitState(t, d.downloads, src.id, StateDone, 60*time.Second)
	d.stop()
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("downloads did not stop")
	}
}
