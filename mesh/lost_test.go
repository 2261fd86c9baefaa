package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
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
		n.sent.put(nc, []ID{self.ID, bob.ID, carol.ID}, "dc_other", now)
		nonce = nc
	}
	// The last put is the one the notices below are about.
	n.sent.put(nonce, []ID{self.ID, bob.ID, carol.ID}, "dc_mine", now)

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
