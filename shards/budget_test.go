package shards

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// waiterOf is a budget account of a made-up peer i.
func waiterOf(i int) *budgetWaiter {
	return &budgetWaiter{peer: mesh.ID(fmt.Sprintf("peer%04d", i))}
}

// holdFor takes n bytes for w (which must fit) and records the attempt, of
// a piece of n bytes, as a download does (nextBlock): started at start.
func holdFor(t *testing.T, b *budget, w *budgetWaiter, n int64, start time.Time) *attempt {
	t.Helper()
	if !b.tryAcquire(w, n) {
		t.Fatalf("%s: %d bytes refused", w.peer, n)
	}
	a := &attempt{charged: n, peer: w.peer, start: start}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	t.Cleanup(a.cancel)
	b.track(a, n, false)
	return a
}

// TestBudgetNewPeerOnePiece: a peer not proven holds one piece at a time,
// node-wide (its other loops step out of the line, not in it, so no one
// waits behind them); once it brought a piece within RequestTimeout it
// takes more; one that took longer stays at one.
func TestBudgetNewPeerOnePiece(t *testing.T) {
	const piece = int64(MinPieceSize)
	b := newBudget(16*piece, 8*time.Second)
	first, second := waiterOf(1), &budgetWaiter{peer: waiterOf(1).peer} // two downloads' loops of one peer
	holdFor(t, b, first, piece, time.Now())
	if b.tryAcquire(second, piece) || b.tryAcquire(first, piece) {
		t.Fatal("a peer not proven took a second piece")
	}
	if first.queued || second.queued || len(b.line) != 0 {
		t.Fatal("a peer not proven at its one piece waits in line")
	}
	b.pieceDone(first.peer, 9*time.Second, 9*time.Second) // later than RequestTimeout
	if b.tryAcquire(second, piece) {
		t.Fatal("a piece brought after RequestTimeout proved its peer")
	}
	b.pieceDone(first.peer, time.Second, time.Second)
	if !b.tryAcquire(second, piece) || !b.tryAcquire(first, piece) {
		t.Fatal("a proven peer refused a second piece in an empty line")
	}
	// Spans (tryMore) are for proven peers only.
	if b.tryMore(waiterOf(2), piece) {
		t.Fatal("a peer not proven took a span's piece")
	}
	if !b.tryMore(first, piece) {
		t.Fatal("a proven peer refused a span's piece with room to spare")
	}
}

