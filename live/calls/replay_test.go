package calls

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
)

// TestRoutedReplayPerSender: one node that sends more routed calls with
// its own valid key than the whole replay memory used to hold does not
// make the destination refuse the routed calls of the dozens of other
// nodes, and neither its calls nor theirs can be replayed, the ones pushed
// out of its memory included.
func TestRoutedReplayPerSender(t *testing.T) {
	tn := newTestNet(t, 2)
	dst, svc := tn.nodes[1].ID(), tn.svcs[1]
	relay := tn.nodes[0].ID()
	body, _ := json.Marshal(request{Op: opLeave, Room: "yard", Session: "s1"})
	mk := func(from *mesh.Identity, ms int64) []byte {
		t.Helper()
		e := envelope{Path: []mesh.ID{from.ID, relay, dst}, Hop: 2, Time: ms, Nonce: make([]byte, nonceLen), Body: body}
		if _, err := rand.Read(e.Nonce); err != nil {
			t.Fatal(err)
		}
		var err error
		if e.Key, e.Sig, err = sign(from.Key, envSigned(&e)); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(e)
		return b
	}
	send := func(b []byte) error {
		_, err := svc.takeRoute(b, relay, time.Now())
		return err
	}
	flooder, _ := mesh.NewIdentity()
	base := time.Now().UnixMilli()
	const flood = 20000 // more than the 16,384 the shared memory held
	var first, last []byte
	taken := 0
	for i := range flood {
		b := mk(flooder, base+int64(i)) // a fresh time each
		if send(b) == nil {
			taken++
		}
		if i == 0 {
			first = b
		}
		last = b
	}
	for name, b := range map[string][]byte{"first": first, "last": last} {
		if err := send(b); err == nil {
			t.Fatalf("the flooder's %s message was taken again", name)
		}
	}
	// The flood's times run ahead of the clock; the others' are now.
	for i := range 64 {
		id, _ := mesh.NewIdentity()
		b := mk(id, time.Now().UnixMilli())
		if err := send(b); err != nil {
			t.Fatalf("node %d's routed call after the flood: %v", i, err)
		}
		if err := send(b); err == nil {
			t.Fatalf("node %d's routed call was taken twice", i)
		}
	}
	svc.seen.mu.Lock()
	held := len(svc.seen.m)
	svc.seen.mu.Unlock()
	if want := 65 * maxSeenPerSender; held > want {
		t.Fatalf("replay memory holds %d messages of 65 senders, bound %d", held, want)
	}
	t.Logf("replay memory after %d (%d taken) + 64 routed calls: %d messages", flood, taken, held)
}

// TestSeenWindow: a sender's messages that arrive out of order within its
// window are taken, a replay of any is refused whether or not it is still
// remembered, and senders whose messages are all too old are forgotten.
func TestSeenWindow(t *testing.T) {
	var s seen
	now := time.Now()
	a, b := mesh.ID("a"), mesh.ID("b")
	nonce := func(i int) []byte { return fmt.Appendf(nil, "%016d", i) }
	// 4 windows' worth, each pair swapped: all taken.
	n := 4 * maxSeenPerSender
	for i := 0; i < n; i += 2 {
		for _, j := range []int{i + 1, i} {
			if err := s.first(a, "p", nonce(j), int64(j), now); err != nil {
				t.Fatalf("message %d: %v", j, err)
			}
		}
	}
	for i := range n {
		if s.first(a, "p", nonce(i), int64(i), now) == nil {
			t.Fatalf("replay of message %d taken", i)
		}
	}
	if err := s.first(b, "p", nonce(0), 0, now); err != nil {
		t.Fatalf("another sender's first message: %v", err)
	}
	if len(s.m) != maxSeenPerSender+1 || len(s.senders) != 2 {
		t.Fatalf("holds %d messages of %d senders", len(s.m), len(s.senders))
	}
	later := now.Add(2*routeMaxAge + time.Second)
	if err := s.first(b, "p", nonce(1), 1, later); err != nil {
		t.Fatal(err)
	}
	if len(s.senders) != 1 || len(s.m) != 1 {
		t.Fatalf("after everything of a went stale: %d messages of %d senders", len(s.m), len(s.senders))
	}
	// The table of senders is bounded, and so is each neighbour's share.
	for i := range maxSeenSendersPerPrev - 1 {
		if err := s.first(mesh.ID(fmt.Sprint("p", i)), "p", nonce(0), 0, later); err != nil {
			t.Fatalf("sender %d: %v", i, err)
		}
	}
	if err := s.first("one-too-many-of-p", "p", nonce(0), 0, later); err == nil {
		t.Fatalf("%d senders taken from one neighbour", len(s.senders))
	}
	for i := range maxSeenSenders - maxSeenSendersPerPrev {
		if err := s.first(mesh.ID(fmt.Sprint("s", i)), mesh.ID(fmt.Sprint("q", i%8)), nonce(0), 0, later); err != nil {
			t.Fatalf("sender %d: %v", i, err)
		}
	}
	if err := s.first("one-too-many", "r", nonce(0), 0, later); err == nil {
		t.Fatalf("%d senders taken", len(s.senders))
	}
}
