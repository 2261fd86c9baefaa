package signal

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/coder/websocket"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestServerHTTP(t *testing.T) {
	checkGoroutines(t)
	for _, discovery := range []bool{false, true} {
		t.Run(map[bool]string{false: "no discovery", true: "discovery"}[discovery], func(t *testing.T) {
			cfg := testConfig()
			cfg.AllowDiscovery = discovery
			s := startServer(t, cfg, "")
			connectOpen(t, s.url, "k1", "alice")
			connectOpen(t, s.url, "k1", "bob")
			host := strings.TrimSuffix(s.url, "/myapp")

			tests := []struct {
				name, path string
				status     int
				body       func(string) bool // nil: not checked
			}{
				{"info", "/myapp", 200, func(b string) bool {
					var info struct{ Name, Description, Website string }
					return json.Unmarshal([]byte(b), &info) == nil && info.Name != "" && info.Website != ""
				}},
				{"info slash", "/myapp/", 200, nil},
				{"id", "/myapp/k1/id", 200, uuidRE.MatchString},
				{"id any key", "/myapp/otherkey/id?ts=123&version=1.5.5", 200, uuidRE.MatchString},
				{"id double slash", "/myapp//peerjs/id", 200, uuidRE.MatchString},
				{"id trailing slash", "/myapp/peerjs/id/", 200, uuidRE.MatchString},
				{"id upper case", "/myapp/peerjs/ID", 200, uuidRE.MatchString},
				{"peers", "/myapp/k1/peers", map[bool]int{false: 401, true: 200}[discovery], func(b string) bool {
					if !discovery {
						return true
					}
					var ids []string
					return json.Unmarshal([]byte(b), &ids) == nil && slices.Equal(ids, []string{"alice", "bob"})
				}},
				{"websocket path without upgrade", "/myapp/peerjs", 404, nil},
				{"unknown route", "/myapp/k1/nothing", 404, nil},
				{"too deep", "/myapp/a/b/id", 404, nil},
				{"outside path", "/myappx/k1/id", 404, nil},
				{"root", "/", 404, nil},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					status, h, body := httpGet(t, host+tc.path)
					if status != tc.status {
						t.Fatalf("GET %s: status %d, want %d (body %q)", tc.path, status, tc.status, body)
					}
					if tc.body != nil && !tc.body(strings.TrimSpace(body)) {
						t.Errorf("GET %s: unexpected body %q", tc.path, body)
					}
					if status != 404 && h.Get("Access-Control-Allow-Origin") != "*" {
						t.Errorf("GET %s: no permissive CORS header: %v", tc.path, h)
					}
				})
			}
		})
	}
}

func TestServerIDsAreFresh(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, testConfig(), "")
	seen := map[string]bool{}
	for range 20 {
		_, _, id := httpGet(t, s.url+"/k1/id")
		if !ValidID(id) || seen[id] {
			t.Fatalf("id %q is invalid or repeated", id)
		}
		seen[id] = true
	}
}

func TestServerPreflight(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, testConfig(), "")
	req, _ := http.NewRequest(http.MethodOptions, s.url+"/k1/id", nil)
	req.Header.Set("Origin", "https://example.org")
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "x-thing")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		resp.Header.Get("Access-Control-Allow-Headers") != "x-thing" {
		t.Fatalf("preflight: %s %v", resp.Status, resp.Header)
	}
}

