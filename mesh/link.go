package mesh

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
)

// maxNameLen bounds the name a peer announces, in runes.
const maxNameLen = 64

// hello is the first frame each end sends on a new link.
type hello struct {
	Name    string `json:"name"`
	Version int    `json:"v"`
	// Full: the sender is at its high mark and closes the link.
	Full bool `json:"full,omitempty"`
	// Temp: the dialer makes a temporary link (Node.Expand), which the
	// other end may take beyond its HighPeers and drops when idle.
	Temp bool `json:"temp,omitempty"`
	// Room: how many requests of the link the sender takes at once,
	// served and waiting (Config.MaxConcurrentRequests + RequestQueue);
	// it answers more busy. The other end keeps its calls within it.
	Room int `json:"room,omitempty"`
}

// maxRoom bounds the room a peer announces: calls beyond it wait here.
const maxRoom = 4096

// errPeerFull is returned when the dialed node is at its high mark.
var errPeerFull = errors.New("mesh: peer at its high mark")

// errFull is returned when this node has no slot for a link (reserve).
var errFull = errors.New("mesh: at the high mark")

// helloVersion is the version of the link protocol (framing, hello and the
// mesh's own protocols) this node speaks. Nodes of different versions do
// not link: neither could read the other reliably.
//
// 2: the busy answer (kindBusy), which a node of version 1 takes for a bad
// frame.
const helloVersion = 2

// errVersion is returned when the peer speaks another link protocol version.
var errVersion = errors.New("mesh: peer speaks another link protocol version")

type result struct {
	payload []byte
	err     error
}

// link is the node's state for one Conn.
type link struct {
	n      *Node
	conn   Conn
	remote ID
	since  time.Time
	cut    int // the slot's Disconnect count when this link reserved it

	name      atomic.Pointer[string]
	lastRecv  atomic.Int64 // nanoseconds since n.start
	rtt       atomic.Int64 // smoothed, nanoseconds; 0 until measured
	nextReqID atomic.Uint64
	bad       atomic.Int32
	// For scoring: frames that failed or offended, bytes received, and
	// when the last message or request came (pings aside).
	failures   atomic.Int32
	bytesIn    atomic.Int64
	bytesOut   atomic.Int64
	lastActive atomic.Int64
	// temporary links are dropped again when idle (Node.Expand).
	temporary atomic.Bool
	// trimRefused is when the peer first said no to a trim of this link
	// in its current run of noes, trimRefusedLast its latest no (Unix ns),
	// 0 if it has not (see Node.trim).
	trimRefused, trimRefusedLast atomic.Int64

	hello chan hello    // first hello from the peer
	pongs chan []byte   // pings to answer; answered by the pinger
	msgs  chan *Message // one-way messages, handled in order by dispatch
	sys   chan *Message // the same for the mesh's own protocols
	// queued and sysQueued count the payload bytes in msgs and sys, each
	// bounded on its own, so that a slow service's backlog never takes
	// the room of the mesh's own messages; dropped, the messages that
	// found their queue full (see Config.MessageQueue).
	queued    atomic.Int64
	sysQueued atomic.Int64
	dropped   atomic.Int64
	// calls holds a token for each of this node's requests on the link
	// that awaits its answer, up to the peer's room (hello.Room): a caller
	// beyond it waits here, where it holds back nothing else, rather than
	// be answered busy. Set by exchangeHello, before the link is found by
	// Node.link; nil until then.
	calls chan struct{}
	// meshCalls is calls for the mesh's own requests (meshProto), which
	// the peer serves beside its services' (meshRequests): waiting there,
	// they never wait for this node's service calls to end.
	meshCalls chan struct{}
	// busy holds the ids of requests to answer busy, for answerBusy: the
	// reader never sends (a send waits while the peer is slow to read).
	busy chan uint64
	done <-chan struct{} // conn.Done()
	// retired is closed when a newer link to the same peer replaced this one.
	retired    chan struct{}
	retireOnce sync.Once
	wg         sync.WaitGroup // goroutines of this link
	mu         sync.Mutex     // guards pend, stopped and the requests below
	pend       map[uint64]chan result
	// stopped: runLink is waiting for wg, so recv adds nothing to it.
	stopped bool
	// serving counts the goroutines that serve the peer's requests (at
	// most MaxConcurrentRequests); waiting are the requests that wait for
	// one, oldest first, and waitingBytes their payload bytes.
	serving      int
	waiting      []waitingReq
	waitingBytes int64
	// acct is the link's part of the node's queue budget (queueBudget):
	// the bytes of its queued messages and of its requests waiting or in a
	// handler.
	acct account
	// meshServing counts the mesh's own requests of the peer in a
	// handler, at most meshRequests; meshAnswering those whose answer is
	// being sent, at most meshAnswers.
	meshServing, meshAnswering int
	// answering counts the goroutines that send an answer after they gave
	// up their slot (at most MaxConcurrentRequests): a peer that reads
	// slowly or not at all holds them, so they bound its answers in
	// memory too.
	answering int
}

