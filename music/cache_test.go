package music

import (
	"context"
	"crypto/md5"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/shards"
)

// writeBigWAV writes a WAV of size bytes of random sound and returns its
// MD5.
func writeBigWAV(t *testing.T, path string, size int, seed uint64) shards.MD5 {
	t.Helper()
	data := make([]byte, size)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 7})
	r.Read(data)
	wavHeader(data)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return md5.Sum(data)
}

// transferOf is n's shards transfer of id, if any.
func transferOf(t *testing.T, tn *testNode, id shards.MD5) (shards.Transfer, bool) {
	t.Helper()
	all, err := tn.shards.Shares(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range all {
		if tr.ID == id {
			return tr, true
		}
	}
	return shards.Transfer{}, false
}

// TestPartialDownloadNotCached plays the start of a track a holds (a
// serves slowly, so b's download of it stays partial): b lists it as not
// cached while the download runs, and when a leaves the track leaves b's
// library with it; a partial copy cannot play it.
func TestPartialDownloadNotCached(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw, nodes := newMesh(t, 2)
	dirA := t.TempDir()
	id := writeBigWAV(t, filepath.Join(dirA, "Slow.wav"), 4<<20, 1)
	slow := func(c *shards.Config) { c.UploadRate = 128 << 10 } // 4 MiB: half a minute
	a := newTestNodeTuned(t, nodes[0], nil, slow, dirA)
	b := newTestNode(t, nodes[1])
	tracksBy(t, b, "a's track", func(m map[shards.MD5]Track) bool { return len(m[id].Sources) == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := b.music.Stream(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	partial := func() bool {
		tr, ok := transferOf(t, b, id)
		return ok && tr.State == shards.StateDownloading && tr.Have > 0 && tr.Have < tr.Size
	}
	testutil.WaitFor(t, 30*time.Second, "b's partial download", partial)
	// A directory change merges the library again; so does this.
	b.music.mu.Lock()
	b.music.gen++
	b.music.mu.Unlock()
	ts, err := b.music.Tracks(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if !partial() {
		t.Skip("the download ended before the library was read: the machine is too slow for this test's upload cap")
	}
	if len(ts) != 1 || ts[0].Cached || ts[0].Local {
		t.Fatalf("b's library with the track partly downloaded: %+v, want one track not cached", ts)
	}

	// a leaves: the track goes with it, partial copy and all.
	nw.Kill(a.node.ID())
	tracksBy(t, b, "a's track to leave b's library", func(m map[shards.MD5]Track) bool { return len(m) == 0 })
}
