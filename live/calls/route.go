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
// never runs into its link limit. Every hop passes it on as a request of
// its own and passes the answer back. The sender signs the message (over
// the path, the time and a nonce) and the destination signs its answer
// (over the nonce), each with its node key, whose hash must be its ID, so
// that the nodes in between can neither forge, bend nor replay either.

// RouteProtocol is the mesh protocol of routed call messages.
const RouteProtocol = "call/route/1"

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
	// maxEnvelope bounds a routed message: a call message, base64, and
	// the path, key, signature and nonce.
	maxEnvelope = MaxMessage*4/3 + 4<<10
)

type envelope struct {
	Path  []mesh.ID `json:"path"`
	Hop   int       `json:"hop"`
	Time  int64     `json:"t"`
	Nonce []byte    `json:"n"`
	Body  []byte    `json:"b"`
	Key   []byte    `json:"k"`
	Sig   []byte    `json:"s"`
}

// envReply is the destination's signed answer.
type envReply struct {
	Body []byte `json:"b,omitempty"`
	Err  string `json:"e,omitempty"`
	Key  []byte `json:"k"`
	Sig  []byte `json:"s"`
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

func replySigned(nonce []byte, r *envReply) []byte {
	b := []byte("catnest routed call reply 1\n")
	b = append(b, nonce...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Body)))
	b = append(b, r.Body...)
	return append(b, r.Err...)
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

// decodeEnvelope parses a routed message that from passed to self and
// checks its path, size and sender's signature.
func decodeEnvelope(b []byte, self, from mesh.ID) (*envelope, error) {
	if len(b) > maxEnvelope {
		return nil, fmt.Errorf("routed call of %d bytes, limit %d", len(b), maxEnvelope)
	}
	var e envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("bad routed call: %w", err)
	}
	if len(e.Path) < 3 || len(e.Path) > maxPath || e.Hop < 1 || e.Hop >= len(e.Path) ||
		e.Path[e.Hop] != self || e.Path[e.Hop-1] != from {
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
	if len(e.Nonce) != nonceLen || len(e.Body) > MaxMessage {
		return nil, errors.New("bad routed call: a field is over its limit")
	}
	if err := verify(e.Path[0], e.Key, e.Sig, envSigned(&e)); err != nil {
		return nil, fmt.Errorf("routed call: %w", err)
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

// first records the message from from with nonce and signed time t (ms)
// and says why not when it may not be taken: it was seen, or may have
// been, or the table of senders is full of ones that could still replay.
func (s *seen) first(from mesh.ID, nonce []byte, t int64, now time.Time) error {
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
	}
	if _, dup := s.m[k]; dup {
		return errSeen
	}
	s.forget(now)
	sd := s.senders[from]
	if sd == nil {
		if len(s.senders) >= maxSeenSenders {
			return errSeenFull
		}
		sd = &seenSender{id: from, floor: math.MinInt64}
		sd.elem = s.lru.PushBack(sd)
		s.senders[from] = sd
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

// route sends body to dst along path and returns dst's answer.
func (s *Service) route(ctx context.Context, path []mesh.ID, body []byte) ([]byte, error) {
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
	out, err := s.node.Request(ctx, path[1], RouteProtocol, b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoRoute, err)
	}
	dst := path[len(path)-1]
	var r envReply
	if len(out) > maxEnvelope || json.Unmarshal(out, &r) != nil {
		return nil, fmt.Errorf("calls: bad routed answer from %s", dst.Short())
	}
	if err := verify(dst, r.Key, r.Sig, replySigned(e.Nonce, &r)); err != nil {
		return nil, fmt.Errorf("calls: routed answer from %s: %w", dst.Short(), err)
	}
	if r.Err != "" {
		return nil, &mesh.RemoteError{Peer: dst, Msg: r.Err}
	}
	return r.Body, nil
}

// serveRoute passes a routed call message on, or handles it here when
// this node is its destination.
func (s *Service) serveRoute(ctx context.Context, m *mesh.Message) ([]byte, error) {
	now := time.Now()
	e, err := decodeEnvelope(m.Payload, s.self, m.From)
	if err != nil {
		s.node.Penalize(m.From, "call: "+err.Error())
		return nil, err
	}
	if d := now.Sub(time.UnixMilli(e.Time)); d > routeMaxAge || d < -routeMaxAge {
		return nil, errors.New("calls: routed call too old or from the future")
	}
	if e.Hop < len(e.Path)-1 {
		e.Hop++
		b, err := json.Marshal(e)
		if err != nil {
			return nil, err
		}
		return s.node.Request(ctx, e.Path[e.Hop], RouteProtocol, b)
	}
	if err := s.seen.first(e.Path[0], e.Nonce, e.Time, now); err != nil {
		return nil, err
	}
	var r envReply
	req, err := decodeRequest(e.Body)
	if err != nil {
		// The sender signed it: the sender is at fault, not the hops.
		r.Err = err.Error()
	} else if r.Body, err = s.serve(ctx, e.Path[0], req); err != nil {
		r.Err = err.Error()
	}
	if r.Key, r.Sig, err = sign(s.cfg.Identity.Key, replySigned(e.Nonce, &r)); err != nil {
		return nil, fmt.Errorf("calls: sign: %w", err)
	}
	return json.Marshal(r)
}
