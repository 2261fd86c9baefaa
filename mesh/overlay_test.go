package mesh_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// connected reports whether the link graph of nodes is connected.
func connected(nodes []*mesh.Node) bool {
	if len(nodes) == 0 {
		return true
	}
	in := map[mesh.ID]*mesh.Node{}
	for _, n := range nodes {
		in[n.ID()] = n
	}
	seen := map[mesh.ID]bool{nodes[0].ID(): true}
	queue := []*mesh.Node{nodes[0]}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, p := range n.Peers() {
			if o := in[p.ID]; o != nil && !seen[p.ID] {
				seen[p.ID] = true
				queue = append(queue, o)
			}
		}
	}
	return len(seen) == len(nodes)
}

func knowsAll(n *mesh.Node, nodes []*mesh.Node) bool {
	dir := n.Directory()
	ids := map[mesh.ID]bool{}
	for _, r := range dir {
		ids[r.ID] = true
	}
	for _, o := range nodes {
		if !ids[o.ID()] {
			return false
		}
	}
	return len(dir) == len(nodes)
}

// deliveries counts, per node, the broadcasts of a topic it was handed.
type deliveries struct {
	mu  sync.Mutex
	got map[mesh.ID]map[mesh.MsgID]int
	t   *testing.T // set by failOnDuplicate
}

// failOnDuplicate makes a second delivery of a message to a node fail t
// when it happens, at any time until the nodes stop: no window to wait
// for a duplicate that may come late.
func (d *deliveries) failOnDuplicate(t *testing.T) {
	d.mu.Lock()
	d.t = t
	d.mu.Unlock()
}

func countDeliveries(topic string, nodes ...*mesh.Node) *deliveries {
	d := &deliveries{got: map[mesh.ID]map[mesh.MsgID]int{}}
	// Every map exists before the first handler can run: a node already
	// handed a broadcast would otherwise read d.got while it grows.
	for _, n := range nodes {
		d.got[n.ID()] = map[mesh.MsgID]int{}
	}
	for _, n := range nodes {
		id := n.ID()
		n.HandleBroadcast(topic, func(m mesh.BroadcastMsg) {
			d.mu.Lock()
			d.got[id][m.ID]++
			if d.got[id][m.ID] == 2 && d.t != nil {
				d.t.Errorf("%s got broadcast %s twice", n.Name(), m.ID)
			}
			d.mu.Unlock()
		})
	}
	return d
}

// all reports whether every node but the origin got msg, and whether any
// got it more than once.
func (d *deliveries) all(msg mesh.MsgID, origin mesh.ID) (complete, dup bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	complete = true
	for id, m := range d.got {
		if id == origin {
			continue
		}
		switch m[msg] {
		case 0:
			complete = false
		case 1:
		default:
			dup = true
		}
	}
	return complete, dup
}

