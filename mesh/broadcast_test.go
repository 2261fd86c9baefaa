package mesh_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// rawPeer is a node that plays the broadcast protocol by hand, as a
// hostile peer or one that does not check a topic would: its own
// broadcaster never sees the broadcast frames it is sent. It records the
// GRAFTs and GOSSIPs it gets and answers a GRAFT with the frame it was
// given for that id, if any.
type rawPeer struct {
	*mesh.Node
	mu     sync.Mutex
	grafts map[mesh.MsgID]int
	gossip map[mesh.MsgID]int
	ihaves map[mesh.MsgID]int
	serve  map[mesh.MsgID][]byte
	// ignore is how many GRAFTs of each id go unanswered before one is
	// answered, as when the answers are lost on the way.
	ignore int
}

func manualNode(c *mesh.Config) { meshtest.Fast(c); c.ManualLinks = true }

func newRawPeer(t *testing.T, nw *meshtest.Network, name string) *rawPeer {
	t.Helper()
	p := &rawPeer{
		Node:   nw.NewNode(t, name, meshtest.Options{Configure: manualNode}),
		grafts: map[mesh.MsgID]int{},
		gossip: map[mesh.MsgID]int{},
		ihaves: map[mesh.MsgID]int{},
		serve:  map[mesh.MsgID][]byte{},
	}
	p.Handle(mesh.BcastProto, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		if len(m.Payload) < 17 {
			return nil, nil
		}
		id := mesh.MsgID(m.Payload[1:17])
		p.mu.Lock()
		var answer []byte
		switch m.Payload[0] {
		case mesh.BcGraft:
			p.grafts[id]++
			if p.grafts[id] > p.ignore {
				answer = p.serve[id]
			}
		case mesh.BcGossip:
			p.gossip[id]++
		case mesh.BcIHave:
			for b := m.Payload[1:]; len(b) >= 16; b = b[16:] {
				p.ihaves[mesh.MsgID(b[:16])]++
			}
		}
		p.mu.Unlock()
		if answer != nil {
			p.Send(ctx, m.From, mesh.BcastProto, answer)
		}
		return nil, nil
	}))
	return p
}

func (p *rawPeer) grafted(id mesh.MsgID) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.grafts[id]
}

func (p *rawPeer) announced(id mesh.MsgID) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ihaves[id]
}

func (p *rawPeer) gossiped(id mesh.MsgID) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gossip[id]
}

func (p *rawPeer) send(t *testing.T, to mesh.ID, frame []byte) {
	t.Helper()
	p.sendProto(t, to, mesh.BcastProto, frame)
}

func (p *rawPeer) sendProto(t *testing.T, to mesh.ID, proto string, payload []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Send(ctx, to, proto, payload); err != nil {
		t.Fatal(err)
	}
}

// flush waits until n has handled every frame p sent it so far, and has
// sent p every GRAFT it decided on before: p announces a fresh id, which
// n has never seen and so grafts from p. One link is in order both ways,
// and a GRAFT decided at the same tick as an earlier one may be queued
// before or after it, so it takes two rounds.
func (p *rawPeer) flush(t *testing.T, n *mesh.Node) {
	t.Helper()
	for range 2 {
		id := randomID()
		p.send(t, n.ID(), mesh.EncodeIHave(id))
		testutil.WaitFor(t, 20*time.Second, n.Name()+" to graft a fresh id from "+p.Name(), func() bool { return p.grafted(id) > 0 })
	}
}

// serveOld has each of peers serve k new messages on c/1 from origin,
// sent 30 s ago (within MessageCacheAge, as on a catch-up), and returns
// their ids.
func serveOld(k int, origin mesh.ID, peers ...*rawPeer) []mesh.MsgID {
	ids := make([]mesh.MsgID, k)
	for i := range ids {
		id := randomID()
		ids[i] = id
		frame := mesh.EncodeGossipID(id, origin, "c/1", id[:], time.Now().Add(-30*time.Second))
		for _, p := range peers {
			p.mu.Lock()
			p.serve[id] = frame
			p.mu.Unlock()
		}
	}
	return ids
}

