package mesh_test

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// Knobs of BenchmarkBroadcast, after -args:
//
//	go test -run '^$' -bench BenchmarkBroadcast -benchtime 1x ./mesh/ -args -bcast.nodes=200
var (
	bcastNodes   = flag.Int("bcast.nodes", 500, "BenchmarkBroadcast: nodes at the start")
	bcastMsgs    = flag.Int("bcast.msgs", 100, "BenchmarkBroadcast: measured broadcasts")
	bcastWarmup  = flag.Int("bcast.warmup", 100, "BenchmarkBroadcast: broadcasts before measuring, so that the tree forms")
	bcastRate    = flag.Float64("bcast.rate", 10, "BenchmarkBroadcast: broadcasts per second")
	bcastLatency = flag.Duration("bcast.latency", 5*time.Millisecond, "BenchmarkBroadcast: one-way delay of every frame on every link")
	bcastMaxLat  = flag.Duration("bcast.maxlatency", 0, "BenchmarkBroadcast: if above -bcast.latency, each link's delay is drawn from [latency, maxlatency]")
	bcastVirtual = flag.Bool("bcast.virtual", false, "TestBroadcastVirtual: run BenchmarkBroadcast's simulation in virtual time")
	bcastPayload = flag.Int("bcast.payload", 256, "BenchmarkBroadcast: payload bytes per broadcast")
	bcastSeed    = flag.Uint64("bcast.seed", 1, "BenchmarkBroadcast: seed of the choice of origins and of the nodes that leave")
)

const (
	bcastWarmTopic  = "bench/warm"
	bcastMeasured   = "bench/bc"
	bcastDeliverMax = time.Minute // a message not everywhere by then is lost
)

// bcastConfig sets the timers of the nodes of BenchmarkBroadcast. The
// broadcast timers (IHaveInterval, GraftTimeout, GraftRetry) keep their
// defaults: they are what is measured. The rest keeps 500 nodes in one
// process from spending the run on directory traffic, each record of
// which every node parses (its ECDSA signature is checked once in the
// process: the network shares signature checks, see
// meshtest.Network.ShareSignatureChecks):
//   - RecordRefresh 10 min, RecordTTL 30 min: no periodic re-advertising
//     and no expiry during a run; records are issued only when a node's
//     links change.
//   - RecordDebounce 5 s (default 300 ms): a node re-advertises once per
//     burst of link changes, not once per change, while the mesh forms.
//   - ReplaceInterval -1: no exploring, so the graph changes only by the
//     churn and the maintainer's refills and trims.
//   - MaintainInterval 500 ms (meshtest's default is 200 ms).
//   - PeerTimeout 2 min (default 20 s): while the mesh forms, a node's
//     link goroutines can be busy verifying records for longer than 20 s
//     at 500 nodes on 2 cores, and links that time out then are relinked,
//     which sends more records; the benchmark closes links itself.
func bcastConfig(mode mesh.BroadcastMode) func(*mesh.Config) {
	return func(c *mesh.Config) {
		c.BroadcastMode = mode
		c.MaintainInterval = 500 * time.Millisecond
		c.ReplaceInterval = -1
		c.RecordRefresh = 10 * time.Minute
		c.RecordTTL = 30 * time.Minute
		c.RecordDebounce = 5 * time.Second
		c.PeerTimeout = 2 * time.Minute
	}
}

