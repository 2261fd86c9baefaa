package mesh

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBackoffsGrowDecayAndStayBounded(t *testing.T) {
	b := newBackoffs(100)
	t0 := time.Unix(1_000_000, 0)
	id := ID("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	steps := []struct {
		at       time.Duration // after t0
		wantWait time.Duration
	}{
		{0, time.Minute},                    // first offence
		{2 * time.Minute, 2 * time.Minute},  // again soon after the ban ended: doubled
		{5 * time.Minute, 4 * time.Minute},  // and again
		{10 * time.Minute, 5 * time.Minute}, // capped
		{15*time.Minute + time.Second, 5 * time.Minute},
		{2 * time.Hour, time.Minute}, // clear for long: starts over
	}
	for _, s := range steps {
		now := t0.Add(s.at)
		if got := b.add(id, now, time.Minute, 5*time.Minute); got != s.wantWait {
			t.Fatalf("at +%v: wait %v, want %v", s.at, got, s.wantWait)
		}
		if until, ok := b.blocked(id, now.Add(s.wantWait-time.Second)); !ok || !until.Equal(now.Add(s.wantWait)) {
			t.Fatalf("at +%v: not blocked within its wait", s.at)
		}
		if _, ok := b.blocked(id, now.Add(s.wantWait)); ok {
			t.Fatalf("at +%v: still blocked after its wait", s.at)
		}
	}
	for i := range 10000 {
		b.add(ID(fmt.Sprintf("%032d", i)), t0.Add(time.Duration(i)*time.Millisecond), time.Minute, time.Hour)
		if b.len() > 100 {
			t.Fatalf("%d entries after %d adds, limit 100", b.len(), i+1)
		}
	}
	b.sweep(t0.Add(24 * time.Hour))
	if b.len() != 0 {
		t.Fatalf("%d entries left a day later", b.len())
	}
}

// failingTransport offers a stream of never-seen candidates whose dials
// all fail, as a rendezvous full of departed or fake ids would.
type failingTransport struct {
	next  atomic.Int64
	dials atomic.Int64
}

func (f *failingTransport) Dial(context.Context, ID) (Conn, error) {
	f.dials.Add(1)
	return nil, ErrNotConnected
}
func (f *failingTransport) Serve(ctx context.Context, _ func(Conn)) error {
	<-ctx.Done()
	return nil
}
func (f *failingTransport) Candidates(context.Context) ([]ID, error) {
	ids := make([]ID, 64)
	for i := range ids {
		ids[i] = ID(fmt.Sprintf("%032d", f.next.Add(1)))
	}
	return ids, nil
}

// TestDialBackoffStaysBounded: a node whose dials to ever new ids fail
// keeps a bounded backoff list.
func TestDialBackoffStaysBounded(t *testing.T) {
	ident, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	tr := &failingTransport{}
	n, err := NewNode(Config{Identity: ident, Transport: tr, Logger: slog.New(slog.DiscardHandler),
		TargetPeers: 16, MaintainInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { n.Serve(ctx) })
	defer func() { cancel(); wg.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for tr.dials.Load() < 3*maxBackoffs {
		if time.Now().After(deadline) {
			t.Fatalf("only %d dials in 2 minutes", tr.dials.Load())
		}
		n.mu.Lock()
		k := n.backoff.len()
		n.mu.Unlock()
		if k > maxBackoffs {
			t.Fatalf("%d ids in the backoff list after %d failed dials, limit %d", k, tr.dials.Load(), maxBackoffs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOffencesBounded: offence counts of thousands of peers stay bounded,
// and a peer over the threshold is still found over it.
func TestOffencesBounded(t *testing.T) {
	o := make(offences)
	t0 := time.Now()
	for i := range 3 * maxBackoffs {
		o.add(ID(fmt.Sprintf("%032d", i)), t0.Add(time.Duration(i)*time.Microsecond), 8, time.Minute)
		if len(o) > maxBackoffs {
			t.Fatalf("%d offence counts held, limit %d", len(o), maxBackoffs)
		}
	}
	over := false
	for range 9 {
		over = o.add("offender", t0.Add(time.Second), 8, time.Minute)
	}
	if !over {
		t.Fatal("nine offences at once, threshold 8, not over it")
	}
}