func TestServerOpenAndRelay(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, testConfig(), "")
	a := connectOpen(t, s.url, "k1", "alice")
	b := connectOpen(t, s.url, "k1", "bob-2")
	if got := s.Clients(); !slices.Equal(got, []string{"alice", "bob-2"}) {
		t.Fatalf("Clients() = %v", got)
	}
	payload := json.RawMessage(`{"sdp":{"type":"offer","sdp":"v=0"},"type":"data","connectionId":"dc_1"}`)
	for _, typ := range []string{TypeOffer, TypeAnswer, TypeCandidate, TypeLeave, TypeExpire} {
		t.Run(typ, func(t *testing.T) {
			// src is a lie; the server must put the sender's id there.
			a.send(Message{Type: typ, Src: "mallory", Dst: "bob-2", Payload: payload})
			b.expect(Message{Type: typ, Src: "alice", Dst: "bob-2", Payload: payload})
			b.send(Message{Type: typ, Dst: "alice"})
			a.expect(Message{Type: typ, Src: "bob-2", Dst: "alice"})
		})
	}
	// Unknown members are dropped, as the reference does.
	a.sendRaw([]byte(`{"type":"OFFER","dst":"bob-2","payload":1,"extra":true}`))
	b.expect(Message{Type: TypeOffer, Src: "alice", Dst: "bob-2", Payload: json.RawMessage(`1`)})
}

func TestServerQueueAndExpire(t *testing.T) {
	checkGoroutines(t)
	cfg := testConfig()
	cfg.ExpireTimeout = 300 * time.Millisecond
	s := startServer(t, cfg, "")
	a := connectOpen(t, s.url, "k1", "alice")
	c := connectOpen(t, s.url, "k1", "carol")

	// Delivered when dst connects in time, after OPEN and in order.
	a.send(Message{Type: TypeOffer, Dst: "bob", Payload: json.RawMessage(`1`)})
	a.send(Message{Type: TypeCandidate, Dst: "bob", Payload: json.RawMessage(`2`)})
	a.send(Message{Type: TypeLeave, Dst: "bob"})  // not held
	a.send(Message{Type: TypeExpire, Dst: "bob"}) // not held
	// Once carol has this, the server has handled all of the above.
	a.send(Message{Type: TypeAnswer, Dst: "carol"})
	c.expect(Message{Type: TypeAnswer, Src: "alice", Dst: "carol"})
	b := connect(t, s.url, "k1", "bob", "t")
	b.expect(Message{Type: TypeOpen})
	b.expect(Message{Type: TypeOffer, Src: "alice", Dst: "bob", Payload: json.RawMessage(`1`)})
	b.expect(Message{Type: TypeCandidate, Src: "alice", Dst: "bob", Payload: json.RawMessage(`2`)})
	b.expectNothing(100 * time.Millisecond)

	// Not picked up in time: one EXPIRE per sender, and nothing left.
	a.send(Message{Type: TypeOffer, Dst: "dave"})
	a.send(Message{Type: TypeCandidate, Dst: "dave"})
	c.send(Message{Type: TypeOffer, Dst: "dave"})
	a.expect(Message{Type: TypeExpire, Src: "dave", Dst: "alice"})
	c.expect(Message{Type: TypeExpire, Src: "dave", Dst: "carol"})
	a.expectNothing(expireInterval + 100*time.Millisecond)
	d := connect(t, s.url, "k1", "dave", "t")
	d.expect(Message{Type: TypeOpen})
	d.expectNothing(100 * time.Millisecond)
}

