package mesh_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/catnest/catnest/internal/peerjstest"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/signal"
)

// rendezvous runs our signal server on a loopback port until the test
// ends. stop takes it down and start brings up a fresh one on the same
// port: the listener stays open in between (refusing every request), so
// that no other process can take the port meanwhile.
type rendezvous struct {
	t    testing.TB
	addr string
	cfg  signal.ServerConfig
	// srv is the running server, nil while stopped.
	srv  *signal.Server
	stop func()

	mu  sync.Mutex
	cur *signal.Server
}

func startRendezvous(t testing.TB, discovery bool) *rendezvous {
	t.Helper()
	cfg := signal.DefaultServerConfig()
	cfg.Path = "/myapp"
	cfg.AllowDiscovery = discovery
	r := &rendezvous{t: t, cfg: cfg}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	hs := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() { defer close(served); hs.Serve(ln) }()
	r.start()
	t.Cleanup(func() {
		r.stop()
		hs.Close()
		<-served
	})
	return r
}

// ServeHTTP passes requests to the running server; while it is stopped,
// it answers 503, as a proxy in front of a dead rendezvous would.
func (r *rendezvous) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	srv := r.cur
	r.mu.Unlock()
	if srv == nil {
		http.Error(w, "rendezvous down", http.StatusServiceUnavailable)
		return
	}
	srv.ServeHTTP(w, req)
}

func (r *rendezvous) start() {
	r.t.Helper()
	srv := signal.NewServer(r.cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Maintain(ctx); err != nil {
			r.t.Errorf("rendezvous: %v", err)
		}
	}()
	r.srv = srv
	r.mu.Lock()
	r.cur = srv
	r.mu.Unlock()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			r.mu.Lock()
			r.cur = nil
			r.mu.Unlock()
			cancel() // Maintain closes every socket
			<-done
		})
	}
}

func (r *rendezvous) url() string { return "http://" + r.addr + "/myapp" }

type rtcOpts struct {
	bootstrap []mesh.ID
	manual    bool
	ident     *mesh.Identity
	name      string
	configure func(*mesh.Config)
	// beforeServe, when set, runs on the node before it serves.
	beforeServe func(*mesh.Node)
}

// rtcNode runs a node over real WebRTC on loopback until the test ends or
// its stop func is called.
func rtcNode(t testing.TB, signalURL string, o rtcOpts) (*mesh.Node, func()) {
	t.Helper()
	ident := o.ident
	if ident == nil {
		var err error
		if ident, err = mesh.LoadOrCreateIdentity(filepath.Join(t.TempDir(), "data")); err != nil {
			t.Fatal(err)
		}
	}
	cfg := mesh.DefaultConfig()
	cfg.Identity = ident
	cfg.Name = o.name
	cfg.SignalURL = signalURL
	cfg.Bootstrap = o.bootstrap
	cfg.ManualLinks = o.manual
	cfg.RTC.LoopbackOnly = true
	cfg.MaintainInterval = 300 * time.Millisecond
	cfg.Logger = testLogger(t)
	if o.configure != nil {
		o.configure(&cfg)
	}
	n, err := mesh.NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if o.beforeServe != nil {
		o.beforeServe(n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("node %s: %v", o.name, err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("node %s did not stop", o.name)
			}
		})
	}
	t.Cleanup(stop)
	return n, stop
}

// waitSettledPair waits until a and b, which dialed each other at once,
// hold one link between them, the same at both ends, and returns when a's
// end of it came up. When both dials made a link, the tie-break keeps the
// one the smaller ID dialed; but on a loaded machine one dial may finish
// before the other starts, which then finds the link there and makes
// none, so either direction can be what remains.
func waitSettledPair(t testing.TB, a, b *mesh.Node, timeout time.Duration) time.Time {
	t.Helper()
	var since time.Time
	testutil.WaitFor(t, timeout, "one link between the pair", func() bool {
		pa, pb := a.Peers(), b.Peers()
		if len(pa) != 1 || len(pb) != 1 || pa[0].ID != b.ID() || pb[0].ID != a.ID() {
			return false
		}
		since = pa[0].Since
		return pa[0].Outbound != pb[0].Outbound
	})
	return since
}

func fullyLinked(nodes ...*mesh.Node) bool {
	for _, n := range nodes {
		for _, o := range nodes {
			if n != o && !hasPeer(n, o.ID()) {
				return false
			}
		}
	}
	return true
}

