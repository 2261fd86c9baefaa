package shards

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// fakePieces is a pieceStates written out by hand.
type fakePieces struct {
	done  []bool
	tries []int
	avail []int
}

func newFakePieces(n int) *fakePieces {
	f := &fakePieces{done: make([]bool, n), tries: make([]int, n), avail: make([]int, n)}
	for i := range f.avail {
		f.avail[i] = 3
	}
	return f
}

func (f *fakePieces) numPieces() int         { return len(f.done) }
func (f *fakePieces) verified(i int) bool    { return f.done[i] }
func (f *fakePieces) attempts(i int) int     { return f.tries[i] }
func (f *fakePieces) availability(i int) int { return f.avail[i] }
func allPieces(n int) Bitfield               { b := NewBitfield(n); setAll(b, n); return b }
func setAll(b Bitfield, n int) {
	for i := range n {
		b.Set(i)
	}
}
func onlyPieces(n int, which ...int) Bitfield {
	b := NewBitfield(n)
	for _, i := range which {
		b.Set(i)
	}
	return b
}

func TestPick(t *testing.T) {
	const n = 2000
	for _, tc := range []struct {
		name    string
		setup   func(f *fakePieces)
		p       pickFor
		want    int
		endgame bool
		ok      bool
	}{
		{"in order when all are as rare", func(f *fakePieces) {}, pickFor{has: allPieces(n)}, 0, false, true},
		{"rarest first", func(f *fakePieces) { f.avail[1234] = 1; f.avail[77] = 2 }, pickFor{has: allPieces(n)}, 1234, false, true},
		{"skips verified and requested", func(f *fakePieces) { f.done[0] = true; f.tries[1] = 1 }, pickFor{has: allPieces(n)}, 2, false, true},
		{"only what the peer has", func(f *fakePieces) {}, pickFor{has: onlyPieces(n, 1500)}, 1500, false, true},
		{"reader's position before rarity", func(f *fakePieces) { f.avail[3] = 1 }, pickFor{has: allPieces(n), readers: []int{900}, critical: 4}, 900, false, true},
		{"next after the reader's position once it is requested", func(f *fakePieces) { f.tries[900] = 1; f.avail[3] = 1 }, pickFor{has: allPieces(n), readers: []int{900}, critical: 4}, 901, false, true},
		{"past the readahead, rarity again", func(f *fakePieces) {
			for i := 900; i < 904; i++ {
				f.tries[i] = 1
			}
			f.avail[3] = 1
		}, pickFor{has: allPieces(n), readers: []int{900}, critical: 4}, 3, false, true},
		{"nearest of two readers", func(f *fakePieces) {}, pickFor{has: allPieces(n), readers: []int{10, 500}, critical: 8}, 10, false, true},
		{"nothing the peer has is unrequested, not endgame: wait", func(f *fakePieces) { f.tries[5] = 1 }, pickFor{has: onlyPieces(n, 5)}, -1, false, false},
		{"endgame: duplicate the least attempted", func(f *fakePieces) {
			for i := range n {
				f.done[i] = i < n-3
			}
			f.tries[n-3], f.tries[n-2], f.tries[n-1] = 2, 1, 2
		}, pickFor{has: allPieces(n)}, n - 2, true, true},
		{"endgame: not what the peer already fetches", func(f *fakePieces) {
			for i := range n {
				f.done[i] = i < n-2
			}
			f.tries[n-2], f.tries[n-1] = 1, 1
		}, pickFor{has: allPieces(n), busy: func(i int) bool { return i == n-2 }}, n - 1, true, true},
		{"endgame: at most maxAttempts", func(f *fakePieces) {
			for i := range n {
				f.done[i] = i < n-1
			}
			f.tries[n-1] = maxAttempts
		}, pickFor{has: allPieces(n)}, -1, true, false},
		{"all verified", func(f *fakePieces) {
			for i := range n {
				f.done[i] = true
			}
		}, pickFor{has: allPieces(n)}, -1, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakePieces(n)
			tc.setup(f)
			got, endgame, ok := pick(f, tc.p)
			if got != tc.want || endgame != tc.endgame || ok != tc.ok {
				t.Fatalf("pick = %d, endgame %v, ok %v; want %d, %v, %v", got, endgame, ok, tc.want, tc.endgame, tc.ok)
			}
		})
	}
}