// Messages held for an offline peer are bounded per peer and shared out
// among their senders: the first sender gets a quarter of the queue, each
// next one a quarter of the room left, so that more senders than
// maxSenderShare (one attacker's ids) still leave room for another's
// message. The peer gets all that was held when it comes.
func TestServerQueueBound(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, testConfig(), "")
	sink := connectOpen(t, s.url, "k1", "sink")
	heldFor := func(id string) (n, total int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if q := s.queues["bob"]; q != nil {
			return q.senders[id].n, len(q.msgs)
		}
		return 0, 0
	}
	const senders = 3 * maxSenderShare
	var want []Message // what bob must get, in order
	for j := range senders + 1 {
		id := "s" + strconvI(j)
		c := connectOpen(t, s.url, "k1", id)
		for i := range maxQueuedPerPeer {
			c.send(Message{Type: TypeOffer, Dst: "bob", Payload: json.RawMessage(strconvI(1000*j + i))})
		}
		// Once sink has it, the server has handled the ones before.
		c.send(Message{Type: TypeOffer, Dst: "sink"})
		sink.expect(Message{Type: TypeOffer, Src: id, Dst: "sink"})
		n, total := heldFor(id)
		switch {
		case j == 0 && n != maxQueuedPerPeer/maxSenderShare:
			t.Fatalf("the first sender got %d messages held, want %d", n, maxQueuedPerPeer/maxSenderShare)
		case n == 0:
			t.Fatalf("sender %d found no room: the others took it all", j)
		case total > maxQueuedPerPeer:
			t.Fatalf("%d messages held for bob, over %d", total, maxQueuedPerPeer)
		}
		// The messages that did not fit are answered at once.
		c.expect(Message{Type: TypeExpire, Src: "bob", Dst: id})
		for i := range n {
			want = append(want, Message{Type: TypeOffer, Src: id, Dst: "bob", Payload: json.RawMessage(strconvI(1000*j + i))})
		}
	}
	b := connect(t, s.url, "k1", "bob", "t")
	b.expect(Message{Type: TypeOpen})
	for _, m := range want {
		b.expect(m)
	}
	b.expectNothing(100 * time.Millisecond)
	s.mu.Lock()
	queued, bytes := s.queued, s.queuedBytes
	s.mu.Unlock()
	if queued != 0 || bytes != 0 {
		t.Fatalf("after delivery: %d messages, %d bytes still counted as queued", queued, bytes)
	}
}

func strconvI(i int) string { return strings.TrimSpace(string(must(json.Marshal(i)))) }

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestServerAliveTimeout(t *testing.T) {
	checkGoroutines(t)
	cfg := testConfig()
	cfg.AliveTimeout = 600 * time.Millisecond
	s := startServer(t, cfg, "")
	alive := connectOpen(t, s.url, "k1", "alive")
	start := time.Now() // before silent registers
	silent := connectOpen(t, s.url, "k1", "silent")

	ctx, cancel := context.WithCancel(context.Background())
	beats := make(chan struct{})
	go func() {
		defer close(beats)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				alive.ws.Write(ctx, websocket.MessageText, []byte(`{"type":"HEARTBEAT"}`))
			}
		}
	}()
	defer func() { cancel(); <-beats }()
	// Relayed messages do not count as signs of life; only heartbeats do.
	for {
		wctx, wcancel := context.WithTimeout(context.Background(), time.Second)
		err := silent.ws.Write(wctx, websocket.MessageText, []byte(`{"type":"CANDIDATE","dst":"alive"}`))
		wcancel()
		if err != nil || time.Since(start) > waitFor {
			break
		}
		select {
		case <-silent.done:
		case <-time.After(50 * time.Millisecond):
			continue
		}
		break
	}
	silent.expectClosedAfterAny(alive)
	if d := time.Since(start); d < cfg.AliveTimeout {
		t.Errorf("silent client dropped after %v, before AliveTimeout", d)
	}
	time.Sleep(cfg.AliveTimeout)
	if got := s.Clients(); !slices.Equal(got, []string{"alive"}) {
		t.Fatalf("Clients() = %v, want [alive]", got)
	}
}

// expectClosedAfterAny waits for the server to close c, ignoring messages
// on c; drain empties other of relayed messages meanwhile.
func (c *rawConn) expectClosedAfterAny(drain *rawConn) {
	c.t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case <-c.msgs:
		case <-drain.msgs:
		case <-c.done:
			return
		case <-deadline:
			c.t.Fatalf("socket not closed within %v", waitFor)
		}
	}
}

