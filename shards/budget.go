package shards

import (
	"slices"
	"sync"
	"time"

	"github.com/catnest/catnest/mesh"
)

// budget bounds the bytes of piece buffers that all the downloads of a node
// hold at once. Every attempt at a piece takes its buffer's size from it
// before its first block is requested and gives it back when the buffer is
// let go; the blocks in flight of an attempt never exceed its buffer, so
// the budget bounds what downloads keep in memory whatever their number
// (without it, 20 downloads held about 240 MiB of buffers).
//
// Bytes go first come, first served: a peer loop that does not get what it
// asks for waits in line (its loop selects on wait and asks again at the
// next release), and no one behind it is served before it. Otherwise the
// loop that just gave bytes back, running already, would take them again at
// once, and a download that started while others filled the budget would
// get nothing until they ended. A piece larger than the whole budget still
// goes when nothing else is held, so that no download is stuck.
//
// One peer (all the loops that fetch from it, of every download) holds at
// most its share while loops of other peers wait: past it, its loops step out
// of the line instead of taking more, and what it holds beyond it is given
// back once another peer's loop has waited a while (shed). Otherwise a
// holder that answers just inside RequestTimeout, never stalled and never
// done, holds a piece per download for as long as it likes, and about 8
// such downloads fill the default budget: no other download on the node is
// served. The share is a quarter of the budget, or less when more peers
// hold or wait for bytes (an equal part each, shareLocked): node ids cost
// nothing, and four such holders that each kept a quarter filled it.
type budget struct {
	mu      sync.Mutex
	limit   int64
	used    int64
	byPeer  map[mesh.ID]int64
	slow    map[mesh.ID]bool // peers found far slower than another (markSlow)
	peak    int64            // the most used at once, for tests and benchmarks
	line    []*budgetWaiter  // waiting, first come first
	changed chan struct{}    // closed and replaced at each release
}

// maxSlowPeers bounds the slow marks kept.
const maxSlowPeers = 4096

// peerShare: one peer holds at most 1/peerShare of the budget while other
// peers wait (8 MiB of the default 32, a piece of the largest size), less
// when more peers share it (shareLocked).
const peerShare = 4

// budgetWaiter is one peer loop's place in the budget's line.
type budgetWaiter struct {
	peer   mesh.ID   // the peer the loop fetches from
	queued bool      // in the line
	since  time.Time // when it got in line
}

func newBudget(limit int64) *budget {
	return &budget{limit: limit, byPeer: make(map[mesh.ID]int64), slow: make(map[mesh.ID]bool), changed: make(chan struct{})}
}

// tryAcquire takes n bytes for w if they fit and no one waits before w;
// else w waits in line, and tryAcquire returns false without waiting. A
// peer that holds its share while another peer's loop waits gets nothing
// and steps out of the line (its loop still asks at each release).
func (b *budget) tryAcquire(w *budgetWaiter, n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if held := b.byPeer[w.peer]; held > 0 && held+n > b.shareLocked() && b.othersWaitLocked(w.peer, 0, time.Time{}) {
		b.leaveLocked(w)
		return false
	}
	fits := b.used == 0 || b.used+n <= b.limit
	if !fits || len(b.line) > 0 && b.line[0] != w {
		if !w.queued {
			w.queued, w.since = true, time.Now()
			b.line = append(b.line, w)
		}
		return false
	}
	if w.queued {
		w.queued = false
		b.line = b.line[1:]
		b.wakeLocked() // the next in line may fit too
	}
	b.used += n
	b.byPeer[w.peer] += n
	b.peak = max(b.peak, b.used)
	return true
}

