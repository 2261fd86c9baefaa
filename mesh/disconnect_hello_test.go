package mesh

import (
	"errors"
	"log/slog"
	"testing"
)

// TestDisconnectCutsLinkInHello: when both nodes dial at once, the second
// link is still in its hello while the first is registered. Disconnect
// closes the first; the second must not then register in its place and
// keep the peers linked (TestAdmissionBurst's hub kept a link it had
// disconnected, 1 run in 2 to 80 beside busy loops).
func TestDisconnectCutsLinkInHello(t *testing.T) {
	self, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	peer, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNode(Config{Identity: self, Transport: &lostSink{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	// Both links reserve the peer's slot before their hello, as runLink does.
	link := func() *link {
		_, cut, ok := n.reserve(peer.ID)
		if !ok {
			t.Fatal("no slot")
		}
		l := newLink(n, &sinkConn{remote: peer.ID, done: make(chan struct{})})
		l.cut = cut
		return l
	}
	first, second := link(), link()
	if err := n.register(first); err != nil {
		t.Fatal(err)
	}
	n.Disconnect(peer.ID)
	// The first link's runLink ends: it unregisters and gives up its hold.
	n.unregister(first)
	n.release(peer.ID)

	if err := n.register(second); !errors.Is(err, errDisconnected) {
		t.Fatalf("a link in its hello at Disconnect registered after it: %v", err)
	}
	n.release(peer.ID)
	if ps := n.Peers(); len(ps) != 0 {
		t.Fatalf("linked to %d peers after Disconnect", len(ps))
	}
	// A link that reserves after the Disconnect is kept as usual.
	if err := n.register(link()); err != nil {
		t.Fatalf("a new link after Disconnect: %v", err)
	}
}
