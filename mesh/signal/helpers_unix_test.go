//go:build unix

package signal

import "syscall"

// smallReceiveBuffer sets a socket's receive buffer to 4 KiB before it
// connects, which also turns off the kernel's growing of it.
func smallReceiveBuffer(network, address string, c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
	}); cerr != nil {
		return cerr
	}
	return err
}

// smallSendBuffer sets a listening socket's send buffer to 16 KiB, which
// the connections it accepts inherit: what a server holds for a slow
// reader is then its own queue, not megabytes in the kernel.
func smallSendBuffer(network, address string, c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 16<<10)
	}); cerr != nil {
		return cerr
	}
	return err
}

// smallBuffers says whether smallSendBuffer and smallReceiveBuffer work.
const smallBuffers = true