// TestDirectoryAndBroadcastOnMemoryMesh runs 30 nodes in a testing/synctest
// bubble: time advances only when every node is idle, so the records'
// TTL, the GRAFT timers and the message cache's age count the protocol's
// time, not the time a loaded machine takes to run 30 nodes' work under
// -race. On the real clock, CI's load (19 on 2 cores) stretched that work
// past the records' expiry and the cache's age: directories did not fill
// in a minute, and a broadcast reached only a third of the nodes before
// the copies that could answer its GRAFTs were dropped from every cache.
func TestDirectoryAndBroadcastOnMemoryMesh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := meshtest.NewNetwork()
		var nodes []*mesh.Node
		for i := range 30 {
			nodes = append(nodes, nw.NewNode(t, fmt.Sprintf("n%02d", i), meshtest.Options{Configure: func(c *mesh.Config) {
				meshtest.Fast(c)
				// Expiry is TestNodeLeavesDirectoryWhenGone's to test: a
				// refresh every second costs 30 nodes 900 signature checks a
				// second, more than a loaded machine under -race can spare,
				// and records then expire before the directories fill.
				c.RecordRefresh, c.RecordTTL = 10*time.Second, 35*time.Second
			}}))
		}
		if err := nodes[3].SetResource("music", map[string]int{"tracks": 42}); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 60*time.Second, "a connected mesh where every directory lists all 30", func() bool {
			if !connected(nodes) {
				return false
			}
			for _, n := range nodes {
				if k := len(n.Peers()); k < 3 || k > 8 || !knowsAll(n, nodes) {
					return false
				}
			}
			return true
		})
		testutil.WaitFor(t, 20*time.Second, "the resource summary to spread", func() bool {
			r, ok := nodes[20].Lookup(nodes[3].ID())
			return ok && string(r.Resources["music"]) == `{"tracks":42}`
		})
		r, _ := nodes[0].Lookup(nodes[1].ID())
		if r.Name != "n01" || len(r.Neighbors) == 0 {
			t.Fatalf("record of n01: %+v", r)
		}

		d := countDeliveries("test/1", nodes...)
		d.failOnDuplicate(t) // until the nodes stop, not for a window
		ctx := context.Background()
		var ids []mesh.MsgID
		for i := range 20 {
			id, err := nodes[i%len(nodes)].Broadcast(ctx, "test/1", []byte(fmt.Sprint("hello ", i)))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		for i, id := range ids {
			origin := nodes[i%len(nodes)].ID()
			testutil.WaitFor(t, 30*time.Second, "a broadcast to reach every node", func() bool { c, _ := d.all(id, origin); return c })
		}
	})
}

func TestNodeLeavesDirectoryWhenGone(t *testing.T) {
	nw := meshtest.NewNetwork()
	var nodes []*mesh.Node
	for i := range 6 {
		nodes = append(nodes, nw.NewNode(t, fmt.Sprint("n", i), meshtest.Options{Configure: meshtest.Fast}))
	}
	testutil.WaitFor(t, 10*time.Second, "full directories", func() bool {
		for _, n := range nodes {
			if !knowsAll(n, nodes) {
				return false
			}
		}
		return true
	})
	gone := nodes[5]
	nw.Kill(gone.ID())
	testutil.WaitFor(t, 15*time.Second, "the dead node to expire from every directory", func() bool {
		for _, n := range nodes[:5] {
			if _, ok := n.Lookup(gone.ID()); ok {
				return false
			}
		}
		return true
	})
}

