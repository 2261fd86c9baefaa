//go:build unix

package shards

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// TestFetchIntoDirUmask: a file saved into the user's folder has the mode
// any file a program creates there gets: 0666 less the umask. It was 0644
// whatever the umask.
func TestFetchIntoDirUmask(t *testing.T) {
	testutil.CheckGoroutines(t)
	na, nb := newPair(t)
	a := serveTest(t, testConfig(t, na))
	b := serveTest(t, testConfig(t, nb))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, tt := range []struct {
		umask int
		want  os.FileMode
	}{{0o027, 0o640}, {0o002, 0o664}} {
		path := filepath.Join(t.TempDir(), "notes.txt")
		writeRandom(t, path, 300<<10+i, uint64(20+i))
		link := shareLink(t, ctx, a, path)
		link.Dir = t.TempDir()
		// The node's umask (the process's): set for this test alone.
		was := syscall.Umask(tt.umask)
		if _, err := b.Fetch(ctx, link); err != nil {
			syscall.Umask(was)
			t.Fatal(err)
		}
		tr := waitState(t, b.downloads, link.ID, StateDone, 60*time.Second)
		syscall.Umask(was)
		fi, err := os.Stat(tr.Path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != tt.want {
			t.Errorf("umask %#o: saved file has mode %v, want %v", tt.umask, got, tt.want)
		}
	}
}
