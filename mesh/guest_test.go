package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/catnest/catnest/mesh/signal"
)

// TestGuestEarlyCandidatesApart: a page that sends candidates for many
// connection ids before any offer neither pushes out the early candidates
// of a node's link nor makes the node hold more than the bound, and a node
// that serves no guests keeps none of them.
func TestGuestEarlyCandidatesApart(t *testing.T) {
	ident, _ := NewIdentity()
	other, _ := NewIdentity()
	cfg := Config{Identity: ident, SignalURL: "http://127.0.0.1:1/x", Logger: slog.New(slog.DiscardHandler)}
	cfg.fillDefaults()
	tr, err := newRTCTransport(&cfg, cfg.Logger)
	if err != nil {
		t.Fatal(err)
	}
	cand := webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"}
	tr.keepEarly(other.ID, candidatePayload{Candidate: cand, Type: "data", ConnectionID: "dc_link"})
	ctx := context.Background()
	var wg sync.WaitGroup
	flood := func() {
		for i := range 1000 {
			b, _ := json.Marshal(candidatePayload{Candidate: cand, Type: "data", ConnectionID: fmt.Sprint("dc_page", i)})
			if !tr.guestSignal(ctx, &wg, signal.Message{Type: signal.TypeCandidate, Src: "some-page", Payload: b}) {
				t.Fatal("a page's candidate was passed on to the links' signaling")
			}
		}
	}
	flood()
	if len(tr.earlyPages) != 0 {
		t.Fatalf("a node that serves no guests holds %d pages' early candidates", len(tr.earlyPages))
	}
	tr.guestH = func(context.Context, *Guest) {}
	flood()
	wg.Wait()
	if e := tr.early["dc_link"]; e == nil || e.peer != string(other.ID) || len(e.cands) != 1 {
		t.Fatalf("the link's early candidates after a page's flood: %+v", e)
	}
	if len(tr.earlyPages) > maxEarlyConns || len(tr.early) != 1 {
		t.Fatalf("early candidates held: %d of pages, %d of links", len(tr.earlyPages), len(tr.early))
	}
}

// TestGuestQueueBytes: pages whose handlers do not read, sending messages
// as large as a data channel takes, are disconnected before their queues
// hold more than guestQueueBytes each (the message count alone let each of
// DefaultMaxGuests pages make the node hold 16 MiB), while a page that is
// read as fast as it sends goes on through many times that.
func TestGuestQueueBytes(t *testing.T) {
	ident, _ := NewIdentity()
	cfg := Config{Identity: ident, SignalURL: "http://127.0.0.1:1/x", Logger: slog.New(slog.DiscardHandler)}
	cfg.fillDefaults()
	tr, err := newRTCTransport(&cfg, cfg.Logger)
	if err != nil {
		t.Fatal(err)
	}
	newGuest := func(id string) *Guest {
		t.Helper()
		pc, err := tr.api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		g := &Guest{
			t: tr, pc: pc, peer: id, offer: offerPayload{ConnectionID: id},
			in: make(chan []byte, guestQueue), low: make(chan struct{}, 1),
			opened: make(chan struct{}), done: make(chan struct{}),
		}
		tr.mu.Lock()
		tr.guests[id] = g
		tr.mu.Unlock()
		return g
	}
	msg := make([]byte, MaxBulkFrame)
	var held int
	for i := range DefaultMaxGuests {
		g := newGuest(fmt.Sprint("dc_slow", i))
		for range guestQueue {
			g.deliver(msg)
		}
		select {
		case <-g.Done():
		default:
			t.Fatalf("guest %d holds %d messages of %d bytes and is still connected", i, len(g.in), len(msg))
		}
		if err := g.closeErr(); !errors.Is(err, ErrGuestTooFast) {
			t.Fatalf("guest %d closed with %v, want ErrGuestTooFast", i, err)
		}
		n := 0
		for len(g.in) > 0 {
			n += len(<-g.in)
		}
		if n > guestQueueBytes {
			t.Fatalf("guest %d made the node hold %d bytes, bound %d", i, n, guestQueueBytes)
		}
		held += n
	}
	t.Logf("%d pages that are not read made the node hold %d bytes", DefaultMaxGuests, held)

	// A page read as fast as it sends: 64 MiB, never disconnected.
	g := newGuest("dc_read")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range 64 << 20 / len(msg) {
		g.deliver(msg)
		b, err := g.Recv(ctx)
		if err != nil || len(b) != len(msg) {
			t.Fatalf("a page that is read: %d bytes, %v", len(b), err)
		}
	}
	if g.queued.Load() != 0 {
		t.Fatalf("%d bytes counted as queued after everything was read", g.queued.Load())
	}
	g.Close()
	tr.closing.Wait()
}
