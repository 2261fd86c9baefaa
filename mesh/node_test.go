package mesh_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

func hasPeer(n *mesh.Node, id mesh.ID) bool {
	for _, p := range n.Peers() {
		if p.ID == id {
			return true
		}
	}
	return false
}

func echo(ctx context.Context, m *mesh.Message) ([]byte, error) {
	return append([]byte("echo:"), m.Payload...), nil
}

func TestSendAndRequest(t *testing.T) {
	nw := meshtest.NewNetwork()
	a := nw.NewNode(t, "a", meshtest.Options{Configure: func(c *mesh.Config) { c.TargetPeers = 1 }})
	b := nw.NewNode(t, "b", meshtest.Options{Configure: func(c *mesh.Config) { c.TargetPeers = 1 }})

	got := make(chan *mesh.Message, 10)
	b.Handle("note/1", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		got <- m
		return nil, nil
	}))
	b.Handle("echo/1", mesh.HandlerFunc(echo))
	b.Handle("fail/1", mesh.HandlerFunc(func(context.Context, *mesh.Message) ([]byte, error) {
		return nil, errors.New("no such thing")
	}))
	b.Handle("panic/1", mesh.HandlerFunc(func(context.Context, *mesh.Message) ([]byte, error) {
		panic("handler bug")
	}))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, b.ID()); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "b to see a", func() bool { return hasPeer(b, a.ID()) })

	for i := range 3 {
		if err := a.Send(ctx, b.ID(), "note/1", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		select {
		case m := <-got:
			if m.From != a.ID() || m.Request || !bytes.Equal(m.Payload, []byte{byte(i)}) {
				t.Fatalf("message %d: got %+v", i, m)
			}
		case <-ctx.Done():
			t.Fatal("message not delivered")
		}
	}

	for _, bulk := range []bool{false, true} {
		var opts []mesh.SendOption
		if bulk {
			opts = append(opts, mesh.OverBulk())
		}
		resp, err := a.Request(ctx, b.ID(), "echo/1", []byte("x"), opts...)
		if err != nil || string(resp) != "echo:x" {
			t.Fatalf("bulk=%v: Request = %q, %v", bulk, resp, err)
		}
	}

	big := bytes.Repeat([]byte{1}, mesh.MaxPayload(mesh.Bulk))
	resp, err := a.Request(ctx, b.ID(), "echo/1", big[:1000], mesh.OverBulk())
	if err != nil || len(resp) != 1005 {
		t.Fatalf("Request = %d bytes, %v", len(resp), err)
	}
	if _, err := a.Request(ctx, b.ID(), "echo/1", big); err == nil {
		t.Fatal("a bulk-sized payload went over ctl")
	} else if !errors.Is(err, mesh.ErrTooLarge) {
		t.Fatalf("oversized payload: %v, want ErrTooLarge", err)
	}
	// The answer would be 5 bytes over the limit: the handler's answer is refused, not the link.
	var re *mesh.RemoteError
	if _, err := a.Request(ctx, b.ID(), "echo/1", big, mesh.OverBulk()); !errors.As(err, &re) {
		t.Fatalf("oversized answer: %v, want a RemoteError", err)
	}

	if _, err := a.Request(ctx, b.ID(), "fail/1", nil); !errors.As(err, &re) || re.Msg != "no such thing" {
		t.Fatalf("fail/1: %v", err)
	}
	if _, err := a.Request(ctx, b.ID(), "panic/1", nil); !errors.As(err, &re) {
		t.Fatalf("panic/1: %v", err)
	}
	if _, err := a.Request(ctx, b.ID(), "nobody/1", nil); !errors.Is(err, mesh.ErrNoHandler) {
		t.Fatalf("unknown protocol: %v, want ErrNoHandler", err)
	}
	if _, err := a.Request(ctx, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "echo/1", nil); !errors.Is(err, mesh.ErrNotConnected) {
		t.Fatalf("unknown peer: %v, want ErrNotConnected", err)
	}
	// The link survived all of it.
	if resp, err := a.Request(ctx, b.ID(), "echo/1", []byte("y")); err != nil || string(resp) != "echo:y" {
		t.Fatalf("after errors: %q, %v", resp, err)
	}
}

func TestRequestDeadline(t *testing.T) {
	nw := meshtest.NewNetwork()
	a := nw.NewNode(t, "a")
	b := nw.NewNode(t, "b")
	release := make(chan struct{})
	b.Handle("slow/1", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	}))
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Connect(ctx, b.ID()); err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel2()
	if _, err := a.Request(short, b.ID(), "slow/1", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Request = %v, want DeadlineExceeded", err)
	}
}

