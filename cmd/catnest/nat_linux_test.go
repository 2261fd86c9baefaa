//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/webui"
)

// The NAT test builds this network in namespaces of its own:
//
//	pub:  br0 198.51.100.1 — the rendezvous, the embedded TURN relay, coturn
//	r1:   wan 198.51.100.11 | lan 10.1.0.1, MASQUERADE out of wan
//	r2:   wan 198.51.100.12 | lan 10.2.0.1, MASQUERADE out of wan
//	a:    eth0 10.1.0.2 behind r1 — node alice
//	b:    eth0 10.2.0.2 behind r2 — node bob
//
// and each router drops UDP to the other router's public address, so that
// alice and bob cannot link directly however they punch holes: only
// through a relay. The public side uses a documentation range, not a
// private one, so the embedded relay runs with its private-address
// filter on, as on the Internet.
const (
	natPubIP   = "198.51.100.1"
	natSecret  = "nat-test-secret"
	natRequire = "CATNEST_REQUIRE_NETNS"
)

type natNet struct {
	prefix string
}

func (n natNet) ns(role string) string { return n.prefix + role }

// natSkip skips the test for reason, or fails it when CI requires it.
func natSkip(t *testing.T, format string, a ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, a...)
	if os.Getenv(natRequire) == "1" {
		t.Fatalf("%s (required: %s=1)", reason, natRequire)
	}
	t.Skipf("%s; set %s=1 to make this a failure", reason, natRequire)
}

