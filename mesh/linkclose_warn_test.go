package mesh

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// TestMessagesAfterLinkCloseNoWarning: a Conn may still deliver one-way
// messages it read before its Close (pion's data channel callbacks race
// with it). They are lost with the link, as frames in flight are; they do
// not mean that handlers fall behind, so they log no warning (the demo's
// first screen showed one whenever a node trimmed a link that carried
// gossip). A live link whose handler is stuck still warns when its queue
// overflows.
func TestMessagesAfterLinkCloseNoWarning(t *testing.T) {
	testutil.CheckGoroutines(t)
	self, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	tr := &helloTransport{version: helloVersion, accept: make(chan func(Conn), 1)}
	n, err := NewNode(Config{
		Identity: self, Transport: tr, ManualLinks: true, HelloTimeout: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	stuck := make(chan struct{})
	n.Handle("test/stuck", HandlerFunc(func(ctx context.Context, _ *Message) ([]byte, error) {
		select {
		case <-stuck:
		case <-ctx.Done():
		}
		return nil, nil
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	accept := <-tr.accept
	inbound := func() (*link, func(Channel, []byte)) {
		t.Helper()
		in, err := NewIdentity()
		if err != nil {
			t.Fatal(err)
		}
		c := &helloConn{remote: in.ID, version: helloVersion, done: make(chan struct{})}
		accept(c)
		testutil.WaitFor(t, 20*time.Second, "the inbound link", func() bool { return n.link(in.ID) != nil })
		c.mu.Lock()
		defer c.mu.Unlock()
		return n.link(in.ID), c.recv
	}
	msg := func(proto string) []byte {
		return appendFrame(nil, frame{kind: kindMsg, proto: proto, payload: make([]byte, 1000)})
	}
	flood := n.cfg.MessageQueue + 10

	// A live link whose handler never returns: its queue fills, and what
	// is beyond it is dropped with a warning.
	live, recv := inbound()
	for range flood {
		recv(Bulk, msg("test/stuck"))
	}
	if !strings.Contains(logs.String(), "handlers fall behind") {
		t.Fatalf("a live link dropped %d messages without a warning; logs:\n%s", live.dropped.Load(), logs.String())
	}
	close(stuck)

	// Links that are closed and waited for, as the node trims or replaces
	// them, then messages for their services and for the mesh come late.
	_, lateRecv := inbound()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	before := logs.String()
	for range flood {
		lateRecv(Bulk, msg("test/stuck"))
		lateRecv(Ctl, msg("mesh/test"))
	}
	if after := logs.String(); after != before {
		t.Fatalf("messages a closed link delivered late logged:\n%s", strings.TrimPrefix(after, before))
	}
	if used, pooled := n.budget.held(); used != 0 || pooled != 0 {
		t.Fatalf("the queue budget holds %d bytes (%d pooled) after every link closed", used, pooled)
	}
}
