package mesh

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh/signal"
)

// signalSink is a transport that records the signals the mesh delivers.
type signalSink struct {
	nopTransport
	mu  sync.Mutex
	got []signal.Message
}

func (s *signalSink) deliverSignal(m signal.Message, via ID, refused func(string)) {
	s.mu.Lock()
	s.got = append(s.got, m)
	s.mu.Unlock()
}

func (s *signalSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// TestRelayedSignalsMustBeSignedBySender: a neighbour cannot speak for
// another node through the mesh (forge its LEAVE, plant a route to itself
// for it, bend the path of its signal), nor replay one of its signals.
func TestRelayedSignalsMustBeSignedBySender(t *testing.T) {
	self, _ := NewIdentity()
	bob, _ := NewIdentity()
	mallory, _ := NewIdentity()
	carol, _ := NewIdentity()
	sink := &signalSink{}
	n, err := NewNode(Config{Identity: self, Transport: sink, Logger: slog.New(slog.DiscardHandler), PenaltyThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &sinkConn{remote: mallory.ID, done: make(chan struct{})}
	l := newLink(n, c)
	n.links[mallory.ID] = l
	defer c.Close()

	leave := []byte(`{"type":"LEAVE"}`)
	now := time.Now()
	frame := func(t *testing.T, f relayFrame) []byte {
		t.Helper()
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	sign := func(t *testing.T, by *Identity, path []ID, at time.Time) relayFrame {
		t.Helper()
		f, err := signRelay(by, path, leave, at)
		if err != nil {
			t.Fatal(err)
		}
		f.Hop = len(path) - 1
		return f
	}
	viaMallory := []ID{bob.ID, mallory.ID, self.ID}
	genuine := sign(t, bob, viaMallory, now)
	bent := sign(t, bob, []ID{bob.ID, carol.ID, self.ID}, now)
	bent.Path = viaMallory

	refused := []struct {
		name    string
		payload []byte
		offence bool
	}{
		{"unsigned, as before", []byte(`{"p":["` + string(bob.ID) + `","` + string(mallory.ID) + `","` + string(self.ID) + `"],"h":2,"m":"eyJ0eXBlIjoiTEVBVkUifQ=="}`), true},
		{"signed by mallory for bob", frame(t, func() relayFrame {
			f := sign(t, mallory, viaMallory, now)
			f.Path = viaMallory
			return f
		}()), true},
		{"mallory's key and signature, bob's path", frame(t, func() relayFrame {
			f := sign(t, mallory, []ID{mallory.ID, self.ID}, now)
			f.Path, f.Hop = viaMallory, 2
			return f
		}()), true},
		{"bob's signal with its path bent", frame(t, bent), true},
		{"bob's signal, ten minutes old", frame(t, sign(t, bob, viaMallory, now.Add(-10*time.Minute))), false},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			before := l.failures.Load()
			n.handleRelay(ctx, &Message{From: mallory.ID, Protocol: sigProto, Payload: tt.payload})
			if sink.count() != 0 {
				t.Fatalf("delivered %+v", sink.got)
			}
			if r := n.routes.get(bob.ID); r != nil {
				t.Fatalf("a route to bob was planted: %v", r)
			}
			if got := l.failures.Load() > before; got != tt.offence {
				t.Fatalf("mallory scored down: %v, want %v", got, tt.offence)
			}
		})
	}

	// Bob's own signal, relayed honestly, gets through once.
	n.handleRelay(ctx, &Message{From: mallory.ID, Protocol: sigProto, Payload: frame(t, genuine)})
	if sink.count() != 1 || sink.got[0].Src != string(bob.ID) || sink.got[0].Type != signal.TypeLeave {
		t.Fatalf("bob's signal: delivered %+v", sink.got)
	}
	if r := n.routes.get(bob.ID); len(r) != 3 || r[1] != mallory.ID {
		t.Fatalf("route back to bob: %v", r)
	}
	n.handleRelay(ctx, &Message{From: mallory.ID, Protocol: sigProto, Payload: frame(t, genuine)})
	if sink.count() != 1 {
		t.Fatalf("a replayed signal was delivered again: %+v", sink.got)
	}
}

// TestRelaySeenIsBounded: the replay guard holds at most maxRelaySeen
// signals, and one it had to forget is still refused.
func TestRelaySeenIsBounded(t *testing.T) {
	var r relaySeen
	now := time.Now()
	origin, _ := NewIdentity()
	mk := func(i int, at time.Time) relayFrame {
		f := relayFrame{Path: []ID{origin.ID}, Time: at.UnixMilli(), Nonce: make([]byte, relayNonceLen)}
		f.Nonce[0], f.Nonce[1], f.Nonce[2] = byte(i), byte(i>>8), byte(i>>16)
		return f
	}
	first := mk(0, now.Add(-time.Minute))
	if !r.first(first, now) {
		t.Fatal("a new signal was refused")
	}
	for i := 1; i < 3*maxRelaySeen; i++ {
		if !r.first(mk(i, now.Add(time.Duration(i)*time.Microsecond)), now) {
			t.Fatalf("new signal %d refused", i)
		}
	}
	if len(r.m) > maxRelaySeen {
		t.Fatalf("%d signals remembered, limit %d", len(r.m), maxRelaySeen)
	}
	if r.first(first, now) {
		t.Fatal("a forgotten signal was taken again")
	}
}

// TestRelayPassesOnOnlyWhatTheDestinationTakes: a signed signal whose
// message does not decode is refused at the first hop, and its sender
// scored down there, not passed on for the destination to score down the
// honest relay (enough of them would get the relay banned).
func TestRelayPassesOnOnlyWhatTheDestinationTakes(t *testing.T) {
	self, _ := NewIdentity()
	mallory, _ := NewIdentity()
	carol, _ := NewIdentity()
	n, err := NewNode(Config{Identity: self, Transport: &signalSink{}, Logger: slog.New(slog.DiscardHandler), PenaltyThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conns := map[ID]*sinkConn{}
	for _, id := range []ID{mallory.ID, carol.ID} {
		c := &sinkConn{remote: id, done: make(chan struct{})}
		defer c.Close()
		conns[id] = c
		n.links[id] = newLink(n, c)
	}
	for _, msg := range []string{`not json`, `["OFFER"]`, `{"type":"OFFER","type":"LEAVE"}`} {
		f, err := signRelay(mallory, []ID{mallory.ID, self.ID, carol.ID}, []byte(msg), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(f)
		before := n.links[mallory.ID].failures.Load()
		n.handleRelay(ctx, &Message{From: mallory.ID, Protocol: sigProto, Payload: b})
		conns[carol.ID].mu.Lock()
		sent := conns[carol.ID].sent
		conns[carol.ID].mu.Unlock()
		if sent != 0 {
			t.Fatalf("message %q passed on to carol, who would score this node down for it", msg)
		}
		if n.links[mallory.ID].failures.Load() == before {
			t.Fatalf("message %q: its sender was not scored down", msg)
		}
	}
}

// TestRelaySeenFloodCannotShutOutOthers: signals dated as far ahead as
// relayMaxAge allows, from one sender or from thousands, fill the replay
// guard; other senders' signals, dated now or by a clock two minutes
// behind, are still taken, and the flood's own forgotten signals are not.
func TestRelaySeenFloodCannotShutOutOthers(t *testing.T) {
	ids := make([]ID, 64)
	for i := range ids {
		id, _ := NewIdentity()
		ids[i] = id.ID
	}
	frame := func(from ID, i int, at time.Time) relayFrame {
		f := relayFrame{Path: []ID{from}, Time: at.UnixMilli(), Nonce: make([]byte, relayNonceLen)}
		f.Nonce[0], f.Nonce[1], f.Nonce[2] = byte(i), byte(i>>8), byte(i>>16)
		return f
	}
	for _, tt := range []struct {
		name    string
		senders int // of the flood
	}{{"one sender", 1}, {"many senders", 3 * maxRelaySeen}} {
		t.Run(tt.name, func(t *testing.T) {
			var r relaySeen
			now := time.Now()
			ahead := now.Add(relayMaxAge - time.Second)
			honest := ids[0]
			if !r.first(frame(honest, 0, now.Add(-time.Second)), now) {
				t.Fatal("an honest signal was refused")
			}
			var firstFlood relayFrame
			for i := range 3 * maxRelaySeen {
				from := ids[1]
				if tt.senders > 1 {
					from = ID(fmt.Sprintf("sender%06d", i))
				}
				f := frame(from, i, ahead.Add(time.Duration(i)*time.Microsecond))
				if i == 0 {
					firstFlood = f
				}
				r.first(f, now)
				if len(r.m) > maxRelaySeen || len(r.floors) > maxRelaySeen {
					t.Fatalf("after %d signals: %d remembered and %d floors, limit %d", i+1, len(r.m), len(r.floors), maxRelaySeen)
				}
			}
			later := now.Add(time.Millisecond)
			if !r.first(frame(honest, 1, later), later) {
				t.Fatal("after the flood, an honest signal dated now was refused")
			}
			if tt.senders == 1 {
				if !r.first(frame(ids[2], 0, later.Add(-2*time.Minute)), later) {
					t.Fatal("after the flood, a signal from a clock two minutes behind was refused")
				}
				if r.first(firstFlood, later) {
					t.Fatal("a forgotten signal of the flood was taken again")
				}
			}
			if r.first(frame(honest, 0, now.Add(-time.Second)), later) {
				t.Fatal("an honest signal was taken twice")
			}
		})
	}
}

// TestFullDirectoryIsNoOffence: once the directory is full (a flood of
// made-up records can fill it), the new records honest neighbours pass
// on, by broadcast or in a snapshot, are not held against them; a broken
// record still is.
func TestFullDirectoryIsNoOffence(t *testing.T) {
	self, _ := NewIdentity()
	honest, _ := NewIdentity()
	newcomer, _ := NewIdentity()
	n, err := NewNode(Config{Identity: self, Transport: nopTransport{}, Logger: slog.New(slog.DiscardHandler), PenaltyThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &sinkConn{remote: honest.ID, done: make(chan struct{})}
	defer c.Close()
	l := newLink(n, c)
	n.links[honest.ID] = l
	n.dir.mu.Lock()
	for i := len(n.dir.records); i < maxRecords; i++ {
		id := ID(fmt.Sprintf("made-up-%06d", i))
		n.dir.records[id] = &Record{ID: id, Heard: time.Now()}
	}
	n.dir.mu.Unlock()

	env, err := signRecord(newcomer, wireRecord{ID: newcomer.ID, Name: "newcomer", Seq: 1})
	if err != nil {
		t.Fatal(err)
	}
	n.dir.onBroadcast(BroadcastMsg{Topic: dirTopic, Payload: env, From: honest.ID})
	n.dir.handleSnapshot(ctx, &Message{From: honest.ID, Protocol: dirProto, Payload: append(binary.AppendUvarint(nil, uint64(len(env))), env...)})
	if f := l.failures.Load(); f != 0 {
		t.Fatalf("an honest neighbour was scored down %d times for a record this node had no room for", f)
	}
	if _, ok := n.Lookup(newcomer.ID); ok || len(n.Directory()) > maxRecords {
		t.Fatalf("the full directory took a record: %d records", len(n.Directory()))
	}
	broken := append([]byte(nil), env...)
	broken[len(broken)-3] ^= 1
	n.dir.handleSnapshot(ctx, &Message{From: honest.ID, Protocol: dirProto, Payload: append(binary.AppendUvarint(nil, uint64(len(broken))), broken...)})
	if l.failures.Load() == 0 {
		t.Fatal("a broken record in a snapshot was not held against its sender")
	}
}
