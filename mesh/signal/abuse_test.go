package signal

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/coder/websocket"
)

// These tests turn the rendezvous against its users, as a hostile client
// would, at the sizes such a client would use.

// recorder is a Client run by a test whose callbacks record what happens;
// OnMessage waits slow per message, as a node on a slow link reads.
type recorder struct {
	*Client
	slow time.Duration
	// gate, held by a test, stops OnMessage before it records the next
	// message, as a node that stopped reading would.
	gate sync.RWMutex

	mu     sync.Mutex
	states []bool
	from   map[string]int // messages by src
	order  []string       // the src of each message, as they came
}

func runRecorder(t *testing.T, cfg ClientConfig, slow time.Duration) *recorder {
	t.Helper()
	r := &recorder{slow: slow, from: make(map[string]int)}
	cfg.OnMessage = func(m Message) {
		r.gate.RLock()
		r.gate.RUnlock()
		time.Sleep(r.slow)
		r.mu.Lock()
		r.from[m.Src]++
		r.order = append(r.order, m.Src)
		r.mu.Unlock()
	}
	cfg.OnState = func(up bool) {
		r.mu.Lock()
		r.states = append(r.states, up)
		r.mu.Unlock()
	}
	cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	cfg.Logger = testLogger(t)
	if slow > 0 {
		// A small receive buffer, so that the server's queue, not the
		// kernel's buffers, takes up what the client has not read.
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				d := net.Dialer{Control: smallReceiveBuffer}
				return d.DialContext(ctx, network, addr)
			},
		}}
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.Client = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Client.Serve: %v", err)
			}
		case <-time.After(3 * waitFor):
			t.Errorf("Client.Serve did not return after its context ended")
		}
	})
	return r
}

func (r *recorder) stateLog() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.states)
}

func (r *recorder) count(src string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.from[src]
}

// Clients flood a node, which reads slowly, with large OFFERs. The node
// must stay registered (the flooders' messages expire, not the node), and
// an honest peer's OFFERs must still reach it: two flooders as in the
// attack seen, and more than maxSenderShare of them from one address, as
// one attacker opening several ids would.
func TestServerFloodersCannotDropVictim(t *testing.T) {
	for _, flooders := range []int{2, 2 * maxSenderShare} {
		t.Run(fmt.Sprintf("%d flooders", flooders), func(t *testing.T) { floodVictim(t, flooders) })
	}
}

// floodWait bounds how long floodVictim waits for the flood to fill the
// victim's queue and for the honest OFFERs to come through it: long, as
// the victim reads 60 KiB OFFERs through a 4 KiB window, which a CPU
// shared with many other tests (and the race detector) makes slow.
const floodWait = 2 * time.Minute

