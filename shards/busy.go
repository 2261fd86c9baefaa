package shards

import (
	"context"
	"errors"
	"time"

	"github.com/catnest/catnest/mesh"
)

// Pauses before a request that a peer answered busy is asked again.
const (
	busyFirstWait = 20 * time.Millisecond
	busyMaxWait   = time.Second
)

// requestPatient is node.Request, asked again after a pause (doubling,
// from busyFirstWait to busyMaxWait) while the peer answers busy, until
// ctx ends. mesh.ErrBusy says the peer's handlers are full of this node's
// requests whose callers gave up: the peer is slow for now, not gone or at
// fault, so a caller should neither fail nor score it down for it.
func requestPatient(ctx context.Context, node Node, to mesh.ID, proto string, payload []byte, opts ...mesh.SendOption) ([]byte, error) {
	wait := busyFirstWait
	for {
		b, err := node.Request(ctx, to, proto, payload, opts...)
		if !errors.Is(err, mesh.ErrBusy) {
			return b, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		wait = min(2*wait, busyMaxWait)
	}
}