// TestBudgetEvictsOnlyWorse: a full budget's pieces are taken back for
// the first loop in line only when clearly worse than what its peer
// offers. Four pieces held from t0 (RequestTimeout 16 s): 0 of a new
// peer, nothing in; 1 of a new peer slowed by a loaded machine, a block
// every second, at a rate that takes 32 s in all; 2 of a new peer, half
// in, fast; 3 of a proven peer, nothing in. A new peer's loop takes only
// stalled pieces (nothing in for a quarter of the timeout): a loaded
// honest peer's steady blocks are not taken for a new peer's, which is what
// marked one slow and left it behind thirty tricklers under load. A proven
// peer's loop takes overdue ones too, if slowFactor times its last piece
// is shorter than what they have left; a slow peer's loop takes slow
// peers' stalled pieces, or slow peers wait behind pieces that bring
// nothing. The waiting loop wants two pieces; a taken piece's attempt is
// cancelled and marked, its peer slow and no longer proven, until its
// next piece in time proves it again.
func TestBudgetEvictsOnlyWorse(t *testing.T) {
	const piece, timeout = int64(MinPieceSize), 16 * time.Second
	t0 := time.Now()
	tests := []struct {
		name   string
		waiter string          // new, proven or slow
		took   time.Duration   // the proven waiter's last piece
		slow   []int           // pieces whose peers are slow
		at     time.Duration   // after t0
		want   []bool          // evicted, by piece
		rtts   []time.Duration // round trips of the node's have asks, if any
		rttAgo time.Duration   // observed that long before the waiter looks
	}{
		{"new waiter, nothing stalled yet", "new", 0, nil, 2 * time.Second, []bool{false, false, false, false}, nil, 0},
		{"new waiter, stalled pieces", "new", 0, nil, timeout/4 + time.Second, []bool{true, false, false, true}, nil, 0},
		{"proven waiter, fast", "proven", 100 * time.Millisecond, nil, 2 * time.Second, []bool{true, true, false, false}, nil, 0},
		{"proven waiter, as slow as the loaded one", "proven", 4 * time.Second, nil, 2 * time.Second, []bool{true, false, false, false}, nil, 0},
		{"proven waiter, not judged yet", "proven", 0, nil, timeout/16 - time.Millisecond, []bool{false, false, false, false}, nil, 0},
		{"slow waiter, only slow peers' stalled pieces", "slow", 0, []int{0, 1}, timeout/4 + time.Second, []bool{true, false, false, false}, nil, 0},
		{"slow waiter, nothing stalled yet", "slow", 0, []int{0, 1}, 2 * time.Second, []bool{false, false, false, false}, nil, 0},
		// A new peer's piece that brought nothing at all is a trial:
		// taken after slowFactor times the node's mean have round trip
		// lately, at least a sixteenth of the timeout, so that thirty
		// tricklers' trials do not hold the line a quarter each.
		{"new waiter, asks answered fast lately", "new", 0, nil, timeout/16 + 100*time.Millisecond, []bool{true, false, false, false}, []time.Duration{10 * time.Millisecond}, time.Second},
		{"proven waiter, asks answered fast lately", "proven", 5 * time.Second, nil, timeout/16 + 100*time.Millisecond, []bool{true, false, false, false}, []time.Duration{10 * time.Millisecond}, 0},
		{"new waiter, asks answered slowly (loaded)", "new", 0, nil, 2 * time.Second, []bool{false, false, false, false}, []time.Duration{300 * time.Millisecond}, 0},
		{"new waiter, loaded, past slowFactor round trips", "new", 0, nil, 2*time.Second + 500*time.Millisecond, []bool{true, false, false, false}, []time.Duration{300 * time.Millisecond}, 0},
		{"new waiter, loaded, one fast answer among slow ones", "new", 0, nil, 2 * time.Second, []bool{false, false, false, false}, []time.Duration{10 * time.Millisecond, 590 * time.Millisecond}, 0},
		{"new waiter, fast answers too long ago", "new", 0, nil, 2 * time.Second, []bool{false, false, false, false}, []time.Duration{10 * time.Millisecond}, timeout},
		{"slow waiter, asks answered fast lately", "slow", 0, nil, 2 * time.Second, []bool{false, false, false, false}, []time.Duration{10 * time.Millisecond}, 0},
		// A slow peer's piece is taken after a sixteenth of the timeout
		// only if it brought nothing: one that brings blocks (1, an
		// honest peer taken back once, its blocks a second apart on a
		// loaded machine) is judged as any other, else it is taken
		// back at each piece and never proven again.
		{"new waiter, slow peers' pieces, one bringing blocks", "new", 0, []int{0, 1}, timeout/16 + 100*time.Millisecond, []bool{true, false, false, false}, nil, 0},
		{"proven waiter, slow peers' pieces, one bringing blocks", "proven", 5 * time.Second, []int{0, 1}, timeout/16 + 100*time.Millisecond, []bool{true, false, false, false}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBudget(4*piece, timeout)
			var as []*attempt
			for i := range 4 {
				as = append(as, holdFor(t, b, waiterOf(i), piece, t0))
			}
			now := t0.Add(tt.at)
			for _, rtt := range tt.rtts {
				b.observe(rtt, now.Add(-tt.rttAgo))
			}
			// 1 brought a block a second until a second ago.
			as[1].recv.Store(piece / 32 * int64(tt.at/time.Second))
			as[1].last.Store(now.Add(-time.Second).UnixNano())
			as[2].recv.Store(piece / 2)
			as[2].last.Store(now.UnixNano())
			b.pieceDone(waiterOf(3).peer, 0, 0)
			for _, i := range tt.slow {
				b.markSlow(waiterOf(i).peer)
			}
			w := waiterOf(9)
			switch tt.waiter {
			case "proven":
				b.pieceDone(w.peer, tt.took, tt.took)
			case "slow":
				b.markSlow(w.peer)
			}
			b.mu.Lock()
			w.queued, w.since, w.want = true, now, 2*piece
			b.line = append(b.line, w)
			b.evictLocked(now)
			b.mu.Unlock()
			for i, want := range tt.want {
				a := as[i]
				if got := a.evicted.Load(); got != want || (a.ctx.Err() != nil) != want {
					t.Fatalf("piece %d: evicted %v, cancelled %v; want %v", i, got, a.ctx.Err() != nil, want)
				}
				if want && (!b.isSlow(a.peer) || b.proven[a.peer]) {
					t.Fatalf("peer %d: taken back, but slow %v, proven %v", i, b.isSlow(a.peer), b.proven[a.peer])
				}
				if want {
					b.release(a) // its loop drops it: nothing more given back
				}
			}
			evicted := slices.Index(tt.want, true)
			if evicted < 0 {
				return
			}
			// What was taken back went to the line; a slow peer's
			// next piece in time proves it again.
			b.mu.Lock()
			b.leaveLocked(w)
			b.mu.Unlock()
			n := int64(4)
			for _, e := range tt.want {
				if e {
					n--
				}
			}
			if used, _ := b.stats(); used != n*piece {
				t.Fatalf("%d bytes used after the evictions", used)
			}
			p := waiterOf(evicted)
			b.pieceDone(p.peer, time.Second, time.Second)
			if b.isSlow(p.peer) || !b.proven[p.peer] {
				t.Fatal("a piece in time did not prove a peer taken back by mistake")
			}
		})
	}
	// The slow peers wait behind a new one.
	b := newBudget(piece, timeout)
	a := holdFor(t, b, waiterOf(5), piece, time.Now())
	slow, fresh := waiterOf(0), waiterOf(10)
	b.markSlow(slow.peer)
	if b.tryAcquire(slow, piece) || b.tryAcquire(fresh, piece) {
		t.Fatal("a piece was given with none free")
	}
	b.release(a)
	if b.tryAcquire(slow, piece) {
		t.Fatal("a slow peer went before a new one that waits")
	}
	if !b.tryAcquire(fresh, piece) {
		t.Fatal("a new peer was not served before a slow one")
	}
}

// TestBudgetLineClasses: the line serves proven peers, then new ones, then
// slow ones, first come first within each but new ones, last come first
// (lastFirst: a download started while thirty untried tricklers waited had
// its holder tried after twenty of them); a new peer that waited a quarter
// of RequestTimeout goes with the proven ones, first come first, so that a
// new holder gets its first piece while proven ones or later new ones want
// every byte.
func TestBudgetLineClasses(t *testing.T) {
	const timeout = 8 * time.Second
	b := newBudget(MinPieceSize, timeout)
	proven, fresh, slow := waiterOf(1), waiterOf(2), waiterOf(3)
	b.pieceDone(proven.peer, 0, 0)
	b.markSlow(slow.peer)
	t0 := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, w := range []*budgetWaiter{slow, fresh, proven} { // in line in that order
		w.queued, w.since = true, t0
		b.line = append(b.line, w)
	}
	now := t0.Add(time.Second)
	if b.aheadLocked(proven, now) || !b.aheadLocked(fresh, now) || !b.aheadLocked(slow, now) {
		t.Fatal("proven peer not served first")
	}
	delete(b.proven, proven.peer) // now new, and in line after fresh
	if b.aheadLocked(proven, now) || !b.aheadLocked(fresh, now) {
		t.Fatal("new peers not served the last come first")
	}
	if late := t0.Add(timeout / 4); b.aheadLocked(fresh, late) || !b.aheadLocked(proven, late) {
		t.Fatal("new peers that waited a quarter of RequestTimeout not served in the order they came")
	}
	b.proven[proven.peer] = true
	if late := t0.Add(timeout / 4); b.aheadLocked(fresh, late) || !b.aheadLocked(proven, late) {
		t.Fatal("a new peer that waited a quarter of RequestTimeout was not served first")
	}
	if !b.aheadLocked(slow, t0.Add(time.Hour)) {
		t.Fatal("a slow peer went before others however long it waited")
	}
}

