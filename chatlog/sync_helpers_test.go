package chatlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/chatlog/recon"
	"github.com/catnest/catnest/mesh"
)

// routeMesh is the Mesh of a node whose sync requests go straight to
// handler functions, one a peer: a network of honest and hostile holders
// without links. Only what a sync uses is implemented.
type routeMesh struct {
	Mesh
	id    mesh.ID
	peers map[mesh.ID]func(ctx context.Context, req []byte) ([]byte, error)

	mu        sync.Mutex
	penalties map[mesh.ID]int
}

func (m *routeMesh) ID() mesh.ID                        { return m.id }
func (m *routeMesh) Name() string                       { return string(m.id) }
func (m *routeMesh) Lookup(mesh.ID) (mesh.Record, bool) { return mesh.Record{}, false }
func (m *routeMesh) Penalize(id mesh.ID, reason string) {
	m.mu.Lock()
	m.penalties[id]++
	m.mu.Unlock()
}
func (m *routeMesh) penalized(id mesh.ID) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.penalties[id]
}
func (m *routeMesh) handle(id mesh.ID, h func(context.Context, []byte) ([]byte, error)) {
	m.peers[id] = h
}

func (m *routeMesh) Request(ctx context.Context, to mesh.ID, proto string, payload []byte, opts ...mesh.SendOption) ([]byte, error) {
	h := m.peers[to]
	if h == nil || proto != syncProto {
		return nil, fmt.Errorf("%w: %s", mesh.ErrNotConnected, to)
	}
	return h(ctx, payload)
}

// routedService is a service of a node with its own store, joined to c.
func routedService(t *testing.T, id mesh.ID, c Channel) (*Service, *routeMesh) {
	t.Helper()
	store := newStore(t)
	c.Joined = true
	if err := store.PutChannel(c); err != nil {
		t.Fatal(err)
	}
	rm := &routeMesh{id: id, peers: map[mesh.ID]func(context.Context, []byte) ([]byte, error){}, penalties: map[mesh.ID]int{}}
	s := &Service{cfg: DefaultServiceConfig(), mesh: rm, store: store, log: slog.New(slog.DiscardHandler),
		sessions: map[string]*responder{}, syncing: map[syncKey]bool{}}
	return s, rm
}

// serveAs answers requests from peer as s does.
func serveAs(s *Service, peer mesh.ID) func(context.Context, []byte) ([]byte, error) {
	return func(ctx context.Context, req []byte) ([]byte, error) {
		return s.handleSync(ctx, &mesh.Message{From: peer, Payload: req, Channel: mesh.Bulk, Request: true})
	}
}

