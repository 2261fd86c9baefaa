package mesh_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// TestMeshTrafficBesideBusyServices: alice and bob cannot link directly;
// carol links to both. Alice's service load on carol is stuck: her
// requests to a handler that holds them take every request her room at
// carol allows (slots and queue), and her one-way messages to another
// stuck handler fill her share of carol's queue budget and the pool
// beyond it. While that lasts, the mesh's own traffic between them still
// flows: 300 broadcasts from alice all reach bob through carol and 300
// of bob's reach alice, alice's new directory record reaches carol and
// bob, alice's link to bob bridged by carol comes up (a mesh request to
// carol, and carol's to bob), and alice's link to carol stays up with
// its pings answered. Before, the mesh's own one-way messages drew on the
// same share and pool as the services' and were dropped, and its requests
// waited behind the services' for the peer's room and were answered busy.
func TestMeshTrafficBesideBusyServices(t *testing.T) {
	testutil.CheckGoroutines(t)
	const (
		budget     = 8 << 20
		slots      = 32
		queue      = 32
		reqSize    = 16 << 10
		msgSize    = 128 << 10
		broadcasts = 300
	)
	_, a, b, c := bridgeTrio(t, func(cfg *mesh.Config) {
		cfg.HighPeers, cfg.MaxTemporary = 8, 2
		cfg.MaxConcurrentRequests, cfg.RequestQueue = slots, queue
		cfg.QueueBytes = budget
		cfg.PingInterval = 100 * time.Millisecond
		cfg.PenaltyThreshold = -1 // the load is not an offence
	})

	release := make(chan struct{})
	letGo := sync.OnceFunc(func() { close(release) })
	t.Cleanup(letGo) // before the nodes stop, which waits for the handlers
	hold := func(ctx context.Context) {
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	var holding atomic.Int32
	c.Handle("test/slow", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		holding.Add(1)
		defer holding.Add(-1)
		hold(ctx)
		return []byte("done"), nil
	}))
	var stuck sync.Once
	c.Handle("test/stuck", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		stuck.Do(func() { hold(ctx) }) // the first holds the queue behind it
		return nil, nil
	}))
	got := map[*mesh.Node]*atomic.Int32{a: new(atomic.Int32), b: new(atomic.Int32)}
	for n, count := range got {
		n.HandleBroadcast("test/news", func(m mesh.BroadcastMsg) { count.Add(1) })
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Alice's service load: as many requests as carol takes from her at
	// once, all held, so that her room at carol is taken too.
	var load sync.WaitGroup
	defer load.Wait()
	defer letGo() // first, so that the load ends
	loadErrs := make(chan error, slots+queue)
	for i := range slots + queue {
		load.Go(func() {
			_, err := a.Request(ctx, c.ID(), "test/slow", make([]byte, reqSize), mesh.OverBulk())
			if err != nil {
				loadErrs <- fmt.Errorf("held request %d: %w", i, err)
			}
		})
	}
	testutil.WaitFor(t, 30*time.Second, "carol's handler slots and queue to fill with alice's requests", func() bool {
		return holding.Load() == slots && mesh.QueueUseOf(c).Queued >= queue*reqSize
	})
	read := func() int64 { p, _ := peerOf(c, a.ID()); return p.BytesIn }
	base := read()
	// Then one-way messages to the stuck handler, until carol's budget
	// has no room for the smallest message of the mesh's own: alice's
	// share and the pool are full. The mesh's own messages in flight hold
	// a little of it for a moment: it is full when seen so a few times.
	const (
		stuckProto = "test/stuck"
		overhead   = 128 // what carol counts beyond payload and protocol
		tight      = 100 // less than any message of the mesh's own costs
	)
	for sent, seen := 0, 0; seen < 3; {
		u := mesh.QueueUseOf(c)
		room := u.Pool - u.Pooled
		if room < tight {
			seen++
			time.Sleep(10 * time.Millisecond)
			continue
		}
		seen = 0
		if sent > 2*budget/reqSize {
			t.Fatalf("carol's budget is not full after %d messages: %+v", sent, u)
		}
		size := min(room-overhead-int64(len(stuckProto)), msgSize)
		if err := a.Send(ctx, c.ID(), stuckProto, make([]byte, max(size, 0)), mesh.OverBulk()); err != nil {
			t.Fatal(err)
		}
		sent++
		// Wait for carol to have read it, so that the next round sees it
		// counted.
		want := base + int64(size)
		testutil.WaitFor(t, 30*time.Second, "carol to read alice's message", func() bool { return read() >= want })
		base = read()
	}
	loaded := mesh.QueueUseOf(c)
	t.Logf("carol's budget under alice's load: %+v", loaded)

	// Broadcasts both ways through carol.
	for i := range broadcasts {
		for _, n := range []*mesh.Node{a, b} {
			if _, err := n.Broadcast(ctx, "test/news", fmt.Appendf(nil, "%s %d", n.Name(), i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	testutil.WaitFor(t, 60*time.Second, "every broadcast to reach the other end", func() bool {
		return got[a].Load() == broadcasts && got[b].Load() == broadcasts
	})

	// Alice's new record reaches carol and bob.
	if err := a.SetResource("test", map[string]int{"v": 7}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*mesh.Node{c, b} {
		testutil.WaitFor(t, 30*time.Second, n.Name()+" to hear alice's new record", func() bool {
			r, ok := n.Lookup(a.ID())
			var v struct{ V int }
			return ok && json.Unmarshal(r.Resources["test"], &v) == nil && v.V == 7
		})
	}

	// A bridged link: alice's mesh request to carol, carol's to bob.
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	err := a.Connect(dctx, b.ID())
	dcancel()
	if err != nil {
		t.Fatalf("alice to bob through carol while alice's services load carol: %v", err)
	}
	if p, ok := peerOf(a, b.ID()); !ok || p.Route != mesh.RouteBridge {
		t.Fatalf("alice's link to bob: %+v (found %v), want route bridge", p, ok)
	}

	// The link to carol is up, and pongs still come: its RTT is measured
	// anew.
	rtt := func() time.Duration { p, _ := peerOf(a, c.ID()); return p.RTT }
	for range 3 {
		last := rtt()
		testutil.WaitFor(t, 20*time.Second, "a pong from carol", func() bool { return rtt() != last })
	}

	// And all that while the load still held carol: the mesh's traffic
	// did not get through because the services' gave way.
	if h := holding.Load(); h != slots {
		t.Errorf("carol's handler holds %d of alice's requests, want %d", h, slots)
	}
	if u := mesh.QueueUseOf(c); u.Pool-u.Pooled >= tight {
		t.Errorf("carol's budget has room again: %+v", u)
	}
	for _, p := range c.Peers() {
		if p.ID != a.ID() && p.Dropped > 0 {
			t.Errorf("carol dropped %d of %s's messages", p.Dropped, p.Name)
		}
	}
	if p, ok := peerOf(c, a.ID()); !ok {
		t.Error("carol lost her link to alice")
	} else {
		t.Logf("carol's link to alice: %d of alice's messages dropped (her test/stuck messages beyond the budget)", p.Dropped)
	}

	letGo()
	load.Wait()
	close(loadErrs)
	for err := range loadErrs {
		if !errors.Is(err, context.Canceled) {
			t.Error(err)
		}
	}
}

// TestMeshReserveHostileFlood: 20 hostile peers send a hub what only the
// mesh's own protocols may send, where the hub's handlers for them are
// stuck: each sends 4 MiB of directory snapshots and 40 bridge opens. The
// mesh's reserve of each link does not let them past the queue budget:
// sampled throughout, what the hub holds stays under Config.QueueBytes,
// and no hostile link has more than its meshRequests (4) requests in a
// handler. An honest peer is still served: its 200 requests answered
// (none busy), its 200 broadcasts and its new record all delivered, and
// a bridge through the hub opened for it.
func TestMeshReserveHostileFlood(t *testing.T) {
	testutil.CheckGoroutines(t)
	const (
		hostiles   = 20
		budget     = 16 << 20
		snapshots  = 20 // each of snapSize
		snapSize   = 200 << 10
		opens      = 40
		honestReqs = 200
		broadcasts = 200
	)
	nw, honest, far, hub := bridgeTrio(t, func(c *mesh.Config) {
		c.TargetPeers, c.HighPeers, c.MaxTemporary = 4, hostiles+4, -1
		c.QueueBytes = budget
		c.PenaltyThreshold = -1 // the flood is not what this test is about
	})

	stuck := make(chan struct{})
	letGo := sync.OnceFunc(func() { close(stuck) })
	t.Cleanup(letGo) // before the nodes stop, which waits for the handlers
	var mu sync.Mutex
	inHandler, most := map[mesh.ID]int{}, map[mesh.ID]int{}
	// The hub's own handlers for the hostile peers' protocols are replaced
	// by stuck ones for them, and pass the honest peers' on.
	bridge := mesh.HandlerOf(hub, mesh.BridgeProto)
	hub.Handle(mesh.BridgeProto, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		if m.From == honest.ID() || m.From == far.ID() {
			return bridge.ServeMesh(ctx, m)
		}
		mu.Lock()
		inHandler[m.From]++
		most[m.From] = max(most[m.From], inHandler[m.From])
		mu.Unlock()
		defer func() { mu.Lock(); inHandler[m.From]--; mu.Unlock() }()
		select {
		case <-stuck:
		case <-ctx.Done():
		}
		return nil, errors.New("no")
	}))
	dir := mesh.HandlerOf(hub, mesh.DirProto)
	hub.Handle(mesh.DirProto, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		if m.From == honest.ID() || m.From == far.ID() {
			return dir.ServeMesh(ctx, m)
		}
		select {
		case <-stuck:
		case <-ctx.Done():
		}
		return nil, nil
	}))
	hub.Handle("test/fast", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		return []byte("answer"), nil
	}))
	var heard atomic.Int32
	hub.HandleBroadcast("test/news", func(m mesh.BroadcastMsg) {
		if m.Origin == honest.ID() {
			heard.Add(1)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	mallory := dialHostiles(t, ctx, nw, hub, hostiles)
	send := func(h *hostile, ch mesh.Channel, frame []byte) error { return h.send(ctx, ch, frame) }
	testutil.WaitFor(t, 30*time.Second, "the hub to take every hostile link", func() bool {
		return len(hub.Peers()) == hostiles+2
	})

	// Sample what the hub holds from before the flood to the end.
	var mostCounted, limit int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			u := mesh.QueueUseOf(hub)
			mostCounted, limit = max(mostCounted, u.Counted), u.Limit
			select {
			case <-stopSampling:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	stop := sync.OnceFunc(func() { close(stopSampling); <-sampled })
	defer stop()

	var wg sync.WaitGroup
	for _, h := range mallory {
		wg.Go(func() {
			snap := make([]byte, snapSize)
			for i := range max(snapshots, opens) {
				if i < snapshots && send(h, mesh.Bulk, mesh.MessageFrame(mesh.DirProto, snap)) != nil {
					return
				}
				if i < opens && send(h, mesh.Ctl, mesh.RequestFrame(uint64(i+1), mesh.BridgeProto, []byte("{}"))) != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	testutil.WaitFor(t, 60*time.Second, "the hub to read the flood", func() bool {
		read := 0
		for _, h := range mallory {
			if p, ok := peerOf(hub, h.id); ok && p.BytesIn == h.sent.Load() {
				read++
			}
		}
		return read == hostiles
	})
	if u := mesh.QueueUseOf(hub); u.Pool-u.Pooled >= snapSize {
		t.Fatalf("the flood left room in the hub's budget: %+v", u)
	}

	// The honest peer is served all the same.
	for i := range honestReqs {
		if _, err := honest.Request(ctx, hub.ID(), "test/fast", make([]byte, 4<<10)); err != nil {
			t.Fatalf("honest request %d while the hostile peers fill the budget: %v", i, err)
		}
	}
	for i := range broadcasts {
		if _, err := honest.Broadcast(ctx, "test/news", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 60*time.Second, "the honest peer's broadcasts to reach the hub", func() bool {
		return heard.Load() == broadcasts
	})
	if err := honest.SetResource("test", map[string]int{"v": 7}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the hub to hear the honest peer's new record", func() bool {
		r, ok := hub.Lookup(honest.ID())
		var v struct{ V int }
		return ok && json.Unmarshal(r.Resources["test"], &v) == nil && v.V == 7
	})
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	err := honest.Connect(dctx, far.ID())
	dcancel()
	if err != nil {
		t.Fatalf("a bridge through the hub while hostile peers fill its budget: %v", err)
	}

	stop()
	t.Logf("most held: %d bytes by the budget; limit %d", mostCounted, limit)
	if limit > budget || mostCounted > budget {
		t.Errorf("the hub held up to %d bytes (limit %d) for %d hostile peers; Config.QueueBytes %d", mostCounted, limit, hostiles, budget)
	}
	mu.Lock()
	for id, n := range most {
		if n > 4 {
			t.Errorf("a hostile peer %s had %d bridge opens in a handler at once, want at most 4", id.Short(), n)
		}
	}
	if len(most) != hostiles {
		t.Errorf("%d of the %d hostile peers had a bridge open in a handler", len(most), hostiles)
	}
	mu.Unlock()
	letGo()
}
