package mesh

import (
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestBufferedNetGrowsUDPBuffers: the UDP sockets the transport opens ask
// for RTCConfig.UDPBuffer, and get it up to the kernel's cap; the system
// default (208 KiB) dropped datagrams on loopback at 100 MB/s, and each
// drop is an SCTP loss (BenchmarkDownloadGoodput's link ran at 35 MB/s in
// half its rounds).
func TestBufferedNetGrowsUDPBuffers(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Skip("no net.core.rmem_max here:", err)
	}
	rmemMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	const want = 4 << 20
	n, err := newBufferedNet(want)
	if err != nil {
		t.Fatal(err)
	}
	rcvbuf := func(c net.PacketConn) int {
		t.Helper()
		rc, err := c.(*net.UDPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var serr error
		if err := rc.Control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) }); err != nil {
			t.Fatal(err)
		}
		if serr != nil {
			t.Fatal(serr)
		}
		return v / 2 // Linux reports twice what it was asked for
	}
	plain, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	c1, err := n.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := n.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	expect := min(want, rmemMax)
	if expect <= rcvbuf(plain) {
		t.Skipf("the kernel caps buffers at %d bytes, no more than its default %d", rmemMax, rcvbuf(plain))
	}
	if got := rcvbuf(c1.(*net.UDPConn)); got < expect {
		t.Errorf("ListenUDP: receive buffer %d bytes, want %d (default %d)", got, expect, rcvbuf(plain))
	}
	if got := rcvbuf(c2); got < expect {
		t.Errorf("ListenPacket: receive buffer %d bytes, want %d (default %d)", got, expect, rcvbuf(plain))
	}
}