func TestServerRefusals(t *testing.T) {
	checkGoroutines(t)
	cfg := testConfig()
	cfg.ConcurrentLimit = 2
	s := startServer(t, cfg, "")
	connectOpen(t, s.url, "k1", "alice") // holds "alice" with token "tok-alice"

	q := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	tests := []struct {
		name  string
		query url.Values
		want  Message
	}{
		{"no id", q("key", "k1", "token", "t"), errorMsg(reasonNoParams)},
		{"no token", q("key", "k1", "id", "x"), errorMsg(reasonNoParams)},
		{"no key", q("id", "x", "token", "t"), errorMsg(reasonNoParams)},
		{"wrong key", q("key", "peerjs", "id", "x", "token", "t"), errorMsg(reasonBadKey)},
		{"invalid id", q("key", "k1", "id", "bad..id", "token", "t"), errorMsg(reasonBadID)},
		{"id with leading space", q("key", "k1", "id", " x", "token", "t"), errorMsg(reasonBadID)},
		{"long id", q("key", "k1", "id", strings.Repeat("a", MaxIDLength+1), "token", "t"), errorMsg(reasonBadID)},
		{"long token", q("key", "k1", "id", "x", "token", strings.Repeat("t", maxTokenLength+1)), errorMsg(reasonBadToken)},
		{"id taken", q("key", "k1", "id", "alice", "token", "other"),
			Message{Type: TypeIDTaken, Payload: json.RawMessage(`{"msg":"ID is taken"}`)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, s.url, tc.query, true)
			c.expectClosed(tc.want)
		})
	}
	t.Run("concurrent limit", func(t *testing.T) {
		connectOpen(t, s.url, "k1", "bob")
		c := connect(t, s.url, "k1", "carol", "t")
		c.expectClosed(errorMsg(reasonLimit))
	})
	testutil.WaitFor(t, waitFor, "only alice to be registered", func() bool { return slices.Equal(s.Clients(), []string{"alice"}) })
}

func TestServerReattach(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, testConfig(), "")
	a := connectOpen(t, s.url, "k1", "alice")
	old := connect(t, s.url, "k1", "bob", "secret")
	old.expect(Message{Type: TypeOpen})

	// Same token: the new socket takes over, without OPEN; the old one is
	// closed and its closing does not unregister bob.
	b := connect(t, s.url, "k1", "bob", "secret")
	old.expectClosed()
	a.send(Message{Type: TypeOffer, Dst: "bob"})
	b.expect(Message{Type: TypeOffer, Src: "alice", Dst: "bob"})
	if got := s.Clients(); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Fatalf("Clients() = %v", got)
	}
	b.send(Message{Type: TypeAnswer, Dst: "alice"})
	a.expect(Message{Type: TypeAnswer, Src: "bob", Dst: "alice"})
}

func TestServerBadInput(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, testConfig(), "")
	a := connectOpen(t, s.url, "k1", "alice")
	b := connectOpen(t, s.url, "k1", "bob")

	big := `{"type":"OFFER","dst":"bob","payload":"` + strings.Repeat("x", MaxMessageSize) + `"}`
	// Fits on the way in, but not once src is added.
	edge := `{"type":"OFFER","dst":"bob","payload":"` + strings.Repeat("x", MaxMessageSize-41-5) + `"}`
	tests := []struct {
		name   string
		input  string
		reason string
	}{
		{"malformed JSON", `{"type":"OFFER",`, reasonBadMessage},
		{"not an object", `["OFFER"]`, reasonBadMessage},
		{"empty", ``, reasonBadMessage},
		{"trailing data", `{"type":"OFFER","dst":"bob"} {}`, reasonBadMessage},
		{"type not a string", `{"type":1,"dst":"bob"}`, reasonBadMessage},
		{"no type", `{"dst":"bob"}`, reasonBadMessage},
		{"repeated member", `{"type":"OFFER","dst":"bob","dst":"alice"}`, reasonBadMessage},
		{"invalid UTF-8", "{\"type\":\"OFFER\",\"dst\":\"bob\",\"payload\":\"\xff\"}", reasonBadMessage},
		{"unknown type", `{"type":"HELLO","dst":"bob"}`, reasonBadType},
		{"server type", `{"type":"OPEN","dst":"bob"}`, reasonBadType},
		{"missing dst", `{"type":"OFFER","payload":{}}`, reasonNoDst},
		{"invalid dst", `{"type":"OFFER","dst":"b!b"}`, reasonBadDst},
		{"oversized frame", big, reasonTooLarge},
		{"oversized after relay", edge, reasonTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := connectOpen(t, s.url, "k1", "mallory")
			m.sendRaw([]byte(tc.input))
			m.expectClosed(errorMsg(tc.reason))
			testutil.WaitFor(t, waitFor, "mallory to be unregistered", func() bool {
				return !slices.Contains(s.Clients(), "mallory")
			})
			// Everyone else is still served.
			a.send(Message{Type: TypeOffer, Dst: "bob"})
			b.expect(Message{Type: TypeOffer, Src: "alice", Dst: "bob"})
			b.expectNothing(0)
			a.expectNothing(0)
		})
	}
	t.Run("leave without dst", func(t *testing.T) {
		m := connectOpen(t, s.url, "k1", "mallory")
		m.send(Message{Type: TypeLeave})
		m.expectClosed()
		if slices.Contains(s.Clients(), "mallory") {
			t.Fatal("mallory still registered after leaving")
		}
	})
}

