package mesh

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Broadcast is an epidemic broadcast tree (Plumtree, Leitão et al. 2007).
// Each link is eager or lazy: a new message travels in full along eager
// links and as an id (IHAVE) along lazy ones. A node that receives a
// message twice asks the second sender to turn lazy (PRUNE), so the eager
// links converge to a spanning tree; a node that hears of a message by
// IHAVE and does not receive it in time asks for it (GRAFT), which also
// turns that link eager again and so repairs the tree.

const bcastProto = "mesh/bc/1"

// Broadcast limits.
const (
	// MaxBroadcast bounds the payload of one broadcast.
	MaxBroadcast = 64 << 10
	// maxIHave bounds the ids in one IHAVE frame.
	maxIHave = 512
	// maxAnnouncers bounds the peers remembered per missing message.
	maxAnnouncers = 8
	// maxMissing bounds the messages known by IHAVE only.
	maxMissing = 4 * maxMissingPerPeer
	// maxMissingPerPeer bounds the messages known by IHAVE only that
	// one peer was the first to announce: the most an honest peer
	// announces at once (what passed recently, to a new link), so that
	// a peer announcing made-up ids fills its own share and never the
	// room other peers' announcements need.
	maxMissingPerPeer = 4 * maxIHave
	// maxRejected bounds the remembered messages that failed validation.
	maxRejected = 4096
	// peerQueueLen bounds the frames waiting to be sent to one peer.
	peerQueueLen = 512
	// maxGraftsPerTick bounds the GRAFTs queued for one peer per
	// IHaveInterval; the rest wait for the next tick.
	maxGraftsPerTick = 64
	// graftQueueRoom: GRAFTs are queued for a peer only while fewer
	// frames than this wait in its queue; the rest wait for it to drain.
	// Half the queue, so that GOSSIP and IHAVE frames still fit.
	graftQueueRoom = peerQueueLen / 2
	// maxGraftsInFlight bounds the missing messages asked of one peer
	// and not yet received (asked again of it in later rounds, they
	// count once). A GRAFT that left this node's queue can still
	// be dropped at the peer's (a slow reader's one-way queue, see
	// MessageQueue) or its answer at this node's; the window keeps what
	// one peer is asked for, with each message's rounds, inside those
	// queues, as a transport's window keeps a sender inside the
	// receiver's buffer. At 100 ms a round trip it still pulls 1,280
	// messages a second from one peer.
	maxGraftsInFlight = 128
	// graftRounds is how many times a node asks each announcer of a
	// missing message before it gives the message up, waiting twice as
	// long after each round (GraftRetry, then 2, 4 and 8 times that).
	graftRounds = 4
)

type bcKind byte

const (
	bcGossip bcKind = 1
	bcIHave  bcKind = 2
	bcGraft  bcKind = 3
	bcPrune  bcKind = 4
)

// MsgID names a broadcast message.
type MsgID [16]byte

func (id MsgID) String() string { return hex.EncodeToString(id[:]) }

// BroadcastMsg is a broadcast message as a subscriber receives it.
type BroadcastMsg struct {
	ID      MsgID
	Origin  ID        // the node that broadcast it (as it claims)
	Topic   string    //
	Payload []byte    // owned by the receiver
	Sent    time.Time // the origin's clock when it broadcast
	Hops    int       // links travelled
	From    ID        // the neighbour it came from
}

// BroadcastStats counts what the broadcast layer did since the node started.
type BroadcastStats struct {
	Originated uint64 // messages this node broadcast
	Delivered  uint64 // messages handed to local handlers (once each)
	Received   uint64 // full copies received (Delivered + Duplicates + Rejected + stale)
	Duplicates uint64 // copies of a message already seen
	Gossips    uint64 // full copies sent
	IHaves     uint64 // ids announced lazily
	Grafts     uint64 // GRAFTs sent
	Prunes     uint64 // PRUNEs sent
	Dropped    uint64 // frames dropped: a full peer queue, a rate limit or a bad frame
	Rejected   uint64 // full copies that failed validation, or matched one that did
}

// BroadcastHandler receives broadcasts of one topic, once per message, on
// the goroutine of the link it came on; it may block, which holds back
// that link.
type BroadcastHandler func(m BroadcastMsg)

type bcMsg struct {
	id      MsgID
	origin  ID
	sent    int64 // unix ms
	at      int64 // unix ms, when this node took it (set by remember)
	hops    int
	topic   string
	payload []byte
}

type missing struct {
	owner      ID // the first announcer, whose share it counts in
	announcers []ID
	deadline   time.Time
	grafted    int // announcers asked so far in this round
	round      int // rounds over the announcers begun, less one
	asked      ID  // the peer it is being asked of, counted in its grafting; "" if none
}

// rejection remembers a message that failed validation, so that it is
// not pulled again: an IHAVE for it is not grafted from a peer that
// already sent it, and a copy with the same content is dropped unchecked.
// A copy with other content is checked: a hostile peer that sends a
// corrupt copy of a message under its id must not keep the real one out.
type rejection struct {
	id    MsgID
	sum   [32]byte  // contentSum of the rejected copy
	until time.Time // forgotten after this
	from  []ID      // peers that sent that copy or were asked for it
}

