package shards

import (
	"context"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
)

// BenchmarkDownloadPath downloads a file (-shards.mib, default 64 MiB) from
// one holder (-shards.seeder) to one downloader on mesh/meshtest, whose
// transport costs little, and reports the process's CPU seconds and heap
// allocations per GB moved: what the download and serve paths themselves
// cost a byte (piece checks, the whole-file MD5, writes, requests), which
// BenchmarkDownloadGoodput's figures bury under the cost of WebRTC and the
// swings of a shared machine.
//
//	go test -run '^$' -bench DownloadPath -benchtime 1x ./shards/ -args -shards.rounds=8
func BenchmarkDownloadPath(b *testing.B) {
	_, nodes := newTestNet(b, "holder", "downloader")
	holder, downloader := nodes[0], nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := downloader.Connect(ctx, holder.ID()); err != nil {
		b.Fatal(err)
	}
	size := *benchMiB << 20
	src := seedForBench(b, holder, size)
	dir := b.TempDir()
	// lastWrite is when the last piece was written (unix ns): from it to
	// done is the download's tail (the whole-file MD5's catch-up, the sync,
	// the commit of the bitfield, the rename).
	var lastWrite atomic.Int64
	d := startDownloads(b, downloader, dir, openTestDB(b, filepath.Join(dir, "db")), nil, func(_ *DownloadsConfig, d *downloads) {
		d.afterWrite = func(MD5, int, []byte) { lastWrite.Store(time.Now().UnixNano()) }
	})
	b.Cleanup(func() { d.db.Close() })
	downloadOnce(b, d, src, holder.ID()) // warm up
	b.ResetTimer()
	reads0 := d.hashReads.Load()
	var rates, cpus, allocs, tails []float64
	gb := float64(size) / 1e9
	for i := range b.N * *benchRounds {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		c0 := processCPU()
		start := time.Now()
		r := downloadOnce(b, d, src, holder.ID())
		c := (processCPU() - c0).Seconds() / gb
		end := start.Add(time.Duration(float64(size) / (r * 1e6) * float64(time.Second)))
		tails = append(tails, float64(end.UnixNano()-lastWrite.Load())/1e6)
		runtime.ReadMemStats(&m1)
		a := float64(m1.Mallocs-m0.Mallocs) / gb
		rates, cpus, allocs = append(rates, r), append(cpus, c), append(allocs, a)
		b.Logf("round %d: %.1f MB/s, %.2f cpu-s/GB, %.0f allocs/GB, tail %.1f ms", i, r, c, a, tails[i])
	}
	b.StopTimer()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(rates), "MB/s")
	b.ReportMetric(median(cpus), "cpu-s/GB")
	b.ReportMetric(median(allocs), "allocs/GB")
	b.ReportMetric(median(tails), "tail-ms")
	// Pieces verified ahead of the whole-file MD5 are read back for it.
	b.ReportMetric(100*float64(d.hashReads.Load()-reads0)/float64(len(rates)*src.man.NumPieces()), "readback-%")
}

// seedForBench makes a file of size bytes and has holder serve it as
// -shards.seeder says: from memory (test) or shared from disk (share).
func seedForBench(b *testing.B, holder *mesh.Node, size int) *readerSource {
	b.Helper()
	data, src := testFile(b, size, 9)
	switch *benchSeeder {
	case "test":
		(&testServer{sources: []pieceSource{src}}).register(holder)
	case "share":
		shareForBench(b, holder, data)
	default:
		b.Fatalf("-shards.seeder=%q: test or share", *benchSeeder)
	}
	return src
}