// waitingReq is a request that waits for a handler slot.
type waitingReq struct {
	id uint64
	m  *Message
}

// maxWaitingBytes bounds the payload bytes of one link's requests that
// wait for a handler slot.
const maxWaitingBytes = 8 << 20

// meshRequests bounds the mesh's own requests (bridge opens) of one link
// served at once, each from its handler to its answer sent; more are
// answered busy. They have slots of their own beside the services'
// (MaxConcurrentRequests and RequestQueue), so that a peer's service
// load, or this node's slow services, never make the mesh answer busy;
// few, as they are quick and rare, and a peer that holds them holds only
// its own.
const meshRequests = 4

// meshAnswers bounds the goroutines of one link that send answers to the
// mesh's own requests, so that a peer that does not read them holds few.
// It is well above meshRequests: the peer may have an answer, and send
// its next request, before the goroutine that sent it has counted itself
// out, and that request must find room (see meshRequest).
const meshAnswers = 4 * meshRequests

// busyBacklog bounds the busy answers a link has yet to send. A peer that
// has this many unanswered beyond the queue does not wait for answers
// before it asks again: its further requests go unanswered.
const busyBacklog = 256

func newLink(n *Node, c Conn) *link {
	l := &link{
		n:       n,
		conn:    c,
		remote:  c.Remote(),
		since:   time.Now(),
		hello:   make(chan hello, 1),
		pongs:   make(chan []byte, 1),
		msgs:    make(chan *Message, n.cfg.MessageQueue),
		sys:     make(chan *Message, n.cfg.MessageQueue),
		busy:    make(chan uint64, busyBacklog),
		done:    c.Done(),
		retired: make(chan struct{}),
		pend:    make(map[uint64]chan result),
	}
	// Kept within the peer's slots for the mesh's requests from the
	// start: they do not depend on its hello.
	l.meshCalls = make(chan struct{}, meshRequests)
	empty := ""
	l.name.Store(&empty)
	l.lastRecv.Store(n.now())
	l.lastActive.Store(math.MinInt64 / 2) // never used yet
	return l
}

func (l *link) retire() { l.retireOnce.Do(func() { close(l.retired) }) }

func (l *link) info() PeerInfo {
	route := routeOf(l.conn)
	return PeerInfo{
		Route:     route,
		Relayed:   route != RouteDirect,
		BytesIn:   l.bytesIn.Load(),
		BytesOut:  l.bytesOut.Load(),
		ID:        l.remote,
		Name:      *l.name.Load(),
		RTT:       time.Duration(l.rtt.Load()),
		Outbound:  l.conn.Outbound(),
		Since:     l.since,
		Failures:  int(l.failures.Load()),
		Dropped:   int(l.dropped.Load()),
		Temporary: l.temporary.Load(),
	}
}