func TestServerSlowReader(t *testing.T) {
	checkGoroutines(t)
	// Small kernel send buffers: otherwise bob's queue (megabytes) can fit
	// in the loopback socket's buffers, the server's writes never block,
	// and nothing shows that a write that does not end drops him.
	lc := net.ListenConfig{Control: smallSendBuffer}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := serveListener(t, testConfig(), ln)
	a := connectOpen(t, s.url, "k1", "alice")
	// bob registers and then never reads again.
	slow := dialRaw(t, s.url, url.Values{"key": {"k1"}, "id": {"bob"}, "token": {"t"}}, false)
	testutil.WaitFor(t, waitFor, "bob to register", func() bool { return slices.Contains(s.Clients(), "bob") })

	// Once bob's queue is full, alice's messages expire; bob is not
	// dropped for that (others could flood him off the server)...
	flood := []byte(`{"type":"CANDIDATE","dst":"bob","payload":"` + strings.Repeat("x", 60<<10) + `"}`)
	n := 0
	for expired := false; !expired; n++ {
		if n == 2000 {
			t.Fatal("no EXPIRE after 2000 messages to a client that does not read")
		}
		a.sendRaw(flood)
		select {
		case b := <-a.msgs:
			if m := a.decode(b); !sameMessage(m, Message{Type: TypeExpire, Src: "bob", Dst: "alice"}) {
				t.Fatalf("got %s while flooding bob", show(m))
			}
			expired = true
		default:
		}
	}
	t.Logf("first EXPIRE after %d messages", n)
	if !slices.Contains(s.Clients(), "bob") {
		t.Fatal("bob dropped because others sent him more than his queue holds")
	}
	// ...but for a write that does not end within writeTimeout.
	deadline := time.Now().Add(writeTimeout + waitFor)
	for slices.Contains(s.Clients(), "bob") {
		if time.Now().After(deadline) {
			t.Fatalf("bob not dropped within %v of not reading", writeTimeout+waitFor)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = slow
	// The server still relays for others.
	c := connectOpen(t, s.url, "k1", "carol")
	a.send(Message{Type: TypeOffer, Dst: "carol"})
	c.expect(Message{Type: TypeOffer, Src: "alice", Dst: "carol"})
}

func TestServerShutdownClosesSockets(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, testConfig(), "")
	a := connectOpen(t, s.url, "k1", "alice")
	start := time.Now()
	s.stop()
	a.expectClosed()
	if d := time.Since(start); d > waitFor {
		t.Errorf("shutdown took %v", d)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(context.Background(), ln); err != ErrServerClosed {
		t.Errorf("Serve after shutdown: %v, want ErrServerClosed", err)
	}
}

func TestServerMaintainWithOwnMux(t *testing.T) {
	checkGoroutines(t)
	cfg := testConfig()
	cfg.AliveTimeout = 300 * time.Millisecond
	s := NewServer(cfg)
	mux := http.NewServeMux()
	mux.Handle("/myapp/", s)
	ts := startHTTP(t, mux)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Maintain(ctx) }()
	c := connectOpen(t, ts+"/myapp", "k1", "alice")
	c.expectClosed() // dropped by Maintain's alive check
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
