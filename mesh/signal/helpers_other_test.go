//go:build !unix

package signal

import "syscall"

// smallReceiveBuffer leaves the receive buffer as it is where setting it
// is not portable; the slow-reader test then just sends more.
func smallReceiveBuffer(network, address string, c syscall.RawConn) error { return nil }

// smallSendBuffer leaves the send buffer as it is where setting it is not
// portable.
func smallSendBuffer(network, address string, c syscall.RawConn) error { return nil }

// smallBuffers says whether smallSendBuffer and smallReceiveBuffer work.
const smallBuffers = false
