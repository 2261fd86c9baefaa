package calls

import (
	"container/list"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/catnest/catnest/mesh"
)

// Routing: a call message to a node this one has no link to travels
// along a path of existing links, found in the directory's neighbour
// lists, rather than on a new link, so that an owner with many members
// never runs into its link limit. Every hop passes it on as a one-way
// message and forgets it: no hop holds a request slot while the
// destination works, so a slow, hung or hostile destination costs the
// nodes in between nothing but the message's place in a bounded queue
// (relay.go). The destination's answer travels back along the same path
// as a one-way message of its own, and the sender matches it to its
// waiting call by the nonce. The sender signs the message (over the path,
// the time and a nonce) and the destination signs its answer (over the
// sender, itself, the nonce and the answer), each with its node key,
// whose hash must be its ID, so that the nodes in between can neither
// forge, bend nor replay either. A hop that cannot pass a message on says
// so back along the path, unsigned: a hop could as well drop the message,
// and the sender only learns sooner that the route failed and links
// directly.

// RouteProtocol is the mesh protocol of routed call messages. Version 2
// is one-way at each hop with answers routed back (version 1 held a
// request at every hop).
const RouteProtocol = "call/route/2"

// errNoRoute is a routed message that did not reach its destination (the
// directory's neighbour lists lag behind the links).
var errNoRoute = errors.New("calls: route failed")

const (
	// maxPath bounds a route, in nodes.
	maxPath = 8
	// routeMaxAge bounds how far a routed message's time may be from the
	// receiver's clock; within it, the seen set catches replays.
	routeMaxAge = 2 * time.Minute
	// maxSeenPerSender bounds the routed messages remembered per sender
	// against replays, and maxSeenSenders the senders: at most 128Ki
	// messages, about 9 MiB, and only while that many nodes send.
	maxSeenPerSender = 128
	maxSeenSenders   = 1024
	nonceLen         = 16
	maxKey           = 256
	maxSig           = 128
	// maxErrText bounds the error text of an answer and the reason in a
	// hop's failure notice.
	maxErrText = 1 << 10
	// maxEnvelope bounds a routed message: a call message or answer,
	// base64, and the path, key, signature, nonce and error text.
	maxEnvelope = MaxMessage*4/3 + 6<<10
	// maxSeenSendersPerPrev bounds the senders one neighbour brings in
	// (the neighbour that passed on a sender's first message remembered
	// here): one that makes up senders by the thousand (keys cost
	// nothing) fills its own share, not the table.
	maxSeenSendersPerPrev = maxSeenSenders / 4
)

// envelope is a routed message: a call message from Path[0] to the
// path's last node, or (Back) the answer to one on its way back.
type envelope struct {
	Path []mesh.ID `json:"path"`
	// Hop is the index in Path of the node the envelope is sent to.
	Hop int `json:"hop"`
	// Back marks an answer, travelling from the path's end to its start.
	Back bool  `json:"back,omitempty"`
	Time int64 `json:"t,omitempty"`
	// Nonce is the sender's, in its message and in the answer to it.
	Nonce []byte `json:"n"`
	Body  []byte `json:"b,omitempty"`
	// Err is the destination's error, in an answer.
	Err string `json:"e,omitempty"`
	// Fail, in an unsigned answer, is why a hop could not pass the
	// message on.
	Fail string `json:"f,omitempty"`
	Key  []byte `json:"k,omitempty"`
	Sig  []byte `json:"s,omitempty"`
}

func envSigned(e *envelope) []byte {
	b := []byte("catnest routed call 1\n")
	for _, id := range e.Path {
		b = append(b, id...)
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time))
	b = append(b, e.Nonce...)
	return append(b, e.Body...)
}

// replySigned is what the destination signs in its answer: the sender and
// the destination, so that an answer cannot pass for another pair's, and
// the nonce, so that it cannot pass for another message's.
func replySigned(e *envelope) []byte {
	b := []byte("catnest routed call reply 2\n")
	b = append(b, e.Path[0]...)
	b = append(b, 0)
	b = append(b, e.Path[len(e.Path)-1]...)
	b = append(b, 0)
	b = append(b, e.Nonce...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Body)))
	b = append(b, e.Body...)
	return append(b, e.Err...)
}

