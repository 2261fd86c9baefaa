package mesh_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// unanswered is a transport whose dials to one node never get an answer,
// as when that node still holds a link to this node's previous run (killed
// with SIGKILL, restarted) and drops the new offer.
type unanswered struct {
	*meshtest.Transport
	to      mesh.ID
	waiting atomic.Int32
}

func (u *unanswered) Dial(ctx context.Context, id mesh.ID) (mesh.Conn, error) {
	if id != u.to {
		return u.Transport.Dial(ctx, id)
	}
	u.waiting.Add(1)
	defer u.waiting.Add(-1)
	<-ctx.Done()
	return nil, ctx.Err()
}

// unansweredPair is node b and node a, whose dials to b are never answered;
// a's DialTimeout is dial.
func unansweredPair(t *testing.T, dial time.Duration) (a, b *mesh.Node, tr *unanswered) {
	t.Helper()
	nw := meshtest.NewNetwork()
	b = nw.NewNode(t, "b", meshtest.Options{Configure: func(c *mesh.Config) { c.ManualLinks = true }})
	ident, err := mesh.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	tr = &unanswered{Transport: nw.Transport(ident.ID), to: b.ID()}
	cfg := mesh.DefaultConfig()
	meshtest.Fast(&cfg)
	cfg.Identity, cfg.Name, cfg.Transport = ident, "a", tr
	cfg.ManualLinks = true
	cfg.DialTimeout = dial
	cfg.Logger = testLogger(t)
	return serveNode(t, cfg), b, tr
}

// connectAsync runs a.Connect(id) with a context that lives until the test
// ends (as a long download's does) and returns its result.
func connectAsync(t *testing.T, a *mesh.Node, id mesh.ID) <-chan error {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	res := make(chan error, 1)
	go func() { res <- a.Connect(ctx, id) }()
	return res
}

// TestConnectGivesUpOnUnansweredDial: a Connect whose offer is never
// answered ends after DialTimeout even when the caller's context has no
// deadline, so a caller such as a download can try again.
func TestConnectGivesUpOnUnansweredDial(t *testing.T) {
	a, b, _ := unansweredPair(t, 300*time.Millisecond)
	select {
	case err := <-connectAsync(t, a, b.ID()):
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Connect = %v, want the dial timeout", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Connect still waits for an answer that never comes, 20 s after a dial timeout of 300 ms")
	}
}

// TestConnectEndsWhenThePeerLinksFirst: while a's dial to b waits for an
// answer that never comes, b links to a; a's Connect returns at once with
// the link, not after its dial timeout.
func TestConnectEndsWhenThePeerLinksFirst(t *testing.T) {
	a, b, tr := unansweredPair(t, 10*time.Minute)
	res := connectAsync(t, a, b.ID())
	testutil.WaitFor(t, 10*time.Second, "a's dial to b", func() bool { return tr.waiting.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.Connect(ctx, a.ID()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("Connect = %v, want the link b made", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Connect still waits for its own dial although b linked to a 20 s ago")
	}
	if !hasPeer(a, b.ID()) {
		t.Fatal("a lists no link to b")
	}
	testutil.WaitFor(t, 10*time.Second, "the unanswered dial to end", func() bool { return tr.waiting.Load() == 0 })
}
