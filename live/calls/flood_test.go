package calls

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// idleService is a service on a node of its own whose Serve does not run:
// what it queues to pass on or to serve stays queued, so that a test sees
// what a flood leaves room for while the queues are at their fullest (a
// next hop that reads slowly, calls that take their time).
func idleService(t *testing.T) *Service {
	t.Helper()
	var ident *mesh.Identity
	node := meshtest.NewNetwork().NewNode(t, "d", meshtest.Options{Configure: func(c *mesh.Config) { meshtest.Fast(c); ident = c.Identity }})
	cfg := DefaultConfig()
	cfg.Identity, cfg.Node = ident, node
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func newIDs(t *testing.T, n int) []*mesh.Identity {
	t.Helper()
	out := make([]*mesh.Identity, n)
	for i := range out {
		id, err := mesh.NewIdentity()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = id
	}
	return out
}

// routedTo is a routed call message from sender through neighbour prev to
// svc, signed by sender.
func routedTo(t *testing.T, svc *Service, sender *mesh.Identity, prev mesh.ID, body []byte) *envelope {
	t.Helper()
	e := envelope{Path: []mesh.ID{sender.ID, prev, svc.self}, Hop: 2, Time: time.Now().UnixMilli(), Nonce: make([]byte, nonceLen), Body: body}
	if _, err := rand.Read(e.Nonce); err != nil {
		t.Fatal(err)
	}
	var err error
	if e.Key, e.Sig, err = sign(sender.Key, envSigned(&e)); err != nil {
		t.Fatal(err)
	}
	return &e
}

// TestAnswersQueuedByNeighbour: a hostile neighbour that sends routed
// calls from made-up senders and does not read the answers (its link
// stalls) fills only its own share of the answers this node queues; the
// answer to an honest sender through another neighbour still goes out.
// (When every answer this node made counted as its own, such a neighbour
// filled that one share, and every routed call to this node went
// unanswered.)
func TestAnswersQueuedByNeighbour(t *testing.T) {
	d := idleService(t)
	ids := newIDs(t, 3)
	hostile, honestHop, honest := ids[0].ID, ids[1].ID, ids[2]
	minted := newIDs(t, 64)
	why := errors.New(strings.Repeat("x", maxErrText))
	queued, refused := 0, 0
	for i := 0; refused < 100 && i < 4*maxRelayBytes/maxErrText; i++ {
		before := d.relay.queued()
		d.answer(routedTo(t, d, minted[i%len(minted)], hostile, nil), nil, why)
		if d.relay.queued() > before {
			queued++
		} else {
			refused++
		}
	}
	if refused == 0 {
		t.Fatalf("all %d answers to the hostile neighbour were queued", queued)
	}
	d.answer(routedTo(t, d, honest, honestHop, nil), nil, why)
	d.relay.mu.Lock()
	q := d.relay.hops[honestHop]
	d.relay.mu.Unlock()
	if q == nil || q.prevs.len() == 0 {
		t.Fatalf("the answer to an honest sender was dropped beside %d answers queued for a hostile neighbour", queued)
	}
	t.Logf("answers for the hostile neighbour: %d queued, %d refused", queued, refused)
}

// TestServingByNeighbour: routed calls from thousands of made-up senders,
// all brought by one neighbour, fill only that neighbour's share of the
// calls waiting to be served here, and an honest sender's call through
// another neighbour is served next, not refused or queued behind them.
func TestServingByNeighbour(t *testing.T) {
	d := idleService(t)
	ids := newIDs(t, 3)
	hostile, honestHop, honest := ids[0], ids[1].ID, ids[2]
	body := make([]byte, MaxMessage)
	// The signatures are not checked here: the calls are as takeRoute
	// hands them on, and minting keys costs an attacker nothing.
	mk := func(sender mesh.ID, prev mesh.ID) *envelope {
		return &envelope{Path: []mesh.ID{sender, prev, d.self}, Hop: 2, Nonce: make([]byte, nonceLen), Body: body}
	}
	minted := newIDs(t, 2*maxServingQueue/MaxMessage)
	taken := 0
	for _, m := range minted {
		if d.serving.add(mk(m.ID, hostile.ID)) {
			taken++
		}
	}
	if taken == len(minted) {
		t.Fatalf("all %d calls of made-up senders were queued", taken)
	}
	if !d.serving.add(mk(honest.ID, honestHop)) {
		t.Fatalf("an honest sender's call was refused beside %d of made-up senders", taken)
	}
	for i := range 2 {
		e := d.serving.take("")
		if e == nil {
			t.Fatal("nothing to serve")
		}
		if e.Path[0] == honest.ID {
			t.Logf("made-up senders: %d of %d calls queued; the honest call served %s", taken, len(minted), []string{"first", "second"}[i])
			return
		}
	}
	t.Fatalf("the honest call was not among the first two served beside %d of made-up senders", taken)
}

// TestSeenSendersByNeighbour: a neighbour that brings routed calls from
// more made-up senders than the replay memory holds takes only its share
// of the memory: an honest sender through another neighbour is still
// taken. (When the memory was one pool, such a neighbour made this node
// refuse every new sender's routed calls for minutes.)
func TestSeenSendersByNeighbour(t *testing.T) {
	d := idleService(t)
	ids := newIDs(t, 3)
	hostile, honestHop, honest := ids[0].ID, ids[1].ID, ids[2]
	body := []byte(`{"op":"check","room":"yard","session":"s"}`)
	minted := newIDs(t, maxSeenSenders+16)
	taken := 0
	for _, m := range minted {
		if _, err := d.takeRoute(mustJSON(t, routedTo(t, d, m, hostile, body)), hostile, time.Now()); err == nil {
			taken++
		}
	}
	if taken == len(minted) {
		t.Fatalf("all %d made-up senders were remembered", taken)
	}
	e, err := d.takeRoute(mustJSON(t, routedTo(t, d, honest, honestHop, body)), honestHop, time.Now())
	if err != nil || e == nil {
		t.Fatalf("an honest sender's routed call beside %d made-up senders: %v", taken, err)
	}
	t.Logf("made-up senders remembered: %d of %d", taken, len(minted))
}

func mustJSON(t *testing.T, e *envelope) []byte {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