// announce sends to IHAVEs of ids, 500 to a frame.
func (p *rawPeer) announce(t *testing.T, to mesh.ID, ids []mesh.MsgID) {
	t.Helper()
	for i := 0; i < len(ids); i += 500 {
		p.send(t, to, mesh.EncodeIHave(ids[i:min(i+500, len(ids))]...))
	}
}

// gotAll reports whether every node d counts for took each of ids, sent
// by origin.
func gotAll(d *deliveries, ids []mesh.MsgID, origin mesh.ID) bool {
	for _, id := range ids {
		if c, _ := d.all(id, origin); !c {
			return false
		}
	}
	return true
}

func randomID() mesh.MsgID {
	var id mesh.MsgID
	rand.Read(id[:])
	return id
}

// linkAll links every peer to n by hand and waits for n to see them all.
func linkAll(t *testing.T, n *mesh.Node, peers ...*mesh.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, p := range peers {
		if err := p.Connect(ctx, n.ID()); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 20*time.Second, n.Name()+" to link every peer", func() bool {
		for _, p := range peers {
			if !hasPeer(n, p.ID()) {
				return false
			}
		}
		return true
	})
}

// offences sums the failures n holds against its peers.
func offences(n *mesh.Node) int {
	total := 0
	for _, p := range n.Peers() {
		total += p.Failures
	}
	return total
}

// A message that failed validation is remembered: when the nodes around
// pass the same copy on (they do not check the topic) and announce it
// again, it is neither checked again nor pulled again, and nobody is
// scored down again.
func TestRejectedBroadcastIsNotPulledAgain(t *testing.T) {
	nw := meshtest.NewNetwork()
	a := nw.NewNode(t, "a", meshtest.Options{Configure: manualNode})
	checks := atomic.Int64{}
	a.ValidateBroadcast("v/1", func(m mesh.BroadcastMsg) error {
		checks.Add(1)
		if string(m.Payload) == "bad" {
			return errors.New("payload is bad")
		}
		return nil
	})
	var relays []*rawPeer
	var nodes []*mesh.Node
	for i := range 6 {
		r := newRawPeer(t, nw, fmt.Sprint("r", i))
		relays = append(relays, r)
		nodes = append(nodes, r.Node)
	}
	linkAll(t, a, nodes...)

	bad := randomID()
	frame := mesh.EncodeGossipID(bad, relays[0].ID(), "v/1", []byte("bad"), time.Now())
	relays[0].send(t, a.ID(), frame)
	testutil.WaitFor(t, 10*time.Second, "a to reject the bad message and score its sender down", func() bool { return offences(a) == 1 })

	for _, r := range relays {
		r.send(t, a.ID(), frame)
		r.send(t, a.ID(), mesh.EncodeIHave(bad))
	}
	for _, r := range relays {
		r.flush(t, a)
	}
	for _, r := range relays {
		if n := r.grafted(bad); n != 0 {
			t.Errorf("a grafted the rejected message %d times from %s", n, r.Name())
		}
	}
	if n := offences(a); n != 1 {
		t.Errorf("a holds %d offences against its peers, want 1: copies of a rejected message scored them down again", n)
	}
	if n := checks.Load(); n != 1 {
		t.Errorf("a checked the rejected message %d times, want once", n)
	}
	if n := a.BroadcastStats().Rejected; n != 7 {
		t.Errorf("a counted %d copies rejected, want 7", n)
	}
}

