package shards

import (
	"cmp"
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
// Bytes go first come, first served within a class of peers (but new
// peers' trials, last come first: lastFirst): a peer loop
// that does not get what it asks for waits in line (its loop selects on
// wait and asks again at the next release), and no one behind it in its
// class is served before it. Otherwise the loop that just gave bytes back,
// running already, would take them again at once, and a download that
// started while others filled the budget would get nothing until they
// ended. A piece larger than the whole budget still goes when nothing else
// is held, so that no download is stuck.
//
// Node ids cost nothing, so a hostile party can bring dozens of holders
// that answer just inside RequestTimeout, never stalled and never done,
// each holding the buffer of a piece it never finishes. Three rules keep
// them from holding the budget (without them, thirty such holders held a
// budget of 8 pieces, and an honest download waited for a trickled piece
// to be done: a minute and more):
//
//   - A peer is proven once it brought a piece within RequestTimeout of
//     asking, or a larger one steadily, no block more than an eighth of
//     RequestTimeout after the one before (pieceDone). A peer not proven
//     holds one piece at a time, node-wide, whatever the downloads that
//     fetch from it: an honest one is proven by its first piece, within
//     milliseconds on a fast link, and a piece's blocks are pipelined,
//     so one piece costs a slow peer little; a trickler holds one piece,
//     not one per download.
//   - A piece is taken back (evicted: its attempt is cancelled, its bytes
//     go to the line, its peer is then slow and not proven) for the
//     first loop in line, when that loop waits for bytes that do not
//     fit, only if the piece is clearly worse than what that loop's peer
//     offers (evictLocked). Any loop may take a piece whose peer brought
//     nothing, to it or to its other pieces, for a quarter of
//     RequestTimeout (stalled): a trickler's blocks come that far apart,
//     an honest peer's come steadily, if slowly on a loaded machine. A
//     piece of a peer not yet proven that brought nothing at all is a
//     trial, taken sooner: after slowFactor times the mean round trip
//     of the node's have asks lately (trialStallLocked), which grows with the
//     machine's load as an honest peer's first block does; so is a
//     piece of a slow peer that brought nothing, after a sixteenth of
//     RequestTimeout, and one of a peer not proven that brings blocks
//     but would take longer than RequestTimeout, after an eighth of it
//     (steadyGap): it can no longer prove its peer (pieceDone); so is a
//     proven peer's that brings blocks so, proven once by an honest
//     piece and trickling since. A slow peer's loop takes only slow
//     peers' stalled pieces, so that no class waits behind pieces that
//     bring nothing. A proven peer's loop may also take a piece that
//     would take longer than RequestTimeout at the rate its bytes came so
//     far (overdue) and longer to finish than slowFactor times what that
//     proven peer took for its last piece: a honest peer slowed by the
//     load is judged against one slowed the same, not against the clock.
//     But not a piece of a proven peer whose blocks come steadily, a slow
//     link known as such: taken back, what it sent of it was lost, and
//     its download waited behind the faster one; unless such pieces hold
//     more than a quarter of the budget together, for any loop not found
//     slow (a block every steadyGap less a little is steady, and node ids
//     cost nothing). A peer taken back by
//     mistake is proven again by its next piece (pieceDone).
//   - The line serves proven peers first, then those not yet proven (a
//     piece each, the last come first), then slow ones; one not yet
//     proven that has waited a quarter of RequestTimeout goes first, so
//     that a new holder gets its first piece even while proven ones want
//     every byte.
//
// One peer (all the loops that fetch from it, of every download) holds at
// most its share while loops of other peers not found slow wait: past it,
// its loops step out of the line instead of taking more, and what it holds
// beyond it is given back once another peer's loop has waited a while
// (shed). The share is a quarter of the budget, or less when more peers
// hold or wait for bytes (an equal part each, shareLocked).
type budget struct {
	mu      sync.Mutex
	limit   int64
	used    int64
	byPeer  map[mesh.ID]int64
	holds   map[*attempt]hold         // the attempts holding bytes (track)
	proven  map[mesh.ID]bool          // brought a piece within timeout (pieceDone)
	took    map[mesh.ID]time.Duration // and how long its last piece took
	slow    map[mesh.ID]bool          // evicted, or far slower than another (markSlow)
	peak    int64                     // the most used at once, for tests and benchmarks
	evicted int64                     // attempts evicted, for tests and benchmarks
	line    []*budgetWaiter           // waiting, first come first within a class
	changed chan struct{}             // closed and replaced at each release
	// timeout is the downloads' RequestTimeout: a piece whose peer
	// brought nothing for a quarter of it (patience), or, for a proven
	// peer's loop, one that would take longer, is evicted when others
	// wait (evictLocked).
	timeout time.Duration
	sweepT  *time.Timer // evicts while a loop waits (sweep); nil if none set
	// lat sums the round trips of the node's have asks lately, latN
	// counts them, in two buckets of half a RequestTimeout each: how
	// slow answers are on this machine now (observe, trialStallLocked).
	lat  [2]time.Duration
	latN [2]int
	// latAt is when bucket 0, the current one, was started.
	latAt time.Time
	// marked is when each peer slow or proven was last so marked (a count
	// of marks, marks): the oldest marks go first when there are too many
	// (trimMarksLocked).
	marked map[mesh.ID]uint64
	marks  uint64
	trims  int64 // trimMarksLocked runs, for tests
}

// hold is what the budget knows of an attempt holding bytes.
type hold struct {
	peer  mesh.ID
	n     int64     // bytes taken
	size  int64     // the piece's length
	start time.Time // when taken
	span  bool      // fetched in one span request: never evicted
}

// maxSlowPeers bounds the slow and proven marks kept, each, beside those
// of peers holding bytes or waiting; past it the oldest marks of the others
// are forgotten, down to keepSlowPeers (overMarksLocked, trimMarksLocked).
const (
	maxSlowPeers  = 4096
	keepSlowPeers = maxSlowPeers * 3 / 4
)

// peerShare: one peer holds at most 1/peerShare of the budget while other
// peers wait (8 MiB of the default 32, a piece of the largest size), less
// when more peers share it (shareLocked).
const peerShare = 4

// Peer classes, in the order the line serves them.
const (
	classProven = iota
	classNew
	classSlow
)

// budgetWaiter is one peer loop's place in the budget's line.
type budgetWaiter struct {
	peer   mesh.ID   // the peer the loop fetches from
	queued bool      // in the line
	since  time.Time // when it got in line
	want   int64     // bytes it waits for
}

func newBudget(limit int64, timeout time.Duration) *budget {
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	return &budget{limit: limit, byPeer: make(map[mesh.ID]int64), holds: make(map[*attempt]hold),
		proven: make(map[mesh.ID]bool), took: make(map[mesh.ID]time.Duration), slow: make(map[mesh.ID]bool),
		marked: make(map[mesh.ID]uint64), changed: make(chan struct{}), timeout: timeout}
}

func (b *budget) patience() time.Duration { return b.timeout / 4 }

// steadyGap is the longest a piece of more than RequestTimeout may have
// waited for a block and still prove its peer (pieceDone): twice what the
// pipeline sizes a block to take, for a loaded machine's jitter.
func (b *budget) steadyGap() time.Duration { return b.timeout / 8 }

// classLocked is the class a waiter of peer's is served in; b.mu is held.
func (b *budget) classLocked(w *budgetWaiter, now time.Time) int {
	switch {
	case b.slow[w.peer]:
		return classSlow
	case b.proven[w.peer]:
		return classProven
	case w.queued && now.Sub(w.since) >= b.patience():
		return classProven // a new holder's turn, even against proven ones
	}
	return classNew
}

// aheadLocked reports whether a waiter in line goes before w: one of a
// better class, or of w's class and in line before it (after it, for new
// peers: lastFirst). b.mu is held.
func (b *budget) aheadLocked(w *budgetWaiter, now time.Time) bool {
	c := b.classLocked(w, now)
	before := true
	for _, x := range b.line {
		if x == w {
			before = false
			continue
		}
		if xc := b.classLocked(x, now); xc < c || xc == c && before != lastFirst(c) {
			return true
		}
	}
	return false
}

// lastFirst reports whether class c is served last come, first: new
// peers are. Each is tried with a piece in turn, which brings nothing for
// a trial's stall (trialStallLocked) if it trickles; first come, first
// served, a holder that came while thirty untried tricklers waited had
// its trial after twenty of them, 1.3 s of an 8 MiB download that takes 2
// s alone (BenchmarkDownloadTricklers, later-fraction 0.6). Last first,
// the holder of a download just started is tried at once; one that waits
// behind later ones is served with the proven peers once it has waited
// patience (classLocked), as before, and a trickler tried once is slow.
func lastFirst(c int) bool { return c == classNew }

// tryAcquire takes n bytes for w if they fit and no one waits before w;
// else w waits in line, and tryAcquire returns false without waiting. A
// peer not proven that holds a piece already, or one that holds its share
// while another peer's loop waits, gets nothing and steps out of the line
// (its loop still asks at each release).
func (b *budget) tryAcquire(w *budgetWaiter, n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	held := b.byPeer[w.peer]
	if held > 0 && !b.proven[w.peer] ||
		held > 0 && held+n > b.shareLocked() && b.othersWaitLocked(w.peer, 0, now) {
		b.leaveLocked(w)
		return false
	}
	fits := b.used == 0 || b.used+n <= b.limit
	if !fits || b.aheadLocked(w, now) {
		if !w.queued {
			w.queued, w.since = true, now
			b.line = append(b.line, w)
		}
		w.want = n
		b.evictLocked(now)
		b.armSweepLocked()
		return false
	}
	if w.queued {
		b.leaveLocked(w) // and wakes the rest: the next may fit too
	}
	b.used += n
	b.byPeer[w.peer] += n
	b.peak = max(b.peak, b.used)
	return true
}

// track records that a holds n bytes taken for it (tryAcquire, tryMore):
// what the budget needs to take them back (evict). dl.mu is held.
func (b *budget) track(a *attempt, size int64, span bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.holds[a] = hold{peer: a.peer, n: a.charged, size: size, start: a.start, span: span}
}

// spanned marks a's bytes as fetched in one span request: a span is
// answered whole or not at all, and its request is shared, so its pieces
// are not evicted one by one.
func (b *budget) spanned(a *attempt) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h, ok := b.holds[a]; ok {
		h.span = true
		b.holds[a] = h
	}
}

