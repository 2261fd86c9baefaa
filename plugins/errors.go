package plugins

import "errors"

var (
	// ErrBadPlugin is returned for a file that is not a plugin: a
	// malformed or missing header, an unknown permission, a bad
	// version, or a file over MaxFile. The message says which.
	ErrBadPlugin = errors.New("plugins: bad plugin")
	// ErrBadSignature is returned for a plugin whose signature does not
	// match its claimed publisher.
	ErrBadSignature = errors.New("plugins: signature does not match the publisher")
	// ErrTampered is returned for a plugin whose bytes do not hash to
	// its id.
	ErrTampered = errors.New("plugins: file does not match its id")
	// ErrUnknown is returned for a plugin id that is neither in the
	// market nor installed.
	ErrUnknown = errors.New("plugins: unknown plugin")
	// ErrOlder is returned when installing a version older than the one
	// installed from the same publisher.
	ErrOlder = errors.New("plugins: older than the installed version")
	// ErrDataFull is returned when a plugin's data would pass MaxData or
	// a key or value is too long.
	ErrDataFull = errors.New("plugins: plugin data over its limit")
	// ErrBadPage is returned for a published list page from a peer that
	// cannot be decoded or breaks the rules.
	ErrBadPage = errors.New("plugins: bad list page")
)
