package mesh

import (
	"context"
	"log/slog"
	"testing"
)

// TestHandshakeAdmission: one handshake per source (a new offer replaces
// the old), a few per relaying neighbour, half the slots at most for ids
// the directory does not list, so that nodes it lists still get in.
func TestHandshakeAdmission(t *testing.T) {
	ident, _ := NewIdentity()
	cfg := Config{Identity: ident, SignalURL: "http://127.0.0.1:1/x", Logger: slog.New(slog.DiscardHandler)}
	cfg.fillDefaults()
	tr, err := newRTCTransport(&cfg, cfg.Logger)
	if err != nil {
		t.Fatal(err)
	}
	known := map[ID]bool{}
	tr.known = func(id ID) bool { return known[id] }
	newID := func(isKnown bool) ID {
		i, _ := NewIdentity()
		known[i.ID] = isKnown
		return i.ID
	}
	ctx := context.Background()
	var held []*handshake
	for i := range maxUnknownHandshakes {
		_, h, err := tr.admit(ctx, newID(false), "")
		if err != nil {
			t.Fatalf("unknown source %d refused: %v", i, err)
		}
		held = append(held, h)
	}
	if _, _, err := tr.admit(ctx, newID(false), ""); err == nil {
		t.Fatal("more unknown sources than their share admitted")
	}
	// The same source offering again replaces its handshake.
	again := held[0].src
	hctx, h, err := tr.admit(ctx, again, "")
	if err != nil || h == held[0] || len(tr.inbound) != maxUnknownHandshakes {
		t.Fatalf("a source offering again: %v, %d handshakes", err, len(tr.inbound))
	}
	tr.release(held[0]) // the old one ends: the new one keeps its slot
	if tr.inbound[again] != h || hctx.Err() != nil {
		t.Fatal("the old handshake's end freed the new one's slot")
	}
	// Nodes the directory lists fill the rest; a neighbour relays only a few.
	neighbour := newID(true)
	for i := range maxHandshakesVia {
		if _, _, err := tr.admit(ctx, newID(true), neighbour); err != nil {
			t.Fatalf("known source %d via a neighbour refused: %v", i, err)
		}
	}
	if _, _, err := tr.admit(ctx, newID(true), neighbour); err == nil {
		t.Fatal("more handshakes relayed by one neighbour than its share")
	}
	for len(tr.inbound) < maxInboundHandshakes {
		if _, _, err := tr.admit(ctx, newID(true), ""); err != nil {
			t.Fatalf("known source refused with %d handshakes: %v", len(tr.inbound), err)
		}
	}
	if _, _, err := tr.admit(ctx, newID(true), ""); err == nil {
		t.Fatal("more than maxInboundHandshakes admitted")
	}
}
