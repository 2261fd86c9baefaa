package mesh

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/catnest/catnest/mesh/signal"
)

// Exports for the external tests, which forge what a hostile peer sends.

type WireRecord = wireRecord

var SignRecord = signRecord

const (
	BcastProto = bcastProto
	DirTopic   = dirTopic
	DirProto   = dirProto
	// BridgeProto is the mesh's one request protocol.
	BridgeProto = bridgeProto
)

// FillDirectory fills n's directory up to its limit with records of
// made-up nodes that do not expire.
func FillDirectory(n *Node) {
	d := n.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := 0; len(d.records) < maxRecords; i++ {
		id := ID(fmt.Sprintf("fake-%06d", i))
		d.records[id] = &Record{ID: id, Heard: time.Now().Add(time.Hour)}
	}
}

// EncodeGossip builds a broadcast GOSSIP frame.
func EncodeGossip(origin ID, topic string, payload []byte, sent time.Time) []byte {
	m := &bcMsg{origin: origin, topic: topic, payload: payload, sent: sent.UnixMilli()}
	rand.Read(m.id[:])
	return encodeGossip(m)
}

// EncodeIHave builds an IHAVE frame.
func EncodeIHave(ids ...MsgID) []byte { return encodeIHave(ids) }

// EncodeGossipID builds a broadcast GOSSIP frame with a chosen id, as a
// peer that relays (or forges) a given message sends it.
func EncodeGossipID(id MsgID, origin ID, topic string, payload []byte, sent time.Time) []byte {
	return encodeGossip(&bcMsg{id: id, origin: origin, topic: topic, payload: payload, sent: sent.UnixMilli()})
}

// Frame kinds of the broadcast protocol, for tests that play a peer.
const (
	BcGossip = byte(bcGossip)
	BcIHave  = byte(bcIHave)
	BcGraft  = byte(bcGraft)
)

// EncodeGraftFrame builds a GRAFT frame.
func EncodeGraftFrame(id MsgID) []byte { return encodeGraft(id) }

// CatchUpAt is the list n would send a link that came up at now.
func CatchUpAt(n *Node, now time.Time) []MsgID {
	n.bc.mu.Lock()
	defer n.bc.mu.Unlock()
	return n.bc.catchUp(now)
}

// TakenAt is when n took message id (to the millisecond, as n keeps it),
// or false if n does not hold it.
func TakenAt(n *Node, id MsgID) (time.Time, bool) {
	n.bc.mu.Lock()
	defer n.bc.mu.Unlock()
	e := n.bc.cache[id]
	if e == nil {
		return time.Time{}, false
	}
	return time.UnixMilli(e.Value.(*bcMsg).at), true
}

// PlantRoute makes n believe, for the next minute, that path (from n) is
// the way to its last node, as when that node signaled n along it a moment
// ago: the stale routes a dial meets when a hop's link just went.
func PlantRoute(n *Node, path ...ID) { n.routes.put(path[len(path)-1], path) }

// StaleRoute makes n take path (from n) as its way to path's last node
// every time it signals that node through the mesh, as it does when the
// records it draws paths from lag the links: every path it tries is the
// broken one. Call it before n serves.
func StaleRoute(n *Node, path ...ID) {
	t := n.transport.(*rtcTransport)
	route, dst := t.route, path[len(path)-1]
	t.route = func(ctx context.Context, to ID, m signal.Message) error {
		if to == dst {
			n.routes.put(dst, path)
		}
		return route(ctx, to, m)
	}
}

// StaleAnswerRoute makes n take path (from n) for the first answer it
// sends to path's last node through the mesh, as when the route it learned
// from the offer broke at a hop since; later signals take the routes n
// finds itself. Call it before n serves.
func StaleAnswerRoute(n *Node, path ...ID) {
	t := n.transport.(*rtcTransport)
	route, dst := t.route, path[len(path)-1]
	var once sync.Once
	t.route = func(ctx context.Context, to ID, m signal.Message) error {
		if to == dst && m.Type == signal.TypeAnswer {
			once.Do(func() { n.routes.put(dst, path) })
		}
		return route(ctx, to, m)
	}
}

// CloseLinkOnOffer makes n, the next time it is handed a relayed offer
// from its neighbour from, close its link to from. With passOn nil it
// drops the offer, as a node trimming from does with the offer still
// queued on the link: no node on the way reports that loss. Otherwise it
// holds the offer until passOn reports true (it asks every 10 ms, for at
// most 30 s) and passes it on then, as when the offer left before the
// link closed and lagged on its way; the returned channel is closed once
// it has. Call it while n serves.
func CloseLinkOnOffer(n *Node, from ID, passOn func() bool) <-chan struct{} {
	passed := make(chan struct{})
	n.hmu.Lock()
	defer n.hmu.Unlock()
	h := n.hand[sigProto]
	var once sync.Once
	n.hand[sigProto] = HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) {
		var f relayFrame
		if m.From == from && json.Unmarshal(m.Payload, &f) == nil {
			if sm, err := signal.DecodeMessage(f.Msg); err == nil && sm.Type == signal.TypeOffer {
				first := false
				once.Do(func() { first = true })
				if first {
					n.Disconnect(from)
					if passOn != nil {
						// Not on ctx: it is the closed link's.
						go func() {
							defer close(passed)
							for end := time.Now().Add(30 * time.Second); !passOn() && time.Now().Before(end); {
								time.Sleep(10 * time.Millisecond)
							}
							h.ServeMesh(context.Background(), m)
						}()
					}
					return nil, nil
				}
			}
		}
		return h.ServeMesh(ctx, m)
	})
	return passed
}

