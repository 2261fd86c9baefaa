package recon

import "errors"

var (
	// ErrBadMessage is returned by Next for a message that does not decode
	// or that no honest peer would send (ranges out of order, counts that do
	// not match the ranges, oversized). All decode errors wrap it.
	ErrBadMessage = errors.New("recon: bad message")
	// ErrTooManyRounds is returned by Next once a session has received more
	// than Options.MaxRounds messages.
	ErrTooManyRounds = errors.New("recon: too many rounds")

	errStarted = errors.New("recon: session already started")
)
