package mesh

import "time"

// backoffs remembers, per node, until when it is not to be dialed (a dial
// to it failed) or not to be linked at all (it was banned for its
// offences). The wait doubles each time the node fails again before it
// has stayed clear for as long as its last wait, so that a node that keeps
// failing is tried ever more rarely and one that mended its ways starts
// over.
//
// The set is bounded: ids are free to make, and every id that ever failed
// would otherwise stay in it. An entry is forgotten once its wait has run
// out and the node stayed clear for as long again; when the set is full,
// the entry that ends first makes room. It is not safe for concurrent
// use: the node's mutex guards it.
type backoffs struct {
	limit int
	m     map[ID]backoffEntry
}

type backoffEntry struct {
	until time.Time
	wait  time.Duration
}

func newBackoffs(limit int) *backoffs {
	return &backoffs{limit: limit, m: make(map[ID]backoffEntry)}
}

// blocked reports whether id is backed off at now, and until when.
func (b *backoffs) blocked(id ID, now time.Time) (time.Time, bool) {
	e, ok := b.m[id]
	if !ok || !now.Before(e.until) {
		return time.Time{}, false
	}
	return e.until, true
}

// add backs id off from now: for first, or twice its last wait (at most
// limit) when it failed again before that wait was forgotten. It returns
// the wait.
func (b *backoffs) add(id ID, now time.Time, first, limit time.Duration) time.Duration {
	e, ok := b.m[id]
	if ok && b.stale(e, now) {
		ok = false
	}
	if ok {
		e.wait = min(2*e.wait, limit)
	} else {
		e.wait = min(first, limit)
	}
	e.until = now.Add(e.wait)
	if _, held := b.m[id]; !held && len(b.m) >= b.limit {
		b.sweep(now)
		if len(b.m) >= b.limit {
			b.evictFirstEnding()
		}
	}
	b.m[id] = e
	return e.wait
}

// stale reports whether e has run out and been clear for as long again.
func (b *backoffs) stale(e backoffEntry, now time.Time) bool {
	return now.After(e.until.Add(e.wait))
}

// clear forgets id (it linked up fine).
func (b *backoffs) clear(id ID) { delete(b.m, id) }

// sweep forgets stale entries.
func (b *backoffs) sweep(now time.Time) {
	for id, e := range b.m {
		if b.stale(e, now) {
			delete(b.m, id)
		}
	}
}

func (b *backoffs) evictFirstEnding() {
	var first ID
	var at time.Time
	for id, e := range b.m {
		if first == "" || e.until.Before(at) {
			first, at = id, e.until
		}
	}
	delete(b.m, first)
}

func (b *backoffs) len() int { return len(b.m) }
