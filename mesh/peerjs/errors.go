package peerjs

import "errors"

var (
	// ErrMalformed: the bytes are not a value of the connection's
	// serialization.
	ErrMalformed = errors.New("peerjs: malformed message")
	// ErrTooLarge: a message, or a chunked message put back together, is
	// over the size limit.
	ErrTooLarge = errors.New("peerjs: message too large")
	// ErrClosed: the page asked to close the connection.
	ErrClosed = errors.New("peerjs: closed by the page")
	// ErrSerialization: the connection's serialization is not one this
	// package speaks ("raw" and "msgpack" are not).
	ErrSerialization = errors.New("peerjs: unsupported serialization")
)