func TestRTCTwoNodesMessagesAndRequests(t *testing.T) {
	rv := startRendezvous(t, true)
	a, _ := rtcNode(t, rv.url(), rtcOpts{name: "alice"})
	b, _ := rtcNode(t, rv.url(), rtcOpts{name: "bob"})
	got := make(chan []byte, 1)
	b.Handle("note/1", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		got <- m.Payload
		return nil, nil
	}))
	b.Handle("echo/1", mesh.HandlerFunc(echo))
	testutil.WaitFor(t, 20*time.Second, "alice and bob to link", func() bool { return fullyLinked(a, b) })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Send(ctx, b.ID(), "note/1", []byte("hello bob")); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if string(p) != "hello bob" {
			t.Fatalf("got %q", p)
		}
	case <-ctx.Done():
		t.Fatal("message not delivered")
	}
	resp, err := a.Request(ctx, b.ID(), "echo/1", []byte("ping"))
	if err != nil || string(resp) != "echo:ping" {
		t.Fatalf("ctl request = %q, %v", resp, err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), mesh.MaxPayload(mesh.Bulk)/16-1)
	resp, err = a.Request(ctx, b.ID(), "echo/1", big, mesh.OverBulk())
	if err != nil || !bytes.Equal(resp, append([]byte("echo:"), big...)) {
		t.Fatalf("bulk request: %d bytes, %v", len(resp), err)
	}
	p := a.Peers()
	if len(p) != 1 || p[0].Name != "bob" {
		t.Fatalf("alice's peers: %+v", p)
	}
	testutil.WaitFor(t, 15*time.Second, "a round-trip time", func() bool {
		p := a.Peers()
		return len(p) == 1 && p[0].RTT > 0
	})
}

func TestRTCThreeNodesThroughOurRendezvous(t *testing.T) {
	rv := startRendezvous(t, true)
	var nodes []*mesh.Node
	for _, name := range []string{"alice", "bob", "carol"} {
		n, _ := rtcNode(t, rv.url(), rtcOpts{name: name})
		nodes = append(nodes, n)
	}
	testutil.WaitFor(t, 30*time.Second, "three nodes fully linked", func() bool { return fullyLinked(nodes...) })
}

func TestRTCThreeNodesThroughNpmPeerServer(t *testing.T) {
	base := peerjstest.Start(t, peerjstest.Options{Key: "peerjs", Path: "/myapp", AllowDiscovery: true})
	var nodes []*mesh.Node
	for _, name := range []string{"alice", "bob", "carol"} {
		n, _ := rtcNode(t, base, rtcOpts{name: name})
		nodes = append(nodes, n)
	}
	testutil.WaitFor(t, 30*time.Second, "three nodes fully linked through npm peer", func() bool { return fullyLinked(nodes...) })
}

func TestRTCBootstrapWithoutDiscovery(t *testing.T) {
	rv := startRendezvous(t, false)
	a, _ := rtcNode(t, rv.url(), rtcOpts{name: "alice"})
	b, _ := rtcNode(t, rv.url(), rtcOpts{name: "bob", bootstrap: []mesh.ID{a.ID()}})
	c, _ := rtcNode(t, rv.url(), rtcOpts{name: "carol", bootstrap: []mesh.ID{a.ID(), b.ID()}})
	testutil.WaitFor(t, 30*time.Second, "bootstrap links", func() bool {
		return hasPeer(a, b.ID()) && hasPeer(a, c.ID()) && hasPeer(b, c.ID())
	})
}

func TestRTCRestartKeepsID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, err := mesh.LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	rv := startRendezvous(t, true)
	peer, _ := rtcNode(t, rv.url(), rtcOpts{name: "peer"})
	n, stop := rtcNode(t, rv.url(), rtcOpts{name: "n", ident: first})
	testutil.WaitFor(t, 20*time.Second, "first link", func() bool { return fullyLinked(n, peer) })
	stop()
	testutil.WaitFor(t, 30*time.Second, "the stopped node to leave", func() bool { return !hasPeer(peer, first.ID) })

	again, err := mesh.LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	n2, _ := rtcNode(t, rv.url(), rtcOpts{name: "n", ident: again})
	if n2.ID() != first.ID {
		t.Fatalf("restart changed the id from %s to %s", first.ID, n2.ID())
	}
	testutil.WaitFor(t, 20*time.Second, "the restarted node to link again under its id", func() bool { return fullyLinked(n2, peer) })
}

