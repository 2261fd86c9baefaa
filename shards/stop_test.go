package shards

import (
	"context"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// TestStopDuringHoldersLookup: a download looking for holders asks a node
// for its catalog, and that node never answers. Serve's end must end the
// lookup: Serve waits for the downloads, and `catnest serve` took up to the
// lookup's timeout to stop on SIGTERM.
func TestStopDuringHoldersLookup(t *testing.T) {
	testutil.CheckGoroutines(t)
	was := holdersTimeout
	holdersTimeout = time.Hour // only Serve's end can end the lookup
	t.Cleanup(func() { holdersTimeout = was })
	a, mute := newPair(t)
	cfg := testConfig(t, a)
	cfg.CatalogTimeout = time.Hour
	cfg.RequestTimeout = time.Hour
	asked := make(chan struct{}, 1)
	quit := make(chan struct{})
	defer close(quit)
	mute.Handle(ProtoList, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		select {
		case asked <- struct{}{}:
		default:
		}
		<-quit // deaf to the asker giving up too
		return nil, context.Canceled
	}))
	if err := mute.SetResource(resourceName, summary{Count: 10, Version: 1}); err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	testutil.WaitFor(t, 10*time.Second, "Serve to start", s.open)
	testutil.WaitFor(t, 20*time.Second, "the mute node's record", func() bool {
		r, ok := a.Lookup(mute.ID())
		_, adv := advertised(r)
		return ok && adv
	})
	if _, err := s.Fetch(ctx, Link{ID: MD5{1}, Manifest: Hash{1}, Node: mute.ID(), Name: "x.bin", Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-asked:
	case <-time.After(20 * time.Second):
		t.Fatal("the download did not ask the mute node for its catalog")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		close(quit) // let the lookup end, or the test hangs
		<-done
		t.Fatal("Serve did not stop while a download's holders lookup was on its way")
	}
}
