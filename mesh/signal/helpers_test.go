package signal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// waitFor bounds every wait in these tests.
const waitFor = 5 * time.Second

// checkGoroutines fails t if goroutines of this package, the WebSocket
// library, net/http or os/exec are still running once the test's other
// cleanups are done. Call it first in a test.
func checkGoroutines(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			http.DefaultTransport.(*http.Transport).CloseIdleConnections()
			leaked := leakedGoroutines()
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d goroutines left running:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func leakedGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "testing.tRunner") || strings.Contains(g, "testing.runFuzz") ||
			strings.Contains(g, "testing.(*F)") {
			continue
		}
		for _, s := range []string{"catnest/catnest/", "coder/websocket", "net/http.", "os/exec.", "pion/turn"} {
			if strings.Contains(g, s) {
				leaked = append(leaked, g)
				break
			}
		}
	}
	return leaked
}

// testServer is a Server running on a loopback port until the test ends.
type testServer struct {
	*Server
	url  string // base URL with the path, no trailing slash
	addr string
	stop func() // stops the server and waits for Serve; idempotent
}

// startServer runs a Server for cfg on addr ("" for any free port).
func startServer(t *testing.T, cfg ServerConfig, addr string) *testServer {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port of a stopped server may take a moment to free
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return serveListener(t, cfg, ln)
}

// serveListener runs a Server for cfg on ln until the test ends.
func serveListener(t *testing.T, cfg ServerConfig, ln net.Listener) *testServer {
	t.Helper()
	s := NewServer(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	var stopped bool
	stop := func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v", err)
			}
		case <-time.After(3 * waitFor):
			t.Errorf("Serve did not return after its context ended")
		}
	}
	t.Cleanup(stop)
	return &testServer{
		Server: s,
		url:    "http://" + ln.Addr().String() + strings.TrimSuffix(normalisePath(cfg.Path), "/"),
		addr:   ln.Addr().String(),
		stop:   stop,
	}
}

// testConfig is a server configuration for tests: a custom path and key,
// short timeouts.
func testConfig() ServerConfig {
	return ServerConfig{
		Key:           "k1",
		Path:          "/myapp",
		ExpireTimeout: 5 * time.Second,
		AliveTimeout:  30 * time.Second,
	}
}

// rawConn is a bare protocol client: it sends what it is told and records
// what arrives.
type rawConn struct {
	t    *testing.T
	ws   *websocket.Conn
	msgs chan []byte
	done chan error // gets the read error, then is closed
}

// dialRaw opens a WebSocket to the server at base (a URL with its path and
// no trailing slash) with the given query. If read is false nothing reads
// from the socket, as with a stuck client.
func dialRaw(t *testing.T, base string, q url.Values, read bool) *rawConn {
	t.Helper()
	return dialRawFrom(t, base, q, read, "")
}

// dialRawFrom is dialRaw from the local IP address local ("": any), such
// as 127.0.0.2, to look like another host.
func dialRawFrom(t *testing.T, base string, q url.Values, read bool, local string) *rawConn {
	t.Helper()
	u := "ws" + strings.TrimPrefix(base, "http") + "/peerjs?" + q.Encode()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var opts *websocket.DialOptions
	if !read || local != "" {
		d := net.Dialer{}
		if !read {
			// A small receive buffer, so that the server's writes back up
			// after less data.
			d.Control = smallReceiveBuffer
		}
		if local != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
		}
		opts = &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
		}}}
	}
	ws, _, err := websocket.Dial(ctx, u, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	ws.SetReadLimit(1 << 20)
	c := &rawConn{t: t, ws: ws, msgs: make(chan []byte, 1024), done: make(chan error, 1)}
	if read {
		go func() {
			defer close(c.done)
			for {
				_, b, err := ws.Read(context.Background())
				if err != nil {
					c.done <- err
					return
				}
				c.msgs <- b
			}
		}()
	} else {
		close(c.done)
	}
	t.Cleanup(func() {
		ws.CloseNow()
		<-c.done
	})
	return c
}

