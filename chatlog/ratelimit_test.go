package chatlog

import (
	"context"
	"fmt"
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
		svc.allowLive(mesh.ID(fmt.Sprintf("author%06d", i)))
		if n := len(svc.limiters); n > maxLimiters {
			t.Fatalf("%d limiters after %d authors", n, i+1)
		}
	}
}