// TestPickSpreadsPeers: three peers picking in turn from a download where
// every piece is as rare never pick the same piece outside endgame, and
// between them fetch every piece once.
func TestPickSpreadsPeers(t *testing.T) {
	const n = 300
	f := newFakePieces(n)
	has := allPieces(n)
	seen := make(map[int]bool)
	for round := 0; ; round++ {
		i, endgame, ok := pick(f, pickFor{has: has})
		if !ok || endgame {
			break
		}
		if seen[i] {
			t.Fatalf("piece %d picked twice outside endgame", i)
		}
		seen[i] = true
		f.tries[i]++
		if round%3 == 2 { // the oldest attempt finishes
			for j := range n {
				if f.tries[j] > 0 {
					f.tries[j], f.done[j] = 0, true
					break
				}
			}
		}
	}
	if len(seen) != n {
		t.Fatalf("%d of %d pieces picked", len(seen), n)
	}
}

// TestPickTiesInRuns: among equally rare pieces a download picks runs of
// tieRun consecutive pieces, each from a multiple of tieRun, the runs in an
// order of its own, so that a span (ProtoSpan) from the first piece of a
// run fetches the whole run. 4 MiB of 64 KiB pieces (a file's pieces up to
// 128 MB) with a short last run: a piece at a time, for 8 downloads.
func TestPickTiesInRuns(t *testing.T) {
	const n = 4<<20/MinPieceSize + 3
	starts := make(map[int]bool)
	for seed := uint64(1); seed <= 8; seed++ {
		s := newFakePieces(n)
		has := allPieces(n)
		prev := -1
		for range n {
			i, _, ok := pick(s, pickFor{has: has, seed: seed * 7919})
			if !ok {
				t.Fatalf("seed %d: nothing picked with pieces left", seed)
			}
			if i%tieRun == 0 {
				if prev >= 0 && prev%tieRun != tieRun-1 && prev != n-1 {
					t.Fatalf("seed %d: a new run at %d after %d, which ended none", seed, i, prev)
				}
			} else if i != prev+1 {
				t.Fatalf("seed %d: picked %d after %d: not in runs of %d", seed, i, prev, tieRun)
			}
			if prev < 0 {
				starts[i] = true
			}
			s.done[i] = true
			prev = i
		}
	}
	if len(starts) < 6 {
		t.Fatalf("8 downloads began with only %d distinct runs of %d", len(starts), (n+tieRun-1)/tieRun)
	}
}

// TestPickTiesDifferPerSeed: downloads that start together with the same
// holders pick different first pieces (each its own order of ties), so
// they have something to trade; seed 0 keeps the index order.
func TestPickTiesDifferPerSeed(t *testing.T) {
	const n = 256
	s := newFakePieces(n)
	has := allPieces(n)
	if i, _, _ := pick(s, pickFor{has: has}); i != 0 {
		t.Fatalf("seed 0 picked %d, want 0", i)
	}
	first := make(map[int]bool)
	for seed := uint64(1); seed <= 8; seed++ {
		i, _, ok := pick(s, pickFor{has: has, seed: seed * 7919})
		if !ok {
			t.Fatal("nothing picked")
		}
		first[i] = true
	}
	if len(first) < 6 {
		t.Fatalf("8 downloads picked only %d distinct first pieces of %d", len(first), n)
	}
	// Rarity still comes first: a rarer piece beats every tie order.
	s.avail[200] = 1
	s.avail[100] = 1
	for seed := uint64(1); seed <= 8; seed++ {
		if i, _, _ := pick(s, pickFor{has: has, seed: seed}); i != 100 && i != 200 {
			t.Fatalf("seed %d picked %d over the rarer 100 and 200", seed, i)
		}
	}
}