// shareLocked is what one peer may hold while other peers' loops wait: an
// equal part for each proven peer not found slow that holds bytes or waits
// for them, at most 1/peerShare of the budget, of what is left once each
// peer not yet proven has its piece (up to half the budget for them all).
// A peer not proven holds one piece at most, so it claims that, not an
// equal part: with thirty tricklers waiting for their trial pieces, an
// equal part was a thirtieth of the budget, and an honest proven holder
// held one piece at a time until all thirty were tried. b.mu is held.
func (b *budget) shareLocked() int64 {
	n := 0
	var trial int64
	for id, held := range b.byPeer {
		switch {
		case b.slow[id]:
		case b.proven[id]:
			n++
		default:
			trial += held
		}
	}
	var counted map[mesh.ID]bool
	for _, w := range b.line {
		if _, holds := b.byPeer[w.peer]; !holds && !b.slow[w.peer] && !counted[w.peer] {
			if counted == nil {
				counted = make(map[mesh.ID]bool)
			}
			counted[w.peer] = true
			if b.proven[w.peer] {
				n++
			} else {
				trial += w.want
			}
		}
	}
	return min(b.limit/peerShare, (b.limit-min(trial, b.limit/2))/int64(max(n, 1)))
}

// tryMore takes n more bytes for w's peer only if they fit now, no one
// waits in line and the peer is proven and stays within its share; it
// never puts w in line. The further pieces of a span are taken so
// (download.span): worth having, not worth waiting for.
func (b *budget) tryMore(w *budgetWaiter, n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.line) > 0 || !b.proven[w.peer] || b.used+n > b.limit || b.byPeer[w.peer]+n > b.shareLocked() {
		return false
	}
	b.used += n
	b.byPeer[w.peer] += n
	b.peak = max(b.peak, b.used)
	return true
}

