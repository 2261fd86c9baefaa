package calls

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestForgedFailureNotices: a hostile node in the middle of the routes
// between members' nodes and the room's owner claims, twice over, that it
// could not pass a message on, while it passes the message on all the
// same, or holds it and passes it on later. Each sender then sends the
// message again over a link of its own, and the owner and the other
// member's node act on it once: a leave held back until the page has
// joined again does not free its new seat (the other page hears no
// "other_left"), and an offer reaches the other page once. (Before
// messages were numbered, the destination acted on both copies.)
func TestForgedFailureNotices(t *testing.T) {
	testutil.CheckGoroutines(t)
	// Links only through the hostile node; the members' nodes may link to
	// the owner when they ask to.
	tn := &testNet{nw: meshtest.NewNetwork(), meshConf: func(c *mesh.Config) { c.ManualLinks = true }}
	for i := range 3 {
		tn.add(t, fmt.Sprintf("n%d", i))
	}
	h := &hostileRelay{answers: make(map[string]int)}
	h.node = tn.nw.NewNode(t, "evil", meshtest.Options{Configure: func(c *mesh.Config) { meshtest.Fast(c); c.ManualLinks = true }})
	h.node.Handle(RouteProtocol, mesh.HandlerFunc(h.serve))
	h.set(passOut, passBack)
	ctx := context.Background()
	for _, n := range tn.nodes {
		testutil.WaitFor(t, wait, "a link to the hostile node", func() bool { return h.node.Connect(ctx, n.ID()) == nil })
	}
	tn.converge(t)
	const ownerIdx = 1
	owner := tn.nodes[ownerIdx].ID()
	testutil.WaitFor(t, wait, "routes to the owner through the hostile node", func() bool {
		return tn.svcs[0].pathTo(owner) != nil && tn.svcs[2].pathTo(owner) != nil
	})
	rooms := tn.roomsOwnedBy(t, ownerIdx, "porch", 2)

	var mu sync.Mutex
	var held, signals []envelope
	op := func(e envelope) string {
		var r request
		json.Unmarshal(e.Body, &r)
		return r.Op
	}
	// forge is the hop's claim, twice, that it could not pass e on.
	forge := func(e envelope) []envelope {
		f := envelope{Path: e.Path, Hop: e.Hop - 1, Back: true, Nonce: e.Nonce, Fail: "evil: no link"}
		return []envelope{f, f}
	}
	h.set(func(e envelope) []envelope {
		mu.Lock()
		defer mu.Unlock()
		switch op(e) {
		case opLeave:
			held = append(held, e)
			return forge(e)
		case opSignal:
			signals = append(signals, e)
			return append(forge(e), passOut(e)...)
		}
		return passOut(e)
	}, passBack)

	t.Run("leave held back", func(t *testing.T) {
		room := rooms[0]
		a, b := tn.open(t, 0), tn.open(t, ownerIdx)
		joinPair(t, room, a, b)
		if err := tn.svcs[0].Leave(ctx, a.ID(), room); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		n := len(held)
		mu.Unlock()
		if n != 1 {
			t.Fatalf("the hostile node held %d leaves, want 1: the test shows nothing", n)
		}
		for ev := next(t, b); ev.Type != "other_left"; ev = next(t, b) {
		}
		joinPair(t, room, a, b)
		drain(a)
		drain(b)

		mu.Lock()
		leave := held[0]
		mu.Unlock()
		out := passOut(leave)[0]
		raw, _ := json.Marshal(out)
		if err := h.node.Send(ctx, owner, RouteProtocol, raw); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, wait, "the owner to answer the leave held back", func() bool { return h.answersTo(leave.Nonce) > 0 })
		flushJobs(t, tn.svcs[ownerIdx])
		for _, ev := range drain(b) {
			if ev.Type == "other_left" || ev.Type == "other_joined" {
				t.Fatalf("the other page heard %+v when the leave held back arrived", ev)
			}
		}
		if got := tn.svcs[ownerIdx].own.members(room); len(got) != 2 {
			t.Fatalf("the owner holds %+v after the leave held back arrived", got)
		}
		if p := peerOf(b); p == nil || *p != member(a) {
			t.Fatalf("b's peer is %+v", p)
		}
	})

	t.Run("offer passed on and claimed lost", func(t *testing.T) {
		room := rooms[1]
		c, d := tn.open(t, 2), tn.open(t, ownerIdx)
		joinPair(t, room, c, d)
		sctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		if err := tn.svcs[2].Signal(sctx, c.ID(), room, Signal{Type: "offer", SDP: sdpOffer}); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		var sig envelope
		if len(signals) > 0 {
			sig = signals[0]
		}
		mu.Unlock()
		if sig.Nonce == nil {
			t.Fatal("the offer did not go through the hostile node: the test shows nothing")
		}
		testutil.WaitFor(t, wait, "the answer to the offer passed on", func() bool { return h.answersTo(sig.Nonce) > 0 })
		offers := 0
		for _, ev := range drain(d) {
			if ev.Type == "offer" {
				offers++
			}
		}
		if offers != 1 {
			t.Fatalf("the other page heard the offer %d times, want once", offers)
		}
	})
	h.set(passOut, passBack)
}

