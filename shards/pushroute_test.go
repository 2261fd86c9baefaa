package shards

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// TestPushRoutedOfferReplay: a receiver that takes pushes from the source
// alone takes the source's offer routed through a member of the group
// before it (the signature says who offered it); but not one past its
// signed expiry, nor, once the push ended there, the same offer passed
// on again by that member; after the push went idle there it takes the
// source's new offer, and none of the source's earlier routed messages.
func TestPushRoutedOfferReplay(t *testing.T) {
	// A span of 10: groups 0-4 and 5-9; the receiver is member 5, member
	// 0 passes the source's messages on to it.
	const n, self, fwd = 10, 5, 0
	source, key := fuzzSigner(t), fuzzSigner(t)
	o := fuzzOffer(t)
	o.Plan, o.Members = PlanSpan, nil
	stub := &pushStubNode{id: key.ID()}
	for k := range n {
		id := testID(t)
		if k == self {
			id = stub.id
		}
		o.Members = append(o.Members, id)
	}
	cfg := DefaultPushConfig()
	cfg.Accept = AcceptFrom(source.ID())
	var opened atomic.Int32
	p := newPushes(signingStub{stub, key}, nil, cfg, nil, func(context.Context, mesh.ID, offer) (pieceSink, error) {
		opened.Add(1)
		return &memSink{m: o.Manifest, held: NewBitfield(o.Manifest.NumPieces())}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { p.serve(ctx); close(served) }()
	defer func() { cancel(); <-served }()
	<-p.started
	offerMsg, err := encodeOffer(o)
	if err != nil {
		t.Fatal(err)
	}
	send := func(seq uint64, expires time.Time, inner []byte) ([]byte, error) {
		t.Helper()
		sig, err := source.Sign(sigDown, downSigned(o.Push, self, seq, expires.Unix(), inner))
		if err != nil {
			t.Fatal(err)
		}
		r := routed{source: source.ID(), path: []int{self}, seq: seq, expires: expires.Unix(), sig: sig, inner: inner}
		return p.ServeMesh(ctx, &mesh.Message{From: o.Members[fwd], Protocol: ProtoPush, Payload: r.encode(o.Push), Request: true})
	}
	// taken reports whether the receiver answered message seq: taken,
	// signed.
	taken := func(seq uint64, ans []byte, err error) bool {
		if err != nil {
			return false
		}
		k, aerr := checkAnswer(o.Push, []int{self}, seq, ans, o.Members)
		return k == self && aerr == nil
	}
	receiving := func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.in[o.Push] != nil
	}
	fresh := time.Now().Add(routeTTL)
	// Expired: refused, as a stale offer (the source offers directly).
	ans, err := send(1, time.Now().Add(-time.Minute), offerMsg)
	if _, aerr := checkAnswer(o.Push, []int{self}, 1, ans, o.Members); err != nil || !refusal(aerr) || !strings.Contains(aerr.Error(), errStaleOffer.Error()) || receiving() {
		t.Fatalf("an expired routed offer: %v, %v; receiving %v", err, aerr, receiving())
	}
	// The source's, through member 0: taken.
	ans, err = send(2, fresh, offerMsg)
	if _, aerr := checkAnswer(o.Push, []int{self}, 2, ans, o.Members); err != nil || aerr != nil || !receiving() {
		t.Fatalf("the source's routed offer: %v, %v; receiving %v", err, aerr, receiving())
	}
	// The end, then the offer passed on again: not taken.
	end := append([]byte{pushEnd}, o.Push[:]...)
	if _, err := send(3, fresh, end); err != nil || receiving() {
		t.Fatalf("the routed end: %v; receiving %v", err, receiving())
	}
	if ans, err := send(2, fresh, offerMsg); taken(2, ans, err) || receiving() || opened.Load() != 1 {
		t.Fatalf("the offer replayed after the end: %q, %v; receiving %v, %d sinks opened", ans, err, receiving(), opened.Load())
	}
	// Nor one the source signed after the receiver's last (member 0
	// kept it back): the source sends nothing after the end.
	if ans, err := send(9, fresh, offerMsg); taken(9, ans, err) || receiving() {
		t.Fatalf("an offer kept back and passed on after the end: %q, %v; receiving %v", ans, err, receiving())
	}
	if penalties := stub.penalties.Load(); penalties != 0 {
		t.Errorf("member 0 scored down %d times for passing on what the source signed", penalties)
	}

	// A push that went idle here (forgotten, not ended) is taken again
	// on the source's new offer, but not on the old one.
	o.Push[0]++
	if offerMsg, err = encodeOffer(o); err != nil {
		t.Fatal(err)
	}
	if ans, err := send(1, fresh, offerMsg); !taken(1, ans, err) || !receiving() {
		t.Fatalf("the second push's offer: %q, %v", ans, err)
	}
	p.mu.Lock()
	ip := p.in[o.Push]
	delete(p.in, o.Push)
	p.forget(ip, false)
	p.mu.Unlock()
	ip.cancel()
	if ans, err := send(1, fresh, offerMsg); taken(1, ans, err) || receiving() {
		t.Fatalf("the offer replayed after the push went idle: %q, %v", ans, err)
	}
	if ans, err := send(5, fresh, offerMsg); !taken(5, ans, err) || !receiving() {
		t.Fatalf("the source's new offer after the push went idle: %q, %v", ans, err)
	}
	// An order the source sent before (seq 4, under the new offer's 5)
	// is not taken.
	if ans, err := send(4, fresh, encodeOrder(o.Push, 1, []uint32{0})); taken(4, ans, err) {
		t.Fatal("an order older than the new offer was taken")
	}
}

// signingStub is a pushStubNode that signs with key.
type signingStub struct {
	*pushStubNode
	key *mesh.Node
}

func (s signingStub) Sign(context string, msg []byte) ([]byte, error) {
	return s.key.Sign(context, msg)
}

// TestPushRoutedOfferForgedForUnknownPush: dozens of hostile peers each
// send a member of a span's first group an offer for a member after it,
// of a push this node does not receive (a push id made up), with a
// signature that is not the source's. Each is refused as forged, and its
// sender scored down, rather than held in awaitJoin (this node waits
// there for its own offer of a real push) and then let go as an unknown
// push, unpunished.
func TestPushRoutedOfferForgedForUnknownPush(t *testing.T) {
	checkPushGoroutines(t)
	const n, hostile = 10, 48
	source := testID(t)
	o := fuzzOffer(t)
	o.Plan, o.Members = PlanSpan, nil
	stub := &pushStubNode{id: testID(t)}
	o.Members = append(o.Members, stub.id)
	for range n - 1 {
		o.Members = append(o.Members, testID(t))
	}
	cfg := DefaultPushConfig()
	cfg.Accept = AcceptFrom(source)
	p := newPushes(stub, nil, cfg, nil, func(context.Context, mesh.ID, offer) (pieceSink, error) {
		t.Error("a forged offer opened a sink")
		return nil, errors.New("no sink")
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	served := make(chan struct{})
	go func() { p.serve(ctx); close(served) }()
	defer func() { cancel(); <-served }()
	<-p.started
	var wg sync.WaitGroup
	errs := make([]error, hostile)
	for i := range hostile {
		forger := fuzzSigner(t)
		o := o
		o.Push = pushID{0xf0, byte(i)}
		inner, err := encodeOffer(o)
		if err != nil {
			t.Fatal(err)
		}
		expires := time.Now().Add(routeTTL).Unix()
		sig, err := forger.Sign(sigDown, downSigned(o.Push, 5, 1, expires, inner))
		if err != nil {
			t.Fatal(err)
		}
		msg := routed{source: source, path: []int{0, 5}, seq: 1, expires: expires, sig: sig, inner: inner}.encode(o.Push)
		wg.Go(func() {
			_, errs[i] = p.ServeMesh(ctx, &mesh.Message{From: forger.ID(), Protocol: ProtoPush, Payload: msg, Request: true})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, ErrBadFrame) {
			t.Errorf("forged offer %d: %v, want %v", i, err, ErrBadFrame)
		}
	}
	if got := stub.penalties.Load(); got != hostile {
		t.Errorf("%d forgers scored down, want %d", got, hostile)
	}
}

// failTogether is a signing stub whose push calls fail once calls of
// them are under way at once: calls made together that fail together.
type failTogether struct {
	signingStub
	calls   int
	mu      sync.Mutex
	arrived int
	all     chan struct{}
}

func (f *failTogether) Request(ctx context.Context, _ mesh.ID, _ string, _ []byte, _ ...mesh.SendOption) ([]byte, error) {
	f.mu.Lock()
	if f.arrived++; f.arrived == f.calls {
		close(f.all)
	}
	f.mu.Unlock()
	select {
	case <-f.all:
	case <-ctx.Done():
	}
	return nil, context.DeadlineExceeded
}

// TestPushTurnOncePerFailedRoute: routed calls to a member that went the
// same way and failed together move its route on once (turn), and the
// next failure moves it again. Counted each, 4 failed calls of a repair
// check moved a group of 8 on by 4, and a group of 4 back round to the
// forwarder that failed them.
func TestPushTurnOncePerFailedRoute(t *testing.T) {
	const n, k, together = 16, 12, 4 // span: groups 0-7 and 8-15
	o := fuzzOffer(t)
	o.Plan, o.Members = PlanSpan, nil
	for range n {
		o.Members = append(o.Members, testID(t))
	}
	stub := &failTogether{signingStub: signingStub{&pushStubNode{id: testID(t)}, fuzzSigner(t)}, calls: together, all: make(chan struct{})}
	p := newPushes(stub, nil, DefaultPushConfig(), nil, nil)
	op := newOutPush(o, nil)
	for j := range op.joined {
		op.joined[j] = true
	}
	first := func() int {
		op.mu.Lock()
		defer op.mu.Unlock()
		r := op.route(k, false)
		if len(r) != 2 || r[1] != k {
			t.Fatalf("route to %d = %v", k, r)
		}
		return r[0]
	}
	before := first()
	var wg sync.WaitGroup
	for range together {
		wg.Go(func() {
			if _, err := p.callMember(context.Background(), op, k, encodeOrder(o.Push, k, nil)); err == nil {
				t.Error("a call went through")
			}
		})
	}
	wg.Wait()
	op.mu.Lock()
	turn := op.turn[k]
	op.mu.Unlock()
	if turn != 1 || first() != before+1 {
		t.Fatalf("after %d calls failed together: turn %d, route through %d (was %d), want turn 1, through %d", together, turn, first(), before, before+1)
	}
	// Alone now (the barrier is open): each failed route moves it on.
	if _, err := p.callMember(context.Background(), op, k, encodeOrder(o.Push, k, nil)); err == nil {
		t.Fatal("a call went through")
	}
	if op.turn[k] != 2 || first() != before+2 {
		t.Fatalf("after one more failed call: turn %d, route through %d, want 2, through %d", op.turn[k], first(), before+2)
	}
}
