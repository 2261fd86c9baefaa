package signal

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// testClient is a Client run by a test, with its callbacks recorded.
type testClient struct {
	*Client
	msgs   chan Message
	states chan bool
	done   chan error // Serve's result
	stop   func()     // ends Serve and waits for it; idempotent
}

// runClient starts a Client for cfg (URL, ID and Key set by the caller)
// until the test ends.
func runClient(t *testing.T, cfg ClientConfig) *testClient {
	t.Helper()
	tc := &testClient{msgs: make(chan Message, 100), states: make(chan bool, 100), done: make(chan error, 1)}
	cfg.OnMessage = func(m Message) { tc.msgs <- m }
	cfg.OnState = func(up bool) { tc.states <- up }
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 20 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 200 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	tc.Client = c
	ctx, cancel := context.WithCancel(context.Background())
	go func() { tc.done <- c.Serve(ctx) }()
	var stopped bool
	tc.stop = func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-tc.done:
			if err != nil {
				t.Errorf("Client.Serve: %v", err)
			}
		case <-time.After(3 * waitFor):
			t.Errorf("Client.Serve did not return after its context ended")
		}
	}
	t.Cleanup(tc.stop)
	return tc
}

// testLogger logs to t at debug level.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func (tc *testClient) expectState(t *testing.T, want bool) {
	t.Helper()
	select {
	case got := <-tc.states:
		if got != want {
			t.Fatalf("OnState(%v), want OnState(%v)", got, want)
		}
	case <-time.After(waitFor):
		t.Fatalf("no OnState(%v) within %v", want, waitFor)
	}
}

func (tc *testClient) expectMessage(t *testing.T, want Message) {
	t.Helper()
	select {
	case got := <-tc.msgs:
		if !sameMessage(got, want) {
			t.Fatalf("OnMessage(%s), want %s", show(got), show(want))
		}
	case <-time.After(waitFor):
		t.Fatalf("no OnMessage(%s) within %v", show(want), waitFor)
	}
}

func TestNewClientChecksConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  ClientConfig
	}{
		{"no id", ClientConfig{URL: "http://127.0.0.1:1/"}},
		{"invalid id", ClientConfig{URL: "http://127.0.0.1:1/", ID: "a--b"}},
		{"no URL", ClientConfig{ID: "a"}},
		{"ws scheme", ClientConfig{URL: "ws://127.0.0.1:1/", ID: "a"}},
		{"no host", ClientConfig{URL: "http:///x", ID: "a"}},
		{"bad URL", ClientConfig{URL: "http://[::1", ID: "a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewClient(tc.cfg); err == nil {
				t.Fatal("NewClient accepted a bad config")
			}
		})
	}
	c, err := NewClient(ClientConfig{URL: "https://signal.example:8443/app", ID: "node 1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "wss://signal.example:8443/app/peerjs?"; !strings.HasPrefix(c.wsURL(), want) {
		t.Errorf("WebSocket URL %q, want prefix %q", c.wsURL(), want)
	}
	for _, p := range []string{"key=peerjs", "id=node+1", "token=" + c.token} {
		if !strings.Contains(c.wsURL(), p) {
			t.Errorf("WebSocket URL %q lacks %q", c.wsURL(), p)
		}
	}
	if c.token == "" || strings.Trim(c.token, "0123456789abcdefghijklmnopqrstuvwxyz") != "" {
		t.Errorf("token %q is not base 36", c.token)
	}
}

