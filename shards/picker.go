package shards

// The piece picker decides which piece a peer fetches next. It is a pure
// function over the small pieceStates interface, so that its policy can be
// tested without a network (the model is anacrolix/torrent's request
// strategy):
//
//   - pieces a reader is waiting on, or will soon (its position and the
//     readahead after it), come first, nearest first: WebTorrent's critical
//     pieces, so playback starts at once and a seek is served before the rest;
//   - then the rarest pieces among the holders, so a piece only one holder has
//     is fetched while that holder is still there, and holders that also
//     download get something to pass on; ties go in an order of each
//     download's own (pickFor.seed), so that downloaders that start together
//     fetch different pieces from the source and have something to trade
//     (with one order for all, 8 receivers fetched the same pieces: 7.95x
//     the Kumar-Ross bound against 1.7-1.8x); while every peer holds the
//     whole file (no swarm to trade with), within a window after the
//     first missing piece (tieWindow) so that the whole-file MD5 keeps up,
//     and past the file's first window in index order;
//   - outside endgame a piece is fetched from one peer at a time;
//   - endgame: once every missing piece is being fetched, an idle peer
//     fetches a piece that another peer is already fetching (the fewest
//     attempts first, at most maxAttempts at once), so that one slow or gone
//     peer does not hold up the end.

// maxAttempts bounds how many peers fetch one piece at once in endgame.
const maxAttempts = 3

// pieceStates is what the picker reads of a download. The caller holds
// whatever lock keeps the answers consistent during one pick.
type pieceStates interface {
	numPieces() int
	// verified reports whether piece i is held and checked.
	verified(i int) bool
	// attempts is how many peers are fetching piece i now.
	attempts(i int) int
	// availability is how many usable peers hold piece i.
	availability(i int) int
}

// pickFor is one peer's side of a pick.
type pickFor struct {
	// has is what the peer holds.
	has Bitfield
	// busy reports whether this peer is already fetching piece i.
	busy func(i int) bool
	// readers are the pieces readers are waiting at; critical are the
	// pieces from each reader's position on that come before the rest.
	readers  []int
	critical int
	// seed orders ties among equally rare pieces; 0 is by index.
	seed uint64
	// swarm is set when a peer of the download lacks pieces (it downloads
	// too): ties are then spread over the whole file, not tieWindow.
	swarm bool
	// noEndgame: the peer takes no piece another peer fetches, even in
	// endgame. A slow peer's endgame attempts would only crowd out a
	// faster one's (maxAttempts).
	noEndgame bool
}

// pick returns the piece the peer should fetch next, and whether it is an
// endgame duplicate; ok is false when the peer has nothing to fetch.
func pick(s pieceStates, p pickFor) (piece int, endgame, ok bool) {
	n := s.numPieces()
	// Endgame only once no missing piece is left unrequested anywhere: a
	// peer that merely lacks the unrequested pieces waits for its have to
	// change instead of duplicating others' work.
	endgame = true
	first := n // the first piece not verified: where the whole-file MD5 waits
	for i := range n {
		if s.verified(i) {
			continue
		}
		first = min(first, i)
		if s.attempts(i) == 0 {
			endgame = false
			break
		}
	}
	seed := p.seed
	if !p.swarm && first >= tieWindow {
		seed = 0 // in index order past the first window: see tieWindow
	}
	best, bestKey := -1, pickKey{}
	for i := range n {
		if s.verified(i) || !p.has.Has(i) || (p.busy != nil && p.busy(i)) {
			continue
		}
		a := s.attempts(i)
		if endgame && (a >= maxAttempts || p.noEndgame && a > 0) || !endgame && a > 0 {
			continue
		}
		k := pickKey{tier: 1, order: s.availability(i), index: tieOrder(i, seed)}
		if !p.swarm {
			k.far = (i - first) / tieWindow
		}
		if d, ok := criticalDistance(i, p.readers, p.critical); ok {
			k = pickKey{tier: 0, order: d, index: i}
		}
		if endgame {
			k.attempts = a
		}
		if best < 0 || k.less(bestKey) {
			best, bestKey = i, k
		}
	}
	return best, endgame, best >= 0
}

// pickKey orders candidate pieces: fewer endgame attempts, then critical
// before the rest, then distance (critical) or availability (rest), then
// how many tieWindows after the first missing piece, then index.
type pickKey struct {
	attempts, tier, order, far, index int
}

func (k pickKey) less(o pickKey) bool {
	if k.attempts != o.attempts {
		return k.attempts < o.attempts
	}
	if k.tier != o.tier {
		return k.tier < o.tier
	}
	if k.order != o.order {
		return k.order < o.order
	}
	if k.far != o.far {
		return k.far < o.far
	}
	return k.index < o.index
}

// tieWindow is how many pieces after the first missing one the order of
// equally rare pieces (tieOrder) picks among before it goes further: 64
// runs to choose from, so downloaders that start together still fetch
// different pieces, while the whole-file MD5, fed in order as pieces are
// verified (hashAhead), keeps up with the download. Over the whole file,
// the hash of a 64 MiB download from one holder waited for the last
// piece and read back and hashed most of the file after it (0.1-0.2 s of
// a 0.8 s download, on one core); with the window, at most tieWindow
// pieces are left for the end. Only while no peer of the download lacks
// pieces: in a swarm the window packed every downloader's picks into the
// same 256 pieces, and the Kumar-Ross pull of 8 receivers went from
// 1.96-2.02x the bound to 2.54-2.68x (32 MiB) and 3.79x (128 MiB).
//
// Without a swarm, once the first missing piece is past the first window,
// ties go in index order (seed 0). The order of a download's own is for
// downloads that start together from the same holders: their first picks,
// made before they hear from each other, differ (with index order from the
// start the Kumar-Ross pull of 8 went from 1.94-2.20x the bound to
// 1.94-2.54x). A download that sees no swarm after a window has no one to
// trade with, and with the order it paid for nothing: the pieces it
// verified ahead of the MD5 were read back (91 % of a one-holder 64 MiB
// file), and after the last piece the MD5 read back and hashed what was
// left of the last window, about half of it, on one core while the link
// was idle (BenchmarkDownloadPath, 64 MiB: tail-ms 8-13, 3 in index order;
// BENCHMARKS.md, good5).
const tieWindow = 64 * tieRun

// tieRun is how many consecutive pieces keep their order among equally
// rare ones: a span (ProtoSpan) holds up to BlockSize/MinPieceSize of them.
const tieRun = BlockSize / MinPieceSize

// tieOrder is piece i's place among equally rare pieces: runs of tieRun
// consecutive pieces (from a multiple of tieRun) in a permutation of their
// own (splitmix64 of the run and the seed), the pieces of a run in order;
// or the index for seed 0. With a permutation of single pieces, a span
// ran on from a piece only until it met one fetched already: of a 64 MiB
// file from one holder, 57-60 % of the bytes came in spans of four pieces
// (the rest in 250 requests of one to three), 96 % with runs; a span of
// four is checked in SIMD lanes (spanLanes).
func tieOrder(i int, seed uint64) int {
	if seed == 0 {
		return i
	}
	z := uint64(i/tieRun) + seed*0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return int((z^z>>31)>>3)*tieRun + i%tieRun
}

// criticalDistance is how far piece i lies after the nearest reader
// position that it is critical for.
func criticalDistance(i int, readers []int, critical int) (int, bool) {
	best, ok := 0, false
	for _, r := range readers {
		if d := i - r; d >= 0 && d < max(critical, 1) && (!ok || d < best) {
			best, ok = d, true
		}
	}
	return best, ok
}