// TestPickTiesNearTheHashFrontier: ties are picked within tieWindow pieces
// of the first missing piece, so that the whole-file MD5, fed in order as
// pieces are verified, is never more than about a window behind the
// download: a piece beyond the window only once every piece within it is
// requested; a rarer piece beyond the window still comes first, and 8
// downloads still begin at different runs. 2,000 pieces (the most a
// manifest has), a piece at a time with up to 32 runs requested at once.
func TestPickTiesNearTheHashFrontier(t *testing.T) {
	const n = 2000
	starts := make(map[int]bool)
	for seed := uint64(1); seed <= 8; seed++ {
		s := newFakePieces(n)
		has := allPieces(n)
		var inFlight []int
		first, lag := 0, 0
		for done := 0; done < n; {
			if len(inFlight) < 32*tieRun {
				i, _, ok := pick(s, pickFor{has: has, seed: seed * 7919})
				if ok {
					if len(starts) < int(seed) && done == 0 && len(inFlight) == 0 {
						starts[i] = true
					}
					if i >= first+tieWindow {
						for j := first; j < first+tieWindow; j++ {
							if !s.done[j] && s.tries[j] == 0 {
								t.Fatalf("seed %d: picked %d beyond the window, with %d in it unrequested", seed, i, j)
							}
						}
					}
					s.tries[i] = 1
					inFlight = append(inFlight, i)
					continue
				}
			}
			// The oldest request is answered.
			i := inFlight[0]
			inFlight = inFlight[1:]
			s.tries[i], s.done[i] = 0, true
			done++
			for first < n && s.done[first] {
				first++
			}
			lag = max(lag, done-first)
		}
		// The window, and what was requested when its last run was.
		if lag > tieWindow+32*tieRun {
			t.Errorf("seed %d: %d pieces verified ahead of the hash at most, want <= %d", seed, lag, tieWindow+32*tieRun)
		}
		t.Logf("seed %d: at most %d pieces verified ahead of the hash", seed, lag)
	}
	if len(starts) < 6 {
		t.Errorf("8 downloads began with only %d distinct runs", len(starts))
	}
	s := newFakePieces(n)
	s.avail[1900] = 1
	if i, _, _ := pick(s, pickFor{has: allPieces(n), seed: 7919}); i != 1900 {
		t.Errorf("picked %d, not the rarer piece 1900 beyond the window", i)
	}
}

// TestPickSwarmSpreadsOverTheWholeFile: when a peer of the download lacks
// pieces (it downloads too), ties are spread over the whole file, not the
// hash window: 8 downloads' first 32 picks each land in distinct runs
// over the file, and most beyond the window (the window packed a Kumar-Ross
// pull of 8 into the same 256 pieces: 2.54-3.79x the bound, 1.96-2.02x
// without it).
func TestPickSwarmSpreadsOverTheWholeFile(t *testing.T) {
	const n = 2000
	for _, swarm := range []bool{false, true} {
		beyond := 0
		for seed := uint64(1); seed <= 8; seed++ {
			s := newFakePieces(n)
			for range 32 {
				i, _, ok := pick(s, pickFor{has: allPieces(n), seed: seed * 7919, swarm: swarm})
				if !ok {
					t.Fatal("nothing to pick")
				}
				s.tries[i] = 1
				if i >= tieWindow {
					beyond++
				}
			}
		}
		switch {
		case swarm && beyond < 8*32/2:
			t.Errorf("swarm: %d of 256 picks beyond the first %d pieces, want most", beyond, tieWindow)
		case !swarm && beyond > 0:
			t.Errorf("no swarm: %d picks beyond the hash window", beyond)
		}
	}
}

// lackingSource serves a readerSource's file but says it lacks the last
// piece: a peer that downloads too.
type lackingSource struct{ *readerSource }

