package reslist

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/catnest/catnest/mesh"
)

// Asker is what Request needs of a node (*mesh.Node has it).
type Asker interface {
	Request(ctx context.Context, to mesh.ID, proto string, payload []byte, opts ...mesh.SendOption) ([]byte, error)
	Expand(ctx context.Context, ids ...mesh.ID) error
}

// Request asks node to over proto, linking to it first (a temporary link,
// Expand) when it is not a neighbour: a list is fetched from its own node
// alone, which is seldom one of the few neighbours. timeout bounds both
// tries together. A failed link's error says so; the request's error is
// returned as it is, for the caller to wrap.
func Request(ctx context.Context, n Asker, to mesh.ID, proto string, payload []byte, timeout time.Duration, opts ...mesh.SendOption) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	b, err := n.Request(ctx, to, proto, payload, opts...)
	if errors.Is(err, mesh.ErrNotConnected) {
		if err := n.Expand(ctx, to); err != nil {
			return nil, fmt.Errorf("link to %s: %w", to.Short(), err)
		}
		b, err = n.Request(ctx, to, proto, payload, opts...)
	}
	return b, err
}

// Fingerprint hashes the summaries of list name that the nodes of a
// directory advertise, so that a service tells its UI when the online
// lists change, not on every directory refresh.
func Fingerprint(recs []mesh.Record, name string) uint64 {
	h := fnv.New64a()
	for _, r := range recs {
		if sm, ok := Advertised(r, name); ok {
			fmt.Fprintf(h, "%s %d %d\n", r.ID, sm.Count, sm.Version)
		}
	}
	return h.Sum64()
}

// JSONHash hashes an entry that travels as JSON, for Local's version: its
// JSON is every field peers see.
func JSONHash[E any](e E) uint64 {
	b, _ := json.Marshal(e)
	h := sha256.Sum256(b)
	return binary.BigEndian.Uint64(h[:])
}