// A hostile peer that sends a corrupt copy of a message under its id
// does not keep the real message out: it is pulled from a peer that
// announced it, which did not send the corrupt copy.
func TestCorruptCopyDoesNotKeepMessageOut(t *testing.T) {
	nw := meshtest.NewNetwork()
	a := nw.NewNode(t, "a", meshtest.Options{Configure: manualNode})
	a.ValidateBroadcast("v/1", func(m mesh.BroadcastMsg) error {
		if string(m.Payload) != "the real one" {
			return errors.New("not the message its id names")
		}
		return nil
	})
	d := countDeliveries("v/1", a)
	d.failOnDuplicate(t)
	mallory := newRawPeer(t, nw, "mallory")
	honest := newRawPeer(t, nw, "honest")
	linkAll(t, a, mallory.Node, honest.Node)

	id := randomID()
	sent := time.Now()
	honest.mu.Lock()
	honest.serve[id] = mesh.EncodeGossipID(id, honest.ID(), "v/1", []byte("the real one"), sent)
	honest.mu.Unlock()
	// Mallory has the message (she is on the tree) and races a corrupt
	// copy to a; honest only announces it, as a lazy link does.
	mallory.send(t, a.ID(), mesh.EncodeGossipID(id, honest.ID(), "v/1", []byte("forged"), sent))
	testutil.WaitFor(t, 10*time.Second, "a to reject the corrupt copy", func() bool { return offences(a) == 1 })
	mallory.send(t, a.ID(), mesh.EncodeIHave(id))
	honest.send(t, a.ID(), mesh.EncodeIHave(id))
	testutil.WaitFor(t, 10*time.Second, "a to pull the real message from honest", func() bool { c, _ := d.all(id, honest.ID()); return c })
	mallory.flush(t, a)
	if n := mallory.grafted(id); n != 0 {
		t.Errorf("a asked mallory %d times for the message she sent corrupt", n)
	}
}

// A validator that says "not yet" (this node's clock is behind the
// origin's) scores nobody down, and the message is taken when it is
// offered again once valid.
func TestNotYetValidBroadcastIsTakenLater(t *testing.T) {
	nw := meshtest.NewNetwork()
	a := nw.NewNode(t, "a", meshtest.Options{Configure: func(c *mesh.Config) {
		manualNode(c)
		c.GossipInterval = 100 * time.Millisecond
	}})
	var early atomic.Bool
	early.Store(true)
	a.ValidateBroadcast("v/1", func(m mesh.BroadcastMsg) error {
		if early.Load() {
			return fmt.Errorf("stamped ahead of this clock: %w", mesh.ErrNotYetValid)
		}
		return nil
	})
	d := countDeliveries("v/1", a)
	d.failOnDuplicate(t)
	relay := newRawPeer(t, nw, "relay")
	linkAll(t, a, relay.Node)

	id := randomID()
	frame := mesh.EncodeGossipID(id, relay.ID(), "v/1", []byte("from a fast clock"), time.Now())
	relay.mu.Lock()
	relay.serve[id] = frame
	relay.mu.Unlock()
	relay.send(t, a.ID(), frame)
	testutil.WaitFor(t, 10*time.Second, "a to drop the early message", func() bool { return a.BroadcastStats().Rejected == 1 })
	if n := offences(a); n != 0 {
		t.Fatalf("a scored the relay down %d times for a's own clock", n)
	}
	early.Store(false) // a's clock has caught up
	testutil.WaitFor(t, 20*time.Second, "a to take the message when announced again", func() bool {
		relay.send(t, a.ID(), mesh.EncodeIHave(id))
		c, _ := d.all(id, relay.ID())
		return c
	})
	if n := offences(a); n != 0 {
		t.Fatalf("a scored the relay down %d times", n)
	}
}