func floodVictim(t *testing.T, flooders int) {
	checkGoroutines(t)
	// The server's sockets get small kernel buffers, so that what waits
	// for the victim is the server's queue for it, which the test bounds.
	lc := net.ListenConfig{Control: smallSendBuffer}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := serveListener(t, testConfig(), ln)
	key, id := newNodeKey(t)
	victim := runRecorder(t, ClientConfig{URL: s.url, Key: "k1", ID: id, Signer: key}, 10*time.Millisecond)
	testutil.WaitFor(t, waitFor, "the victim to register", func() bool { return slices.Equal(victim.stateLog(), []bool{true}) })
	honest := connectOpen(t, s.url, "k1", "honest")

	flood := []byte(`{"type":"OFFER","dst":"` + id + `","payload":"` + strings.Repeat("x", 60<<10) + `"}`)

	stop := make(chan struct{})
	var overflows atomic.Int64 // answers from the server about the victim
	var wg sync.WaitGroup
	for i := range flooders {
		f := connectOpen(t, s.url, "k1", fmt.Sprintf("flooder-%d", i))
		wg.Go(func() {
			for range 5000 {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), waitFor)
				err := f.ws.Write(ctx, websocket.MessageText, flood)
				cancel()
				if err != nil {
					return
				}
				for drained := false; !drained; {
					select {
					case b := <-f.msgs:
						if m, err := DecodeMessage(b); err == nil && m.Src == id {
							overflows.Add(1) // EXPIRE now; LEAVE when the victim was dropped
						}
					default:
						drained = true
					}
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()

	// The deadlines below only bound a failure: on a starved CPU the
	// victim reads the flood slowly, and what the test checks is who
	// gets through, not how fast.
	testutil.WaitFor(t, floodWait, "the victim's queue to overflow", func() bool { return overflows.Load() > 0 })
	const honestOffers = 20
	// The victim stops reading while the honest OFFERs go into its queue,
	// so that what it reads after them is measured from the moment they
	// were all queued: measured from before they were sent, a starved
	// honest sender let the victim read more of the flood meanwhile, and
	// that was counted as flood ahead of them.
	victim.gate.Lock()
	for i := range honestOffers {
		p := json.RawMessage(fmt.Sprintf(`{"sdp":"%d %s"}`, i, strings.Repeat("v", 2000)))
		honest.send(Message{Type: TypeOffer, Dst: id, Payload: p})
	}
	if smallBuffers {
		// With the victim not reading, the flood queued ahead of them
		// keeps the honest OFFERs in the server's queue.
		testutil.WaitFor(t, floodWait, "the honest OFFERs to be queued for the victim", func() bool {
			return s.queuedFrom(id, "honest") == honestOffers
		})
	}
	victim.mu.Lock()
	before := len(victim.order)
	victim.mu.Unlock()
	victim.gate.Unlock()
	deadline := time.Now().Add(floodWait)
	for victim.count("honest") < honestOffers {
		if time.Now().After(deadline) {
			t.Fatalf("the victim got %d of %d honest OFFERs during the flood (states %v)",
				victim.count("honest"), honestOffers, victim.stateLog())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Fairness: the honest OFFERs waited behind no more of the flood
	// than the victim's send queue holds (sendQueueBytes), and a few in
	// the kernel's buffers, the writer's and the reader's hands.
	victim.mu.Lock()
	after := slices.Clone(victim.order[before:])
	victim.mu.Unlock()
	first := slices.Index(after, "honest")
	last := len(after) - 1
	for after[last] != "honest" {
		last--
	}
	behind := last + 1 - honestOffers // flood OFFERs before the last honest one
	t.Logf("the honest OFFERs came behind %d flood OFFERs, %d more between the first and the last", first, behind-first)
	if most := sendQueueBytes/len(flood) + 4; smallBuffers && behind > most {
		t.Errorf("%d flood OFFERs reached the victim after the honest ones were sent and before the last of them, want at most %d (a send queue's worth)", behind, most)
	}
	if got := victim.stateLog(); !slices.Equal(got, []bool{true}) {
		t.Fatalf("the victim's registration went %v during the flood, want it kept", got)
	}
	if !slices.Contains(s.Clients(), id) {
		t.Fatal("the victim is no longer registered")
	}
	select {
	case b := <-honest.msgs:
		t.Fatalf("the honest sender got %s", b)
	default:
	}
	t.Logf("flooders told %d times that the victim's queue was full", overflows.Load())
}

// A catnest node ID can be held only with the node key: a squatter
// without it is refused while the node is online and after it left; an
// old proof replayed is not enough either.
func TestServerNodeIDNeedsProof(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, testConfig(), "")
	key, id := newNodeKey(t)
	other, _ := newNodeKey(t)
	old := mustProof(t, key, "k1", id, time.Now().Add(-time.Minute)) // captured earlier
	stale := mustProof(t, key, "k1", id, time.Now().Add(-2*proofWindow))
	node := runClient(t, ClientConfig{URL: s.url, Key: "k1", ID: id, Signer: key})
	node.expectState(t, true)

	idTaken := Message{Type: TypeIDTaken, Payload: json.RawMessage(`{"msg":"ID is taken"}`)}
	squat := func(t *testing.T, token string, want Message) {
		t.Helper()
		c := dialRaw(t, s.url, url.Values{"key": {"k1"}, "id": {id}, "token": {token}}, true)
		c.expectClosed(want)
	}
	online := []struct {
		name, token string
		want        Message
	}{
		{"plain token", "tok123", errorMsg(reasonBadProof)},
		{"another key's proof", mustProof(t, other, "k1", id, time.Now()), errorMsg(reasonBadProof)},
		{"proof for another server key", mustProof(t, key, "peerjs", id, time.Now()), errorMsg(reasonBadProof)},
		{"older proof replayed", old, idTaken},
		{"stale proof replayed", stale, errorMsg(reasonStaleProof)},
	}
	for _, tc := range online {
		t.Run("online/"+tc.name, func(t *testing.T) { squat(t, tc.token, tc.want) })
	}
	// The node still holds its id and is relayed to.
	a := connectOpen(t, s.url, "k1", "alice")
	a.send(Message{Type: TypeOffer, Dst: id})
	node.expectMessage(t, Message{Type: TypeOffer, Src: "alice", Dst: id})

	node.stop()
	testutil.WaitFor(t, waitFor, "the node to leave", func() bool { return !slices.Contains(s.Clients(), id) })
	for _, tc := range online[:3] {
		t.Run("offline/"+tc.name, func(t *testing.T) { squat(t, tc.token, tc.want) })
	}
	t.Run("offline/stale proof replayed", func(t *testing.T) { squat(t, stale, errorMsg(reasonStaleProof)) })
	if slices.Contains(s.Clients(), id) {
		t.Fatal("a squatter holds the node's id")
	}
}

// A node restarts while the server still holds its old session (the old
// socket is alive, as when a machine lost power): the restarted node, with
// the same key and a new token, gets its id at once, not after
// AliveTimeout; the old session is closed.
func TestServerRestartedNodeTakesIDBack(t *testing.T) {
	checkGoroutines(t)
	cfg := testConfig()
	cfg.AliveTimeout = time.Minute
	s := startServer(t, cfg, "")
	key, id := newNodeKey(t)
	before := connect(t, s.url, "k1", id, mustProof(t, key, "k1", id, time.Now().Add(-time.Second)))
	before.expect(Message{Type: TypeOpen})
	a := connectOpen(t, s.url, "k1", "alice")

	after := runClient(t, ClientConfig{URL: s.url, Key: "k1", ID: id, Signer: key})
	after.expectState(t, true)
	before.expectClosed()
	a.send(Message{Type: TypeOffer, Dst: id})
	after.expectMessage(t, Message{Type: TypeOffer, Src: "alice", Dst: id})
	if got := s.Clients(); !slices.Equal(got, []string{"alice", id}) && !slices.Equal(got, []string{id, "alice"}) {
		t.Fatalf("Clients() = %v", got)
	}
}

// Two live clients with one key (a misconfiguration): the newer takes the
// id, the older waits for it to go instead of taking the id back, and gets
// the id when it goes.
func TestClientOustedWaits(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, testConfig(), "")
	key, id := newNodeKey(t)
	first := runRecorder(t, ClientConfig{URL: s.url, Key: "k1", ID: id, Signer: key}, 0)
	testutil.WaitFor(t, waitFor, "the first client to register", func() bool { return slices.Equal(first.stateLog(), []bool{true}) })
	second := runClient(t, ClientConfig{URL: s.url, Key: "k1", ID: id, Signer: key})
	second.expectState(t, true)
	testutil.WaitFor(t, waitFor, "the first client to lose the id", func() bool { return slices.Equal(first.stateLog(), []bool{true, false}) })
	s.mu.Lock()
	token := s.clients[id].token
	s.mu.Unlock()
	// The first client retries while the second holds the id: the second
	// keeps it. (Its retries come every 20 to 200 ms.)
	for range 50 {
		time.Sleep(20 * time.Millisecond)
		s.mu.Lock()
		now := s.clients[id].token
		s.mu.Unlock()
		if now != token {
			t.Fatal("the ousted client took the id back")
		}
		select {
		case up := <-second.states:
			t.Fatalf("the second client's registration went %v", up)
		default:
		}
	}
	second.stop()
	testutil.WaitFor(t, waitFor, "the first client to get the id back", func() bool { return slices.Equal(first.stateLog(), []bool{true, false, true}) })
}

// dialOversized opens a WebSocket to the server as id and starts a
// message announced as 100 MB, of which it sends 70 KB; then it idles.
func dialOversized(t *testing.T, addr, id string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitFor))
	fmt.Fprintf(c, "GET /myapp/peerjs?key=k1&id=%s&token=t HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", id, addr)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	// FIN, text; masked, 64-bit length; a zero mask key leaves the payload as it is.
	hdr := []byte{0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint64(hdr[2:10], 100<<20)
	if _, err := c.Write(append(hdr, make([]byte, 70<<10)...)); err != nil {
		t.Fatalf("write: %v", err)
	}
	c.SetDeadline(time.Time{})
	return c, br
}

// readUntil reads from br until it has read s.
func readUntil(br *bufio.Reader, s string) error {
	var got []byte
	for !strings.Contains(string(got), s) {
		b, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("%w after %q", err, got)
		}
		got = append(got, b)
	}
	return nil
}

// openFDs counts this process's open file descriptors, or -1 where
// /proc is not there.
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// 200 clients announce a huge message, send part of it and idle. Each
// gets its ERROR, and then the server closes the connection within the
// close deadline: no goroutine or descriptor stays behind. The server
// also stops at once while more such clients are in their close.
func TestServerOversizedFrameSlowloris(t *testing.T) {
	checkGoroutines(t)
	cfg := testConfig()
	cfg.PerAddressLimit = 1000
	s := startServer(t, cfg, "")
	fds := openFDs()

	const clients = 200
	var conns []net.Conn
	var readers []*bufio.Reader
	for i := range clients {
		c, br := dialOversized(t, s.addr, fmt.Sprintf("slow-%d", i))
		conns = append(conns, c)
		readers = append(readers, br)
	}
	// Each is told, and then hung up on.
	deadline := time.Now().Add(closeTimeout + 2*waitFor)
	for i, c := range conns {
		c.SetReadDeadline(deadline)
		b, err := io.ReadAll(readers[i])
		if err != nil {
			t.Fatalf("client %d: connection still open after %v: %v", i, closeTimeout+2*waitFor, err)
		}
		if !strings.Contains(string(b), reasonTooLarge) {
			t.Fatalf("client %d got %q, without %q", i, b, reasonTooLarge)
		}
		c.Close()
	}
	testutil.WaitFor(t, waitFor, "every socket to be gone", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.sockets) == 0 && len(s.clients) == 0 && len(s.addrs) == 0
	})
	if fds >= 0 {
		testutil.WaitFor(t, waitFor, "descriptors to be closed", func() bool { return openFDs() <= fds+5 })
	}

	for i := range clients / 2 {
		c, br := dialOversized(t, s.addr, fmt.Sprintf("slower-%d", i))
		// Once it has its ERROR, the server is in its close.
		c.SetReadDeadline(time.Now().Add(waitFor))
		if err := readUntil(br, reasonTooLarge); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	start := time.Now()
	s.stop() // fails the test if Serve does not return
	t.Logf("Serve returned %v after its context ended, with %d clients in their close", time.Since(start), clients/2)
}

