package music

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// BenchmarkRescanUnchanged10k restarts shards and music over a music
// folder of 10,000 unchanged files: shards walks and stats them (no
// hashing), music takes their MD5s from its shares and their tags from
// the tag cache (no parsing). Reported: seconds from the start until the
// track list holds all 10,000 and both scans are over (target <= 2 s).
func BenchmarkRescanUnchanged10k(b *testing.B) {
	const n = 10_000
	_, nodes := newMesh(b, 1)
	dir := b.TempDir()
	hdr := make([]byte, 2048)
	copy(hdr, "RIFF")
	copy(hdr[8:], "WAVE")
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("artist-%d", i%100), fmt.Sprintf("%05d.wav", i))
		os.MkdirAll(filepath.Dir(p), 0o700)
		copy(hdr[12:], fmt.Sprint(i))
		if err := os.WriteFile(p, hdr, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	tn := newTestNode(b, nodes[0], dir)
	full := func() bool { return tn.music.own.Summary().Count == n }
	testutil.WaitFor(b, 10*time.Minute, "the first scan", full)
	b.ResetTimer()
	var total time.Duration
	for range b.N {
		tn.stop()
		start := time.Now()
		tn.start(b, dir)
		testutil.WaitFor(b, 5*time.Minute, "the rescan", func() bool {
			st, _ := tn.music.Scan(b.Context())
			return full() && st.State == "idle"
		})
		total += time.Since(start)
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/rescan")
}