// TestBudgetSweepEvicts: with nothing else happening (no release, no loop
// asking), the budget's own sweep takes back an overdue piece for a loop
// that waits, and wakes it.
func TestBudgetSweepEvicts(t *testing.T) {
	const piece = int64(MinPieceSize)
	b := newBudget(piece, 800*time.Millisecond)
	a := holdFor(t, b, waiterOf(1), piece, time.Now())
	w := waiterOf(2)
	wake := b.wait()
	if b.tryAcquire(w, piece) {
		t.Fatal("a full budget gave bytes")
	}
	testutil.WaitFor(t, 30*time.Second, "the sweep to evict the overdue piece", func() bool { return a.evicted.Load() })
	select {
	case <-wake:
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting loop was not woken")
	}
	b.release(a)
	if !b.tryAcquire(w, piece) {
		t.Fatal("the waiting loop did not get the piece given back")
	}
	b.release(&attempt{peer: w.peer, charged: piece})
	testutil.WaitFor(t, 30*time.Second, "the sweep to stop with no one in line", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.sweepT == nil
	})
}

// TestTakeCrowded: in endgame a download's last piece with maxAttempts
// attempts of trickling peers goes to a peer that holds it and is not
// fetching it: one trickler's attempt is dropped (its bytes back in the
// budget), it gives the piece up and is marked slow, and a slow peer takes
// no endgame piece (pickFor.noEndgame). Before, thirty tricklers took the
// last piece in turn, each for as long as its own loop slept, and an
// honest holder waited 40 s and more for it.
func TestTakeCrowded(t *testing.T) {
	const n, piece = 4, int64(MinPieceSize)
	timeout := 8 * time.Second
	d := &downloads{budget: newBudget(16*piece, timeout), cfg: DownloadsConfig{RequestTimeout: timeout}}
	m := &Manifest{Size: n * piece, PieceSize: piece, Pieces: make([]MD5, n)}
	dl := &download{d: d, man: m, tries: make([]int, n), avail: make([]int32, n), have: NewBitfield(n), peers: make(map[mesh.ID]*peer), changed: make(chan struct{})}
	all := NewBitfield(n)
	for i := range n {
		all.Set(i)
		if i != 2 {
			dl.have.Set(i)
		}
	}
	newPeer := func(i int) *peer {
		p := &peer{id: waiterOf(i).peer, has: all, attempts: make(map[int]*attempt), wait: budgetWaiter{peer: waiterOf(i).peer}, gaveUp: make(map[int]bool)}
		dl.peers[p.id] = p
		return p
	}
	honest := newPeer(0)
	start := time.Now().Add(-time.Second) // the tricklers' attempts, a second old, nothing in
	var tricklers []*peer
	for i := 1; i <= maxAttempts; i++ {
		q := newPeer(i)
		a := holdFor(t, d.budget, &q.wait, piece, start)
		a.piece = 2
		q.attempts[2] = a
		dl.tries[2]++
		tricklers = append(tricklers, q)
	}
	pf := pickFor{has: honest.has, busy: func(i int) bool { return honest.attempts[i] != nil || honest.gaveUp[i] }}
	if _, _, ok := pick(dl, pf); ok {
		t.Fatal("a piece with maxAttempts attempts was picked")
	}
	if !dl.takeCrowded(honest) {
		t.Fatal("no trickler's attempt was taken")
	}
	i, endgame, ok := pick(dl, pf)
	if !ok || i != 2 || !endgame {
		t.Fatalf("after takeCrowded: picked %d (ok %v, endgame %v), want piece 2 in endgame", i, ok, endgame)
	}
	var dropped *peer
	for _, q := range tricklers {
		if q.attempts[2] == nil {
			dropped = q
		}
	}
	if dropped == nil || !dropped.gaveUp[2] || !d.budget.isSlow(dropped.id) {
		t.Fatal("the dropped trickler did not give the piece up or was not marked slow")
	}
	if used, _ := d.budget.stats(); used != int64(maxAttempts-1)*piece {
		t.Fatalf("budget holds %d bytes after the drop, want %d", used, int64(maxAttempts-1)*piece)
	}
	// A slow peer takes no endgame piece another fetches.
	other := newPeer(9)
	d.budget.markSlow(other.id)
	if _, _, ok := pick(dl, pickFor{has: other.has, noEndgame: true}); ok {
		t.Fatal("a slow peer took an endgame piece")
	}
	if _, _, ok := pick(dl, pickFor{has: other.has}); !ok {
		t.Fatal("the piece was not open to endgame at all")
	}
}

// TestBudgetShedAfterEvict: a loop's yield reads an attempt's evicted mark
// and then asks shed for it without the budget's lock in between, so the
// sweep (or another download's loop) can evict the attempt in that gap.
// shed must then give nothing back: the eviction did already, and a second
// release let the budget hand out a piece more than its limit (and counted
// the peer's bytes short).
func TestBudgetShedAfterEvict(t *testing.T) {
	const piece, timeout = int64(MinPieceSize), 8 * time.Second
	b := newBudget(16*piece, timeout)
	p := waiterOf(1)
	b.pieceDone(p.peer, 0, 0)             // proven: it may hold past its share while no one waits
	start := time.Now().Add(-timeout / 2) // overdue: half the timeout, nothing in
	var as []*attempt
	for range 10 {
		as = append(as, holdFor(t, b, p, piece, start))
	}
	w := waiterOf(2)
	if b.tryAcquire(w, 8*piece) { // evicts two of p's pieces, as many as w needs
		t.Fatal("a full budget gave bytes")
	}
	var evicted []*attempt
	for _, a := range as {
		if a.evicted.Load() {
			evicted = append(evicted, a)
		}
	}
	if len(evicted) != 2 {
		t.Fatalf("%d pieces evicted, want 2", len(evicted))
	}
	// p holds 8 pieces, past its share (4) while w waits: shed gives
	// back any of them, but not one evicted already.
	for _, a := range evicted {
		b.shed(a, 0)
	}
	used, _ := b.stats()
	b.mu.Lock()
	held := b.byPeer[p.peer]
	b.mu.Unlock()
	if used != 8*piece || held != 8*piece {
		t.Fatalf("after shed of evicted attempts: %d bytes used, %d held by the peer; want %d each", used, held, 8*piece)
	}
	for _, a := range as {
		b.release(a)
	}
	if used, _ := b.stats(); used != 0 {
		t.Fatalf("%d bytes used after every attempt was released", used)
	}
}