// BenchmarkBroadcast measures Plumtree against plain flooding on an
// in-memory network of -bcast.nodes real nodes (500) with a one-way delay
// of -bcast.latency (5 ms) on every frame. After the links settle and a
// warm-up stream (-bcast.warmup broadcasts) has let the tree form, it
// sends -bcast.msgs broadcasts (100) at -bcast.rate per second (10), each
// from a random node that stays online. With churn=10%, 10% of the nodes
// leave (meshtest's Kill) and as many new nodes join, spread evenly over
// the measured stream.
//
// Figures are over the nodes online for the whole run ("stable"), and the
// benchmark fails unless each of them got every measured message exactly
// once; no node, stable or not, may get any message twice:
//   - delivery-ratio: (stable node, message) pairs delivered / expected.
//   - copies/node/msg: full copies of the measured topic received by stable
//     nodes (TopicStats.Received) / expected pairs; 1.0 is a perfect tree.
//   - p50-ms, p99-ms: time from the Broadcast call to the handler, over the
//     delivered pairs (the benchmark's own clock, not the ms-grained Sent).
//   - hops-p50, hops-max: BroadcastMsg.Hops of those deliveries.
//   - links/node: mean links per node when the measured stream starts.
//   - grafts/msg: GRAFTs sent by stable nodes during the stream, all
//     topics (with churn, directory records travel too), per message.
//   - stream-cores: process CPU time (user + system) during the measured
//     stream / its length; near the core count means the figures include
//     waiting for CPU.
//   - dropped-frames: broadcast frames dropped by all nodes (full peer
//     queue, rate limit, bad frame) from the start of the stream to the end.
//   - warmup-copies/node/msg: copies/node/msg over the warm-up stream,
//     while the tree forms.
//   - heap-MiB, goroutines: after the links settle (runtime.GC first).
//
// ns/op is meaningless (one run is minutes of set-up) and reported as 0;
// run with -benchtime 1x.
func BenchmarkBroadcast(b *testing.B) {
	for _, mode := range []struct {
		name string
		mode mesh.BroadcastMode
	}{{"plumtree", mesh.PlumtreeMode}, {"flood", mesh.FloodMode}} {
		b.Run("mode="+mode.name, func(b *testing.B) {
			for _, churn := range []struct {
				name string
				frac float64
			}{{"0", 0}, {"10%", 0.1}} {
				b.Run("churn="+churn.name, func(b *testing.B) {
					runBroadcastBench(b, b.ReportMetric, mode.mode, churn.frac, false)
				})
			}
		})
	}
}

// TestBroadcastVirtual runs BenchmarkBroadcast's simulation (same flags,
// same figures, printed as a benchmark line) inside a testing/synctest
// bubble, where time is virtual: it advances only when every node is
// idle, so timers fire on time and frames take exactly their modelled
// latency however long the machine takes to run 500 nodes' work. The
// figures are then the protocol's, not the shared CPU's: a real node has
// a machine of its own. It runs only with -bcast.virtual:
//
//	go test -run TestBroadcastVirtual -v ./mesh/ -args -bcast.virtual -bcast.nodes=500 -bcast.maxlatency=50ms
//
// The CPU the nodes spend costs no virtual time, so stream-cores is not
// reported; wall-s is how long the run took on the machine.
func TestBroadcastVirtual(t *testing.T) {
	if !*bcastVirtual {
		t.Skip("a measurement: run with -bcast.virtual")
	}
	for _, mode := range []struct {
		name string
		mode mesh.BroadcastMode
	}{{"plumtree", mesh.PlumtreeMode}, {"flood", mesh.FloodMode}} {
		for _, churn := range []struct {
			name string
			frac float64
		}{{"0", 0}, {"10%", 0.1}} {
			t.Run("mode="+mode.name+"/churn="+churn.name, func(t *testing.T) {
				start := time.Now()
				var line strings.Builder
				fmt.Fprintf(&line, "BenchmarkBroadcastVirtual/mode=%s/churn=%s\t1\t0 ns/op", mode.name, churn.name)
				synctest.Test(t, func(t *testing.T) {
					runBroadcastBench(t, func(v float64, unit string) {
						if unit != "ns/op" {
							fmt.Fprintf(&line, "\t%.4g %s", v, unit)
						}
					}, mode.mode, churn.frac, true)
				})
				fmt.Fprintf(&line, "\t%.1f wall-s", time.Since(start).Seconds())
				fmt.Println(line.String())
			})
		}
	}
}

// bcastKey is one delivery: node index, message.
type bcastKey struct {
	node int
	msg  mesh.MsgID
}

type bcastDelivery struct {
	at   time.Time
	hops int
}

// bcastRecorder notes every handler call of every node.
type bcastRecorder struct {
	mu     sync.Mutex
	stable []bool // by node index; fixed before any broadcast
	got    map[bcastKey]bcastDelivery
	calls  map[bcastKey]int
	dups   []string
	// firsts counts first deliveries to stable nodes, by topic.
	firsts map[string]int
}

