package shards

import "sync"

// budget bounds the bytes of piece buffers that all the downloads of a node
// hold at once. Every attempt at a piece takes its buffer's size from it
// before its first block is requested and gives it back when the buffer is
// let go; the blocks in flight of an attempt never exceed its buffer, so
// the budget bounds what downloads keep in memory whatever their number
// (without it, 20 downloads held about 240 MiB of buffers).
//
// An attempt that does not fit waits (its peer's loop selects on wait) and
// is tried again at the next release. A piece larger than the whole budget
// still goes when nothing else is held, so that no download is stuck.
type budget struct {
	mu      sync.Mutex
	limit   int64
	used    int64
	peak    int64         // the most used at once, for tests and benchmarks
	changed chan struct{} // closed and replaced at each release
}

func newBudget(limit int64) *budget {
	return &budget{limit: limit, changed: make(chan struct{})}
}

// tryAcquire takes n bytes if they fit, without waiting.
func (b *budget) tryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used > 0 && b.used+n > b.limit {
		return false
	}
	b.used += n
	b.peak = max(b.peak, b.used)
	return true
}

// release gives back n bytes and wakes the waiters.
func (b *budget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
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
