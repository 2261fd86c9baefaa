package chatlog_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// broadcastLive sends m on the live topic as a node's service does.
func broadcastLive(t *testing.T, n *chatNode, m *chatlog.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.node.BroadcastID(ctx, "chat/1", mesh.MsgID(m.ID[:16]), m.Encode()); err != nil {
		t.Fatal(err)
	}
}

// floodLive has n sign count text messages "flood 0", "flood 1", … in
// channel cid and broadcast them live, as a member flooding a channel would.
func floodLive(t *testing.T, n *chatNode, cid chatlog.ChannelID, count int) {
	t.Helper()
	for i := range count {
		m, err := chatlog.NewMessage(n.ident, cid, chatlog.KindText, fmt.Appendf(nil, "flood %d", i), chatlog.ID{}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		broadcastLive(t, n, m)
	}
}

// waitStored waits until every node has stored m (a retract is stored as
// soon as it comes, whether or not its target has).
func waitStored(t *testing.T, nodes []*chatNode, m *chatlog.Message) {
	t.Helper()
	for _, n := range nodes {
		testutil.WaitFor(t, 30*time.Second, n.node.Name()+" to store "+m.ID.String(), func() bool {
			ok, err := n.store.Has(m.ID)
			return err == nil && ok
		})
	}
}

// Nobody but its author can stop a message: a retract that mallory signs
// for alice's message, sent before the message or after it, does not keep
// it from any node, and nodes show it unretracted. A quick retract by the
// author herself that overtakes her message leaves it shown retracted.
// Periodic sync is off, but a link that comes up starts one, so each node
// is also checked to hold the message in its broadcast cache: only a node
// that took it live holds it there, to pass on to neighbours that ask.
//
// What a node stores or shows says nothing of the order in which it took
// broadcasts live: that sync can bring a message, or a retract, ahead of
// its live copy (which, on a busy machine, may come by the lazy path, a
// GRAFT after a frame dropped from a full queue). So the order each case
// is about is set by waiting for each node to hold the first broadcast
// before the second is sent.
func TestForgedRetractDoesNotStopLiveDelivery(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	noSync := func(c *chatlog.ServiceConfig) { c.SyncInterval = time.Hour }
	fixed := func(c *mesh.Config) { c.ReplaceInterval, c.MessageCacheAge = -1, time.Hour }
	var nodes []*chatNode
	for i := range 16 {
		name := fmt.Sprintf("n%02d", i)
		switch i {
		case 0:
			name = "alice"
		case 1:
			name = "mallory"
		}
		nodes = append(nodes, newChatNodeWith(t, nw, name, noSync, fixed))
	}
	alice, mallory := nodes[0], nodes[1]
	ch := createChannel(t, ctx, alice, "open")
	cid, _ := chatlog.ParseChannelID(ch.ID)
	for _, n := range nodes[1:] {
		joinWhenSeen(t, n, ch.ID)
	}
	meshNodes := make([]*mesh.Node, len(nodes))
	for i, n := range nodes {
		meshNodes[i] = n.node
	}
	testutil.WaitFor(t, 30*time.Second, "every node at 3+ links", func() bool {
		for _, n := range meshNodes {
			if len(n.Peers()) < 3 {
				return false
			}
		}
		return true
	})
	others := nodes[2:]
	// holds reports whether n took m live and passes it on.
	// ForgetBroadcast calls match only for a message the node holds; one
	// that says no forgets nothing.
	holds := func(n *chatNode, m chatlog.ID) bool {
		held := false
		n.node.ForgetBroadcast(mesh.MsgID(m[:16]), func([]byte) bool { held = true; return false })
		return held
	}
	// pulled waits until every node in ns has taken m live and passes it
	// on. A node may store m from a sync before its live copy comes; one
	// that forgot m, or never took it, stays without it (the id stays
	// seen), so waiting does not hide a message a retract stopped.
	pulled := func(t *testing.T, ns []*chatNode, m chatlog.ID) {
		t.Helper()
		for _, n := range ns {
			testutil.WaitFor(t, 30*time.Second, n.node.Name()+" to take broadcast "+m.String()+" live", func() bool { return holds(n, m) })
		}
	}
	// shows reports whether n shows alice's message text, unretracted.
	shows := func(n *chatNode, text string) bool {
		ms, err := n.Messages(ctx, ch.ID, time.Time{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(ms, func(m chatlog.Entry) bool {
			return m.Text == text && !m.Retracted && m.Author == alice.node.ID()
		})
	}
	showsRetracted := func(n *chatNode, id chatlog.ID) bool {
		ms, err := n.Messages(ctx, ch.ID, time.Time{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(ms, func(m chatlog.Entry) bool { return m.ID == id.String() && m.Retracted })
	}

	t.Run("forged retract first", func(t *testing.T) {
		x, err := chatlog.NewMessage(alice.ident, cid, chatlog.KindText, []byte("alice's first words"), chatlog.ID{}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		// Mallory computes the id of alice's message ahead (in real life:
		// a message she is shown first, or one she can predict) and
		// retracts it before it is sent.
		forged, err := chatlog.NewMessage(mallory.ident, cid, chatlog.KindRetract, nil, x.ID, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		broadcastLive(t, mallory, forged)
		waitStored(t, append([]*chatNode{alice}, others...), forged)
		if _, err := alice.store.Put(ctx, x); err != nil {
			t.Fatal(err)
		}
		broadcastLive(t, alice, x)
		for _, n := range append([]*chatNode{mallory}, others...) {
			testutil.WaitFor(t, 30*time.Second, n.node.Name()+" to get alice's message live", func() bool { return shows(n, "alice's first words") })
		}
		pulled(t, nodes[1:], x.ID)
	})

	t.Run("forged retract after", func(t *testing.T) {
		v, err := alice.Post(ctx, ch.ID, "alice's second words")
		if err != nil {
			t.Fatal(err)
		}
		y, _ := chatlog.ParseID(v.ID)
		for _, n := range append([]*chatNode{mallory}, others...) {
			testutil.WaitFor(t, 30*time.Second, n.node.Name()+" to get alice's second message live", func() bool { return shows(n, "alice's second words") })
		}
		// Every node holds alice's message before mallory's retract is
		// sent, so the retract comes after it everywhere.
		pulled(t, nodes, y)
		forged, err := chatlog.NewMessage(mallory.ident, cid, chatlog.KindRetract, nil, y, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		broadcastLive(t, mallory, forged)
		// Every node still passes alice's message on (it answers a GRAFT
		// for it) once it has taken mallory's retract.
		pulled(t, nodes, forged.ID)
		for _, n := range nodes {
			if !holds(n, y) {
				t.Fatalf("%s forgot alice's message on mallory's retract", n.node.Name())
			}
		}
		for _, n := range nodes {
			if showsRetracted(n, y) || !shows(n, "alice's second words") {
				t.Fatalf("%s shows alice's message retracted by mallory", n.node.Name())
			}
		}
	})

	t.Run("author's retract first", func(t *testing.T) {
		x, err := chatlog.NewMessage(alice.ident, cid, chatlog.KindText, []byte("alice's regret"), chatlog.ID{}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		retract, err := chatlog.NewMessage(alice.ident, cid, chatlog.KindRetract, nil, x.ID, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		// The retract overtakes the message on every node: on one that
		// took it live after the message, it would rightly forget the
		// message.
		broadcastLive(t, alice, retract)
		pulled(t, nodes[1:], retract.ID)
		waitStored(t, others, retract)
		if _, err := alice.store.Put(ctx, x, retract); err != nil {
			t.Fatal(err)
		}
		broadcastLive(t, alice, x)
		waitStored(t, others, x)
		pulled(t, nodes[1:], x.ID)
		for _, n := range others {
			if !showsRetracted(n, x.ID) {
				t.Fatalf("%s stored alice's retracted message but does not show it retracted", n.node.Name())
			}
			if shows(n, "alice's regret") {
				t.Fatalf("%s shows the text of a retracted message", n.node.Name())
			}
		}
	})
}

// A message stamped ahead of this node's clock may be honest (this clock
// may be the one behind), and one of a kind this version does not know
// comes from a newer version: the node that relayed it is not scored down
// (penalties ban, and it did nothing wrong).
func TestFutureMessageDoesNotScoreDownRelay(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	manual := func(c *mesh.Config) { c.ManualLinks = true }
	alice := newChatNode(t, nw, "alice", manual)
	carol := newChatNode(t, nw, "carol", manual)
	// The relay runs no chat service, so it passes chat messages on
	// unchecked, as nodes with a clock like alice's would.
	relay := nw.NewNode(t, "relay", meshtest.Options{Configure: func(c *mesh.Config) { meshtest.Fast(c); c.ManualLinks = true }})
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for _, n := range []*chatNode{alice, carol} {
		if err := n.node.Connect(cctx, relay.ID()); err != nil {
			t.Fatal(err)
		}
	}
	ch := createChannel(t, ctx, alice, "clocks")
	cid, _ := chatlog.ParseChannelID(ch.ID)
	joinWhenSeen(t, carol, ch.ID)

	ahead, err := chatlog.NewMessage(alice.ident, cid, chatlog.KindText, []byte("from a fast clock"), chatlog.ID{}, time.Now().Add(chatlog.MaxSkew+2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	broadcastLive(t, alice, ahead)
	newer := chatlog.SignUnchecked(alice.ident, cid, chatlog.Kind(9), []byte("a kind of a later version"), chatlog.ID{}, time.Now())
	broadcastLive(t, alice, newer)
	// The relay passes messages on in order: once carol has the next one,
	// she has dealt with the early ones.
	if _, err := alice.Post(ctx, ch.ID, "on time"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "carol to get the message after the early one", func() bool { return hasTexts(t, carol, ch.ID, "on time") })
	if hasTexts(t, carol, ch.ID, "from a fast clock") {
		t.Fatal("carol took a message stamped beyond her clock's skew")
	}
	if ok, _ := carol.store.Has(newer.ID); ok {
		t.Fatal("carol stored a message of a kind she does not know")
	}
	for _, p := range carol.node.Peers() {
		if p.Failures != 0 {
			t.Fatalf("carol scored %s down %d times for what her own clock or version refuses", p.Name, p.Failures)
		}
	}
}

// A node whose store fails (a full disk, here the database's size limit)
// scores down none of the neighbours that pass it messages: they cannot
// know, and penalties ban, so the node would cut itself off.
func TestFullStoreScoresNobodyDown(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	manual := func(c *mesh.Config) { c.ManualLinks = true }
	noLimit := func(c *chatlog.ServiceConfig) { c.AuthorRate = -1 }
	alice := newChatNodeWith(t, nw, "alice", noLimit, manual)
	carol := newChatNodeOn(t, nw, "carol", &bbolt.Options{Timeout: time.Second, MaxSize: 1 << 20}, noLimit, manual)
	relay := nw.NewNode(t, "relay", meshtest.Options{Configure: func(c *mesh.Config) { meshtest.Fast(c); c.ManualLinks = true }})
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for _, n := range []*chatNode{alice, carol} {
		if err := n.node.Connect(cctx, relay.ID()); err != nil {
			t.Fatal(err)
		}
	}
	ch := createChannel(t, ctx, alice, "big")
	joinWhenSeen(t, carol, ch.ID)
	// A broadcast on a topic of its own, after the chat messages: the
	// relay passes them on in order, so when carol gets it she has dealt
	// with every chat message.
	done := make(chan struct{})
	carol.node.HandleBroadcast("end/1", func(mesh.BroadcastMsg) { close(done) })

	const k = 128 // 2 MiB of messages for a database of at most 1 MiB
	body := strings.Repeat("x", chatlog.MaxBody-16)
	for i := range k {
		if _, err := alice.Post(ctx, ch.ID, fmt.Sprintf("%04d %s", i, body)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := alice.node.Broadcast(cctx, "end/1", nil); err != nil {
		t.Fatal(err)
	}
	linked := func() (mesh.PeerInfo, bool) {
		for _, p := range carol.node.Peers() {
			if p.ID == relay.ID() {
				return p, true
			}
		}
		return mesh.PeerInfo{}, false
	}
	testutil.WaitFor(t, 60*time.Second, "carol to get the broadcast sent after the chat messages", func() bool {
		if _, ok := linked(); !ok {
			t.Fatal("carol cut off the relay")
		}
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
	if n := len(texts(t, carol, ch.ID)); n >= k {
		t.Fatalf("carol stored all %d messages: the database's limit did not hold", n)
	}
	if p, _ := linked(); p.Failures != 0 {
		t.Fatalf("carol scored the relay down %d times for her own full store", p.Failures)
	}
}
