package calls

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// wait bounds every wait of these tests: generous, for a loaded machine.
const wait = 30 * time.Second

// testNet is n nodes on an in-memory mesh, each running the service.
type testNet struct {
	// wrap, if set, gives the Node that a node's service uses.
	wrap func(name string, n *mesh.Node) Node
	// meshConf, if set, edits each node's mesh config.
	meshConf func(*mesh.Config)
	nw       *meshtest.Network
	nodes    []*mesh.Node
	svcs     []*Service
}

// testConfig shortens the service's timers, so that leases run out and
// owners move within seconds.
func testConfig(c *Config) {
	c.Refresh = 250 * time.Millisecond
	c.Lease = 5 * time.Second
	c.SignalWait = 5 * time.Second
	c.RequestTimeout = 10 * time.Second
}

// newTestNet starts n nodes with the service and waits until each node's
// directory lists every other as a candidate owner.
func newTestNet(t *testing.T, n int, configure ...func(*Config)) *testNet {
	t.Helper()
	tn := &testNet{nw: meshtest.NewNetwork()}
	for i := range n {
		tn.add(t, fmt.Sprintf("n%d", i), configure...)
	}
	tn.converge(t)
	return tn
}

// add starts one more node with the service.
func (tn *testNet) add(t *testing.T, name string, configure ...func(*Config)) (*mesh.Node, *Service) {
	t.Helper()
	var ident *mesh.Identity
	node := tn.nw.NewNode(t, name, meshtest.Options{Configure: func(c *mesh.Config) {
		meshtest.Fast(c)
		if tn.meshConf != nil {
			tn.meshConf(c)
		}
		ident = c.Identity
	}})
	cfg := DefaultConfig()
	cfg.Identity = ident
	testConfig(&cfg)
	for _, f := range configure {
		f(&cfg)
	}
	cfg.Node = node
	if tn.wrap != nil {
		cfg.Node = tn.wrap(name, node)
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	tn.nodes = append(tn.nodes, node)
	tn.svcs = append(tn.svcs, svc)
	return node, svc
}

// converge waits until every node knows every other node's service.
func (tn *testNet) converge(t *testing.T) {
	t.Helper()
	testutil.WaitFor(t, wait, "every node to list every other's calls service", func() bool {
		for _, s := range tn.svcs {
			if len(s.ranking("x")) != len(tn.svcs) {
				return false
			}
		}
		return true
	})
}

// ownerIndex is the index of the node that owns room.
func (tn *testNet) ownerIndex(room string) int {
	ids := make([]mesh.ID, len(tn.nodes))
	for i, n := range tn.nodes {
		ids[i] = n.ID()
	}
	return slices.Index(ids, rank(room, ids)[0])
}

// roomOwnedBy finds a room name that node i owns.
func (tn *testNet) roomOwnedBy(t *testing.T, i int, prefix string) string {
	t.Helper()
	return tn.roomsOwnedBy(t, i, prefix, 1)[0]
}

// roomsOwnedBy finds n room names that node i owns.
func (tn *testNet) roomsOwnedBy(t *testing.T, i int, prefix string, n int) []string {
	t.Helper()
	var out []string
	for k := 0; len(out) < n; k++ {
		if k > 100000 {
			t.Fatal("no room names found")
		}
		room := fmt.Sprintf("%s%d", prefix, k)
		if tn.ownerIndex(room) == i {
			out = append(out, room)
		}
	}
	return out
}

// open opens a session on node i and closes it when the test ends.
func (tn *testNet) open(t *testing.T, i int) *Session {
	t.Helper()
	sess, err := tn.svcs[i].Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sess.Close)
	return sess
}

// next returns the session's next event, failing the test after wait.
func next(t *testing.T, sess *Session) Event {
	t.Helper()
	select {
	case ev := <-sess.Events():
		return ev
	case <-time.After(wait):
		t.Fatalf("no event for session %s within %v", sess.ID(), wait)
		return Event{}
	}
}

// expect reads the session's next events and checks their types.
func expect(t *testing.T, sess *Session, types ...string) []Event {
	t.Helper()
	var out []Event
	for _, typ := range types {
		ev := next(t, sess)
		if ev.Type != typ {
			t.Fatalf("session %s: event %+v, want type %q (after %+v)", sess.ID(), ev, typ, out)
		}
		out = append(out, ev)
	}
	return out
}

// drain returns the events waiting for the session, without waiting.
func drain(sess *Session) []Event {
	var out []Event
	for {
		select {
		case ev := <-sess.Events():
			out = append(out, ev)
		default:
			return out
		}
	}
}

// peerOf is the other member the session's node has for it.
func peerOf(sess *Session) *Member {
	sess.svc.mu.Lock()
	defer sess.svc.mu.Unlock()
	if sess.peer == nil {
		return nil
	}
	p := *sess.peer
	return &p
}

func member(sess *Session) Member { return Member{Node: sess.svc.self, Session: sess.id} }

// joinAll joins every session to room at once and returns the results.
func joinAll(t *testing.T, room string, sessions []*Session) []JoinResult {
	t.Helper()
	res := make([]JoinResult, len(sessions))
	errs := make([]error, len(sessions))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, s := range sessions {
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			res[i], errs[i] = s.svc.Join(ctx, s.ID(), room)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("join %d of %s: %v", i, room, err)
		}
	}
	return res
}

// joinPair joins a and b to room and waits until each has heard that the
// other is in (the first hears it in a notice that may come after both
// joins return).
func joinPair(t *testing.T, room string, a, b *Session) {
	t.Helper()
	for i, r := range joinAll(t, room, []*Session{a, b}) {
		if r.State != "joined" {
			t.Fatalf("join %d of %s: %+v", i, room, r)
		}
	}
	for _, s := range []*Session{a, b} {
		for ev := next(t, s); ev.Type != "other_joined"; ev = next(t, s) {
		}
	}
}

const sdpOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n"