// BenchmarkBudgetLongLine: a node with 40 peers in 50 downloads has up to
// 2,000 loops in the budget's line, each asking again at every release.
// One ask of a loop that does not fit, with a full budget, the first half
// of the line slow peers' loops (tricklers found out), then new peers',
// and the only proven one at its end: tryAcquire finds who goes first
// (aheadLocked) and what to evict for it (evictLocked).
func BenchmarkBudgetLongLine(b *testing.B) {
	const piece, n = int64(MinPieceSize), 2000
	bud := newBudget(8*piece, 20*time.Second)
	var held []*attempt
	for i := range 8 {
		w := waiterOf(100000 + i)
		if !bud.tryAcquire(w, piece) {
			b.Fatal("an empty budget refused a piece")
		}
		a := &attempt{charged: piece, peer: w.peer, start: time.Now()}
		a.ctx, a.cancel = context.WithCancel(context.Background())
		defer a.cancel()
		bud.track(a, piece, false)
		held = append(held, a)
	}
	var line []*budgetWaiter
	for i := range n {
		w := waiterOf(i)
		switch {
		case i < n/2: // tricklers' loops, found slow
			bud.markSlow(w.peer)
		case i == n-1:
			bud.pieceDone(w.peer, 0, 0)
		}
		bud.tryAcquire(w, piece)
		line = append(line, w)
	}
	if len(bud.line) != n {
		b.Fatalf("%d in line, want %d", len(bud.line), n)
	}
	last := line[n-1]
	b.ResetTimer()
	for range b.N {
		if bud.tryAcquire(last, piece) {
			b.Fatal("a full budget gave bytes")
		}
	}
	b.StopTimer()
	// With no one in line and nothing held, the sweep stops by itself.
	for _, w := range line {
		bud.leave(w)
	}
	for _, a := range held {
		bud.release(a)
	}
}

// TestBudgetShareLeavesTrialsAPiece: a peer not proven holds one piece at
// most, so the peers waiting for their trial pieces claim a piece each of
// a proven peer's share (up to half the budget in all), not an equal part:
// with thirty tricklers waiting, an equal part was a thirtieth of the
// budget, and an honest proven holder held one piece at a time until all
// thirty had been tried. Other proven peers waiting still split what is
// left with it.
func TestBudgetShareLeavesTrialsAPiece(t *testing.T) {
	const piece, timeout = int64(MinPieceSize), 8 * time.Second
	for _, others := range []int{0, 3} {
		t.Run(fmt.Sprintf("%d other proven peers waiting", others), func(t *testing.T) {
			b := newBudget(8*piece, timeout)
			honest := waiterOf(0)
			b.pieceDone(honest.peer, 10*time.Millisecond, 10*time.Millisecond)
			holdFor(t, b, honest, piece, time.Now())
			for i := range 5 { // trial pieces of five new peers
				holdFor(t, b, waiterOf(100+i), piece, time.Now())
			}
			for i := range 30 { // thirty new peers wait for theirs
				if b.tryAcquire(waiterOf(200+i), 3*piece) {
					t.Fatal("a new peer took three pieces with two free")
				}
			}
			for i := range others {
				w := waiterOf(300 + i)
				b.pieceDone(w.peer, 10*time.Millisecond, 10*time.Millisecond)
				if b.tryAcquire(w, 3*piece) {
					t.Fatal("a proven peer took three pieces with two free")
				}
			}
			b.mu.Lock()
			share := b.shareLocked()
			b.mu.Unlock()
			// Half the budget for the trials; the rest split between
			// the proven peers, a quarter of the budget at most.
			if want := min(2*piece, 4*piece/int64(1+others)); share != want {
				t.Fatalf("share %d KiB, want %d KiB", share>>10, want>>10)
			}
			if got := b.tryAcquire(honest, piece); got != (others == 0) {
				t.Fatalf("the honest proven peer's second piece given %v, want %v", got, others == 0)
			}
		})
	}
}

// TestBudgetSteadyProves: a piece that takes longer than RequestTimeout
// proves its peer if its blocks came steadily, none more than an eighth of
// the timeout after the one before (pieceDone): before, a slow link (8 MiB
// pieces under ~400 KiB/s) was never proven and held one piece at a time
// for good, its pieces judged as trials. A trickler's blocks, just inside
// the timeout, never prove it however many pieces it brings.
func TestBudgetSteadyProves(t *testing.T) {
	const timeout = 8 * time.Second
	b := newBudget(16*MinPieceSize, timeout)
	steady, trickling, late := waiterOf(1).peer, waiterOf(2).peer, waiterOf(3).peer
	b.markSlow(steady)
	b.pieceDone(steady, 3*timeout, timeout/16)
	b.pieceDone(trickling, 3*timeout, timeout*3/4)
	b.pieceDone(late, 3*timeout, timeout/8+time.Millisecond)
	if !b.proven[steady] || b.isSlow(steady) {
		t.Fatalf("a piece of 3 timeouts, a block every sixteenth: proven %v, slow %v; want proven", b.proven[steady], b.isSlow(steady))
	}
	if b.proven[trickling] || b.proven[late] {
		t.Fatalf("blocks further apart than an eighth of the timeout proved their peer (trickler %v, just past %v)", b.proven[trickling], b.proven[late])
	}

	// The same through a download, in a bubble (virtual time, which the
	// machine's load does not move): a holder capped at 10 KiB/s brings
	// a 64 KiB piece in 6.4 s, over a RequestTimeout of 4 s, in 4 KiB
	// blocks 0.4 s apart; a trickler one 8 KiB block each 3 s. The
	// budget has room for all: nothing is evicted or waits.
	raceOneProc(t)
	synctest.Test(t, func(t *testing.T) {
		const timeout = 4 * time.Second
		manual := func(c *mesh.Config) { c.ManualLinks = true }
		nw := meshtest.NewNetwork()
		slow := nw.NewNode(t, "slow", meshtest.Options{Configure: manual})
		trick := nw.NewNode(t, "trickler", meshtest.Options{Configure: manual})
		dlNode := nw.NewNode(t, "dl", meshtest.Options{Configure: manual})
		_, slowFile := testFile(t, 256<<10, 81)
		_, trickFile := testFile(t, 128<<10, 82)
		(&testServer{sources: []pieceSource{slowFile}, limit: rate.NewLimiter(10<<10, 4<<10)}).register(slow)
		(&trickler{srv: &testServer{sources: []pieceSource{trickFile}}, every: timeout * 3 / 4}).register(t, trick)
		holders := map[MD5][]mesh.ID{slowFile.id: {slow.ID()}, trickFile.id: {trick.ID()}}
		dir := t.TempDir()
		db := openTestDB(t, filepath.Join(dir, "db"))
		t.Cleanup(func() { db.Close() })
		rd := startDownloads(t, dlNode, dir, db, func(id MD5) []mesh.ID { return holders[id] },
			func(c *DownloadsConfig, d *downloads) {
				c.MaxBuffered, c.RequestTimeout = 16*MinPieceSize, timeout
				d.budget = newBudget(c.MaxBuffered, timeout)
				d.noLanes = true // md5-simd's pooled channels must not come from the bubble
			})
		for _, l := range []Link{slowFile.link(slow.ID(), "slow.bin"), trickFile.link(trick.ID(), "trickled.bin")} {
			if _, err := rd.fetch(t.Context(), l); err != nil {
				t.Fatal(err)
			}
		}
		for _, src := range []*readerSource{slowFile, trickFile} {
			tr := waitState(t, rd.downloads, src.id, StateDone, 10*time.Minute)
			if got := fileMD5(t, tr.Path); got != src.id {
				t.Fatalf("%s: finished file md5 %s", src.id, got)
			}
		}
		b := rd.budget
		b.mu.Lock()
		defer b.mu.Unlock()
		if !b.proven[slow.ID()] {
			t.Errorf("a holder bringing 64 KiB pieces steadily in 6.4 s (RequestTimeout %v) was not proven", timeout)
		}
		if b.proven[trick.ID()] {
			t.Errorf("a trickler was proven")
		}
		if b.evicted != 0 {
			t.Errorf("%d pieces evicted with room for all", b.evicted)
		}
	})
}

