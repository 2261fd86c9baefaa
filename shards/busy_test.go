package shards

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// busyCounter is a Node that counts the requests answered busy.
type busyCounter struct {
	Node
	busy atomic.Int64
}

func (n *busyCounter) Request(ctx context.Context, to mesh.ID, proto string, payload []byte, opts ...mesh.SendOption) ([]byte, error) {
	b, err := n.Node.Request(ctx, to, proto, payload, opts...)
	if errors.Is(err, mesh.ErrBusy) {
		n.busy.Add(1)
	}
	return b, err
}

// TestDownloadBusyHolder: the only holder of a 16 MiB file has no room for
// the downloader's requests (its handlers hold requests of the
// downloader's that their callers gave up on), so it answers them busy.
// The download waits and asks again, neither failing nor scoring the
// holder down, and completes once the holder has room again, without
// waiting for HaveInterval (a minute here), as it would after a failure.
func TestDownloadBusyHolder(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	holder, dlNode := nodes[0], nodes[1]
	data, src := testFile(t, 16<<20, 7)
	(&testServer{sources: []pieceSource{src}}).register(holder)
	release := make(chan struct{})
	letGo := sync.OnceFunc(func() { close(release) })
	t.Cleanup(letGo)
	holder.Handle("test/hang", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := dlNode.Connect(ctx, holder.ID()); err != nil {
		t.Fatal(err)
	}
	// Requests given up on fill the holder's room, until one is busy.
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer rcancel()
			dlNode.Request(rctx, holder.ID(), "test/hang", nil)
		})
	}
	wg.Wait()
	testutil.WaitFor(t, 30*time.Second, "the holder to be full", func() bool {
		rctx, rcancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer rcancel()
		_, err := dlNode.Request(rctx, holder.ID(), "test/hang", nil)
		return errors.Is(err, mesh.ErrBusy)
	})

	counter := &busyCounter{Node: dlNode}
	dir := t.TempDir()
	d := startDownloads(t, counter, dir, openTestDB(t, filepath.Join(dir, "db")), func(MD5) []mesh.ID { return []mesh.ID{holder.ID()} },
		func(cfg *DownloadsConfig, _ *downloads) { cfg.HaveInterval = time.Minute })
	if _, err := d.fetch(ctx, src.link(holder.ID(), "busy.bin")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "busy answers to the download", func() bool { return counter.busy.Load() >= 5 })
	letGo()
	tr := waitState(t, d.downloads, src.id, StateDone, 30*time.Second)
	if got := fileMD5(t, tr.Path); got != src.id || tr.Have != int64(len(data)) {
		t.Fatalf("finished file md5 %s (%d bytes), want %s", got, tr.Have, src.id)
	}
	dl := d.get(src.id)
	dl.mu.Lock()
	banned, bad := dl.banned[holder.ID()], dl.bad[holder.ID()]
	dl.mu.Unlock()
	if banned || bad != 0 {
		t.Fatalf("busy holder banned %v, %d bad pieces counted", banned, bad)
	}
	for _, p := range dlNode.Peers() {
		if p.ID == holder.ID() && p.Failures != 0 {
			t.Fatalf("the busy holder's link counts %d offences", p.Failures)
		}
	}
}
