package shards

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestShareSameBytesTwoNames: sharing a file whose bytes are shared
// already under another name returns a link that carries the name of the
// file just shared (it carried the first one's: `catnest share b.txt`
// printed a link to "a.txt"). The resource is listed once.
func TestShareSameBytesTwoNames(t *testing.T) {
	na, _ := newPair(t)
	s := serveTest(t, testConfig(t, na))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	data := writeRandom(t, filepath.Join(dir, "a.txt"), 70_000, 9)
	b := filepath.Join(dir, "report.pdf")
	if err := os.WriteFile(b, data, 0o600); err != nil {
		t.Fatal(err)
	}
	first, err := s.Share(ctx, filepath.Join(dir, "a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// Twice: once hashed, once found unchanged by its stamp.
	for range 2 {
		second, err := s.Share(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		l, err := ParseLink(second.Link)
		if err != nil || second.ID != first.ID || l.Name != "report.pdf" || second.Name != "report.pdf" ||
			second.Path != b || second.Type != "application/pdf" {
			t.Fatalf("second share %+v (link %+v, %v); want the same id named report.pdf at %s", second, l, err, b)
		}
	}
	if ts, _ := s.Shares(ctx); len(ts) != 1 {
		t.Errorf("listed %d shares, want the resource once", len(ts))
	}
}

// TestShareProcFile: a file that says it is 0 bytes but reads as more
// (/proc/cpuinfo) is refused with a reason; it was shared as an empty
// file named cpuinfo. A truly empty file is shared.
func TestShareProcFile(t *testing.T) {
	if _, err := os.ReadFile("/proc/cpuinfo"); err != nil {
		t.Skip("no /proc/cpuinfo:", err)
	}
	na, _ := newPair(t)
	s := serveTest(t, testConfig(t, na))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := s.Share(ctx, "/proc/cpuinfo")
	if !errors.Is(err, ErrNotFile) || !strings.Contains(err.Error(), "says it is 0 bytes but reads as more") {
		t.Fatalf("Share(/proc/cpuinfo) = %+v, %v; want ErrNotFile saying why", tr, err)
	}
	if ts, _ := s.Shares(ctx); len(ts) != 0 {
		t.Fatalf("a refused share is listed: %+v", ts)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if tr, err := s.Share(ctx, empty); err != nil || tr.Size != 0 {
		t.Fatalf("an empty file: %+v, %v", tr, err)
	}
}

// TestTypeFor: the catalog's types do not depend on the machine's MIME
// table for what services share (a track's .lrc lyrics were listed as
// application/octet-stream).
func TestTypeFor(t *testing.T) {
	for name, want := range map[string]string{
		"song.lrc": "text/plain; charset=utf-8", "SONG.LRC": "text/plain; charset=utf-8",
		"a.png": "image/png", "noext": "application/octet-stream",
	} {
		if got := typeFor(name); got != want {
			t.Errorf("typeFor(%q) = %q, want %q", name, got, want)
		}
	}
}
