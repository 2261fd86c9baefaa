package live

import "errors"

var (
	// ErrUnknownRoom: no live room of that ID is known to this node.
	ErrUnknownRoom = errors.New("live: unknown room")
	// ErrNotHost: only the room's host may do this.
	ErrNotHost = errors.New("live: only the host can do this")
	// ErrBadToken: the WHIP bearer token is missing or wrong.
	ErrBadToken = errors.New("live: missing or wrong publish token")
	// ErrBadSDP: the session description could not be parsed or applied.
	ErrBadSDP = errors.New("live: malformed session description")
	// ErrNoCodec: the offer has no media in a codec both ends can use.
	ErrNoCodec = errors.New("live: no usable codec in the offer")
	// ErrNotLive: the room has no media yet (nobody publishes, or no
	// parent could be reached).
	ErrNotLive = errors.New("live: the room has no media yet")
	// ErrUnknownSession: no WHIP or WHEP session of that ID.
	ErrUnknownSession = errors.New("live: unknown session")
	// ErrBusy: the node serves as many viewers as it may
	// (Config.MaxViewers).
	ErrBusy = errors.New("live: this node serves as many viewers as it may")
	// ErrBadInput: a request's fields are out of bounds.
	ErrBadInput = errors.New("live: bad input")

	errBadRecord = errors.New("live: bad signed record")
	errFull      = errors.New("live: no room for another child")
	errLoop      = errors.New("live: attaching would make a loop")
	errBadPath   = errors.New("live: the parent's path from the host is not one")
)
