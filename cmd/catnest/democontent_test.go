package main

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// cancelOnWrite is the demo's stdout for TestDemoStopsWhileStarting: it
// cancels the demo as the first node's web UI line is written, which is
// where a user who runs `catnest demo` and changes their mind presses
// Ctrl-C.
type cancelOnWrite struct {
	cancel context.CancelFunc
	mu     sync.Mutex
	out    strings.Builder
}

func (w *cancelOnWrite) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.out.Write(b)
	if strings.Contains(string(b), "web UI:") {
		w.cancel()
	}
	return len(b), nil
}

// TestDemoStopsWhileStarting checks that `catnest demo` starts its nodes
// without first making their sample content (drawing and synthesising it
// took seconds a node, and the demo's start waited for it node after
// node), and that a demo stopped while its nodes start stops there: no
// further node starts, and Demo returns with everything stopped.
func TestDemoStopsWhileStarting(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nodes")
	}
	testutil.CheckGoroutines(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	w := &cancelOnWrite{cancel: stop}
	data := t.TempDir()
	done := make(chan error, 1)
	go func() { done <- Demo(runCtx, DemoConfig{HTTP: "127.0.0.1:0", Nodes: 6, Data: data}, w) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo stopped while starting: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the demo did not return after it was stopped")
	}
	w.mu.Lock()
	out := w.out.String()
	w.mu.Unlock()
	if n := strings.Count(out, "web UI:"); n != 1 {
		t.Errorf("%d nodes started after the demo was stopped at the first; output:\n%s", n-1, out)
	}
	// The first node started before any sample content was made.
	for _, dir := range []string{"shared", "library"} {
		entries, err := os.ReadDir(filepath.Join(data, "alice", dir))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) > 0 {
			t.Errorf("alice's %s folder was filled before alice started: %v", dir, entries)
		}
	}
}

// TestWriteDemoContent checks that each demo node's content lands whole
// in its shared folders, with no staging folder left behind, and that a
// second run over the same data keeps what is there.
func TestWriteDemoContent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data := t.TempDir()
	names := []string{"alice", "bob", "carol"}
	for _, name := range names {
		shared, library := demoDirs(data, name)
		for _, d := range []string{shared, library} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := writeDemoContent(ctx, data, names); err != nil {
		t.Fatal(err)
	}
	list := func() map[string]time.Time {
		files := map[string]time.Time{}
		err := filepath.WalkDir(data, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(data, path)
			files[rel] = fi.ModTime()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return files
	}
	first := list()
	for i, name := range names {
		shared, library := demoDirs(data, name)
		want, err := writeDemoFiles(filepath.Join(t.TempDir(), "shared"), name)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range want {
			rel := filepath.Join(name, "shared", filepath.Base(p))
			if _, ok := first[rel]; !ok {
				t.Errorf("%s is missing", rel)
			}
		}
		ref := filepath.Join(t.TempDir(), "library")
		tracks, err := writeDemoMusic(ref, name, i, len(names))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range tracks {
			rel, _ := filepath.Rel(ref, p)
			if _, ok := first[filepath.Join(name, "library", rel)]; !ok {
				t.Errorf("%s's track %s is missing", name, rel)
			}
		}
		entries, err := os.ReadDir(filepath.Join(data, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if p := filepath.Join(data, name, e.Name()); p != shared && p != library {
				t.Errorf("%s left in the data dir", p)
			}
		}
	}
	if err := writeDemoContent(ctx, data, names); err != nil {
		t.Fatal(err)
	}
	second := list()
	for rel, mod := range first {
		if !second[rel].Equal(mod) {
			t.Errorf("%s was written again", rel)
		}
	}
	if len(second) != len(first) {
		t.Errorf("second run: %d files, first %d: %v", len(second), len(first), slices.Sorted(maps.Keys(second)))
	}
}