// Idle keep-alive connections are closed after IdleTimeout, so that idle
// clients cannot hold the server's descriptors.
func TestServerIdleTimeout(t *testing.T) {
	checkGoroutines(t)
	cfg := testConfig()
	cfg.IdleTimeout = 300 * time.Millisecond
	s := startServer(t, cfg, "")

	const clients = 100
	var conns []net.Conn
	var readers []*bufio.Reader
	for range clients {
		c, err := net.DialTimeout("tcp", s.addr, waitFor)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(waitFor))
		fmt.Fprintf(c, "GET /myapp/k1/id HTTP/1.1\r\nHost: %s\r\n\r\n", s.addr)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Close {
			t.Fatalf("GET id: %s, close %v", resp.Status, resp.Close)
		}
		conns = append(conns, c)
		readers = append(readers, br)
	}
	deadline := time.Now().Add(cfg.IdleTimeout + 2*waitFor)
	for i, c := range conns {
		c.SetReadDeadline(deadline)
		if n, err := readers[i].Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("idle connection %d: read %d, %v; want it closed by the server", i, n, err)
		}
	}
}

// One address cannot take more than PerAddressLimit sockets, while
// another still registers; a slot freed is taken again.
func TestServerPerAddressLimit(t *testing.T) {
	checkGoroutines(t)
	cfg := testConfig()
	cfg.PerAddressLimit = 5
	s := startServer(t, cfg, "")
	q := func(id string) url.Values { return url.Values{"key": {"k1"}, "id": {id}, "token": {"t"}} }

	var first []*rawConn
	for i := range cfg.PerAddressLimit {
		c := dialRawFrom(t, s.url, q(fmt.Sprintf("a%d", i)), true, "127.0.0.2")
		c.expect(Message{Type: TypeOpen})
		first = append(first, c)
	}
	for i := range 20 {
		c := dialRawFrom(t, s.url, q(fmt.Sprintf("b%d", i)), true, "127.0.0.2")
		c.expectClosed(errorMsg(reasonAddressLimit))
	}
	for i := range cfg.PerAddressLimit {
		c := dialRawFrom(t, s.url, q(fmt.Sprintf("c%d", i)), true, "127.0.0.3")
		c.expect(Message{Type: TypeOpen})
	}
	first[0].send(Message{Type: TypeLeave})
	first[0].expectClosed()
	testutil.WaitFor(t, waitFor, "a slot to be free", func() bool {
		c := dialRawFrom(t, s.url, q("d"), true, "127.0.0.2")
		return sameMessage(c.next(), Message{Type: TypeOpen})
	})
	if n := len(s.Clients()); n != 2*cfg.PerAddressLimit {
		t.Fatalf("%d clients registered, want %d", n, 2*cfg.PerAddressLimit)
	}
}