// ForgetBroadcast forgets only a message this node holds and match
// approves; an id it has not seen stays unseen, so the message is still
// delivered when it comes.
func TestForgetBroadcastOnlyWhatMatches(t *testing.T) {
	nw := meshtest.NewNetwork()
	a := nw.NewNode(t, "a", meshtest.Options{Configure: manualNode})
	b := nw.NewNode(t, "b", meshtest.Options{Configure: manualNode})
	c := newRawPeer(t, nw, "c")
	linkAll(t, a, b, c.Node)
	d := countDeliveries("f/1", a)
	d.failOnDuplicate(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	unseen := randomID()
	if a.ForgetBroadcast(unseen, nil) {
		t.Fatal("ForgetBroadcast of an unseen id reported that it forgot something")
	}
	if err := b.BroadcastID(ctx, "f/1", unseen, []byte("named before it was sent")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "a to get the message it was asked to forget before it came", func() bool { c, _ := d.all(unseen, b.ID()); return c })

	kept, gone := randomID(), randomID()
	for _, id := range []mesh.MsgID{kept, gone} {
		if err := b.BroadcastID(ctx, "f/1", id, []byte(id.String())); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 10*time.Second, "a to get "+id.String(), func() bool { c, _ := d.all(id, b.ID()); return c })
	}
	// a passed both on to c, as to any eager peer.
	testutil.WaitFor(t, 10*time.Second, "c to get both from a", func() bool { return c.gossiped(kept) == 1 && c.gossiped(gone) == 1 })
	if a.ForgetBroadcast(kept, func(p []byte) bool { return string(p) != kept.String() }) {
		t.Fatal("ForgetBroadcast forgot a message that match refused")
	}
	if !a.ForgetBroadcast(gone, func(p []byte) bool { return string(p) == gone.String() }) {
		t.Fatal("ForgetBroadcast kept a message that match approved")
	}
	// a answers a GRAFT for what it kept, not for what it forgot; GRAFTs
	// are handled in order, so the answer for kept comes after any for gone.
	c.send(t, a.ID(), mesh.EncodeGraftFrame(gone))
	c.send(t, a.ID(), mesh.EncodeGraftFrame(kept))
	testutil.WaitFor(t, 10*time.Second, "a to answer the GRAFT for the kept message", func() bool { return c.gossiped(kept) == 2 })
	if n := c.gossiped(gone); n != 1 {
		t.Fatalf("a sent the forgotten message again after forgetting it (%d copies in all)", n)
	}
	// And the forgotten message stays seen: a copy is not taken again.
	c.send(t, a.ID(), mesh.EncodeGossipID(gone, b.ID(), "f/1", []byte(gone.String()), time.Now()))
	c.flush(t, a)
}

// A node that pulls a message it heard of by IHAVE (one that catches up
// on new links, say: every neighbour announces what passed in the last
// MessageCacheAge) pushes it on only to the peers that did not announce
// it: those that did have it, and a copy would be a duplicate.
func TestPulledMessageIsNotPushedToItsAnnouncers(t *testing.T) {
	nw := meshtest.NewNetwork()
	n := nw.NewNode(t, "n", meshtest.Options{Configure: manualNode})
	d := countDeliveries("c/1", n)
	d.failOnDuplicate(t)
	var announcers []*rawPeer
	var peers []*mesh.Node
	for i := range 3 {
		p := newRawPeer(t, nw, fmt.Sprint("a", i))
		announcers = append(announcers, p)
		peers = append(peers, p.Node)
	}
	other := newRawPeer(t, nw, "other")
	linkAll(t, n, append(peers, other.Node)...)

	ids := serveOld(20, announcers[0].ID(), announcers...)
	for _, a := range announcers {
		a.announce(t, n.ID(), ids)
	}
	for _, id := range ids {
		testutil.WaitFor(t, 20*time.Second, "n to pull every announced message", func() bool { c, _ := d.all(id, announcers[0].ID()); return c })
	}
	// n queued its pushes as it took each message: one more frame through
	// each link and they have all arrived.
	for _, p := range append(announcers, other) {
		p.flush(t, n)
	}
	for _, id := range ids {
		pushed := 0
		for _, a := range announcers {
			pushed += a.gossiped(id)
		}
		if pushed != 0 {
			t.Fatalf("n pushed a message %d times to peers that had announced it", pushed)
		}
		if other.gossiped(id) != 1 {
			t.Fatalf("n pushed a message %d times to the peer that had not announced it, want once", other.gossiped(id))
		}
	}
}

