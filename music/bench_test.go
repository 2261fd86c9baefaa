package music

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/reslist"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
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
	testutil.WAVHeader(hdr)
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("artist-%d", i%100), fmt.Sprintf("%05d.wav", i))
		os.MkdirAll(filepath.Dir(p), 0o700)
		copy(hdr[44:], fmt.Sprint(i))
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

// BenchmarkTracks20k lists a merged library of 20,000 tracks from 40
// nodes (2,000 tracks each, every track on four of them) under a ban list
// of 1,000 patterns, as each GET /api/music/tracks does while nothing
// changed: the sorted, ban-marked list is kept, so a request costs a copy.
// Reported: ms per request, and for one merge of the 40 lists.
func BenchmarkTracks20k(b *testing.B) {
	ts, tags := genTracks(20_000, 1, "/music")
	lists := make(map[mesh.ID][]entry)
	for k := range 40 {
		var l []entry
		for j := range 2_000 {
			tr := ts[(k*500+j)%len(ts)]
			r := tags[tr.ID]
			l = append(l, entry{ID: tr.ID, Size: tr.Size, Name: tr.Name, Title: r.Title, Artist: r.Artist, Album: r.Album, Format: r.Format})
		}
		slices.SortFunc(l, func(a, b entry) int { return reslist.CompareKey(a.ID, b.ID) })
		lists[mesh.ID(fmt.Sprintf("node-%02d", k))] = l
	}
	start := time.Now()
	s := &Service{lib: merge("node-00", lists), libSeq: 1}
	mergeTime := time.Since(start)
	bans := make([]string, 1000)
	for i := range bans {
		bans[i] = fmt.Sprintf("^(?i)banned artist %d$", i)
	}
	var err error
	if s.bans, err = compileBans(bans); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if got, err := s.Tracks(b.Context(), false); err != nil || len(got) != 20_000 {
			b.Fatalf("%d tracks, %v", len(got), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/request")
	b.ReportMetric(float64(mergeTime.Microseconds())/1e3, "ms/merge")
}