func newBcastRecorder() *bcastRecorder {
	return &bcastRecorder{got: map[bcastKey]bcastDelivery{}, calls: map[bcastKey]int{}, firsts: map[string]int{}}
}

// watch registers the handlers of node index idx.
func (r *bcastRecorder) watch(n *mesh.Node, idx int) {
	for _, topic := range []string{bcastWarmTopic, bcastMeasured} {
		n.HandleBroadcast(topic, func(m mesh.BroadcastMsg) {
			now := time.Now()
			k := bcastKey{idx, m.ID}
			r.mu.Lock()
			defer r.mu.Unlock()
			r.calls[k]++
			if r.calls[k] > 1 {
				r.dups = append(r.dups, fmt.Sprintf("node %d (%s) got %s %d times, last from %s after %d hops",
					idx, n.Name(), m.ID, r.calls[k], m.From.Short(), m.Hops))
				return
			}
			r.got[k] = bcastDelivery{at: now, hops: m.Hops}
			if idx < len(r.stable) && r.stable[idx] {
				r.firsts[topic]++
			}
		})
	}
}

func (r *bcastRecorder) count(topic string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.firsts[topic]
}

// bcastSent is one broadcast of the stream.
type bcastSent struct {
	id     mesh.MsgID
	origin int
	at     time.Time
}

