package mesh

import "errors"

var (
	// ErrBadID is returned for a string that is not a node ID.
	ErrBadID = errors.New("mesh: bad node id")
	// ErrNotConnected is returned when there is no link to the node asked for.
	ErrNotConnected = errors.New("mesh: not connected")
	// ErrLinkClosed is returned when a link closes while a call waits on it.
	ErrLinkClosed = errors.New("mesh: link closed")
	// ErrIdentityMismatch is returned when the remote end of a link proves a
	// key that does not hash to the node ID that was meant.
	ErrIdentityMismatch = errors.New("mesh: remote identity mismatch")
	// ErrTooLarge is returned for a payload that does not fit in one frame.
	ErrTooLarge = errors.New("mesh: payload too large")
	// ErrNoHandler is returned by Request when the remote node has no
	// handler for the protocol.
	ErrNoHandler = errors.New("mesh: no handler for protocol")
	// ErrBusy is returned by Request when the remote node had no room for
	// the request: its handlers were serving Config.MaxConcurrentRequests
	// of this node's requests and as many more waited. The request was not
	// handled; the caller should slow down and try again later. It is no
	// fault of the remote's.
	ErrBusy = errors.New("mesh: peer busy")
	// ErrClosed is returned after the node has stopped.
	ErrClosed = errors.New("mesh: node closed")
	// ErrNotYetValid is for a broadcast validator to wrap when a message
	// fails for a reason of this node's own that may pass later: a message
	// stamped ahead of this node's clock, say. It is dropped, but the
	// neighbour that passed it on is not scored down, and it is checked
	// again when offered again later (see ValidateBroadcast).
	ErrNotYetValid = errors.New("mesh: broadcast not yet valid")

	// ErrNoPath is wrapped by a Transport's Dial when it reached the node
	// to negotiate but found no path for the link itself (ICE failed):
	// the node then tries a bridge through a common neighbour.
	ErrNoPath = errors.New("mesh: no path to the node")

	// ErrSignalLost is wrapped by a Transport's Dial when a node on the way
	// reported that the offer (or, at the other end, the answer) it relayed
	// through the mesh could not be passed on: the dial ends at once, its
	// slot free for another candidate, rather than waiting out DialTimeout.
	ErrSignalLost = errors.New("mesh: signal lost on its way through the mesh")

	errBadFrame = errors.New("mesh: bad frame")
)

// RemoteError is an error that the remote handler returned for a request.
type RemoteError struct {
	Peer ID
	Msg  string
}

func (e *RemoteError) Error() string {
	return "mesh: remote " + e.Peer.Short() + ": " + e.Msg
}
