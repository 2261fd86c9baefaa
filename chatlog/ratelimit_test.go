package chatlog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// liveService is a chat service on a one-node in-memory mesh, for tests
// that call its internals.
func liveService(t *testing.T, cfg ServiceConfig) (*Service, *Store) {
	t.Helper()
	ident := newIdent(t)
	n := meshtest.NewNetwork().NewNode(t, "solo", meshtest.Options{Configure: func(c *mesh.Config) { c.Identity = ident }})
	s := newStore(t)
	cfg.Identity = ident
	svc, err := NewService(cfg, n, s)
	if err != nil {
		t.Fatal(err)
	}
	return svc, s
}

// TestHistoryNotRateLimited checks that a history of thousands of messages
// by one author, as sync brings it, is stored whole, while the same
// author's live messages past the rate are dropped.
func TestHistoryNotRateLimited(t *testing.T) {
	cfg := DefaultServiceConfig()
	cfg.AuthorRate, cfg.AuthorBurst = 1, 5
	svc, s := liveService(t, cfg)
	ctx := context.Background()
	info, err := svc.CreateChannel(ctx, "history", false)
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := ParseChannelID(info.ID)
	author := newIdent(t)
	start := time.Now().Add(-time.Hour).UnixMilli()
	var history []*Message
	for i := range 3000 {
		history = append(history, msgAt(t, author, ch, KindText, fmt.Sprint("old ", i), ID{}, start+int64(i)))
	}
	for i := 0; i < len(history); i += 500 {
		if err := svc.acceptMany(ctx, ch, history[i:i+500]); err != nil {
			t.Fatalf("sync batch at %d: %v", i, err)
		}
	}
	if u := checkUsage(t, s, ch); u.Texts != 3000 {
		t.Fatalf("%d of 3,000 history messages stored", u.Texts)
	}
	// Live, the same author gets its burst, then is refused.
	refused := 0
	for i := range 50 {
		m := msgAt(t, author, ch, KindText, fmt.Sprint("live ", i), ID{}, time.Now().UnixMilli())
		if err := svc.accept(ctx, m, true); err != nil {
			refused++
			if ok, _ := s.Has(m.ID); ok {
				t.Fatal("a refused live message was stored")
			}
		}
	}
	if refused < 40 {
		t.Fatalf("%d of 50 live messages at once refused, want all past the burst of 5 (and the odd refill)", refused)
	}
	// Another author is not held back by the first.
	other := newIdent(t)
	if err := svc.accept(ctx, msgAt(t, other, ch, KindText, "hello", ID{}, time.Now().UnixMilli()), true); err != nil {
		t.Fatalf("another author's live message: %v", err)
	}
}

// TestLimitersBounded floods live messages from 10,000 authors: the map of
// rate limiters stays bounded.
func TestLimitersBounded(t *testing.T) {
	svc, _ := liveService(t, DefaultServiceConfig())
	for i := range 10_000 {
		svc.allowLive(mesh.ID(fmt.Sprintf("author%06d", i)), time.Now().UnixMilli())
		if n := len(svc.limiters); n > maxLimiters {
			t.Fatalf("%d limiters after %d authors", n, i+1)
		}
	}
}

