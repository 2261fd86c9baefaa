package chatlog

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// TestBackgroundFollowsServe checks the background queue's lifetime: work
// queued before Serve runs once Serve starts, under Serve's context, and
// Serve waits for it; work queued after Serve has ended is dropped, not
// kept or started.
func TestBackgroundFollowsServe(t *testing.T) {
	svc, _ := liveService(t, DefaultServiceConfig())
	var ran, ended, late atomic.Int32
	const early = 100
	for range early {
		svc.background(func(ctx context.Context) {
			ran.Add(1)
			<-ctx.Done() // runs until Serve ends, which waits for it
			ended.Add(1)
		})
	}
	if n := ran.Load(); n != 0 {
		t.Fatalf("%d jobs ran before Serve", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Serve(ctx); close(done) }()
	testutil.WaitFor(t, 30*time.Second, "the queued jobs to start with Serve", func() bool { return ran.Load() == early })
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return")
	}
	if n := ended.Load(); n != early {
		t.Fatalf("Serve returned with %d of %d jobs still running", early-n, early)
	}
	for range 10 {
		svc.background(func(context.Context) { late.Add(1) })
	}
	svc.mu.Lock()
	queued := len(svc.jobs)
	svc.mu.Unlock()
	if queued != 0 || late.Load() != 0 {
		t.Fatalf("after Serve: %d jobs queued, %d ran; want none", queued, late.Load())
	}
}
