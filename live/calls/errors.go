package calls

import "errors"

var (
	// ErrBadRoom is returned for a room name that is empty, too long or has
	// a character other than letters, digits, '-', '_' and '.'.
	ErrBadRoom = errors.New("calls: bad room name")
	// ErrNoSession is returned for a session id this node does not hold
	// (never opened, or its page went away).
	ErrNoSession = errors.New("calls: no such session")
	// ErrTooManySessions is returned by Open when Config.MaxSessions pages
	// are open.
	ErrTooManySessions = errors.New("calls: too many call sessions")
	// ErrInOtherRoom is returned by Join for a session that is in another
	// room: leave it first.
	ErrInOtherRoom = errors.New("calls: session is in another room")
	// ErrNoPeer is returned by Signal when the session's room has no other
	// member to send to.
	ErrNoPeer = errors.New("calls: no other member in the room")
	// ErrBadSignal is returned for a signal that is not an offer, answer or
	// candidate of the right shape and size.
	ErrBadSignal = errors.New("calls: bad signal")
	// ErrNotMember is returned to a node that sends a signal to a session
	// whose other member it is not.
	ErrNotMember = errors.New("calls: sender is not the room's other member")
	// ErrNoOwner is returned by Join when no node could take the room.
	ErrNoOwner = errors.New("calls: no node could take the room")
	// ErrClosed is returned after the service has stopped.
	ErrClosed = errors.New("calls: service stopped")

	errBusy = errors.New("calls: owner holds too many rooms or seats")
)
