package shards

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/catnest/catnest/mesh/meshtest"
)

var benchPushVirtual = flag.Bool("push.virtual", false, "run TestPushKumarRossVirtual: BenchmarkPushKumarRoss in virtual time")

// TestPushKumarRossVirtual runs BenchmarkPushKumarRoss (same flags, same
// figures, printed as a benchmark line) inside a testing/synctest bubble:
// time advances only when every node waits, so the upload caps (token
// buckets: golang.org/x/time/rate reads the bubble's clock) and the links'
// latency are kept exactly, and the CPU that N simulated nodes share on
// one machine costs no time. The figure is then the plan's, as on N
// machines. It runs only with -push.virtual:
//
//	go test -run 'TestPushKumarRossVirtual/matrix' -v ./shards/ -args -push.virtual -push.n=64 -push.mib=16 -push.rate=1 -push.latency=5ms -push.maxlatency=50ms
//
// Besides BenchmarkPushKumarRoss's figures it reports the links the scheme
// made, the heap each took (link-KiB) and wall-s, how long the run took
// on the machine.
func TestPushKumarRossVirtual(t *testing.T) {
	if !*benchPushVirtual {
		t.Skip("a measurement: run with -push.virtual")
	}
	want := randomFile(4, *benchPushMiB<<20)
	for _, scheme := range pushSchemes {
		name := fmt.Sprintf("%s/N=%d/F=%dMiB", scheme, *benchPushN, *benchPushMiB)
		t.Run(name, func(t *testing.T) {
			begin := time.Now()
			var line strings.Builder
			fmt.Fprintf(&line, "BenchmarkPushKumarRossVirtual/%s\t1\t0 ns/op", name)
			synctest.Test(t, func(t *testing.T) {
				runPushKumarRoss(t, func(v float64, unit string) { fmt.Fprintf(&line, "\t%.4g %s", v, unit) },
					pushRun{scheme: scheme, n: *benchPushN, want: want, rate: *benchPushRate * (1 << 20),
						latency: *benchPushLag, maxLatency: *benchPushMaxLag, virtual: true})
			})
			fmt.Fprintf(&line, "\t%.1f wall-s", time.Since(begin).Seconds())
			fmt.Println(line.String())
		})
	}
}

// TestPushPlansVirtual pushes 4 MiB (64 pieces) from a source to 16
// receivers under each plan, in virtual time, every node's upload capped
// at 256 KiB/s (uplink; a batch of the matrix then takes longer than the
// source's repair waits for progress) and the links 5–20 ms one way, and
// checks what the plans promise: every receiver ends with the file, the
// source uploads the file once (at most 1.1 F, the target), no
// piece is sent to a receiver twice (all uploads within 1% of N·F), and
// the time until the
// last receiver holds it is at least the Kumar–Ross bound F/u plus the
// time the last piece needs after it (less would mean the simulation
// gives bandwidth away, as its first token buckets did) and at most the
// bound plus the plan's tail (pushTail) and its hops' latency. In virtual time the
// figures are the schedule's alone: they do not move with the machine's
// load.
func TestPushPlansVirtual(t *testing.T) {
	const n, size = 16, 4 << 20
	want := randomFile(7, size)
	for _, plan := range []Plan{PlanMatrix, PlanSpan, PlanChain} {
		t.Run(string(plan), func(t *testing.T) {
			got := make(map[string]float64)
			synctest.Test(t, func(t *testing.T) {
				runPushKumarRoss(t, func(v float64, unit string) { got[unit] = v },
					pushRun{scheme: string(plan), n: n, want: want, rate: 256 << 10,
						latency: 5 * time.Millisecond, maxLatency: 20 * time.Millisecond})
			})
			pieces := (size + MinPieceSize - 1) / MinPieceSize
			// The tail, and the last piece's hops of at most maxLatency
			// each, over F/u = 16 s; and 2% for the reports and acks.
			limit := 1 + pushTail(plan, n, pieces) + float64(pushHops(plan, n))*0.020/16 + 0.02
			t.Logf("%s: %.3fx the bound (at most %.3f), source %.3f F, all uploads %.3f N·F", plan, got["x-bound"], limit, got["src-upload/F"], got["upload/NF"])
			if got["x-bound"] > limit {
				t.Errorf("%s took %.3fx the bound, more than its tail allows (%.3f)", plan, got["x-bound"], limit)
			}
			// Nothing beats the store and forward of the last piece: it
			// leaves the source at F/u at the earliest, and then has
			// to be sent whole over each hop after (pushMinTail). A
			// run under that gives bandwidth away (1% allows for the
			// uplinks' 4 KiB buckets).
			if low := 1 + pushMinTail(plan, n, pieces) - 0.01; got["x-bound"] < low {
				t.Errorf("%s took %.3fx the bound: faster than the uplinks can carry the last piece (%.3f)", plan, got["x-bound"], low)
			}
			// Each receiver takes the file in once: a piece sent twice
			// (a repair ordered while the plan's relay was on its way)
			// is upload the others wait for.
			if got["upload/NF"] > 1.01 {
				t.Errorf("%s: the nodes uploaded %.3f N·F: copies sent twice", plan, got["upload/NF"])
			}
			if got["src-upload/F"] > 1.1 {
				t.Errorf("%s: the source uploaded %.3fx the file", plan, got["src-upload/F"])
			}
		})
	}
}

