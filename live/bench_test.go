package live

import (
	"context"
	"fmt"
	"log/slog"
	"os"
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
	cfg.RoomTTL = DefaultConfig().RoomTTL // one process of 31 nodes is slow to pass records on
	// 31 nodes' media stacks on a shared 2-core machine starve each other
	// of CPU for seconds: with the default 1.5 s of silence relays would
	// drop parents that are still there and measure the machine, not the
	// protocol.
	cfg.ParentSilence = 15 * time.Second
	cfg.AttachTimeout = 20 * time.Second
	meshConf := func(c *mesh.Config) {
		meshtest.Fast(c)
		c.RecordRefresh, c.RecordTTL = 2*time.Second, 60*time.Second
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
		room, err := host.svc.Create(ctx, "bench", "", "")
		if err != nil {
			b.Fatal(err)
		}
		pub, offer := newPublisher(b)
		ans, _, err := host.svc.Publish(ctx, room.ID, room.Token, offer)
		if err != nil {
			b.Fatal(err)
		}
		pub.start(b, ans)
		waitRoom(b, room.ID, append(nodes, host)...)
		// Arrival times by video sequence number, per node.
		var mu sync.Mutex
		arrive := map[*tnode]map[uint16]time.Time{}
		vs := make([]*viewer, viewers)
		for i, n := range nodes {
			v, _ := newViewer(b)
			arrive[n] = map[uint16]time.Time{}
			v.onVideo = func(p *rtp.Packet) {
				now := time.Now()
				mu.Lock()
				arrive[n][p.SequenceNumber] = now
				mu.Unlock()
			}
			ans, _, err := n.svc.Watch(ctx, room.ID, offer2(b, v))
			if err != nil {
				b.Fatalf("viewer %d: %v", i, err)
			}
			v.answer(b, ans)
			vs[i] = v
		}
		for _, v := range vs {
			waitMedia(b, v, "media at every viewer")
		}
		// Count from here: every viewer is attached.
		start := make([]uint64, viewers)
		for i, v := range vs {
			start[i] = v.video.Load() + v.audio.Load()
		}
		sent0 := pub.sent.Load()
		time.Sleep(5 * time.Second)
		sent := pub.sent.Load() - sent0
		pub.close()
		time.Sleep(500 * time.Millisecond) // the last packets in flight
		worst := 1.0
		for i, v := range vs {
			got := float64(v.video.Load()+v.audio.Load()-start[i]) / float64(sent)
			worst = min(worst, got)
		}
		ht, _ := host.svc.Tree(room.ID)
		depth := 0
		parent := map[*tnode]*tnode{}
		byID := map[string]*tnode{string(host.node.ID()): host}
		for _, n := range nodes {
			byID[string(n.node.ID())] = n
		}
		var hops []float64
		for _, n := range nodes {
			ti, _ := n.svc.Tree(room.ID)
			depth = max(depth, ti.Depth)
			parent[n] = byID[string(ti.Parent)]
		}
		// Per-hop latency: a viewer's arrival at a node minus the arrival
		// of the same packet at its parent's viewer (both viewers are
		// local, one hop of node to viewer on each side).
		mu.Lock()
		for n, p := range parent {
			if p == host || p == nil {
				continue
			}
			for seq, at := range arrive[n] {
				if pat, ok := arrive[p][seq]; ok {
					hops = append(hops, float64(at.Sub(pat))/1e6)
				}
			}
		}
		mu.Unlock()
		slices.Sort(hops)
		b.ReportMetric(worst*100, "%delivered_worst")
		b.ReportMetric(float64(len(ht.Children)), "host_copies")
		b.ReportMetric(float64(depth), "depth")
		if len(hops) > 0 {
			b.ReportMetric(hops[len(hops)/2], "hop_p50_ms")
			b.ReportMetric(hops[len(hops)*99/100], "hop_p99_ms")
		}
		cancel()
		b.StopTimer()
		for _, n := range append(nodes, host) {
			n.stop()
		}
		b.StartTimer()
	}
	_ = testutil.WaitFor
}

// offer2 returns the offer a viewer made (newViewer returns it; this keeps
// the benchmark's loop readable).
func offer2(b *testing.B, v *viewer) string {
	return v.pc.LocalDescription().SDP
}
