package shards

// The push schedule, as a pure function of the plan, the piece count and the
// number of receivers, so that its properties can be checked without a
// network: every receiver ends with every piece, the source sends each piece
// once, and in each relay round no receiver gets pieces from two senders.
//
// Matrix (DESIGN §7, the original notes' rows shifted one place each): the
// source stripes the pieces over the N receivers, piece i to receiver
// i mod N, so pieces bN..bN+N-1 (batch b) give each receiver one piece of
// its own. Each receiver relays its piece of batch b to the others in N-1
// relay rounds; in round r every receiver j sends to j+matrixStep(r) mod
// N, a shift, so every receiver gets from exactly one other (the steps
// are not 1, 2, 3, …: see matrixStep). The source's stream runs
// beside the relays: it is 1/N of what each receiver takes in.
//
// Chain (the notes' one-way chain, the baseline): the source sends every
// piece to receiver 0, and receiver k passes every piece to k+1.
//
// Span (the matrix within a bounded degree): the receivers form
// G = ceil(N/spanGroup) groups in order, of sizes that differ by at most
// one, and the pieces stripes i mod w, w the smallest group's size. Group
// 0 takes the source's stream as a matrix does; the owner of a stripe in
// a group (its k-th member for stripe k) relays each of its pieces to the
// next group's owner of the stripe and to the other members of its
// group, a shift as in the matrix. So every receiver exchanges pieces
// with at most spanGroup+1 others besides the source, whatever N (the
// matrix with N-1: beyond a node's link budget, and N² links in all),
// and each still sends about one copy of the file and the source one.
// In round r of a period of L (the largest group's size) rounds, group g
// handles batch b = period-g: at r = 0 its owners send their pieces of
// the batch on to the next group (only the previous group's owner of
// that stripe sends to a member then), at r >= 1 member j sends to j+r
// in its group. What it costs is depth: G groups of store-and-forward,
// G·L rounds added to the tail, about the matrix's N-1.

// The running push (push.go) follows the same orders asynchronously: the
// source sends pieces in order to their owners, and a receiver that gets a
// piece to relay queues it to its targets in relayTargets order, so that
// receivers running at the same pace are in the same round.

// pushStep is one send of one piece in a push schedule. From is -1 for the
// source, else a receiver's index; Round is the relay round (the source's
// sends carry the index of the source's send, a clock of their own).
type pushStep struct {
	Round int
	From  int
	To    int
	Piece int
}

// pushSchedule is a whole push: the source's sends, in order, and the relay
// rounds.
type pushSchedule struct {
	Source []pushStep
	Relays [][]pushStep
}

// pieceOwner is the receiver the source sends piece i to under plan: the
// receiver whose stripe it is (matrix) or the chain's head.
func pieceOwner(plan Plan, piece, receivers int) int {
	switch {
	case plan == PlanChain || receivers <= 0:
		return 0
	case plan == PlanSpan:
		return spanOwner(0, piece, receivers)
	}
	return piece % receivers
}

// spanGroup is the largest group of the span plan: each receiver relays
// to at most spanGroup-1 members of its group and one of the next.
const spanGroup = 8

// spanGroups is the layout of a span push to n receivers: count groups,
// the first extra of them of size width+1, the others of width.
func spanGroups(n int) (count, width, extra int) {
	if n <= 0 {
		return 0, 0, 0
	}
	count = (n + spanGroup - 1) / spanGroup
	return count, n / count, n % count
}

// spanGroupOf is the group of receiver j of n, and its members [lo, hi).
func spanGroupOf(j, n int) (g, lo, hi int) {
	count, w, extra := spanGroups(n)
	if big := extra * (w + 1); j < big {
		g = j / (w + 1)
	} else {
		g = extra + (j-big)/w
	}
	g = min(g, count-1)
	lo = g*w + min(g, extra)
	hi = lo + w
	if g < extra {
		hi++
	}
	return g, lo, hi
}

// spanOwner is the member of group g that owns piece's stripe in a span
// push to n receivers.
func spanOwner(g, piece, n int) int {
	_, w, extra := spanGroups(n)
	return g*w + min(g, extra) + piece%w
}

