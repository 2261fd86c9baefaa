package mesh

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/transport/v5"
	"golang.org/x/sys/unix"
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

// TestBufferedNetSeesInterfacesThatCameUp: a node started before its
// network came up gathers candidates from the addresses it has now. One
// bufferedNet serves every link of the node, and a stdnet.Net lists the
// interfaces only when made: before, the node kept its start-up addresses
// for good. The test runs itself again in a network namespace of its own
// (a user namespace makes that possible without root), where lo starts
// down with no address, and brings lo up after making the net.
func TestBufferedNetSeesInterfacesThatCameUp(t *testing.T) {
	const child = "CATNEST_TEST_NETNS_CHILD"
	if os.Getenv(child) == "1" {
		n, err := newBufferedNet(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		if a := loopbackAddrs(t, n); len(a) != 0 {
			t.Fatalf("lo has addresses %v before it is up: not a namespace of its own", a)
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		ifr, err := unix.NewIfreq("lo")
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
			t.Fatal(err)
		}
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
			t.Fatal("bringing lo up:", err)
		}
		if a := loopbackAddrs(t, n); !slices.Contains(a, "127.0.0.1") {
			t.Fatalf("lo is up but the net lists addresses %v for it, want 127.0.0.1", a)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBufferedNetSeesInterfacesThatCameUp$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), child+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		if os.Getenv("CATNEST_REQUIRE_NETNS") == "1" {
			t.Fatal("cannot make a user and network namespace:", err)
		}
		t.Skipf("cannot make a user and network namespace here (%v); set CATNEST_REQUIRE_NETNS=1 to make this a failure", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("in its own network namespace: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "--- PASS: TestBufferedNetSeesInterfacesThatCameUp") {
		t.Fatalf("the run in its own network namespace did not pass:\n%s", out.String())
	}
}

// loopbackAddrs is what n lists as the IPv4 addresses of lo.
func loopbackAddrs(t *testing.T, n *bufferedNet) []string {
	t.Helper()
	ifc, err := n.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := ifc.Addrs()
	if errors.Is(err, transport.ErrNoAddressAssigned) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			out = append(out, ipn.IP.String())
		}
	}
	return out
}