// TestBudgetQuarterTricklers: a holder not proven that answers each block
// just under a quarter of RequestTimeout is never stalled (patience), and a
// waiter not proven (a new holder's loop, even one that waited patience
// and goes first) took only stalled pieces: such tricklers held the
// budget until a trickled piece was done (hours for a piece of 8 MiB in
// 4 KiB blocks). A piece that can no longer prove its peer (it would take
// longer than RequestTimeout, and it has waited for a block longer than
// steadyGap) is taken for any loop not found slow; one that brings its
// blocks steadily (an honest slow link, proven by it: pieceDone) is not.
// The same for a proven holder: proven once by an honest piece, a
// trickler's later pieces are taken back for any loop (a new one's too),
// but a proven slow link's steady pieces not even for a proven loop's
// while such pieces hold a quarter of the budget at most (a new holder's
// steady piece is, as in TestBudgetEvictsOnlyWorse).
func TestBudgetQuarterTricklers(t *testing.T) {
	const piece, timeout = int64(MinPieceSize), 8 * time.Second
	t0 := time.Now()
	now := t0.Add(2 * timeout)
	tests := []struct {
		name    string
		slow    bool          // the holder was found slow before
		proven  bool          // the holder was proven before
		gap     time.Duration // since its last block
		waiter  string
		waited  time.Duration
		evicted bool
	}{
		{"new holder, quarter gap, new waiter", false, false, timeout/4 - 100*time.Millisecond, "new", 0, true},
		{"slow holder, quarter gap, new waiter", true, false, timeout/4 - 100*time.Millisecond, "new", 0, true},
		{"slow holder, quarter gap, new waiter past patience", true, false, timeout/4 - 100*time.Millisecond, "new", timeout / 4, true},
		{"new holder, steady, new waiter", false, false, timeout / 16, "new", timeout / 4, false},
		{"slow holder, steady, new waiter", true, false, timeout / 16, "new", timeout / 4, false},
		{"slow holder, quarter gap, slow waiter", true, false, timeout/4 - 100*time.Millisecond, "slow", 0, false},
		{"proven holder, quarter gap, new waiter", false, true, timeout/4 - 100*time.Millisecond, "new", 0, true},
		{"proven holder, quarter gap, new waiter past patience", false, true, timeout/4 - 100*time.Millisecond, "new", timeout / 4, true},
		// Four proven steady holders of overdue pieces fill the budget:
		// beyond a quarter of it they are taken back (evictLocked), one of
		// them alone is not.
		{"proven holders, steady, new waiter", false, true, timeout / 16, "new", timeout / 4, true},
		{"proven holders, steady, proven waiter", false, true, timeout / 16, "proven", 0, true},
		{"proven holder alone, steady, new waiter", false, true, timeout / 16, "new alone", timeout / 4, false},
		{"proven holder alone, steady, proven waiter", false, true, timeout / 16, "proven alone", 0, false},
		{"new holder, steady, proven waiter", false, false, timeout / 16, "proven", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBudget(4*piece, timeout)
			var as []*attempt
			alone := strings.HasSuffix(tt.waiter, " alone")
			for i := range 4 {
				start := t0
				if alone && i > 0 {
					start = now.Add(-timeout / 8) // too soon to judge (overdue)
				}
				a := holdFor(t, b, waiterOf(i), piece, start)
				// 4 KiB blocks: 8 of 16 in two timeouts.
				a.recv.Store(piece / 2)
				a.last.Store(now.Add(-tt.gap).UnixNano())
				if tt.slow {
					b.markSlow(a.peer)
				}
				if tt.proven {
					b.pieceDone(a.peer, 100*time.Millisecond, 100*time.Millisecond)
				}
				as = append(as, a)
			}
			w := waiterOf(9)
			switch strings.TrimSuffix(tt.waiter, " alone") {
			case "slow":
				b.markSlow(w.peer)
			case "proven":
				b.pieceDone(w.peer, 10*time.Millisecond, 10*time.Millisecond)
			}
			b.mu.Lock()
			w.queued, w.since, w.want = true, now.Add(-tt.waited), piece
			b.line = append(b.line, w)
			b.evictLocked(now)
			b.mu.Unlock()
			n := 0
			for _, a := range as {
				if a.evicted.Load() {
					n++
				}
			}
			if want := map[bool]int{true: 1}[tt.evicted]; n != want {
				t.Fatalf("%d pieces taken back, want %d", n, want)
			}
		})
	}
}

