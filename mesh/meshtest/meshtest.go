// Package meshtest provides an in-memory network of mesh nodes for tests
// and simulations. Nodes on it are real *mesh.Node values; only the
// transport differs: links are pairs of bounded in-memory queues, with an
// optional one-way latency, so backpressure behaves as on a real link.
package meshtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
)

// queueFrames is how many frames one direction of one channel buffers
// before Send blocks.
const queueFrames = 64

// sharedSignatures is the size of the signature cache of a network with
// ShareSignatureChecks: more than the records a simulation issues in the
// time they travel.
const sharedSignatures = 1 << 16

// Network is a set of in-memory transports that can dial each other.
type Network struct {
	// Latency is the one-way delay of every frame. Set it before dialing.
	Latency time.Duration
	// MaxLatency, if above Latency, makes the delay a property of each
	// link, drawn uniformly from [Latency, MaxLatency] when it is dialed,
	// as nodes spread over a continent see: frames on one link keep their
	// order. Run the nodes inside a testing/synctest bubble to have the
	// delays kept exactly whatever the load of the machine (a delay is a
	// timer; nothing on the network blocks but on channels and timers).
	MaxLatency time.Duration
	// ShareSignatureChecks makes the nodes NewNode makes share one
	// mesh.SignatureCache, so that a directory record's signature is
	// checked once on the network rather than once by each node: for
	// simulations of hundreds of nodes, where those checks (nodes² of
	// them) would take most of the CPU. Tests of signatures leave it
	// off. Set it before NewNode.
	ShareSignatureChecks bool

	mu    sync.Mutex
	sigs  *mesh.SignatureCache
	nodes map[mesh.ID]*Transport
	group map[mesh.ID]int // partition group of each node; nil: none
	// blocked holds the pairs (smaller ID first) that cannot link
	// directly (see Block).
	blocked map[[2]mesh.ID]bool
	// stops holds, per test, the cancel funcs of the nodes NewNode served
	// for it, so that the first node to stop at the test's end stops all
	// of them at once: stopped one after another, a thousand nodes each
	// wait for the rest to be slow.
	stops map[testing.TB][]context.CancelFunc
}

// NewNetwork returns an empty network.
func NewNetwork() *Network {
	return &Network{nodes: make(map[mesh.ID]*Transport)}
}

// Transport returns the transport of node id on this network.
func (nw *Network) Transport(id mesh.ID) *Transport {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if t := nw.nodes[id]; t != nil {
		return t
	}
	t := &Transport{nw: nw, id: id, conns: make(map[*conn]struct{}), serving: make(chan struct{})}
	nw.nodes[id] = t
	return t
}

// Options changes a node made by NewNode.
type Options struct {
	// Configure, if set, edits the config before the node is made.
	Configure func(*mesh.Config)
	// Logger; nil discards.
	Logger *slog.Logger
}

