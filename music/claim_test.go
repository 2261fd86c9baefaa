package music

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/shards"
)

// writeAttachment writes data where storeAttachment keeps it.
func writeAttachment(t testing.TB, dir string, data []byte, ext string) string {
	t.Helper()
	sum := md5.Sum(data)
	p := filepath.Join(dir, "music", hex.EncodeToString(sum[:])+ext)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStartClaimsOldAttachments: covers and lyrics a node shared before
// ShareFor existed are the user's shares in its database, and music
// shares an attachment only when it first reads a track's tags, which
// its tag cache spares it after an upgrade. Music's start makes them its
// own: out of Files, still shared. The user's file is left the user's.
func TestStartClaimsOldAttachments(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newMesh(t, 1)
	tn := newTestNode(t, nodes[0])
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var atts []shards.MD5
	for i, ext := range []string{".jpg", ".lrc"} {
		p := writeAttachment(t, tn.dir, fmt.Appendf(nil, "attachment %d", i), ext)
		// Shared as the user's, as nodes did before this change.
		tr, err := tn.shards.Share(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		atts = append(atts, tr.ID)
	}
	mine := filepath.Join(t.TempDir(), "note.txt")
	if err := os.WriteFile(mine, []byte("the user's"), 0o600); err != nil {
		t.Fatal(err)
	}
	note, err := tn.shards.Share(ctx, mine)
	if err != nil {
		t.Fatal(err)
	}
	tn.stop()
	tn.start(t)
	testutil.WaitFor(t, 30*time.Second, "music to claim its attachments", func() bool {
		for _, id := range atts {
			if tr, ok := transferOf(t, tn, id); !ok || tr.For != resourceName || tr.State != shards.StateSeeding {
				return false
			}
		}
		return true
	})
	if tr, ok := transferOf(t, tn, note.ID); !ok || tr.For != "" {
		t.Fatalf("the user's note: %+v (listed %v), want the user's", tr, ok)
	}
	fs, err := tn.shards.Files(ctx)
	if err != nil || len(fs) != 1 || fs[0].ID != note.ID {
		t.Fatalf("Files: %+v, %v; want the user's note alone", fs, err)
	}
}

// BenchmarkClaimAttachments20k: an upgraded node with 20,000 tracks, each
// with its own lyrics and one cover per 10 tracks, all shared as the
// user's (as before ShareFor). Reported: seconds for the claim at the
// first start, and for the claim at every start after (nothing to do).
func BenchmarkClaimAttachments20k(b *testing.B) {
	const tracks = 20_000
	_, nodes := newMesh(b, 1)
	tn := newTestNode(b, nodes[0])
	ctx := context.Background()
	start := time.Now()
	for i := range tracks + tracks/10 {
		ext := ".lrc"
		if i >= tracks {
			ext = ".jpg"
		}
		p := writeAttachment(b, tn.dir, fmt.Appendf(nil, "[00:01.00] line %d", i), ext)
		if _, err := tn.shards.Share(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("shared %d attachments as the user's in %v", tracks+tracks/10, time.Since(start))
	tn.stop()
	b.ResetTimer()
	var first, again time.Duration
	for range b.N {
		b.StopTimer()
		all, _ := tn.shards.Shares(ctx)
		for _, t := range all {
			if _, err := tn.shards.Share(ctx, t.Path); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		start := time.Now()
		tn.music.claimAttachments(ctx)
		first += time.Since(start)
		start = time.Now()
		tn.music.claimAttachments(ctx)
		again += time.Since(start)
	}
	all, _ := tn.shards.Shares(ctx)
	for _, t := range all {
		if t.For != resourceName {
			b.Fatalf("%s not claimed: %+v", t.Path, t)
		}
	}
	b.ReportMetric(first.Seconds()/float64(b.N), "s/claim")
	b.ReportMetric(again.Seconds()/float64(b.N), "s/start-after")
}

// TestClaimAttachmentsStopsWithContext: the claim runs before music's
// first scan and, at 20,000 tracks, for seconds; a stop in the middle
// ends it at the next file (the rest are claimed at the next start). A
// claim of an unchanged share succeeds whatever ctx says, so only the
// loop's own check can stop it.
func TestClaimAttachmentsStopsWithContext(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newMesh(t, 1)
	tn := newTestNode(t, nodes[0])
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var atts []shards.MD5
	var paths []string
	for i := range 3 {
		paths = append(paths, writeAttachment(t, tn.dir, fmt.Appendf(nil, "attachment %d", i), ".lrc"))
	}
	// Unchanged for longer than shards' racy window (2 s, ctime
	// included) when shared: the claim needs no hash, so nothing in
	// shards looks at ctx.
	time.Sleep(3 * time.Second)
	for _, p := range paths {
		tr, err := tn.shards.Share(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		atts = append(atts, tr.ID)
	}
	tn.stop() // no Serve claims beside the calls below
	claimed := func() (n int) {
		for _, id := range atts {
			if tr, ok := transferOf(t, tn, id); ok && tr.For == resourceName {
				n++
			}
		}
		return n
	}
	stopped, stop := context.WithCancel(ctx)
	stop()
	tn.music.claimAttachments(stopped)
	if n := claimed(); n != 0 {
		t.Fatalf("%d of %d claimed after the stop, want none", n, len(atts))
	}
	tn.music.claimAttachments(ctx)
	if n := claimed(); n != len(atts) {
		t.Fatalf("%d of %d claimed, want all", n, len(atts))
	}
}
