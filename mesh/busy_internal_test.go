package mesh

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// kindConn is a Conn that counts the frames sent on it by kind.
type kindConn struct {
	sinkConn
	busy atomic.Int64
}

func (c *kindConn) Send(ctx context.Context, ch Channel, b []byte) error {
	if f, err := parseFrame(b, maxFrame(ch)); err == nil && f.kind == kindBusy {
		c.busy.Add(1)
	}
	return nil
}

// TestBusyFlood: a hostile peer sends 10,000 requests (the first 200 the
// largest a Bulk frame holds) to a handler that never returns, without
// waiting for any answer. The link's reader takes every frame at once; what waits for a
// slot stays within RequestQueue and its byte bound; the rest are answered
// busy (those beyond the busy backlog go unanswered); the peer commits no
// offence; and the link's goroutines end when it closes.
func TestBusyFlood(t *testing.T) {
	testutil.CheckGoroutines(t)
	ident, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	peer, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNode(Config{Identity: ident, Transport: nopTransport{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var held atomic.Int32
	n.Handle("hold/1", HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) {
		held.Add(1)
		<-ctx.Done()
		return nil, ctx.Err()
	}))
	c := &kindConn{sinkConn: sinkConn{remote: peer.ID, done: make(chan struct{})}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newLink(n, c)
	l.wg.Go(func() { l.answerBusy(ctx) })
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		c.Close()
		cancel()
		l.mu.Lock()
		l.stopped = true
		l.mu.Unlock()
		l.wg.Wait()
	}
	defer stop()

	const requests = 10000
	large := make([]byte, MaxPayload(Bulk)-len("hold/1"))
	var maxWaiting int
	var maxBytes int64
	var wg sync.WaitGroup
	defer wg.Wait()
	var fed atomic.Int32
	wg.Go(func() {
		for i := range requests {
			payload := large
			if i >= 200 {
				payload = large[:10]
			}
			l.recv(ctx, Bulk, appendFrame(nil, frame{kind: kindReq, id: uint64(i + 1), proto: "hold/1", payload: payload}))
			l.mu.Lock()
			maxWaiting, maxBytes = max(maxWaiting, len(l.waiting)), max(maxBytes, l.waitingBytes)
			l.mu.Unlock()
			fed.Add(1)
		}
	})
	testutil.WaitFor(t, 60*time.Second, "the reader to take every request", func() bool { return fed.Load() == requests })
	wg.Wait()
	cfg := &n.cfg
	if maxWaiting > cfg.RequestQueue || maxBytes > maxWaitingBytes {
		t.Fatalf("up to %d requests of %d bytes waited; bounds %d and %d", maxWaiting, maxBytes, cfg.RequestQueue, maxWaitingBytes)
	}
	testutil.WaitFor(t, 20*time.Second, "the handler slots to fill", func() bool { return held.Load() == int32(cfg.MaxConcurrentRequests) })
	testutil.WaitFor(t, 20*time.Second, "busy answers", func() bool { return c.busy.Load() >= busyBacklog })
	if b := c.busy.Load(); b > requests-int64(cfg.MaxConcurrentRequests) {
		t.Fatalf("%d busy answers to %d requests, %d of them served", b, requests, cfg.MaxConcurrentRequests)
	}
	if f := l.failures.Load(); f != 0 {
		t.Fatalf("%d offences counted for requests beyond the queue", f)
	}
	stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.serving != 0 || len(l.waiting) != 0 || l.waitingBytes != 0 {
		t.Fatalf("after close: %d serving, %d waiting of %d bytes", l.serving, len(l.waiting), l.waitingBytes)
	}
}
