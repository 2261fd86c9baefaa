package shards

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/signal"
)

// Knobs of the download benchmarks, after -args:
//
//	go test -run '^$' -bench 'Download' ./shards/ -args -shards.rounds=4
//	go test -run '^$' -bench 'DownloadRSS' ./shards/ -args -shards.rss
var (
	benchRounds  = flag.Int("shards.rounds", 2, "download benchmarks: measured rounds")
	benchMiB     = flag.Int("shards.mib", 64, "BenchmarkDownloadGoodput: MiB per transfer")
	benchCapMiB  = flag.Float64("shards.cap", 4, "BenchmarkDownloadThreeHolders: each holder's upload cap, MiB/s")
	benchCapFile = flag.Int("shards.capmib", 24, "BenchmarkDownloadThreeHolders: MiB of the file")
	benchRSS     = flag.Bool("shards.rss", false, "run BenchmarkDownloadRSS (a download of -shards.rssmib MiB)")
	benchRSSMiB  = flag.Int("shards.rssmib", 1024, "BenchmarkDownloadRSS: MiB of the file")
	benchOnly    = flag.String("shards.only", "", "BenchmarkDownloadGoodput: run only the \"download\" or the \"link\" rounds (to profile one)")
	benchWarmMiB = flag.Int("shards.warmmib", 0, "BenchmarkDownloadGoodput: MiB sent over the link before the first round; 0: as many as a round (-shards.mib)")
	benchPeerWin = flag.Int("shards.peerwindow", 0, "BenchmarkDownloadGoodput: DownloadsConfig.PeerWindow in KiB (0: the default)")
	benchUnord   = flag.Bool("shards.unordered", false, "download benchmarks over WebRTC: an unordered bulk channel (mesh.RTCConfig.UnorderedBulk)")
	benchSendHi  = flag.Int("shards.sendhigh", 0, "download benchmarks over WebRTC: mesh.RTCConfig.SendBufferHigh in KiB, SendBufferLow half of it (0: the defaults)")
	benchSeeder  = flag.String("shards.seeder", "test", "BenchmarkDownloadGoodput: the holder; \"test\" serves the file from memory (testServer), \"share\" is a Service sharing it from a file on disk, as a user's node does")
)

// startSignal runs a rendezvous on 127.0.0.1 until the benchmark ends and
// returns its URL.
func startSignal(tb testing.TB) string {
	tb.Helper()
	cfg := signal.DefaultServerConfig()
	cfg.Path = "/myapp"
	srv := signal.NewServer(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, ln)
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
	})
	return "http://" + ln.Addr().String() + "/myapp"
}

// rtcNode runs a real WebRTC node on loopback until the benchmark ends.
func rtcNode(tb testing.TB, signalURL, name string) *mesh.Node {
	tb.Helper()
	ident, err := mesh.NewIdentity()
	if err != nil {
		tb.Fatal(err)
	}
	cfg := mesh.DefaultConfig()
	cfg.Identity = ident
	cfg.Name = name
	cfg.SignalURL = signalURL
	cfg.ManualLinks = true
	cfg.RTC = mesh.RTCConfig{LoopbackOnly: true, UnorderedBulk: *benchUnord}
	if *benchSendHi > 0 {
		cfg.RTC.SendBufferHigh = uint64(*benchSendHi) << 10
		cfg.RTC.SendBufferLow = cfg.RTC.SendBufferHigh / 2
	}
	n, err := mesh.NewNode(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			tb.Errorf("node %s did not stop", name)
		}
	})
	return n
}

// rtcPair links two real nodes over WebRTC on loopback.
func rtcPair(tb testing.TB) (holder, downloader *mesh.Node) {
	tb.Helper()
	url := startSignal(tb)
	holder, downloader = rtcNode(tb, url, "holder"), rtcNode(tb, url, "downloader")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for range 50 { // until the holder has registered with the rendezvous
		if err = downloader.Connect(ctx, holder.ID()); err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		tb.Fatal(err)
	}
	testutil.WaitFor(tb, 20*time.Second, "both ends of the link", func() bool {
		return len(holder.Peers()) == 1 && len(downloader.Peers()) == 1
	})
	return holder, downloader
}