// othersWaitLocked reports whether a loop of another peer than peer, not
// found slow, has waited in line for patience or more at now; b.mu is
// held. Slow peers' loops wait behind the others and hold a piece at most:
// they take nothing from anyone.
func (b *budget) othersWaitLocked(peer mesh.ID, patience time.Duration, now time.Time) bool {
	for _, w := range b.line {
		if w.peer != peer && !b.slow[w.peer] && (patience <= 0 || now.Sub(w.since) >= patience) {
			return true
		}
	}
	return false
}

// yields reports whether peer was found slow and a loop of another peer
// waits in line: then its loops let the others go first.
func (b *budget) yields(peer mesh.ID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.slow[peer] && b.othersWaitLocked(peer, 0, time.Time{})
}

// markSlow records that a download gave up a piece of peer's as far slower
// than another peer's: its loops go behind the others. The mark is
// node-wide, since a holder's upload (or ill will) is the same for every
// download: one that trickles fills the line with a loop per download
// otherwise, each to be found out in turn. A proven peer stays proven: it
// is slower than another, not failing (evictLocked demotes it).
func (b *budget) markSlow(peer mesh.ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.markSlowLocked(peer)
}

func (b *budget) markSlowLocked(peer mesh.ID) {
	b.slow[peer] = true
	b.touchLocked(peer)
	if b.overMarksLocked(b.slow) {
		b.trimMarksLocked(false)
	}
}