// connect registers id on the server with a raw socket.
func connect(t *testing.T, base, key, id, token string) *rawConn {
	t.Helper()
	return dialRaw(t, base, url.Values{"key": {key}, "id": {id}, "token": {token}, "version": {"1.5.5"}}, true)
}

// connectOpen registers id and waits for OPEN.
func connectOpen(t *testing.T, base, key, id string) *rawConn {
	t.Helper()
	c := connect(t, base, key, id, "tok-"+id)
	c.expect(Message{Type: TypeOpen})
	return c
}

func (c *rawConn) sendRaw(b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *rawConn) send(m Message) {
	c.t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(b)
}

// next returns the next message, or fails the test if none comes within
// waitFor or the socket closes.
func (c *rawConn) next() Message {
	c.t.Helper()
	select {
	case b := <-c.msgs:
		return c.decode(b)
	case err := <-c.done:
		// The reader queues every message before it reports the end.
		select {
		case b := <-c.msgs:
			return c.decode(b)
		default:
		}
		c.t.Fatalf("socket closed (%v) while waiting for a message", err)
	case <-time.After(waitFor):
		c.t.Fatalf("no message within %v", waitFor)
	}
	return Message{}
}

func (c *rawConn) decode(b []byte) Message {
	c.t.Helper()
	m, err := DecodeMessage(b)
	if err != nil {
		c.t.Fatalf("bad message from server %q: %v", b, err)
	}
	return m
}

// expect fails the test unless the next message equals want (payloads
// compared as compact JSON).
func (c *rawConn) expect(want Message) {
	c.t.Helper()
	got := c.next()
	if !sameMessage(got, want) {
		c.t.Fatalf("got %s, want %s", show(got), show(want))
	}
}

// expectNothing fails the test if a message arrives within d.
func (c *rawConn) expectNothing(d time.Duration) {
	c.t.Helper()
	select {
	case b := <-c.msgs:
		c.t.Fatalf("unexpected message %s", b)
	case <-time.After(d):
	}
}

// expectClosed fails the test unless the server closes the socket, after
// sending nothing more than the messages in want.
func (c *rawConn) expectClosed(want ...Message) {
	c.t.Helper()
	for _, w := range want {
		c.expect(w)
	}
	select {
	case b := <-c.msgs:
		c.t.Fatalf("unexpected message %s before close", b)
	case <-c.done:
		select {
		case b := <-c.msgs:
			c.t.Fatalf("unexpected message %s before close", b)
		default:
		}
	case <-time.After(3 * waitFor):
		c.t.Fatalf("socket not closed within %v", 3*waitFor)
	}
}

func sameMessage(a, b Message) bool {
	return a.Type == b.Type && a.Src == b.Src && a.Dst == b.Dst && compact(a.Payload) == compact(b.Payload)
}

func compact(p json.RawMessage) string {
	if len(p) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, p); err != nil {
		return "!" + string(p)
	}
	return buf.String()
}

func show(m Message) string {
	b, _ := json.Marshal(m)
	return string(b)
}

func errorMsg(reason string) Message {
	p, _ := json.Marshal(map[string]string{"msg": reason})
	return Message{Type: TypeError, Payload: p}
}

// httpGet returns the status, Content-Type and body of GET u.
func httpGet(t *testing.T, u string) (int, http.Header, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp.StatusCode, resp.Header, buf.String()
}

// startHTTP serves h on a loopback port until the test ends and returns
// its "http://host:port".
func startHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// queuedFrom is how many messages from src wait in the server's queue for
// the registered id dst (0 when dst has no socket).
func (s *testServer) queuedFrom(dst, src string) int {
	s.mu.Lock()
	c := s.clients[dst]
	var sock *socket
	if c != nil {
		sock = c.sock
	}
	s.mu.Unlock()
	if sock == nil {
		return 0
	}
	sock.mu.Lock()
	defer sock.mu.Unlock()
	return sock.senders[src].n
}