// TestBudgetPatientNewWaiterKeepsOverdue: a new holder's loop that waited
// patience goes first in line (classLocked), but proved nothing, so it
// takes only stalled pieces; it made evictLocked judge for it alone, and
// the proven peers' loops behind it no longer took overdue pieces: one
// waiting loop of a fresh node id, hostile or not, kept the pieces of
// holders bringing a block every eighth of RequestTimeout (8 MiB in 4 KiB
// blocks: 85 minutes) from every loop. Overdue pieces are judged against
// the first proven loop in line, whoever goes first.
func TestBudgetPatientNewWaiterKeepsOverdue(t *testing.T) {
	const piece, timeout = int64(MinPieceSize), 8 * time.Second
	t0 := time.Now()
	now := t0.Add(2 * timeout)
	for _, newFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("patient new waiter first %v", newFirst), func(t *testing.T) {
			b := newBudget(4*piece, timeout)
			var as []*attempt
			for i := range 4 {
				a := holdFor(t, b, waiterOf(i), piece, t0)
				a.recv.Store(piece / 2) // half in two timeouts, a block an eighth of it apart
				a.last.Store(now.Add(-timeout / 16).UnixNano())
				as = append(as, a)
			}
			fresh, proven := waiterOf(8), waiterOf(9)
			b.pieceDone(proven.peer, 100*time.Millisecond, 100*time.Millisecond)
			b.mu.Lock()
			if newFirst {
				fresh.queued, fresh.since, fresh.want = true, now.Add(-timeout/4), piece
				b.line = append(b.line, fresh)
			}
			proven.queued, proven.since, proven.want = true, now.Add(-time.Second), piece
			b.line = append(b.line, proven)
			b.evictLocked(now)
			b.mu.Unlock()
			n := 0
			for _, a := range as {
				if a.evicted.Load() {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d overdue pieces taken back with a proven loop waiting, want 1", n)
			}
		})
	}
}

// waitBubble polls cond every 50 ms of a bubble's virtual time, for at most
// limit of it.
func waitBubble(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, limit)
		}
	}
}

// TestBudgetProvenTricklerTakenBack: four holders each prove themselves
// with an honest piece (a file of one piece, answered at once), then
// trickle another file, 8 KiB and then 4 KiB blocks three sixteenths of
// RequestTimeout apart: never stalled (patience), so their pieces, 12 s of
// virtual time each, filled a budget of 4 pieces, and a new honest
// holder's download waited until one was done: only a proven peer's loop
// took their overdue pieces (evictLocked). Now a piece that would take
// longer than RequestTimeout and has waited longer than steadyGap for a
// block is taken back for any loop not found slow, proven peer or not:
// the honest 2 MiB download ends before any trickled piece is done. In a
// bubble: virtual time, which the machine's load does not move.
func TestBudgetProvenTricklerTakenBack(t *testing.T) {
	raceOneProc(t)
	synctest.Test(t, func(t *testing.T) {
		const timeout = 4 * time.Second
		took, evicted := provenTricklers(t, timeout, timeout*3/16, false)
		t.Logf("the honest download took %v of virtual time; %d pieces taken back", took, evicted)
	})
}

// provenTricklers: n holders each prove themselves with an honest piece,
// then trickle a 1 MiB file a block each every, filling a budget of n
// pieces; then an honest holder's 2 MiB download (that holder proven
// first by a piece of another file if honestProven) must be done before
// any trickled piece. It returns the virtual time the honest download
// took and the pieces taken back. Run in a synctest bubble.
func provenTricklers(t *testing.T, timeout, every time.Duration, honestProven bool) (time.Duration, int64) {
	return tricklersThenHonest(t, timeout, every, true, honestProven)
}