func TestClientSendChecks(t *testing.T) {
	c, err := NewClient(ClientConfig{URL: "http://127.0.0.1:1", ID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		name string
		m    Message
		want error
	}{
		{"heartbeat", Message{Type: TypeHeartbeat, Dst: "b"}, ErrBadMessage},
		{"open", Message{Type: TypeOpen, Dst: "b"}, ErrBadMessage},
		{"no dst", Message{Type: TypeOffer}, ErrBadMessage},
		{"bad dst", Message{Type: TypeOffer, Dst: "b/c"}, ErrBadMessage},
		{"bad payload", Message{Type: TypeOffer, Dst: "b", Payload: json.RawMessage(`{`)}, ErrBadMessage},
		{"too large", Message{Type: TypeOffer, Dst: "b", Payload: json.RawMessage(`"` + strings.Repeat("x", MaxMessageSize) + `"`)}, ErrBadMessage},
		{"not connected", Message{Type: TypeOffer, Dst: "b"}, ErrNotConnected},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.Send(ctx, tc.m); !errors.Is(err, tc.want) {
				t.Fatalf("Send: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestClientRelayAndHeartbeat(t *testing.T) {
	checkGoroutines(t)
	cfg := testConfig()
	cfg.AliveTimeout = 500 * time.Millisecond
	s := startServer(t, cfg, "")
	a := runClient(t, ClientConfig{URL: s.url, Key: "k1", ID: "alice", Heartbeat: 100 * time.Millisecond})
	b := runClient(t, ClientConfig{URL: s.url, Key: "k1", ID: "bob", Heartbeat: 100 * time.Millisecond})
	a.expectState(t, true)
	b.expectState(t, true)
	if !a.Connected() || !b.Connected() {
		t.Fatal("Connected() is false after OnState(true)")
	}

	ctx := context.Background()
	offer := json.RawMessage(`{"sdp":{"type":"offer","sdp":"v=0"},"type":"data","connectionId":"dc_x"}`)
	if err := a.Send(ctx, Message{Type: TypeOffer, Dst: "bob", Payload: offer}); err != nil {
		t.Fatal(err)
	}
	b.expectMessage(t, Message{Type: TypeOffer, Src: "alice", Dst: "bob", Payload: offer})
	if err := b.Send(ctx, Message{Type: TypeAnswer, Dst: "alice", Payload: json.RawMessage(`{"x":1}`)}); err != nil {
		t.Fatal(err)
	}
	a.expectMessage(t, Message{Type: TypeAnswer, Src: "bob", Dst: "alice", Payload: json.RawMessage(`{"x":1}`)})

	// Heartbeats keep both registered well past the alive timeout, with
	// no reconnect in between.
	time.Sleep(3 * cfg.AliveTimeout)
	if got := s.Clients(); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Fatalf("Clients() = %v after %v", got, 3*cfg.AliveTimeout)
	}
	select {
	case up := <-a.states:
		t.Fatalf("unexpected OnState(%v)", up)
	case up := <-b.states:
		t.Fatalf("unexpected OnState(%v)", up)
	default:
	}

	// Sending to someone offline ends in EXPIRE.
	if err := a.Send(ctx, Message{Type: TypeOffer, Dst: "nobody"}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, waitFor, "the offer to be held", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.queues["nobody"] != nil
	})
	s.expireQueues(time.Now().Add(cfg.ExpireTimeout)) // rather than wait for the timer
	a.expectMessage(t, Message{Type: TypeExpire, Src: "nobody", Dst: "alice"})

	a.stop()
	a.expectState(t, false)
	testutil.WaitFor(t, waitFor, "alice to leave the server", func() bool { return slices.Equal(s.Clients(), []string{"bob"}) })
}

func TestClientReconnects(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, testConfig(), "")
	a := runClient(t, ClientConfig{URL: s.url, Key: "k1", ID: "alice"})
	a.expectState(t, true)

	s.stop()
	a.expectState(t, false)
	if a.Connected() {
		t.Fatal("Connected() after OnState(false)")
	}
	if err := a.Send(context.Background(), Message{Type: TypeOffer, Dst: "bob"}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Send while down: %v, want ErrNotConnected", err)
	}
	time.Sleep(300 * time.Millisecond) // a few failed attempts

	s2 := startServer(t, testConfig(), s.addr)
	a.expectState(t, true)
	b := connectOpen(t, s2.url, "k1", "bob")
	if err := a.Send(context.Background(), Message{Type: TypeOffer, Dst: "bob"}); err != nil {
		t.Fatal(err)
	}
	b.expect(Message{Type: TypeOffer, Src: "alice", Dst: "bob"})
}

func TestClientReattaches(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, testConfig(), "")
	// A session for alice with this token is still open, as when the
	// server has not noticed that the client's old socket died.
	old := connect(t, s.url, "k1", "alice", "tok")
	old.expect(Message{Type: TypeOpen})

	a := runClient(t, ClientConfig{URL: s.url, Key: "k1", ID: "alice", Token: "tok"})
	old.expectClosed() // replaced, and no OPEN for the client
	a.expectState(t, true)
	b := connectOpen(t, s.url, "k1", "bob")
	b.send(Message{Type: TypeCandidate, Dst: "alice"})
	a.expectMessage(t, Message{Type: TypeCandidate, Src: "bob", Dst: "alice"})
}

