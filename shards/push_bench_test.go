package shards

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

var (
	benchPushN    = flag.Int("push.n", 8, "BenchmarkPushKumarRoss: receivers")
	benchPushMiB  = flag.Int("push.mib", 32, "BenchmarkPushKumarRoss: file size in MiB")
	benchPushRate = flag.Float64("push.rate", 4, "BenchmarkPushKumarRoss: every node's upload cap, MiB/s")
	benchPushLag  = flag.Duration("push.latency", 0, "BenchmarkPushKumarRoss: one-way latency of every link")
	benchPullHave = flag.Duration("push.have", 0, "BenchmarkPushKumarRoss, pull: the downloaders' HaveInterval (0: the default, 2 s)")
	// benchPushMaxLag, if above -push.latency, gives each link its own
	// one-way delay, uniform in [latency, maxlatency].
	benchPushRouted = flag.Bool("push.routed", false, "BenchmarkPushKumarRoss: receivers take pushes from every member too, so that a span's messages to later groups go through the groups before (signed, pushroute.go) rather than from the source directly")
	benchPushMaxLag = flag.Duration("push.maxlatency", 0, "BenchmarkPushKumarRoss: largest one-way latency of a link (each link draws its own)")
)

// BenchmarkPushKumarRoss pushes a file of F bytes from one source to N
// receivers on meshtest, every node's upload capped at the same rate u, and
// reports the time until every receiver holds the file over the Kumar–Ross
// lower bound max(F/u_s, N·F/(u_s+Σu_i)) (here F/u), and the source's
// upload over F. The fourth scheme pushes nothing: every receiver downloads
// the file (pullNet), rarest pieces first, from the source and from each
// other. Run with -benchtime=1x; -push.n, -push.mib, -push.rate and
// -push.latency change N, F, u and the links' one-way delay. It runs in
// real time, so on a shared machine the nodes' CPU enters the figure;
// TestPushKumarRossVirtual runs the same in virtual time.
func BenchmarkPushKumarRoss(b *testing.B) {
	want := randomFile(4, *benchPushMiB<<20)
	for _, scheme := range pushSchemes {
		b.Run(fmt.Sprintf("%s/N=%d/F=%dMiB", scheme, *benchPushN, *benchPushMiB), func(b *testing.B) {
			for range b.N {
				runPushKumarRoss(b, b.ReportMetric, pushRun{scheme: scheme, n: *benchPushN, want: want,
					rate: *benchPushRate * (1 << 20), latency: *benchPushLag, maxLatency: *benchPushMaxLag})
			}
		})
	}
}

// pushSchemes are the schemes BenchmarkPushKumarRoss compares.
var pushSchemes = []string{string(PlanMatrix), string(PlanSpan), string(PlanChain), "pull"}

// pushRun is one run of BenchmarkPushKumarRoss: scheme, N receivers, the
// file want, every node's upload cap rate (bytes/s) and the links' one-way
// latency (uniform in [latency, maxLatency] per link when maxLatency is
// above latency). virtual says it runs in a testing/synctest bubble.
type pushRun struct {
	scheme              string
	n                   int
	want                []byte
	rate                float64
	latency, maxLatency time.Duration
	virtual             bool
}

