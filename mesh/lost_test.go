package mesh

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh/signal"
)

// lostSink is a transport that records the connections the mesh tells it
// to give up.
type lostSink struct {
	nopTransport
	mu   sync.Mutex
	lost []string // "dst conn"
	errs []error
}

func (s *lostSink) signalLost(dst ID, conn string, err error) {
	s.mu.Lock()
	s.lost = append(s.lost, string(dst)+" "+conn)
	s.errs = append(s.errs, err)
	s.mu.Unlock()
}

func (s *lostSink) calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lost...)
}

// TestFailureNoticeOnlyFromThePath: a failure notice ends a dial only when
// it names a signal this node sent and is signed by a node on that
// signal's path; a neighbour (or any other node) that was not on it cannot
// cancel the dial, whatever it forges, nor can a notice be replayed.
func TestFailureNoticeOnlyFromThePath(t *testing.T) {
	ids := map[string]*Identity{}
	for _, name := range []string{"self", "bob", "carol", "mallory", "dave"} {
		ident, err := NewIdentity()
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = ident
	}
	self, bob, carol, mallory, dave := ids["self"], ids["bob"], ids["carol"], ids["mallory"], ids["dave"]
	sink := &lostSink{}
	n, err := NewNode(Config{Identity: self, Transport: sink, Logger: slog.New(slog.DiscardHandler), PenaltyThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := &sinkConn{remote: mallory.ID, done: make(chan struct{})}
	n.links[mallory.ID] = newLink(n, c)
	defer c.Close()

	// This node sent many offers through the mesh, one of them along
	// self, bob, carol; mallory (a neighbour) saw none of them.
	now := time.Now()
	var nonce []byte
	for i := range maxSentSignals {
		nc := make([]byte, relayNonceLen)
		nc[0], nc[1] = byte(i), byte(i>>8)
		nc[2] = 1
		n.sent.put(nc, []ID{self.ID, bob.ID, carol.ID}, "dc_other", nil, now)
		nonce = nc
	}
	// The last put is the one the notices below are about; it followed
	// the route back that carol's last signal came by.
	n.sent.put(nonce, []ID{self.ID, bob.ID, carol.ID}, "dc_mine", nil, now)
	n.routes.put(carol.ID, []ID{self.ID, bob.ID, carol.ID})

	notice := func(t *testing.T, by *Identity, path []ID, about []byte) []byte {
		t.Helper()
		p, _ := json.Marshal(lostPayload{Nonce: about, Reason: "no way on"})
		m, _ := json.Marshal(signal.Message{Type: sigLost, Src: string(by.ID), Dst: string(self.ID), Payload: p})
		f, err := signRelay(by, path, m, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		f.Hop = len(path) - 1
		b, _ := json.Marshal(f)
		return b
	}
	other := make([]byte, relayNonceLen)
	other[0] = 0xff
	ignored := []struct {
		name    string
		payload []byte
	}{
		{"mallory's own notice", notice(t, mallory, []ID{mallory.ID, self.ID}, nonce)},
		{"dave's notice, relayed by mallory", notice(t, dave, []ID{dave.ID, mallory.ID, self.ID}, nonce)},
		{"bob's notice about a signal never sent", notice(t, bob, []ID{bob.ID, mallory.ID, self.ID}, other)},
		{"mallory's notice signed as bob", func() []byte {
			var f relayFrame
			if err := json.Unmarshal(notice(t, mallory, []ID{mallory.ID, self.ID}, nonce), &f); err != nil {
				t.Fatal(err)
			}
			f.Path, f.Hop = []ID{bob.ID, mallory.ID, self.ID}, 2
			b, _ := json.Marshal(f)
			return b
		}()},
	}
	for _, tt := range ignored {
		t.Run(tt.name, func(t *testing.T) {
			n.handleRelay(ctx, &Message{From: mallory.ID, Protocol: sigProto, Payload: tt.payload})
			if got := sink.calls(); len(got) != 0 {
				t.Fatalf("a connection was given up: %v", got)
			}
			if r := n.routes.get(carol.ID); r == nil {
				t.Fatal("the route back to carol was dropped")
			}
		})
	}

	// Bob was on the path: his notice ends the dial to carol, once.
	genuine := notice(t, bob, []ID{bob.ID, mallory.ID, self.ID}, nonce)
	n.handleRelay(ctx, &Message{From: mallory.ID, Protocol: sigProto, Payload: genuine})
	got := sink.calls()
	if len(got) != 1 || got[0] != string(carol.ID)+" dc_mine" {
		t.Fatalf("given up: %v, want carol's dc_mine", got)
	}
	if !errors.Is(sink.errs[0], ErrSignalLost) {
		t.Fatalf("error %v, want ErrSignalLost", sink.errs[0])
	}
	if r := n.routes.get(carol.ID); r != nil {
		t.Fatalf("the route back to carol through bob, who lost the signal, is kept: %v", r)
	}
	n.handleRelay(ctx, &Message{From: mallory.ID, Protocol: sigProto, Payload: genuine})
	n.handleRelay(ctx, &Message{From: mallory.ID, Protocol: sigProto, Payload: notice(t, carol, []ID{carol.ID, mallory.ID, self.ID}, nonce)})
	if got := sink.calls(); len(got) != 1 {
		t.Fatalf("one signal ended twice: %v", got)
	}
	n.sent.mu.Lock()
	kept := len(n.sent.m)
	n.sent.mu.Unlock()
	if kept > maxSentSignals {
		t.Fatalf("%d sent signals remembered, bound %d", kept, maxSentSignals)
	}
}

// FuzzDecodeLost: a failure notice's payload, from any node, is refused
// with an error or bounded, never a panic.
func FuzzDecodeLost(f *testing.F) {
	f.Add([]byte(`{"n":"AAAAAAAAAAAAAAAAAAAAAA==","r":"no way on"}`))
	f.Add([]byte(`{"n":"AAAA"}`))
	f.Add([]byte(`{"n":null,"r":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeLost(b)
		if err == nil && (len(p.Nonce) != relayNonceLen || len(p.Reason) > maxLostReason) {
			t.Fatalf("accepted %+v", p)
		}
	})
}

// testTransport makes an rtcTransport for a new identity, not serving.
func testTransport(t *testing.T) *rtcTransport {
	t.Helper()
	ident, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Identity = ident
	cfg.RTC.LoopbackOnly = true
	tr, err := newRTCTransport(&cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// refusals counts the failure notices a transport asks for.
type refusals struct {
	mu      sync.Mutex
	reasons []string
}

func (r *refusals) refused(reason string) {
	r.mu.Lock()
	r.reasons = append(r.reasons, reason)
	r.mu.Unlock()
}

func (r *refusals) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reasons...)
}

// TestRelayedSignalRefusalsAreNoticed: where this node, the destination,
// drops a relayed offer for now (its queue of relayed signals is full, or
// the neighbour that relayed it already holds maxHandshakesVia
// handshakes), it says so, so that the sender's dial ends at once rather
// than after DialTimeout; offers it takes get no notice.
func TestRelayedSignalRefusalsAreNoticed(t *testing.T) {
	t.Run("queue full", func(t *testing.T) {
		tr := testTransport(t)
		var r refusals
		// Nothing serves the queue: it fills.
		for range cap(tr.relayed) {
			tr.deliverSignal(signal.Message{Type: signal.TypeCandidate}, "via", r.refused)
		}
		if got := r.list(); len(got) != 0 {
			t.Fatalf("signals the queue had room for were refused: %v", got)
		}
		tr.deliverSignal(signal.Message{Type: signal.TypeOffer}, "via", r.refused)
		if got := r.list(); len(got) != 1 {
			t.Fatalf("an offer dropped on a full queue: notices %v, want one", got)
		}
	})

	t.Run("handshakes via one neighbour", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		tr := testTransport(t)
		via, _ := NewIdentity()
		// maxHandshakesVia offers relayed by via are being answered.
		for range maxHandshakesVia {
			src, _ := NewIdentity()
			_, h, err := tr.admit(ctx, src.ID, via.ID)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.release(h)
		}
		// One more, a genuine offer from a node the directory lists.
		src := testTransport(t)
		tr.known = func(ID) bool { return true }
		c, err := src.newConn(tr.id, true, "dc_"+rand.Text())
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			c.Close()
			src.closing.Wait()
		}()
		offer, err := c.pc.CreateOffer(nil)
		if err != nil {
			t.Fatal(err)
		}
		meta, _ := json.Marshal(offerMeta{Catnest: 1, Cert: src.certDER})
		p, _ := json.Marshal(offerPayload{SDP: offer, Type: "data", ConnectionID: c.connID, Reliable: true, Metadata: meta})
		m := signal.Message{Type: signal.TypeOffer, Src: string(src.id), Dst: string(tr.id), Payload: p}
		var r refusals
		var wg sync.WaitGroup
		tr.onSignalVia(ctx, &wg, m, via.ID, r.refused, func(c Conn) { c.Close() })
		wg.Wait()
		got := r.list()
		if len(got) != 1 || !strings.Contains(got[0], "busy") {
			t.Fatalf("an offer over the neighbour's handshakes: notices %v, want one saying busy", got)
		}
	})
}

// TestLostAnswerIsSentAgainTwice: when the answer to a relayed offer is
// lost on its way back, the answering end sends it again by a fresh path,
// and once more (through the rendezvous when it is connected, here it is
// not), since the dialer would otherwise wait DialTimeout for it; lost a
// third time, the handshake is given up and its slot freed.
func TestLostAnswerIsSentAgainTwice(t *testing.T) {
	src, dst := testTransport(t), testTransport(t)
	// The mesh route the answer takes, recorded (candidates go by it too).
	var mu sync.Mutex
	var sent []signal.Message
	dst.route = func(ctx context.Context, to ID, m signal.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if to == src.id && m.Type == signal.TypeAnswer {
			sent = append(sent, m)
		}
		return nil
	}
	out, err := src.newConn(dst.id, true, "dc_"+rand.Text())
	if err != nil {
		t.Fatal(err)
	}
	in, err := dst.newConn(src.id, false, out.connID)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		out.Close()
		in.Close()
		src.closing.Wait()
		dst.closing.Wait()
	}()
	offer, err := out.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.setRemote(offer); err != nil {
		t.Fatal(err)
	}
	ans, err := in.pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.pc.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	lost := fmt.Errorf("%w: test", ErrSignalLost)
	for i := 1; i <= maxAnswerResends; i++ {
		dst.signalLost(src.id, in.connID, lost)
		mu.Lock()
		n := len(sent)
		var p answerPayload
		if n == i {
			p, err = decodeAnswer(sent[i-1].Payload)
		}
		mu.Unlock()
		if n != i || err != nil || p.ConnectionID != in.connID || p.SDP.SDP == "" {
			t.Fatalf("after the answer was lost %d times: sent %d answers (%v), want %d", i, n, err, i)
		}
		select {
		case <-in.failed:
			t.Fatalf("the handshake was given up at loss %d: %v", i, in.failure())
		default:
		}
	}
	dst.signalLost(src.id, in.connID, lost)
	select {
	case <-in.failed:
		if !errors.Is(in.failure(), ErrSignalLost) {
			t.Fatalf("handshake failed with %v, want ErrSignalLost", in.failure())
		}
	default:
		t.Fatal("the answer was lost past its resends and the handshake goes on")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != maxAnswerResends {
		t.Fatalf("the answer was sent %d more times, want %d", len(sent), maxAnswerResends)
	}
}

// TestDialBeforeTheFirstRegistrationEndsWithItsCtx: a dial that waited out
// its ctx for the node's first registration ends there, saying both why
// (it went on to make a connection and an offer, and failed to send it).
func TestDialBeforeTheFirstRegistrationEndsWithItsCtx(t *testing.T) {
	tr := testTransport(t) // not serving: never registers
	dst, _ := NewIdentity()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := tr.Dial(ctx, dst.ID)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, signal.ErrNotConnected) {
		t.Fatalf("dial before the first registration: %v, want ErrNotConnected and the ctx's deadline", err)
	}
}
