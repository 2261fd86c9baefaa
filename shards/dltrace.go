package shards

import (
	"sync/atomic"
	"time"
)

// dlTrace counts what the download loops do, for a timeline of a
// download (BenchmarkDownloadGoodput -shards.trace), to find where a slow
// round spends its time. downloads.trace is nil but there: every count is
// behind a nil check, which is all it costs otherwise.
type dlTrace struct {
	sent, sentB    atomic.Int64 // block requests sent, and their bytes
	got, gotB      atomic.Int64 // answers taken, and their bytes
	errs           atomic.Int64 // answers with an error
	pieces         atomic.Int64 // pieces written
	short          atomic.Int64 // nextBlock found the budget short
	maxTook        atomic.Int64 // the longest answer's round trip, ns
	checkNs        atomic.Int64 // time in check (MD5s, writes)
	inflight, infB atomic.Int64 // the last loop's requests in flight
	window, rate   atomic.Int64 // its pipeline's
	block          atomic.Int64
	held           atomic.Int64 // answers held for the lanes, at the last look
	loops          atomic.Int64 // loop turns
	idleNs         atomic.Int64 // time in the select with nothing in flight
	firstSent      atomic.Int64 // when the first request went out, unix ns
}

func (t *dlTrace) took(d time.Duration) {
	for {
		m := t.maxTook.Load()
		if int64(d) <= m || t.maxTook.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}
