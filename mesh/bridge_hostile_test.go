package mesh_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

const bridgeProto = "mesh/bridge/1"

// TestBridgeFrameBeforeAnswer: a hostile bridging node sends the opener
// a data frame for the bridge before the accepter's answer, when the
// opener has no keys yet (nor any frame to expect: the accepter speaks
// only after the opener). The opener refuses it and closes that end; it
// does not crash, and it links once the bridging node behaves.
func TestBridgeFrameBeforeAnswer(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, a, b, c := bridgeTrio(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	forged := make(chan struct{}, 1)
	c.Handle(bridgeProto, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		var o struct {
			ID []byte `json:"id"`
		}
		if err := json.Unmarshal(m.Payload, &o); err != nil {
			return nil, err
		}
		// One whole fragment (no "more" flag) of a sealed Ctl frame.
		p := append(append([]byte{1}, o.ID...), 0)
		p = append(p, make([]byte, 64)...)
		if err := c.Send(ctx, m.From, bridgeProto, p); err != nil {
			return nil, err
		}
		forged <- struct{}{}
		return nil, errors.New("no bridge today")
	}))
	if err := a.Connect(ctx, b.ID()); err == nil {
		t.Fatal("alice linked to bob through a bridging node that answered nothing")
	}
	select {
	case <-forged:
	default:
		t.Fatal("carol's forged frame was not sent")
	}
	// alice is alive and still linked to carol, and has no bridge to bob.
	if _, ok := peerOf(a, c.ID()); !ok {
		t.Fatal("alice lost carol")
	}
	if _, ok := peerOf(a, b.ID()); ok {
		t.Fatal("alice has a link to bob")
	}
}

// TestBridgeFarEndStalls: bob, at one end of a bridge, stops reading (his
// machine is too busy). carol, which waited on her link to bob with
// alice's frames, would hold back all alice sends her, pings too, and time
// alice out. Instead she closes the bridge, and alice's own link to carol
// keeps serving requests while bob stays stalled.
func TestBridgeFarEndStalls(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw, a, b, c := bridgeTrio(t, func(cfg *mesh.Config) {
		cfg.PeerTimeout = 4 * time.Second
		cfg.PingInterval = 500 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c.Handle("test/echo", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		return m.Payload, nil
	}))
	if err := a.Connect(ctx, b.ID()); err != nil {
		t.Fatalf("alice to bob through carol: %v", err)
	}
	since, _ := peerOf(c, a.ID())

	// Far more messages than the queues between alice and bob hold.
	nw.Stall(b.ID(), 2*time.Minute)
	rctx, rcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 400 {
			if a.Send(rctx, b.ID(), "test/stall", []byte("x")) != nil {
				return
			}
		}
	})
	defer func() {
		rcancel()
		wg.Wait()
	}()
	testutil.WaitFor(t, 60*time.Second, "the bridge to close", func() bool {
		_, ok := peerOf(a, b.ID())
		return !ok
	})
	// Long past carol's PeerTimeout: alice's link to carol is the same
	// one, and answers.
	for i := range 20 {
		qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
		got, err := a.Request(qctx, c.ID(), "test/echo", []byte("ping"))
		qcancel()
		if err != nil || string(got) != "ping" {
			t.Fatalf("request %d to carol while bob stalls: %q, %v", i, got, err)
		}
		if p, ok := peerOf(c, a.ID()); !ok || !p.Since.Equal(since.Since) {
			t.Fatalf("carol's link to alice went (%v) or was replaced", ok)
		}
		time.Sleep(250 * time.Millisecond) // spread over more than a PeerTimeout
	}
}