// TestTakenOnce: a destination takes each numbered message of a sender
// once, however the thousands of them overtake each other within the
// window and however often each comes again; it gives a copy the first
// one's answer while it keeps it, refuses numbers below the window, serves
// again a message whose serving was cut short, and holds a bounded number
// of senders, forgetting those gone quiet.
func TestTakenOnce(t *testing.T) {
	var tk taken
	now := time.Now()
	const n = 20000
	base := uint64(now.UnixNano())
	rng := rand.New(rand.NewPCG(1, 2))
	// A model: the numbers taken. Each message arrives up to three times,
	// the copies of the window's messages in any order.
	model := map[uint64]bool{}
	var top uint64
	acted := 0
	for start := uint64(0); start < n; start += seqWindow / 2 {
		var batch []uint64
		for i := start; i < min(start+seqWindow/2, n); i++ {
			for range 1 + rng.IntN(3) {
				batch = append(batch, base+i)
			}
		}
		rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
		for _, seq := range batch {
			m, first, err := tk.begin("a", seq, false, now)
			switch {
			case first && model[seq]:
				t.Fatalf("message %d taken twice", seq-base)
			case first:
				model[seq] = true
				top = max(top, seq)
				acted++
				tk.end(m, []byte(fmt.Sprint(seq)), nil, false)
			case err == nil:
				<-m.done
				if string(m.out) != fmt.Sprint(seq) {
					t.Fatalf("a copy of message %d got the answer %q", seq-base, m.out)
				}
			case !model[seq] && seq+seqWindow > top:
				t.Fatalf("message %d within the window refused: %v", seq-base, err)
			}
		}
	}
	if acted != n {
		t.Fatalf("%d of %d messages taken", acted, n)
	}
	// Everything again: nothing is taken.
	for i := range uint64(n) {
		if _, first, _ := tk.begin("a", base+i, false, now); first {
			t.Fatalf("message %d taken again", i)
		}
	}
	sd := tk.senders["a"]
	if len(sd.msgs) > maxAnswersPerSender {
		t.Fatalf("%d answers kept, bound %d", len(sd.msgs), maxAnswersPerSender)
	}
	// A serving cut short is forgotten: the next copy is served.
	m, first, _ := tk.begin("a", base+n, false, now)
	if !first {
		t.Fatal("a new message not taken")
	}
	tk.end(m, nil, context.Canceled, true)
	if _, first, _ := tk.begin("a", base+n, false, now); !first {
		t.Fatal("a copy of a message whose serving was cut short was not served")
	}
	// A number far ahead moves the window; the old ones are refused.
	if _, first, _ := tk.begin("a", base+10*n, false, now); !first {
		t.Fatal("a message far ahead not taken")
	}
	if _, first, err := tk.begin("a", base+n+1, false, now); first || !errors.Is(err, errSeqTooLate) {
		t.Fatalf("a message below the window: %v, %v", first, err)
	}
	// Bounded senders, forgotten when quiet.
	for i := range maxSeqSenders - 1 {
		if _, _, err := tk.begin(mesh.ID(fmt.Sprint("s", i)), 1, false, now); err != nil {
			t.Fatalf("sender %d: %v", i, err)
		}
	}
	if _, _, err := tk.begin("one-too-many", 1, false, now); err != errSeqFull {
		t.Fatalf("sender over the bound: %v", err)
	}
	later := now.Add(seqKeep + time.Second)
	if _, first, err := tk.begin("fresh", 1, false, later); !first || err != nil {
		t.Fatalf("a sender after the others went quiet: %v, %v", first, err)
	}
	if len(tk.senders) != 1 {
		t.Fatalf("%d senders remembered after the others went quiet", len(tk.senders))
	}
	if _, _, err := tk.begin("a", 0, false, later); err == nil {
		t.Fatal("a message without a number taken")
	}
}