func TestNodesFillToTarget(t *testing.T) {
	nw := meshtest.NewNetwork()
	var nodes []*mesh.Node
	for i := range 6 {
		nodes = append(nodes, nw.NewNode(t, fmt.Sprintf("n%d", i), meshtest.Options{Configure: func(c *mesh.Config) {
			c.TargetPeers, c.LowPeers, c.HighPeers = 3, 2, 5
		}}))
	}
	testutil.WaitFor(t, 10*time.Second, "every node to hold 3..5 links", func() bool {
		for _, n := range nodes {
			if k := len(n.Peers()); k < 3 || k > 5 {
				return false
			}
		}
		return true
	})
	// Links are symmetric and have names.
	for _, n := range nodes {
		for _, p := range n.Peers() {
			if p.Name == "" {
				t.Errorf("%s: peer %s has no name", n.Name(), p.ID.Short())
			}
		}
	}
}

func TestSimultaneousDialKeepsOneLink(t *testing.T) {
	for i := range 5 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			nw := meshtest.NewNetwork()
			opt := meshtest.Options{Configure: func(c *mesh.Config) { c.ManualLinks = true }, Logger: testLogger(t)}
			a := nw.NewNode(t, "a", opt)
			b := nw.NewNode(t, "b", opt)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			errs := make([]error, 2)
			wg.Go(func() { errs[0] = a.Connect(ctx, b.ID()) })
			wg.Go(func() { errs[1] = b.Connect(ctx, a.ID()) })
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			// The pair settles on the link the smaller id dialed, and it
			// stays up on both ends.
			first := waitSettledPair(t, a, b, 20*time.Second)
			time.Sleep(300 * time.Millisecond)
			pa, pb := a.Peers(), b.Peers()
			if len(pa) != 1 || len(pb) != 1 || pa[0].Outbound == pb[0].Outbound || !pa[0].Since.Equal(first) {
				t.Fatalf("link not stable: a has %+v, b has %+v", pa, pb)
			}
			if _, err := a.Request(ctx, b.ID(), "x/1", nil); !errors.Is(err, mesh.ErrNoHandler) {
				t.Fatalf("link unusable: %v", err)
			}
		})
	}
}

func TestPeerEventsAndSilentPeerRemoved(t *testing.T) {
	nw := meshtest.NewNetwork()
	// A timeout short enough for the test, long enough that a loaded
	// machine's pauses do not pass for silence.
	opt := meshtest.Options{Configure: func(c *mesh.Config) {
		c.PingInterval = 200 * time.Millisecond
		c.PeerTimeout = 3 * time.Second
		c.TargetPeers = 1
	}}
	a := nw.NewNode(t, "a", opt)
	events, stop := a.SubscribePeers()
	defer stop()
	b := nw.NewNode(t, "b", opt)

	next := func(want mesh.PeerEventKind) mesh.PeerEvent {
		t.Helper()
		select {
		case e := <-events:
			if e.Kind != want || e.Peer.ID != b.ID() {
				t.Fatalf("event %v %s, want %v %s", e.Kind, e.Peer.ID.Short(), want, b.ID().Short())
			}
			return e
		case <-time.After(20 * time.Second):
			t.Fatalf("no %v event", want)
		}
		return mesh.PeerEvent{}
	}
	if e := next(mesh.PeerUp); e.Peer.Name != "b" {
		t.Fatalf("peer up with name %q, want b", e.Peer.Name)
	}
	testutil.WaitFor(t, 5*time.Second, "an RTT measurement", func() bool {
		p := a.Peers()
		return len(p) == 1 && p[0].RTT > 0
	})
	nw.Freeze(b.ID())
	next(mesh.PeerDown)
	if hasPeer(a, b.ID()) {
		t.Fatal("silent peer still listed")
	}
}

func TestHighMarkRefusesExtraLinks(t *testing.T) {
	nw := meshtest.NewNetwork()
	hub := nw.NewNode(t, "hub", meshtest.Options{Configure: func(c *mesh.Config) {
		c.TargetPeers, c.LowPeers, c.HighPeers = 1, 1, 2
		c.ManualLinks = true
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ok int
	for i := range 4 {
		n := nw.NewNode(t, fmt.Sprint("leaf", i), meshtest.Options{Configure: func(c *mesh.Config) { c.ManualLinks = true }})
		if err := n.Connect(ctx, hub.ID()); err == nil {
			ok++
		}
	}
	testutil.WaitFor(t, 5*time.Second, "hub at its high mark", func() bool { return len(hub.Peers()) == 2 })
	if ok != 2 {
		t.Fatalf("%d dials succeeded, want 2", ok)
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("CATNEST_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