// On a fixed graph, where Plumtree prunes the eager links down to a tree
// and repairs it by GRAFT, every node gets every message exactly once,
// whichever node sends it, even in a burst. How close the tree comes to
// one copy per node is a measurement, which BenchmarkBroadcast reports
// (copies/node/msg), for instance at this size:
//
//	go test -run '^$' -bench 'BenchmarkBroadcast/mode=plumtree/churn=0' -benchtime 1x ./mesh/ -args -bcast.nodes=30
func TestBroadcastTreeDeliversOnce(t *testing.T) {
	nw := meshtest.NewNetwork()
	nw.Latency = 2 * time.Millisecond
	var nodes []*mesh.Node
	for i := range 30 {
		nodes = append(nodes, nw.NewNode(t, fmt.Sprint("n", i), meshtest.Options{Configure: func(c *mesh.Config) {
			meshtest.Fast(c)
			c.RecordRefresh, c.RecordTTL = 10*time.Second, 35*time.Second
			c.ReplaceInterval = -1 // a fixed graph, so the tree can settle
		}}))
	}
	testutil.WaitFor(t, 60*time.Second, "a connected mesh", func() bool {
		for _, n := range nodes {
			if len(n.Peers()) < 3 {
				return false
			}
		}
		return connected(nodes) && knowsAll(nodes[0], nodes)
	})
	ctx := context.Background()
	d := countDeliveries("tree/1", nodes...)
	d.failOnDuplicate(t)
	for round := range 2 { // the tree forms, then carries
		var ids []mesh.MsgID
		for i := range 20 {
			id, err := nodes[(7*i)%len(nodes)].Broadcast(ctx, "tree/1", []byte(fmt.Sprint(round, i)))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		for i, id := range ids {
			origin := nodes[(7*i)%len(nodes)].ID()
			testutil.WaitFor(t, 30*time.Second, "delivery to every node", func() bool { c, _ := d.all(id, origin); return c })
		}
	}
}

func TestForgedRecordsAndFloodsAreDropped(t *testing.T) {
	nw := meshtest.NewNetwork()
	manual := func(ident *mesh.Identity) meshtest.Options {
		return meshtest.Options{Configure: func(c *mesh.Config) {
			meshtest.Fast(c)
			c.ManualLinks = true
			if ident != nil {
				c.Identity = ident
			}
			// The flood below (12000 frames) is over the limit
			// however slowly this machine passes it on: it would
			// have to take over 100 s. At the default rate it would
			// have to arrive faster than 6000 frames a second.
			c.BroadcastRate, c.BroadcastBurst = 100, 1000
		}}
	}
	victimKey, _ := mesh.NewIdentity()
	honestKey, _ := mesh.NewIdentity()
	a := nw.NewNode(t, "a", manual(victimKey))
	honest := nw.NewNode(t, "honest", manual(honestKey))
	mallory := nw.NewNode(t, "mallory", manual(nil))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range []*mesh.Node{honest, mallory} {
		if err := n.Connect(ctx, a.ID()); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 5*time.Second, "a to link both and know honest", func() bool {
		_, ok := a.Lookup(honest.ID())
		return ok && hasPeer(a, mallory.ID()) && hasPeer(a, honest.ID())
	})
	failures := func() int {
		for _, p := range a.Peers() {
			if p.ID == mallory.ID() {
				return p.Failures
			}
		}
		t.Fatalf("mallory's link is gone; a has %+v", a.Peers())
		return 0
	}
	malloryKey, _ := mesh.NewIdentity() // any key that is not honest's

	gossip := func(env []byte) {
		t.Helper()
		if err := mallory.Send(ctx, a.ID(), mesh.BcastProto, mesh.EncodeGossip(mallory.ID(), mesh.DirTopic, env, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	// handled waits until a has handled every frame mallory sent so far:
	// a link is in order, and a hands a broadcast to its handler (the
	// directory's too) on the link's goroutine.
	barrier := countDeliveries("barrier/1", a)
	handled := func(t *testing.T) {
		t.Helper()
		id := randomID()
		if err := mallory.Send(ctx, a.ID(), mesh.BcastProto, mesh.EncodeGossipID(id, mallory.ID(), "barrier/1", nil, time.Now())); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 10*time.Second, "a to handle mallory's frames", func() bool { c, _ := barrier.all(id, mallory.ID()); return c })
	}
	cur, _ := a.Lookup(honest.ID())
	tests := []struct {
		name string
		env  func() []byte
	}{
		{"record for honest signed by another key", func() []byte {
			env, err := mesh.SignRecord(malloryKey, mesh.WireRecord{ID: honest.ID(), Name: "evil", Seq: cur.Seq + 1e12})
			if err != nil {
				t.Fatal(err)
			}
			return env
		}},
		{"bad signature", func() []byte {
			env, _ := mesh.SignRecord(honestKey, mesh.WireRecord{ID: honest.ID(), Name: "honest", Seq: cur.Seq + 1e12})
			i := strings.Index(string(env), `"honest"`)
			env[i+1] = 'e' // "eonest": the body no longer matches the signature
			return env
		}},
		{"replayed older record", func() []byte {
			env, _ := mesh.SignRecord(honestKey, mesh.WireRecord{ID: honest.ID(), Name: "old name", Seq: 1})
			return env
		}},
		{"record over the size limit", func() []byte {
			env, _ := mesh.SignRecord(honestKey, mesh.WireRecord{ID: honest.ID(), Name: "honest", Seq: cur.Seq + 1e12})
			return append(env, make([]byte, mesh.MaxRecordSize)...)
		}},
		{"garbage", func() []byte { return []byte("not a record at all") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := failures()
			gossip(tt.env())
			handled(t)
			if tt.name != "replayed older record" && failures() == before {
				t.Fatal("mallory was not scored down")
			}
			r, ok := a.Lookup(honest.ID())
			if !ok || r.Name != "honest" || r.Seq < cur.Seq {
				t.Fatalf("the directory took the forged record: %+v", r)
			}
		})
	}

	// A flood of broadcast frames is cut by the rate limit, and the
	// flooder, who offends with every frame over it, is cut off.
	junk := mesh.EncodeIHave(mesh.MsgID{1})
	for range 12000 {
		if err := mallory.Send(ctx, a.ID(), mesh.BcastProto, junk); err != nil {
			break // cut off
		}
	}
	testutil.WaitFor(t, 10*time.Second, "the flood to be rate-limited and mallory cut off", func() bool {
		return a.BroadcastStats().Dropped > 0 && !hasPeer(a, mallory.ID())
	})
	// a still serves honest traffic.
	d := countDeliveries("after/1", a)
	id, err := honest.Broadcast(ctx, "after/1", []byte("still here"))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "an honest broadcast after the flood", func() bool { c, _ := d.all(id, honest.ID()); return c })
}

// waitStable waits until no node's links have changed for a second.
func waitStable(t *testing.T, nodes []*mesh.Node) {
	t.Helper()
	snapshot := func() string {
		var b strings.Builder
		for _, n := range nodes {
			for _, p := range n.Peers() {
				b.WriteString(string(p.ID))
			}
			b.WriteByte('|')
		}
		return b.String()
	}
	last, since := snapshot(), time.Now()
	testutil.WaitFor(t, 30*time.Second, "the links to settle", func() bool {
		if s := snapshot(); s != last {
			last, since = s, time.Now()
		}
		return time.Since(since) > time.Second
	})
}

func TestInvalidBroadcastIsNotRelayed(t *testing.T) {
	nw := meshtest.NewNetwork()
	manual := meshtest.Options{Configure: func(c *mesh.Config) { meshtest.Fast(c); c.ManualLinks = true }}
	mallory := nw.NewNode(t, "mallory", manual)
	a := nw.NewNode(t, "a", manual)
	honest := nw.NewNode(t, "honest", manual)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mallory.Connect(ctx, a.ID()); err != nil {
		t.Fatal(err)
	}
	if err := honest.Connect(ctx, a.ID()); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "a to link both", func() bool { return hasPeer(a, mallory.ID()) && hasPeer(a, honest.ID()) })
	for _, n := range []*mesh.Node{a, honest} {
		n.ValidateBroadcast("v/1", func(m mesh.BroadcastMsg) error {
			if string(m.Payload) == "bad" {
				return fmt.Errorf("payload is bad")
			}
			return nil
		})
	}
	d := countDeliveries("v/1", a, honest)
	if _, err := mallory.Broadcast(ctx, "v/1", []byte("bad")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "a to drop it and score mallory down", func() bool {
		for _, p := range a.Peers() {
			if p.ID == mallory.ID() {
				return p.Failures > 0
			}
		}
		return false
	})
	good, err := mallory.Broadcast(ctx, "v/1", []byte("good"))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "the good message to reach honest", func() bool { c, _ := d.all(good, mallory.ID()); return c })
	if got := honest.TopicStats("v/1").Received; got != 1 {
		t.Fatalf("honest received %d copies on v/1, want only the good one", got)
	}
	if got := a.TopicStats("v/1").Received; got != 2 {
		t.Fatalf("a received %d copies, want 2 (bad and good)", got)
	}
}