// TestSyncSkipsWhatThePeerCannotKnow syncs a history of 2,000 messages in
// which a member slipped a retract of someone else's message (which the
// peer that serves it did not hold), a message stamped an hour ahead and
// one of a kind from a newer version. The rest of the history is stored
// and the batch does not fail: a failed batch scores the peer down, and
// penalties ban, so one forged retract would have cut an honest peer off
// and stopped its history.
func TestSyncSkipsWhatThePeerCannotKnow(t *testing.T) {
	svc, s := liveService(t, DefaultServiceConfig())
	ctx := context.Background()
	info, err := svc.CreateChannel(ctx, "history", false)
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := ParseChannelID(info.ID)
	alice, mallory := newIdent(t), newIdent(t)
	start := time.Now().Add(-time.Hour).UnixMilli()
	target := msgAt(t, alice, ch, KindText, "alice's", ID{}, start-1)
	mustPut(t, s, target)
	var history []*Message
	for i := range 2000 {
		history = append(history, msgAt(t, alice, ch, KindText, fmt.Sprint("old ", i), ID{}, start+int64(i)))
	}
	forged := msgAt(t, mallory, ch, KindRetract, "", target.ID, start+500)
	ahead := msgAt(t, alice, ch, KindText, "from the future", ID{}, time.Now().Add(time.Hour).UnixMilli())
	newer := signRaw(t, alice, &Message{Channel: ch, Kind: 9, Time: start + 700})
	bad := append([]*Message{}, history[:1000]...)
	bad = append(bad, forged, ahead, newer)
	bad = append(bad, history[1000:]...)
	for i := 0; i < len(bad); i += 500 {
		if err := svc.acceptMany(ctx, ch, bad[i:min(i+500, len(bad))]); err != nil {
			t.Fatalf("sync batch at %d: %v", i, err)
		}
	}
	if u := checkUsage(t, s, ch); u.Texts != 2001 {
		t.Errorf("%d of 2,001 texts stored", u.Texts)
	}
	if ok, _ := s.Has(forged.ID); !ok {
		t.Error("the forged retract is not stored: every sync would fetch it again")
	}
	if r, _ := s.Retracted(target.ID); r {
		t.Error("mallory's retract took effect on alice's message")
	}
	for _, m := range []*Message{ahead, newer} {
		if ok, _ := s.Has(m.ID); ok {
			t.Errorf("stored %q, which Check refuses", m.Body)
		}
	}
	// A forgery by the peer itself still fails the batch.
	broken := msgAt(t, alice, ch, KindText, "tampered", ID{}, start+3000)
	broken.Body = []byte("changed after signing")
	if err := svc.acceptMany(ctx, ch, []*Message{broken}); err == nil {
		t.Error("a message whose signature does not verify was accepted")
	}
}

// TestPostWaitBounded posts faster than a rate of one message every 100
// seconds: the post past the burst fails at once, asking to back off, so
// that a script's requests do not hang for minutes.
func TestPostWaitBounded(t *testing.T) {
	cfg := DefaultServiceConfig()
	cfg.AuthorRate, cfg.AuthorBurst = 0.01, 2 // the node's own burst is 1
	svc, _ := liveService(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	info, err := svc.CreateChannel(ctx, "slow", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Post(ctx, info.ID, "first"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := svc.Post(ctx, info.ID, "second")
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), "try again") {
			t.Fatalf("the post past the rate: %v, want ErrInvalidInput asking to try again", err)
		}
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		t.Fatal("the post past the rate waits for its turn, 100 s away")
	}
}

// TestSyncBatchTurnsBurnOn checks a synced batch that carries the owner's
// setting turning burn on: the channel then stores nothing, so the rest of
// the batch, retractions included, is not stored, as if each message had
// come alone, and the batch is no error for which its sender is scored
// down (it would be the ErrBurn of a store of a burn channel).
func TestSyncBatchTurnsBurnOn(t *testing.T) {
	ctx := context.Background()
	now := time.Now().Add(-time.Minute).UnixMilli()
	for _, tt := range []struct {
		name  string
		batch func(on, text, retract *Message) []*Message
	}{
		{"retraction after the setting", func(on, text, retract *Message) []*Message { return []*Message{on, retract} }},
		{"text after the setting", func(on, text, retract *Message) []*Message { return []*Message{on, text} }},
		{"setting amid the batch", func(on, text, retract *Message) []*Message { return []*Message{text, on, retract} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			svc, s := liveService(t, DefaultServiceConfig())
			owner, author := newIdent(t), newIdent(t)
			c := NewChannel(owner.ID, "room")
			c.Joined, c.Range = true, Range{Days: 30}
			if err := s.PutChannel(c); err != nil {
				t.Fatal(err)
			}
			held := msgAt(t, author, c.ID, KindText, "held", ID{}, now-10)
			mustPut(t, s, held)
			on := msgAt(t, owner, c.ID, KindSetting, `{"burn":true}`, ID{}, now)
			text := msgAt(t, author, c.ID, KindText, "synced", ID{}, now-5)
			retract := msgAt(t, author, c.ID, KindRetract, "", held.ID, now+5)
			if err := svc.acceptMany(ctx, c.ID, tt.batch(on, text, retract)); err != nil {
				t.Fatalf("acceptMany: %v, want nil (the sender did nothing wrong)", err)
			}
			got, _, err := s.Channel(c.ID)
			if err != nil || !got.Burn {
				t.Fatalf("channel %+v (%v), want burn on", got, err)
			}
			for _, m := range []*Message{held, text, retract} {
				if has, _ := s.Has(m.ID); has {
					t.Errorf("message %v of kind %d is stored in a burn channel", m.ID, m.Kind)
				}
			}
		})
	}
}