func (s lackingSource) haveOf(id MD5) Bitfield {
	h := s.readerSource.haveOf(id)
	if h != nil {
		h = slices.Clone(h)
		h.Clear(s.man.NumPieces() - 1)
	}
	return h
}

// TestDownloadSwarmLeavesTheHashWindow: the download tells the picker
// when a peer lacks pieces. From a whole holder alone pieces are picked
// within tieWindow of the first missing one; with a holder that lacks a
// piece beside it, ties spread over the file (a 32 MiB file, 512 pieces,
// the window 256).
//
// The window is an order, not a bar: once every piece in it is verified
// or being fetched (the first missing one still in flight), the picker
// goes beyond rather than leave the link idle. How soon that happens
// follows how many pieces are in flight, which follows the link's latency:
// on a loaded machine (-race, cores shared with busy loops) the pipeline
// grew to 5 MiB, 76 pieces, and 4-23 of the 512 went beyond the window
// whenever the first missing piece's run came among the window's last
// picks, so counting them over the whole download failed under load. What
// load does not move: the budget (MaxBuffered) bounds the pieces in
// flight to inFlight, and a piece picked beyond the window is written
// after the tieWindow-inFlight pieces verified when it was picked (the
// first not written is never before the first missing at its pick). So
// the pieces beyond the window are counted among the first
// tieWindow-inFlight written: none without a swarm, about half with one.
func TestDownloadSwarmLeavesTheHashWindow(t *testing.T) {
	testutil.CheckGoroutines(t)
	const buffered = 4 << 20
	for _, swarm := range []bool{false, true} {
		_, nodes := newTestNet(t, "whole", "lacking", "dl")
		_, src := testFile(t, 32<<20, 9)
		n := src.man.NumPieces()
		inFlight := int(buffered / src.man.PieceSize)
		checked := tieWindow - inFlight // writes before any pick can leave the window
		(&testServer{sources: []pieceSource{src}}).register(nodes[0])
		holders := []mesh.ID{nodes[0].ID()}
		if swarm {
			(&testServer{sources: []pieceSource{lackingSource{src}}}).register(nodes[1])
			holders = append(holders, nodes[1].ID())
		}
		dir := t.TempDir()
		var mu sync.Mutex
		written := make([]bool, n)
		count := 0  // pieces written
		beyond := 0 // of the first checked, pieces written tieWindow or more after the first not written
		total := 0  // of all pieces, for the log
		d := startDownloads(t, nodes[2], dir, openTestDB(t, filepath.Join(dir, "db")), func(MD5) []mesh.ID { return holders },
			func(c *DownloadsConfig, d *downloads) {
				c.MaxBuffered = buffered
				d.budget = newBudget(buffered, c.RequestTimeout)
				d.afterWrite = func(_ MD5, piece int, _ []byte) {
					mu.Lock()
					defer mu.Unlock()
					first := slices.Index(written, false)
					if piece != n-1 && piece >= first+tieWindow {
						total++
						if count < checked {
							beyond++
						}
					}
					written[piece] = true
					count++
				}
			})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if _, err := d.fetch(ctx, src.link(nodes[0].ID(), "f.bin")); err != nil {
			t.Fatal(err)
		}
		waitState(t, d.downloads, src.id, StateDone, time.Minute)
		cancel()
		if _, peak := d.budget.stats(); peak > buffered {
			t.Fatalf("swarm %v: %d bytes of pieces in flight at once, the budget is %d", swarm, peak, buffered)
		}
		mu.Lock()
		got, all := beyond, total
		mu.Unlock()
		t.Logf("swarm %v: %d of the first %d pieces written beyond the hash window, %d of %d in all", swarm, got, checked, all, n)
		if !swarm && got > 0 || swarm && got < 16 {
			t.Errorf("swarm %v: %d of the first %d pieces written %d or more after the first missing", swarm, got, checked, tieWindow)
		}
	}
}