func sign(key *ecdsa.PrivateKey, msg []byte) (spki, sig []byte, err error) {
	spki, err = x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256(msg)
	sig, err = ecdsa.SignASN1(rand.Reader, key, sum[:])
	return spki, sig, err
}

// verify checks that sig over msg is by the key spki and that the key is
// node id's.
func verify(id mesh.ID, spki, sig, msg []byte) error {
	if len(spki) > maxKey || len(sig) > maxSig {
		return errors.New("key or signature over its limit")
	}
	pub, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		return fmt.Errorf("bad key: %w", err)
	}
	ek, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return errors.New("key is not ECDSA")
	}
	if got, err := mesh.IDFromPublicKey(ek); err != nil || got != id {
		return fmt.Errorf("key is not %s's", id.Short())
	}
	sum := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(ek, sum[:], sig) {
		return errors.New("bad signature")
	}
	return nil
}

// decodeEnvelope parses a routed message or answer that from passed to
// self and checks its path, size and signature: the sender's on a
// message, the destination's on an answer (but for a hop's unsigned
// failure notice).
func decodeEnvelope(b []byte, self, from mesh.ID) (*envelope, error) {
	if len(b) > maxEnvelope {
		return nil, fmt.Errorf("routed call of %d bytes, limit %d", len(b), maxEnvelope)
	}
	var e envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("bad routed call: %w", err)
	}
	if len(e.Path) < 3 || len(e.Path) > maxPath || e.Hop < 0 || e.Hop >= len(e.Path) || e.Path[e.Hop] != self {
		return nil, errors.New("bad route")
	}
	if e.Back && (e.Hop > len(e.Path)-2 || e.Path[e.Hop+1] != from) ||
		!e.Back && (e.Hop < 1 || e.Path[e.Hop-1] != from) {
		return nil, errors.New("bad route")
	}
	for i, id := range e.Path {
		if _, err := mesh.ParseID(string(id)); err != nil {
			return nil, fmt.Errorf("bad route: %w", err)
		}
		if slices.Contains(e.Path[:i], id) {
			return nil, errors.New("bad route: a loop")
		}
	}
	if len(e.Nonce) != nonceLen || len(e.Body) > MaxMessage || len(e.Err) > maxErrText || len(e.Fail) > maxErrText {
		return nil, errors.New("bad routed call: a field is over its limit")
	}
	switch {
	case !e.Back:
		if e.Err != "" || e.Fail != "" {
			return nil, errors.New("bad routed call: an error on the way out")
		}
		if err := verify(e.Path[0], e.Key, e.Sig, envSigned(&e)); err != nil {
			return nil, fmt.Errorf("routed call: %w", err)
		}
	case e.Fail != "":
		if len(e.Body) != 0 || e.Err != "" || len(e.Key) != 0 || len(e.Sig) != 0 {
			return nil, errors.New("bad routed failure notice: it carries an answer")
		}
	default:
		if err := verify(e.Path[len(e.Path)-1], e.Key, e.Sig, replySigned(&e)); err != nil {
			return nil, fmt.Errorf("routed answer: %w", err)
		}
	}
	return &e, nil
}

// seen remembers routed messages by sender and nonce, against replays.
// Each sender has a window of its maxSeenPerSender latest messages and a
// floor: the newest time of a message it pushed out of its window. A
// message at or before its sender's floor is refused (it may be one that
// is no longer remembered), so a sender that floods fills only its own
// window and costs only its own late, reordered messages; a sender's fresh
// messages are taken however many it sent before. A sender is forgotten
// once everything it could still have replayed is past routeMaxAge.
// Lookups are one map access; the rest is constant work per message.
type seen struct {
	mu      sync.Mutex
	m       map[seenKey]struct{}
	senders map[mesh.ID]*seenSender
	// perPrev counts the senders by the neighbour that brought them in.
	perPrev map[mesh.ID]int
	// lru orders the senders by their last message taken, oldest first,
	// so that the forgettable ones are found at its front.
	lru list.List
}

type seenKey struct {
	from  mesh.ID
	nonce [nonceLen]byte
}

