package mesh

import "context"

// Transport makes links between nodes. The default is WebRTC through a
// rendezvous server; package meshtest has an in-memory one for tests and
// simulations. A Transport delivers only links whose remote end has proven
// the node ID it claims.
type Transport interface {
	// Dial opens a link to the node id. It returns when the link is ready
	// for frames, or with an error.
	Dial(ctx context.Context, id ID) (Conn, error)
	// Serve accepts inbound links until ctx ends, handing each one to
	// accept, which may block. Serve returns nil when ctx ends.
	Serve(ctx context.Context, accept func(Conn)) error
	// Candidates lists nodes that may be dialed, as far as the transport
	// knows (for example a rendezvous server's peer list). It may return
	// nil with no error when it knows none.
	Candidates(ctx context.Context) ([]ID, error)
}

// Conn is one authenticated link to another node.
type Conn interface {
	// Remote is the proven ID of the other end.
	Remote() ID
	// Outbound reports whether this end dialed.
	Outbound() bool
	// Start begins delivery of inbound frames to recv, which is called
	// sequentially per channel, on a goroutine of the Conn's. recv owns the
	// frame and may block, which holds back the sender. Frames that arrive
	// before Start wait for it. Start is called once.
	Start(recv func(ch Channel, frame []byte))
	// Send writes one frame on ch. It blocks while the channel's send
	// buffer is full, until there is room, ctx ends or the Conn closes.
	// The frame is not retained after Send returns.
	Send(ctx context.Context, ch Channel, frame []byte) error
	// Close closes the link. It is safe to call more than once.
	Close() error
	// Done is closed when the link has closed, from either end.
	Done() <-chan struct{}
}