// send encodes and writes one frame.
func (l *link) send(ctx context.Context, ch Channel, f frame) error {
	if (f.kind == kindMsg || f.kind == kindReq) && !internalProto(f.proto) {
		l.lastActive.Store(l.n.now()) // use in either direction keeps a temporary link
	}
	buf := appendFrame(make([]byte, 0, maxFrameHeader+len(f.payload)), f)
	if len(buf) > maxFrame(ch) {
		return fmt.Errorf("%w: %d bytes on %s", ErrTooLarge, len(f.payload), ch)
	}
	if err := l.conn.Send(ctx, ch, buf); err != nil {
		select {
		case <-l.done:
			return fmt.Errorf("%w: %s: %v", ErrLinkClosed, l.remote.Short(), err)
		default:
			return err
		}
	}
	l.bytesOut.Add(int64(len(buf)))
	return nil
}

// recv handles one frame from the Conn: it runs on the Conn's goroutine for
// ch and may block, which holds back the peer. ctx is the link's lifetime,
// handed to the request handlers it starts; runLink passes it in the
// Conn's receive callback.
func (l *link) recv(ctx context.Context, ch Channel, b []byte) {
	now := l.n.now()
	l.lastRecv.Store(now)
	l.bytesIn.Add(int64(len(b)))
	f, err := parseFrame(b, maxFrame(ch))
	if err != nil {
		l.violation(err)
		return
	}
	if (f.kind == kindMsg || f.kind == kindReq) && f.proto == bcastProto && !l.n.bc.arrive(l.remote) {
		return // over the sender's broadcast rate: dropped and scored down
	}
	switch f.kind {
	case kindHello:
		var h hello
		if err := json.Unmarshal(f.payload, &h); err != nil {
			l.violation(fmt.Errorf("bad hello: %w", err))
			return
		}
		select {
		case l.hello <- h:
		default: // only the first counts
		}
	case kindPing:
		if len(f.payload) > 16 {
			l.violation(errors.New("oversized ping"))
			return
		}
		select {
		case l.pongs <- f.payload:
		default: // a pong is already due; one answer is enough
		}
	case kindPong:
		if len(f.payload) == 8 {
			sent := int64(binary.BigEndian.Uint64(f.payload))
			if d := l.n.now() - sent; d >= 0 {
				l.observeRTT(time.Duration(d))
			}
		}
	case kindMsg:
		if f.proto == bridgeProto {
			// Passed on or delivered here, in order, never queued.
			l.n.bridges.onData(ctx, l, ch, f.payload)
			return
		}
		if !internalProto(f.proto) {
			l.lastActive.Store(now)
		}
		l.enqueue(&Message{From: l.remote, Protocol: f.proto, Payload: f.payload, Channel: ch})
	case kindReq:
		l.lastActive.Store(now)
		l.request(ctx, f.id, &Message{From: l.remote, Protocol: f.proto, Payload: f.payload, Channel: ch, Request: true})
	case kindResp, kindErr, kindNoHandle, kindBusy:
		l.mu.Lock()
		c := l.pend[f.id]
		delete(l.pend, f.id)
		l.mu.Unlock()
		if c == nil {
			return // the caller gave up
		}
		switch f.kind {
		case kindResp:
			c <- result{payload: f.payload}
		case kindErr:
			c <- result{err: &RemoteError{Peer: l.remote, Msg: string(f.payload)}}
		case kindBusy:
			c <- result{err: fmt.Errorf("%w: %s", ErrBusy, l.remote.Short())}
		default:
			c <- result{err: fmt.Errorf("%w: %s", ErrNoHandler, string(f.payload))}
		}
	}
}