func TestTemporaryLinksAreReleasedWhenIdle(t *testing.T) {
	// Requests come far more often than the idle timeout, so that a
	// loaded machine's pauses do not make links in use look idle.
	const idle = 2 * time.Second
	nw := meshtest.NewNetwork()
	opt := meshtest.Options{Configure: func(c *mesh.Config) {
		meshtest.Fast(c)
		c.TargetPeers, c.LowPeers, c.HighPeers = 1, 1, 8
		c.IdleTimeout = idle
		c.ReplaceInterval = -1
	}}
	var nodes []*mesh.Node
	n := nw.NewNode(t, "n0", opt)
	for i := range 4 {
		// The others keep to themselves, so that only n0 makes links.
		nodes = append(nodes, nw.NewNode(t, fmt.Sprint("o", i), meshtest.Options{Configure: func(c *mesh.Config) {
			meshtest.Fast(c)
			c.ManualLinks = true
		}}))
	}
	nodes = append([]*mesh.Node{n}, nodes...)
	testutil.WaitFor(t, 5*time.Second, "n0 at its target", func() bool { return len(n.Peers()) == 1 })
	var want []mesh.ID
	for _, o := range nodes[1:] {
		if !hasPeer(n, o.ID()) {
			want = append(want, o.ID())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := n.Expand(ctx, want...); err != nil {
		t.Fatal(err)
	}
	temp := 0
	for _, p := range n.Peers() {
		if p.Temporary {
			temp++
		}
	}
	if temp != len(want) || len(n.Peers()) < 4 {
		t.Fatalf("after Expand: %d links, %d temporary; want all 4 nodes, %d temporary", len(n.Peers()), temp, len(want))
	}
	// In use, they stay; idle, they go, back down to the target.
	for end := time.Now().Add(2 * idle); time.Now().Before(end); {
		for _, id := range want {
			n.Request(ctx, id, "ping/1", nil)
		}
		if k := len(n.Peers()); k < 4 {
			t.Fatalf("temporary links in use were dropped: %d left", k)
		}
		time.Sleep(100 * time.Millisecond)
	}
	testutil.WaitFor(t, 20*time.Second, "idle temporary links to be dropped", func() bool {
		for _, p := range n.Peers() {
			if p.Temporary {
				return false
			}
		}
		return len(n.Peers()) >= 1
	})
}

func TestLinksKeepExploring(t *testing.T) {
	nw := meshtest.NewNetwork()
	var nodes []*mesh.Node
	for i := range 12 {
		nodes = append(nodes, nw.NewNode(t, fmt.Sprint("n", i), meshtest.Options{Configure: func(c *mesh.Config) {
			meshtest.Fast(c)
			c.ReplaceInterval = 300 * time.Millisecond
		}}))
	}
	set := func(n *mesh.Node) map[mesh.ID]bool {
		m := map[mesh.ID]bool{}
		for _, p := range n.Peers() {
			m[p.ID] = true
		}
		return m
	}
	testutil.WaitFor(t, 10*time.Second, "a connected mesh", func() bool { return connected(nodes) })
	first := set(nodes[0])
	changed := false
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && !changed {
		time.Sleep(200 * time.Millisecond)
		for id := range set(nodes[0]) {
			if !first[id] {
				changed = true
			}
		}
	}
	if !changed {
		for _, n := range nodes {
			r, _ := nodes[0].Lookup(n.ID())
			t.Logf("%s: %d links, advertises %d", n.Name(), len(n.Peers()), len(r.Neighbors))
		}
		t.Fatalf("n0 kept the same links %v for 10 s: no exploration", first)
	}
	// Exploring keeps every node at its low mark or more, and the mesh whole.
	testutil.WaitFor(t, 10*time.Second, "every node at 3+ links and connected", func() bool {
		for _, n := range nodes {
			if len(n.Peers()) < 3 {
				return false
			}
		}
		return connected(nodes)
	})
}