// overMarksLocked reports whether marks m (slow or proven) are to be
// trimmed: past maxSlowPeers beyond those that trimMarksLocked may not
// forget (at most a mark per loop in line and per peer holding bytes).
// Past maxSlowPeers alone, with thousands of marked loops in line, each
// new mark ran a trim that could forget next to nothing: a walk and a sort
// of every mark per mark, 0.5 ms under b.mu with 5,000 in line. Now each
// trim forgets a quarter of maxSlowPeers at least. b.mu is held.
func (b *budget) overMarksLocked(m map[mesh.ID]bool) bool {
	return len(m) > maxSlowPeers+len(b.byPeer)+len(b.line)
}

// touchLocked records that peer was marked (slow or proven) now. b.mu is
// held.
func (b *budget) touchLocked(peer mesh.ID) {
	b.marks++
	b.marked[peer] = b.marks
}

// trimMarksLocked forgets the oldest slow marks, or proven ones, down
// to keepSlowPeers, but never those of a peer holding bytes or waiting in
// line: its mark decides what it gets now. Node ids cost nothing, so a
// party churning ids marks as many peers as it likes; clearing every mark
// at the bound, as before, let it flush those of the tricklers that
// mattered (each then tried again with a trial piece) and of the honest
// peers proven. A quarter of the bound at a time: a sort of the marks each
// thousand marks, not each mark. b.mu is held.
func (b *budget) trimMarksLocked(proven bool) {
	b.trims++
	m := b.slow
	if proven {
		m = b.proven
	}
	active := make(map[mesh.ID]bool, len(b.byPeer)+len(b.line))
	for id := range b.byPeer {
		active[id] = true
	}
	for _, w := range b.line {
		active[w.peer] = true
	}
	var old []mesh.ID
	for id := range m {
		if !active[id] {
			old = append(old, id)
		}
	}
	slices.SortFunc(old, func(x, y mesh.ID) int { return cmp.Compare(b.marked[x], b.marked[y]) })
	for _, id := range old[:min(len(old), max(len(m)-keepSlowPeers, 0))] {
		delete(m, id)
		if proven {
			delete(b.took, id)
		}
		if !b.slow[id] && !b.proven[id] {
			delete(b.marked, id)
		}
	}
}

// pieceDone records that peer brought a piece, took after it was asked
// for, with gap the longest it waited for a block of it (from the start
// to the first, and between blocks): within timeout, or steadily (gap
// within steadyGap), the peer is proven and no longer slow.
//
// Steadily: a piece larger than a slow link brings in RequestTimeout (8
// MiB at 400 KiB/s and less, 20 s) never proved its peer, which then held
// one piece at a time for good, its pieces judged and taken back as
// trials'. The pipeline sizes a block to take a sixteenth of the timeout
// at the peer's rate, so an honest peer's blocks come about that far
// apart (down to minBlock: a peer slower than that a sixteenth of the
// timeout, 4 KiB per 1.25 s, does not prove itself so); a trickler's come
// just inside the timeout,
// and one that answers within steadyGap brings its whole window that
// often: a slow peer, not one that holds bytes for nothing. While its
// blocks keep coming so, its pieces are not taken back for being overdue
// (evictLocked); once they do not, they are, for any loop not found slow.
func (b *budget) pieceDone(peer mesh.ID, took, gap time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if took > b.timeout && gap > b.steadyGap() {
		return
	}
	delete(b.slow, peer)
	b.took[peer] = took
	b.touchLocked(peer)
	if !b.proven[peer] {
		b.proven[peer] = true
		if b.overMarksLocked(b.proven) {
			b.trimMarksLocked(true)
		}
		b.wakeLocked() // its loops that stepped out may take more now
	}
}