// GotAnswer reports whether n has a dial to dst in progress that has its
// answer.
func GotAnswer(n *Node, dst ID) bool {
	t := n.transport.(*rtcTransport)
	t.mu.Lock()
	var cs []*rtcConn
	for _, c := range t.sessions {
		if c.remote == dst && c.outbound && !c.isReady() {
			cs = append(cs, c)
		}
	}
	t.mu.Unlock()
	for _, c := range cs {
		if c.answered() {
			return true
		}
	}
	return false
}

// Answering reports whether n has an inbound handshake with src in
// progress.
func Answering(n *Node, src ID) bool {
	t := n.transport.(*rtcTransport)
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inbound[src] != nil
}

// Dialing reports whether n has a dial to id in flight.
func Dialing(n *Node, id ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.dialing[id] != nil
}

// BackedOff reports whether n's maintainer holds off dialing id after a
// failed dial.
func BackedOff(n *Node, id ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.backoff.blocked(id, time.Now())
	return ok
}

// QueueUse is what a node holds for its peers.
type QueueUse struct {
	// Queued: the payload bytes its links' own counters say wait in
	// their queues.
	Queued int64
	// Counted: the bytes its queue budget counts (those, their overhead
	// and the requests in handlers); Pooled, those beyond the links'
	// shares, which the budget's Pool bounds; Limit, all it allows.
	Counted, Pooled, Pool, Limit int64
}

// QueueUseOf reports what n holds for its peers.
func QueueUseOf(n *Node) QueueUse {
	n.mu.Lock()
	links := make([]*link, 0, len(n.links))
	for _, l := range n.links {
		links = append(links, l)
	}
	n.mu.Unlock()
	var u QueueUse
	for _, l := range links {
		u.Queued += l.queued.Load() + l.sysQueued.Load()
		l.mu.Lock()
		u.Queued += l.waitingBytes
		l.mu.Unlock()
	}
	u.Counted, u.Pooled = n.budget.held()
	u.Pool, u.Limit = n.budget.pool, n.budget.limit
	return u
}

// HelloFrame is the hello a peer of this version sends.
func HelloFrame(name string) []byte {
	b, _ := json.Marshal(hello{Name: name, Version: helloVersion})
	return appendFrame(nil, frame{kind: kindHello, payload: b})
}

// RequestFrame is a request frame.
func RequestFrame(id uint64, proto string, payload []byte) []byte {
	return appendFrame(nil, frame{kind: kindReq, id: id, proto: proto, payload: payload})
}

// MessageFrame is a one-way message frame.
func MessageFrame(proto string, payload []byte) []byte {
	return appendFrame(nil, frame{kind: kindMsg, proto: proto, payload: payload})
}

// SlotPeers lists the peers that hold one of n's link slots, and how many
// links of theirs hold it.
func SlotPeers(n *Node) map[ID]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := make(map[ID]int, len(n.slots))
	for id, s := range n.slots {
		m[id] = s.refs
	}
	return m
}

// HandlerOf is the handler n has for proto, the mesh's own included.
func HandlerOf(n *Node, proto string) Handler { return n.handler(proto) }

// DialWaiters reports how many connects wait for n's dial in flight to id.
func DialWaiters(n *Node, id ID) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if d := n.dialing[id]; d != nil {
		return d.waiters
	}
	return 0
}

// Trim runs n's trim of its worst link, sparing peers with spare or fewer
// links, as the maintainer does above its target, and returns the peer it
// dropped, if any.
func Trim(n *Node, spare int) ID { return n.trim(context.Background(), spare) }

// RefuseTrims makes n say no to every neighbour that asks to drop its
// link, as a peer that wants to keep its slots whatever its links.
func RefuseTrims(n *Node) {
	n.hmu.Lock()
	defer n.hmu.Unlock()
	n.hand[trimProto] = HandlerFunc(func(context.Context, *Message) ([]byte, error) { return []byte{trimNo}, nil })
}

// AgeTrimRefusal moves the first no, in the current run of noes, of the
// peer id to a trim of n's link to it d into the past: as if the peer had
// said no since.
func AgeTrimRefusal(n *Node, id ID, d time.Duration) {
	if l := n.link(id); l != nil {
		l.trimRefused.Add(-int64(d))
	}
}

// PauseTrimAsks moves n's trim asks to the peer id, and so the peer's
// noes, d into the past: as if n had not asked it for d.
func PauseTrimAsks(n *Node, id ID, d time.Duration) {
	if l := n.link(id); l != nil {
		l.trimRefused.Add(-int64(d))
		l.trimRefusedLast.Add(-int64(d))
	}
}

// TrimRefuseLimit is how long a peer's no spares its link.
const TrimRefuseLimit = trimRefuseLimit
