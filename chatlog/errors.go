package chatlog

import (
	"errors"
	"fmt"

	"github.com/catnest/catnest/mesh"
)

// Errors that callers branch on. Every error that Decode returns wraps
// ErrBadMessage; errors from Check wrap the sentinel named for the rule that
// failed.
var (
	// ErrBadMessage is returned for input that is not a well-formed message:
	// a peer that sends it is misbehaving.
	ErrBadMessage = errors.New("chatlog: bad message")
	// ErrBadSignature is returned when a message's signature does not verify
	// against its key. Such an error also wraps ErrBadMessage.
	ErrBadSignature = errors.New("chatlog: bad signature")
	// ErrUnknownKind is returned by Check for a kind this version does not
	// know. A newer peer may send it; it is dropped, not held against the peer.
	ErrUnknownKind = errors.New("chatlog: unknown message kind")
	// ErrTooLarge is returned for a body over MaxBody or an encoding over
	// MaxEncoded.
	ErrTooLarge = errors.New("chatlog: message too large")
	// ErrFuture is returned by Check for a message stamped more than
	// MaxSkew ahead of the receiver's clock. It may be valid later, so it
	// wraps mesh.ErrNotYetValid: the mesh holds it against nobody.
	ErrFuture = fmt.Errorf("chatlog: message from the future: %w", mesh.ErrNotYetValid)
	// ErrBurn is returned by Store.Put for a message of a burn-after-read
	// channel: such messages are never written to disk.
	ErrBurn = errors.New("chatlog: burn-after-read channel is not stored")
	// ErrBadChannel is returned for a channel whose ID does not match its
	// owner, name and nonce, or whose name is not allowed, and for a string
	// that is not a channel ID.
	ErrBadChannel = errors.New("chatlog: bad channel")
)

// Errors of the chat service that callers (the web API) map to statuses.
var (
	// ErrUnknownChannel: no such channel (404).
	ErrUnknownChannel = errors.New("chatlog: unknown channel")
	// ErrUnknownMessage: no such message in the channel (404).
	ErrUnknownMessage = errors.New("chatlog: unknown message")
	// ErrNotOwner: only the channel's owner may do that (403).
	ErrNotOwner = errors.New("chatlog: only the channel owner may do that")
	// ErrNotAuthor: only the message's author may do that (403).
	ErrNotAuthor = errors.New("chatlog: only the author may do that")
	// ErrInvalidInput: the request is malformed (400).
	ErrInvalidInput = errors.New("chatlog: invalid input")
	// ErrNotJoined: join the channel first (409).
	ErrNotJoined = errors.New("chatlog: not joined to the channel")
)

// errLocal marks an error of this node's own (its store failed, say, on a
// full disk) among the errors of taking a peer's messages, which are
// otherwise the peer's fault: it is not held against the peer.
var errLocal = errors.New("chatlog: this node failed")

// local marks err, if any, as this node's own (see errLocal).
func local(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", errLocal, err)
}
