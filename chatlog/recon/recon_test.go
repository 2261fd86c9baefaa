package recon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestReconcile(t *testing.T) {
	sameTime := func(n int, seed uint64) []Item {
		a, _ := pair(seed, n, 0, 0, 1)
		return a
	}
	// IDs that share 31 bytes, at one time: bounds need full-length prefixes.
	var close []Item
	for k := range 300 {
		var it Item
		it.Time = 42
		it.ID[31] = byte(k)
		it.ID[30] = byte(k >> 8)
		close = append(close, it)
	}
	a1, b1 := pair(1, 10_000, 10, 0, year)
	a2, b2 := pair(2, 10_000, 7, 13, year)
	a3, b3 := pair(3, 0, 500, 700, year)
	a4, b4 := pair(4, 3000, 50, 50, year)
	dupA := append(append([]Item{}, a4...), a4[:100]...)
	neg, negB := pair(5, 2000, 20, 20, 1<<40)
	for k := range neg {
		neg[k].Time -= 1 << 41
	}
	for k := range negB {
		negB[k].Time -= 1 << 41
	}
	big, _ := pair(6, 20_000, 0, 0, year)
	cases := []struct {
		name   string
		a, b   []Item
		oa, ob Options
	}{
		{name: "empty vs empty"},
		{name: "empty vs n", b: a1},
		{name: "n vs empty", a: a1},
		{name: "identical", a: a1, b: a1},
		{name: "d on one side", a: a1, b: b1},
		{name: "d on the other side", a: b1, b: a1},
		{name: "d on both sides", a: a2, b: b2},
		{name: "disjoint", a: a3, b: b3},
		{name: "duplicates in input", a: dupA, b: b4},
		{name: "equal times", a: sameTime(2000, 7), b: sameTime(2000, 7)[:1900]},
		{name: "equal times both sides", a: append(sameTime(500, 8), sameTime(40, 9)...), b: append(sameTime(500, 8), sameTime(30, 10)...)},
		{name: "ids sharing 31 bytes", a: close[:250], b: close[50:]},
		{name: "negative times", a: neg, b: negB},
		{name: "one-byte prefixes", a: a4, b: b4, oa: Options{PrefixLen: 1}, ob: Options{PrefixLen: 1}},
		{name: "full-id lists", a: a4, b: b4, oa: Options{PrefixLen: 32}, ob: Options{PrefixLen: 32}},
		{name: "mixed options", a: a4, b: b4, oa: Options{Branch: 2, LeafSize: 1}, ob: Options{Branch: 16, LeafSize: 128, PrefixLen: 2}},
		{name: "short fingerprints", a: a4, b: b4, oa: Options{FingerprintLen: 4}, ob: Options{FingerprintLen: 4}},
		{name: "small messages, all missing", a: big, oa: Options{MaxMessage: 8 << 10, MaxRounds: 1000}, ob: Options{MaxMessage: 8 << 10, MaxRounds: 1000}},
		{name: "small messages, both sides", a: a3, b: b3, oa: Options{MaxMessage: 8 << 10, MaxRounds: 1000}, ob: Options{MaxMessage: 8 << 10, MaxRounds: 1000}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := run(t, NewSet(c.a), NewSet(c.b), c.oa, c.ob)
			checkOutcome(t, o, c.a, c.b)
			t.Logf("%d messages, %d bytes", o.msgs, o.size)
		})
	}
}

// TestOracle reconciles random pairs, n from 0 to 10^5, against the
// map-based oracle.
func TestOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(99, 99))
	iters := 30
	if testing.Short() {
		iters = 10
	}
	for k := range iters {
		n := int(math.Pow(10, rng.Float64()*5)) // log-uniform in [1, 10^5]
		if k == 0 {
			n = 0
		}
		da, db := rng.IntN(50), rng.IntN(50)
		if rng.IntN(4) == 0 {
			da = rng.IntN(2000)
		}
		span := int64(year)
		if rng.IntN(3) == 0 {
			span = int64(1 + rng.IntN(1000)) // many equal times
		}
		a, b := pair(uint64(k), n, da, db, span)
		var o Options
		if rng.IntN(2) == 0 {
			o = Options{Branch: 2 + rng.IntN(15), LeafSize: 1 + rng.IntN(128), PrefixLen: 1 + rng.IntN(32)}
		}
		t.Run(fmt.Sprintf("n=%d,da=%d,db=%d", n, da, db), func(t *testing.T) {
			checkOutcome(t, run(t, NewSet(a), NewSet(b), o, o), a, b)
		})
	}
}

