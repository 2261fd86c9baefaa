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
	n, peer := nodeAndPeer(t)
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

// stuckConn is a Conn whose peer reads nothing: every Send waits until the
// Conn closes. It counts the Sends waiting.
type stuckConn struct {
	sinkConn
	waiting atomic.Int64
}

func (c *stuckConn) Send(ctx context.Context, ch Channel, b []byte) error {
	c.waiting.Add(1)
	defer c.waiting.Add(-1)
	select {
	case <-c.done:
		return ErrLinkClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestBusyUnreadAnswers: a hostile peer sends 3,000 requests to a handler
// that answers at once with 64 KiB, and never reads the answers. The
// answers that wait to be sent (each a goroutine holding its answer) stay
// within a bound of the link's handler slots: the peer cannot grow them by
// asking faster than it reads. Before, a handler gave up its slot before
// it sent its answer, so every request started a new handler whose answer
// then waited: 3,000 goroutines and 190 MiB of answers.
func TestBusyUnreadAnswers(t *testing.T) {
	testutil.CheckGoroutines(t)
	n, peer := nodeAndPeer(t)
	answer := make([]byte, 64<<10)
	var served atomic.Int64
	n.Handle("fast/1", HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) {
		served.Add(1)
		return answer, nil
	}))
	c := &stuckConn{sinkConn: sinkConn{remote: peer.ID, done: make(chan struct{})}}
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

	const requests = 3000
	cfg := &n.cfg
	// Handlers that hold a slot (and may send the previous answer while
	// they do), answers sent after the slot was given up, and answerBusy.
	bound := int64(2*cfg.MaxConcurrentRequests + 1)
	var most int64
	// The peer asks at the pace the handlers answer: each request once
	// the one before is served or waits.
	idle := func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.serving == 0 || len(l.waiting) > 0
	}
	deadline := time.Now().Add(60 * time.Second)
	for i := range requests {
		l.recv(ctx, Bulk, appendFrame(nil, frame{kind: kindReq, id: uint64(i + 1), proto: "fast/1", payload: []byte("x")}))
		for !idle() {
			if time.Now().After(deadline) {
				t.Fatalf("request %d: the handlers never settled", i)
			}
			time.Sleep(20 * time.Microsecond)
		}
		most = max(most, c.waiting.Load())
		if most > bound {
			break
		}
	}
	if most > bound {
		t.Fatalf("%d answers wait to be sent to a peer that reads none (%d served); bound %d", most, served.Load(), bound)
	}
	if f := l.failures.Load(); f != 0 {
		t.Fatalf("%d offences counted", f)
	}
	stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.serving != 0 || l.answering != 0 || len(l.waiting) != 0 || l.waitingBytes != 0 {
		t.Fatalf("after close: %d serving, %d answering, %d waiting of %d bytes", l.serving, l.answering, len(l.waiting), l.waitingBytes)
	}
}

// nodeAndPeer makes a quiet node with no transport, to be handed links
// by hand, and the identity of a peer to link it to.
func nodeAndPeer(t *testing.T) (*Node, *Identity) {
	t.Helper()
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
	return n, peer
}
