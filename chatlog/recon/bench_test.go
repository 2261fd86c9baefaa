package recon

import (
	"fmt"
	"testing"
)

// BenchmarkReconcile reconciles two stores of n = 100,000 items over a year
// with d differences, half on each side, and reports the bytes exchanged
// (both directions, all recon messages), the round trips (initiator message
// plus reply), and the bytes relative to exchanging all IDs (16 bytes × n).
func BenchmarkReconcile(b *testing.B) {
	const n = 100_000
	for _, d := range []int{0, 10, 1000} {
		b.Run(fmt.Sprintf("d=%d", d), func(b *testing.B) {
			ia, ib := pair(uint64(d)+1, n-d/2, d/2, d-d/2, year)
			sa, sb := NewSet(ia), NewSet(ib)
			var o outcome
			b.ResetTimer()
			for b.Loop() {
				o = run(b, sa, sb, Options{}, Options{})
			}
			b.StopTimer()
			checkOutcome(b, o, ia, ib)
			b.ReportMetric(float64(o.size), "bytes")
			b.ReportMetric(float64(o.roundTrips()), "round-trips")
			b.ReportMetric(float64(o.size)/(16*n), "vs-all-ids")
			if d > 0 {
				b.ReportMetric(float64(o.size)/float64(d), "bytes/diff")
			}
		})
	}
}
