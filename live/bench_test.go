package live

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// BenchmarkFanout30: one host and 30 viewer nodes in one process, fanout
// 3, a Go WHIP publisher sending synthetic RTP (100 video and 50 audio
// packets a second). It reports the share of the packets sent after every
// viewer attached that each viewer received (the worst viewer), the copies
// the host uploads per packet (its children, not 30), the tree's depth,
// and the added latency per relay hop (p50, p99), from a packet's arrival
// at a relay to its arrival at the relay's child, read in one process.
func BenchmarkFanout30(b *testing.B) {
	const viewers, fanout = 30, 3
	cfg := testConfig(fanout)
	cfg.RoomTTL = 2 * time.Minute // one process of 31 nodes on a loaded machine is slow to pass records on
	// 31 nodes' media stacks on a shared 2-core machine starve each other
	// of CPU for seconds: with the default 1.5 s of silence relays would
	// drop parents that are still there and measure the machine, not the
	// protocol.
	// LIVE_BENCH_SILENCE=1.5s runs it with the default, to see how it
	// fares.
	cfg.ParentSilence = 15 * time.Second
	if d, err := time.ParseDuration(os.Getenv("LIVE_BENCH_SILENCE")); err == nil {
		cfg.ParentSilence = d
	}
	cfg.AttachTimeout = 20 * time.Second
	// All 31 nodes check every node's signed record in this one process,
	// 31 times the work a node's own machine has. At a test's pace (a
	// record every 2 s) that verifying took a sixth of the process's CPU
	// and stood in the forwarding's way; at the real pace (20 s) the 31
	// nodes, started together, refresh together, and 961 signature
	// checks at once stall every hop for a few hundred ms if that falls
	// in the measured window. So records are not refreshed during the
	// run (a change still goes out at once) and rooms are announced at
	// their real pace.
	cfg.RoomRefresh = DefaultConfig().RoomRefresh
	meshConf := func(c *mesh.Config) {
		meshtest.Fast(c)
		c.RecordRefresh, c.RecordTTL = 2*time.Minute, 5*time.Minute
		c.RecordDebounce = mesh.DefaultConfig().RecordDebounce
	}
	if os.Getenv("LIVE_BENCH_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for range b.N {
		nw := meshtest.NewNetwork()
		host := newTNodeMesh(b, nw, "host", cfg, meshConf)
		nodes := make([]*tnode, viewers)
		for i := range nodes {
			nodes[i] = newTNodeMesh(b, nw, fmt.Sprintf("v%02d", i), cfg, meshConf)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		room, pub := publishRoom(b, ctx, host, "bench", func(p *publisher) {
			// A keyframe a second, as encoders send: a stream of keyframes
			// alone would have every hub's keyframe cache copy every packet.
			p.keyframe = func(i int) bool { return i%30 == 0 }
		})
		waitRoom(b, room.ID, append(nodes, host)...)
		testutil.WaitFor(b, time.Minute, "the publisher's media at the host", func() bool {
			ti, _ := host.svc.Tree(room.ID)
			return ti.Live
		})
		// First arrival times by sequence number, per viewer: written
		// without a lock or an allocation, so that measuring costs the
		// forwarding path nothing it would not cost anyway.
		vlogs := make([]*seqLog, viewers)
		alogs := make([]*seqLog, viewers)
		vs := make([]*viewer, viewers)
		for i, n := range nodes {
			v, _ := newViewer(b)
			vl, al := newSeqLog(), newSeqLog()
			vlogs[i], alogs[i] = vl, al
			v.onVideo = func(p *rtp.Packet) { vl.mark(p.SequenceNumber) }
			v.onAudio = func(p *rtp.Packet) { al.mark(p.SequenceNumber) }
			v.reuse = true
			// A WHEP player tries again when the node's first attach
			// takes longer than the request may wait.
			var ans string
			var err error
			for try := 0; ; try++ {
				if ans, _, err = n.svc.Watch(ctx, room.ID, offer2(b, v)); err == nil {
					break
				}
				if try == 5 || !errors.Is(err, ErrNotLive) {
					b.Fatalf("viewer %d: %v", i, err)
				}
			}
			v.answer(b, ans)
			vs[i] = v
		}
		for _, v := range vs {
			waitMedia(b, v, "media at every viewer")
		}
		// Every node's hub records when each video packet came in and
		// when it had gone out to every output.
		traces := map[*tnode]*hopTrace{}
		for _, n := range append(nodes, host) {
			tr := newHopTrace()
			n.svc.mu.Lock()
			n.svc.rooms[room.ID].hub.trace.Store(tr)
			n.svc.mu.Unlock()
			traces[n] = tr
		}
		// The measured window: every viewer is attached. Packets are
		// counted by sequence number, so that those in flight at either
		// end count where they belong.
		lost0 := uint64(0)
		for _, n := range nodes {
			lost0 += n.svc.parentsLost.Load()
		}
		stopProfiles := windowProfiles(b)
		cpu0, ms0, sched0, drops0, gc0 := cpuTime(), memStats(), schedLatencies(), udpDrops(), gcCPU()
		t0 := time.Now()
		v0, a0 := pub.videoSent.Load(), pub.audioSent.Load()
		time.Sleep(5 * time.Second)
		pub.halt()
		window := time.Since(t0)
		v1, a1 := pub.videoSent.Load(), pub.audioSent.Load()
		cpu, ms, sched, drops, gc := cpuTime()-cpu0, memStats(), schedLatencies(), udpDrops(), gcCPU()
		stopProfiles()
		sent := (v1 - v0) + (a1 - a0)
		// Packets lost on a hop are repaired by NACK from that hop's
		// sender; the publisher's connection stays up for that. Wait
		// until every viewer has them all, or nothing arrived for 3 s.
		got := func(i int) uint64 {
			return vlogs[i].count(v0, v1) + alogs[i].count(a0, a1)
		}
		total, last, stable := uint64(0), time.Now(), uint64(0)
		for time.Since(last) < 3*time.Second {
			total = 0
			for i := range vs {
				total += got(i)
			}
			if total == sent*viewers {
				break
			}
			if total != stable {
				stable, last = total, time.Now()
			}
			time.Sleep(50 * time.Millisecond)
		}
		worst := 1.0
		for i := range vs {
			worst = min(worst, float64(got(i))/float64(sent))
		}
		ht, _ := host.svc.Tree(room.ID)
		depth := 0
		parent := map[*tnode]*tnode{}
		byID := map[string]*tnode{string(host.node.ID()): host}
		for _, n := range nodes {
			byID[string(n.node.ID())] = n
		}
		for _, n := range nodes {
			ti, _ := n.svc.Tree(room.ID)
			depth = max(depth, ti.Depth)
			parent[n] = byID[string(ti.Parent)]
		}
		viewerOf := map[*tnode]*seqLog{}
		for i, n := range nodes {
			viewerOf[n] = vlogs[i]
		}
		// Per relay hop (the definition): a video packet's
		// arrival at a node's hub, read from its parent's connection,
		// minus its arrival at the parent's hub. That is the parent's
		// forwarding, both media stacks and the wire: what a hop adds.
		// fwd is a hub's own part, arrival to written to every output.
		// The old figure, viewer to viewer (a packet's arrival at a
		// node's viewer minus at its parent's viewer), adds two
		// viewers' stacks and is kept to compare with earlier rows.
		var hops, fwd, v2v []float64
		for n, p := range parent {
			if p == nil {
				continue
			}
			tn, tp := traces[n], traces[p]
			for seq := v0; seq < v1; seq++ {
				q := uint16(seq)
				at, ok1 := tn.at(&tn.in, q)
				pat, ok2 := tp.at(&tp.in, q)
				if ok1 && ok2 {
					hops = append(hops, float64(at-pat)/1e6)
				}
				if out, ok := tn.at(&tn.out, q); ok && ok1 {
					fwd = append(fwd, float64(out-at)/1e6)
				}
				if p == host {
					continue
				}
				at, ok1 = viewerOf[n].at(q)
				pat, ok2 = viewerOf[p].at(q)
				if ok1 && ok2 {
					v2v = append(v2v, float64(at-pat)/1e6)
				}
			}
		}
		slices.Sort(hops)
		slices.Sort(fwd)
		slices.Sort(v2v)
		lost := uint64(0)
		for _, n := range nodes {
			lost += n.svc.parentsLost.Load()
		}
		// Every edge of the tree carries the stream once: the publisher
		// to the host, 30 parent-to-child edges and 30 node-to-viewer
		// ones. The process's CPU and allocations cover both ends of
		// each (sending and receiving), plus the publisher's encoding
		// of nothing (synthetic RTP) and the mesh's own chatter.
		edges := float64(1 + 2*viewers)
		b.ReportMetric(worst*100, "%delivered_worst")
		b.ReportMetric(float64(lost-lost0), "parents_lost")
		b.ReportMetric(float64(len(ht.Children)), "host_copies")
		b.ReportMetric(float64(depth), "depth")
		b.ReportMetric(pct(hops, 50), "hop_p50_ms")
		b.ReportMetric(pct(hops, 99), "hop_p99_ms")
		b.ReportMetric(pct(fwd, 99), "fwd_p99_ms")
		b.ReportMetric(pct(v2v, 50), "v2v_hop_p50_ms")
		b.ReportMetric(pct(v2v, 99), "v2v_hop_p99_ms")
		b.ReportMetric(100*cpu.Seconds()/window.Seconds()/edges, "%core/stream")
		b.ReportMetric(cpu.Seconds()*1e6/(float64(sent)*edges), "cpu_us/pkt_hop")
		b.ReportMetric(float64(ms.Mallocs-ms0.Mallocs)/(float64(sent)*edges), "allocs/pkt_hop")
		b.ReportMetric(float64(ms.TotalAlloc-ms0.TotalAlloc)/(float64(sent)*edges), "B/pkt_hop")
		b.ReportMetric(float64(ms.NumGC-ms0.NumGC), "gcs")
		// The collector's share of the process's CPU (the runtime's
		// estimate), which it takes from forwarding while it marks; it
		// runs a few times a minute, so one window may have none.
		b.ReportMetric(100*(gc-gc0)/cpu.Seconds(), "gc_cpu_%")
		if drops >= 0 && drops0 >= 0 {
			// Datagrams the kernel dropped on the process's UDP sockets
			// (receive buffer full), which NACKs then had to repair.
			b.ReportMetric(float64(drops-drops0), "udp_drops")
		}
		// How long goroutines waited to run once runnable, over the
		// window: the process's own queueing, which every hop pays at
		// each goroutine hand-off in the media stacks.
		b.ReportMetric(histPct(sched0, sched, 0.99)*1e3, "sched_wait_p99_ms")
		b.ReportMetric(float64(ms.PauseTotalNs-ms0.PauseTotalNs)/1e6, "gc_pause_ms")
		pub.close()
		b.StopTimer()
		// Ending the room first spares the teardown a wave of re-attaches.
		host.svc.End(ctx, room.ID)
		cancel()
		for _, n := range append(nodes, host) {
			n.stop()
		}
		b.StartTimer()
	}
}

// offer2 returns the offer a viewer made (newViewer returns it; this keeps
// the benchmark's loop readable).
func offer2(b *testing.B, v *viewer) string {
	return v.pc.LocalDescription().SDP
}

// BenchmarkFirstFrame2Hops: a viewer joins a running room at a node two
// hops from the host (the host takes one child, the relay below it the
// rest), as in the target. It reports the time from the WHEP
// request to the first video packet at the viewer (p50 and the worst),
// which covers finding a parent, the signed attach, ICE and DTLS of the
// new edge and of the viewer. The synthetic publisher's every frame is a
// keyframe, so this is the time to a decodable frame when the source
// answers keyframe requests at once; the demo's files have a keyframe a
// second and add up to that.
func BenchmarkFirstFrame2Hops(b *testing.B) {
	hostCfg := testConfig(1)
	cfg := testConfig(64)
	nw := meshtest.NewNetwork()
	host := newTNode(b, nw, "host", hostCfg)
	relay := newTNode(b, nw, "relay", cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	room, _ := publishRoom(b, ctx, host, "bench", nil)
	waitRoom(b, room.ID, host, relay)
	rv, _ := watch(b, relay, room.ID)
	waitMedia(b, rv, "media at the relay")
	var times []float64
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		n := newTNode(b, nw, fmt.Sprintf("v%02d", i), cfg)
		waitRoom(b, room.ID, n)
		v, offer := newViewer(b)
		first := make(chan struct{})
		var once sync.Once
		v.onVideo = func(*rtp.Packet) { once.Do(func() { close(first) }) }
		b.StartTimer()
		start := time.Now()
		ans, _, err := n.svc.Watch(ctx, room.ID, offer)
		if err != nil {
			b.Fatal(err)
		}
		v.answer(b, ans)
		select {
		case <-first:
		case <-time.After(30 * time.Second):
			b.Fatal("no video at the viewer two hops down")
		}
		times = append(times, float64(time.Since(start))/1e6)
		b.StopTimer()
		if ti, _ := n.svc.Tree(room.ID); ti.Depth != 2 {
			b.Fatalf("viewer node at depth %d, want 2", ti.Depth)
		}
		v.pc.Close()
		n.stop()
		nw.Kill(n.node.ID()) // its link and directory record go too
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(times[len(times)/2], "first_frame_p50_ms")
	b.ReportMetric(times[len(times)-1], "first_frame_max_ms")
}

// seqLog records when packets first arrived, by RTP sequence number, for
// the last traceLen of them (a hopTrace's in, with first-arrival marks).
type seqLog struct{ t *hopTrace }

func newSeqLog() *seqLog { return &seqLog{newHopTrace()} }

// mark records seq's arrival unless it arrived before (a retransmission).
func (l *seqLog) mark(seq uint16) {
	e := &l.t.in[seq%traceLen]
	old := e.Load()
	if old != 0 && uint16(old) == seq {
		return
	}
	e.CompareAndSwap(old, (time.Now().UnixNano()-l.t.base)<<16|int64(seq))
}

func (l *seqLog) at(seq uint16) (int64, bool) { return l.t.at(&l.t.in, seq) }

// count returns how many of the sequence numbers from..to-1 (mod 2^16)
// arrived; to-from is at most traceLen.
func (l *seqLog) count(from, to uint64) uint64 {
	n := uint64(0)
	for s := from; s < to; s++ {
		if _, ok := l.at(uint16(s)); ok {
			n++
		}
	}
	return n
}

// pct returns the p-th percentile of sorted xs, 0 for none.
func pct(xs []float64, p int) float64 {
	if len(xs) == 0 {
		return 0
	}
	return xs[min(len(xs)-1, len(xs)*p/100)]
}

// gcCPU returns the CPU seconds the runtime estimates its collector took
// from the program so far: mark assists, the dedicated mark workers and
// the pauses (not the marking it does on otherwise idle Ps).
func gcCPU() float64 {
	m := []metrics.Sample{
		{Name: "/cpu/classes/gc/mark/assist:cpu-seconds"},
		{Name: "/cpu/classes/gc/mark/dedicated:cpu-seconds"},
		{Name: "/cpu/classes/gc/pause:cpu-seconds"},
	}
	metrics.Read(m)
	sum := 0.0
	for _, s := range m {
		if s.Value.Kind() == metrics.KindFloat64 {
			sum += s.Value.Float64()
		}
	}
	return sum
}

// schedLatencies returns the runtime's histogram of the time goroutines
// spent runnable before they ran, since the start.
func schedLatencies() *metrics.Float64Histogram {
	m := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(m)
	if m[0].Value.Kind() != metrics.KindFloat64Histogram {
		return nil
	}
	return m[0].Value.Float64Histogram()
}

// histPct returns the q-th quantile (an upper bucket bound) of what was
// added to histogram a to make b.
func histPct(a, b *metrics.Float64Histogram, q float64) float64 {
	if a == nil || b == nil {
		return 0
	}
	total := uint64(0)
	for i := range b.Counts {
		total += b.Counts[i] - a.Counts[i]
	}
	seen := uint64(0)
	for i := range b.Counts {
		seen += b.Counts[i] - a.Counts[i]
		if float64(seen) >= q*float64(total) {
			return b.Buckets[i+1]
		}
	}
	return 0
}

func memStats() runtime.MemStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}

// windowProfiles profiles the measured window alone when LIVE_BENCH_PROFILE
// names a path prefix: prefix.cpu, and heap, mutex and block profiles at
// the start (prefix.*0) and the end (prefix.*1) of the window, to read with
// go tool pprof -base prefix.heap0 prefix.heap1. It returns the stop.
func windowProfiles(b *testing.B) func() {
	prefix := os.Getenv("LIVE_BENCH_PROFILE")
	if prefix == "" {
		return func() {}
	}
	write := func(name, file string) {
		f, err := os.Create(prefix + "." + file)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
			b.Fatal(err)
		}
	}
	runtime.MemProfileRate = 4096
	runtime.SetMutexProfileFraction(10)
	runtime.SetBlockProfileRate(int(10 * time.Microsecond))
	runtime.GC()
	for _, n := range []string{"heap", "mutex", "block"} {
		write(n, n+"0")
	}
	f, err := os.Create(prefix + ".cpu")
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		runtime.GC() // the heap profile shows allocations up to the last GC
		for _, n := range []string{"heap", "mutex", "block"} {
			write(n, n+"1")
		}
	}
}