// TestSeqSharesApart: senders made up by the thousand behind hostile
// neighbours (each routed message signed under a fresh key, which costs
// nothing) fill the routed share of the message numbers' memory, and
// nodes that linked under fresh keys fill the direct share; neither locks
// out the other kind, and this node's own neighbour still joins a room it
// owns. (With one table for both, a full table refused every new sender
// for seqKeep, the neighbours' joins included.)
func TestSeqSharesApart(t *testing.T) {
	testutil.CheckGoroutines(t)
	tn := newTestNet(t, 2)
	room := tn.roomOwnedBy(t, 1, "crowd")
	tk := &tn.svcs[1].taken
	now := time.Now()
	for i := range maxSeqSenders {
		m, _, err := tk.begin(mesh.ID(fmt.Sprint("routed", i)), 1, false, now)
		if err != nil {
			t.Fatalf("routed sender %d of %d: %v", i, maxSeqSenders, err)
		}
		tk.end(m, nil, nil, false)
	}
	if _, _, err := tk.begin("routed-one-too-many", 1, false, now); err != errSeqFull {
		t.Fatalf("a routed sender over its share: %v", err)
	}
	a := tn.open(t, 0)
	res, err := tn.svcs[0].Join(context.Background(), a.ID(), room)
	if err != nil || res.State != "joined" {
		t.Fatalf("a neighbour's join with the routed share full: %+v, %v", res, err)
	}
	for i := range maxSeqDirect - 1 { // the neighbour holds one place
		if _, _, err := tk.begin(mesh.ID(fmt.Sprint("direct", i)), 1, true, now); err != nil {
			t.Fatalf("direct sender %d of %d: %v", i, maxSeqDirect, err)
		}
	}
	if _, _, err := tk.begin("direct-one-too-many", 1, true, now); err != errSeqFull {
		t.Fatalf("a direct sender over its share: %v", err)
	}
	// Both shares are freed as their senders go quiet (on a table of
	// its own: the pages' renewals go on meanwhile).
	var quiet taken
	for i := range maxSeqDirect {
		quiet.begin(mesh.ID(fmt.Sprint("direct", i)), 1, true, now)
	}
	later := now.Add(seqKeep + time.Second)
	if _, first, err := quiet.begin("direct-fresh", 1, true, later); !first || err != nil {
		t.Fatalf("a direct sender after the others went quiet: %v, %v", first, err)
	}
	if quiet.direct != 1 || len(quiet.senders) != 1 {
		t.Fatalf("%d senders, %d direct, after the others went quiet", len(quiet.senders), quiet.direct)
	}
}