// request starts a handler for the peer's request, or queues it when
// MaxConcurrentRequests are running (or as many answers wait to be sent),
// or has it answered busy when the queue is full too, or the node's
// queue budget has no room for it. It never waits: it runs on the link's
// reader, and the frames behind the request (answers to this node's own
// requests, one-way messages, pings) must not wait for the peer's
// requests to be served.
//
// The queue holds RequestQueue requests and one more for each answer
// being sent after its slot was given up: the peer may already have that
// answer and sent its next request, within its room.
func (l *link) request(ctx context.Context, id uint64, m *Message) {
	if meshProto(m.Protocol) {
		l.meshRequest(ctx, id, m)
		return
	}
	size := int64(len(m.Payload))
	l.mu.Lock()
	if l.stopped {
		// A Conn may deliver after the link shut down (its goroutine
		// races with Close): once runLink waits for the link's
		// goroutines, start none.
		l.mu.Unlock()
		return
	}
	serve := l.serving < l.n.cfg.MaxConcurrentRequests && l.answering < l.n.cfg.MaxConcurrentRequests
	queue := !serve && len(l.waiting) < l.n.cfg.RequestQueue+l.answering && l.waitingBytes+size <= maxWaitingBytes
	if (serve || queue) && !l.n.budget.take(&l.acct, queuedCost(m)) {
		// The node holds all it may for its peers: busy, as when the
		// link's own queue is full.
		serve, queue = false, false
	}
	switch {
	case serve:
		l.serving++
		l.wg.Add(1)
		l.mu.Unlock()
		go l.serveRequests(ctx, id, m)
	case queue:
		l.waiting = append(l.waiting, waitingReq{id: id, m: m})
		l.waitingBytes += size
		l.mu.Unlock()
	default:
		l.mu.Unlock()
		l.refuse(id, m)
	}
}

// refuse has the request answered busy, unhandled, by answerBusy.
func (l *link) refuse(id uint64, m *Message) {
	select {
	case l.busy <- id:
	default:
		l.n.log.Debug("request unanswered: busy answers back up", "peer", l.remote.Short(), "proto", m.Protocol)
	}
}

// meshRequest serves a request of the mesh's own protocols in one of the
// link's meshRequests slots, counted in the link's reserve of the queue
// budget (takeMesh), or has it answered busy when none is free; like
// request it never waits. The slot is given up before the answer is
// sent, as in serveRequests: the peer, which keeps its mesh calls within
// meshRequests (meshCalls), sends its next one as soon as it has the
// answer, and that must find the slot free. While it sends, the
// goroutine counts in meshAnswering, so that a peer that does not read
// answers holds at most meshAnswers of them.
func (l *link) meshRequest(ctx context.Context, id uint64, m *Message) {
	cost := queuedCost(m)
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return
	}
	ok := l.meshServing < meshRequests && l.meshAnswering < meshAnswers && l.n.budget.takeMesh(&l.acct, cost)
	if ok {
		l.meshServing++
		l.wg.Add(1)
	}
	l.mu.Unlock()
	if !ok {
		l.refuse(id, m)
		return
	}
	go func() {
		defer l.wg.Done()
		ch, answer := m.Channel, l.answer(ctx, id, m)
		l.n.budget.giveMesh(&l.acct, cost)
		l.mu.Lock()
		l.meshServing--
		l.meshAnswering++
		l.mu.Unlock()
		if err := l.send(ctx, ch, answer); err != nil {
			l.n.log.Debug("send answer", "peer", l.remote.Short(), "err", err)
		}
		l.mu.Lock()
		l.meshAnswering--
		l.mu.Unlock()
	}()
}

// serveRequests serves a request, then those that wait, until none does;
// it holds one of the link's handler slots. The slot (or the place in the
// queue) is given up before the answer is sent: the peer, which keeps its
// calls within the room, sends its next request as soon as it has the
// answer, and that must find the room free. While it sends, the goroutine
// counts in answering, which bounds the answers a peer that does not read
// them can make this node hold; once sent, it serves a request that waits
// if a slot is free.
func (l *link) serveRequests(ctx context.Context, id uint64, m *Message) {
	defer l.wg.Done()
	for {
		// The cost is taken before the handler runs: it owns m and may
		// reslice its payload, and the budget must get back what it lent.
		cost := queuedCost(m)
		ch, answer := m.Channel, l.answer(ctx, id, m)
		l.n.budget.give(&l.acct, cost)
		l.mu.Lock()
		more := l.nextWaiting(ctx, &id, &m)
		if !more {
			l.serving--
			l.answering++
		}
		l.mu.Unlock()
		if err := l.send(ctx, ch, answer); err != nil {
			l.n.log.Debug("send answer", "peer", l.remote.Short(), "err", err)
		}
		if more {
			continue
		}
		l.mu.Lock()
		l.answering--
		more = l.serving < l.n.cfg.MaxConcurrentRequests && l.nextWaiting(ctx, &id, &m)
		if more {
			l.serving++
		}
		l.mu.Unlock()
		if !more {
			return
		}
	}
}

