package mesh_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// hostile is a raw peer linked to a node: it said hello and sends only
// the frames a test makes it send, counting their bytes.
type hostile struct {
	id   mesh.ID
	conn mesh.Conn
	sent atomic.Int64 // bytes sent
}

// send sends one frame and counts its bytes if it went.
func (h *hostile) send(ctx context.Context, ch mesh.Channel, frame []byte) error {
	err := h.conn.Send(ctx, ch, frame)
	if err == nil {
		h.sent.Add(int64(len(frame)))
	}
	return err
}

// dialHostiles links n raw peers of made-up identities to hub; their
// connections close when the test ends.
func dialHostiles(t *testing.T, ctx context.Context, nw *meshtest.Network, hub *mesh.Node, n int) []*hostile {
	t.Helper()
	var out []*hostile
	t.Cleanup(func() {
		for _, h := range out {
			h.conn.Close()
		}
	})
	for range n {
		ident, err := mesh.NewIdentity()
		if err != nil {
			t.Fatal(err)
		}
		c, err := nw.Transport(ident.ID).Dial(ctx, hub.ID())
		if err != nil {
			t.Fatal(err)
		}
		h := &hostile{id: ident.ID, conn: c}
		out = append(out, h)
		if err := h.send(ctx, mesh.Ctl, mesh.HelloFrame("mallory")); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