// runBroadcastBench runs one configuration of BenchmarkBroadcast and
// reports its figures to report; virtual says it runs in a synctest
// bubble, where the process's CPU time says nothing of the stream.
func runBroadcastBench(b testing.TB, report func(float64, string), mode mesh.BroadcastMode, churn float64, virtual bool) {
	nNodes, nMsgs := *bcastNodes, *bcastMsgs
	nChurn := int(math.Round(churn * float64(nNodes)))
	if nMsgs < 1 || nNodes < 2+nChurn {
		b.Fatalf("need at least one message and more nodes than leave")
	}
	rng := rand.New(rand.NewPCG(*bcastSeed, 0))
	nw := meshtest.NewNetwork()
	nw.Latency = *bcastLatency
	nw.MaxLatency = *bcastMaxLat
	// Each directory record's signature is checked once in the process,
	// not by every node: see ShareSignatureChecks.
	nw.ShareSignatureChecks = true
	configure := bcastConfig(mode)
	rec := newBcastRecorder()
	var nodes []*mesh.Node // every node made; the index is the recorder's
	add := func(name string) *mesh.Node {
		n := nw.NewNode(b, name, meshtest.Options{Configure: configure})
		rec.watch(n, len(nodes))
		nodes = append(nodes, n)
		return n
	}
	// Take every node off the network before the nodes' own clean-ups
	// stop them one by one, so that the survivors do not spend that time
	// relinking and re-advertising.
	defer func() {
		for _, n := range nodes {
			nw.Kill(n.ID())
		}
	}()

	setup := time.Now()
	for i := range nNodes {
		add(fmt.Sprintf("n%03d", i))
	}
	// The nodes that will leave are chosen now, so that the origins can
	// be nodes that stay: an origin that dies at once may take its message
	// with it, which says nothing of the broadcast.
	leave := rng.Perm(nNodes)[:nChurn]
	rec.mu.Lock()
	rec.stable = make([]bool, nNodes)
	for i := range rec.stable {
		rec.stable[i] = true
	}
	for _, i := range leave {
		rec.stable[i] = false
	}
	rec.mu.Unlock()
	var stable []int
	for i := range nNodes {
		if rec.stable[i] {
			stable = append(stable, i)
		}
	}

	lastLog := time.Now()
	bcastPoll(b, 3*time.Minute, "every node at 3 or more links in a connected mesh", func() bool {
		few, total := 0, 0
		for _, n := range nodes {
			k := len(n.Peers())
			total += k
			if k < 3 {
				few++
			}
		}
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			b.Logf("%v: %d nodes under 3 links, %.2f links/node", time.Since(setup).Round(time.Second), few, float64(total)/float64(len(nodes)))
		}
		return few == 0 && connected(nodes)
	})
	bcastSettle(b, nodes, 3*time.Second, 3*time.Minute)
	records := func() (r uint64) {
		for _, n := range nodes {
			r += n.BroadcastStats().Originated
		}
		return r
	}
	// And the directory: no record issued for longer than the debounce.
	last, since := records(), time.Now()
	bcastPoll(b, 3*time.Minute, "the directory to go quiet", func() bool {
		if r := records(); r != last {
			last, since = r, time.Now()
		}
		return time.Since(since) > 6*time.Second
	})
	setupTime := time.Since(setup)
	records0 := records()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	goroutines := runtime.NumGoroutine()
	b.Logf("%d nodes linked and settled in %v, %d records issued; heap in use %.0f MiB (%.0f KiB/node), %d goroutines",
		nNodes, setupTime.Round(time.Millisecond), records0, float64(ms.HeapInuse)/(1<<20), float64(ms.HeapInuse)/1024/float64(nNodes), goroutines)

	ctx := context.Background()
	payload := make([]byte, *bcastPayload)
	interval := time.Duration(float64(time.Second) / *bcastRate)
	stream := func(topic string, k int, perTick func(i int)) []bcastSent {
		sent := make([]bcastSent, 0, k)
		t0 := time.Now()
		for i := range k {
			time.Sleep(time.Until(t0.Add(time.Duration(i) * interval)))
			if perTick != nil {
				perTick(i)
			}
			origin := stable[rng.IntN(len(stable))]
			at := time.Now()
			id, err := nodes[origin].Broadcast(ctx, topic, payload)
			if err != nil {
				b.Fatal(err)
			}
			sent = append(sent, bcastSent{id: id, origin: origin, at: at})
		}
		return sent
	}
	waitAll := func(topic string, sent []bcastSent) {
		want := len(sent) * (len(stable) - 1)
		if bcastWaitCount(rec, topic, want, bcastDeliverMax) {
			return
		}
		b.Fatalf("%s: %d of %d deliveries to nodes online throughout after %v:\n%s",
			topic, rec.count(topic), want, bcastDeliverMax, bcastMissing(rec, nodes, stable, sent))
	}

	// Warm-up: the tree forms.
	warm := stream(bcastWarmTopic, *bcastWarmup, nil)
	waitAll(bcastWarmTopic, warm)
	time.Sleep(time.Second)
	var warmCopies uint64
	for _, i := range stable {
		warmCopies += nodes[i].TopicStats(bcastWarmTopic).Received
	}

	// The measured stream.
	var links float64
	for _, n := range nodes {
		links += float64(len(n.Peers()))
	}
	links /= float64(len(nodes))
	sumStats := func() (copies, grafts uint64) {
		for _, i := range stable {
			copies += nodes[i].TopicStats(bcastMeasured).Received
			grafts += nodes[i].BroadcastStats().Grafts
		}
		return copies, grafts
	}
	// Frames the broadcast layer dropped (full peer queues, rate limits),
	// by every node made so far.
	dropped := func() (d uint64) {
		for _, n := range nodes {
			d += n.BroadcastStats().Dropped
		}
		return d
	}
	copies0, grafts0 := sumStats()
	dropped0 := dropped()
	cpu0 := bcastCPU()
	left, joined := 0, 0
	sent := stream(bcastMeasured, nMsgs, func(i int) {
		// Churn due by message i, spread evenly over the stream.
		for ; left < (i+1)*nChurn/nMsgs; left++ {
			nw.Kill(nodes[leave[left]].ID())
		}
		for ; joined < (i+1)*nChurn/nMsgs; joined++ {
			add(fmt.Sprintf("j%03d", joined))
		}
	})
	streamTime := time.Since(sent[0].at)
	cpuSecs := (bcastCPU() - cpu0).Seconds()
	cpuUse := cpuSecs / streamTime.Seconds()
	b.Logf("measured stream sent in %v, %.1f CPU-seconds; %d records issued, %d broadcast frames dropped so far",
		streamTime.Round(time.Millisecond), cpuSecs, records()-records0-uint64(len(warm)+len(sent)), dropped()-dropped0)
	waitAll(bcastMeasured, sent)
	// Let late copies (duplicates, answers to GRAFTs) arrive.
	time.Sleep(2 * time.Second)
	copies1, grafts1 := sumStats()

	rec.mu.Lock()
	dups := slices.Clone(rec.dups)
	var lat, hops []float64
	for _, s := range sent {
		for _, i := range stable {
			if i == s.origin {
				continue
			}
			d := rec.got[bcastKey{i, s.id}]
			lat = append(lat, float64(d.at.Sub(s.at))/float64(time.Millisecond))
			hops = append(hops, float64(d.hops))
		}
	}
	rec.mu.Unlock()
	if len(dups) > 0 {
		b.Fatalf("%d messages delivered more than once, e.g.:\n%s", len(dups), strings.Join(dups[:min(len(dups), 10)], "\n"))
	}
	pairs := float64(len(sent) * (len(stable) - 1))
	report(0, "ns/op")
	report(float64(len(lat))/pairs, "delivery-ratio")
	report(float64(copies1-copies0)/pairs, "copies/node/msg")
	report(bcastQuantile(lat, 0.5), "p50-ms")
	report(bcastQuantile(lat, 0.99), "p99-ms")
	report(bcastQuantile(hops, 0.5), "hops-p50")
	report(slices.Max(hops), "hops-max")
	report(links, "links/node")
	report(float64(grafts1-grafts0)/float64(len(sent)), "grafts/msg")
	if len(warm) > 0 {
		report(float64(warmCopies)/float64(len(warm)*(len(stable)-1)), "warmup-copies/node/msg")
	}
	if !virtual {
		report(cpuUse, "stream-cores")
	}
	report(float64(dropped()-dropped0), "dropped-frames")
	report(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	report(float64(goroutines), "goroutines")
	b.Logf("%d messages in %v to %d stable nodes (%d left, %d joined); latency max %.1f ms, hops p99 %.0f; %d records issued since set-up",
		len(sent), streamTime.Round(time.Millisecond), len(stable), left, joined, slices.Max(lat), bcastQuantile(hops, 0.99),
		records()-records0-uint64(len(warm)+len(sent)))
}