type seenSender struct {
	id    mesh.ID
	prev  mesh.ID     // the neighbour that brought it in
	ring  []seenEntry // in arrival order from next, up to maxSeenPerSender
	next  int
	floor int64 // ms; messages at or before it are refused
	last  time.Time
	elem  *list.Element
}

type seenEntry struct {
	nonce [nonceLen]byte
	t     int64
}

var (
	errSeen        = errors.New("calls: routed call seen before")
	errSeenTooLate = errors.New("calls: routed call older than its sender's later ones")
	errSeenFull    = errors.New("calls: too many nodes sending routed calls")
)

// first records the message from from with nonce and signed time t (ms),
// passed on to this node by neighbour prev, and says why not when it may
// not be taken: it was seen, or may have been, or the table of senders
// (or prev's share of it) is full of ones that could still replay.
func (s *seen) first(from, prev mesh.ID, nonce []byte, t int64, now time.Time) error {
	if len(nonce) != nonceLen {
		return errors.New("calls: bad nonce")
	}
	k := seenKey{from: from}
	copy(k.nonce[:], nonce)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[seenKey]struct{})
		s.senders = make(map[mesh.ID]*seenSender)
		s.perPrev = make(map[mesh.ID]int)
	}
	if _, dup := s.m[k]; dup {
		return errSeen
	}
	s.forget(now)
	sd := s.senders[from]
	if sd == nil {
		if len(s.senders) >= maxSeenSenders || s.perPrev[prev] >= maxSeenSendersPerPrev {
			return errSeenFull
		}
		sd = &seenSender{id: from, prev: prev, floor: math.MinInt64}
		sd.elem = s.lru.PushBack(sd)
		s.senders[from] = sd
		s.perPrev[prev]++
	}
	if t <= sd.floor {
		return errSeenTooLate
	}
	e := seenEntry{nonce: k.nonce, t: t}
	if len(sd.ring) < maxSeenPerSender {
		sd.ring = append(sd.ring, e)
	} else {
		old := sd.ring[sd.next]
		delete(s.m, seenKey{from: from, nonce: old.nonce})
		sd.floor = max(sd.floor, old.t)
		sd.ring[sd.next] = e
		sd.next = (sd.next + 1) % maxSeenPerSender
	}
	s.m[k] = struct{}{}
	sd.last = now
	s.lru.MoveToBack(sd.elem)
	return nil
}

// forget drops the senders whose last message was taken more than
// 2*routeMaxAge ago: the times of their messages (at most routeMaxAge
// ahead of this clock then) are all past routeMaxAge now, so serveRoute
// refuses them before asking seen.
func (s *seen) forget(now time.Time) {
	for e := s.lru.Front(); e != nil; e = s.lru.Front() {
		sd := e.Value.(*seenSender)
		if now.Sub(sd.last) <= 2*routeMaxAge {
			return
		}
		for _, en := range sd.ring {
			delete(s.m, seenKey{from: sd.id, nonce: en.nonce})
		}
		delete(s.senders, sd.id)
		if s.perPrev[sd.prev]--; s.perPrev[sd.prev] <= 0 {
			delete(s.perPrev, sd.prev)
		}
		s.lru.Remove(e)
	}
}

// pathTo finds a shortest path of links from this node to dst, from the
// neighbour lists of the directory and this node's own links.
func (s *Service) pathTo(dst mesh.ID) []mesh.ID {
	adj := make(map[mesh.ID][]mesh.ID)
	for _, r := range s.node.Directory() {
		adj[r.ID] = r.Neighbors
	}
	adj[s.self] = nil
	for _, p := range s.node.Peers() {
		adj[s.self] = append(adj[s.self], p.ID)
	}
	prev := map[mesh.ID]mesh.ID{s.self: ""}
	queue := []mesh.ID{s.self}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		if u == dst {
			var path []mesh.ID
			for v := dst; v != ""; v = prev[v] {
				path = append(path, v)
			}
			slices.Reverse(path)
			if len(path) > maxPath {
				return nil
			}
			return path
		}
		for _, v := range adj[u] {
			if _, ok := prev[v]; !ok {
				prev[v] = u
				queue = append(queue, v)
			}
		}
	}
	return nil
}

