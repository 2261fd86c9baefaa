package mesh

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// TestRequestAfterLinkShutdownNotServed: a Conn may still deliver a frame
// after the link shut down (meshtest's delivery goroutine, pion's data
// channel callbacks race with Close). A request that comes then must not
// start a handler: the link has waited for its goroutines already, so one
// started now would outlive the node's Serve (and, under -race, its
// WaitGroup.Add races with the link's Wait).
func TestRequestAfterLinkShutdownNotServed(t *testing.T) {
	self, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	tr := &helloTransport{version: helloVersion, accept: make(chan func(Conn), 1)}
	n, err := NewNode(Config{Identity: self, Transport: tr, ManualLinks: true, HelloTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var served atomic.Int32
	n.Handle("test/late", HandlerFunc(func(context.Context, *Message) ([]byte, error) {
		served.Add(1)
		return nil, nil
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	accept := <-tr.accept
	in, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	c := &helloConn{remote: in.ID, version: helloVersion, done: make(chan struct{})}
	accept(c)
	testutil.WaitFor(t, 20*time.Second, "the inbound link", func() bool { return n.link(in.ID) != nil })
	l := n.link(in.ID)
	c.mu.Lock()
	recv := c.recv
	c.mu.Unlock()
	// Stop the node: every link is closed and waited for.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Then frames come in late. recv picks between a free handler slot
	// and the closed link at random, so send many.
	for id := range uint64(64) {
		recv(Bulk, appendFrame(nil, frame{kind: kindReq, id: id + 1, proto: "test/late", payload: []byte("x")}))
	}
	// recv adds a handler it starts to the link's WaitGroup before it
	// returns: wait for any such handler to have run.
	l.wg.Wait()
	if k := served.Load(); k != 0 {
		t.Fatalf("%d requests served after the link shut down", k)
	}
}