// nextWaiting takes the oldest request that waits into id and m, if any;
// once the link is down (ctx), the ones that wait go unserved. l.mu is held.
func (l *link) nextWaiting(ctx context.Context, id *uint64, m **Message) bool {
	if len(l.waiting) == 0 || ctx.Err() != nil {
		for _, w := range l.waiting {
			l.n.budget.give(&l.acct, queuedCost(w.m))
		}
		l.waiting, l.waitingBytes = nil, 0
		return false
	}
	w := l.waiting[0]
	l.waiting[0] = waitingReq{}
	l.waiting = l.waiting[1:]
	l.waitingBytes -= int64(len(w.m.Payload))
	*id, *m = w.id, w.m
	return true
}

// answerBusy sends the busy answers that request asks for, until the link
// closes.
func (l *link) answerBusy(ctx context.Context) {
	for {
		select {
		case id := <-l.busy:
			// On Ctl whatever channel the request came on: the answer is
			// matched by id, and Bulk may be full of the answers that
			// keep this node busy.
			if err := l.send(ctx, Ctl, frame{kind: kindBusy, id: id}); err != nil {
				l.n.log.Debug("send busy answer", "peer", l.remote.Short(), "err", err)
			}
		case <-l.done:
			return
		}
	}
}

// maxQueuedBytes bounds the payload bytes of one link's queued one-way
// messages, in each of its two queues (16 MiB a link in all); the node's
// queue budget bounds them across links.
const maxQueuedBytes = 8 << 20

// enqueue hands a one-way message to dispatch without waiting, so that a
// slow handler never holds back the frames behind it (answers to this
// node's requests, the peer's requests). When the queue is full the
// message is dropped, as a frame lost with a link would be, and counted;
// so is a message the node's queue budget has no room for.
func (l *link) enqueue(m *Message) {
	size := int64(len(m.Payload))
	q, queued := l.msgs, &l.queued
	if internalProto(m.Protocol) {
		q, queued = l.sys, &l.sysQueued
	}
	if queued.Add(size) <= maxQueuedBytes && l.take(m) {
		select {
		case q <- m:
			return
		default:
			l.give(m)
		}
	}
	queued.Add(-size)
	select {
	case <-l.done:
		// The Conn delivers what it read before its Close, and the link
		// is gone (its budget closed, its queues never served again): the
		// message is lost with the link, not to a handler that falls behind.
		return
	default:
	}
	if d := l.dropped.Add(1); d&(d-1) == 0 { // the 1st, 2nd, 4th, 8th...
		l.n.log.Warn("one-way messages dropped: handlers fall behind", "peer", l.remote.Short(), "proto", m.Protocol, "dropped", d)
	}
}

// internalProto reports whether proto is the mesh's own traffic, which
// does not count as use of a temporary link.
func internalProto(proto string) bool { return strings.HasPrefix(proto, "mesh/") }

// meshProto reports whether proto is one of the protocols the mesh itself
// serves, whose messages and requests have the link's reserve of the
// queue budget and, for requests, slots of their own (meshRequests).
// Only these: a service's protocol named mesh/... has neither.
func meshProto(proto string) bool {
	switch proto {
	case bcastProto, dirProto, sigProto, bridgeProto, trimProto:
		return true
	}
	return false
}

// take counts a queued one-way message in the link's part of the queue
// budget, the mesh's own in its reserve first; give gives it back.
func (l *link) take(m *Message) bool {
	if meshProto(m.Protocol) {
		return l.n.budget.takeMesh(&l.acct, queuedCost(m))
	}
	return l.n.budget.take(&l.acct, queuedCost(m))
}

