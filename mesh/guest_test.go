package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"

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