// TestFetchFromHostileHelpers: a newcomer fetches a history of 4,000
// messages from an honest holder and three helpers at once: one that says
// it holds nothing it is asked for, one that goes away when asked its
// first batch, and one that serves a message it was not asked for. The
// newcomer ends up with the whole history, the lies cost it only time,
// and only the forger is scored down.
func TestFetchFromHostileHelpers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	owner := newIdent(t)
	c := NewChannel(owner.ID, "archive")
	start := time.Now().Add(-2 * time.Hour).UnixMilli()
	var history []*Message
	for i := range 4000 {
		history = append(history, msgAt(t, owner, c.ID, KindText, fmt.Sprint("message ", i), ID{}, start+int64(i)*1000))
	}
	alien := msgAt(t, owner, c.ID, KindText, "never in the history", ID{}, start)

	bob, bm := routedService(t, "bob", c)
	holders := map[mesh.ID]*Service{}
	for _, id := range []mesh.ID{"alice", "liar", "ghost", "forger"} {
		h, _ := routedService(t, id, c)
		for rest := history; len(rest) > 0; rest = rest[min(len(rest), 1000):] {
			mustPut(t, h.store, rest[:min(len(rest), 1000)]...)
		}
		holders[id] = h
	}

	// Each helper has had a get before alice answers her second: so that
	// all of them take part however the goroutines are scheduled.
	var mu sync.Mutex
	gets := map[mesh.ID]int{}
	helped := make(chan struct{})
	countGet := func(id mesh.ID, req []byte) int {
		if syncOp(req[0]) != opGet {
			return 0
		}
		mu.Lock()
		defer mu.Unlock()
		gets[id]++
		if id != "alice" && gets["liar"] > 0 && gets["ghost"] > 0 && gets["forger"] > 0 && gets["alice"] > 0 {
			select {
			case <-helped:
			default:
				close(helped)
			}
		}
		return gets[id]
	}
	// gate holds the get numbered at of id until every helper has had
	// one. The helpers' first gets wait too: the liar answers at once and
	// doubles its batch each time, so alone it would empty the queue
	// before a slow-starting helper took its first batch, and that helper
	// would then never be asked.
	gate := func(ctx context.Context, id mesh.ID, req []byte, at int) (int, error) {
		n := countGet(id, req)
		if n != at {
			return n, nil
		}
		select {
		case <-helped:
			return n, nil
		case <-ctx.Done():
			return n, ctx.Err()
		}
	}
	honest := serveAs(holders["alice"], "bob")
	bm.handle("alice", func(ctx context.Context, req []byte) ([]byte, error) {
		if _, err := gate(ctx, "alice", req, 2); err != nil {
			return nil, err
		}
		return honest(ctx, req)
	})
	liar := serveAs(holders["liar"], "bob")
	bm.handle("liar", func(ctx context.Context, req []byte) ([]byte, error) {
		if n, err := gate(ctx, "liar", req, 1); err != nil {
			return nil, err
		} else if n == 0 {
			return liar(ctx, req)
		}
		r, err := decodeSyncRequest(req)
		if err != nil {
			t.Error(err)
		}
		return binary.AppendUvarint(nil, uint64(len(r.ids))), nil // went through all, holds none
	})
	ghost := serveAs(holders["ghost"], "bob")
	bm.handle("ghost", func(ctx context.Context, req []byte) ([]byte, error) {
		if n, err := gate(ctx, "ghost", req, 1); err != nil {
			return nil, err
		} else if n > 0 {
			return nil, mesh.ErrLinkClosed
		}
		return ghost(ctx, req)
	})
	forger := serveAs(holders["forger"], "bob")
	bm.handle("forger", func(ctx context.Context, req []byte) ([]byte, error) {
		if n, err := gate(ctx, "forger", req, 1); err != nil {
			return nil, err
		} else if n == 0 {
			return forger(ctx, req)
		}
		b, _ := appendEntry(binary.AppendUvarint(nil, 1), maxSyncFrame, alien.Encode())
		return b, nil
	})

	if err := bob.syncOnce(ctx, c.ID, "alice", "liar", "ghost", "forger"); err != nil {
		t.Fatal(err)
	}
	got, err := bob.store.Items(c.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := holders["alice"].store.Items(c.ID, 0)
	if !slices.Equal(got, want) {
		t.Fatalf("bob stores %d of %d messages", len(got), len(want))
	}
	if ok, _ := bob.store.Has(alien.ID); ok {
		t.Fatal("bob stored a message served unasked")
	}
	mu.Lock()
	t.Logf("gets: %v", gets)
	mu.Unlock()
	if bm.penalized("forger") == 0 {
		t.Error("the forger was not scored down")
	}
	for _, id := range []mesh.ID{"alice", "liar", "ghost"} {
		if n := bm.penalized(id); n > 0 {
			t.Errorf("%s was scored down %d times", id, n)
		}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("the sync took the whole timeout")
	}
}

