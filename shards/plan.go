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
// relay rounds; in round r every receiver j sends to j+r mod N, a shift, so
// every receiver gets from exactly one other. The source's stream runs
// beside the relays: it is 1/N of what each receiver takes in.
//
// Chain (the notes' one-way chain, the baseline): the source sends every
// piece to receiver 0, and receiver k passes every piece to k+1.
//
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
	if plan == PlanChain || receivers <= 0 {
		return 0
	}
	return piece % receivers
}

// relayTargets lists, in the order it sends them, the receivers that
// receiver j passes a piece it got from the source (matrix) or from its
// predecessor (chain) to: matrix j+1, j+2, ..., j+N-1 mod N, so that the
// receivers' r-th relays form a shift; chain only j+1, none for the last.
func relayTargets(plan Plan, j, receivers int) []int {
	if plan == PlanChain {
		if j+1 < receivers {
			return []int{j + 1}
		}
		return nil
	}
	out := make([]int, 0, max(receivers-1, 0))
	for r := 1; r < receivers; r++ {
		out = append(out, (j+r)%receivers)
	}
	return out
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
	default:
		// Batch b's relays take rounds b(N-1) .. b(N-1)+N-2; in round r of
		// a batch receiver j sends its piece of the batch to j+r.
		n := receivers
		for i := range pieces {
			b, j := i/n, i%n
			for r, to := range relayTargets(PlanMatrix, j, n) {
				add(b*(n-1)+r, pushStep{From: j, To: to, Piece: i})
			}
		}
	}
	return s
}