// run runs a command for the setup, failing the test with its output.
func natRun(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// setupNAT builds the network above, or skips the test where namespaces
// or iptables are not available; it is removed when the test ends.
func setupNAT(t *testing.T) natNet {
	t.Helper()
	if os.Geteuid() != 0 {
		natSkip(t, "the NAT test makes network namespaces, which needs root")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			natSkip(t, "the NAT test needs %s (apt-get install iproute2 iptables)", tool)
		}
	}
	n := natNet{prefix: "cn" + strings.ToLower(rand.Text()[:6]) + "-"}
	if out, err := exec.Command("ip", "netns", "add", n.ns("pub")).CombinedOutput(); err != nil {
		natSkip(t, "cannot make a network namespace here: %v: %s", err, out)
	}
	roles := []string{"pub", "r1", "r2", "a", "b"}
	t.Cleanup(func() {
		for _, r := range roles {
			exec.Command("ip", "netns", "del", n.ns(r)).Run()
		}
	})
	for _, r := range roles[1:] {
		natRun(t, "ip", "netns", "add", n.ns(r))
	}
	for _, r := range roles {
		natRun(t, "ip", "-n", n.ns(r), "link", "set", "lo", "up")
	}
	pub := n.ns("pub")
	natRun(t, "ip", "-n", pub, "link", "add", "br0", "type", "bridge")
	natRun(t, "ip", "-n", pub, "addr", "add", natPubIP+"/24", "dev", "br0")
	natRun(t, "ip", "-n", pub, "link", "set", "br0", "up")
	for i, host := range []string{"a", "b"} {
		r, h := n.ns(fmt.Sprintf("r%d", i+1)), n.ns(host)
		wanIP := fmt.Sprintf("198.51.100.1%d", i+1)
		otherWAN := fmt.Sprintf("198.51.100.1%d", 2-i)
		port := fmt.Sprintf("p%d", i+1)
		natRun(t, "ip", "-n", r, "link", "add", "wan", "type", "veth", "peer", "name", port, "netns", pub)
		natRun(t, "ip", "-n", pub, "link", "set", port, "master", "br0", "up")
		natRun(t, "ip", "-n", r, "addr", "add", wanIP+"/24", "dev", "wan")
		natRun(t, "ip", "-n", r, "link", "set", "wan", "up")
		natRun(t, "ip", "-n", r, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", h)
		natRun(t, "ip", "-n", r, "addr", "add", fmt.Sprintf("10.%d.0.1/24", i+1), "dev", "lan")
		natRun(t, "ip", "-n", r, "link", "set", "lan", "up")
		natRun(t, "ip", "-n", h, "addr", "add", fmt.Sprintf("10.%d.0.2/24", i+1), "dev", "eth0")
		natRun(t, "ip", "-n", h, "link", "set", "eth0", "up")
		natRun(t, "ip", "-n", h, "route", "add", "default", "via", fmt.Sprintf("10.%d.0.1", i+1))
		natRun(t, "ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		if out, err := exec.Command("ip", "netns", "exec", r, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE").CombinedOutput(); err != nil {
			natSkip(t, "iptables cannot NAT in a namespace here: %v: %s", err, out)
		}
		natRun(t, "ip", "netns", "exec", r, "iptables", "-A", "FORWARD", "-p", "udp", "-d", otherWAN, "-j", "DROP")
	}
	return n
}

// startIn runs catnest with args in namespace ns until the test ends.
func startIn(t *testing.T, ns string, args ...string) *proc {
	t.Helper()
	return startCommand(t, exec.Command("ip", append([]string{"netns", "exec", ns, os.Args[0]}, args...)...), args)
}

// dialIn connects to addr from inside namespace ns: the socket is made
// on a thread moved into ns and keeps to it after the thread moves back.
func dialIn(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{nil, err}
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{nil, err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{nil, fmt.Errorf("setns: %w", err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		// A thread that cannot go back stays locked, and ends with the
		// goroutine rather than serve others in the wrong namespace.
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}

// nsHTTP is an HTTP client whose connections start in namespace ns.
func nsHTTP(t *testing.T, ns string) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialIn(ctx, ns, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type natPeer struct {
	ID      string `json:"id"`
	Route   string `json:"route"`
	Relayed bool   `json:"relayed"`
}

// natNode runs a node named name in namespace ns and returns a function
// reading its /api/peers.
func natNode(t *testing.T, ns, name, signalURL string) func() []natPeer {
	t.Helper()
	p := startIn(t, ns, "serve", "--data", t.TempDir(), "--http", "127.0.0.1:7070", "--signal", signalURL, "--name", name)
	p.expect(t, `^web UI: http://127\.0\.0\.1:7070/`)
	key := p.expect(t, `^API key: (\S+)`)[1]
	hc := nsHTTP(t, ns)
	return func() []natPeer {
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:7070/api/peers", nil)
		req.Header.Set(webui.APIKeyHeader, key)
		resp, err := hc.Do(req)
		if err != nil {
			t.Logf("%s: /api/peers: %v", name, err)
			return nil
		}
		defer resp.Body.Close()
		var ps []natPeer
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &ps); err != nil {
			t.Logf("%s: /api/peers: %v: %s", name, err, b)
		}
		return ps
	}
}

// linkedThroughRelay waits until alice and bob hold one link to each
// other, a relayed one (route turn) at both ends.
func linkedThroughRelay(t *testing.T, alice, bob func() []natPeer) {
	t.Helper()
	var last [2][]natPeer
	defer func() {
		if t.Failed() {
			t.Logf("alice's peers %+v, bob's %+v", last[0], last[1])
		}
	}()
	testutil.WaitFor(t, 90*time.Second, "a relayed link (route turn) between the NATed nodes", func() bool {
		last = [2][]natPeer{alice(), bob()}
		return len(last[0]) == 1 && len(last[1]) == 1 && last[0][0].Route == "turn" && last[0][0].Relayed &&
			last[1][0].Route == "turn" && last[1][0].Relayed
	})
}

// TestNATLinkThroughTURN: two nodes behind NATs that block direct UDP
// between them link through the embedded TURN relay of `catnest signal
// --turn`, with the credentials the rendezvous hands them (no ICE flag),
// and again through a coturn that shares the secret.
func TestNATLinkThroughTURN(t *testing.T) {
	testutil.CheckGoroutines(t)
	n := setupNAT(t)

	t.Run("embedded", func(t *testing.T) {
		sig := startIn(t, n.ns("pub"), "signal", "--host", natPubIP, "--port", "9000", "--path", "/nat", "--allow-discovery",
			"--turn", "--turn-public-ip", natPubIP, "--turn-port", "3478", "--turn-secret", natSecret)
		sig.expect(t, `^TURN relay on `)
		url := "http://" + natPubIP + ":9000/nat"
		alice := natNode(t, n.ns("a"), "alice", url)
		bob := natNode(t, n.ns("b"), "bob", url)
		linkedThroughRelay(t, alice, bob)
	})

	t.Run("coturn", func(t *testing.T) {
		if _, err := exec.LookPath("turnserver"); err != nil {
			natSkip(t, "coturn is not installed (apt-get install coturn)")
		}
		// coturn as the embedded relay is set up: it may relay to its own
		// address (the relayed peers meet there) and not into private
		// networks. Relaying into 10/8, which the public side cannot
		// reach, also broke the allocations: ICE never completed.
		cot := exec.Command("ip", "netns", "exec", n.ns("pub"), "turnserver", "-n", "--listening-ip="+natPubIP,
			"--listening-port=3479", "--relay-ip="+natPubIP, "--use-auth-secret", "--static-auth-secret="+natSecret,
			"--realm=catnest", "--allowed-peer-ip="+natPubIP, "--denied-peer-ip=10.0.0.0-10.255.255.255", "--no-tls", "--no-dtls", "--no-cli", "--log-file=stdout", "--simple-log",
			"--pidfile="+filepath.Join(t.TempDir(), "turnserver.pid"))
		// One writer for both: exec writes to it from one goroutine.
		var cotOut bytes.Buffer
		cot.Stdout, cot.Stderr = &cotOut, &cotOut
		if err := cot.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cot.Wait(); close(exited) }()
		t.Cleanup(func() {
			cot.Process.Signal(unix.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				cot.Process.Kill()
				<-exited
			}
			if t.Failed() {
				t.Logf("coturn output:\n%s", cotOut.String())
			}
		})
		sig := startIn(t, n.ns("pub"), "signal", "--host", natPubIP, "--port", "9001", "--path", "/nat", "--allow-discovery",
			"--turn-secret", natSecret, "--turn-url", "turn:"+natPubIP+":3479?transport=udp", "--turn-url", "stun:"+natPubIP+":3479")
		sig.expect(t, `^TURN credentials for: `)
		url := "http://" + natPubIP + ":9001/nat"
		alice := natNode(t, n.ns("a"), "alice", url)
		bob := natNode(t, n.ns("b"), "bob", url)
		linkedThroughRelay(t, alice, bob)
	})
}
