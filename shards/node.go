package shards

import (
	"context"

	"github.com/catnest/catnest/mesh"
)

// Node is what shards needs of the mesh (*mesh.Node has it all); tests
// run real nodes on mesh/meshtest.
type Node interface {
	ID() mesh.ID
	Handle(proto string, h mesh.Handler)
	Request(ctx context.Context, to mesh.ID, proto string, payload []byte, opts ...mesh.SendOption) ([]byte, error)
	Send(ctx context.Context, to mesh.ID, proto string, payload []byte, opts ...mesh.SendOption) error
	Peers() []mesh.PeerInfo
	SubscribePeers() (<-chan mesh.PeerEvent, func())
	Directory() []mesh.Record
	Lookup(id mesh.ID) (mesh.Record, bool)
	SubscribeDirectory() (<-chan struct{}, func())
	SetResource(service string, summary any) error
	// Expand makes temporary links to holders that are not neighbours.
	Expand(ctx context.Context, ids ...mesh.ID) error
	Connect(ctx context.Context, id mesh.ID) error
	// Penalize scores down a peer that sent a corrupt piece or a bad frame.
	Penalize(id mesh.ID, reason string)
}

var _ Node = (*mesh.Node)(nil)