// runPushKumarRoss runs r and reports its figures (x-bound, s,
// src-upload/F; in virtual time also links and link-KiB, the heap the
// links took each) to report.
func runPushKumarRoss(tb testing.TB, report func(float64, string), r pushRun) {
	tb.Helper()
	n, size, u, scheme := r.n, len(r.want), r.rate, r.scheme
	nw := meshtest.NewNetwork()
	nw.Latency = r.latency
	nw.MaxLatency = r.maxLatency
	// Hundreds of nodes linked all to all re-sign their
	// records with every new neighbour, and each record
	// would be checked by every node: on one machine those
	// N³ checks, which N machines share, would dominate.
	nw.ShareSignatureChecks = n+1 > fastNodes
	cfg := DefaultPushConfig()
	if !r.virtual {
		// Dozens of nodes simulated on a shared 2-core machine
		// can leave a request unanswered for longer than the 30
		// s that make a real receiver count as hung; the
		// benchmark measures the plan, not hang detection. In
		// virtual time CPU takes no time: the product's timeout.
		cfg.BlockTimeout = 10 * time.Minute
	}
	peers := pushNet(tb, nw, n+1, r.want, cfg, 0, nil)
	src, recv := peers[0], peers[1:]
	var ups []*uplink
	sigs := &signCount{n: n}
	for _, pp := range peers {
		up := newUplink(u)
		ups = append(ups, up)
		pp.p.node = signCounted{Node: pacedNode{Node: pp.p.node, up: up}, count: sigs}
	}
	accept := AcceptFrom(src.node.ID())
	if *benchPushRouted {
		accept = AcceptFrom(ids(peers)...)
	}
	for _, pp := range recv {
		pp.p.cfg.Accept = accept
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	links := schemeLinks(scheme, len(peers))
	heap0 := heapInUse(r.virtual)
	linkAll(ctx, tb, peers, links)
	if r.virtual {
		report(float64(len(links)), "links")
		report(float64(heapInUse(true)-heap0)/float64(len(links))/1024, "link-KiB")
	}
	var pull *pullNet
	if scheme == "pull" {
		pull = newPullNet(tb, peers, u)
		ups = pull.ups
	}
	np := src.src.m.NumPieces()
	start := time.Now()
	var pid string
	if pull != nil {
		if err := pull.run(ctx); err != nil {
			tb.Fatal(err)
		}
	} else {
		var err error
		if pid, err = src.p.push(ctx, src.src.id, ids(recv), Plan(scheme), "file.bin"); err != nil {
			tb.Fatal(err)
		}
		for ctx.Err() == nil {
			all := true
			for _, pp := range recv {
				if s := pp.getSink(); s == nil || s.count() < np {
					all = false
					break
				}
			}
			if all {
				break
			}
			if st, err := src.p.status(pid); err == nil && st.Done {
				tb.Fatalf("the push ended with receivers missing pieces: %+v", st.Receivers)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	took := time.Since(start)
	if pull != nil {
		pull.check(tb)
	} else {
		for k, pp := range recv {
			if !pp.getSink().whole(src.src.id) {
				tb.Fatalf("receiver %d does not hold the file", k)
			}
		}
	}
	bound := max(float64(size)/u, float64(n)*float64(size)/(u+float64(n)*u))
	var sent int64
	for _, up := range ups {
		sent += up.sent.Load()
	}
	// Every receiver takes in F once: more is copies sent twice.
	report(float64(sent)/float64(n)/float64(size), "upload/NF")
	report(took.Seconds()/bound, "x-bound")
	report(took.Seconds(), "s")
	if pid != "" {
		st, err := src.p.status(pid)
		if err != nil {
			tb.Fatal(err)
		}
		report(float64(st.Uploaded)/float64(size), "src-upload/F")
		report(float64(sigs.sigs.Load()), "sigs")
		report(float64(sigs.checks.Load()), "sig-checks")
	}
	if pull != nil {
		report(float64(pull.src.served.Load())/float64(size), "src-upload/F")
	}
}

// uplink is a node's upload capped at u bytes/s, as the simulation
// models it: the blocks a node sends to one peer go one after the other
// (a data channel delivers its messages in order), and those to different
// peers share the cap (their waits interleave, as concurrent streams
// share a real uplink). The cap is a token bucket that starts empty and
// holds at most capBurst bytes, waited on in pieces of that size: a
// bucket fills while its node is idle, and a node that then gets a piece
// sends that much of it at once, as if its uplink had sent it before the
// node held it. With the bucket of a whole block (the benchmark's first
// version: 256 KiB, four 64 KiB pieces, full at the start), each relay of
// a chain passed its pieces on in no time and a run beat the bound (the
// chain at N = 16 took 0.995x F/u); with a small bucket but no order per
// peer, the source's window of pieces to the chain's head shared the cap
// and each arrived a window's time late, at every hop (2.0x).
type uplink struct {
	lim   *rate.Limiter
	sent  atomic.Int64 // bytes sent through it
	mu    sync.Mutex
	lanes map[mesh.ID]chan struct{}
}

// capBurst is the bucket of an uplink: 1/16 of the smallest piece.
const capBurst = 4 << 10

func newUplink(u float64) *uplink {
	lim := rate.NewLimiter(rate.Limit(u), capBurst)
	lim.AllowN(time.Now(), capBurst)
	return &uplink{lim: lim, lanes: make(map[mesh.ID]chan struct{})}
}

// send waits until n bytes to peer to have gone out: after those sent to
// it before, at the cap.
func (l *uplink) send(ctx context.Context, to mesh.ID, n int) error {
	l.mu.Lock()
	lane := l.lanes[to]
	if lane == nil {
		lane = make(chan struct{}, 1)
		l.lanes[to] = lane
	}
	l.mu.Unlock()
	select {
	case lane <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-lane }()
	for ; n > 0; n -= capBurst {
		if err := l.lim.WaitN(ctx, min(n, capBurst)); err != nil {
			return err
		}
		l.sent.Add(int64(min(n, capBurst)))
	}
	return nil
}

// signCount counts the signatures the nodes of a push to n make for its
// routed messages (pushroute.go), and the checks of them: each member on
// a message's way checks it, and the source a report.
type signCount struct {
	n            int
	sigs, checks atomic.Int64
}

// signCounted is a node whose signatures are counted.
type signCounted struct {
	Node
	count *signCount
}

func (n signCounted) Sign(context string, msg []byte) ([]byte, error) {
	if len(msg) >= len(pushID{})+2 {
		// The message's member: a report's origin or a down message's
		// target, in group g: g+1 checks on its way.
		g, _, _ := spanGroupOf(int(binary.BigEndian.Uint16(msg[len(pushID{}):])), n.count.n)
		n.count.sigs.Add(1)
		n.count.checks.Add(int64(g) + 1)
	}
	return n.Node.Sign(context, msg)
}

// pacedNode sends a push's blocks through its uplink.
type pacedNode struct {
	Node
	up *uplink
}

func (n pacedNode) Request(ctx context.Context, to mesh.ID, proto string, payload []byte, opts ...mesh.SendOption) ([]byte, error) {
	if proto == ProtoPush && len(payload) > blockHeader && payload[0] == pushBlock {
		if err := n.up.send(ctx, to, len(payload)-blockHeader); err != nil {
			return nil, err
		}
	}
	return n.Node.Request(ctx, to, proto, payload, opts...)
}

// servePaced registers srv's handlers on n with every block it serves
// sent through up first.
func servePaced(n Node, srv *testServer, up *uplink) {
	for _, proto := range []string{ProtoManifest, ProtoHave, ProtoBlock} {
		n.Handle(proto, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
			if m.Protocol == ProtoBlock {
				r, err := decodeBlockReq(m.Payload)
				if err != nil {
					return nil, err
				}
				if err := up.send(ctx, m.From, int(r.Len)); err != nil {
					return nil, err
				}
			}
			return srv.serveMesh(ctx, m)
		}))
	}
}

// heapInUse is the heap in use after a collection, when measure is set
// (in a synctest bubble the collection costs no time; in real time it
// would stall the nodes).
func heapInUse(measure bool) uint64 {
	if !measure {
		return 0
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// schemeLinks lists the links a scheme uses among n nodes (node 0 the
// source), made before the clock starts: the matrix links every node to
// every other; span each receiver to its group, the next group's owners
// of its stripes and the source; the chain links each receiver to the
// next and every receiver to the source (its reports, and repair); pull links every
// receiver to the source and to about eight others at random (a fixed
// seed), the neighbours a node of the overlay has (HighPeers is 8), among
// which downloads find the other holders. Only the matrix needs N² links:
// at N = 256 that is 32,640 links, each a directory snapshot of 257
// records and two records signed again.
func schemeLinks(scheme string, n int) [][2]int {
	var out [][2]int
	seen := make(map[[2]int]bool)
	add := func(i, j int) {
		if i > j {
			i, j = j, i
		}
		if i != j && !seen[[2]int{i, j}] {
			seen[[2]int{i, j}] = true
			out = append(out, [2]int{i, j})
		}
	}
	switch scheme {
	case string(PlanMatrix):
		for i := range n {
			for j := i + 1; j < n; j++ {
				add(i, j)
			}
		}
	case string(PlanSpan):
		// Receiver j is node j+1: its group and the next group's
		// owners of its stripes, and the source.
		for j := range n - 1 {
			add(0, j+1)
			for k := range spanGroup {
				for _, to := range relayTargets(PlanSpan, j, n-1, k) {
					add(j+1, to+1)
				}
			}
		}
	case string(PlanChain):
		for k := 1; k < n; k++ {
			add(0, k)
			if k+1 < n {
				add(k, k+1)
			}
		}
	default: // pull
		r := rand.New(rand.NewPCG(uint64(n), 9))
		for k := 1; k < n; k++ {
			add(0, k)
			for range min(4, n-2) {
				add(k, 1+r.IntN(n-1))
			}
		}
	}
	return out
}

// linkAll makes the links before the clock starts, as the members of a
// channel have them, and waits for the directory traffic that each new
// link sets off (a snapshot, then both nodes' records signed again with
// their new neighbours, each checked by everyone) to die down: on one
// machine the links' signature checks would otherwise run inside the
// timed push, which on N machines each do in parallel.
func linkAll(ctx context.Context, b testing.TB, peers []*pushPeer, links [][2]int) {
	b.Helper()
	// A few links at a time, and again after a failure: a burst of
	// thousands of links starves their own hellos.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	start := time.Now()
	for _, l := range links {
		i, j := l[0], l[1]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var err error
			for range 5 {
				if err = peers[i].node.Connect(ctx, peers[j].node.ID()); err == nil {
					return
				}
			}
			b.Errorf("link %d to %d: %v", i, j, err)
		})
	}
	wg.Wait()
	b.Logf("%d links in %v", len(links), time.Since(start).Round(time.Second))
	if len(peers) <= fastNodes {
		return // few links, and meshtest.Fast signs records every second: never still
	}
	// Still: the records issued in half a second are no more than the
	// nodes' periodic refreshes alone would issue (with hundreds of
	// nodes some node refreshes every half second, so "none" never
	// comes), four times in a row.
	quiet := len(peers)*int(time.Second/2)/int(mesh.DefaultConfig().RecordRefresh) + 1
	seen := make(map[mesh.ID]uint64)
	stable := 0
	for stable < 4 && ctx.Err() == nil {
		time.Sleep(500 * time.Millisecond)
		dir := peers[len(peers)-1].node.Directory()
		changed := 0
		for _, r := range dir {
			if seen[r.ID] != r.Seq {
				seen[r.ID] = r.Seq
				changed++
			}
		}
		if changed <= quiet && len(dir) >= len(peers) {
			stable++
		} else {
			stable = 0
		}
	}
}

// pullNet is the pull-only rarest-first scheme of BenchmarkPushKumarRoss:
// the source serves the file from its memSource and every receiver runs a
// real downloads (a part file and bbolt in a temp dir) that fetches it from
// the source and from the other receivers, which serve the pieces they
// have (the downloads are their only pieceSource). Every node's serving is
// capped at u by a token bucket on the blocks it serves, as the push
// schemes' sends are.
type pullNet struct {
	src  *testServer
	ups  []*uplink // every node's
	recv []*runningDownloads
	link Link
}

// newPullNet sets the scheme up on peers (peers[0] the source), before the
// clock starts; run starts the downloads.
func newPullNet(b testing.TB, peers []*pushPeer, u float64) *pullNet {
	b.Helper()
	src := peers[0]
	pn := &pullNet{src: &testServer{sources: []pieceSource{src.src}}, ups: []*uplink{newUplink(u)}}
	servePaced(src.node, pn.src, pn.ups[0])
	pn.link = Link{Node: src.node.ID(), Channel: FilesChannel, ID: src.src.id, Manifest: src.src.m.Hash(), Name: "file.bin", Size: src.src.m.Size}
	// The catalog would list the source as the holder; the receivers find
	// each other among their linked peers, as downloads do.
	holders := func(MD5) []mesh.ID { return []mesh.ID{src.node.ID()} }
	for _, pp := range peers[1:] {
		dir := b.TempDir()
		db := openTestDB(b, filepath.Join(dir, "db"))
		b.Cleanup(func() { db.Close() }) // after the downloads stop (cleanups run last first)
		rd := startDownloads(b, pp.node, dir, db, holders, func(c *DownloadsConfig, _ *downloads) {
			c.HaveInterval = *benchPullHave
			if c.HaveInterval <= 0 {
				c.HaveInterval = 2 * time.Second
			}
		})
		srv := &testServer{sources: []pieceSource{rd.downloads}}
		pn.ups = append(pn.ups, newUplink(u))
		servePaced(pp.node, srv, pn.ups[len(pn.ups)-1])
		pn.recv = append(pn.recv, rd)
	}
	return pn
}

// run has every receiver fetch the file and returns when every download is
// done (every piece verified, the whole-file MD5 checked, the file in
// place).
func (pn *pullNet) run(ctx context.Context) error {
	for _, rd := range pn.recv {
		if _, err := rd.fetch(ctx, pn.link); err != nil {
			return err
		}
	}
	for _, rd := range pn.recv {
		for {
			dl := rd.get(pn.link.ID)
			if dl == nil {
				return fmt.Errorf("a receiver lost its download of %s", pn.link.ID)
			}
			tr := dl.transfer()
			if tr.State == StateDone {
				break
			}
			if tr.State == StateFailed {
				return fmt.Errorf("a download failed: %s", tr.Error)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w: %d of %d bytes", ctx.Err(), tr.Have, tr.Size)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}

// check fails b unless every receiver's finished file has the resource's MD5.
func (pn *pullNet) check(b testing.TB) {
	b.Helper()
	for k, rd := range pn.recv {
		tr := rd.get(pn.link.ID).transfer()
		if got := fileMD5(b, tr.Path); got != pn.link.ID {
			b.Fatalf("receiver %d: %s has MD5 %s, not %s", k, tr.Path, got, pn.link.ID)
		}
	}
}

// BenchmarkPushReportSigned: what a routed report costs in CPU (the
// process's user and system time, which the machine's load hardly moves):
// its receiver signs it once (cpu-µs/sign) and each member on its way and
// the source check it (cpu-µs/check). A report of 2,000 pieces, the most a
// manifest has. Times the sig-checks and sigs of BenchmarkPushKumarRoss,
// it is the CPU a push spends on signatures.
func BenchmarkPushReportSigned(b *testing.B) {
	signer := fuzzSigner(b)
	pid := pushID{1}
	have := NewBitfield(MaxPieces)
	report := encodeReport(pid, map[int]bool{3: true}, have, MaxPieces)
	p := &pushes{node: signer}
	var sign, check time.Duration
	for b.Loop() {
		t0 := processCPU()
		msg, err := p.signUp(pid, 9, report)
		t1 := processCPU()
		if err != nil {
			b.Fatal(err)
		}
		origin, sig, rep, err := decodeUp(msg, pid)
		if err == nil {
			err = mesh.CheckSigned(signer.ID(), sigUp, upSigned(pid, origin, rep), sig)
		}
		t2 := processCPU()
		if err != nil {
			b.Fatal(err)
		}
		sign += t1 - t0
		check += t2 - t1
	}
	b.ReportMetric(float64(sign.Microseconds())/float64(b.N), "cpu-µs/sign")
	b.ReportMetric(float64(check.Microseconds())/float64(b.N), "cpu-µs/check")
}