// route sends body to dst along path and returns dst's answer, which
// comes back along the path on its own and is matched by the nonce. A
// message that dst could not tell from a replay (overtaken by too many of
// this node's later ones) is sent again, with a new time and nonce.
func (s *Service) route(ctx context.Context, path []mesh.ID, body []byte) ([]byte, error) {
	for try := 0; ; try++ {
		out, err := s.routeOnce(ctx, path, body)
		var remote *mesh.RemoteError
		if try < routeRetries && errors.As(err, &remote) && remote.Msg == errSeenTooLate.Error() {
			continue
		}
		return out, err
	}
}

// routeRetries is how many times route sends a message again that its
// destination took for a late replay.
const routeRetries = 3

func (s *Service) routeOnce(ctx context.Context, path []mesh.ID, body []byte) ([]byte, error) {
	e := envelope{Path: path, Hop: 1, Time: time.Now().UnixMilli(), Nonce: make([]byte, nonceLen), Body: body}
	rand.Read(e.Nonce)
	var err error
	if e.Key, e.Sig, err = sign(s.cfg.Identity.Key, envSigned(&e)); err != nil {
		return nil, fmt.Errorf("calls: sign: %w", err)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	answer, err := s.pending.add(e.Nonce, path)
	if err != nil {
		return nil, err
	}
	defer s.pending.remove(e.Nonce)
	if err := s.node.Send(ctx, path[1], RouteProtocol, b); err != nil {
		return nil, fmt.Errorf("%w: %w", errNoRoute, err)
	}
	var r *envelope
	select {
	case r = <-answer:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: no answer from %s: %w", errNoRoute, path[len(path)-1].Short(), ctx.Err())
	}
	switch {
	case r.Fail != "":
		return nil, fmt.Errorf("%w: %s", errNoRoute, r.Fail)
	case r.Err != "":
		return nil, &mesh.RemoteError{Peer: path[len(path)-1], Msg: r.Err}
	}
	return r.Body, nil
}

// serveRoute takes a routed message or answer from a link: it passes it
// on, serves it here, or hands an answer to the call waiting for it. It
// never waits for anything: the link's one-way messages are handled one
// at a time, and every routed message through that neighbour would wait
// behind it.
func (s *Service) serveRoute(_ context.Context, m *mesh.Message) ([]byte, error) {
	if m.Request {
		err := errors.New("calls: routed calls are one-way messages")
		s.node.Penalize(m.From, "call: "+err.Error())
		return nil, err
	}
	e, err := s.takeRoute(m.Payload, m.From, time.Now())
	if e != nil {
		s.serveRouted(e)
	}
	return nil, err
}

// takeRoute checks a routed message or answer that from passed to this
// node and passes it on or hands it to its call; it returns a call
// message for this node, new and signed by its sender, for serveRouted.
func (s *Service) takeRoute(b []byte, from mesh.ID, now time.Time) (*envelope, error) {
	e, err := decodeEnvelope(b, s.self, from)
	if err != nil {
		s.node.Penalize(from, "call: "+err.Error())
		return nil, err
	}
	switch {
	case e.Back && e.Hop == 0:
		s.pending.answer(e)
		return nil, nil
	case e.Back:
		// Answers are queued by who vouches for them: the destination
		// that signed one, or the neighbour that passed on a notice.
		by := e.Path[len(e.Path)-1]
		if e.Fail != "" {
			by = from
		}
		e.Hop--
		s.pass(e, from, by)
		return nil, nil
	}
	if d := now.Sub(time.UnixMilli(e.Time)); d > routeMaxAge || d < -routeMaxAge {
		err := errors.New("calls: routed call too old or from the future")
		s.failBack(e, err)
		return nil, err
	}
	if e.Hop < len(e.Path)-1 {
		e.Hop++
		s.pass(e, from, e.Path[0])
		return nil, nil
	}
	if err := s.seen.first(e.Path[0], from, e.Nonce, e.Time, now); err != nil {
		if errors.Is(err, errSeenTooLate) {
			// It may be new, overtaken by more of its sender's later
			// messages than its window holds (a burst of dozens of
			// calls' candidates): the sender sends it again, newer.
			s.answer(e, nil, err)
		}
		// A replay is never the sender's own doing (its nonces are
		// fresh): no call waits for its answer.
		return nil, err
	}
	return e, nil
}

// serveRouted queues a routed call message addressed to this node for
// Serve, which serves it on a goroutine (the call may wait for the
// owner's word) and sends the signed answer back along the path. When its
// sender has too much queued here, the answer is errRouteBusy at once.
func (s *Service) serveRouted(e *envelope) {
	if !s.serving.add(e) {
		s.answer(e, nil, errRouteBusy)
		return
	}
	select {
	case s.serving.kick <- struct{}{}:
	default:
	}
}

// serveQueued serves the queued routed calls there is room for, each
// goroutine going on with the next in turn, until ctx ends.
func (s *Service) serveQueued(ctx context.Context, wg *sync.WaitGroup) {
	for {
		first := s.serving.take("")
		if first == nil {
			return
		}
		wg.Go(func() {
			for e := first; e != nil && ctx.Err() == nil; e = s.serving.take(e.Path[0]) {
				s.serveOne(ctx, e)
			}
		})
	}
}

func (s *Service) serveOne(ctx context.Context, e *envelope) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	req, err := decodeRequest(e.Body)
	var out []byte
	if err == nil {
		out, err = s.serveOnce(ctx, e.Path[0], req, false)
	}
	// A request that does not decode: the sender signed it, so the
	// sender is at fault, not the hops; it hears why.
	s.answer(e, out, err)
}

