package webui

import "errors"

// ErrNoToken is returned by New for a non-loopback address without a token:
// anyone who can reach the port could otherwise drive the node.
var ErrNoToken = errors.New("webui: a token is required to listen on a non-loopback address")
