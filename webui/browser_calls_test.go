package webui

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pion/webrtc/v4"

	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/live/calls"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// callNode is a node of an in-memory mesh with the call service and its
// web UI.
type callNode struct {
	url string
	svc *calls.Service
}

// startCallNodes starts n nodes with the call service and a web UI each,
// handing pages ice as their ICE servers, and waits until each knows the
// others' service.
func startCallNodes(t *testing.T, n int, ice []webrtc.ICEServer) []callNode {
	t.Helper()
	nw := meshtest.NewNetwork()
	var out []callNode
	for i := range n {
		var ident *mesh.Identity
		node := nw.NewNode(t, fmt.Sprintf("caller%d", i), meshtest.Options{Configure: func(c *mesh.Config) {
			meshtest.Fast(c)
			ident = c.Identity
		}})
		cfg := calls.DefaultConfig()
		cfg.Node, cfg.Identity = node, ident
		cfg.ICEServers = func() []webrtc.ICEServer { return ice }
		svc, err := calls.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); svc.Serve(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		base := startServer(t, Config{Version: "test", Calls: svc}, node)
		out = append(out, callNode{url: base + "/", svc: svc})
		defer func() {
			// Every node lists the others before the pages join.
			deadline := time.Now().Add(30 * time.Second)
			for countCalls(node) < n {
				if time.Now().After(deadline) {
					t.Fatalf("%s knows %d call services of %d", node.Name(), countCalls(node), n)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	return out
}

func countCalls(n *mesh.Node) int {
	c := 0
	for _, r := range n.Directory() {
		if _, ok := r.Resources["calls"]; ok {
			c++
		}
	}
	return c
}

// startCoturn runs Debian's coturn on loopback with one user and returns
// its ICE server; it skips the test when coturn is not installed, unless
// browser tests are required (CI installs coturn).
//
// coturn listens on UDP only (--no-tcp): by default it also listens on TCP
// at the same port, and when another socket holds that TCP port (any
// loopback connection's ephemeral port may) its relay threads retry the
// bind forever and never serve an allocation. The UDP port is free only
// when probed, so a start that cannot bind it is retried on another port.
func startCoturn(t *testing.T) webrtc.ICEServer {
	t.Helper()
	exe, err := exec.LookPath("turnserver")
	if err != nil {
		if os.Getenv(browsertest.EnvRequire) == "1" {
			t.Fatalf("coturn not installed (and %s=1): %v", browsertest.EnvRequire, err)
		}
		t.Skip("coturn not installed: apt-get install -y coturn")
	}
	const attempts = 5
	for range attempts {
		if port, ok := tryCoturn(t, exe); ok {
			return webrtc.ICEServer{URLs: []string{fmt.Sprintf("turn:127.0.0.1:%d?transport=udp", port)}, Username: "catnest", Credential: "secret"}
		}
	}
	t.Fatalf("coturn could not bind a free UDP port in %d attempts", attempts)
	return webrtc.ICEServer{}
}

// tryCoturn starts coturn on a UDP port that was free a moment ago and
// reports whether it opened its listener there; if not, the process is
// stopped. A coturn that started is stopped when the test ends, and its
// log is shown if the test failed.
func tryCoturn(t *testing.T, exe string) (int, bool) {
	t.Helper()
	ln, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.LocalAddr().(*net.UDPAddr).Port
	ln.Close()
	// -v logs the listener's opening, which is what ready waits for.
	cmd := exec.Command(exe, "-n", "-v", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
		"--listening-port="+strconv.Itoa(port), "--min-port=49160", "--max-port=49560",
		"--lt-cred-mech", "--user=catnest:secret", "--realm=catnest.test", "--allow-loopback-peers",
		"--no-cli", "--no-tcp", "--no-tls", "--no-dtls", "--no-tcp-relay", "--log-file=stdout", "--simple-log",
		"--pidfile="+filepath.Join(t.TempDir(), "turnserver.pid"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		log strings.Builder
	)
	ready := make(chan struct{})
	busy := make(chan struct{})
	done := make(chan struct{})
	opened := fmt.Sprintf("UDP listener opened on: 127.0.0.1:%d", port)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		var readyOnce, busyOnce sync.Once
		for sc.Scan() {
			mu.Lock()
			log.WriteString(sc.Text() + "\n")
			mu.Unlock()
			switch {
			case strings.Contains(sc.Text(), opened):
				readyOnce.Do(func() { close(ready) })
			case strings.Contains(sc.Text(), "Cannot bind"):
				busyOnce.Do(func() { close(busy) })
			}
		}
	}()
	stop := func() {
		cmd.Process.Kill()
		<-done
		cmd.Wait()
	}
	select {
	case <-ready:
	case <-busy:
		stop()
		t.Logf("coturn could not bind UDP port %d; trying another", port)
		return 0, false
	case <-done:
		cmd.Wait()
		t.Fatalf("coturn exited: %s", log.String())
	case <-time.After(20 * time.Second):
		stop()
		t.Fatalf("coturn did not start:\n%s", log.String())
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			mu.Lock()
			t.Logf("coturn:\n%s", log.String())
			mu.Unlock()
		}
	})
	return port, true
}

// TestBrowserCall: two Chromium pages with fake cameras on two nodes' UIs
// join a room and each decodes the other's video; a third page finds the
// room full; one leaves and the other waits again; then both join a room
// relaying only through coturn and connect through it.
func TestBrowserCall(t *testing.T) {
	checkGoroutines(t)
	var ice []webrtc.ICEServer
	turnErr := errors.New("coturn not started")
	if _, err := exec.LookPath("turnserver"); err == nil || os.Getenv(browsertest.EnvRequire) == "1" {
		ice, turnErr = []webrtc.ICEServer{startCoturn(t)}, nil
	}
	nodes := startCallNodes(t, 2, ice)
	bctx := browsertest.NewWithFlags(t, "use-fake-device-for-media-stream", "use-fake-ui-for-media-stream",
		"allow-loopback-in-peer-connection", "autoplay-policy=no-user-gesture-required")
	a := bctx
	b, cancelB := chromedp.NewContext(bctx)
	defer cancelB()
	c, cancelC := chromedp.NewContext(bctx)
	defer cancelC()
	const wait = 60 * time.Second
	open := func(ctx context.Context, url string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(url+"#/call")); err != nil {
			t.Fatal(err)
		}
		browsertest.Until(t, ctx, wait, `document.querySelector("#call-join") && !document.querySelector("#call-join").disabled`)
	}
	join := func(ctx context.Context, room string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector("#call-room").value = "`+room+`";
			document.querySelector("#call-form").requestSubmit(); true`)); err != nil {
			t.Fatal(err)
		}
	}
	state := func(s string) string { return `document.querySelector("#call-status").dataset.state === "` + s + `"` }
	// decoding waits until the page has decoded the other's video and
	// goes on decoding it.
	decoding := func(ctx context.Context, route string) {
		t.Helper()
		browsertest.Until(t, ctx, wait, `document.querySelector("#call-remote").videoWidth > 0
			&& Number(document.querySelector("#call-stats").dataset.frames) > 0
			&& document.querySelector("#call-stats").dataset.route === "`+route+`"`)
		first, err := chromedp.Run(ctx, chromedp.Evaluate[int](`Number(document.querySelector("#call-stats").dataset.frames)`))
		if err != nil {
			t.Fatal(err)
		}
		browsertest.Until(t, ctx, wait, `Number(document.querySelector("#call-stats").dataset.frames) > `+strconv.Itoa(first+10))
	}

	open(a, nodes[0].url)
	open(b, nodes[1].url)
	join(a, "kitchen")
	browsertest.Until(t, a, wait, state("waiting"))
	join(b, "kitchen")
	browsertest.Until(t, a, wait, state("connected"))
	browsertest.Until(t, b, wait, state("connected"))
	decoding(a, "direct")
	decoding(b, "direct")

	open(c, nodes[0].url)
	join(c, "kitchen")
	browsertest.Until(t, c, wait, state("full"))
	screenshot(t, a, "call-connected")

	if err := chromedp.Do(b, chromedp.Click("#call-leave", chromedp.NodeVisible)); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, a, wait, state("waiting")+` && document.querySelector("#call-remote").srcObject === null`)
	browsertest.Until(t, b, wait, state("idle"))

	t.Run("relay", func(t *testing.T) {
		if turnErr != nil {
			t.Skipf("no TURN server: %v", turnErr)
		}
		if err := chromedp.Do(a, chromedp.Click("#call-leave", chromedp.NodeVisible)); err != nil {
			t.Fatal(err)
		}
		browsertest.Until(t, a, wait, state("idle"))
		for _, ctx := range []context.Context{a, b} {
			browsertest.Until(t, ctx, wait, `!document.querySelector("#call-relay").disabled`)
			if err := chromedp.Do(ctx, chromedp.Click("#call-relay", chromedp.NodeVisible)); err != nil {
				t.Fatal(err)
			}
			browsertest.Until(t, ctx, wait, `document.querySelector("#call-relay").checked`)
		}
		join(a, "relayed")
		browsertest.Until(t, a, wait, state("waiting"))
		join(b, "relayed")
		decoding(a, "relay")
		decoding(b, "relay")
	})
}
