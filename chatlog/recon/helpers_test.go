package recon

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// year is the time span of generated items: 100,000 messages a year is a
// busy channel, one every five minutes on average.
const year = 365 * 24 * 3600 * 1000

func randItem(rng *rand.Rand, t0, span int64) Item {
	var it Item
	it.Time = t0 + rng.Int64N(span)
	for k := 0; k < 32; k += 8 {
		v := rng.Uint64()
		for b := range 8 {
			it.ID[k+b] = byte(v >> (8 * b))
		}
	}
	return it
}

// pair returns two sets sharing n common items, with onlyA and onlyB items
// on one side only.
func pair(seed uint64, n, onlyA, onlyB int, span int64) (a, b []Item) {
	rng := rand.New(rand.NewPCG(seed, 1))
	const t0 = 1_700_000_000_000
	for range n {
		it := randItem(rng, t0, span)
		a, b = append(a, it), append(b, it)
	}
	for range onlyA {
		a = append(a, randItem(rng, t0, span))
	}
	for range onlyB {
		b = append(b, randItem(rng, t0, span))
	}
	return a, b
}

type outcome struct {
	a, b       *Session
	msgs, size int
}

// roundTrips counts initiator messages: each is a round trip with the
// reply it gets, if any.
func (o outcome) roundTrips() int { return (o.msgs + 1) / 2 }

// run reconciles a (initiator) with b and returns the sessions and traffic.
func run(tb testing.TB, a, b *Set, oa, ob Options) outcome {
	tb.Helper()
	o := outcome{a: NewSession(a, oa), b: NewSession(b, ob)}
	msg, err := o.a.Start()
	if err != nil {
		tb.Fatal(err)
	}
	cur, other := o.b, o.a
	for msg != nil {
		o.msgs++
		o.size += len(msg)
		if o.msgs > 10_000 {
			tb.Fatal("no end after 10,000 messages")
		}
		msg, err = cur.Next(msg)
		if err != nil {
			tb.Fatalf("message %d: %v", o.msgs, err)
		}
		cur, other = other, cur
	}
	if !o.a.Done() || !o.b.Done() {
		tb.Fatalf("ended with Done() = %v, %v", o.a.Done(), o.b.Done())
	}
	return o
}

// minus is the oracle: the IDs of the items of a that are not in b, in
// (Time, ID) order.
func minus(a, b []Item) [][32]byte {
	inB := make(map[Item]bool, len(b))
	for _, it := range b {
		inB[it] = true
	}
	a = slices.Clone(a)
	slices.SortFunc(a, compareItems)
	seen := make(map[[32]byte]bool)
	var ids [][32]byte
	for _, it := range a {
		if !inB[it] && !seen[it.ID] {
			seen[it.ID] = true
			ids = append(ids, it.ID)
		}
	}
	return ids
}

func checkOutcome(tb testing.TB, o outcome, a, b []Item) {
	tb.Helper()
	aMinusB, bMinusA := minus(a, b), minus(b, a)
	for _, c := range []struct {
		name      string
		got, want [][32]byte
	}{
		{"A.Have", o.a.Have(), aMinusB},
		{"A.Need", o.a.Need(), bMinusA},
		{"B.Have", o.b.Have(), bMinusA},
		{"B.Need", o.b.Need(), aMinusB},
	} {
		if !slices.Equal(c.got, c.want) {
			tb.Errorf("%s: got %d ids, want %d (or different ids, or not in (time, ID) order)", c.name, len(c.got), len(c.want))
		}
	}
}