func (l *link) give(m *Message) {
	if meshProto(m.Protocol) {
		l.n.budget.giveMesh(&l.acct, queuedCost(m))
		return
	}
	l.n.budget.give(&l.acct, queuedCost(m))
}

// violation counts a malformed frame as an offence of the peer.
func (l *link) violation(err error) {
	n := l.bad.Add(1)
	l.n.log.Warn("bad frame from peer", "peer", l.remote.Short(), "err", err, "count", n)
	l.offend("bad frame: " + err.Error())
}

func (l *link) observeRTT(d time.Duration) {
	old := l.rtt.Load()
	if old == 0 {
		l.rtt.Store(int64(d))
		return
	}
	l.rtt.Store((old*4 + int64(d)) / 5)
}

// answer runs the handler of the peer's request and returns the frame
// that answers it.
func (l *link) answer(ctx context.Context, id uint64, m *Message) frame {
	h := l.n.handler(m.Protocol)
	if h == nil {
		return frame{kind: kindNoHandle, id: id, payload: []byte(m.Protocol)}
	}
	resp, err := safeServe(ctx, h, m)
	if err == nil && len(resp) > MaxPayload(m.Channel) {
		err = fmt.Errorf("answer of %d bytes is too large", len(resp))
	}
	if err != nil {
		return frame{kind: kindErr, id: id, payload: []byte(err.Error())}
	}
	return frame{kind: kindResp, id: id, payload: resp}
}

// safeServe runs a handler, turning a panic into an error so one bad
// message cannot take the node down.
func safeServe(ctx context.Context, h Handler, m *Message) (resp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler for %s panicked: %v", m.Protocol, r)
		}
	}()
	return h.ServeMesh(ctx, m)
}

// dispatch handles one-way messages in order until the link closes: the
// mesh's own on one goroutine, the services' on another, so that a slow
// service handler never holds back the mesh's gossip and directory.
func (l *link) dispatch(ctx context.Context) {
	l.wg.Go(func() { l.serveQueue(ctx, l.sys, &l.sysQueued) })
	l.serveQueue(ctx, l.msgs, &l.queued)
}

func (l *link) serveQueue(ctx context.Context, q chan *Message, queued *atomic.Int64) {
	for {
		select {
		case m := <-q:
			queued.Add(-int64(len(m.Payload)))
			l.give(m)
			h := l.n.handler(m.Protocol)
			if h == nil {
				l.n.log.Debug("message for unknown protocol", "peer", l.remote.Short(), "proto", m.Protocol)
				continue
			}
			if _, err := safeServe(ctx, h, m); err != nil {
				l.n.log.Debug("message handler", "peer", l.remote.Short(), "proto", m.Protocol, "err", err)
			}
		case <-l.done:
			return
		}
	}
}

// keepalive pings the peer, answers its pings, and closes the link when
// the peer has been silent past the timeout.
func (l *link) keepalive(ctx context.Context) {
	cfg := &l.n.cfg
	tick := time.NewTicker(min(cfg.PingInterval, cfg.PeerTimeout/4))
	defer tick.Stop()
	lastPing := time.Time{}
	for {
		select {
		case p := <-l.pongs:
			l.send(ctx, Ctl, frame{kind: kindPong, payload: p})
		case <-tick.C:
			silent := time.Duration(l.n.now() - l.lastRecv.Load())
			if silent > cfg.PeerTimeout {
				l.n.log.Info("peer timed out", "peer", l.remote.Short(), "silent", silent.Round(time.Millisecond))
				l.conn.Close()
				return
			}
			if time.Since(lastPing) >= cfg.PingInterval {
				lastPing = time.Now()
				l.ping(ctx)
			}
		case <-l.done:
			return
		}
	}
}

func (l *link) ping(ctx context.Context) {
	var p [8]byte
	binary.BigEndian.PutUint64(p[:], uint64(l.n.now()))
	l.send(ctx, Ctl, frame{kind: kindPing, payload: p[:]})
}