// shareLocked is what one peer may hold while other peers' loops wait: an
// equal part for each peer that holds bytes or waits for them, at most
// 1/peerShare of the budget. b.mu is held.
func (b *budget) shareLocked() int64 {
	n := len(b.byPeer)
	var counted map[mesh.ID]bool
	for _, w := range b.line {
		if _, holds := b.byPeer[w.peer]; !holds && !counted[w.peer] {
			if counted == nil {
				counted = make(map[mesh.ID]bool)
			}
			counted[w.peer] = true
			n++
		}
	}
	return b.limit / int64(max(n, peerShare))
}

// tryMore takes n more bytes for w's peer only if they fit now, no one
// waits in line and the peer stays within its share; it never puts w in
// line. The further pieces of a span are taken so (download.span): worth
// having, not worth waiting for.
func (b *budget) tryMore(w *budgetWaiter, n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.line) > 0 || b.used+n > b.limit || b.byPeer[w.peer]+n > b.shareLocked() {
		return false
	}
	b.used += n
	b.byPeer[w.peer] += n
	b.peak = max(b.peak, b.used)
	return true
}

// othersWaitLocked reports whether a loop of another peer than peer has
// waited in line for patience or more at now; b.mu is held.
func (b *budget) othersWaitLocked(peer mesh.ID, patience time.Duration, now time.Time) bool {
	for _, w := range b.line {
		if w.peer != peer && (patience <= 0 || now.Sub(w.since) >= patience) {
			return true
		}
	}
	return false
}

// yields reports whether peer was found far slower than another peer
// (markSlow) and a loop of another peer waits in line: then its loops let
// the others go first.
func (b *budget) yields(peer mesh.ID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.slow[peer] && b.othersWaitLocked(peer, 0, time.Time{})
}

// markSlow records that a download gave up a piece of peer's as far slower
// than another peer's. The mark is node-wide, since a holder's upload (or
// ill will) is the same for every download: one that trickles fills the
// line with a loop per download otherwise, each to be found out in turn.
func (b *budget) markSlow(peer mesh.ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.slow) >= maxSlowPeers {
		clear(b.slow)
	}
	b.slow[peer] = true
}

// clearSlow: peer brought a piece.
func (b *budget) clearSlow(peer mesh.ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.slow, peer)
}

// starved reports whether a loop of another peer than peer has waited in
// line for patience or more.
func (b *budget) starved(peer mesh.ID, patience time.Duration) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.line) > 0 && b.othersWaitLocked(peer, patience, time.Now())
}

// shed gives back n bytes of peer's, if it holds more than its share and
// more than those n, and a loop of another peer has waited for patience or
// more; the caller then drops the attempt those bytes were for. A peer
// keeps one piece whatever its share: a slow one's piece given back would
// start again from nothing at its next turn, and never be done.
func (b *budget) shed(peer mesh.ID, n int64, patience time.Duration) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if held := b.byPeer[peer]; held <= b.shareLocked() || held <= n || !b.othersWaitLocked(peer, patience, time.Now()) {
		return false
	}
	b.releaseLocked(peer, n)
	return true
}

// leave takes w out of the line: its loop wants nothing more for now, or
// has ended.
func (b *budget) leave(w *budgetWaiter) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.leaveLocked(w)
}

func (b *budget) leaveLocked(w *budgetWaiter) {
	if !w.queued {
		return
	}
	w.queued = false
	i := slices.Index(b.line, w)
	b.line = slices.Delete(b.line, i, i+1)
	if i == 0 {
		b.wakeLocked()
	}
}

// release gives back n bytes of peer's and wakes the waiters.
func (b *budget) release(peer mesh.ID, n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.releaseLocked(peer, n)
}

func (b *budget) releaseLocked(peer mesh.ID, n int64) {
	b.used -= n
	if b.byPeer[peer] -= n; b.byPeer[peer] <= 0 {
		delete(b.byPeer, peer)
	}
	b.wakeLocked()
}

func (b *budget) wakeLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// wait returns a channel closed at the next release.
func (b *budget) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// stats reports the bytes held now and the most held at once.
func (b *budget) stats() (used, peak int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.peak
}
