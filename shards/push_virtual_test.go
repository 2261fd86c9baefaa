package shards

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"
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