// starved reports whether a loop of another peer than peer, not found
// slow, has waited in line for patience or more.
func (b *budget) starved(peer mesh.ID, patience time.Duration) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.line) > 0 && b.othersWaitLocked(peer, patience, time.Now())
}

// shed gives back a's bytes, if its peer holds more than its share and
// more than those, and a loop of another peer has waited for patience or
// more; the caller then drops a. A peer keeps one piece whatever its
// share: a slow one's piece given back would start again from nothing at
// its next turn, and never be done. An attempt evicted since its loop
// looked (evictLocked runs from the sweep and other loops) gave its bytes
// back already: shed gives nothing for it, or the budget would count
// them twice and hand out more than its limit.
func (b *budget) shed(a *attempt, patience time.Duration) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.evicted.Load() {
		return false
	}
	n := a.charged
	if held := b.byPeer[a.peer]; held <= b.shareLocked() || held <= n || !b.othersWaitLocked(a.peer, patience, time.Now()) {
		return false
	}
	delete(b.holds, a)
	b.releaseLocked(a.peer, n)
	return true
}

// overdue reports whether h, held at now with got bytes in, has been held
// long enough to judge (patience if its peer is proven, a sixteenth of
// timeout if not) and would take longer than timeout in all at the rate
// its bytes came so far. A peer not proven holds that one piece only, so
// its first block comes at once from an honest one (the pipeline sizes a
// block to take a sixteenth of timeout at most); a proven peer's pieces
// queue behind each other in its pipeline. b.mu is held.
func (b *budget) overdue(h hold, got int64, now time.Time) bool {
	age := now.Sub(h.start)
	judge := b.patience()
	if !b.proven[h.peer] {
		judge = b.timeout / 16
	}
	if h.span || age < judge {
		return false
	}
	return got <= 0 || float64(age)*float64(h.size)/float64(got) > float64(b.timeout)
}

// isSlow reports whether peer is marked slow.
func (b *budget) isSlow(peer mesh.ID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.slow[peer]
}

// isOverdue reports whether a, if it holds bytes, is overdue at now, and
// its peer not a proven one whose blocks come steadily: a slow link known
// as such, which an endgame gives a piece up for only if another peer of
// the download is far faster (download.slower), not for any.
func (b *budget) isOverdue(a *attempt, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	h, ok := b.holds[a]
	if !ok || !b.overdue(h, a.recv.Load(), now) {
		return false
	}
	if !b.proven[h.peer] {
		return true
	}
	last := h.start.UnixNano()
	for x := range b.holds {
		if x.peer == h.peer {
			last = max(last, x.last.Load())
		}
	}
	return now.Sub(time.Unix(0, last)) >= b.steadyGap()
}

// observe records that a have ask to a peer was answered in rtt at now:
// the mean of these lately is what an answer takes on this machine at its
// load (trialStallLocked). Every answer comes through the same loaded
// node, so a hostile peer cannot make the mean less than the load makes
// it; one that answers slowly only makes trials last longer, up to
// patience. Block answers are left out: a pipeline's blocks queue behind
// each other at the holder, by design up to a sixteenth of the timeout.
func (b *budget) observe(rtt time.Duration, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rotateLocked(now)
	b.lat[0] += max(rtt, 0)
	b.latN[0]++
}

// rotateLocked starts a new bucket every half RequestTimeout, and forgets
// both when none was started for a whole one. b.mu is held.
func (b *budget) rotateLocked(now time.Time) {
	switch age := now.Sub(b.latAt); {
	case age >= b.timeout:
		b.lat, b.latN, b.latAt = [2]time.Duration{}, [2]int{}, now
	case age >= b.timeout/2:
		b.lat = [2]time.Duration{0, b.lat[0]}
		b.latN = [2]int{0, b.latN[0]}
		b.latAt = now
	}
}