// A node that hears of many messages at once (catching up on a new link:
// the neighbour announces all it passed in the last MessageCacheAge) asks
// for every one of them, paced to what its link takes, and gets them all:
// no GRAFT is dropped at a full queue and taken for asked.
func TestCatchUpGraftsEveryMessage(t *testing.T) {
	nw := meshtest.NewNetwork()
	n := nw.NewNode(t, "n", meshtest.Options{Configure: manualNode})
	d := countDeliveries("c/1", n)
	d.failOnDuplicate(t)
	a := newRawPeer(t, nw, "a")
	linkAll(t, n, a.Node)

	const k = 1500 // 150 s of chat at 10 messages a second
	ids := serveOld(k, a.ID(), a)
	a.announce(t, n.ID(), ids)
	testutil.WaitFor(t, 60*time.Second, fmt.Sprintf("n to pull all %d messages", k), func() bool {
		return gotAll(d, ids, a.ID())
	})
	if s := n.BroadcastStats(); s.Dropped != 0 || s.Grafts < k {
		t.Fatalf("n's stats %+v: want no frame dropped and a GRAFT for each of %d", s, k)
	}
}

// A node that pulls a thousand messages from a neighbour whose machine
// stalls for a while (too loaded to read its links) gets every one of
// them once the neighbour reads again: the GRAFTs wait while the
// neighbour's queue is full. Before, they were dropped at the full queue
// and counted as asked, and every message whose rounds of GRAFTs all fell
// in the stall was given up for good. Virtual time (synctest) makes the
// stall outlast the rounds however loaded the machine running the test is.
func TestGraftsWaitForAStalledPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := meshtest.NewNetwork()
		nw.Latency = 5 * time.Millisecond
		n := nw.NewNode(t, "n", meshtest.Options{Configure: manualNode})
		d := countDeliveries("c/1", n)
		d.failOnDuplicate(t)
		a := newRawPeer(t, nw, "a")
		linkAll(t, n, a.Node)

		const k = 2000
		ids := serveOld(k, a.ID(), a)
		a.announce(t, n.ID(), ids)
		synctest.Wait() // n has the announcements; its GRAFTs are due in GraftTimeout
		// Longer than all the rounds of GRAFTs (Fast: 0.1 s, then 0.75 s
		// more), shorter than PeerTimeout.
		nw.Stall(a.ID(), 5*time.Second)
		testutil.WaitFor(t, time.Minute, fmt.Sprintf("n to pull all %d messages", k), func() bool {
			return gotAll(d, ids, a.ID())
		})
		if s := n.BroadcastStats(); s.Dropped != 0 {
			t.Fatalf("n's stats %+v: want no frame dropped", s)
		}
	})
}

// A node passes on what all its neighbours send it, so two of them that
// each keep to the rate a node takes from one peer make it send more than
// that to a third. It paces what it sends to the rate instead: the third
// takes every message and scores it down for none (penalties ban, and a
// ban of every honest relay would cut the mesh).
func TestRelayKeepsToThePeersRate(t *testing.T) {
	slow := func(c *mesh.Config) {
		manualNode(c)
		c.BroadcastRate, c.BroadcastBurst = 100, 200
	}
	nw := meshtest.NewNetwork()
	h := nw.NewNode(t, "h", meshtest.Options{Configure: slow})
	r := nw.NewNode(t, "r", meshtest.Options{Configure: slow})
	d := countDeliveries("t/1", r)
	d.failOnDuplicate(t)
	s1, s2 := newRawPeer(t, nw, "s1"), newRawPeer(t, nw, "s2")
	linkAll(t, h, s1.Node, s2.Node, r)

	var ids []mesh.MsgID
	for _, s := range []*rawPeer{s1, s2} {
		for range 190 { // within the burst h takes from each
			id := randomID()
			ids = append(ids, id)
			s.send(t, h.ID(), mesh.EncodeGossipID(id, s.ID(), "t/1", id[:], time.Now()))
		}
	}
	testutil.WaitFor(t, 60*time.Second, fmt.Sprintf("r to get all %d messages from h", len(ids)), func() bool {
		if !hasPeer(r, h.ID()) {
			t.Fatal("r cut h off")
		}
		return gotAll(d, ids, h.ID())
	})
	if n := offences(r); n != 0 {
		t.Fatalf("r scored h down %d times", n)
	}
}

