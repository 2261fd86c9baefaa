package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/catnest/catnest/internal/pubsub"
	"github.com/catnest/catnest/mesh/signal"
)

// Node is one member of the mesh: it keeps links to other nodes, serves
// the protocols registered with Handle, and sends messages and requests.
// Its methods are safe for concurrent use.
type Node struct {
	cfg       Config
	id        ID
	log       *slog.Logger
	transport Transport
	start     time.Time

	conns chan newConn  // links to run, from the transport and Connect
	wake  chan struct{} // pokes the maintainer
	done  chan struct{} // closed when Serve ends
	hmu   sync.RWMutex  // guards handlers
	hand  map[string]Handler

	mu      sync.Mutex
	serving bool
	links   map[ID]*link
	// dialing holds the dials in flight, one to a peer (see connect).
	dialing map[ID]*dialCall
	// backoff holds nodes whose dial failed; bans, nodes cut off for
	// their offences (see Config.PenaltyThreshold); offences, the counts
	// that lead there. All are bounded.
	backoff  *backoffs
	bans     *backoffs
	offences offences
	// peerEvents carries link changes to SubscribePeers; published with
	// mu held, so that subscribers see them in the order of the changes.
	peerEvents pubsub.Topic[PeerEvent]

	bc     *broadcaster
	dir    *directory
	routes routes
	// bridges are the bridged links this node ends and those it relays.
	bridges *bridges
	// relaySeen holds the relayed signals handled, against replays.
	relaySeen relaySeen
	// sent holds the offers and answers this node relayed, for failure
	// notices; lostSending counts the notices being sent.
	sent        sentSignals
	lostSending atomic.Int32
	// slots holds the link slots taken, one per peer whose links are in
	// their hello or registered (see reserve): HighPeers ordinary ones and
	// MaxTemporary more for temporary links.
	slots map[ID]*slot
	// budget bounds the bytes that all links hold in their queues.
	budget *queueBudget
	// cands caches the transport's candidates (a rendezvous's peer
	// list), renewed in the background by refreshCandidates so that
	// maintenance never waits on a slow or hung rendezvous.
	cands     []ID
	candsAt   time.Time
	candsWant chan struct{}
	// trimGrants holds, by neighbour, when this node told it that it may
	// drop their link (see handleTrimAsk); mu guards it.
	trimGrants map[ID]time.Time
}

type newConn struct {
	conn  Conn
	ready chan error // nil, or told whether the link came up
	temp  bool       // dialed for a temporary link (Expand)
}

// maxBackoffs bounds the nodes remembered in each of the dial backoff and
// the ban lists.
const maxBackoffs = 4096

// NewNode creates a node. It does nothing until Serve is called.
func NewNode(cfg Config) (*Node, error) {
	if cfg.Identity == nil {
		return nil, errors.New("mesh: Config.Identity is required")
	}
	cfg.fillDefaults()
	cfg.Name = cleanName(cfg.Name)
	if cfg.Name == "" {
		cfg.Name = cfg.Identity.ID.Short()
	}
	n := &Node{
		cfg:     cfg,
		id:      cfg.Identity.ID,
		log:     cfg.Logger.With("node", cfg.Identity.ID.Short()),
		start:   time.Now(),
		conns:   make(chan newConn),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		hand:    make(map[string]Handler),
		links:   make(map[ID]*link),
		dialing: make(map[ID]*dialCall),
		slots:   make(map[ID]*slot),
		backoff: newBackoffs(maxBackoffs),
		bans:    newBackoffs(maxBackoffs),

		offences:  make(offences),
		candsWant: make(chan struct{}, 1),
	}
	n.budget = newQueueBudget(&n.cfg)
	n.bc = newBroadcaster(n)
	n.dir = newDirectory(n)
	n.bridges = newBridges(n)
	n.Handle(bridgeProto, HandlerFunc(n.bridges.handleOpen))
	n.Handle(bcastProto, HandlerFunc(n.bc.handle))
	n.Handle(dirProto, HandlerFunc(n.dir.handleSnapshot))
	n.Handle(sigProto, HandlerFunc(n.handleRelay))
	n.Handle(trimProto, HandlerFunc(n.handleTrimAsk))
	n.HandleBroadcast(dirTopic, n.dir.onBroadcast)
	n.ValidateBroadcast(dirTopic, n.dir.validate)
	n.transport = cfg.Transport
	if n.transport == nil {
		if cfg.SignalURL == "" {
			return nil, errors.New("mesh: Config.SignalURL or Config.Transport is required")
		}
		t, err := newRTCTransport(&n.cfg, n.log)
		if err != nil {
			return nil, err
		}
		t.route = n.routeSignal
		t.refuse = n.banned
		t.known = func(id ID) bool { _, ok := n.Lookup(id); return ok }
		n.transport = t
	}
	return n, nil
}