// bcastPoll waits for cond, checking every 200 ms: asking 500 nodes for
// their links is not free.
func bcastPoll(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// bcastSettle waits until no node's links have changed for quiet.
func bcastSettle(tb testing.TB, nodes []*mesh.Node, quiet, timeout time.Duration) {
	tb.Helper()
	snapshot := func() string {
		var s strings.Builder
		for _, n := range nodes {
			for _, p := range n.Peers() {
				s.WriteString(string(p.ID))
			}
			s.WriteByte('|')
		}
		return s.String()
	}
	last, since := snapshot(), time.Now()
	bcastPoll(tb, timeout, "the links to settle", func() bool {
		if s := snapshot(); s != last {
			last, since = s, time.Now()
		}
		return time.Since(since) > quiet
	})
}

// bcastWaitCount waits until want first deliveries of topic reached
// stable nodes.
func bcastWaitCount(r *bcastRecorder, topic string, want int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for r.count(topic) < want {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// bcastMissing describes the deliveries that did not happen.
func bcastMissing(r *bcastRecorder, nodes []*mesh.Node, stable []int, sent []bcastSent) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s strings.Builder
	lines := 0
	for k, m := range sent {
		var miss []string
		for _, i := range stable {
			if _, ok := r.got[bcastKey{i, m.id}]; !ok && i != m.origin {
				miss = append(miss, fmt.Sprintf("%s (%d links)", nodes[i].Name(), len(nodes[i].Peers())))
			}
		}
		if len(miss) > 0 && lines < 20 {
			fmt.Fprintf(&s, "message %d (%s, from %s): missing at %d nodes: %s\n",
				k, m.id, nodes[m.origin].Name(), len(miss), strings.Join(miss[:min(len(miss), 8)], ", "))
			lines++
		}
	}
	return s.String()
}

// bcastCPU is the process's CPU time so far, user + system.
func bcastCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// bcastQuantile is the q-quantile of v (nearest rank).
func bcastQuantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}
