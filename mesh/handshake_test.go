package mesh_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/signal"
)

// fakeClient registers a made-up id on the rendezvous, as an attacker
// does for free (a key is all a proof of id needs), until the test ends.
// Signals to it go to got, if set.
func fakeClient(t *testing.T, url string, got chan<- signal.Message) *signal.Client {
	t.Helper()
	ident, err := mesh.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	c, err := signal.NewClient(signal.ClientConfig{URL: url, ID: string(ident.ID), Signer: ident.Key, OnMessage: func(m signal.Message) {
		if got != nil {
			select {
			case got <- m:
			default:
			}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testutil.WaitFor(t, 20*time.Second, "a fake client to register", c.Connected)
	return c
}

// TestRTCOfferFloodLeavesRoomForNewcomers replays one captured OFFER (each
// time under a new connection id) from twenty made-up ids through the rendezvous at 25 a second, as long as
// the test runs; a real newcomer must still link to the flooded node.
func TestRTCOfferFloodLeavesRoomForNewcomers(t *testing.T) {
	if testing.Short() {
		t.Skip("WebRTC nodes under a flood")
	}
	rv := startRendezvous(t, true)
	victim, _ := rtcNode(t, rv.url(), rtcOpts{name: "victim", manual: true})

	// Capture a real node's OFFER: it dials an id that we hold.
	offers := make(chan signal.Message, 8)
	sniffer := fakeClient(t, rv.url(), offers)
	orig, _ := rtcNode(t, rv.url(), rtcOpts{name: "orig", manual: true})
	testutil.WaitFor(t, 20*time.Second, "orig and the victim to register", func() bool {
		ids := rv.srv.Clients()
		return slices.Contains(ids, string(orig.ID())) && slices.Contains(ids, string(victim.ID()))
	})
	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
	dialed := make(chan error, 1)
	go func() { dialed <- orig.Connect(dctx, mesh.ID(sniffer.ID())) }()
	var captured json.RawMessage
	for captured == nil {
		select {
		case m := <-offers:
			if m.Type == signal.TypeOffer && m.Src == string(orig.ID()) {
				captured = m.Payload
			}
		case err := <-dialed:
			// The sniffer never answers, so the dial ends only with dctx
			// (20 s) or when it could not send its offer.
			dcancel()
			t.Fatalf("no offer captured: orig's dial ended: %v", err)
		}
	}
	dcancel()
	<-dialed

	var wg sync.WaitGroup
	var fakes []*signal.Client
	for range 20 {
		fakes = append(fakes, fakeClient(t, rv.url(), nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer wg.Wait()
	defer cancel()
	sent := 0
	var mu sync.Mutex
	wg.Go(func() {
		tick := time.NewTicker(40 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
			// Each replay under a fresh connection id, so that none is
			// taken for another's retransmission.
			var p map[string]any
			json.Unmarshal(captured, &p)
			p["connectionId"] = fmt.Sprint("dc_replay", i)
			b, _ := json.Marshal(p)
			f := fakes[i%len(fakes)]
			if f.Send(ctx, signal.Message{Type: signal.TypeOffer, Dst: string(victim.ID()), Payload: b}) == nil {
				mu.Lock()
				sent++
				mu.Unlock()
			}
		}
	})
	testutil.WaitFor(t, 20*time.Second, "the flood to start", func() bool { mu.Lock(); defer mu.Unlock(); return sent >= 50 })

	newcomer, _ := rtcNode(t, rv.url(), rtcOpts{name: "newcomer", manual: true})
	testutil.WaitFor(t, 20*time.Second, "the newcomer to register", func() bool { return slices.Contains(rv.srv.Clients(), string(newcomer.ID())) })
	deadline := time.Now().Add(60 * time.Second)
	var err error
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, 15*time.Second)
		err = newcomer.Connect(actx, victim.ID())
		acancel()
		if err == nil {
			t.Logf("the newcomer linked on attempt %d", attempt)
			break
		}
		t.Logf("attempt %d: %v", attempt, err)
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("the newcomer could not link while %d replayed offers flooded the victim: %v", sent, err)
		}
	}
	testutil.WaitFor(t, 20*time.Second, "the victim to list the newcomer", func() bool { return hasPeer(victim, newcomer.ID()) })
	for _, p := range victim.Peers() {
		if p.ID != newcomer.ID() {
			t.Fatalf("the victim linked to %s (%s), not the newcomer", p.Name, p.ID.Short())
		}
	}
}