// answer signs the answer to e and queues it back along e's path. The
// answer counts in the relay's share of the neighbour that brought e, not
// in one share of this node's own: a neighbour that sends calls and does
// not read their answers then fills only its own share.
func (s *Service) answer(e *envelope, body []byte, serr error) {
	r := envelope{Path: e.Path, Hop: len(e.Path) - 2, Back: true, Nonce: e.Nonce, Body: body}
	if serr != nil {
		r.Err = serr.Error()
		if len(r.Err) > maxErrText {
			r.Err = r.Err[:maxErrText]
		}
	}
	var err error
	if r.Key, r.Sig, err = sign(s.cfg.Identity.Key, replySigned(&r)); err != nil {
		s.log.Warn("routed answer not signed", "err", err)
		return
	}
	s.pass(&r, e.Path[len(e.Path)-2], e.Path[0])
}

// failBack tells e's sender, back along its path, that this hop could not
// pass e on. Like an answer, the notice counts in the share of the
// neighbour that brought e.
func (s *Service) failBack(e *envelope, why error) {
	i := slices.Index(e.Path, s.self)
	if e.Back || i < 1 {
		return
	}
	reason := fmt.Sprintf("%s: %v", s.self.Short(), why)
	if len(reason) > maxErrText {
		reason = reason[:maxErrText]
	}
	f := &envelope{Path: e.Path, Hop: i - 1, Back: true, Nonce: e.Nonce, Fail: reason}
	s.pass(f, e.Path[i-1], e.Path[0])
}

// errRouteBusy answers a routed call when its sender has too many served
// here at once.
var errRouteBusy = errors.New("calls: too many routed calls at once")

const (
	// maxServingPerSender and maxServing bound the routed calls served at
	// once for one sender and in all; maxServingQueue,
	// maxServingQueuePerPrev and maxServingQueuePerSender, the bytes of
	// those waiting their turn, in all, brought by one neighbour, and
	// from one sender.
	maxServingPerSender      = 32
	maxServing               = 256
	maxServingQueue          = 16 << 20
	maxServingQueuePerPrev   = 4 << 20
	maxServingQueuePerSender = 2 << 20
	// maxPending bounds this node's own routed calls waiting for answers.
	maxPending = 4096
)

// serving holds the routed calls addressed to this node: those served
// now, counted by sender, and those waiting, taken in turn by the
// neighbour that brought them (whose link proved it) and within that by
// sender, as the relay's queues are. So a sender that floods waits behind
// its own calls only, and a neighbour that makes up senders by the
// thousand behind its own.
type serving struct {
	mu      sync.Mutex
	running map[mesh.ID]int
	total   int
	queued  turns[mesh.ID, *turns[mesh.ID, *servingQueue]]
	perPrev map[mesh.ID]int
	bytes   int
	// kick wakes Serve to serve what is queued.
	kick chan struct{}
}