// relayTargets lists, in the order it sends them, the receivers that
// receiver j passes piece piece to when it got it with the relay flag
// (from the source, from its predecessor in a chain, from the previous
// group in a span): matrix j+matrixStep(r) mod N for r = 1..N-1, so that
// the receivers' r-th relays form a shift, and receivers a slot apart
// never send to the same one at once; chain only j+1, none for the last;
// span the next group's owner of the piece's stripe first (the pipeline
// goes on), then the others of its group in shift order.
func relayTargets(plan Plan, j, receivers, piece int) []int {
	switch plan {
	case PlanChain:
		if j+1 < receivers {
			return []int{j + 1}
		}
		return nil
	case PlanSpan:
		g, lo, hi := spanGroupOf(j, receivers)
		var out []int
		if hi < receivers {
			out = append(out, spanOwner(g+1, piece, receivers))
		}
		for r := 1; r < hi-lo; r++ {
			out = append(out, lo+(j-lo+matrixStep(r, hi-lo))%(hi-lo))
		}
		return out
	}
	out := make([]int, 0, max(receivers-1, 0))
	for r := 1; r < receivers; r++ {
		out = append(out, (j+matrixStep(r, receivers))%receivers)
	}
	return out
}

// matrixStep is how far after itself a matrix receiver of n sends its
// r-th relay of a piece: 2r mod n, or for an even n the even steps and
// then the odd ones (2r, then 2r-n+1). A bijection of 1..n-1, so round r
// is still a shift in lockstep; and also when the receivers run a slot
// apart, as the source's stream starts them (owner j gets its piece of
// batch b in slot bN+j): in slot T the senders j are at r = T-j and send
// to j+2r = 2T-j (or 2T-j+1 for the odd steps), a different receiver for
// each. With the plain shift (step r) every owner of a batch reached
// receiver j+r = T in the same slot: each receiver got the whole batch at
// once, then nothing for a batch's time.
func matrixStep(r, n int) int {
	if n%2 == 1 || 2*r < n {
		return 2 * r % n
	}
	return 2*r - n + 1
}

// planPush is the schedule of a push of pieces pieces to receivers
// receivers under plan.
func planPush(plan Plan, pieces, receivers int) pushSchedule {
	var s pushSchedule
	if pieces <= 0 || receivers <= 0 {
		return s
	}
	for i := range pieces {
		s.Source = append(s.Source, pushStep{Round: i, From: -1, To: pieceOwner(plan, i, receivers), Piece: i})
	}
	add := func(round int, st pushStep) {
		for len(s.Relays) <= round {
			s.Relays = append(s.Relays, nil)
		}
		st.Round = round
		s.Relays[round] = append(s.Relays[round], st)
	}
	switch plan {
	case PlanChain:
		// Piece i leaves receiver k in round i+k: each receiver passes on
		// one piece a round, the one its predecessor passed it the round
		// before.
		for i := range pieces {
			for k := 0; k+1 < receivers; k++ {
				add(i+k, pushStep{From: k, To: k + 1, Piece: i})
			}
		}
	case PlanSpan:
		// Piece i of batch b = i/w, stripe k = i%w: in group g, period
		// b+g, its owner sends it on at r = 0 and to its group's member
		// lo+(k+r)%size at r = 1..size-1.
		count, w, extra := spanGroups(receivers)
		period := w
		if extra > 0 {
			period++
		}
		for i := range pieces {
			b, k := i/w, i%w
			for g := range count {
				_, lo, hi := spanGroupOf(spanOwner(g, i, receivers), receivers)
				base := (b + g) * period
				if hi < receivers {
					add(base, pushStep{From: lo + k, To: spanOwner(g+1, i, receivers), Piece: i})
				}
				for r := 1; r < hi-lo; r++ {
					add(base+r, pushStep{From: lo + k, To: lo + (k+matrixStep(r, hi-lo))%(hi-lo), Piece: i})
				}
			}
		}
	default:
		// Batch b's relays take rounds b(N-1) .. b(N-1)+N-2; in round r of
		// a batch receiver j sends its piece of the batch to j+r.
		n := receivers
		for i := range pieces {
			b, j := i/n, i%n
			for r, to := range relayTargets(PlanMatrix, j, n, i) {
				add(b*(n-1)+r, pushStep{From: j, To: to, Piece: i})
			}
		}
	}
	return s
}
