package shards

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// TestFolderHashedOnBothCores: on a 2-core machine (GOMAXPROCS 2) a
// shared folder is hashed two files at once. A file's whole MD5 is one
// stream on one core, so hashing one file at a time left a core idle and
// scanned at 0.68x md5sum's speed. Each hash, as it starts, waits (up to
// a minute) for two to be under way; with one worker the first waits in
// vain.
func TestFolderHashedOnBothCores(t *testing.T) {
	testutil.CheckGoroutines(t)
	const procs = 2
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
	a, _ := newPair(t)
	dir := t.TempDir()
	const files = 16
	for i := range files {
		writeRandom(t, filepath.Join(dir, fmt.Sprintf("%02d.bin", i)), 1<<20+i, uint64(i))
	}
	cfg := testConfig(t, a)
	cfg.Folders = []string{dir}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu             sync.Mutex
		inFlight, most int
		allIn          = make(chan struct{})
		gaveUp         = make(chan struct{})
		giveUp         sync.Once
		allInOnce      sync.Once
	)
	svc.shares.hashStarted = func(string) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		if inFlight == procs {
			// Once: after the first meeting, later files can be
			// hashing procs at a time again.
			allInOnce.Do(func() { close(allIn) })
		}
		mu.Unlock()
		select {
		case <-allIn:
		case <-gaveUp:
		case <-time.After(time.Minute):
			giveUp.Do(func() { close(gaveUp) })
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- svc.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	testutil.WaitFor(t, 5*time.Minute, "the folder to be hashed", func() bool {
		return len(svc.shares.list()) == files
	})
	mu.Lock()
	defer mu.Unlock()
	if most < procs {
		t.Errorf("at most %d files hashed at once, want %d (GOMAXPROCS %d)", most, procs, procs)
	}
}

// TestHashWorkers: a worker per core up to two cores; past that, every
// core but one, which stays free to answer the network while a folder
// is hashed.
func TestHashWorkers(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, c := range []struct{ procs, want int }{{1, 1}, {2, 2}, {3, 2}, {4, 3}, {16, 15}} {
		runtime.GOMAXPROCS(c.procs)
		if got := hashWorkers(); got != c.want {
			t.Errorf("GOMAXPROCS %d: %d hash workers, want %d", c.procs, got, c.want)
		}
	}
}
