package shards

import (
	"fmt"
	"testing"
)

// TestPlanPush checks the schedule's three promises for both plans over
// sizes a user pushes (up to thousands of pieces, dozens to hundreds of
// receivers, and the odd cases of fewer pieces than receivers): every
// receiver ends with every piece, the source sends each piece once, and no
// receiver gets from two senders (nor sends twice) in the same relay round. It also checks
// that a relay is only of a piece its sender already holds, so that the
// rounds can run in order.
func TestPlanPush(t *testing.T) {
	for _, plan := range []Plan{PlanMatrix, PlanChain, PlanSpan} {
		for _, c := range []struct{ pieces, n int }{
			{1, 1}, {1, 6}, {5, 6}, {6, 6}, {7, 6}, {2048, 8}, {300, 13}, {2000, 64}, {1000, 100}, {1000, 256}, {512, 2},
		} {
			t.Run(fmt.Sprintf("%s/%dpieces/%dreceivers", plan, c.pieces, c.n), func(t *testing.T) {
				s := planPush(plan, c.pieces, c.n)
				// When each receiver got each piece: -1 from the source
				// (before every relay round), else the relay round.
				got := make([]map[int]int, c.n)
				for k := range got {
					got[k] = make(map[int]int)
				}
				sent := make(map[int]int)
				for _, st := range s.Source {
					if st.From != -1 || st.To < 0 || st.To >= c.n {
						t.Fatalf("source step %+v", st)
					}
					sent[st.Piece]++
					got[st.To][st.Piece] = -1
				}
				for i := range c.pieces {
					if sent[i] != 1 {
						t.Fatalf("the source sends piece %d %d times", i, sent[i])
					}
				}
				if len(sent) != c.pieces {
					t.Fatalf("the source sends %d distinct pieces of %d", len(sent), c.pieces)
				}
				for r, round := range s.Relays {
					from := make(map[int]int) // receiver -> its sender this round
					sends := make(map[int]bool)
					for _, st := range round {
						if st.Round != r || st.From < 0 || st.From >= c.n || st.To < 0 || st.To >= c.n || st.From == st.To {
							t.Fatalf("round %d: step %+v", r, st)
						}
						if f, dup := from[st.To]; dup {
							t.Fatalf("round %d: receiver %d gets from %d and %d", r, st.To, f, st.From)
						}
						from[st.To] = st.From
						if sends[st.From] {
							t.Fatalf("round %d: %d sends twice", r, st.From)
						}
						sends[st.From] = true
						if when, ok := got[st.From][st.Piece]; !ok || when >= r {
							t.Fatalf("round %d: %d relays piece %d it does not hold yet", r, st.From, st.Piece)
						}
						if _, dup := got[st.To][st.Piece]; dup {
							t.Fatalf("round %d: %d gets piece %d twice", r, st.To, st.Piece)
						}
						got[st.To][st.Piece] = r
					}
				}
				for k := range got {
					if len(got[k]) != c.pieces {
						t.Fatalf("receiver %d ends with %d pieces of %d", k, len(got[k]), c.pieces)
					}
				}
				// Span: each receiver sends to and gets from at most
				// spanGroup others, and the rounds are the pieces' (each
				// receiver gets one a round) plus the groups' depth.
				if plan == PlanSpan {
					peers := make([]map[int]bool, c.n)
					for k := range peers {
						peers[k] = make(map[int]bool)
					}
					for _, round := range s.Relays {
						for _, st := range round {
							peers[st.From][st.To], peers[st.To][st.From] = true, true
						}
					}
					for k := range peers {
						if len(peers[k]) > spanGroup+1 {
							t.Fatalf("receiver %d exchanges with %d others, want at most %d", k, len(peers[k]), spanGroup+1)
						}
					}
					// Each group gets every piece in a round of its own, and
					// passes them on one group a period later.
					groups, w, extra := spanGroups(c.n)
					period := w + min(extra, 1)
					if limit := ((c.pieces+w-1)/w + groups) * period; len(s.Relays) > limit {
						t.Fatalf("%d relay rounds, want at most %d (pieces + groups' depth)", len(s.Relays), limit)
					}
					t.Logf("%d relay rounds for %d pieces to %d receivers", len(s.Relays), c.pieces, c.n)
				}
				// Matrix: each receiver sends at most one piece a round,
				// and the rounds are as few as the striping allows.
				if plan == PlanMatrix && c.n > 1 {
					batches := (c.pieces + c.n - 1) / c.n
					if want := batches * (c.n - 1); len(s.Relays) != want {
						t.Fatalf("%d relay rounds, want %d", len(s.Relays), want)
					}
				}
			})
		}
	}
}