// TestScaling checks that round trips grow with log n and bytes with d.
func TestScaling(t *testing.T) {
	// Round trips: one fingerprint, one level per factor of Branch down to
	// LeafSize, then list, reply and ids.
	for _, n := range []int{100, 1000, 10_000, 100_000} {
		a, b := pair(uint64(n), n, 5, 5, year)
		o := run(t, NewSet(a), NewSet(b), Options{}, Options{})
		levels := int(math.Ceil(math.Log(float64(n)/32) / math.Log(8)))
		want := (1 + max(levels, 0) + 3 + 1) / 2
		t.Logf("n=%d: %d round trips, %d bytes", n, o.roundTrips(), o.size)
		if o.roundTrips() > want {
			t.Errorf("n=%d: %d round trips, want at most %d", n, o.roundTrips(), want)
		}
	}
	// Bytes: at n = 10^5, about the same cost per difference whatever d.
	const n = 100_000
	a0, _ := pair(7, n, 0, 0, year)
	if o := run(t, NewSet(a0), NewSet(a0), Options{}, Options{}); o.size > 16 || o.roundTrips() != 1 {
		t.Errorf("d=0: %d bytes, %d round trips; want at most 16 bytes, 1 round trip", o.size, o.roundTrips())
	}
	for _, d := range []int{10, 100, 1000} {
		a, b := pair(8, n, d/2, d-d/2, year)
		o := run(t, NewSet(a), NewSet(b), Options{}, Options{})
		per := o.size / d
		t.Logf("d=%d: %d bytes (%d per difference), %d round trips", d, o.size, per, o.roundTrips())
		if per > 500 {
			t.Errorf("d=%d: %d bytes per difference, want at most 500", d, per)
		}
	}
}

func TestBadMessages(t *testing.T) {
	a, _ := pair(1, 1000, 0, 0, year)
	set := NewSet(a)
	h := byte(headerBase + 8)
	fp8 := make([]byte, 8)
	entry := func(u byte, mode, plen int, rest ...byte) []byte {
		return append([]byte{u, byte(mode*33 + plen)}, rest...)
	}
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	cases := map[string][]byte{
		"empty":              {},
		"wrong header":       {headerBase + 9},
		"truncated varint":   {h, 0x80},
		"bad mode":           {h, 1, 5 * 33},
		"prefix on +inf":     {h, 0, 1, 0},
		"truncated prefix":   {h, 1, 3, 0xaa},
		"truncated fp":       cat([]byte{h}, entry(0, modeFingerprint, 0, 1, 2)),
		"entry after +inf":   cat([]byte{h}, entry(0, modeSkip, 0), entry(0, modeSkip, 0)),
		"out of order":       cat([]byte{h}, entry(9, modeSkip, 0), entry(1, modeSkip, 0)),
		"list count lies":    cat([]byte{h}, entry(0, modeList, 0, 10, 4, 1, 2, 3)),
		"list too long":      cat([]byte{h}, entry(0, modeList, 0, 200, 1), make([]byte, 200)),
		"list width 0":       cat([]byte{h}, entry(0, modeList, 0, 0, 0)),
		"reply on big range": cat([]byte{h}, entry(0, modeReply, 0, 0, 0)),
		"ids on big range":   cat([]byte{h}, entry(0, modeIDs, 0, 0)),
		"ids count lies":     cat([]byte{h}, entry(0, modeIDs, 0, 3), make([]byte, 64)),
		"time overflow":      cat([]byte{h, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0}),
		"bad raw time":       cat([]byte{h, 64, 0}),
		"oversized":          cat([]byte{h}, entry(0, modeFingerprint, 0), fp8, make([]byte, 256<<10)),
	}
	for name, msg := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := NewSession(set, Options{}).Next(msg)
			if !errors.Is(err, ErrBadMessage) {
				t.Fatalf("got %v, want ErrBadMessage", err)
			}
		})
	}
	t.Run("reply index out of range", func(t *testing.T) {
		// Over a small range: bound at the 5th item's time.
		s := NewSession(set, Options{})
		w := newWriter(8)
		neg := bound{kind: boundNegInf}
		up := bound{kind: boundFinite, time: set.items[5].Time}
		w.put(&neg, &up, modeReply)
		w.buf = append(w.buf, 0, 1, 5) // no extras, one missing: index 5 of 5
		if _, err := s.Next(w.buf); !errors.Is(err, ErrBadMessage) {
			t.Fatalf("got %v, want ErrBadMessage", err)
		}
	})
	t.Run("reply lists an id we have", func(t *testing.T) {
		s := NewSession(set, Options{})
		w := newWriter(8)
		neg := bound{kind: boundNegInf}
		up := bound{kind: boundFinite, time: set.items[5].Time}
		w.put(&neg, &up, modeReply)
		w.buf = append(w.buf, 2)
		w.buf = append(w.buf, set.items[2].ID[:]...)
		w.buf = append(w.buf, 0)
		if _, err := s.Next(w.buf); !errors.Is(err, ErrBadMessage) {
			t.Fatalf("got %v, want ErrBadMessage", err)
		}
	})
}