// now is a monotonic clock reading in nanoseconds, for atomics.
func (n *Node) now() int64 { return int64(time.Since(n.start)) }

// ID is this node's ID.
func (n *Node) ID() ID { return n.id }

// Name is this node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Handle registers h for protocol proto (e.g. "chat/1"), replacing any
// earlier handler. It panics on an invalid name, as http.Handle does.
func (n *Node) Handle(proto string, h Handler) {
	if err := checkProtocol(proto); err != nil {
		panic("mesh: Handle: " + err.Error())
	}
	n.hmu.Lock()
	n.hand[proto] = h
	n.hmu.Unlock()
}

func (n *Node) handler(proto string) Handler {
	n.hmu.RLock()
	defer n.hmu.RUnlock()
	return n.hand[proto]
}

// Serve runs the node until ctx ends: it accepts links, keeps about
// Config.TargetPeers of them, and closes them all before it returns.
func (n *Node) Serve(ctx context.Context) error {
	n.mu.Lock()
	if n.serving {
		n.mu.Unlock()
		return errors.New("mesh: Serve called twice")
	}
	n.serving = true
	n.mu.Unlock()
	defer close(n.done)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The transport outlives the links, so that closing them is done
	// while it still runs; it stops last.
	tctx, tcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer tcancel()
	var wg, twg sync.WaitGroup
	errc := make(chan error, 1)
	twg.Go(func() {
		errc <- n.transport.Serve(tctx, func(c Conn) {
			select {
			case n.conns <- newConn{conn: c}:
			case <-ctx.Done():
				c.Close()
			}
		})
	})
	if !n.cfg.ManualLinks {
		wg.Go(func() { n.maintain(ctx) })
		wg.Go(func() { n.explorer(ctx) })
		wg.Go(func() { n.refreshCandidates(ctx) })
	}
	wg.Go(func() { n.bc.run(ctx) })
	wg.Go(func() { n.dir.run(ctx) })
	n.log.Info("node started", "id", string(n.id), "name", n.cfg.Name)

	var err error
loop:
	for {
		select {
		case nc := <-n.conns:
			wg.Go(func() { n.runLink(ctx, nc) })
		case err = <-errc:
			if err != nil {
				err = fmt.Errorf("mesh: transport: %w", err)
			}
			cancel()
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	n.mu.Lock()
	for _, l := range n.links {
		l.conn.Close()
	}
	n.mu.Unlock()
	wg.Wait()
	n.bc.stop()
	n.bridges.stop()
	tcancel()
	twg.Wait()
	return err
}

// Connect opens a link to id, unless there is one already. It returns when
// the link is ready for traffic.
func (n *Node) Connect(ctx context.Context, id ID) error {
	return n.connect(ctx, id, false)
}

// dialCall is a dial in flight; done is closed once err and ctxEnded
// are set.
type dialCall struct {
	done chan struct{}
	err  error
	// temp: the dial is for a temporary link (Expand).
	temp bool
	// ctxEnded: the dial failed with its caller's ctx ended, which says
	// nothing about the waiters' chances (see connect).
	ctxEnded bool
	// waiters counts the connects waiting for it; n.mu guards it.
	waiters int
}

// connect is Connect; temp asks for a temporary link, which both ends may
// hold beyond HighPeers (Config.MaxTemporary). A dial to id already in
// flight (the maintainer's, explore's, a service's) is waited for rather
// than doubled: the peer takes a second offer from this node as the first
// given up and cancels its handshake, so two dials at once would make the
// first fail, or both.
func (n *Node) connect(ctx context.Context, id ID, temp bool) error {
	_, err := n.connectKind(ctx, id, temp)
	return err
}

// connectKind is connect; ordinary reports that the link came from an
// ordinary dial, this caller's or another's it waited for, so that Expand
// does not make it temporary. A waiter whose dial failed only because its
// caller's ctx ended (explore's DialTimeout, a request given up) tries
// again with its own ctx rather than return another's cancellation.
func (n *Node) connectKind(ctx context.Context, id ID, temp bool) (ordinary bool, err error) {
	for {
		n.mu.Lock()
		d := n.dialing[id]
		if d == nil {
			d = &dialCall{done: make(chan struct{}), temp: temp}
			n.dialing[id] = d
			n.mu.Unlock()
			err := n.runDial(ctx, id, d, temp, nil)
			return err == nil && !temp, err
		}
		d.waiters++
		n.mu.Unlock()
		select {
		case <-d.done:
		case <-ctx.Done():
			n.mu.Lock()
			d.waiters--
			n.mu.Unlock()
			return false, ctx.Err()
		}
		switch {
		case d.err == nil:
			return !d.temp, nil
		case n.link(id) != nil:
			return false, nil // id linked to us meanwhile
		case d.ctxEnded && ctx.Err() == nil:
			continue
		}
		return false, d.err
	}
}

// runDial makes the dial d, which the caller put in n.dialing, and ends
// it; ended, when not nil, runs with n.mu held as the dial leaves
// n.dialing.
func (n *Node) runDial(ctx context.Context, id ID, d *dialCall, temp bool, ended func(error)) error {
	d.err = n.connectOnce(ctx, id, temp)
	d.ctxEnded = d.err != nil && ctx.Err() != nil
	n.mu.Lock()
	delete(n.dialing, id)
	if ended != nil {
		ended(d.err)
	}
	n.mu.Unlock()
	close(d.done)
	return d.err
}

// connectOnce makes one attempt at a link to id for connect.
func (n *Node) connectOnce(ctx context.Context, id ID, temp bool) error {
	if id == n.id {
		return errors.New("mesh: cannot link to self")
	}
	if n.link(id) != nil {
		return nil
	}
	if n.banned(id) {
		return fmt.Errorf("mesh: %s is banned for its offences", id.Short())
	}
	c, err := n.dial(ctx, id)
	if err != nil && errors.Is(err, ErrNoPath) && n.link(id) == nil {
		// No direct path: a neighbour both can reach may bridge them.
		// The direct attempt may have used up ctx's time.
		// The AfterFunc reads parent, never ctx: connect sets ctx to bctx
		// below while the AfterFunc may be running.
		parent := ctx
		bctx, cancel := context.WithTimeout(context.WithoutCancel(parent), n.cfg.HelloTimeout)
		stop := context.AfterFunc(parent, func() {
			if !errors.Is(parent.Err(), context.DeadlineExceeded) {
				cancel() // cancelled, not out of time
			}
		})
		var berr error
		if c, berr = n.bridges.dial(bctx, id); berr == nil {
			err = nil
			ctx = bctx
		} else {
			err = fmt.Errorf("%w; no bridge either: %v", err, berr)
		}
		defer cancel()
		defer stop()
	}
	if err != nil {
		if n.link(id) != nil {
			return nil // id linked to us while we dialed
		}
		return err
	}
	ready := make(chan error, 1)
	select {
	case n.conns <- newConn{conn: c, ready: ready, temp: temp}:
	case <-n.done:
		c.Close()
		return ErrClosed
	case <-ctx.Done():
		c.Close()
		return ctx.Err()
	}
	select {
	case err := <-ready:
		if errors.Is(err, ErrLinkClosed) {
			// The other end may have closed this link for losing a
			// simultaneous-dial race; the winner may still be in its hello.
			if n.waitLink(ctx, id, n.cfg.HelloTimeout) {
				return nil
			}
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dial dials id for Connect. An offer can go unanswered for good (the other
// end may still hold a link to this node's previous run, killed and
// restarted, and drop it), so the dial is bounded by DialTimeout whatever
// ctx allows, and it stops as soon as id links to us from its side.
func (n *Node) dial(ctx context.Context, id ID) (Conn, error) {
	events, stop := n.SubscribePeers()
	defer stop()
	dctx, cancel := context.WithTimeout(ctx, n.cfg.DialTimeout)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // ends the watcher before wg.Wait
	wg.Go(func() {
		for {
			select {
			case e := <-events:
				if e.Kind == PeerUp && e.Peer.ID == id {
					cancel()
					return
				}
			case <-dctx.Done():
				return
			}
		}
	})
	if n.link(id) != nil { // linked between Connect's check and the subscription
		return nil, errLinkedMeanwhile
	}
	return n.transport.Dial(dctx, id)
}

// errLinkedMeanwhile ends a dial whose link the other end made first.
var errLinkedMeanwhile = errors.New("mesh: linked from the other end")

// waitLink waits up to d for a link to id.
func (n *Node) waitLink(ctx context.Context, id ID, d time.Duration) bool {
	events, stop := n.SubscribePeers()
	defer stop()
	if n.link(id) != nil {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case e := <-events:
			if e.Kind == PeerUp && e.Peer.ID == id {
				return true
			}
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// Disconnect closes the link to id, if any, and any link to id still in
// its hello, which would otherwise register in the closed link's place.
func (n *Node) Disconnect(id ID) {
	n.mu.Lock()
	if s := n.slots[id]; s != nil {
		s.cut++
	}
	l := n.links[id]
	n.mu.Unlock()
	if l != nil {
		l.conn.Close()
	}
}

func (n *Node) link(id ID) *link {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.links[id]
}

// Send delivers a one-way message to the linked node to. It returns once
// the message is handed to the link, not when it is handled.
func (n *Node) Send(ctx context.Context, to ID, proto string, payload []byte, opts ...SendOption) error {
	o := sendOpts(opts)
	if err := checkProtocol(proto); err != nil {
		return fmt.Errorf("mesh: %w", err)
	}
	l := n.link(to)
	if l == nil {
		return fmt.Errorf("%w: %s", ErrNotConnected, to.Short())
	}
	return l.send(ctx, o.ch, frame{kind: kindMsg, proto: proto, payload: payload})
}

// Request sends a request to the linked node to and waits for the answer
// until ctx ends. An error the remote handler returned comes back as a
// *RemoteError. While as many of this node's requests as the peer takes
// at once await their answers, Request waits for one to end before it
// sends. ErrBusy: the peer had no room for the request all the same (it
// still serves requests whose callers gave up) and did not handle it; try
// again later.
func (n *Node) Request(ctx context.Context, to ID, proto string, payload []byte, opts ...SendOption) ([]byte, error) {
	o := sendOpts(opts)
	if err := checkProtocol(proto); err != nil {
		return nil, fmt.Errorf("mesh: %w", err)
	}
	l := n.link(to)
	if l == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotConnected, to.Short())
	}
	return l.call(ctx, o.ch, proto, payload)
}

func sendOpts(opts []SendOption) sendOptions {
	var o sendOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Peers lists the live links, sorted by ID.
func (n *Node) Peers() []PeerInfo {
	n.mu.Lock()
	ps := make([]PeerInfo, 0, len(n.links))
	for _, l := range n.links {
		ps = append(ps, l.info())
	}
	n.mu.Unlock()
	slices.SortFunc(ps, func(a, b PeerInfo) int { return strings.Compare(string(a.ID), string(b.ID)) })
	return ps
}

// SubscribePeers returns a channel of link changes and a function that
// ends the subscription. Events are dropped when the channel's buffer is
// full, so a reader that needs the whole set should re-read Peers. The
// channel is never closed.
func (n *Node) SubscribePeers() (<-chan PeerEvent, func()) {
	s := n.peerEvents.Subscribe(peerEventBuffer)
	return s.C(), s.Close
}

// peerEventBuffer is how many link changes a subscriber may fall behind
// before it misses some.
const peerEventBuffer = 64

// runLink runs one link from hello to close.
func (n *Node) runLink(ctx context.Context, nc newConn) {
	c := nc.conn
	ready := func(err error) {
		if nc.ready != nil {
			nc.ready <- err
		}
	}
	if c.Remote() == n.id {
		c.Close()
		ready(errors.New("mesh: link to self"))
		return
	}
	if n.banned(c.Remote()) {
		n.log.Debug("link from a banned peer refused", "peer", c.Remote().Short())
		c.Close()
		ready(fmt.Errorf("mesh: %s is banned for its offences", c.Remote().Short()))
		return
	}
	// Every link holds a slot from before its hello to its end, whichever
	// end dialed: the node says hello only on links it has room to keep,
	// so that a peer never counts a link this node then drops.
	tempOnly, cut, ok := n.reserve(c.Remote())
	if ok && tempOnly && c.Outbound() && !nc.temp {
		n.release(c.Remote()) // beyond HighPeers, and not a temporary link
		ok = false
	}
	if !ok && c.Outbound() {
		n.log.Debug("outbound link dropped: at the high mark", "peer", c.Remote().Short())
		c.Close()
		ready(errFull)
		return
	}
	if !ok {
		n.log.Debug("inbound link refused: at the high mark", "peer", c.Remote().Short())
		// Say why, so the dialer does not wait for a link to come.
		// The dialer closes the link when it has read this; close it
		// here too after a moment, in case it does not.
		b, _ := json.Marshal(hello{Name: n.cfg.Name, Version: helloVersion, Full: true})
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		c.Send(sctx, Ctl, appendFrame(nil, frame{kind: kindHello, payload: b}))
		cancel()
		time.AfterFunc(time.Second, func() { c.Close() })
		ready(errFull)
		return
	}
	held := true
	release := func() {
		if held {
			held = false
			n.release(c.Remote())
		}
	}
	defer release()
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l := newLink(n, c)
	l.cut = cut
	c.Start(func(ch Channel, b []byte) { l.recv(lctx, ch, b) })
	l.wg.Go(func() { l.dispatch(lctx) })
	l.wg.Go(func() { l.keepalive(lctx) })
	l.wg.Go(func() { l.answerBusy(lctx) })
	defer func() {
		c.Close()
		cancel()
		l.mu.Lock()
		l.stopped = true // frames the Conn still delivers start no handler
		l.mu.Unlock()
		l.wg.Wait()
		n.budget.close(&l.acct)
	}()

	if nc.temp {
		// In use from the start: dropIdle must not take it before the
		// transfer it is made for has begun.
		l.lastActive.Store(n.now())
		l.temporary.Store(true)
	}
	if err := l.exchangeHello(lctx, tempOnly && !c.Outbound()); err != nil {
		// At once, before the dialer hears of the refusal: the link is
		// done with, whenever it closes.
		release()
		if errors.Is(err, errTempOnly) {
			// Say why, as at the high mark, and give the dialer a moment
			// to read it and close, so that it does not wait for a link
			// to come.
			l.sendHello(lctx, true)
			l.awaitClose(lctx, time.Second)
		}
		level := slog.LevelInfo
		if errors.Is(err, errVersion) {
			level = slog.LevelWarn // one of the two nodes needs an upgrade
		}
		n.log.Log(lctx, level, "link failed before hello", "peer", c.Remote().Short(), "err", err)
		ready(err)
		return
	}
	err := n.register(l)
	if err != nil {
		release() // the peer's other link holds its slot, if any
		n.log.Debug("link not kept", "peer", c.Remote().Short(), "err", err)
		if !errors.Is(err, errDuplicate) {
			ready(err)
			return
		}
		// Losing a simultaneous-dial race still leaves the nodes linked.
		ready(nil)
		// The peer may have kept this link for a moment and sent on it:
		// receive for a grace period before closing.
		l.drain(ctx)
		return
	}
	ready(nil)
	n.log.Info("peer up", "peer", l.remote.Short(), "name", l.info().Name, "outbound", c.Outbound())
	l.ping(lctx)
	l.wg.Go(func() { n.dir.sendSnapshot(lctx, l.remote) })
	select {
	case <-c.Done():
	case <-ctx.Done():
	case <-l.retired:
		l.drain(ctx)
	}
	n.unregister(l)
	release()
	if n.link(l.remote) == nil {
		n.bridges.linkDown(l.remote)
	}
	n.signalsUnsent(l)
}

// duplicateGrace is how long a link that lost a simultaneous-dial race
// keeps receiving what the peer sent on it before it switched.
const duplicateGrace = 2 * time.Second

var errDisconnected = errors.New("mesh: disconnected while the link was in its hello")

var errDuplicate = errors.New("duplicate link: keeping the one dialed by the smaller id")

// drain keeps receiving on a link nobody sends on any more, then closes it.
func (l *link) drain(ctx context.Context) {
	t := time.NewTimer(duplicateGrace)
	defer t.Stop()
	select {
	case <-t.C:
	case <-l.done:
	case <-ctx.Done():
	}
	l.conn.Close()
}

// slot is a peer's link slot, shared by its links: two at a time when
// both nodes dial at once or the peer replaces a link it lost.
type slot struct {
	refs int // links of the peer that hold it
	// tempOnly: taken beyond HighPeers, for a temporary link only.
	tempOnly bool
	// cut counts Disconnects of the peer: a link reserved before one is
	// not registered after it.
	cut int
}

// reserve takes a link slot for a link to id, from before its hello to
// its end: beyond HighPeers the slot is for a temporary link only
// (tempOnly), and beyond HighPeers + MaxTemporary there is none. A peer
// that holds a slot already shares it. Counting slots rather than
// registered links means links in their hello count too, so that the
// node never holds more than its limits, however many links come up at
// once in either direction.
func (n *Node) reserve(id ID) (tempOnly bool, cut int, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s := n.slots[id]; s != nil {
		s.refs++
		return s.tempOnly, s.cut, true
	}
	if used := len(n.slots); used >= n.cfg.HighPeers {
		if used >= n.cfg.HighPeers+max(n.cfg.MaxTemporary, 0) {
			return false, 0, false
		}
		tempOnly = true
	}
	n.slots[id] = &slot{refs: 1, tempOnly: tempOnly}
	return tempOnly, 0, true
}

// release gives up one link's hold on id's slot.
func (n *Node) release(id ID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.slots[id]
	if s == nil {
		return
	}
	if s.refs--; s.refs <= 0 {
		delete(n.slots, id)
	}
}

// dialer is the node that started a link.
func (l *link) dialer() ID {
	if l.conn.Outbound() {
		return l.n.id
	}
	return l.remote
}

// register makes l the link to its peer. When both nodes dialed at once,
// the link dialed by the smaller ID wins on both ends.
func (n *Node) register(l *link) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s := n.slots[l.remote]; s != nil && s.cut != l.cut {
		return errDisconnected
	}
	old := n.links[l.remote]
	if old != nil {
		select {
		case <-old.done:
			// Dead, its runLink has yet to unregister it (and then finds
			// it replaced): its share goes with its place.
			n.budget.setOwn(&old.acct, false)
			old = nil
		default:
		}
	}
	if old != nil {
		od, nd := old.dialer(), l.dialer()
		if od != nd && od < nd {
			return errDuplicate
		}
		// Either the new link wins the race, or the same node dialed
		// again, which means it lost the old link.
		n.log.Debug("replacing link", "peer", l.remote.Short(), "old_dialer", od.Short(), "new_dialer", nd.Short())
		old.retire()
		n.budget.setOwn(&old.acct, false)
	}
	// No check of the link count: l holds a slot (reserve).
	n.links[l.remote] = l
	n.budget.setOwn(&l.acct, true)
	n.backoff.clear(l.remote)
	if old == nil {
		n.peerEvents.Publish(PeerEvent{Kind: PeerUp, Peer: l.info()})
		n.bc.peerUp(l.remote)
		n.dir.markDirty()
	}
	return nil
}

func (n *Node) unregister(l *link) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.links[l.remote] != l {
		return // replaced by a newer link
	}
	delete(n.links, l.remote)
	n.budget.setOwn(&l.acct, false)
	n.peerEvents.Publish(PeerEvent{Kind: PeerDown, Peer: l.info()})
	n.bc.peerDown(l.remote)
	n.dir.markDirty()
	n.log.Info("peer down", "peer", l.remote.Short())
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// maintain keeps the node at its target link count.
func (n *Node) maintain(ctx context.Context) {
	t := time.NewTicker(n.cfg.MaintainInterval)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		n.mu.Lock()
		now := time.Now()
		n.backoff.sweep(now)
		n.bans.sweep(now)
		n.mu.Unlock()
		n.fill(ctx, &wg)
		n.dropIdle()
		// Shed links above the target to peers that have more than
		// theirs, so that nodes that started together leave room for
		// the ones that came later.
		n.trim(ctx, n.cfg.TargetPeers)
		select {
		case <-t.C:
		case <-n.wake:
		case <-ctx.Done():
			return
		}
	}
}

// fill dials random candidates until links plus dials reach the target.
func (n *Node) fill(ctx context.Context, wg *sync.WaitGroup) {
	n.mu.Lock()
	need := n.cfg.TargetPeers - len(n.links) - len(n.dialing)
	n.mu.Unlock()
	if need <= 0 {
		return
	}
	cands := n.candidates()

	now := time.Now()
	n.mu.Lock()
	var picks []ID
	for _, id := range cands {
		if need == 0 {
			break
		}
		if id == n.id || n.links[id] != nil || n.dialing[id] != nil || slices.Contains(picks, id) {
			continue
		}
		if _, ok := n.backoff.blocked(id, now); ok {
			continue
		}
		if _, ok := n.bans.blocked(id, now); ok {
			continue
		}
		picks = append(picks, id)
		need--
	}
	calls := make([]*dialCall, len(picks))
	for i, id := range picks {
		calls[i] = &dialCall{done: make(chan struct{})}
		n.dialing[id] = calls[i]
	}
	n.mu.Unlock()

	for i, id := range picks {
		wg.Go(func() {
			dctx, cancel := context.WithTimeout(ctx, n.cfg.DialTimeout)
			err := n.runDial(dctx, id, calls[i], false, func(err error) {
				if err != nil && ctx.Err() == nil {
					n.backoff.add(id, time.Now(), n.cfg.MaintainInterval, max(n.cfg.MaintainInterval, time.Minute))
				}
			})
			cancel()
			switch {
			case err == nil || ctx.Err() != nil:
			case errors.Is(err, ErrSignalLost):
				// A node on the way lost the offer and said so: the slot
				// is free now, so fill it with another candidate at once
				// (id is backed off) rather than at the next tick.
				n.log.Info("dial failed", "peer", id.Short(), "err", err)
				select {
				case n.wake <- struct{}{}:
				default:
				}
			case errors.Is(err, signal.ErrNotConnected):
				// Between sockets to the rendezvous (a dial waits for the
				// node's first registration, up to DialTimeout, not for
				// later ones): the dial is retried, nothing is wrong.
				n.log.Debug("dial failed", "peer", id.Short(), "err", err)
			default:
				n.log.Info("dial failed", "peer", id.Short(), "err", err)
			}
		})
	}
}
