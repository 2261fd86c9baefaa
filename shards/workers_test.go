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

// TestFolderHashedOnEveryCore: a shared folder is hashed a file per core
// at once. A file's whole MD5 is one stream on one core, so hashing one
// file at a time on a 2-core machine left a core idle and scanned at
// 0.68x md5sum's speed. Each hash, as it starts, waits (up to a minute)
// for as many to be under way as there are cores; on fewer workers the
// first ones wait in vain.
func TestFolderHashedOnEveryCore(t *testing.T) {
	testutil.CheckGoroutines(t)
	procs := max(2, runtime.GOMAXPROCS(0))
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
	)
	svc.shares.hashStarted = func(string) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		if inFlight == procs {
			close(allIn)
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
		t.Errorf("at most %d files hashed at once, want %d (GOMAXPROCS)", most, procs)
	}
}
