package mesh_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/signal"
)

const testTURNSecret = "mesh-test-secret"

// turnRendezvous runs a signal server that hands out credentials for an
// embedded TURN relay, both on loopback, until the test ends; it returns
// the rendezvous URL. ttl is the credentials' lifetime.
func turnRendezvous(t testing.TB, ttl time.Duration) string {
	t.Helper()
	url, _ := countingTURNRendezvous(t, ttl)
	return url
}

// countingTURNRendezvous is turnRendezvous that also counts the requests
// for TURN credentials.
func countingTURNRendezvous(t testing.TB, ttl time.Duration) (string, *atomic.Int64) {
	t.Helper()
	ts, err := signal.NewTURNServer(signal.TURNServerConfig{
		PublicIP: netip.MustParseAddr("127.0.0.1"), RelayHost: "127.0.0.1",
		Secret: testTURNSecret, AllowPrivate: true, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	pc, tln, err := signal.ListenTURN("127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg := signal.DefaultServerConfig()
	cfg.Path = "/myapp"
	cfg.AllowDiscovery = true
	cfg.TURN = signal.TURNConfig{
		URLs:   []string{"turn:" + pc.LocalAddr().String() + "?transport=udp"},
		Secret: testTURNSecret, TTL: ttl,
	}
	srv := signal.NewServer(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fetches := new(atomic.Int64)
	hs := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/turn") {
			fetches.Add(1)
		}
		srv.ServeHTTP(w, r)
	})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 3)
	go func() { done <- ts.Serve(ctx, pc, tln) }()
	go func() { done <- srv.Maintain(ctx) }()
	go func() {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			done <- err
			return
		}
		done <- nil
	}()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("rendezvous or relay: %v", err)
			}
		}
		hs.Close()
		if err := <-done; err != nil {
			t.Errorf("rendezvous: %v", err)
		}
	})
	return "http://" + ln.Addr().String() + "/myapp", fetches
}

// TestRTCLinkThroughTURN: nodes that may only use relayed candidates link
// through the relay with the credentials the rendezvous handed them (no
// ICE servers configured), traffic flows, and /api/peers's route says so;
// nodes free to link directly do.
func TestRTCLinkThroughTURN(t *testing.T) {
	testutil.CheckGoroutines(t)
	url := turnRendezvous(t, time.Hour)
	relayOnly := func(c *mesh.Config) { c.RTC.RelayOnly = true }
	a, _ := rtcNode(t, url, rtcOpts{name: "alice", manual: true, configure: relayOnly})
	b, _ := rtcNode(t, url, rtcOpts{name: "bob", manual: true, configure: relayOnly})
	c, _ := rtcNode(t, url, rtcOpts{name: "carol", manual: true})
	d, _ := rtcNode(t, url, rtcOpts{name: "dave", manual: true})

	b.Handle("test/echo", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		return append([]byte("echo:"), m.Payload...), nil
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The first dials may come before the credentials: retry.
	testutil.WaitFor(t, 60*time.Second, "a relayed link from alice to bob", func() bool {
		dctx, dcancel := context.WithTimeout(ctx, 15*time.Second)
		defer dcancel()
		return a.Connect(dctx, b.ID()) == nil
	})
	resp, err := a.Request(ctx, b.ID(), "test/echo", []byte("hi"))
	if err != nil || string(resp) != "echo:hi" {
		t.Fatalf("request over the relayed link: %q, %v", resp, err)
	}
	testutil.WaitFor(t, 20*time.Second, "bob's end of the link", func() bool { return len(b.Peers()) == 1 })
	for _, n := range []*mesh.Node{a, b} {
		ps := n.Peers()
		if len(ps) != 1 || ps[0].Route != mesh.RouteTURN || !ps[0].Relayed || ps[0].BytesIn == 0 || ps[0].BytesOut == 0 {
			t.Fatalf("%s's peers %+v: want one relayed link (route turn) that carried traffic", n.Name(), ps)
		}
	}
	if err := c.Connect(ctx, d.ID()); err != nil {
		t.Fatalf("carol to dave: %v", err)
	}
	for _, p := range c.Peers() {
		if p.Route != mesh.RouteDirect || p.Relayed {
			t.Fatalf("carol's link %+v: want direct: both may use host candidates", p)
		}
	}
}

// TestRTCTURNCredentialsRenewed: credentials that live 8 seconds are
// fetched again before they expire, and a relayed link made after the
// first ones expired comes up with the new ones (the relay refuses the
// expired).
func TestRTCTURNCredentialsRenewed(t *testing.T) {
	testutil.CheckGoroutines(t)
	const ttl = 8 * time.Second
	url, fetches := countingTURNRendezvous(t, ttl)
	relayOnly := func(c *mesh.Config) { c.RTC.RelayOnly = true }
	a, _ := rtcNode(t, url, rtcOpts{name: "alice", manual: true, configure: relayOnly})
	b, _ := rtcNode(t, url, rtcOpts{name: "bob", manual: true, configure: relayOnly})
	testutil.WaitFor(t, 30*time.Second, "both nodes to fetch credentials", func() bool { return fetches.Load() >= 2 })
	first := time.Now()
	// Each renews at 3/4 of the life, so by 1.5 lives each has twice.
	testutil.WaitFor(t, 60*time.Second, "both nodes to renew their credentials", func() bool {
		return fetches.Load() >= 4 && time.Since(first) > ttl+time.Second
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	testutil.WaitFor(t, 60*time.Second, "a relayed link with the renewed credentials", func() bool {
		dctx, dcancel := context.WithTimeout(ctx, 15*time.Second)
		defer dcancel()
		return a.Connect(dctx, b.ID()) == nil
	})
	if ps := a.Peers(); len(ps) != 1 || ps[0].Route != mesh.RouteTURN {
		t.Fatalf("alice's peers %+v: want one link through the relay", ps)
	}
}
