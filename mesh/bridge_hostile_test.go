package mesh_test

import (
	"context"
	"encoding/json"
	"errors"
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