// TestPlanMatrixStreamed runs the matrix as push.go does rather than in
// planPush's lockstep: the source streams piece i in slot i (one piece a
// slot, its upload), so owner i mod N gets it a slot later, each receiver
// passes its pieces on one a slot in relayTargets order, and a receiver
// gets the pieces its senders send in a slot at its end. Each receiver
// must still get from at most one sender a slot, keep getting pieces
// while the source streams (after the first batch, which starts the
// owners one by one), and all must be done within the lockstep's tail,
// N-1 slots after the stream. With the plain shift (j+1, j+2, …) the
// owners, started a slot apart, all reached the same receiver in the same
// slot: each receiver got a whole batch at once, then nothing for a
// batch's time, and looked stalled to the source's repair, which ordered
// its pieces again from other holders; the copies sent twice lengthened
// the push (1.34x the bound at N = 64, 6% of the uploads copies).
//
// A span of at most spanGroup receivers is one group, relayed as a
// matrix: it is checked too.
func TestPlanMatrixStreamed(t *testing.T) {
	for _, c := range []struct {
		plan Plan
		n    int
	}{{PlanMatrix, 2}, {PlanMatrix, 3}, {PlanMatrix, 8}, {PlanMatrix, 13}, {PlanMatrix, 16}, {PlanMatrix, 64},
		{PlanMatrix, 100}, {PlanMatrix, 256}, {PlanSpan, 3}, {PlanSpan, 7}, {PlanSpan, spanGroup}} {
		plan, n := c.plan, c.n
		t.Run(fmt.Sprintf("%s/%dreceivers", plan, n), func(t *testing.T) {
			pieces := 4 * n
			type job struct{ piece, to int }
			queue := make([][]job, n)
			got := make([]int, n)  // pieces each receiver holds
			last := make([]int, n) // the slot it last got one in
			done, gap, end := 0, 0, 0
			for slot := 0; done < n; slot++ {
				if slot > 10*pieces {
					t.Fatalf("not done after %d slots", slot)
				}
				from := make(map[int]int)
				var arrive []job
				if slot < pieces {
					arrive = append(arrive, job{slot, pieceOwner(plan, slot, n)})
				}
				for j := range queue {
					if len(queue[j]) == 0 {
						continue
					}
					jb := queue[j][0]
					queue[j] = queue[j][1:]
					if f, dup := from[jb.to]; dup {
						t.Fatalf("slot %d: receiver %d gets from %d and %d", slot, jb.to, f, j)
					}
					from[jb.to] = j
					arrive = append(arrive, jb)
				}
				for _, a := range arrive {
					k := a.to
					if slot > n && slot < pieces {
						gap = max(gap, slot-last[k])
					}
					last[k] = slot
					if got[k]++; got[k] == pieces {
						done++
						end = slot
					}
					if pieceOwner(plan, a.piece, n) == k && slot < pieces { // from the source: relay it
						for _, to := range relayTargets(plan, k, n, a.piece) {
							queue[k] = append(queue[k], job{a.piece, to})
						}
					}
				}
			}
			if gap > 2 {
				t.Errorf("while the source streams, a receiver waited %d slots between two pieces", gap)
			}
			if end > pieces+n {
				t.Errorf("the last receiver was done in slot %d, after the lockstep's %d", end, pieces+n-1)
			}
		})
	}
}