// downloadOnce downloads src to completion and returns MB/s; it then
// removes the download and its file, so the next round starts afresh.
func downloadOnce(tb testing.TB, d *runningDownloads, src *readerSource, holder mesh.ID) float64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	if _, err := d.fetch(ctx, src.link(holder, "bench.bin")); err != nil {
		tb.Fatal(err)
	}
	sub := d.events.Subscribe(64)
	defer sub.Close()
	var tr Transfer
	for tr.State != StateDone {
		tr = d.get(src.id).transfer()
		if tr.State == StateFailed {
			tb.Fatalf("download failed: %s", tr.Error)
		}
		if tr.State == StateDone {
			break
		}
		select {
		case <-sub.C():
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			tb.Fatalf("download: %v (%d of %d bytes)", ctx.Err(), tr.Have, tr.Size)
		}
	}
	mbps := float64(src.man.Size) / time.Since(start).Seconds() / 1e6
	if err := d.remove(ctx, src.id); err != nil {
		tb.Fatal(err)
	}
	os.Remove(tr.Path)
	return mbps
}

const benchLinkProto = "shards-bench/link/1"

// linkSink counts what a link transfer delivers.
type linkSink struct {
	got, want atomic.Int64
	done      atomic.Pointer[chan struct{}]
}

func (k *linkSink) ServeMesh(ctx context.Context, m *mesh.Message) ([]byte, error) {
	if k.got.Add(int64(len(m.Payload))) == k.want.Load() {
		close(*k.done.Load())
	}
	return nil, nil
}

// linkOnce sends size bytes from a to b over the bulk channel in 64 KiB
// messages, the link's best case, and returns MB/s once b has them all.
func linkOnce(tb testing.TB, a, b *mesh.Node, sink *linkSink, size int64) float64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ch := make(chan struct{})
	sink.got.Store(0)
	sink.want.Store(size)
	sink.done.Store(&ch)
	msg := make([]byte, 64<<10)
	start := time.Now()
	for sent := int64(0); sent < size; sent += int64(len(msg)) {
		if err := a.Send(ctx, b.ID(), benchLinkProto, msg, mesh.OverBulk()); err != nil {
			tb.Fatal(err)
		}
	}
	select {
	case <-ch:
	case <-ctx.Done():
		tb.Fatalf("link transfer: %v (%d of %d bytes)", ctx.Err(), sink.got.Load(), size)
	}
	return float64(size) / time.Since(start).Seconds() / 1e6
}

