package shards

import (
	"slices"
	"sync"
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
type budget struct {
	mu      sync.Mutex
	limit   int64
	used    int64
	peak    int64           // the most used at once, for tests and benchmarks
	line    []*budgetWaiter // waiting, first come first
	changed chan struct{}   // closed and replaced at each release
}

// budgetWaiter is one peer loop's place in the budget's line.
type budgetWaiter struct{ queued bool }

func newBudget(limit int64) *budget {
	return &budget{limit: limit, changed: make(chan struct{})}
}

// tryAcquire takes n bytes for w if they fit and no one waits before w;
// else w waits in line, and tryAcquire returns false without waiting.
func (b *budget) tryAcquire(w *budgetWaiter, n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	fits := b.used == 0 || b.used+n <= b.limit
	if !fits || len(b.line) > 0 && b.line[0] != w {
		if !w.queued {
			w.queued = true
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
	b.peak = max(b.peak, b.used)
	return true
}

// leave takes w out of the line: its loop wants nothing more for now, or
// has ended.
func (b *budget) leave(w *budgetWaiter) {
	b.mu.Lock()
	defer b.mu.Unlock()
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

// release gives back n bytes and wakes the waiters.
func (b *budget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
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