// TestRoundLimit: a peer that never stops is cut off after MaxRounds.
func TestRoundLimit(t *testing.T) {
	a, b := pair(3, 1000, 10, 10, year)
	s := NewSession(NewSet(a), Options{MaxRounds: 5})
	msg, _ := NewSession(NewSet(b), Options{}).Start()
	var err error
	for k := 0; k < 10 && err == nil; k++ {
		_, err = s.Next(msg) // the same differing fingerprint, again and again
	}
	if !errors.Is(err, ErrTooManyRounds) {
		t.Fatalf("got %v, want ErrTooManyRounds", err)
	}
}

func TestStartTwice(t *testing.T) {
	s := NewSession(NewSet(nil), Options{})
	if _, err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
}

// TestSplitBound: the bound chosen between two adjacent items separates
// them and survives encoding.
func TestSplitBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	for range 10_000 {
		base := rng.Int64N(1<<50) - 1<<49
		x := randItem(rng, base, 1+rng.Int64N(1<<uint(rng.IntN(45))))
		y := randItem(rng, base, 1+rng.Int64N(1<<uint(rng.IntN(45))))
		if rng.IntN(4) == 0 {
			y.Time = x.Time
			copy(y.ID[:rng.IntN(32)], x.ID[:])
		}
		if compareItems(x, y) == 0 {
			continue
		}
		if compareItems(x, y) > 0 {
			x, y = y, x
		}
		w := newWriter(8)
		w.base = base - rng.Int64N(1000)
		start := w.base
		b := w.splitBound(x, y)
		if !b.above(x) || b.above(y) {
			t.Fatalf("bound %+v does not separate %v and %v", b, x, y)
		}
		w.bound(&b, modeSkip)
		r := &reader{buf: w.buf[1:], base: start}
		got, mode, err := r.entry()
		if err != nil || mode != modeSkip || compareBounds(&got, &b) != 0 || len(r.buf) != 0 {
			t.Fatalf("decoded %+v, %d, %v; want %+v", got, mode, err, b)
		}
	}
}

// hostileIDs is a message a peer could send in round r: as many one-ID
// ranges of made-up IDs as fit, then a fingerprint that differs, so that
// the session goes on to the next round.
func hostileIDs(r int, max int, rng *rand.Rand) []byte {
	msg := []byte{byte(headerBase + 8)}
	msg = binary.AppendUvarint(msg, 32) // s = 31, q = 0: a varint delta follows
	msg = binary.AppendUvarint(msg, uint64(r)*1_000_000+1)
	msg = append(msg, modeSkip*33)
	for len(msg)+3+32+2+8 <= max {
		msg = append(msg, 33, modeIDs*33, 1) // delta 1, ids, one
		for range 4 {
			msg = binary.LittleEndian.AppendUint64(msg, rng.Uint64())
		}
	}
	msg = append(msg, 0, modeFingerprint*33)
	return append(msg, make([]byte, 8)...)
}

// TestSkipNeed: a side with SkipNeed keeps nothing of the IDs a peer lists,
// however many rounds of them it sends, and a reconciliation with it still
// settles both sides' Have and the other's Need.
func TestSkipNeed(t *testing.T) {
	a, b := pair(21, 5000, 800, 700, year)
	o := run(t, NewSet(a), NewSet(b), Options{}, Options{SkipNeed: true})
	if !slices.Equal(o.a.Have(), minus(a, b)) || !slices.Equal(o.a.Need(), minus(b, a)) || !slices.Equal(o.b.Have(), minus(b, a)) {
		t.Fatal("Have and Need differ from the oracle")
	}
	if n := len(o.b.Need()); n != 0 {
		t.Fatalf("Need of a SkipNeed side lists %d IDs", n)
	}

	set := NewSet(b[:100])
	rng := rand.New(rand.NewPCG(22, 1))
	for _, skip := range []bool{false, true} {
		opts := Options{MaxMessage: 64 << 10, MaxRounds: 8, SkipNeed: skip}
		x := NewSession(set, opts)
		for r := range opts.MaxRounds {
			if _, err := x.Next(hostileIDs(r, opts.MaxMessage, rng)); err != nil || x.Done() {
				t.Fatalf("round %d: %v, done %v", r, err, x.Done())
			}
		}
		held := len(x.need) + len(x.needRanges)
		if skip && held != 0 || !skip && held < opts.MaxRounds*opts.MaxMessage/40 {
			t.Fatalf("SkipNeed %v: %d IDs and ranges held after %d rounds", skip, held, opts.MaxRounds)
		}
	}
}