func TestClientIDTakenRetries(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, testConfig(), "")
	holder := connect(t, s.url, "k1", "alice", "someone-else")
	holder.expect(Message{Type: TypeOpen})

	a := runClient(t, ClientConfig{URL: s.url, Key: "k1", ID: "alice"})
	time.Sleep(300 * time.Millisecond) // several refused attempts
	select {
	case err := <-a.done:
		t.Fatalf("Serve gave up on ID-TAKEN: %v", err)
	case up := <-a.states:
		t.Fatalf("OnState(%v) while the id is taken", up)
	default:
	}
	holder.ws.CloseNow()
	a.expectState(t, true)
}

func TestClientRejected(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, testConfig(), "")
	c, err := NewClient(ClientConfig{URL: s.url, Key: "wrong", ID: "alice", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	err = c.Serve(ctx)
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), reasonBadKey) {
		t.Fatalf("Serve with a wrong key: %v, want ErrRejected (%s)", err, reasonBadKey)
	}
}

func TestClientPeers(t *testing.T) {
	checkGoroutines(t)
	for _, discovery := range []bool{false, true} {
		t.Run(map[bool]string{false: "disabled", true: "allowed"}[discovery], func(t *testing.T) {
			cfg := testConfig()
			cfg.AllowDiscovery = discovery
			s := startServer(t, cfg, "")
			connectOpen(t, s.url, "k1", "bob")
			a := runClient(t, ClientConfig{URL: s.url + "/", Key: "k1", ID: "alice"})
			a.expectState(t, true)
			ids, err := a.Peers(context.Background())
			if !discovery {
				if !errors.Is(err, ErrDiscoveryDisabled) {
					t.Fatalf("Peers: %v, %v; want ErrDiscoveryDisabled", ids, err)
				}
				return
			}
			slices.Sort(ids)
			if err != nil || !slices.Equal(ids, []string{"alice", "bob"}) {
				t.Fatalf("Peers: %v, %v; want [alice bob]", ids, err)
			}
		})
	}
}

func TestNewClientSigner(t *testing.T) {
	key, id := newNodeKey(t)
	_, otherID := newNodeKey(t)
	if _, err := NewClient(ClientConfig{URL: "http://127.0.0.1:1", ID: otherID, Signer: key}); err == nil {
		t.Error("NewClient accepted a signer whose key is not the id's")
	}
	if _, err := NewClient(ClientConfig{URL: "http://127.0.0.1:1", ID: id, Signer: key, Token: "t"}); err == nil {
		t.Error("NewClient accepted both a signer and a token")
	}
	c, err := NewClient(ClientConfig{URL: "http://127.0.0.1:1", Key: "k1", ID: id, Signer: key})
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseProof(c.token)
	if err == nil {
		err = p.verify("k1", id)
	}
	if err != nil || !p.fresh(time.Now()) {
		t.Fatalf("client token %q is not a fresh proof: %v", c.token, err)
	}
	if !strings.Contains(c.wsURL(), "token="+c.token) {
		t.Fatalf("WebSocket URL %q does not carry the proof", c.wsURL())
	}
}
