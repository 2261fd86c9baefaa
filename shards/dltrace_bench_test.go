package shards

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// -shards.trace=R logs, for each round of BenchmarkDownloadGoodput whose
// ratio falls below R, the download's timeline per 100 ms (logTrace); the
// holder is then the in-memory test server, whatever -shards.seeder says.
var benchTrace = flag.Float64("shards.trace", 0, "BenchmarkDownloadGoodput: log a timeline (per 100 ms) of each download round whose ratio falls below this (0: none)")

// traceRow is one 100 ms of a download's timeline.
type traceRow struct {
	at                             time.Duration
	sent, sentB, served, got, gotB int64
	pieces, short, errs, hedges    int64
	maxTook, check, idle, cpu      time.Duration
	inflight, infB, window, block  int64
	rate                           int64
	used, line, evicted, rcvErrs   int64
	loops, held                    int64
}

// tracer samples a dlTrace every 100 ms while a round runs.
type tracer struct {
	t       *dlTrace
	d       *downloads
	served  atomic.Int64 // block requests the holder served
	written atomic.Int64
	stop    chan struct{}
	done    chan []traceRow
	start   time.Time
}

func (tr *tracer) begin() {
	tr.t.firstSent.Store(0)
	tr.stop, tr.done, tr.start = make(chan struct{}), make(chan []traceRow, 1), time.Now()
	go func() {
		var rows []traceRow
		prev := tr.snap()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
			case <-tr.stop:
				tr.done <- append(rows, tr.diff(prev, tr.snap()))
				return
			}
			s := tr.snap()
			rows = append(rows, tr.diff(prev, s))
			prev = s
		}
	}()
}

func (tr *tracer) end() []traceRow {
	close(tr.stop)
	return <-tr.done
}

func (tr *tracer) snap() traceRow {
	t := tr.t
	tr.d.budget.mu.Lock()
	used, line, ev := tr.d.budget.used, int64(len(tr.d.budget.line)), tr.d.budget.evicted
	tr.d.budget.mu.Unlock()
	return traceRow{at: time.Since(tr.start), sent: t.sent.Load(), sentB: t.sentB.Load(), served: tr.served.Load(),
		got: t.got.Load(), gotB: t.gotB.Load(), pieces: tr.written.Load(), short: t.short.Load(), errs: t.errs.Load(),
		hedges: tr.d.hedges.Load(), maxTook: time.Duration(t.maxTook.Swap(0)), check: time.Duration(t.checkNs.Load()),
		idle: time.Duration(t.idleNs.Load()), cpu: processCPU(), inflight: t.inflight.Load(), infB: t.infB.Load(),
		window: t.window.Load(), block: t.block.Load(), rate: t.rate.Load(), used: used, line: line, evicted: ev,
		rcvErrs: rcvbufErrors(), loops: t.loops.Load(), held: t.held.Load()}
}

func (tr *tracer) diff(a, b traceRow) traceRow {
	r := b
	r.sent, r.sentB, r.served, r.got, r.gotB = b.sent-a.sent, b.sentB-a.sentB, b.served-a.served, b.got-a.got, b.gotB-a.gotB
	r.pieces, r.short, r.errs, r.hedges = b.pieces-a.pieces, b.short-a.short, b.errs-a.errs, b.hedges-a.hedges
	r.check, r.idle, r.cpu = b.check-a.check, b.idle-a.idle, b.cpu-a.cpu
	r.evicted, r.rcvErrs, r.loops = b.evicted-a.evicted, b.rcvErrs-a.rcvErrs, b.loops-a.loops
	return r
}

// logTrace logs a round's timeline, a row per 100 ms: block requests sent
// (and MB), requests the holder served, answers taken (and MB), pieces
// written, asks the budget turned down, answers with an error, requests
// hedged, the longest answer's round trip (ms), time in check (MD5s,
// writes) and in the loop's wait with nothing in flight, the process's
// CPU (ms); at the row's end: requests and KiB in flight, the pipeline's
// window, block and rate, the budget's bytes held, its line and
// evictions, the system's UDP RcvbufErrors, the loop's turns.
func logTrace(b *testing.B, tr *tracer, rows []traceRow) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "round started at unix µs %d\n", tr.start.UnixMicro())
	if fs := tr.t.firstSent.Load(); fs != 0 {
		fmt.Fprintf(&sb, "first request %.1f ms after fetch\n", float64(fs-tr.start.UnixNano())/1e6)
	}
	fmt.Fprintf(&sb, "%6s %5s %6s %5s %5s %6s %5s %4s %3s %3s %7s %6s %6s %6s %4s %6s %7s %6s %6s %6s %4s %3s %5s %5s\n",
		"ms", "sent", "sentMB", "srvd", "got", "gotMB", "pcs", "shrt", "err", "hdg", "maxTook", "check", "idle", "cpu",
		"infl", "infKB", "winKB", "blkKB", "rateMB", "usedMB", "line", "ev", "rcvEr", "loops")
	for _, r := range rows {
		fmt.Fprintf(&sb, "%6.0f %5d %6.2f %5d %5d %6.2f %5d %4d %3d %3d %7.1f %6.1f %6.1f %6.1f %4d %6d %7d %6d %6.1f %6.1f %4d %3d %5d %5d\n",
			float64(r.at)/1e6, r.sent, float64(r.sentB)/1e6, r.served, r.got, float64(r.gotB)/1e6, r.pieces, r.short, r.errs, r.hedges,
			float64(r.maxTook)/1e6, float64(r.check)/1e6, float64(r.idle)/1e6, float64(r.cpu)/1e6,
			r.inflight, r.infB>>10, r.window>>10, r.block>>10, float64(r.rate)/1e6, float64(r.used)/1e6, r.line, r.evicted, r.rcvErrs, r.loops)
	}
	b.Log("\n" + sb.String())
}

// rcvbufErrors is the system's UDP RcvbufErrors (/proc/net/snmp).
func rcvbufErrors() int64 {
	data, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0
	}
	lines := strings.Split(string(data), "\n")
	for i := 0; i+1 < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "Udp: ") || !strings.HasPrefix(lines[i+1], "Udp: ") {
			continue
		}
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for k, n := range names {
			if n == "RcvbufErrors" && k < len(vals) {
				v, _ := strconv.ParseInt(vals[k], 10, 64)
				return v
			}
		}
	}
	return 0
}