// BenchmarkDownloadGoodput downloads a file (-shards.mib, default 64 MiB)
// from one holder to one downloader, two real nodes over WebRTC on
// loopback, and in the same rounds sends as many bytes over the bulk
// channel of the same link in 64 KiB messages (the link's goodput, as
// mesh's BenchmarkLinkGoodput measures it). The two alternate, the order
// flipped every round; figures are medians over the rounds.
func BenchmarkDownloadGoodput(b *testing.B) {
	holder, downloader := rtcPair(b)
	size := *benchMiB << 20
	var tr *tracer
	var src *readerSource
	if *benchTrace > 0 {
		tr = &tracer{t: new(dlTrace)}
		_, src = testFile(b, size, 9)
		(&testServer{sources: []pieceSource{src}, onBlock: func(mesh.ID, blockReq) { tr.served.Add(1) }}).register(holder)
	} else {
		src = seedForBench(b, holder, size)
	}
	sink := new(linkSink)
	downloader.Handle(benchLinkProto, sink)
	dir := b.TempDir()
	// lastWrite is when the last piece was written (unix ns): the time
	// from it to done is the download's tail (the sync before done, the
	// commit of the bitfield, the rename), which the link has not.
	var lastWrite atomic.Int64
	d := startDownloads(b, downloader, dir, openTestDB(b, filepath.Join(dir, "db")), nil, func(_ *DownloadsConfig, d *downloads) {
		d.afterWrite = func(MD5, int, []byte) { lastWrite.Store(time.Now().UnixNano()) }
		if *benchPeerWin > 0 {
			d.cfg.PeerWindow = int64(*benchPeerWin) << 10
		}
		if tr != nil {
			d.trace, tr.d = tr.t, d
			d.afterWrite = func(MD5, int, []byte) { lastWrite.Store(time.Now().UnixNano()); tr.written.Add(1) }
		}
	})
	b.Cleanup(func() { d.db.Close() })
	// Warm up: the congestion window, the first allocations. A fresh
	// association's first bulk transfer overshoots: pion/sctp starts with
	// ssthresh at the peer's receive window (4 MiB), so slow start bursts
	// past the two 1 MB packet buffers on pion's receive path and hundreds
	// of datagrams are dropped at once; SCTP recovers, by fast recovery or
	// by its retransmission timer (at least 1 s), and halves its window.
	// A warm-up of 4 MiB ended before that, so the first round's download
	// paid it and the link after it did not: first rounds of 0.3-0.4.
	// A round's worth of bytes gets past it.
	warm := int64(*benchWarmMiB) << 20
	if warm == 0 {
		warm = int64(size)
	}
	linkOnce(b, holder, downloader, sink, warm)
	b.ResetTimer()
	reads0 := d.hashReads.Load()
	var dls, links, ratios, dlCPU, linkCPU []float64
	// cpuPerGB runs f and returns its rate and the process's CPU seconds
	// per GB it moved (both ends are in this process): unlike the rates,
	// the CPU a byte costs hardly depends on what else the machine runs.
	cpuPerGB := func(f func() float64) (float64, float64) {
		c0 := processCPU()
		r := f()
		return r, (processCPU() - c0).Seconds() / (float64(size) / 1e9)
	}
	var tails []float64 // ms
	var rows []traceRow
	down := func() float64 {
		if tr != nil {
			tr.begin()
		}
		start := time.Now()
		r := downloadOnce(b, d, src, holder.ID())
		if tr != nil {
			rows = tr.end()
		}
		end := start.Add(time.Duration(float64(size) / (r * 1e6) * float64(time.Second)))
		tails = append(tails, float64(end.UnixNano()-lastWrite.Load())/1e6)
		return r
	}
	link := func() float64 { return linkOnce(b, holder, downloader, sink, int64(size)) }
	switch *benchOnly {
	case "download":
		link = func() float64 { return 1 }
	case "link":
		down = func() float64 { return 1 }
	}
	for i := range b.N * *benchRounds {
		var dl, ln, dc, lc float64
		if i%2 == 0 {
			dl, dc = cpuPerGB(down)
			ln, lc = cpuPerGB(link)
		} else {
			ln, lc = cpuPerGB(link)
			dl, dc = cpuPerGB(down)
		}
		dls, links, ratios = append(dls, dl), append(links, ln), append(ratios, dl/ln)
		dlCPU, linkCPU = append(dlCPU, dc), append(linkCPU, lc)
		b.Logf("round %d: download %.1f MB/s (%.1f cpu-s/GB), link %.1f MB/s (%.1f cpu-s/GB), ratio %.3f", i, dl, dc, ln, lc, dl/ln)
		if tr != nil && dl/ln < *benchTrace {
			logTrace(b, tr, rows)
		}
	}
	b.StopTimer()
	if n := d.lanePieces.Load(); n > 0 {
		b.Logf("pieces checked in SIMD lanes: %d, %.0f%% of them 8 or more at once", n, 100*float64(d.lanePaired.Load())/float64(n))
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(dls), "download-MB/s")
	b.ReportMetric(median(links), "link-MB/s")
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(median(dlCPU), "download-cpu-s/GB")
	b.ReportMetric(median(linkCPU), "link-cpu-s/GB")
	if len(tails) > 0 {
		b.Logf("from the last piece written to done, ms: %.1f", tails)
		b.ReportMetric(median(tails), "tail-ms")
		// Pieces verified ahead of the whole-file MD5 are read back for it.
		pieces := float64(len(tails) * src.man.NumPieces())
		b.ReportMetric(100*float64(d.hashReads.Load()-reads0)/pieces, "readback-%")
		b.Logf("requests sent again, late (hedgeAfter): %d", d.hedges.Load())
	}
}