// exchangeHello sends our hello and waits for the peer's.
//
// tempOnly: an inbound link that has only a temporary slot (beyond
// HighPeers). Its hello waits for the dialer's: when the dialer does not
// ask for a temporary link, exchangeHello returns errTempOnly, and the
// caller gives up the slot and tells the dialer the node is full.
func (l *link) exchangeHello(ctx context.Context, tempOnly bool) error {
	send := func(full bool) error { return l.sendHello(ctx, full) }
	if !tempOnly {
		if err := send(false); err != nil {
			return err
		}
	}
	t := time.NewTimer(l.n.cfg.HelloTimeout)
	defer t.Stop()
	select {
	case h := <-l.hello:
		if h.Version != helloVersion {
			if tempOnly {
				send(false) // so the peer logs the version, not a timeout
			}
			return fmt.Errorf("%w: it speaks %d, this node %d", errVersion, h.Version, helloVersion)
		}
		if h.Full {
			return errPeerFull
		}
		if !l.conn.Outbound() && h.Temp {
			l.temporary.Store(true)
			l.lastActive.Store(l.n.now())
		}
		if tempOnly {
			if !h.Temp {
				// runLink says why once it has given up the slot.
				return errTempOnly
			}
			if err := send(false); err != nil {
				return err
			}
		}
		name := cleanName(h.Name)
		l.name.Store(&name)
		room := h.Room
		if room <= 0 { // not said: as this node's own
			room = l.n.cfg.MaxConcurrentRequests + l.n.cfg.RequestQueue
		}
		l.calls = make(chan struct{}, min(room, maxRoom))
		return nil
	case <-t.C:
		return errors.New("no hello from peer")
	case <-l.done:
		return ErrLinkClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sendHello sends this node's hello; full says it refuses the link.
func (l *link) sendHello(ctx context.Context, full bool) error {
	room := l.n.cfg.MaxConcurrentRequests + l.n.cfg.RequestQueue
	b, _ := json.Marshal(hello{Name: l.n.cfg.Name, Version: helloVersion, Full: full, Temp: l.temporary.Load(), Room: room})
	return l.send(ctx, Ctl, frame{kind: kindHello, payload: b})
}

// errTempOnly refuses an ordinary link that only a temporary slot was
// left for; the dialer has yet to be told (with a full hello).
var errTempOnly = errors.New("mesh: at the high mark (a temporary link would be taken)")

// awaitClose waits up to d for the link to close.
func (l *link) awaitClose(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-l.done:
	case <-t.C:
	case <-ctx.Done():
	}
}

// cleanName keeps a peer's name printable and short.
func cleanName(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > maxNameLen {
		s = string(r[:maxNameLen])
	}
	return s
}

// call sends a request and waits for its answer. While the peer's room is
// taken by this node's calls, it first waits for one of them to end: the
// room for the services' calls, or the mesh's own (meshCalls).
func (l *link) call(ctx context.Context, ch Channel, proto string, payload []byte) ([]byte, error) {
	calls := l.calls
	if meshProto(proto) {
		calls = l.meshCalls
	}
	if calls != nil {
		select {
		case calls <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-l.done:
			return nil, fmt.Errorf("%w: %s", ErrLinkClosed, l.remote.Short())
		}
		defer func() { <-calls }()
	}
	id := l.nextReqID.Add(1)
	c := make(chan result, 1)
	l.mu.Lock()
	l.pend[id] = c
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.pend, id)
		l.mu.Unlock()
	}()
	if err := l.send(ctx, ch, frame{kind: kindReq, id: id, proto: proto, payload: payload}); err != nil {
		return nil, err
	}
	select {
	case r := <-c:
		return r.payload, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.done:
		// An answer may have raced the close.
		select {
		case r := <-c:
			return r.payload, r.err
		default:
		}
		return nil, fmt.Errorf("%w: %s", ErrLinkClosed, l.remote.Short())
	}
}
