package shards

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// TestDownloadBudgetBackToZero: 12 downloads from two capped holders share a
// budget of 8 pieces, so that loops hold pieces and wait in line when they
// are stopped. Ten times over, mid-way, a holder is cut off (every download
// loses that peer with blocks in flight), four downloads are paused, four
// removed (cancelled, partial data deleted) and the other four left to run;
// then all are fetched or resumed again. A removed download that finished
// first has its file deleted too: a fetch of a file already saved takes it
// without asking for a byte (reuse), and once every download was done the
// budget had nothing to fill it (the test's flake under load). At the end every download completes
// with the right MD5, and the budget is back at zero with no one in its
// line: bytes of an attempt ended by a cancel, a pause or a lost peer that
// were not given back would be lost to every download for good.
func TestDownloadBudgetBackToZero(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw, nodes := newTestNet(t, "h1", "h2", "dl")
	const nFiles, rounds, limit = 12, 10, 8 * MinPieceSize
	var files []*readerSource
	var srcs []pieceSource
	for i := range nFiles {
		_, src := testFile(t, 1<<20, byte(30+i))
		srcs, files = append(srcs, src), append(files, src)
	}
	for _, n := range nodes[:2] {
		(&testServer{sources: srcs, limit: rate.NewLimiter(rate.Limit(4<<20), BlockSize)}).register(n)
	}
	holders := nodeIDs(nodes[:2]...)
	dir := t.TempDir()
	d := startDownloads(t, nodes[2], dir, openTestDB(t, filepath.Join(dir, "db")), func(MD5) []mesh.ID { return holders },
		func(c *DownloadsConfig, d *downloads) {
			c.MaxBuffered, c.HaveInterval, c.RequestTimeout = limit, 200*time.Millisecond, 5*time.Second
			d.budget = newBudget(limit, c.RequestTimeout)
		})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := func() {
		t.Helper()
		for i, src := range files {
			if dl := d.get(src.id); dl != nil {
				if err := d.resume(ctx, src.id); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if _, err := d.fetch(ctx, src.link(holders[i%2], fmt.Sprintf("f%d.bin", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for round := range rounds {
		start()
		testutil.WaitFor(t, time.Minute, "the downloads to fill the budget", func() bool {
			used, _ := d.budget.stats()
			return used == limit
		})
		// A lost peer: its links cut with blocks in flight.
		lost := nodes[round%2].ID()
		nw.Partition([]mesh.ID{lost}, []mesh.ID{nodes[1-round%2].ID(), nodes[2].ID()})
		for i, src := range files {
			var err error
			switch i % 3 {
			case 0:
				err = d.pause(ctx, src.id)
			case 1:
				var tr Transfer
				tr, err = d.removeIf(ctx, src.id, func(string) bool { return true }) // remove's
				if err == nil && tr.State == StateDone {
					err = os.Remove(tr.Path)
				}
			}
			if err != nil {
				t.Fatalf("round %d, file %d: %v", round, i, err)
			}
		}
		nw.Heal()
	}
	start()
	for _, src := range files {
		tr := waitState(t, d.downloads, src.id, StateDone, 2*time.Minute)
		if got := fileMD5(t, tr.Path); got != src.id {
			t.Fatalf("%s: finished file md5 %s", src.id, got)
		}
	}
	// The loops end as their downloads complete, each giving back what
	// it held on its way out.
	testutil.WaitFor(t, time.Minute, "the budget back at zero", func() bool {
		d.budget.mu.Lock()
		defer d.budget.mu.Unlock()
		return d.budget.used == 0 && len(d.budget.line) == 0 && len(d.budget.byPeer) == 0
	})
}