// TestResponderKeepsNoNeed: a peer that reconciles a channel against
// this node's few messages with a set of 30,000 of its own makes the
// answering session list none of them: it would be memory that a hostile
// peer fills at will, and the answering side is sent what it lacks.
func TestResponderKeepsNoNeed(t *testing.T) {
	owner := newIdent(t)
	c := NewChannel(owner.ID, "archive")
	alice, _ := routedService(t, "alice", c)
	now := time.Now().UnixMilli()
	for i := range 100 {
		mustPut(t, alice.store, msgAt(t, owner, c.ID, KindText, fmt.Sprint("message ", i), ID{}, now-int64(i)*1000))
	}
	rng := rand.New(rand.NewPCG(7, 8))
	var made []recon.Item
	for range 30_000 {
		it := recon.Item{Time: now - rng.Int64N(3600_000)}
		for k := range 4 {
			binary.LittleEndian.PutUint64(it.ID[8*k:], rng.Uint64())
		}
		made = append(made, it)
	}
	ctx := context.Background()
	serve := serveAs(alice, "mallory")
	ans, err := serve(ctx, openRequest(c.ID, 0))
	if err != nil {
		t.Fatal(err)
	}
	sid, _, err := decodeOpenAnswer(ans)
	if err != nil {
		t.Fatal(err)
	}
	x := recon.NewSession(recon.NewSet(made), reconOptions())
	msg, err := x.Start()
	if err != nil {
		t.Fatal(err)
	}
	most := 0
	for rounds := 0; msg != nil && !x.Done(); rounds++ {
		ans, err := serve(ctx, append(appendSyncHeader(nil, opRecon, sid), msg...))
		if err != nil {
			t.Fatalf("round %d: %v", rounds, err)
		}
		alice.mu.Lock()
		if r := alice.sessions[string(sid[:])]; r != nil {
			r.mu.Lock()
			if r.session != nil {
				most = max(most, len(r.session.Need()))
			}
			r.mu.Unlock()
		}
		alice.mu.Unlock()
		if len(ans) == 0 {
			break
		}
		if msg, err = x.Next(ans); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(x.Have()); n != len(made) {
		t.Fatalf("the peer found %d of its %d messages missing at alice", n, len(made))
	}
	if most > 0 {
		t.Fatalf("alice's session listed up to %d of the peer's IDs", most)
	}
}

// TestResponderBuildBudget: a peer that opens and starts syncs in a loop
// has this node load a channel's items and build its set a few times, not
// each time (each costs 40 ms at 100,000 messages), and other peers are
// still answered.
func TestResponderBuildBudget(t *testing.T) {
	owner := newIdent(t)
	c := NewChannel(owner.ID, "archive")
	alice, _ := routedService(t, "alice", c)
	alice.cfg.SyncInterval = time.Hour // no refill during the test
	now := time.Now().UnixMilli()
	for i := range 100 {
		mustPut(t, alice.store, msgAt(t, owner, c.ID, KindText, fmt.Sprint("message ", i), ID{}, now-int64(i)*1000))
	}
	start, err := recon.NewSession(recon.NewSet(nil), reconOptions()).Start()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	startSync := func(peer mesh.ID) error {
		serve := serveAs(alice, peer)
		ans, err := serve(ctx, openRequest(c.ID, 0))
		if err != nil {
			return err
		}
		sid, _, err := decodeOpenAnswer(ans)
		if err != nil {
			t.Fatal(err)
		}
		_, err = serve(ctx, append(appendSyncHeader(nil, opRecon, sid), start...))
		return err
	}
	served := 0
	for range 5 * peerBuilds {
		if startSync("mallory") == nil {
			served++
		}
	}
	if served != peerBuilds {
		t.Fatalf("served %d of %d syncs started in a loop, want %d", served, 5*peerBuilds, peerBuilds)
	}
	if err := startSync("bob"); err != nil {
		t.Fatalf("another peer: %v", err)
	}
}

// TestResponderSessionsPerPeer: one peer that opens a session in each of
// maxSessions channels gets maxPeerSessions of them, and another peer can
// still sync.
func TestResponderSessionsPerPeer(t *testing.T) {
	owner := newIdent(t)
	alice, _ := routedService(t, "alice", NewChannel(owner.ID, "c0"))
	var chs []ChannelID
	for i := range maxSessions {
		c := NewChannel(owner.ID, fmt.Sprint("c", i))
		c.Joined = true
		if err := alice.store.PutChannel(c); err != nil {
			t.Fatal(err)
		}
		chs = append(chs, c.ID)
	}
	ctx := context.Background()
	opened := 0
	for _, ch := range chs {
		if _, err := serveAs(alice, "mallory")(ctx, openRequest(ch, 0)); err == nil {
			opened++
		}
	}
	if opened != maxPeerSessions {
		t.Fatalf("one peer opened %d sessions, want %d", opened, maxPeerSessions)
	}
	if _, err := serveAs(alice, "bob")(ctx, openRequest(chs[0], 0)); err != nil {
		t.Fatalf("another peer: %v", err)
	}
}
