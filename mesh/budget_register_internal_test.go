package mesh

import (
	"testing"
)

// TestRegisterOverDeadLinkTakesBackShare: a peer's link closed and, before
// its runLink unregistered it, the peer's next link registered in its
// place (the peer redialed at once). The dead link's share of the queue
// budget goes back with its place: one registered link, one share. Before,
// the dead link kept its share until its handlers ended, so a node whose
// peers all redialed held two shares for each, beyond Config.QueueBytes.
func TestRegisterOverDeadLinkTakesBackShare(t *testing.T) {
	n, peer := nodeAndPeer(t)
	conn := func() *sinkConn { return &sinkConn{remote: peer.ID, done: make(chan struct{})} }
	c1, c2 := conn(), conn()
	defer c2.Close()
	old, l := newLink(n, c1), newLink(n, c2)
	if err := n.register(old); err != nil {
		t.Fatal(err)
	}
	// The old link holds more than nothing, within its share.
	if !n.budget.take(&old.acct, n.budget.share/2) {
		t.Fatal("a registered link's take within its share was refused")
	}
	c1.Close()
	if err := n.register(l); err != nil {
		t.Fatal(err)
	}
	n.budget.mu.Lock()
	oldOwn, newOwn, pooled := old.acct.own, l.acct.own, n.budget.pooled
	n.budget.mu.Unlock()
	if oldOwn != 0 || newOwn != n.budget.share {
		t.Errorf("after the new link took the dead one's place: shares %d (dead) and %d (new), want 0 and %d", oldOwn, newOwn, n.budget.share)
	}
	if pooled != n.budget.share/2 {
		t.Errorf("the pool lends %d, want the dead link's %d", pooled, n.budget.share/2)
	}
	n.budget.close(&old.acct)
	n.budget.close(&l.acct)
	if used, pooled := n.budget.held(); used != 0 || pooled != 0 {
		t.Errorf("the budget holds %d (%d pooled) once both links closed", used, pooled)
	}
}
