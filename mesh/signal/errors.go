package signal

import "errors"

var (
	// ErrNotConnected is returned by Client.Send when the client has no
	// registered socket to the rendezvous server; callers may retry later.
	ErrNotConnected = errors.New("signal: not connected to the rendezvous server")

	// ErrDiscoveryDisabled is returned by Client.Peers when the server does
	// not list its peers (it answered 401).
	ErrDiscoveryDisabled = errors.New("signal: peer discovery is disabled on the server")

	// ErrRejected is returned (wrapped, with the server's reason) by
	// Client.Serve when the server refuses the client for a reason that
	// retrying cannot fix, such as a wrong key.
	ErrRejected = errors.New("signal: rejected by the rendezvous server")

	// ErrBadMessage is returned (wrapped) for a message that is not a valid
	// PeerServer message: malformed JSON, too large, no type, or, for Send,
	// a type the client may not send or a missing or invalid dst.
	ErrBadMessage = errors.New("signal: bad message")

	// ErrServerClosed is returned by Server.Serve and Server.Maintain when
	// called after the server has already been shut down.
	ErrServerClosed = errors.New("signal: server closed")
)

// ErrNoTURN is returned by Client.TURN when the server hands out no TURN
// credentials.
var ErrNoTURN = errors.New("signal: the rendezvous server hands out no TURN credentials")
