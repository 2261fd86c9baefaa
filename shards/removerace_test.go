package shards

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// TestRemoveRacesRemoveFor: the user's removal (DELETE /api/shards/{id})
// and a service's (music's removeCopy) of the same download, at once, a
// few dozen times, half of them while it runs and half once it is done.
// Exactly one of them removes it; the other is told it is unknown. Both
// used to succeed, each with the download as it was removed: the service
// then deleted the finished file the user's removal had left to the user.
func TestRemoveRacesRemoveFor(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	const rounds = 40
	_, src := testFile(t, 256<<10, 211)
	(&testServer{sources: []pieceSource{src}}).register(nodes[0])
	dir := t.TempDir()
	d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const svc = "music"
	for round := range rounds {
		l := src.link(nodes[0].ID(), fmt.Sprintf("r%d.bin", round))
		l.For = svc
		if _, err := d.fetch(ctx, l); err != nil {
			t.Fatal(err)
		}
		if round%2 == 0 {
			waitState(t, d.downloads, src.id, StateDone, 30*time.Second)
		}
		var wg sync.WaitGroup
		var userErr, svcErr error
		var gone Transfer
		wg.Go(func() { userErr = d.remove(ctx, src.id) })
		wg.Go(func() { gone, svcErr = d.removeFor(ctx, src.id, svc) })
		wg.Wait()
		switch {
		case userErr == nil && svcErr == nil:
			t.Fatalf("round %d: both removals succeeded (the service was handed %s of %s)", round, gone.State, gone.Path)
		case userErr == nil && !errors.Is(svcErr, ErrUnknown), svcErr == nil && !errors.Is(userErr, ErrUnknown):
			t.Fatalf("round %d: user's removal: %v, service's: %v", round, userErr, svcErr)
		case userErr != nil && svcErr != nil:
			t.Fatalf("round %d: neither removal succeeded: %v; %v", round, userErr, svcErr)
		}
		if d.get(src.id) != nil {
			t.Fatalf("round %d: the download is still listed", round)
		}
	}
}