// tricklersThenHonest is provenTricklers, the tricklers proven first or
// not (proveFirst).
func tricklersThenHonest(t *testing.T, timeout, every time.Duration, proveFirst, honestProven bool) (time.Duration, int64) {
	const n = 4
	manual := func(c *mesh.Config) { c.ManualLinks = true }
	nw := meshtest.NewNetwork()
	holders := make(map[MD5][]mesh.ID)
	var turncoats []*mesh.Node
	var proofs, trickled []*readerSource
	for i := range n {
		node := nw.NewNode(t, fmt.Sprintf("turncoat%d", i), meshtest.Options{Configure: manual})
		_, proof := testFile(t, MinPieceSize, byte(90+i))
		_, slow := testFile(t, 1<<20, byte(100+i))
		(&trickler{srv: &testServer{sources: []pieceSource{proof, slow}}, every: every,
			prompt: map[MD5]bool{proof.id: true}}).register(t, node)
		holders[proof.id], holders[slow.id] = []mesh.ID{node.ID()}, []mesh.ID{node.ID()}
		turncoats, proofs, trickled = append(turncoats, node), append(proofs, proof), append(trickled, slow)
	}
	honest := nw.NewNode(t, "honest", meshtest.Options{Configure: manual})
	_, later := testFile(t, 2<<20, 110)
	_, first := testFile(t, MinPieceSize, 111)
	(&testServer{sources: []pieceSource{later, first}, limit: rate.NewLimiter(4<<20, 64<<10)}).register(honest)
	holders[later.id], holders[first.id] = []mesh.ID{honest.ID()}, []mesh.ID{honest.ID()}
	dlNode := nw.NewNode(t, "dl", meshtest.Options{Configure: manual})
	dir := t.TempDir()
	db := openTestDB(t, filepath.Join(dir, "db"))
	t.Cleanup(func() { db.Close() })
	const limit = n * MinPieceSize
	rd := startDownloads(t, dlNode, dir, db, func(id MD5) []mesh.ID { return holders[id] },
		func(c *DownloadsConfig, d *downloads) {
			c.MaxBuffered, c.RequestTimeout = limit, timeout
			d.budget = newBudget(c.MaxBuffered, timeout)
			d.noLanes = true // md5-simd's pooled channels must not come from the bubble
		})
	b := rd.budget
	tricklers := turncoats
	if !proveFirst {
		proofs, turncoats = nil, nil
	}
	if honestProven {
		proofs, turncoats = append(proofs, first), append(turncoats, honest)
	}
	for i, src := range proofs {
		if _, err := rd.fetch(t.Context(), src.link(turncoats[i].ID(), fmt.Sprintf("proof%d.bin", i))); err != nil {
			t.Fatal(err)
		}
		waitState(t, rd.downloads, src.id, StateDone, time.Minute)
	}
	for i, src := range trickled {
		if _, err := rd.fetch(t.Context(), src.link(tricklers[i].ID(), fmt.Sprintf("trickled%d.bin", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitBubble(t, time.Minute, "the tricklers to fill the budget", func() bool {
		used, _ := b.stats()
		return used == limit
	})
	b.mu.Lock()
	for _, tc := range turncoats {
		if !b.proven[tc.ID()] {
			t.Errorf("%s not proven by its honest piece", tc.ID())
		}
	}
	b.mu.Unlock()
	start := time.Now()
	if _, err := rd.fetch(t.Context(), later.link(honest.ID(), "later.bin")); err != nil {
		t.Fatal(err)
	}
	piece := func() bool { // a trickled piece done
		return slices.ContainsFunc(trickled, func(src *readerSource) bool { return rd.get(src.id).transfer().Have > 0 })
	}
	done := func() bool { return rd.get(later.id).transfer().State == StateDone }
	waitBubble(t, 10*time.Minute, "the honest download or a trickled piece", func() bool { return done() || piece() })
	if !done() {
		tr := rd.get(later.id).transfer()
		t.Fatalf("a proven trickler brought a piece %v after the honest download started, which has %d of %d bytes",
			time.Since(start), tr.Have, tr.Size)
	}
	took := time.Since(start)
	if got := fileMD5(t, rd.get(later.id).transfer().Path); got != later.id {
		t.Fatalf("later.bin: md5 %s", got)
	}
	for _, src := range trickled {
		if err := rd.remove(t.Context(), src.id); err != nil {
			t.Fatal(err)
		}
	}
	return took, b.evicted
}

// TestBudgetSteadyTricklersBounded: holders proven once by an honest
// piece, then bringing a block every eighth of RequestTimeout less a
// little (steadyGap), are steady slow links to the budget: their overdue
// pieces were kept from every loop (evictLocked), and node ids cost
// nothing, so four such holders kept a budget of 4 pieces from an honest
// download, new or proven, until a trickled piece was done (7.8 s of
// virtual time for a piece of 64 KiB in 4 KiB blocks; 85 minutes for one
// of 8 MiB). Steady overdue pieces now hold at most a quarter of the budget
// together while others wait; beyond it they are taken back.
func TestBudgetSteadyTricklersBounded(t *testing.T) {
	for _, tt := range []struct{ proveFirst, honestProven bool }{{true, false}, {true, true}, {false, false}} {
		t.Run(fmt.Sprintf("tricklers proven %v, honest proven %v", tt.proveFirst, tt.honestProven), func(t *testing.T) {
			raceOneProc(t)
			synctest.Test(t, func(t *testing.T) {
				const timeout = 4 * time.Second
				took, evicted := tricklersThenHonest(t, timeout, timeout/8-10*time.Millisecond, tt.proveFirst, tt.honestProven)
				t.Logf("the honest download took %v of virtual time; %d pieces taken back", took, evicted)
			})
		})
	}
}

// TestBudgetSteadyLinkKeepsPieces: a holder capped at 10 KiB/s brings its
// 64 KiB pieces steadily, a 4 KiB block every 0.4 s, in 6.4 s, over
// RequestTimeout (4 s): a slow link, proven so (pieceDone). A faster
// holder's download then wants more than the budget's 4 pieces. The slow
// link's pieces were judged overdue against the fast holder's and taken
// back, what it had sent of it thrown away, and the slow link, then
// marked slow and not proven, waited behind the fast holder's loop
// until its download was done: before the fix it uploaded 528 KiB for
// its 512 KiB, and its last 384 KiB took 45.8 s of virtual time against
// 38.4 s at its cap. Now a proven peer's steady pieces are kept, its
// share bounding what it holds: each byte is sent once, the fast
// download takes as long (8 s either way).
func TestBudgetSteadyLinkKeepsPieces(t *testing.T) {
	raceOneProc(t)
	synctest.Test(t, func(t *testing.T) {
		const timeout = 4 * time.Second
		manual := func(c *mesh.Config) { c.ManualLinks = true }
		nw := meshtest.NewNetwork()
		slow := nw.NewNode(t, "slow", meshtest.Options{Configure: manual})
		fast := nw.NewNode(t, "fast", meshtest.Options{Configure: manual})
		dlNode := nw.NewNode(t, "dl", meshtest.Options{Configure: manual})
		_, slowFile := testFile(t, 512<<10, 120)
		_, fastFile := testFile(t, 8<<20, 121)
		slowSrv := &testServer{sources: []pieceSource{slowFile}, limit: rate.NewLimiter(10<<10, 4<<10)}
		slowSrv.register(slow)
		(&testServer{sources: []pieceSource{fastFile}, limit: rate.NewLimiter(1<<20, 64<<10)}).register(fast)
		holders := map[MD5][]mesh.ID{slowFile.id: {slow.ID()}, fastFile.id: {fast.ID()}}
		dir := t.TempDir()
		db := openTestDB(t, filepath.Join(dir, "db"))
		t.Cleanup(func() { db.Close() })
		rd := startDownloads(t, dlNode, dir, db, func(id MD5) []mesh.ID { return holders[id] },
			func(c *DownloadsConfig, d *downloads) {
				c.MaxBuffered, c.RequestTimeout = 4*MinPieceSize, timeout
				d.budget = newBudget(c.MaxBuffered, timeout)
				d.noLanes = true // md5-simd's pooled channels must not come from the bubble
			})
		b := rd.budget
		if _, err := rd.fetch(t.Context(), slowFile.link(slow.ID(), "slow.bin")); err != nil {
			t.Fatal(err)
		}
		waitBubble(t, time.Minute, "the slow link to be proven", func() bool {
			b.mu.Lock()
			defer b.mu.Unlock()
			return b.proven[slow.ID()]
		})
		start, had := time.Now(), rd.get(slowFile.id).transfer().Have
		if _, err := rd.fetch(t.Context(), fastFile.link(fast.ID(), "fast.bin")); err != nil {
			t.Fatal(err)
		}
		srcs, took := []*readerSource{slowFile, fastFile}, make([]time.Duration, 2)
		waitBubble(t, 10*time.Minute, "both downloads done", func() bool {
			for i, src := range srcs {
				if took[i] == 0 && rd.get(src.id).transfer().State == StateDone {
					took[i] = time.Since(start).Round(100 * time.Millisecond)
				}
			}
			return took[0] > 0 && took[1] > 0
		})
		for _, src := range srcs {
			if tr := rd.get(src.id).transfer(); fileMD5(t, tr.Path) != src.id {
				t.Fatalf("%s: finished file md5 differs", tr.Name)
			}
		}
		served, size := slowSrv.served.Load(), slowFile.man.Size
		t.Logf("the slow link served %d KiB for a file of %d KiB; %d pieces taken back; after the fast fetch its download took %v for %d KiB, the fast one %v",
			served>>10, size>>10, b.evicted, took[0], (size-had)>>10, took[1])
		if served != size {
			t.Fatalf("the slow link served %d KiB for a file of %d KiB: %d KiB wasted", served>>10, size>>10, (served-size)>>10)
		}
	})
}

// TestBudgetMarksKeepActiveAndRecent: node ids cost nothing, so a party
// churning them can mark thousands of peers slow (and prove some). Past
// maxSlowPeers every mark was cleared, those of the trickler holding a
// piece and of the one waiting in line with them: each was then tried
// again as a new peer, and the honest proven peer held one piece at a
// time until proven again. Now the oldest marks go first, never those of
// a peer holding bytes or waiting, and the marks stay bounded.
func TestBudgetMarksKeepActiveAndRecent(t *testing.T) {
	const piece = int64(MinPieceSize)
	b := newBudget(2*piece, 8*time.Second)
	trickling, waiting, honest := waiterOf(1), waiterOf(2), waiterOf(3)
	b.markSlow(trickling.peer)
	holdFor(t, b, trickling, piece, time.Now())
	b.pieceDone(honest.peer, 10*time.Millisecond, 10*time.Millisecond)
	holdFor(t, b, honest, piece, time.Now())
	b.markSlow(waiting.peer)
	if b.tryAcquire(waiting, piece) || !waiting.queued {
		t.Fatal("a loop got bytes from a full budget, or is not in line")
	}
	const churn = 3 * maxSlowPeers
	for i := range churn {
		id := waiterOf(10000 + i).peer
		b.markSlow(id)
		if i%2 == 0 {
			b.pieceDone(id, 10*time.Millisecond, 10*time.Millisecond) // proven, no longer slow
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.slow) > maxSlowPeers || len(b.proven) > maxSlowPeers || len(b.took) > maxSlowPeers || len(b.marked) > 2*maxSlowPeers {
		t.Fatalf("marks kept: %d slow, %d proven, %d took, %d marked; want at most %d each (%d marked)",
			len(b.slow), len(b.proven), len(b.took), len(b.marked), maxSlowPeers, 2*maxSlowPeers)
	}
	if !b.slow[trickling.peer] || !b.slow[waiting.peer] || !b.proven[honest.peer] {
		t.Fatalf("marks of peers holding or waiting forgotten: trickler slow %v, waiting slow %v, honest proven %v",
			b.slow[trickling.peer], b.slow[waiting.peer], b.proven[honest.peer])
	}
	// The most recent marks are all kept: the last keepSlowPeers/2 of each.
	for i := churn - keepSlowPeers; i < churn; i++ {
		id := waiterOf(10000 + i).peer
		if i%2 == 0 && !b.proven[id] || i%2 == 1 && !b.slow[id] {
			t.Fatalf("mark %d of %d forgotten (slow %v, proven %v)", i, churn, b.slow[id], b.proven[id])
		}
	}
	if id := waiterOf(10001).peer; b.slow[id] {
		t.Fatal("the oldest slow mark kept past the bound")
	}
}

// TestBudgetMarksTrimAmortized: marks of peers waiting in line are never
// forgotten, so with more loops in line than maxSlowPeers, each marked
// slow, the marks stayed past the bound and every new mark ran a trim (a
// walk and a sort of all marks under b.mu) that forgot next to nothing: a
// churn of ids cost a trim per mark. Each trim must forget a quarter of
// the bound at least, and the marks stay bounded beside those in line.
func TestBudgetMarksTrimAmortized(t *testing.T) {
	const inLine, churn = maxSlowPeers + 904, 4 * maxSlowPeers
	b := newBudget(4*MinPieceSize, 8*time.Second)
	for i := range inLine {
		w := waiterOf(1_000_000 + i)
		b.markSlow(w.peer)
		b.mu.Lock()
		w.queued, w.since, w.want = true, time.Now(), MinPieceSize
		b.line = append(b.line, w)
		b.mu.Unlock()
	}
	b.mu.Lock()
	before := b.trims
	b.mu.Unlock()
	for i := range churn {
		id := waiterOf(i).peer
		b.markSlow(id)
		if i%2 == 0 {
			b.pieceDone(id, time.Millisecond, time.Millisecond)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	trims := b.trims - before
	if limit := int64(churn / (maxSlowPeers - keepSlowPeers)); trims > limit {
		t.Fatalf("%d trims for %d marks with %d loops in line, want at most %d", trims, churn, inLine, limit)
	}
	if bound := maxSlowPeers + inLine + 1; len(b.slow) > bound || len(b.proven) > bound {
		t.Fatalf("marks kept: %d slow, %d proven; want at most %d each", len(b.slow), len(b.proven), bound)
	}
	for _, w := range b.line {
		if !b.slow[w.peer] {
			t.Fatalf("the slow mark of %s, in line, forgotten", w.peer)
		}
	}
	t.Logf("%d trims for %d marks; %d slow, %d proven kept", trims, churn, len(b.slow), len(b.proven))
}