type bcPeer struct {
	eager    bool
	grafting int // missing messages whose last GRAFT went to this peer
	queue    chan []byte
	pending  []MsgID       // ids to announce by IHAVE
	limit    *rate.Limiter // frames taken from the peer
	out      *rate.Limiter // frames sent to the peer
	stop     chan struct{}
}

// broadcaster is the node's Plumtree state.
type broadcaster struct {
	n *Node

	mu       sync.Mutex
	peers    map[ID]*bcPeer
	seen     map[MsgID]time.Time
	seenList *list.List // of seenEntry, oldest first
	cache    map[MsgID]*list.Element
	cached   *list.List // of *bcMsg, oldest first
	cacheLen int        // payload bytes in the cache
	missing  map[MsgID]*missing
	owned    map[ID]int              // missing messages by owner
	rejected map[MsgID]*list.Element // of *rejection
	rejList  *list.List              // of *rejection, oldest first
	handlers map[string]BroadcastHandler
	valid    map[string]func(BroadcastMsg) error
	stats    BroadcastStats
	byTopic  map[string]*TopicStats
	wg       sync.WaitGroup
	stopped  bool
}

type seenEntry struct {
	id MsgID
	at time.Time
}

func newBroadcaster(n *Node) *broadcaster {
	return &broadcaster{
		n:        n,
		peers:    make(map[ID]*bcPeer),
		seen:     make(map[MsgID]time.Time),
		seenList: list.New(),
		cache:    make(map[MsgID]*list.Element),
		cached:   list.New(),
		missing:  make(map[MsgID]*missing),
		owned:    make(map[ID]int),
		rejected: make(map[MsgID]*list.Element),
		rejList:  list.New(),
		handlers: make(map[string]BroadcastHandler),
		valid:    make(map[string]func(BroadcastMsg) error),
		byTopic:  make(map[string]*TopicStats),
	}
}

// TopicStats counts the full copies of one topic's messages a node received.
type TopicStats struct {
	Received   uint64 // every copy
	Duplicates uint64 // copies of a message already seen
}

// TopicStats reports the copies of topic's messages received, for the
// topics this node has a handler for.
func (n *Node) TopicStats(topic string) TopicStats {
	n.bc.mu.Lock()
	defer n.bc.mu.Unlock()
	if s := n.bc.byTopic[topic]; s != nil {
		return *s
	}
	return TopicStats{}
}

// HandleBroadcast registers h for broadcasts on topic, replacing any
// earlier handler. A node's own broadcasts are not handed to it.
func (n *Node) HandleBroadcast(topic string, h BroadcastHandler) {
	if err := checkProtocol(topic); err != nil {
		panic("mesh: HandleBroadcast: " + err.Error())
	}
	n.bc.mu.Lock()
	n.bc.handlers[topic] = h
	n.bc.mu.Unlock()
}

// ValidateBroadcast registers a check that every message of topic must
// pass before this node relays it or hands it to the handler: one that
// fails is dropped, and the neighbour that sent it is scored down. The
// message is remembered as bad for BroadcastMaxAge, so that its later
// announcements are not pulled again and further copies of it are
// dropped unchecked and held against nobody (they may come from nodes
// that do not check this topic). A check that fails with an error
// wrapping ErrNotYetValid (a message stamped ahead of this node's clock)
// scores nobody down, and the message is remembered for two
// GossipIntervals only: relays announce a message again when its send
// time has passed, and it is then checked again.
//
// The check runs on the link's goroutine and must be fast and not depend
// on this node's state (a signature check, not a database lookup); nodes
// without a handler for the topic run it too, so bad messages stop at
// the first node that sees them.
func (n *Node) ValidateBroadcast(topic string, check func(BroadcastMsg) error) {
	if err := checkProtocol(topic); err != nil {
		panic("mesh: ValidateBroadcast: " + err.Error())
	}
	n.bc.mu.Lock()
	n.bc.valid[topic] = check
	n.bc.mu.Unlock()
}

// Broadcast sends payload to every node of the connected mesh, each of
// which hands it to its handler for topic once.
func (n *Node) Broadcast(ctx context.Context, topic string, payload []byte) (MsgID, error) {
	var id MsgID
	rand.Read(id[:])
	return id, n.BroadcastID(ctx, topic, id, payload)
}

// BroadcastID is Broadcast with an id the caller derives from the content
// (say a hash), so that it can later ForgetBroadcast it. An id already
// seen is not sent again.
func (n *Node) BroadcastID(ctx context.Context, topic string, id MsgID, payload []byte) error {
	if err := checkProtocol(topic); err != nil {
		return fmt.Errorf("mesh: %w", err)
	}
	if len(payload) > MaxBroadcast {
		return fmt.Errorf("%w: broadcast of %d bytes, limit %d", ErrTooLarge, len(payload), MaxBroadcast)
	}
	n.bc.mu.Lock()
	_, seen := n.bc.seen[id]
	n.bc.mu.Unlock()
	if seen {
		return nil
	}
	m := &bcMsg{id: id, origin: n.id, sent: time.Now().UnixMilli(), topic: topic, payload: append([]byte(nil), payload...)}
	b := n.bc
	b.mu.Lock()
	b.markSeen(id, time.Now())
	b.remember(m)
	b.stats.Originated++
	b.spread(m, "", nil)
	b.mu.Unlock()
	return nil
}