// One address cannot hold more than connsPerAddress TCP connections to
// Serve, idle or not, so that it cannot exhaust the server's descriptors
// within the idle and header timeouts; another address is still served,
// and a connection closed frees its slot.
func TestServerPerAddressConnLimit(t *testing.T) {
	checkGoroutines(t)
	cfg := testConfig()
	cfg.PerAddressLimit = 5
	s := startServer(t, cfg, "")
	dial := func(local string) net.Conn {
		t.Helper()
		d := net.Dialer{Timeout: waitFor, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// get asks for the server info on a new connection from local.
	get := func(local string) error {
		c := dial(local)
		defer c.Close()
		c.SetDeadline(time.Now().Add(waitFor))
		fmt.Fprintf(c, "GET /myapp/ HTTP/1.1\r\nHost: %s\r\n\r\n", s.addr)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET: %s", resp.Status)
		}
		return nil
	}
	// Idle connections, as a client opening many and sending nothing.
	var idle []net.Conn
	for range connsPerAddress(cfg.PerAddressLimit) {
		idle = append(idle, dial("127.0.0.2"))
	}
	for i := range 20 {
		c := dial("127.0.0.2")
		c.SetReadDeadline(time.Now().Add(waitFor))
		if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection %d over the limit: read %d, %v; want it closed at once", i, n, err)
		}
	}
	if err := get("127.0.0.3"); err != nil {
		t.Fatalf("another address is not served: %v", err)
	}
	idle[0].Close()
	testutil.WaitFor(t, waitFor, "a slot to be free", func() bool { return get("127.0.0.2") == nil })
}

