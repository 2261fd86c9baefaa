package calls

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/catnest/catnest/mesh"
)

// Relaying: a node in the middle of routes queues what it passes on, one
// queue per next hop, and sends from each queue on a goroutine of its own,
// so that a next hop whose link is slow holds back only the messages to
// it. A queue is taken in turns: by the neighbour each message came from
// (whose identity its link proved), and within that by the node that
// vouches for the message (its signer). So a sender that floods, or a
// neighbour that makes up senders by the thousand, gets its turn like any
// other and fills only its own part of the queue; the rest is dropped, as
// a lost frame would be, and its senders time out.

const (
	// maxLaneBytes bounds the bytes queued for one next hop from one
	// neighbour and one sender: the bursts of ICE candidates of dozens of
	// calls fit.
	maxLaneBytes = 1 << 20
	// maxPrevBytes bounds the bytes queued from one neighbour, and
	// maxRelayBytes all queued bytes.
	maxPrevBytes  = 4 << 20
	maxRelayBytes = 16 << 20
	// queuedOverhead is counted per queued message besides its bytes.
	queuedOverhead = 512
	// hopSendTimeout bounds one send to a next hop; a hop that takes
	// longer has its queue dropped (its link is stuck).
	hopSendTimeout = 5 * time.Second
)

// relayItem is a message queued for a next hop.
type relayItem struct {
	b []byte
	// e is the message's path, hop, direction and nonce (no body), for a
	// failure notice when it cannot be sent.
	e        *envelope
	prev, by mesh.ID
}

func (it *relayItem) size() int { return len(it.b) + queuedOverhead }

// turns is a set of keyed values taken in turn: the front one, then the
// next, round and round.
type turns[K comparable, V any] struct {
	m     map[K]V
	order []K
}

func (t *turns[K, V]) get(k K) (V, bool) {
	v, ok := t.m[k]
	return v, ok
}

func (t *turns[K, V]) add(k K, v V) {
	if t.m == nil {
		t.m = make(map[K]V)
	}
	t.m[k] = v
	t.order = append(t.order, k)
}

// front is the value whose turn it is.
func (t *turns[K, V]) front() (K, V, bool) {
	if len(t.order) == 0 {
		var k K
		var v V
		return k, v, false
	}
	k := t.order[0]
	return k, t.m[k], true
}

// rotate ends the front's turn: it goes to the back, or out if !keep.
func (t *turns[K, V]) rotate(keep bool) {
	k := t.order[0]
	t.order = t.order[1:]
	if keep {
		t.order = append(t.order, k)
	} else {
		delete(t.m, k)
	}
}

func (t *turns[K, V]) len() int { return len(t.order) }

// hopQueue is what waits for one next hop.
type hopQueue struct {
	prevs   turns[mesh.ID, *turns[mesh.ID, *lane]]
	running bool // a drainer sends from it
}

// lane is the messages for one next hop from one neighbour and sender.
type lane struct {
	items []*relayItem
	bytes int
}

// relay is the queues of the messages this node passes on.
type relay struct {
	mu      sync.Mutex
	hops    map[mesh.ID]*hopQueue
	bytes   int
	perPrev map[mesh.ID]int
	// kick wakes Serve to start a drainer for a queue that has none.
	kick chan struct{}
}

func newRelay() *relay {
	return &relay{hops: make(map[mesh.ID]*hopQueue), perPrev: make(map[mesh.ID]int), kick: make(chan struct{}, 1)}
}

// push queues it for hop, or reports false when its part of the queues
// is full.
func (r *relay) push(hop mesh.ID, it *relayItem) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := it.size()
	if r.bytes+n > maxRelayBytes || r.perPrev[it.prev]+n > maxPrevBytes {
		return false
	}
	q := r.hops[hop]
	if q == nil {
		q = &hopQueue{}
		r.hops[hop] = q
	}
	senders, ok := q.prevs.get(it.prev)
	if !ok {
		senders = &turns[mesh.ID, *lane]{}
		q.prevs.add(it.prev, senders)
	}
	l, ok := senders.get(it.by)
	if !ok {
		l = &lane{}
		senders.add(it.by, l)
	}
	if l.bytes+n > maxLaneBytes { // never a new lane: a message is smaller
		return false
	}
	l.items = append(l.items, it)
	l.bytes += n
	r.bytes += n
	r.perPrev[it.prev] += n
	if !q.running {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// pop takes the next message for hop, in turn. With none left, the queue
// is forgotten and its drainer must stop.
func (r *relay) pop(hop mesh.ID) *relayItem {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.hops[hop]
	if q == nil {
		return nil
	}
	_, senders, ok := q.prevs.front()
	if !ok {
		delete(r.hops, hop)
		return nil
	}
	_, l, _ := senders.front()
	it := l.items[0]
	l.items[0] = nil
	l.items = l.items[1:]
	l.bytes -= it.size()
	senders.rotate(len(l.items) > 0)
	q.prevs.rotate(senders.len() > 0)
	r.release(it)
	return it
}

// clear takes everything queued for hop.
func (r *relay) clear(hop mesh.ID) []*relayItem {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.hops[hop]
	if q == nil {
		return nil
	}
	var out []*relayItem
	for _, senders := range q.prevs.m {
		for _, l := range senders.m {
			for _, it := range l.items {
				r.release(it)
				out = append(out, it)
			}
		}
	}
	q.prevs = turns[mesh.ID, *turns[mesh.ID, *lane]]{}
	return out
}

func (r *relay) release(it *relayItem) {
	n := it.size()
	r.bytes -= n
	if r.perPrev[it.prev] -= n; r.perPrev[it.prev] <= 0 {
		delete(r.perPrev, it.prev)
	}
}

// idle marks the queues that have messages and no drainer as drained,
// and returns their hops.
func (r *relay) idle() []mesh.ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []mesh.ID
	for hop, q := range r.hops {
		if !q.running {
			q.running = true
			out = append(out, hop)
		}
	}
	return out
}

// queued is the number of bytes queued, for tests.
func (r *relay) queued() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bytes
}

// pass queues e for the node it is now addressed to (e.Path[e.Hop]);
// prev is the neighbour it came from (for this node's own answer or
// notice, the neighbour that brought the call) and by who vouches for it.
// A message that cannot be queued is dropped, its sender told when it is
// on its way out.
func (s *Service) pass(e *envelope, prev, by mesh.ID) {
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	hop := e.Path[e.Hop]
	it := &relayItem{b: b, e: &envelope{Path: e.Path, Hop: e.Hop, Back: e.Back, Nonce: e.Nonce}, prev: prev, by: by}
	if !s.relay.push(hop, it) {
		s.log.Debug("routed call dropped: its queue is full", "to", hop.Short(), "from", prev.Short(), "by", by.Short())
		if !e.Back {
			s.failBack(it.e, errRelayFull)
		}
	}
}

var errRelayFull = errors.New("relay queue full")

// drain sends what is queued for hop until the queue is empty or ctx
// ends. When a send fails the hop's queue is dropped, and the senders of
// the messages in it are told.
func (s *Service) drain(ctx context.Context, hop mesh.ID) {
	for {
		it := s.relay.pop(hop)
		if it == nil {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, hopSendTimeout)
		err := s.node.Send(sctx, hop, RouteProtocol, it.b)
		cancel()
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Debug("routed call not passed on", "to", hop.Short(), "err", err)
		for _, it := range append(s.relay.clear(hop), it) {
			if !it.e.Back {
				s.failBack(it.e, err)
			}
		}
	}
}
