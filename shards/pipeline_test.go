package shards

import (
	"fmt"
	"testing"
	"time"
)

// simPeer is a peer in a simulated clock: it serves block requests in the
// order they come at capacity bytes/s, each answer rtt after its request
// at the least, as a holder with an upload cap (a token bucket on its
// blocks) does.
type simPeer struct {
	capacity float64
	rtt      time.Duration
	// jitter, if set, delays each answer by up to this much more (a
	// pseudo-random share of it): the scheduling delays of a busy machine,
	// which queue nothing at the peer.
	jitter time.Duration
}

type simResult struct {
	bytes      int64         // answered within the run
	maxLat     time.Duration // the longest a block took
	maxGap     time.Duration // the longest time without an answer (fetchFrom's stall timer)
	maxAhead   int64         // the most bytes in flight at once after warmup
	lastWindow int64
	lastBlock  int64
}

// run drives p for dur against the peer, requesting as fetchFrom does (at
// most maxRequests, and while the bytes in flight are under the window);
// maxAhead counts from warmup on.
func (sp simPeer) run(p *pipeline, dur, warmup time.Duration) simResult {
	type req struct {
		n        int64
		sent, at time.Time
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now, end := t0, t0.Add(dur)
	var q []req
	var inflight int64
	free := t0 // when the peer is done with what it was sent
	var res simResult
	send := func() {
		for len(q) < maxRequests && (len(q) == 0 || inflight < p.window) {
			n := p.block
			start := now.Add(sp.rtt / 2)
			if free.After(start) {
				start = free
			}
			free = start.Add(time.Duration(float64(n) / sp.capacity * float64(time.Second)))
			q = append(q, req{n: n, sent: now, at: free.Add(sp.rtt / 2)})
			inflight += n
		}
		if now.Sub(t0) >= warmup {
			res.maxAhead = max(res.maxAhead, inflight)
		}
	}
	send()
	var seq uint64
	for len(q) > 0 && q[0].at.Before(end) {
		r := q[0]
		q = q[1:]
		if sp.jitter > 0 {
			seq++
			r.at = r.at.Add(time.Duration(tieOrder(int(seq), 7) % int(sp.jitter)))
			if r.at.Before(now) {
				r.at = now
			}
		}
		res.maxGap = max(res.maxGap, r.at.Sub(now))
		now = r.at
		inflight -= r.n
		lat := now.Sub(r.sent)
		res.maxLat = max(res.maxLat, lat)
		res.bytes += r.n
		p.observe(int(r.n), lat, now)
		send()
	}
	res.lastWindow, res.lastBlock = p.window, p.block
	return res
}

// TestPipelineAdapts runs the request pipeline against simulated peers
// from 1 KiB/s to 100 MB/s. Slow ones: answers never stop for anything near
// RequestTimeout (a 256 KiB block took 32 s at 8 KiB/s, and a peer whose
// answers stop for RequestTimeout is given up on) and, once past the start,
// no more than about two blocks' time is queued, so that a critical piece
// is not held behind a long queue. Fast ones, on loopback and across a
// 100 ms round trip: the pipeline keeps the link busy (goodput within a
// few percent of the capacity, slow start included).
func TestPipelineAdapts(t *testing.T) {
	const timeout = 20 * time.Second
	tests := []struct {
		capacity float64
		rtt      time.Duration
		dur      time.Duration
		warmup   time.Duration // before the queue is bounded
		minShare float64       // of capacity*dur, at the least
		maxQueue time.Duration // of bytes in flight at the capacity, after warmup; 0: no bound
	}{
		{1 << 10, 50 * time.Millisecond, 5 * time.Minute, time.Minute, 0.9, 10 * time.Second},
		{8 << 10, 50 * time.Millisecond, 2 * time.Minute, 10 * time.Second, 0.9, 3 * time.Second},
		{32 << 10, 50 * time.Millisecond, time.Minute, 10 * time.Second, 0.9, 3 * time.Second},
		{1 << 20, 50 * time.Millisecond, time.Minute, 10 * time.Second, 0.95, time.Second},
		{10e6, 100 * time.Millisecond, time.Minute, 0, 0.9, 0},
		{100e6, time.Millisecond, 20 * time.Second, 0, 0.95, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.0fB/s,rtt=%v", tt.capacity, tt.rtt), func(t *testing.T) {
			p := newPipeline(8<<20, timeout)
			res := simPeer{capacity: tt.capacity, rtt: tt.rtt}.run(&p, tt.dur, tt.warmup)
			share := float64(res.bytes) / (tt.capacity * tt.dur.Seconds())
			queue := time.Duration(float64(res.maxAhead) / tt.capacity * float64(time.Second))
			t.Logf("goodput %.3f of the capacity, longest block %v, longest without an answer %v, most in flight %d KiB (%v), last window %d KiB of %d KiB blocks",
				share, res.maxLat.Round(time.Millisecond), res.maxGap.Round(time.Millisecond), res.maxAhead>>10, queue.Round(time.Millisecond), res.lastWindow>>10, res.lastBlock>>10)
			if share < tt.minShare {
				t.Errorf("goodput %.3f of the capacity, want at least %.2f", share, tt.minShare)
			}
			if res.maxGap > timeout/2 {
				t.Errorf("no answer for %v, near the %v timeout", res.maxGap, timeout)
			}
			if tt.maxQueue > 0 && queue > tt.maxQueue {
				t.Errorf("%d KiB in flight at once: %v of queue at the peer's rate, want at most %v", res.maxAhead>>10, queue, tt.maxQueue)
			}
		})
	}
}

// TestPipelineJitter: on loopback a block's least latency is a fraction of
// a millisecond, while a busy machine delays answers by milliseconds that
// queue nothing. Slow start took such a delay for a queue (twice the least
// latency) and ended at once: the window stayed near 100 KiB for the
// whole first second, the whole of a 64 MiB download at loopback speed
// (BenchmarkDownloadGoodput: 32 KiB blocks, about half the link's rate).
// The pipeline must open up within a fraction of a second all the same.
func TestPipelineJitter(t *testing.T) {
	for _, jitter := range []time.Duration{2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond} {
		t.Run(jitter.String(), func(t *testing.T) {
			p := newPipeline(8<<20, 20*time.Second)
			sp := simPeer{capacity: 100e6, rtt: 300 * time.Microsecond, jitter: jitter}
			res := sp.run(&p, 500*time.Millisecond, 0)
			share := float64(res.bytes) / (sp.capacity * 0.5)
			t.Logf("goodput %.3f of the capacity in the first 500 ms, most in flight %d KiB, last window %d KiB of %d KiB blocks",
				share, res.maxAhead>>10, res.lastWindow>>10, res.lastBlock>>10)
			if share < 0.85 {
				t.Errorf("goodput %.3f of the capacity in the first 500 ms, want at least 0.85", share)
			}
			if res.lastWindow < 4<<20 || res.lastBlock < BlockSize {
				t.Errorf("after 500 ms at 100 MB/s the window is %d KiB of %d KiB blocks, want at least 4 MiB of %d KiB", res.lastWindow>>10, res.lastBlock>>10, BlockSize>>10)
			}
		})
	}
}