type servingQueue struct {
	calls []*envelope
	bytes int
}

func servingSize(e *envelope) int { return len(e.Body) + queuedOverhead }

// servingPrev is the neighbour that brought e to this node.
func servingPrev(e *envelope) mesh.ID { return e.Path[len(e.Path)-2] }

// add queues e, or reports false when its neighbour's or its sender's
// share is full.
func (c *serving) add(e *envelope) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, from, prev := servingSize(e), e.Path[0], servingPrev(e)
	if c.bytes+n > maxServingQueue || c.perPrev[prev]+n > maxServingQueuePerPrev {
		return false
	}
	senders, ok := c.queued.get(prev)
	if !ok {
		senders = &turns[mesh.ID, *servingQueue]{}
		c.queued.add(prev, senders)
	}
	q, ok := senders.get(from)
	if ok && q.bytes+n > maxServingQueuePerSender {
		return false
	}
	if !ok {
		q = &servingQueue{}
		senders.add(from, q)
	}
	if c.perPrev == nil {
		c.perPrev = make(map[mesh.ID]int)
	}
	q.calls = append(q.calls, e)
	q.bytes += n
	c.bytes += n
	c.perPrev[prev] += n
	return true
}

// take ends a call of sender done (none if "") and returns the next call
// to serve, in turn among the neighbours and their senders below their
// limit, or nil.
func (c *serving) take(done mesh.ID) *envelope {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running == nil {
		c.running = make(map[mesh.ID]int)
	}
	if done != "" {
		c.total--
		if c.running[done]--; c.running[done] <= 0 {
			delete(c.running, done)
		}
	}
	if c.total >= maxServing {
		return nil
	}
	for range c.queued.len() {
		prev, senders, _ := c.queued.front()
		var e *envelope
		for range senders.len() {
			from, q, _ := senders.front()
			if c.running[from] >= maxServingPerSender {
				senders.rotate(true)
				continue
			}
			e = q.calls[0]
			q.calls[0] = nil
			q.calls = q.calls[1:]
			q.bytes -= servingSize(e)
			senders.rotate(len(q.calls) > 0)
			break
		}
		c.queued.rotate(senders.len() > 0)
		if e == nil {
			continue
		}
		n := servingSize(e)
		c.bytes -= n
		if c.perPrev[prev] -= n; c.perPrev[prev] <= 0 {
			delete(c.perPrev, prev)
		}
		c.running[e.Path[0]]++
		c.total++
		return e
	}
	return nil
}

// pending holds this node's routed calls that wait for their answers, by
// nonce. An answer is taken once, for the nonce and the path (so the
// destination) of the call it answers; each call removes its entry when
// it returns, answered or not, so the table holds only calls in flight.
type pending struct {
	mu sync.Mutex
	m  map[[nonceLen]byte]*pendingCall
}

type pendingCall struct {
	path   []mesh.ID
	answer chan *envelope
}

var errTooManyPending = errors.New("calls: too many routed calls waiting for answers")

func (p *pending) add(nonce []byte, path []mesh.ID) (<-chan *envelope, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = make(map[[nonceLen]byte]*pendingCall)
	}
	if len(p.m) >= maxPending {
		return nil, errTooManyPending
	}
	c := &pendingCall{path: path, answer: make(chan *envelope, 1)}
	p.m[[nonceLen]byte(nonce)] = c
	return c.answer, nil
}

func (p *pending) remove(nonce []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, [nonceLen]byte(nonce))
}

// answer hands a checked answer to the call it answers. One for no call
// waiting (late, replayed, or for another route) is dropped.
func (p *pending) answer(e *envelope) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := [nonceLen]byte(e.Nonce)
	c := p.m[k]
	if c == nil || !slices.Equal(c.path, e.Path) {
		return false
	}
	delete(p.m, k)
	c.answer <- e
	return true
}