// pushTail is how much longer than F/u the synchronous schedule of plan
// (plan.go) takes to bring every piece to every one of n receivers, as a
// fraction of F/u for a file of pieces pieces: the matrix's last batch
// needs n-1 relay rounds of a piece time after the source's stream ends;
// a chain's last piece n-1 hops after its first; a span's pieces go
// through G groups of at most L members, each a period of L rounds.
func pushTail(plan Plan, n, pieces int) float64 {
	switch plan {
	case PlanChain:
		return float64(n-1) / float64(pieces)
	case PlanSpan:
		count, w, extra := spanGroups(n)
		period := w
		if extra > 0 {
			period++
		}
		batches := (pieces + w - 1) / w
		return float64((batches+count)*period)/float64(pieces) - 1
	}
	return float64(n-1) / float64(pieces)
}

// pushHops is how many links the last piece crosses in a push of plan to
// n receivers: source, owner, the others (matrix); every receiver
// (chain); source, then each group (span).
func pushHops(plan Plan, n int) int {
	switch plan {
	case PlanChain:
		return n
	case PlanSpan:
		count, _, _ := spanGroups(n)
		return count + 1
	}
	return 2
}

// pushMinTail is the least time, as a fraction of F/u for a file of
// pieces pieces, that the last piece the source sends needs to reach
// every one of n receivers under plan, each node sending at u: its owner
// sends it to the n-1 others (matrix); n-1 hops, one after the other
// (chain); each group's owner passes it to the next group, and the last
// group's owner to its other members (span).
func pushMinTail(plan Plan, n, pieces int) float64 {
	if plan == PlanSpan {
		count, w, _ := spanGroups(n)
		return float64(count-1+w-1) / float64(pieces)
	}
	return float64(n-1) / float64(pieces)
}

// TestPushSpanOffersVirtual: the source of a span push to 40 receivers
// (5 groups) reaches the last group through a member of each group
// before, links 5–50 ms one way, in virtual time. Every receiver has
// taken the offer within one round trip down the longest route, 2·G hops
// of at most 50 ms: the source offers every group at once, and a member
// on the way waits for its own offer rather than the source waiting for
// each group's answers before offering the next (then the offers took
// the sum of G round trips of growing length, seconds at N = 64, before
// the first piece). The links are made before, as the benchmark's
// (schemeLinks); TestPushSpanBoundedLinks counts the source's.
func TestPushSpanOffersVirtual(t *testing.T) {
	const n = 40
	const maxLatency = 50 * time.Millisecond
	want := randomFile(8, 1<<20)
	synctest.Test(t, func(t *testing.T) {
		nw := meshtest.NewNetwork()
		nw.Latency, nw.MaxLatency = 5*time.Millisecond, maxLatency
		peers := pushNet(t, nw, n+1, want, DefaultPushConfig(), 0, nil)
		src, recv := peers[0], peers[1:]
		for _, pp := range recv {
			pp.p.cfg.Accept = AcceptFrom(src.node.ID())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		linkAll(ctx, t, peers, schemeLinks(string(PlanSpan), n+1))
		start := time.Now()
		pid, err := src.p.push(ctx, src.src.id, ids(recv), PlanSpan, "file.bin")
		if err != nil {
			t.Fatal(err)
		}
		push, err := parsePushID(pid)
		if err != nil {
			t.Fatal(err)
		}
		for joined := 0; joined < n; time.Sleep(time.Millisecond) {
			joined = 0
			for _, pp := range recv {
				if pp.holds(push) {
					joined++
				}
			}
			if time.Since(start) > time.Minute {
				t.Fatalf("%d of %d receivers took the offer in a minute", joined, n)
			}
		}
		took := time.Since(start)
		groups, _, _ := spanGroups(n)
		limit := time.Duration(2*groups)*maxLatency + 10*time.Millisecond
		t.Logf("every receiver took the offer after %v (at most %v)", took, limit)
		if took > limit {
			t.Errorf("the offers took %v, more than a round trip down the longest route (%v)", took, limit)
		}
		pushDone(t, src, pid, 5*time.Minute)
		for k, pp := range recv {
			if !pp.getSink().whole(src.src.id) {
				t.Errorf("receiver %d does not hold the file", k)
			}
		}
	})
}
