package mesh

import "context"

// Message is an inbound message or request as a Handler sees it.
type Message struct {
	// From is the proven ID of the sender.
	From ID
	// Protocol is the name the handler was registered under.
	Protocol string
	// Payload is the message body. The handler owns it.
	Payload []byte
	// Request is true when the sender waits for an answer.
	Request bool
	// Channel is the channel the message came on; the answer goes back on it.
	Channel Channel
}

// Handler serves one protocol. For a request, the returned bytes (or
// error, whose text is sent) answer it; for a one-way message they are
// ignored.
//
// One-way messages from one peer are handled one at a time, in the order
// they were sent, on a goroutine of that link: a handler that blocks holds
// back further one-way messages from that peer (but not its answers to
// this node's requests, nor its requests, nor the mesh's own traffic from
// it, which has a queue, a reserve of the queue budget and request slots
// of its own). Up to Config.MessageQueue of
// them wait; more are dropped and counted in PeerInfo.Dropped, so a
// handler that may block for long should hand work off. Requests run
// concurrently, up to Config.MaxConcurrentRequests per link; up to
// Config.RequestQueue more wait, and beyond those the caller gets ErrBusy.
// Requests never hold back the peer's other frames. ctx ends when the
// link or the node closes.
type Handler interface {
	ServeMesh(ctx context.Context, m *Message) ([]byte, error)
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, m *Message) ([]byte, error)

// ServeMesh calls f.
func (f HandlerFunc) ServeMesh(ctx context.Context, m *Message) ([]byte, error) { return f(ctx, m) }

// SendOption changes how Send and Request deliver.
type SendOption func(*sendOptions)

type sendOptions struct {
	ch Channel
}

// OverBulk sends on the link's bulk channel, for large payloads that must
// not delay control traffic.
func OverBulk() SendOption { return func(o *sendOptions) { o.ch = Bulk } }