func TestRTCRendezvousRestart(t *testing.T) {
	rv := startRendezvous(t, true)
	a, _ := rtcNode(t, rv.url(), rtcOpts{name: "alice"})
	// Only alice dials, so that no simultaneous dial replaces the link
	// after the test has noted it.
	b, _ := rtcNode(t, rv.url(), rtcOpts{name: "bob", manual: true})
	b.Handle("echo/1", mesh.HandlerFunc(echo))
	testutil.WaitFor(t, 20*time.Second, "first links", func() bool { return fullyLinked(a, b) })
	since := a.Peers()[0].Since

	rv.stop()
	// Links stay up and usable while the rendezvous is down.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	time.Sleep(time.Second)
	if resp, err := a.Request(ctx, b.ID(), "echo/1", []byte("x")); err != nil || string(resp) != "echo:x" {
		t.Fatalf("request with the rendezvous down: %q, %v", resp, err)
	}
	if p := a.Peers(); len(p) != 1 || !p[0].Since.Equal(since) {
		t.Fatalf("the link did not survive the rendezvous going away: %+v", p)
	}

	rv.start()
	testutil.WaitFor(t, 30*time.Second, "both nodes to register again", func() bool {
		ids := rv.srv.Clients()
		return slices.Contains(ids, string(a.ID())) && slices.Contains(ids, string(b.ID()))
	})
	c, _ := rtcNode(t, rv.url(), rtcOpts{name: "carol"})
	testutil.WaitFor(t, 30*time.Second, "a newcomer to link with both", func() bool { return fullyLinked(a, b, c) })
	if p := a.Peers(); !slices.ContainsFunc(p, func(p mesh.PeerInfo) bool { return p.ID == b.ID() && p.Since.Equal(since) }) {
		t.Fatalf("the original link was replaced: %+v", p)
	}
}

// lyingRelay sits between one victim node and a real rendezvous and
// pretends that node mallory is node bob: it rewrites src mallory->bob on
// what the victim receives and dst bob->mallory on what it sends.
func lyingRelay(t testing.TB, upstream string, bob, mallory mesh.ID) string {
	t.Helper()
	up, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: up.Host})
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/peerjs") {
			proxy.ServeHTTP(w, r)
			return
		}
		down, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		u := "ws://" + up.Host + r.URL.RequestURI()
		upc, _, err := websocket.Dial(ctx, u, nil)
		if err != nil {
			down.Close(websocket.StatusInternalError, "upstream")
			return
		}
		pump := func(from, to *websocket.Conn, rewrite func(*signal.Message)) {
			defer cancel()
			for {
				_, b, err := from.Read(ctx)
				if err != nil {
					return
				}
				m, err := signal.DecodeMessage(b)
				if err == nil {
					rewrite(&m)
					b, _ = json.Marshal(m)
				}
				if to.Write(ctx, websocket.MessageText, b) != nil {
					return
				}
			}
		}
		wg.Go(func() {
			pump(upc, down, func(m *signal.Message) {
				if m.Src == string(mallory) {
					m.Src = string(bob)
				}
			})
		})
		pump(down, upc, func(m *signal.Message) {
			if m.Dst == string(bob) {
				m.Dst = string(mallory)
			}
		})
		down.CloseNow()
		upc.CloseNow()
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		wg.Wait()
	})
	return srv.URL + up.Path
}

func TestRTCIdentityMismatchRefused(t *testing.T) {
	rv := startRendezvous(t, true)
	bobIdent, err := mesh.NewIdentity() // bob exists only as a name here
	if err != nil {
		t.Fatal(err)
	}
	mallory, _ := rtcNode(t, rv.url(), rtcOpts{name: "mallory", manual: true})
	victim, _ := rtcNode(t, lyingRelay(t, rv.url(), bobIdent.ID, mallory.ID()), rtcOpts{name: "victim", manual: true})
	testutil.WaitFor(t, 10*time.Second, "both registered", func() bool {
		ids := rv.srv.Clients()
		return slices.Contains(ids, string(mallory.ID())) && slices.Contains(ids, string(victim.ID()))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// The victim dials bob; the relay hands the offer to mallory, who answers.
	err = victim.Connect(ctx, bobIdent.ID)
	if !errors.Is(err, mesh.ErrIdentityMismatch) {
		t.Fatalf("dialing bob through a lying relay: %v, want ErrIdentityMismatch", err)
	}
	// Mallory dials the victim; the relay says the offer comes from bob.
	err = mallory.Connect(ctx, victim.ID())
	if err == nil {
		t.Fatal("mallory linked to the victim while claiming to be bob")
	}
	for _, p := range victim.Peers() {
		t.Fatalf("the victim holds a link to %s (%s)", p.Name, p.ID.Short())
	}
}