// ForgetBroadcast stops this node from passing on message id if it holds
// it and match(payload) says so (nil match: whatever it holds under id).
// The message leaves the cache that answers GRAFTs and late announcements
// (a chat message its author retracted, say) and stays seen, so it is not
// taken again. It reports whether it forgot a message.
//
// An id this node does not hold is left alone: it is not marked seen, so
// that nobody can keep a message from being delivered by asking nodes to
// forget it before it arrives; match lets the caller check that the
// message is the one the request may name (say, by the same author).
// Copies other nodes hold are theirs to forget.
//
// match runs without the node's locks; it must not keep or change payload.
func (n *Node) ForgetBroadcast(id MsgID, match func(payload []byte) bool) bool {
	b := n.bc
	b.mu.Lock()
	e := b.cache[id]
	b.mu.Unlock()
	if e == nil {
		return false
	}
	m := e.Value.(*bcMsg) // set once by remember; the payload is never changed
	if match != nil && !match(m.payload) {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cache[id] != e {
		return false // it left the cache meanwhile
	}
	b.cacheLen -= len(m.payload)
	b.cached.Remove(e)
	delete(b.cache, id)
	return true
}

// BroadcastStats reports the broadcast counters.
func (n *Node) BroadcastStats() BroadcastStats {
	n.bc.mu.Lock()
	defer n.bc.mu.Unlock()
	return n.bc.stats
}

// spread sends m in full to eager peers and announces it to lazy ones,
// except to from and to the peers in holders, which announced it to this
// node and so have it. b.mu is held.
func (b *broadcaster) spread(m *bcMsg, from ID, holders []ID) {
	var frame []byte
	for id, p := range b.peers {
		if id == from || id == m.origin || containsID(holders, id) {
			continue
		}
		if p.eager {
			if frame == nil {
				frame = encodeGossip(m)
			}
			if b.enqueue(p, frame) {
				b.stats.Gossips++
			}
		} else if len(p.pending) < 4*maxIHave {
			p.pending = append(p.pending, m.id)
		}
	}
}

// enqueue queues a frame for a peer without blocking; a full queue drops
// it (the peer can still GRAFT what it misses). b.mu is held.
func (b *broadcaster) enqueue(p *bcPeer, frame []byte) bool {
	select {
	case p.queue <- frame:
		return true
	default:
		b.stats.Dropped++
		return false
	}
}

// peerUp makes a new link eager, as Plumtree starts every link.
func (b *broadcaster) peerUp(id ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped || b.peers[id] != nil {
		return
	}
	cfg := &b.n.cfg
	p := &bcPeer{
		eager: true,
		queue: make(chan []byte, peerQueueLen),
		limit: rate.NewLimiter(rate.Limit(cfg.BroadcastRate), cfg.BroadcastBurst),
		// Half the burst the peer takes: frames sent spaced out may
		// still arrive bunched.
		out:  rate.NewLimiter(rate.Limit(cfg.BroadcastRate), max(1, cfg.BroadcastBurst/2)),
		stop: make(chan struct{}),
	}
	b.peers[id] = p
	// A new link may be a node's way back after it lost links: tell it
	// what passed recently, so it can GRAFT what it missed. Directory
	// records are left out: the snapshot each end sends a new link
	// holds the latest record of every node, and a newcomer would
	// otherwise pull again every record issued in the last
	// MessageCacheAge (thousands, in a mesh of hundreds under churn).
	p.pending = b.catchUp(time.Now())
	b.wg.Go(func() { b.sender(id, p) })
}

// catchUp lists what a link that comes up at now is told of: the cached
// messages due in the last MessageCacheAge, directory records left out,
// up to and including now's millisecond. Times are kept to the
// millisecond, and a message taken in the same millisecond as the link
// came up, but before, was spread before the peer was known: leaving it
// out (recent's bound is exclusive) left the new link to hear of it only
// at the next gossip round, and never outside PlumtreeMode. b.mu is held.
func (b *broadcaster) catchUp(now time.Time) []MsgID {
	return b.recent(now.Add(-b.n.cfg.MessageCacheAge), now.Add(time.Millisecond), true)
}

// recent lists the cached messages due in [from, to), oldest first, at
// most 4*maxIHave, without directory records if skipDir. A message is
// due when this node took it, or at its send time if that is later (a
// message stamped ahead of a validator's clock is announced again once
// its time has come; see ValidateBroadcast). Not its send time alone: a
// node that takes a message late (pulled after a lost frame, under
// churn) must still announce it, or the nodes around it that lost it too
// never hear of it again. b.mu is held.
func (b *broadcaster) recent(from, to time.Time, skipDir bool) []MsgID {
	f, t := from.UnixMilli(), to.UnixMilli()
	// The cache is in the order messages were taken; those stamped ahead
	// are looked for this far back.
	stop := f - (maxAheadRounds * b.n.cfg.GossipInterval).Milliseconds()
	var ids []MsgID
	for e := b.cached.Back(); e != nil && len(ids) < 4*maxIHave; e = e.Prev() {
		m := e.Value.(*bcMsg)
		if m.at < stop {
			break
		}
		if due := max(m.at, m.sent); due >= f && due < t && !(skipDir && m.topic == dirTopic) {
			ids = append(ids, m.id)
		}
	}
	slices.Reverse(ids)
	return ids
}

// maxAheadRounds bounds, in GossipIntervals, how far ahead of its taking a
// message's send time may be for the message to be announced again then.
const maxAheadRounds = 4

func (b *broadcaster) peerDown(id ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.peers[id]; p != nil {
		close(p.stop)
		delete(b.peers, id)
	}
	for mid, ms := range b.missing {
		if ms.asked == id {
			ms.asked = "" // a new link from id gets a new count
		}
		for i, a := range ms.announcers {
			if a == id {
				ms.announcers = append(ms.announcers[:i], ms.announcers[i+1:]...)
				if i < ms.grafted {
					ms.grafted--
				}
				break
			}
		}
		switch {
		case len(ms.announcers) == 0:
			b.dropMissing(mid)
		case ms.owner == id:
			// The next announcer's share carries it now.
			ms.owner = ms.announcers[0]
			b.owned[ms.owner]++
		}
	}
	delete(b.owned, id)
}

// dropMissing forgets a message known by IHAVE only, if it is. b.mu is
// held.
func (b *broadcaster) dropMissing(id MsgID) {
	ms := b.missing[id]
	if ms == nil {
		return
	}
	delete(b.missing, id)
	b.unask(ms)
	if k := b.owned[ms.owner] - 1; k > 0 {
		b.owned[ms.owner] = k
	} else {
		delete(b.owned, ms.owner)
	}
}

// unask takes a missing message out of the GRAFTs in flight of the peer
// it was last asked of. b.mu is held.
func (b *broadcaster) unask(ms *missing) {
	if p := b.peers[ms.asked]; p != nil && ms.asked != "" {
		p.grafting--
	}
	ms.asked = ""
}

// sender writes a peer's queued frames until the peer goes away, no faster
// than the peer takes them (BroadcastRate): a node passes on what all its
// neighbours send it, and a peer scores down, then bans, a neighbour that
// sends faster. Past the rate, frames wait in the queue, and a full queue
// drops them (enqueue) without blame.
func (b *broadcaster) sender(id ID, p *bcPeer) {
	for {
		select {
		case f := <-p.queue:
			if d := p.out.Reserve().Delay(); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-p.stop:
					t.Stop()
					return
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := b.n.Send(ctx, id, bcastProto, f)
			cancel()
			if err != nil {
				b.mu.Lock()
				b.stats.Dropped++
				b.mu.Unlock()
				if errors.Is(err, ErrNotConnected) {
					return
				}
			}
		case <-p.stop:
			return
		}
	}
}

// stop ends the sender goroutines.
func (b *broadcaster) stop() {
	b.mu.Lock()
	b.stopped = true
	for id, p := range b.peers {
		close(p.stop)
		delete(b.peers, id)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// run flushes IHAVE batches and sends GRAFTs for overdue messages until
// ctx ends.
func (b *broadcaster) run(ctx context.Context) {
	t := time.NewTicker(b.n.cfg.IHaveInterval)
	defer t.Stop()
	gossip := time.NewTicker(b.n.cfg.GossipInterval)
	defer gossip.Stop()
	// Messages younger than GraftTimeout may still be on their way down
	// the tree; they are announced in the next round.
	last := time.Now().Add(-b.n.cfg.GraftTimeout)
	for {
		select {
		case now := <-t.C:
			b.tick(now)
		case now := <-gossip.C:
			upto := now.Add(-b.n.cfg.GraftTimeout)
			b.gossip(last, upto)
			last = upto
		case <-ctx.Done():
			return
		}
	}
}

// gossip announces to every peer the messages that passed since the last
// round. A frame lost in flight (a link that closed, a peer that lagged)
// is then still heard of by IHAVE, and grafted: Plumtree alone announces
// each message once per lazy link.
func (b *broadcaster) gossip(from, to time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n.cfg.BroadcastMode != PlumtreeMode {
		return
	}
	ids := b.recent(from, to, false)
	if len(ids) == 0 {
		return
	}
	for _, p := range b.peers {
		if len(p.pending)+len(ids) <= 4*maxIHave {
			p.pending = append(p.pending, ids...)
		}
	}
}

func (b *broadcaster) tick(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.peers {
		for len(p.pending) > 0 {
			k := min(len(p.pending), maxIHave)
			if b.enqueue(p, encodeIHave(p.pending[:k])) {
				b.stats.IHaves += uint64(k)
			}
			p.pending = p.pending[k:]
		}
		p.pending = nil
	}
	// GRAFTs are paced, maxGraftsPerTick per peer, only while the peer's
	// queue is under graftQueueRoom, and maxGraftsInFlight messages at a
	// time: a node that hears of hundreds of messages at once (catching
	// up on a new link) or whose link to the announcer is slow for a
	// while (a loaded machine) would otherwise fill the peer's queue or
	// the peer's own, and a GRAFT dropped there counts as asked, so the
	// message was lost once every round had been dropped. A GRAFT for a
	// busy peer is asked of another announcer
	// instead, or waits for a later tick. A peer that never drains its
	// queue thus holds, for as long as its link lasts, only messages
	// that nobody else announced, within its own share of the table.
	queued := make(map[ID]int)
	busy := func(ms *missing, a ID) bool {
		p := b.peers[a]
		return p != nil && (queued[a] >= maxGraftsPerTick || len(p.queue) >= graftQueueRoom ||
			(ms.asked != a && p.grafting >= maxGraftsInFlight))
	}
	for id, ms := range b.missing {
		if now.Before(ms.deadline) {
			continue
		}
		r := b.rejection(id, now)
		a, ok := nextAnnouncer(ms, r)
		if !ok {
			b.dropMissing(id)
			continue
		}
		if busy(ms, a) {
			next, ok := idleAnnouncer(ms, r, busy)
			if !ok {
				// While it waits for another peer it holds no window:
				// two messages asked of two peers in turn could
				// otherwise each wait for the other's window for ever.
				// Waiting for the peer it is asked of (its queue full),
				// it keeps its place in that peer's window.
				if ms.asked != a {
					b.unask(ms)
				}
				continue
			}
			a = next
		}
		p := b.peers[a]
		ms.grafted++
		if r != nil {
			r.from = append(r.from, a)
		}
		ms.deadline = now.Add(b.n.cfg.GraftRetry << ms.round)
		if p != nil {
			if ms.asked != a {
				b.unask(ms)
				ms.asked = a
				p.grafting++
			}
			p.eager = true
			queued[a]++
			if b.enqueue(p, encodeGraft(id)) {
				b.stats.Grafts++
			}
		}
	}
	b.expire(now)
}

// nextAnnouncer returns the next announcer of a missing message to GRAFT
// it from (ms.announcers[ms.grafted] once the caller has asked it),
// passing for good over those that sent a copy that failed validation or
// were asked for it already. Past the last announcer it starts the next
// round, up to graftRounds: a GRAFT or its answer may be lost with a link
// that closes or at a full queue, and once a node gives a message up, it
// has it again only if someone announces it again, which its neighbours,
// having announced it already, do not. b.mu is held.
func nextAnnouncer(ms *missing, r *rejection) (ID, bool) {
	for {
		for ms.grafted < len(ms.announcers) {
			a := ms.announcers[ms.grafted]
			if r == nil || (!containsID(r.from, a) && len(r.from) < maxAnnouncers) {
				return a, true
			}
			ms.grafted++
		}
		if r != nil || ms.round+1 >= graftRounds || len(ms.announcers) == 0 {
			return "", false
		}
		ms.round++
		ms.grafted = 0
	}
}

// idleAnnouncer swaps into ms.announcers[ms.grafted] the first announcer
// after it that is not busy and has not sent or been asked for a copy
// that failed validation, and returns it; the busy one is asked later in
// the round. b.mu is held.
func idleAnnouncer(ms *missing, r *rejection, busy func(*missing, ID) bool) (ID, bool) {
	for j := ms.grafted + 1; j < len(ms.announcers); j++ {
		a := ms.announcers[j]
		if busy(ms, a) || (r != nil && containsID(r.from, a)) {
			continue
		}
		ms.announcers[ms.grafted], ms.announcers[j] = a, ms.announcers[ms.grafted]
		return a, true
	}
	return "", false
}

// rejection returns the live record of a rejected message id, or nil.
// b.mu is held.
func (b *broadcaster) rejection(id MsgID, now time.Time) *rejection {
	e := b.rejected[id]
	if e == nil {
		return nil
	}
	r := e.Value.(*rejection)
	if now.After(r.until) {
		b.dropRejection(e)
		return nil
	}
	return r
}

// reject remembers that a copy of m from peer from failed validation, so
// that m is not pulled again from the peers that offered it. b.mu is held.
func (b *broadcaster) reject(m *bcMsg, from ID, notYet bool, now time.Time) {
	hold := b.n.cfg.BroadcastMaxAge
	if notYet {
		// Not the message's fault, maybe: check a copy offered after the
		// relays' next gossip rounds, which announce a message again
		// once its send time has passed.
		hold = 2 * b.n.cfg.GossipInterval
	}
	r := &rejection{id: m.id, sum: contentSum(m), until: now.Add(hold), from: []ID{from}}
	if e := b.rejected[m.id]; e != nil {
		// Another bad copy: the peers that offered the first are not
		// asked again either.
		for _, a := range e.Value.(*rejection).from {
			if !containsID(r.from, a) && len(r.from) < maxAnnouncers {
				r.from = append(r.from, a)
			}
		}
		b.rejList.Remove(e)
	}
	b.rejected[m.id] = b.rejList.PushBack(r)
	for b.rejList.Len() > maxRejected {
		b.dropRejection(b.rejList.Front())
	}
}

func (b *broadcaster) dropRejection(e *list.Element) {
	r := e.Value.(*rejection)
	b.rejList.Remove(e)
	if b.rejected[r.id] == e {
		delete(b.rejected, r.id)
	}
}

// contentSum hashes what a validator sees of a message, but the hops and
// the sender, which differ between honest copies.
func contentSum(m *bcMsg) [32]byte {
	h := sha256.New()
	var hdr [binary.MaxVarintLen64 + 1]byte
	h.Write(binary.AppendUvarint(hdr[:0], uint64(m.sent)))
	h.Write([]byte{byte(len(m.origin))})
	h.Write([]byte(m.origin))
	h.Write([]byte{byte(len(m.topic))})
	h.Write([]byte(m.topic))
	h.Write(m.payload)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// expire forgets seen ids, rejected ids and cached messages past their
// age. b.mu is held.
func (b *broadcaster) expire(now time.Time) {
	for e := b.rejList.Front(); e != nil && now.After(e.Value.(*rejection).until); e = b.rejList.Front() {
		b.dropRejection(e)
	}
	maxAge := b.n.cfg.BroadcastMaxAge
	for e := b.seenList.Front(); e != nil; e = b.seenList.Front() {
		s := e.Value.(seenEntry)
		if now.Sub(s.at) < maxAge && b.seenList.Len() <= b.n.cfg.SeenCacheSize {
			break
		}
		b.seenList.Remove(e)
		delete(b.seen, s.id)
	}
	for e := b.cached.Front(); e != nil; e = b.cached.Front() {
		m := e.Value.(*bcMsg)
		if now.Sub(time.UnixMilli(m.sent)) < b.n.cfg.MessageCacheAge && b.cacheLen <= b.n.cfg.MessageCacheBytes {
			break
		}
		b.cached.Remove(e)
		delete(b.cache, m.id)
		b.cacheLen -= len(m.payload)
	}
}

// markSeen records id. b.mu is held.
func (b *broadcaster) markSeen(id MsgID, now time.Time) {
	b.seen[id] = now
	b.seenList.PushBack(seenEntry{id: id, at: now})
	b.dropMissing(id)
	if e := b.rejected[id]; e != nil {
		b.dropRejection(e) // a valid copy came after a bad one
	}
}

// remember caches m to answer GRAFTs. b.mu is held.
func (b *broadcaster) remember(m *bcMsg) {
	m.at = time.Now().UnixMilli()
	b.cache[m.id] = b.cached.PushBack(m)
	b.cacheLen += len(m.payload)
}

// handle is the mesh handler of the broadcast protocol: it admits a frame
// (the link is still up, decoding; the sender's rate limit was charged as
// the frame arrived, see arrive) and passes it to the function for its
// kind. Those functions are called without b.mu and take it
// themselves; the Penalize calls and the topic handler run without it,
// since a ban takes the link down, which takes b.mu.
func (b *broadcaster) handle(ctx context.Context, msg *Message) ([]byte, error) {
	from := msg.From
	p, ok := b.admit(from)
	if !ok {
		return nil, nil
	}
	kind, m, ids, err := decodeBcast(msg.Payload)
	if err != nil {
		b.mu.Lock()
		b.stats.Dropped++
		b.mu.Unlock()
		b.n.Penalize(from, err.Error())
		return nil, nil
	}
	now := time.Now()
	switch kind {
	case bcGossip:
		b.onGossip(p, from, m, now)
	case bcIHave:
		b.onIHave(from, ids, now)
	case bcGraft:
		b.onGraft(p, ids[0])
	case bcPrune:
		b.onPrune(p)
	}
	return nil, nil
}

// admit returns the state of the peer a frame came from, or false if the
// link is going away and the frame is to be dropped. Called without b.mu.
func (b *broadcaster) admit(from ID) (*bcPeer, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.peers[from]
	return p, p != nil
}

// arrive charges a broadcast frame to its sender's rate limit as it comes
// off the link, and reports false if the sender is over BroadcastRate: the
// frame is dropped and the sender scored down. It is charged on arrival,
// not when handled: a flood that outruns this node's handlers would
// otherwise overflow the link's queue, where frames are dropped without
// blame, and reach the limit only at the rate this node handles frames,
// so that a peer that floods a busy node faster than it can handle
// would never be cut off. A frame that arrives before the link is
// registered is let through (handle drops it if the link never comes
// up). Called without b.mu, on the link's receiving goroutine.
func (b *broadcaster) arrive(from ID) bool {
	b.mu.Lock()
	p := b.peers[from]
	if p == nil || p.limit.Allow() {
		b.mu.Unlock()
		return true
	}
	b.stats.Dropped++
	b.mu.Unlock()
	b.n.Penalize(from, "broadcast flood")
	return false
}

// onGossip handles a full copy of a message: a copy of one already seen
// prunes the sender; a new one is validated, then delivered and passed
// on. Called without b.mu.
func (b *broadcaster) onGossip(p *bcPeer, from ID, m *bcMsg, now time.Time) {
	b.mu.Lock()
	if !b.fresh(p, m, now) {
		b.mu.Unlock()
		return
	}
	m.hops++
	bm := BroadcastMsg{ID: m.id, Origin: m.origin, Topic: m.topic, Payload: m.payload,
		Sent: time.UnixMilli(m.sent), Hops: m.hops, From: from}
	if check := b.valid[m.topic]; check != nil {
		ok, blame := b.validate(check, m, bm, from, now)
		if !ok {
			b.mu.Unlock()
			if blame != nil {
				b.n.Penalize(from, "broadcast "+m.topic+": "+blame.Error())
			}
			return
		}
	}
	h := b.deliver(p, from, m, now)
	b.mu.Unlock()
	if h != nil {
		h(bm)
	}
}

// fresh counts a full copy of m and reports whether m is new. A copy of a
// message already seen (or too old to tell) is a duplicate: in Plumtree
// mode it turns the sender's link lazy with a PRUNE. b.mu is held.
func (b *broadcaster) fresh(p *bcPeer, m *bcMsg, now time.Time) bool {
	b.stats.Received++
	// Count per topic only for topics with a handler, so that a peer
	// cannot grow the map with made-up topics.
	ts := b.byTopic[m.topic]
	if ts == nil && b.handlers[m.topic] != nil {
		ts = &TopicStats{}
		b.byTopic[m.topic] = ts
	}
	if ts != nil {
		ts.Received++
	}
	age := now.Sub(time.UnixMilli(m.sent))
	if _, dup := b.seen[m.id]; !dup && age <= b.n.cfg.BroadcastMaxAge && age >= -b.n.cfg.BroadcastMaxAge {
		return true
	}
	// A copy of what we have (or too old to tell): prune the sender.
	b.stats.Duplicates++
	if ts != nil {
		ts.Duplicates++
	}
	// PRUNE on every duplicate, as the paper does: if our PRUNE
	// crossed the sender's GRAFT, it still hears it next time.
	if b.n.cfg.BroadcastMode == PlumtreeMode {
		p.eager = false
		if b.enqueue(p, []byte{byte(bcPrune)}) {
			b.stats.Prunes++
		}
	}
	return false
}

// validate runs the topic's check on a new message m (bm as the check
// sees it) and reports whether to deliver it, and, if not, the error to
// hold against the sender (nil: nobody is to blame). It is called with
// b.mu held and returns with it held, but releases it while check runs:
// the caller must not rely on what it read under b.mu before.
func (b *broadcaster) validate(check func(BroadcastMsg) error, m *bcMsg, bm BroadcastMsg, from ID, now time.Time) (bool, error) {
	if r := b.rejection(m.id, now); r != nil && r.sum == contentSum(m) {
		// The copy that failed already: not checked again, and not held
		// against this sender, which may not check this topic.
		b.stats.Rejected++
		if !containsID(r.from, from) && len(r.from) < maxAnnouncers {
			r.from = append(r.from, from)
		}
		return false, nil
	}
	b.mu.Unlock()
	err := check(bm)
	b.mu.Lock()
	if err != nil {
		// Not marked seen: a valid copy under the same id may follow (a
		// hostile peer can send a corrupt copy of a message under its
		// id).
		notYet := errors.Is(err, ErrNotYetValid)
		b.stats.Rejected++
		b.reject(m, from, notYet, now)
		if notYet {
			return false, nil
		}
		return false, err
	}
	if _, dup := b.seen[m.id]; dup {
		b.stats.Duplicates++ // another copy won the race
		return false, nil
	}
	return true, nil
}

// deliver marks a new, valid message seen, caches it, turns the sender's
// link eager and passes the message on. It returns the topic's handler
// (or nil), for the caller to run once it has released b.mu. b.mu is
// held.
func (b *broadcaster) deliver(p *bcPeer, from ID, m *bcMsg, now time.Time) BroadcastHandler {
	// Peers that announced it have it: a node that catches up on a new
	// link (every neighbour announces what passed in the last
	// MessageCacheAge) pulls each message once and pushes it to none of
	// them.
	var holders []ID
	if ms := b.missing[m.id]; ms != nil {
		holders = ms.announcers
	}
	b.markSeen(m.id, now)
	b.remember(m)
	p.eager = true
	b.spread(m, from, holders)
	b.stats.Delivered++
	return b.handlers[m.topic]
}

// onIHave records the announcer of each announced message not seen yet,
// for tick to GRAFT it from if it does not arrive in GraftTimeout.
// Called without b.mu.
func (b *broadcaster) onIHave(from ID, ids []MsgID, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, id := range ids {
		if _, ok := b.seen[id]; ok {
			continue
		}
		if r := b.rejection(id, now); r != nil && (containsID(r.from, from) || len(r.from) >= maxAnnouncers) {
			continue // it sent the copy that failed, or was asked for it
		}
		ms := b.missing[id]
		if ms == nil {
			if len(b.missing) >= maxMissing || b.owned[from] >= maxMissingPerPeer {
				continue
			}
			ms = &missing{owner: from, deadline: now.Add(b.n.cfg.GraftTimeout)}
			b.missing[id] = ms
			b.owned[from]++
		}
		if len(ms.announcers) < maxAnnouncers && !containsID(ms.announcers, from) {
			ms.announcers = append(ms.announcers, from)
		}
	}
}

// onGraft turns the peer's link eager and sends it the message it asks
// for, if still cached. Called without b.mu.
func (b *broadcaster) onGraft(p *bcPeer, id MsgID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p.eager = true
	if e := b.cache[id]; e != nil {
		if b.enqueue(p, encodeGossip(e.Value.(*bcMsg))) {
			b.stats.Gossips++
		}
	}
}

// onPrune turns the peer's link lazy (in Plumtree mode; flooding keeps
// every link eager). Called without b.mu.
func (b *broadcaster) onPrune(p *bcPeer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n.cfg.BroadcastMode == PlumtreeMode {
		p.eager = false
	}
}

func containsID(ids []ID, id ID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// Wire format of the broadcast protocol, one frame per message:
//
//	GOSSIP: 1 | id[16] | sent (uvarint, unix ms) | hops (uvarint) | origin (len byte + bytes) | topic (len byte + bytes) | payload
//	IHAVE:  2 | id[16]...
//	GRAFT:  3 | id[16]
//	PRUNE:  4
func encodeGossip(m *bcMsg) []byte {
	b := make([]byte, 0, 1+16+20+2+len(m.origin)+len(m.topic)+len(m.payload))
	b = append(b, byte(bcGossip))
	b = append(b, m.id[:]...)
	b = binary.AppendUvarint(b, uint64(m.sent))
	b = binary.AppendUvarint(b, uint64(m.hops))
	b = append(b, byte(len(m.origin)))
	b = append(b, m.origin...)
	b = append(b, byte(len(m.topic)))
	b = append(b, m.topic...)
	return append(b, m.payload...)
}

func encodeIHave(ids []MsgID) []byte {
	b := make([]byte, 1, 1+16*len(ids))
	b[0] = byte(bcIHave)
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b
}

func encodeGraft(id MsgID) []byte {
	return append([]byte{byte(bcGraft)}, id[:]...)
}

var errBadBcast = errors.New("bad broadcast frame")

// decodeBcast parses one broadcast frame. The payload of a GOSSIP is
// copied, so the caller may keep it.
func decodeBcast(b []byte) (bcKind, *bcMsg, []MsgID, error) {
	if len(b) == 0 {
		return 0, nil, nil, errBadBcast
	}
	kind, b := bcKind(b[0]), b[1:]
	switch kind {
	case bcGossip:
		if len(b) < 16 {
			return 0, nil, nil, errBadBcast
		}
		m := &bcMsg{}
		copy(m.id[:], b)
		b = b[16:]
		sent, n := binary.Uvarint(b)
		if n <= 0 || sent > 1<<53 {
			return 0, nil, nil, errBadBcast
		}
		b = b[n:]
		hops, n := binary.Uvarint(b)
		if n <= 0 || hops > 1<<16 {
			return 0, nil, nil, errBadBcast
		}
		b = b[n:]
		m.sent, m.hops = int64(sent), int(hops)
		origin, rest, ok := cutLenPrefixed(b)
		if !ok {
			return 0, nil, nil, errBadBcast
		}
		id, err := ParseID(origin)
		if err != nil {
			return 0, nil, nil, fmt.Errorf("%w: %v", errBadBcast, err)
		}
		topic, rest, ok := cutLenPrefixed(rest)
		if !ok || checkProtocol(topic) != nil {
			return 0, nil, nil, errBadBcast
		}
		if len(rest) > MaxBroadcast {
			return 0, nil, nil, fmt.Errorf("%w: payload of %d bytes", errBadBcast, len(rest))
		}
		m.origin, m.topic, m.payload = id, topic, append([]byte(nil), rest...)
		return kind, m, nil, nil
	case bcIHave:
		if len(b) == 0 || len(b)%16 != 0 || len(b)/16 > maxIHave {
			return 0, nil, nil, errBadBcast
		}
		ids := make([]MsgID, len(b)/16)
		for i := range ids {
			copy(ids[i][:], b[16*i:])
		}
		return kind, nil, ids, nil
	case bcGraft:
		if len(b) != 16 {
			return 0, nil, nil, errBadBcast
		}
		var id MsgID
		copy(id[:], b)
		return kind, nil, []MsgID{id}, nil
	case bcPrune:
		if len(b) != 0 {
			return 0, nil, nil, errBadBcast
		}
		return kind, nil, nil, nil
	}
	return 0, nil, nil, errBadBcast
}

func cutLenPrefixed(b []byte) (string, []byte, bool) {
	if len(b) == 0 || int(b[0]) > len(b)-1 {
		return "", nil, false
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], true
}