// NewNode makes a node on the network with a fresh identity and serves it
// until the test ends. Its maintainer links it to about TargetPeers of the
// other nodes.
func (nw *Network) NewNode(tb testing.TB, name string, opts ...Options) *mesh.Node {
	tb.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	ident, err := mesh.NewIdentity()
	if err != nil {
		tb.Fatal(err)
	}
	cfg := mesh.DefaultConfig()
	cfg.Identity = ident
	cfg.Name = name
	cfg.MaintainInterval = 200 * time.Millisecond
	cfg.Logger = o.Logger
	if o.Configure != nil {
		o.Configure(&cfg)
	}
	if cfg.Transport == nil {
		cfg.Transport = nw.Transport(cfg.Identity.ID)
	}
	if nw.ShareSignatureChecks && cfg.SignatureCache == nil {
		nw.mu.Lock()
		if nw.sigs == nil {
			nw.sigs = mesh.NewSignatureCache(sharedSignatures)
		}
		cfg.SignatureCache = nw.sigs
		nw.mu.Unlock()
	}
	n, err := mesh.NewNode(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	nw.mu.Lock()
	if nw.stops == nil {
		nw.stops = make(map[testing.TB][]context.CancelFunc)
	}
	nw.stops[tb] = append(nw.stops[tb], cancel)
	nw.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	select {
	case <-cfg.Transport.(*Transport).serving:
	case err := <-done:
		cancel()
		tb.Fatalf("node %s: %v", name, err)
	}
	tb.Cleanup(func() {
		nw.mu.Lock()
		stops := nw.stops[tb]
		delete(nw.stops, tb)
		nw.mu.Unlock()
		for _, stop := range stops {
			stop()
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("node %s: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			tb.Errorf("node %s did not stop%s", name, dumpGoroutines(name))
		}
	})
	return n
}

// dumpGoroutines writes every goroutine's stack to a file in the temp
// dir, left there, and says where: what a node that does not stop waits
// on is the one thing such a failure needs, and too long for a test log.
func dumpGoroutines(name string) string {
	f, err := os.CreateTemp("", "meshtest-stuck-"+name+"-*.txt")
	if err != nil {
		return ""
	}
	defer f.Close()
	if err := pprof.Lookup("goroutine").WriteTo(f, 2); err != nil {
		return ""
	}
	return "; its goroutines: " + f.Name()
}

// Fast makes a node's timers short, for tests that want a small mesh to
// settle, spread records and heal within seconds: maintenance, directory
// refresh and expiry, and the broadcast's repair of lost messages. Apply
// it in Options.Configure, before a test's own changes.
func Fast(c *mesh.Config) {
	c.MaintainInterval = 100 * time.Millisecond
	c.RecordRefresh = time.Second
	c.RecordTTL = 4 * time.Second
	c.RecordDebounce = 30 * time.Millisecond
	c.GraftTimeout = 100 * time.Millisecond
	c.GraftRetry = 50 * time.Millisecond
	c.IHaveInterval = 10 * time.Millisecond
}

// Kill cuts every link of node id and takes it off the network, as if its
// machine had lost power.
func (nw *Network) Kill(id mesh.ID) {
	nw.mu.Lock()
	t := nw.nodes[id]
	delete(nw.nodes, id)
	nw.mu.Unlock()
	if t != nil {
		t.closeAll(true)
	}
}

// Partition splits the network: nodes in different groups lose their links
// and cannot dial each other until Heal. Nodes in no group can reach
// everyone.
func (nw *Network) Partition(groups ...[]mesh.ID) {
	nw.mu.Lock()
	nw.group = make(map[mesh.ID]int)
	for i, g := range groups {
		for _, id := range g {
			nw.group[id] = i + 1
		}
	}
	var cut []*conn
	for _, t := range nw.nodes {
		t.mu.Lock()
		for c := range t.conns {
			if nw.apart(t.id, c.remote) {
				cut = append(cut, c)
			}
		}
		t.mu.Unlock()
	}
	nw.mu.Unlock()
	for _, c := range cut {
		c.Close()
	}
}

// Block makes a and b unable to link directly, as two nodes behind NATs
// that ICE finds no path between: their dials to each other fail with an
// error wrapping mesh.ErrNoPath, and a link between them is cut. Their
// links to others are not affected, so a neighbour may bridge them.
func (nw *Network) Block(a, b mesh.ID) {
	nw.mu.Lock()
	if nw.blocked == nil {
		nw.blocked = make(map[[2]mesh.ID]bool)
	}
	nw.blocked[pairKey(a, b)] = true
	t := nw.nodes[a]
	nw.mu.Unlock()
	if t == nil {
		return
	}
	var cut []*conn
	t.mu.Lock()
	for c := range t.conns {
		if c.remote == b {
			cut = append(cut, c)
		}
	}
	t.mu.Unlock()
	for _, c := range cut {
		c.Close()
	}
}

func pairKey(a, b mesh.ID) [2]mesh.ID {
	if b < a {
		a, b = b, a
	}
	return [2]mesh.ID{a, b}
}

// Heal ends a partition.
func (nw *Network) Heal() {
	nw.mu.Lock()
	nw.group = nil
	nw.mu.Unlock()
}

// linkLatency is the one-way delay of a new link.
func (nw *Network) linkLatency() time.Duration {
	if nw.MaxLatency <= nw.Latency {
		return nw.Latency
	}
	return nw.Latency + rand.N(nw.MaxLatency-nw.Latency+1)
}

// apart reports whether a partition separates a and b; nw.mu is held.
func (nw *Network) apart(a, b mesh.ID) bool {
	ga, gb := nw.group[a], nw.group[b]
	return ga != 0 && gb != 0 && ga != gb
}

// Freeze makes node id silent without closing its links: frames to and
// from it are dropped, as when a machine hangs or its network goes away.
func (nw *Network) Freeze(id mesh.ID) {
	nw.mu.Lock()
	t := nw.nodes[id]
	nw.mu.Unlock()
	if t != nil {
		t.frozen.Store(true)
	}
}

// Stall holds the frames sent to node id for d from now, as when its
// machine is too busy to read them: its links stay up, frames keep their
// order, and the senders' queues fill as they would behind a slow
// reader. Run in a testing/synctest bubble, d is exact.
func (nw *Network) Stall(id mesh.ID, d time.Duration) {
	nw.mu.Lock()
	t := nw.nodes[id]
	nw.mu.Unlock()
	if t != nil {
		t.stalled.Store(time.Now().Add(d).UnixNano())
	}
}

// Transport is one node's in-memory transport.
type Transport struct {
	nw      *Network
	id      mesh.ID
	frozen  atomic.Bool
	stalled atomic.Int64 // unix ns until which frames to it wait; see Stall
	// serving is closed once Serve accepts links.
	serving chan struct{}

	mu      sync.Mutex
	accept  func(mesh.Conn)
	stopped bool // Serve is ending: start no more goroutines
	dead    bool
	conns   map[*conn]struct{}
	wg      sync.WaitGroup
}

var errUnreachable = errors.New("meshtest: node not reachable")

// Serve accepts links until ctx ends.
func (t *Transport) Serve(ctx context.Context, accept func(mesh.Conn)) error {
	t.mu.Lock()
	if t.accept != nil {
		t.mu.Unlock()
		return errors.New("meshtest: Serve called twice")
	}
	t.accept = accept
	t.mu.Unlock()
	close(t.serving)
	<-ctx.Done()
	t.mu.Lock()
	t.stopped = true
	t.mu.Unlock()
	t.closeAll(false)
	t.wg.Wait()
	return nil
}

// spawn runs f on a goroutine that Serve waits for, unless Serve is ending.
func (t *Transport) spawn(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	t.wg.Go(f)
	return true
}

func (t *Transport) closeAll(dead bool) {
	t.mu.Lock()
	t.accept = nil
	if dead {
		t.dead = true
	}
	cs := make([]*conn, 0, len(t.conns))
	for c := range t.conns {
		cs = append(cs, c)
	}
	t.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// Candidates lists every live node on the network.
func (t *Transport) Candidates(context.Context) ([]mesh.ID, error) {
	t.nw.mu.Lock()
	defer t.nw.mu.Unlock()
	ids := make([]mesh.ID, 0, len(t.nw.nodes))
	for id, o := range t.nw.nodes {
		if id != t.id {
			o.mu.Lock()
			up := o.accept != nil
			o.mu.Unlock()
			if up {
				ids = append(ids, id)
			}
		}
	}
	return ids, nil
}

// Dial links to node id if it is on the network and serving.
func (t *Transport) Dial(ctx context.Context, id mesh.ID) (mesh.Conn, error) {
	t.nw.mu.Lock()
	r := t.nw.nodes[id]
	apart := t.nw.apart(t.id, id)
	blocked := t.nw.blocked[pairKey(t.id, id)]
	t.nw.mu.Unlock()
	if blocked {
		return nil, fmt.Errorf("%w: %s and %s are blocked from each other", mesh.ErrNoPath, t.id.Short(), id.Short())
	}
	if r == nil || apart {
		return nil, fmt.Errorf("%w: %s", errUnreachable, id.Short())
	}
	r.mu.Lock()
	accept := r.accept
	r.mu.Unlock()
	t.mu.Lock()
	dead := t.dead
	t.mu.Unlock()
	if accept == nil || dead {
		return nil, fmt.Errorf("%w: %s", errUnreachable, id.Short())
	}
	local, remote := newPair(t, r, t.nw.linkLatency())
	if !t.track(local) || !r.track(remote) {
		local.Close()
		return nil, fmt.Errorf("%w: %s", errUnreachable, id.Short())
	}
	if !r.spawn(func() { accept(remote) }) {
		local.Close()
		return nil, fmt.Errorf("%w: %s", errUnreachable, id.Short())
	}
	select {
	case <-ctx.Done():
		local.Close()
		return nil, ctx.Err()
	default:
	}
	return local, nil
}

func (t *Transport) track(c *conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dead {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *Transport) untrack(c *conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

type item struct {
	b   []byte
	due time.Time
}

// conn is one end of an in-memory link.
type conn struct {
	t        *Transport
	peer     *Transport
	remote   mesh.ID
	outbound bool
	latency  time.Duration
	in       [2]chan item // frames for this end
	out      [2]chan item // the peer's in
	recv     func(mesh.Channel, []byte)
	done     chan struct{} // shared by both ends
	once     *sync.Once
	start    sync.Once
}

func newPair(a, b *Transport, latency time.Duration) (*conn, *conn) {
	done := make(chan struct{})
	once := new(sync.Once)
	var ab, ba [2]chan item
	for i := range ab {
		ab[i] = make(chan item, queueFrames)
		ba[i] = make(chan item, queueFrames)
	}
	ca := &conn{t: a, peer: b, remote: b.id, outbound: true, latency: latency, in: ba, out: ab, done: done, once: once}
	cb := &conn{t: b, peer: a, remote: a.id, outbound: false, latency: latency, in: ab, out: ba, done: done, once: once}
	return ca, cb
}

func (c *conn) Remote() mesh.ID { return c.remote }
func (c *conn) Outbound() bool  { return c.outbound }

func (c *conn) Start(recv func(mesh.Channel, []byte)) {
	c.start.Do(func() {
		c.recv = recv
		for i := range c.in {
			ch := mesh.Channel(i)
			c.t.spawn(func() { c.deliver(ch) })
		}
	})
}

func (c *conn) deliver(ch mesh.Channel) {
	for {
		select {
		case it := <-c.in[ch]:
			if !c.wait(it.due) {
				return
			}
			for {
				until := time.Unix(0, c.t.stalled.Load())
				if !time.Now().Before(until) {
					break
				}
				if !c.wait(until) {
					return
				}
			}
			c.recv(ch, it.b)
		case <-c.done:
			return
		}
	}
}

// wait waits until t, and reports false if the link closed meanwhile.
func (c *conn) wait(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-c.done:
		return false
	}
}

func (c *conn) Send(ctx context.Context, ch mesh.Channel, b []byte) error {
	if int(ch) >= len(c.out) {
		return fmt.Errorf("meshtest: no channel %d", ch)
	}
	if c.t.frozen.Load() || c.peer.frozen.Load() {
		return nil // lost on the way
	}
	it := item{b: append([]byte(nil), b...)}
	if c.latency > 0 {
		it.due = time.Now().Add(c.latency)
	}
	select {
	case <-c.done:
		return mesh.ErrLinkClosed
	default:
	}
	select {
	case c.out[ch] <- it:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return mesh.ErrLinkClosed
	}
}

func (c *conn) Close() error {
	c.once.Do(func() { close(c.done) })
	c.t.untrack(c)
	return nil
}

func (c *conn) Done() <-chan struct{} { return c.done }