// trialStallLocked is how long a piece of a peer neither proven nor
// found slow may bring nothing at all before a loop not found slow takes
// it (evictLocked): slowFactor times the mean round trip of the node's
// have asks in the last half to whole RequestTimeout, within a sixteenth
// (the pipeline sizes a first block to take no more) and a quarter
// (patience) of it. Each new holder is tried with a piece in turn, and a
// trickler's trial held a slot for a quarter of RequestTimeout: with
// thirty of them, an honest holder's first piece waited behind seventeen
// trials, 4.6 s of an 8 MiB download that takes 2 s alone
// (BenchmarkDownloadTricklers). An honest holder slowed by the load
// answers slowly, and so does every other answer then: the stall grows
// with the load, to patience. With no answer lately to judge by,
// patience. b.mu is held.
func (b *budget) trialStallLocked(now time.Time) time.Duration {
	b.rotateLocked(now)
	n := b.latN[0] + b.latN[1]
	if n == 0 {
		return b.patience()
	}
	mean := (b.lat[0] + b.lat[1]) / time.Duration(n)
	return min(max(slowFactor*mean, b.timeout/16), b.patience())
}

// evictLocked takes back holds for the first waiter in line, the least
// advanced first, while it waits for bytes that do not fit, and only holds
// clearly worse than what its peer offers (see budget): stalled ones for
// any (a slow waiter only slow peers' stalled ones), overdue ones too
// while a proven peer's loop is in line, if they would take longer to
// finish than slowFactor times its last piece. Their bytes go back at once, each attempt is cancelled
// (its loop drops it when it next runs, which a loop waiting on its peer's
// answer to something else may not do for RequestTimeout) and its peer
// marked slow and not proven. Until then the attempt's buffer is held
// beyond the budget; it was taken only when its first block came
// (onBlock), so a peer that brought nothing holds none. b.mu is held.
func (b *budget) evictLocked(now time.Time) {
	// The first waiter is the first in line of the best class there, or
	// the last if that class is new peers' (lastFirst), found (in
	// one pass: aheadLocked for each waiter in turn took line² class
	// reads a loop's ask, with thousands of loops in line).
	// Overdue holds are judged for the first proven peer's loop in line
	// (pw), if any, whoever goes first: a new holder waiting a while goes
	// first (classLocked) but has proven nothing, and judged for alone,
	// one loop of a fresh node id kept every overdue piece from the
	// proven loops behind it.
	var w, pw *budgetWaiter
	wc := classSlow + 1
	for _, x := range b.line {
		if c := b.classLocked(x, now); c < wc || c == wc && lastFirst(c) {
			w, wc = x, c
		}
		if pw == nil && b.proven[x.peer] && !b.slow[x.peer] {
			pw = x
		}
	}
	if w == nil || b.used+w.want <= b.limit {
		return
	}
	proven := wc != classSlow && pw != nil
	var ref time.Duration
	if proven {
		ref = slowFactor * b.took[pw.peer]
	}
	// progress is when each peer holding bytes last brought a block to
	// any of them: a proven peer's pieces queue behind each other in its
	// pipeline, and one waiting its turn is not stalled.
	progress := make(map[mesh.ID]int64, len(b.byPeer))
	for a := range b.holds {
		progress[a.peer] = max(progress[a.peer], a.last.Load())
	}
	type cand struct {
		a   *attempt
		got int64
	}
	var cs, slowLinks []cand
	trial := time.Duration(-1) // trialStallLocked, once needed
	for a, h := range b.holds {
		if a.peer == w.peer || h.span || wc == classSlow && !b.slow[h.peer] {
			continue
		}
		got := a.recv.Load()
		last := h.start
		if t := time.Unix(0, progress[h.peer]); t.After(last) {
			last = t
		}
		// A slow peer's piece that brought nothing is taken sooner for
		// a loop not found slow: it was found out already, and a new
		// holder's first piece waited behind it otherwise (a quarter
		// of the cap with thirty tricklers, BenchmarkDownloadTricklers).
		// One that brings blocks is judged as any other: an honest
		// peer taken back once by mistake, its blocks a sixteenth of
		// RequestTimeout apart and more on a loaded machine, was taken
		// back again at each piece and never proven again.
		stall := b.patience()
		switch {
		case wc == classSlow:
		case b.slow[h.peer] && got == 0:
			stall = b.timeout / 16
		case !b.proven[h.peer] && got == 0:
			if trial < 0 {
				trial = b.trialStallLocked(now)
			}
			stall = trial
		case b.overdue(h, got, now):
			// It would take longer than RequestTimeout and a block
			// has been longer than steadyGap coming: it could not
			// prove its peer (pieceDone). A trickler answering just
			// under patience otherwise held its piece against every
			// loop but a proven peer's, for hours with a piece of 8
			// MiB in 4 KiB blocks. So does one proven by an honest
			// piece before it trickled: it held its pieces against
			// every loop not proven (a new holder's, even past
			// patience) until each was done, 6 s a piece of 64 KiB
			// in 8 KiB blocks three sixteenths of RequestTimeout
			// apart (TestBudgetProvenTricklerTakenBack).
			stall = b.steadyGap()
		}
		// A proven peer whose blocks come steadily is a slow link
		// known as such (pieceDone): its pieces are not taken back for
		// being overdue, which threw away what it had sent of each and
		// had it start again from nothing at its next turn, never done
		// while a faster peer's loop waited
		// (TestBudgetSteadyLinkKeepsPieces). Its share bounds what it
		// holds while others wait (shed).
		steady := b.proven[h.peer] && now.Sub(last) < b.steadyGap()
		switch {
		case now.Sub(last) >= stall || proven && h.peer != pw.peer && !steady && b.overdue(h, got, now) && left(h, got, now) > ref:
			cs = append(cs, cand{a, got})
		case steady && wc != classSlow && b.overdue(h, got, now):
			slowLinks = append(slowLinks, cand{a, got})
		}
	}
	// Steady slow links hold a quarter of the budget at most, together,
	// while a loop not found slow waits: a block every steadyGap less a
	// little keeps a piece steady, and node ids cost nothing, so four
	// such holders proven once held a budget of four pieces against every
	// loop until a piece was done, 85 minutes for one of 8 MiB in 4 KiB
	// blocks (TestBudgetSteadyTricklersBounded). The most advanced are
	// kept, one at least, as shed keeps a peer's one piece.
	slices.SortFunc(slowLinks, func(x, y cand) int { return cmp.Compare(y.got, x.got) })
	var kept int64
	for i, c := range slowLinks {
		if n := b.holds[c.a].n; i == 0 || kept+n <= b.limit/peerShare {
			kept += n
			continue
		}
		cs = append(cs, c)
	}
	slices.SortFunc(cs, func(x, y cand) int {
		// the least advanced first; ties by age, the oldest first
		if x.got != y.got {
			return int(min(max(x.got-y.got, -1), 1))
		}
		return b.holds[x.a].start.Compare(b.holds[y.a].start)
	})
	for _, c := range cs {
		if b.used+w.want <= b.limit {
			return
		}
		c.a.evicted.Store(true)
		c.a.cancel()
		b.releaseLocked(c.a.peer, b.holds[c.a].n)
		delete(b.holds, c.a)
		b.evicted++
		b.markSlowLocked(c.a.peer)
		delete(b.proven, c.a.peer)
		delete(b.took, c.a.peer)
	}
}

// left is how long h, held at now with got bytes in, would take to finish
// at the rate its bytes came so far; a day if none came.
func left(h hold, got int64, now time.Time) time.Duration {
	if got <= 0 {
		return 24 * time.Hour
	}
	return time.Duration(float64(now.Sub(h.start)) * float64(h.size-got) / float64(got))
}

// armSweepLocked makes sure sweep runs while loops wait: evictions happen
// when a hold becomes overdue, not only when a loop happens to ask. b.mu
// is held.
func (b *budget) armSweepLocked() {
	if b.sweepT == nil {
		b.sweepT = time.AfterFunc(b.timeout/32, b.sweep)
	}
}

func (b *budget) sweep() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sweepT = nil
	if len(b.line) == 0 || len(b.holds) == 0 {
		return
	}
	b.evictLocked(time.Now())
	b.wakeLocked() // a new holder's class may have changed with time
	b.armSweepLocked()
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
	b.wakeLocked()
}

// release gives back a's bytes, once, and wakes the waiters; those of an
// evicted attempt went back when it was evicted.
func (b *budget) release(a *attempt) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.holds, a)
	if a.charged > 0 && !a.evicted.Load() {
		b.releaseLocked(a.peer, a.charged)
	}
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