// shareForBench runs a Service on holder that shares data from a file, so
// that the download is served the way a user's node serves it: a block
// read from the file in place, its size and mtime checked.
func shareForBench(b *testing.B, holder *mesh.Node, data []byte) {
	b.Helper()
	dir := b.TempDir()
	path := filepath.Join(dir, "shared.bin")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	db := openTestDB(b, filepath.Join(dir, "db"))
	b.Cleanup(func() { db.Close() })
	cfg := DefaultConfig()
	cfg.Node, cfg.DB, cfg.Dir = holder, db, filepath.Join(dir, "data")
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	b.Cleanup(func() {
		cancel()
		<-done
	})
	testutil.WaitFor(b, 10*time.Second, "the holder's Serve to start", s.open)
	// A file changed within racyWindow of its hashing has every piece it
	// serves checked against its MD5 first (stamp.racy): a user's file
	// was mostly written long before it is shared.
	time.Sleep(racyWindow + 100*time.Millisecond)
	if _, err := s.Share(ctx, path); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkDownloadThreeHolders downloads a file (-shards.capmib, default
// 24 MiB) from three holders, each serving at most -shards.cap MiB/s
// (a rate limiter on the blocks it serves), and, in the same rounds, from
// one such holder; speedup is the median of the per-round ratios (target
// about 3, at least 2.5). The nodes are on mesh/meshtest: the caps, not the
// transport, set the pace.
func BenchmarkDownloadThreeHolders(b *testing.B) {
	_, nodes := newTestNet(b, "h1", "h2", "h3", "one", "three")
	_, src := testFile(b, *benchCapFile<<20, 10)
	servers := make([]*testServer, 3)
	for i := range servers {
		servers[i] = &testServer{sources: []pieceSource{src}}
		servers[i].register(nodes[i])
	}
	capped := func() {
		for _, s := range servers {
			s.limit = rate.NewLimiter(rate.Limit(*benchCapMiB*(1<<20)), BlockSize)
		}
	}
	holders := nodeIDs(nodes[:3]...)
	dir1, dir3 := b.TempDir(), b.TempDir()
	one := startDownloads(b, nodes[3], dir1, openTestDB(b, filepath.Join(dir1, "db")), func(MD5) []mesh.ID { return holders[:1] }, nil)
	three := startDownloads(b, nodes[4], dir3, openTestDB(b, filepath.Join(dir3, "db")), func(MD5) []mesh.ID { return holders }, nil)
	b.Cleanup(func() { one.db.Close(); three.db.Close() })
	// The one-holder downloader must not find the others among its
	// neighbours: the link names holder 1 and the catalog lists only it,
	// but candidates include every linked peer; holders 2 and 3 refuse it.
	for _, s := range servers[1:] {
		s.refuse = nodes[3].ID()
	}
	b.ResetTimer()
	var r1, r3, speedup []float64
	for i := range b.N * *benchRounds {
		capped()
		a := downloadOnce(b, one, src, holders[0])
		capped()
		c := downloadOnce(b, three, src, holders[0])
		r1, r3, speedup = append(r1, a), append(r3, c), append(speedup, c/a)
		b.Logf("round %d: one holder %.2f MB/s, three %.2f MB/s, speedup %.2f", i, a, c, c/a)
	}
	b.StopTimer()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(r1), "one-MB/s")
	b.ReportMetric(median(r3), "three-MB/s")
	b.ReportMetric(median(speedup), "speedup")
}

// genReader makes up the bytes of a large file on the fly (ChaCha8 per 64
// KiB chunk), so that a holder of 1 GiB needs neither the memory nor the
// disk.
type genReader struct{ size int64 }

const genChunk = 64 << 10

func (g genReader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	chunk := make([]byte, genChunk)
	for n < len(p) && off < g.size {
		c := off / genChunk
		var seed [32]byte
		binary.BigEndian.PutUint64(seed[:], uint64(c))
		rand.NewChaCha8(seed).Read(chunk)
		k := copy(p[n:], chunk[off-c*genChunk:min(genChunk, g.size-c*genChunk)])
		n += k
		off += int64(k)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// BenchmarkDownloadRSS downloads a large file (-shards.rssmib, default 1
// GiB) over a real WebRTC link on loopback and reports the process's peak
// RSS above its RSS before the download (target <= 64 MiB). The holder is
// in the same process and its share is counted too. Run with -shards.rss;
// the downloaded file takes the size of the file in the temp dir.
func BenchmarkDownloadRSS(b *testing.B) {
	if !*benchRSS {
		b.Skip("a download of -shards.rssmib MiB: run with -args -shards.rss")
	}
	size := int64(*benchRSSMiB) << 20
	g := genReader{size: size}
	m, id, err := BuildManifest(context.Background(), io.NewSectionReader(g, 0, size), size, nil)
	if err != nil {
		b.Fatal(err)
	}
	src := &readerSource{id: id, man: m, r: g}
	holder, downloader := rtcPair(b)
	(&testServer{sources: []pieceSource{src}}).register(holder)
	dir := b.TempDir()
	d := startDownloads(b, downloader, dir, openTestDB(b, filepath.Join(dir, "db")), nil, nil)
	b.Cleanup(func() { d.db.Close() })
	b.ResetTimer()
	var peaks, rates []float64
	for i := range b.N * *benchRounds {
		runtime.GC()
		idle := procStatusKiB(b, "VmRSS")
		// Reset the peak (VmHWM) to the current RSS.
		if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
			b.Fatalf("reset VmHWM: %v", err)
		}
		mbps := downloadOnce(b, d, src, holder.ID())
		peak := procStatusKiB(b, "VmHWM")
		above := float64(peak-idle) / 1024
		peaks, rates = append(peaks, above), append(rates, mbps)
		b.Logf("round %d: idle RSS %.1f MiB, peak %.1f MiB, %.1f MiB above idle, %.1f MB/s", i, float64(idle)/1024, float64(peak)/1024, above, mbps)
	}
	b.StopTimer()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(slices.Max(peaks), "peak-above-idle-MiB")
	b.ReportMetric(median(rates), "download-MB/s")
}

// procStatusKiB reads a "kB" field of /proc/self/status.
func procStatusKiB(tb testing.TB, field string) int64 {
	tb.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && k == field {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatal(fmt.Errorf("no %s in /proc/self/status", field))
	return 0
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