// A peer that announces made-up ids as fast as it may fills only its own
// share of the messages a node tracks as missing: the node still pulls
// every message an honest peer announces meanwhile. In virtual time
// (synctest) the flood keeps its rate whatever the machine's load: on the
// real clock a loaded machine handled fewer of the flood's frames a second
// than the test's ticker sent, the flood took n's CPU, and the pull timed
// out with n's table still within its bounds.
func TestMadeUpAnnouncementsDoNotCrowdOutOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := meshtest.NewNetwork()
		n := nw.NewNode(t, "n", meshtest.Options{Configure: manualNode})
		d := countDeliveries("c/1", n)
		d.failOnDuplicate(t)
		h := newRawPeer(t, nw, "hostile")
		a := newRawPeer(t, nw, "honest")
		linkAll(t, n, h.Node, a.Node)

		// h announces 8 frames of fresh ids (4,096, the whole table before
		// the fix) every 50 ms, well inside the frame rate a peer may send.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		defer wg.Wait()
		defer close(stop)
		flood := func() {
			for range 8 {
				ids := make([]mesh.MsgID, 512)
				for i := range ids {
					ids[i] = randomID()
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				h.Send(ctx, n.ID(), mesh.BcastProto, mesh.EncodeIHave(ids...))
				cancel()
			}
		}
		flood()
		// n tracks h's ids before a announces: it has asked h for hundreds.
		testutil.WaitFor(t, 20*time.Second, "n to graft made-up ids from h", func() bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			return len(h.grafts) >= 500
		})
		var floods atomic.Int32
		wg.Go(func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					flood()
					floods.Add(1)
				}
			}
		})
		// Three more floods (12,288 ids, more than the whole table) before
		// a announces: without a share per peer, h's ids fill the table
		// and a's are never tracked.
		testutil.WaitFor(t, 20*time.Second, "three more floods from h", func() bool { return floods.Load() >= 3 })
		synctest.Wait() // n has taken them

		const k = 1000
		ids := serveOld(k, a.ID(), a)
		a.announce(t, n.ID(), ids)
		testutil.WaitFor(t, 60*time.Second, fmt.Sprintf("n to pull all %d messages the honest peer announced", k), func() bool {
			return gotAll(d, ids, a.ID())
		})
	})
}

// A node asks every announcer of a missing message again, in rounds,
// before it gives the message up: GRAFTs and their answers are lost when
// links close or queues fill under churn, and a node that gave a message
// up gets it again only if someone announces it again, which neighbours
// that announced it already do not.
func TestLostGraftAnswersAreAskedAgain(t *testing.T) {
	nw := meshtest.NewNetwork()
	n := nw.NewNode(t, "n", meshtest.Options{Configure: manualNode})
	d := countDeliveries("c/1", n)
	d.failOnDuplicate(t)
	var announcers []*rawPeer
	var peers []*mesh.Node
	for i := range 2 {
		p := newRawPeer(t, nw, fmt.Sprint("a", i))
		p.ignore = 1 // the answer to the first GRAFT of each id is lost
		announcers = append(announcers, p)
		peers = append(peers, p.Node)
	}
	linkAll(t, n, peers...)

	const k = 1000
	ids := serveOld(k, announcers[0].ID(), announcers...)
	for _, a := range announcers {
		a.announce(t, n.ID(), ids)
	}
	testutil.WaitFor(t, 60*time.Second, fmt.Sprintf("n to pull all %d messages", k), func() bool {
		return gotAll(d, ids, announcers[0].ID())
	})
}

