package shards

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// TestFetchOfPausedPublishesState: a fetch that resumes a paused or failed
// download (the user's, or a service's such as music's as it plays a
// track) publishes the new state at once. The holder here answers no block
// request, so no progress event would tell the Files view either: it
// showed "paused" until the first block came, or for good. Each of a dozen
// downloads is paused and fetched again, by the user and by a service in
// turn, and the event stream must say "downloading" for each.
func TestFetchOfPausedPublishesState(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	const n = 12
	var srcs []*readerSource
	var sources []pieceSource
	for i := range n {
		_, src := testFile(t, 256<<10+i*100, byte(180+i))
		srcs, sources = append(srcs, src), append(sources, src)
	}
	// Manifests and haves are served; a block request is refused after a
	// while (a request held until the end would hold one of the link's
	// request slots for good).
	srv := &testServer{sources: sources}
	stop := make(chan struct{})
	for _, proto := range []string{ProtoManifest, ProtoHave, ProtoBlock, ProtoSpan} {
		nodes[0].Handle(proto, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
			if m.Protocol == ProtoBlock || m.Protocol == ProtoSpan {
				wait := time.NewTimer(200 * time.Millisecond)
				defer wait.Stop()
				select {
				case <-wait.C:
				case <-stop:
				case <-ctx.Done():
				}
				return nil, ErrUnknown
			}
			return srv.serveMesh(ctx, m)
		}))
	}
	defer close(stop) // before the downloads stop (deferred after)
	dir := t.TempDir()
	d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sub := d.events.Subscribe(1024)
	defer sub.Close()
	// waitEvent waits for an event saying id is in state want.
	waitEvent := func(id MD5, want State, what string) {
		t.Helper()
		deadline := time.NewTimer(10 * time.Second)
		defer deadline.Stop()
		for {
			select {
			case e := <-sub.C():
				if e.Transfer != nil && e.Transfer.ID == id && e.Transfer.State == want {
					return
				}
			case <-deadline.C:
				t.Fatalf("%s: no %s event for %s (transfer now %s)", what, want, id, d.get(id).transfer().State)
			}
		}
	}
	for i, src := range srcs {
		owner := ""
		if i%2 == 1 {
			owner = "music"
		}
		l := src.link(nodes[0].ID(), fmt.Sprintf("%d.bin", i))
		l.For = owner
		if _, err := d.fetch(ctx, l); err != nil {
			t.Fatal(err)
		}
		waitEvent(src.id, StateDownloading, "first fetch")
		// The manifest is in before the pause, so a resumed run
		// publishes nothing of its own before its first block.
		testutil.WaitFor(t, 10*time.Second, "the manifest", func() bool {
			_, ok := d.manifestOf(src.id)
			return ok
		})
		if err := d.pause(ctx, src.id); err != nil {
			t.Fatal(err)
		}
		waitEvent(src.id, StatePaused, "pause")
		if _, err := d.fetch(ctx, Link{ID: src.id, For: owner}); err != nil {
			t.Fatal(err)
		}
		waitEvent(src.id, StateDownloading, fmt.Sprintf("fetch of paused download %d (for %q)", i, owner))
	}
}
