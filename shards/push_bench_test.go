package shards

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh/meshtest"
)

var (
	benchPushN    = flag.Int("push.n", 8, "BenchmarkPushKumarRoss: receivers")
	benchPushMiB  = flag.Int("push.mib", 32, "BenchmarkPushKumarRoss: file size in MiB")
	benchPushRate = flag.Float64("push.rate", 4, "BenchmarkPushKumarRoss: every node's upload cap, MiB/s")
	benchPushLag  = flag.Duration("push.latency", 0, "BenchmarkPushKumarRoss: one-way latency of every link")
)

// benchPullRarestFirst, once DOWNLOAD's downloads are merged, has every
// receiver fetch the file by pulling rarest pieces first from the source
// and from each other (no push), and returns when all hold it: the third
// scheme the Kumar–Ross benchmark compares. Nil until then.
var benchPullRarestFirst func(ctx context.Context, b *testing.B, peers []*pushPeer, id MD5) error

// BenchmarkPushKumarRoss pushes a file of F bytes from one source to N
// receivers on meshtest, every node's upload capped at the same rate u, and
// reports the time until every receiver holds the file over the Kumar–Ross
// lower bound max(F/u_s, N·F/(u_s+Σu_i)) (here F/u), and the source's
// upload over F. Run with -benchtime=1x; -push.n, -push.mib, -push.rate and
// -push.latency change N, F, u and the links' one-way delay.
func BenchmarkPushKumarRoss(b *testing.B) {
	n, size, u := *benchPushN, *benchPushMiB<<20, *benchPushRate*(1<<20)
	want := randomFile(4, size)
	for _, scheme := range []string{string(PlanMatrix), string(PlanChain), "pull"} {
		b.Run(fmt.Sprintf("%s/N=%d/F=%dMiB", scheme, n, size>>20), func(b *testing.B) {
			if scheme == "pull" && benchPullRarestFirst == nil {
				b.Skip("pull-only rarest-first needs DOWNLOAD's downloads: set benchPullRarestFirst")
			}
			for range b.N {
				nw := meshtest.NewNetwork()
				nw.Latency = *benchPushLag
				cfg := DefaultPushConfig()
				// Dozens of nodes simulated on a shared 2-core machine
				// can leave a request unanswered for longer than the 30
				// s that make a real receiver count as hung; the
				// benchmark measures the plan, not hang detection.
				cfg.BlockTimeout = 10 * time.Minute
				peers := pushNet(b, nw, n+1, want, cfg, u, nil)
				src, recv := peers[0], peers[1:]
				for _, pp := range recv {
					pp.p.cfg.Accept = AcceptFrom(src.node.ID())
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
				linkAll(ctx, b, peers)
				np := src.src.m.NumPieces()
				start := time.Now()
				var pid string
				if scheme == "pull" {
					if err := benchPullRarestFirst(ctx, b, peers, src.src.id); err != nil {
						b.Fatal(err)
					}
				} else {
					var err error
					if pid, err = src.p.push(ctx, src.src.id, ids(recv), Plan(scheme), "file.bin"); err != nil {
						b.Fatal(err)
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
							b.Fatalf("the push ended with receivers missing pieces: %+v", st.Receivers)
						}
						time.Sleep(5 * time.Millisecond)
					}
				}
				took := time.Since(start)
				for k, pp := range recv {
					if !pp.getSink().whole(src.src.id) {
						b.Fatalf("receiver %d does not hold the file", k)
					}
				}
				bound := max(float64(size)/u, float64(n)*float64(size)/(u+float64(n)*u))
				b.ReportMetric(took.Seconds()/bound, "x-bound")
				b.ReportMetric(took.Seconds(), "s")
				if pid != "" {
					st, err := src.p.status(pid)
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(float64(st.Uploaded)/float64(size), "src-upload/F")
				}
				cancel()
			}
		})
	}
}

// linkAll links every node to every other before the clock starts, as
// the members of a channel are, and waits for the directory traffic that
// each new link sets off (a snapshot, then every node's record signed
// again with its new neighbours, each checked by everyone) to die down:
// on one machine the N² links' signature checks would otherwise run
// inside the timed push, which on N machines each do in parallel.
func linkAll(ctx context.Context, b *testing.B, peers []*pushPeer) {
	b.Helper()
	// A few links at a time, and again after a failure: a burst of
	// thousands of links starves their own hellos.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range peers {
		for j := i + 1; j < len(peers); j++ {
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
	}
	wg.Wait()
	if len(peers) <= fastNodes {
		return // few links, and meshtest.Fast signs records every second: never still
	}
	var last uint64
	stable := 0
	for stable < 4 && ctx.Err() == nil {
		time.Sleep(500 * time.Millisecond)
		var sum uint64
		for _, r := range peers[len(peers)-1].node.Directory() {
			sum += r.Seq
		}
		if sum == last && len(peers[len(peers)-1].node.Directory()) >= len(peers) {
			stable++
		} else {
			last, stable = sum, 0
		}
	}
}