func TestAddressKey(t *testing.T) {
	tests := []struct{ remote, want string }{
		{"127.0.0.2:5000", "127.0.0.2"},
		{"[::ffff:10.0.0.1]:80", "10.0.0.1"},
		{"[2001:db8:1:2:3:4:5:6]:80", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:81", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:80", "fe80::/64"},
		{"pipe", "pipe"},
	}
	for _, tc := range tests {
		if got := addressKey(tc.remote); got != tc.want {
			t.Errorf("addressKey(%q) = %q, want %q", tc.remote, got, tc.want)
		}
	}
}

// A node whose proof went out of date while it was away (or whose server
// restarted) is refused once and registers with a new proof.
func TestClientRenewsStaleProof(t *testing.T) {
	checkGoroutines(t)
	s := startServer(t, testConfig(), "")
	key, id := newNodeKey(t)
	states := make(chan bool, 10)
	c, err := NewClient(ClientConfig{URL: s.url, Key: "k1", ID: id, Signer: key, Logger: testLogger(t),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		OnState: func(up bool) { states <- up }})
	if err != nil {
		t.Fatal(err)
	}
	stale := mustProof(t, key, "k1", id, time.Now().Add(-2*proofWindow))
	c.token = stale // as if made long ago
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	select {
	case up := <-states:
		if !up {
			t.Fatal("OnState(false) first")
		}
	case <-time.After(waitFor):
		t.Fatal("not registered with a renewed proof")
	}
	c.mu.Lock()
	token := c.token
	c.mu.Unlock()
	if token == stale || !slices.Contains(s.Clients(), id) {
		t.Fatalf("registered with token %q (stale %q); clients %v", token, stale, s.Clients())
	}
}
