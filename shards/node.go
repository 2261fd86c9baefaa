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
	// Sign signs a message with the node key (mesh.CheckSigned checks
	// it): a push's routed messages pass through other members, who
	// must not be able to forge them (pushroute.go).
	Sign(context string, msg []byte) ([]byte, error)
}

var _ Node = (*mesh.Node)(nil)

// pieceSource holds resources whose verified pieces this node serves: the
// shares (files of the user's, served in place) and the downloads (pieces
// in the data dir) both are one. The block handler asks each in turn.
type pieceSource interface {
	// manifestOf returns the manifest of a resource it holds.
	manifestOf(id MD5) (*Manifest, bool)
	// haveOf returns what it holds of id; nil if nothing.
	haveOf(id MD5) Bitfield
	// readBlock reads the block r into p (len(p) == r.Len), only from a
	// piece it holds verified; a piece that changed since (a user's file
	// edited on disk) is an error and is never served.
	readBlock(ctx context.Context, r blockReq, p []byte) error
	// sentBlock counts n bytes of id served to a peer (Transfer.Uploaded).
	sentBlock(id MD5, to mesh.ID, n int)
}
