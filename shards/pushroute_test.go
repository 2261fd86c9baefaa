package shards

import (
	"context"
	"testing"

	"github.com/catnest/catnest/mesh"
)

// TestSeqWindow: a target takes each sequence number once, in any order
// within the window, and none older than it.
func TestSeqWindow(t *testing.T) {
	var w seqWindow
	for _, c := range []struct {
		seq  uint64
		want bool
	}{
		{1, true}, {1, false}, // a replay
		{3, true}, {2, true}, {2, false}, {3, false}, // one overtaken
		{66, true}, {4, true}, {3, false}, {2, false}, // 2 is 64 behind
		{1000, true}, {937, true}, {936, false}, {999, true}, {999, false}, {66, false},
		{1 << 40, true}, {1000, false}, {1<<40 - 63, true}, {1<<40 - 64, false},
	} {
		if got := w.take(c.seq); got != c.want {
			t.Errorf("take(%d) after top %d = %v, want %v", c.seq, w.top, got, c.want)
		}
	}
}

// TestPushRoutedBlameCounts: reports that came up a span through other
// members count, once their origins' signatures check out, as the
// origins' own towards dropping a member that half the others caught
// sending corrupt pieces; one whose signature does not check out counts
// for nothing, and the member that passed it is dropped instead.
func TestPushRoutedBlameCounts(t *testing.T) {
	// A span of 10: groups 0-4 and 5-9; member 0 sends corrupt pieces.
	const n, liar = 10, 0
	nodes := make([]*mesh.Node, n)
	o := fuzzOffer(t)
	o.Plan, o.Members = PlanSpan, nil
	for k := range nodes {
		nodes[k] = fuzzSigner(t)
		o.Members = append(o.Members, nodes[k].ID())
	}
	src := &pushStubNode{id: testID(t)}
	p := newPushes(src, nil, DefaultPushConfig(), nil, nil)
	op := newOutPush(o, nil)
	p.out[o.Push] = op
	np := o.Manifest.NumPieces()
	blame := func(origin int, signer *mesh.Node) error {
		t.Helper()
		report := encodeReport(o.Push, map[int]bool{liar: true}, NewBitfield(np), np)
		sig, err := signer.Sign(sigUp, upSigned(o.Push, origin, report))
		if err != nil {
			t.Fatal(err)
		}
		// Passed up by member 1 of group 0.
		_, err = p.ServeMesh(context.Background(), &mesh.Message{From: o.Members[1], Protocol: ProtoPush,
			Payload: encodeUp(o.Push, origin, sig, report), Request: true, Channel: mesh.Bulk})
		return err
	}
	state := func(k int) string {
		op.mu.Lock()
		defer op.mu.Unlock()
		return op.state[k]
	}
	// Four of the nine others: not half.
	for origin := 5; origin < 9; origin++ {
		if err := blame(origin, nodes[origin]); err != nil {
			t.Fatalf("member %d's report: %v", origin, err)
		}
	}
	if state(liar) != "receiving" {
		t.Fatalf("the liar is %q after 4 of 9 caught it", state(liar))
	}
	// A fifth, made up by member 1 for member 9: refused, no count.
	if err := blame(9, nodes[1]); err == nil {
		t.Fatal("a report member 1 signed for member 9 was taken")
	}
	if state(liar) != "receiving" || state(1) != "gone" || src.penalties.Load() != 1 {
		t.Fatalf("after a forged blame: the liar %q, the forger %q, %d penalties", state(liar), state(1), src.penalties.Load())
	}
	// Member 9's own (passed up by member 1 again: it is signed): five
	// of nine.
	if err := blame(9, nodes[9]); err != nil {
		t.Fatal(err)
	}
	if state(liar) != "gone" {
		t.Errorf("the liar is %q after 5 of 9 caught it", state(liar))
	}
}