// A node that takes a message late (pulled long after it was sent, as
// under churn) still announces it to its peers in its next gossip round,
// as it does a message it takes on time: the round is the way back for
// neighbours that lost it too, and one keyed on the send time passed
// over every message taken after its round had gone.
func TestLateMessageIsGossiped(t *testing.T) {
	nw := meshtest.NewNetwork()
	n := nw.NewNode(t, "n", meshtest.Options{Configure: manualNode})
	a := newRawPeer(t, nw, "a")
	b := newRawPeer(t, nw, "b")
	linkAll(t, n, a.Node, b.Node)

	const k = 200
	var ids []mesh.MsgID
	for i := range k {
		id := randomID()
		ids = append(ids, id)
		// Sent from 40 s to 10 s ago: each is taken well after the
		// gossip round of its send time.
		a.send(t, n.ID(), mesh.EncodeGossipID(id, a.ID(), "c/1", id[:], time.Now().Add(-40*time.Second+time.Duration(i)*150*time.Millisecond)))
	}
	// n passes each on to b (in full: a new link is eager), then
	// announces it in its next gossip round.
	testutil.WaitFor(t, 30*time.Second, "n to announce every late message in a gossip round", func() bool {
		for _, id := range ids {
			if b.gossiped(id)+b.announced(id) < 2 {
				return false
			}
		}
		return true
	})
}

// The ids a node announces to a new link (what passed in the last
// MessageCacheAge, for a node that comes back after losing links) leave
// out directory records: the snapshot sent on the link holds every
// record already, and a newcomer would otherwise pull each one again.
func TestCatchUpLeavesOutDirectoryRecords(t *testing.T) {
	nw := meshtest.NewNetwork()
	n := nw.NewNode(t, "n", meshtest.Options{Configure: func(c *mesh.Config) {
		manualNode(c)
		// No gossip round, which announces to every peer, the new
		// one too, what passed since the last round: only the
		// catch-up list is looked at.
		c.GossipInterval = time.Hour
	}})
	src := newRawPeer(t, nw, "src")
	linkAll(t, n, src.Node)

	const records, msgs = 100, 100
	var recIDs []mesh.MsgID
	for i := range records {
		ident, err := mesh.NewIdentity()
		if err != nil {
			t.Fatal(err)
		}
		env, err := mesh.SignRecord(ident, mesh.WireRecord{ID: ident.ID, Name: fmt.Sprint("r", i), Seq: 1, Neighbors: []mesh.ID{}})
		if err != nil {
			t.Fatal(err)
		}
		id := randomID()
		recIDs = append(recIDs, id)
		src.send(t, n.ID(), mesh.EncodeGossipID(id, ident.ID, mesh.DirTopic, env, time.Now()))
	}
	testutil.WaitFor(t, 20*time.Second, "n to take every record", func() bool { return len(n.Directory()) >= records+1 })
	var msgIDs []mesh.MsgID
	for range msgs {
		id, err := n.Broadcast(context.Background(), "c/1", []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		msgIDs = append(msgIDs, id)
	}

	c := newRawPeer(t, nw, "newcomer")
	linkAll(t, n, c.Node)
	// The catch-up list is in the order n took the messages, records
	// first: once the last message's id has come, so have the rest.
	testutil.WaitFor(t, 20*time.Second, "the newcomer to hear of every recent message", func() bool {
		for _, id := range msgIDs {
			if c.announced(id) == 0 {
				return false
			}
		}
		return true
	})
	for _, id := range recIDs {
		if c.announced(id) != 0 {
			t.Fatalf("n announced a directory record to a new link, which its snapshot holds")
		}
	}
}
