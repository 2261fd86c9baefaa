package mesh

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/catnest/catnest/mesh/signal"
)

// Signaling through the mesh: once a node is in, it reaches nodes it has
// no link to by sending its WebRTC offer, answer and candidates along a
// path of links, found in the directory's neighbour lists. The rendezvous
// server is then needed only to get in.

const sigProto = "mesh/sig/1"

// maxPath bounds a relay path, in nodes.
const maxPath = 10

var errNoRoute = errors.New("mesh: no route through the mesh")

// A relayed signal is signed by the node that sent it (the path's first
// node) with its node key, over the path, the time, a nonce and the
// message, and carries the key, whose hash must be that node's ID. Every
// node on the path checks it before passing it on, so a neighbour can
// neither speak for another node (forge its LEAVE, or an OFFER that would
// plant a route to itself) nor bend the path; a signal older than
// relayMaxAge, or seen before, is dropped, so a captured one cannot be
// replayed.
type relayFrame struct {
	Path []ID `json:"p"`
	Hop  int  `json:"h"`
	// Msg is the signal.Message as its sender encoded it.
	Msg []byte `json:"m"`
	// Time is when the sender signed, in Unix milliseconds.
	Time  int64  `json:"t"`
	Nonce []byte `json:"n"`
	// Key is the sender's SubjectPublicKeyInfo; Sig its ASN.1 ECDSA
	// signature over relaySigned.
	Key []byte `json:"k"`
	Sig []byte `json:"s"`
}

const (
	relayNonceLen = 16
	// maxRelayKey and maxRelaySig bound the key and signature fields
	// (a P-256 SPKI is 91 bytes, its signatures at most 72).
	maxRelayKey = 256
	maxRelaySig = 128
	// relayMaxAge bounds how far a relayed signal's time may be from the
	// receiver's clock, either way: signals are used at once, and a
	// replay must come within this time to be caught by the seen set.
	relayMaxAge = 5 * time.Minute
	// maxRelaySeen bounds the remembered signals.
	maxRelaySeen = 8192
)

// maxRelayFrame bounds a relay frame: a signal message (base64), a path,
// a key, a signature, a nonce and the field names.
const maxRelayFrame = signal.MaxMessageSize*4/3 + 4 + maxPath*(idLen+3) + (maxRelayKey+maxRelaySig+relayNonceLen)*4/3 + 128

var (
	errRelayStale  = errors.New("relayed signal too old or from the future")
	errRelayReplay = errors.New("relayed signal seen before")
)

// relaySigned is what the sender of a relayed signal signs.
func relaySigned(path []ID, t int64, nonce, msg []byte) []byte {
	b := make([]byte, 0, 32+len(path)*idLen+8+len(nonce)+len(msg))
	b = append(b, "catnest relayed signal 1\n"...)
	b = append(b, byte(len(path)))
	for _, id := range path {
		b = append(b, id...)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(t))
	b = append(b, nonce...)
	return append(b, msg...)
}

// signRelay makes the frame that sends msg from ident's node along path.
func signRelay(ident *Identity, path []ID, msg []byte, now time.Time) (relayFrame, error) {
	f := relayFrame{Path: path, Hop: 1, Msg: msg, Time: now.UnixMilli(), Nonce: make([]byte, relayNonceLen)}
	rand.Read(f.Nonce)
	spki, err := x509.MarshalPKIXPublicKey(&ident.Key.PublicKey)
	if err != nil {
		return f, fmt.Errorf("mesh: encode public key: %w", err)
	}
	sum := sha256.Sum256(relaySigned(path, f.Time, f.Nonce, msg))
	sig, err := ecdsa.SignASN1(rand.Reader, ident.Key, sum[:])
	if err != nil {
		return f, fmt.Errorf("mesh: sign relayed signal: %w", err)
	}
	f.Key, f.Sig = spki, sig
	return f, nil
}

// decodeRelay parses a relay frame that from passed to self and checks its
// signature and age against now.
func decodeRelay(b []byte, self, from ID, now time.Time) (relayFrame, error) {
	var f relayFrame
	if len(b) > maxRelayFrame {
		return f, errors.New("relay frame over the size limit")
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("bad relay frame: %w", err)
	}
	if len(f.Path) < 2 || len(f.Path) > maxPath || f.Hop < 1 || f.Hop >= len(f.Path) ||
		f.Path[f.Hop] != self || f.Path[f.Hop-1] != from {
		return f, errors.New("bad relay path")
	}
	for _, id := range f.Path {
		if _, err := ParseID(string(id)); err != nil {
			return f, fmt.Errorf("bad relay path: %w", err)
		}
	}
	if len(f.Msg) > signal.MaxMessageSize || len(f.Nonce) != relayNonceLen ||
		len(f.Key) > maxRelayKey || len(f.Sig) > maxRelaySig {
		return f, errors.New("bad relay frame: a field is over its limit")
	}
	if idFromSPKI(f.Key) != f.Path[0] {
		return f, errors.New("relayed signal: the key is not the sender's")
	}
	pub, err := x509.ParsePKIXPublicKey(f.Key)
	if err != nil {
		return f, fmt.Errorf("relayed signal key: %w", err)
	}
	ek, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return f, errors.New("relayed signal key is not ECDSA")
	}
	sum := sha256.Sum256(relaySigned(f.Path, f.Time, f.Nonce, f.Msg))
	if !ecdsa.VerifyASN1(ek, sum[:], f.Sig) {
		return f, errors.New("relayed signal: bad signature")
	}
	// Every hop checks the message too, not only its destination: the
	// destination scores down the neighbour that passed it, so an honest
	// relay must never pass on what the destination would refuse.
	if _, err := signal.DecodeMessage(f.Msg); err != nil {
		return f, fmt.Errorf("relayed signal: %w", err)
	}
	if d := now.Sub(time.UnixMilli(f.Time)); d > relayMaxAge || d < -relayMaxAge {
		return f, errRelayStale
	}
	return f, nil
}

// relaySeen remembers the relayed signals a node handled, by sender and
// nonce, for as long as they are young enough to be taken, so that each
// is taken once. When full, it forgets the older half and from then on
// refuses each sender's signals signed at or before the newest of its own
// it forgot (floors), so that eviction opens no door to replays.
//
// The floors are per sender because senders pick their signing times: one
// global floor would let a flood of signals dated relayMaxAge ahead push
// it past the present and shut out every honest signal for that long. A
// sender's floor only holds back that sender's own older signals. The
// floors are bounded too; when they overflow, the older half is folded
// into floor, which is never set past the present: at worst a node whose
// clock runs behind loses the signals it signed just before, and a sender
// whose folded floor was in the future could replay its own signals.
type relaySeen struct {
	mu     sync.Mutex
	m      map[relayKey]int64 // signing time, Unix ms
	floors map[ID]int64
	floor  int64
}

type relayKey struct {
	from  ID
	nonce [relayNonceLen]byte
}

// first records f and reports whether it is the first time.
func (r *relaySeen) first(f relayFrame, now time.Time) bool {
	k := relayKey{from: f.Path[0]}
	copy(k.nonce[:], f.Nonce)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m, r.floors = make(map[relayKey]int64), make(map[ID]int64)
	}
	if _, dup := r.m[k]; dup || r.refused(k.from, f.Time) {
		return false
	}
	if len(r.m) >= maxRelaySeen {
		r.evict(now)
		if r.refused(k.from, f.Time) {
			return false
		}
	}
	r.m[k] = f.Time
	return true
}

func (r *relaySeen) refused(from ID, t int64) bool {
	fl, ok := r.floors[from]
	return t <= r.floor || ok && t <= fl
}

// evict makes room: it forgets what is too old to be taken anyway and,
// if that is not enough, the older half, raising the floors.
func (r *relaySeen) evict(now time.Time) {
	old := now.Add(-relayMaxAge).UnixMilli()
	for k, t := range r.m {
		if t < old {
			delete(r.m, k)
		}
	}
	for id, t := range r.floors {
		if t < old {
			delete(r.floors, id)
		}
	}
	if len(r.m) >= maxRelaySeen {
		// Forget the older half at once, so that a flood costs one sort
		// per maxRelaySeen/2 signals.
		cut := median(slices.Collect(maps.Values(r.m)))
		for k, t := range r.m {
			if t <= cut {
				delete(r.m, k)
				if fl, ok := r.floors[k.from]; !ok || t > fl {
					r.floors[k.from] = t
				}
			}
		}
	}
	if len(r.floors) > maxRelaySeen {
		cut := median(slices.Collect(maps.Values(r.floors)))
		for id, t := range r.floors {
			if t <= cut {
				delete(r.floors, id)
			}
		}
		r.floor = max(r.floor, min(cut, now.UnixMilli()))
	}
}

// median returns the middle of ts, which it sorts.
func median(ts []int64) int64 {
	slices.Sort(ts)
	return ts[len(ts)/2]
}

// routes remembers, for nodes that signaled us through the mesh, the path
// back, so that the answer can follow it even before the directory knows
// the sender.
type routes struct {
	mu    sync.Mutex
	back  map[ID][]ID
	heard map[ID]time.Time
}

const maxRoutes = 256

func (r *routes) put(id ID, path []ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.back == nil {
		r.back, r.heard = make(map[ID][]ID), make(map[ID]time.Time)
	}
	if len(r.back) >= maxRoutes {
		var oldest ID
		for k, t := range r.heard {
			if oldest == "" || t.Before(r.heard[oldest]) {
				oldest = k
			}
		}
		delete(r.back, oldest)
		delete(r.heard, oldest)
	}
	r.back[id], r.heard[id] = path, time.Now()
}

// forget drops the route back to id if it goes through hop, which has
// just lost a signal on it: the next signal to id takes a fresh path.
func (r *routes) forget(id, hop ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if slices.Contains(r.back[id], hop) {
		delete(r.back, id)
		delete(r.heard, id)
	}
}

func (r *routes) get(id ID) []ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.heard[id]) > time.Minute {
		return nil
	}
	return r.back[id]
}

// pathTo finds a shortest path of links from this node to dst: this
// node's own links, then each node's advertised neighbours.
func (n *Node) pathTo(dst ID) []ID {
	if p := n.routes.get(dst); p != nil && n.link(p[1]) != nil {
		return p
	}
	adj := make(map[ID][]ID)
	for _, r := range n.Directory() {
		adj[r.ID] = r.Neighbors
	}
	mine := n.Peers()
	adj[n.id] = make([]ID, 0, len(mine))
	for _, p := range mine {
		adj[n.id] = append(adj[n.id], p.ID)
	}
	prev := map[ID]ID{n.id: ""}
	queue := []ID{n.id}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		if u == dst {
			var path []ID
			for v := dst; v != ""; v = prev[v] {
				path = append([]ID{v}, path...)
			}
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

// routeSignal sends a signaling message to dst through the mesh, signed.
// An offer or answer is remembered by its nonce and the link it went out
// on, so that a failure notice from a node on its path (see onLost), or
// that link's end (see signalsUnsent), can end or mend the dial it
// belongs to.
func (n *Node) routeSignal(ctx context.Context, dst ID, m signal.Message) error {
	path := n.pathTo(dst)
	if len(path) < 2 {
		return errNoRoute
	}
	l := n.link(path[1])
	if l == nil {
		return errNoRoute
	}
	m.Src, m.Dst = string(n.id), string(dst)
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	now := time.Now()
	fr, err := signRelay(n.cfg.Identity, path, b, now)
	if err != nil {
		return err
	}
	f, err := json.Marshal(fr)
	if err != nil {
		return err
	}
	kept := false
	if noticed(m.Type) {
		var p struct {
			ConnectionID string `json:"connectionId"`
		}
		if json.Unmarshal(m.Payload, &p) == nil && p.ConnectionID != "" {
			n.sent.put(fr.Nonce, path, p.ConnectionID, l, now)
			kept = true
		}
	}
	if err := l.send(ctx, Ctl, frame{kind: kindMsg, proto: sigProto, payload: f}); err != nil {
		if kept {
			n.sent.drop(fr.Nonce) // the caller sends it another way
		}
		return err
	}
	return nil
}

// signalsUnsent runs when link l has ended: the offers and answers this
// node sent on it lately may have been lost with it, unsent in its
// buffers or unread in the peer's queue (a neighbour trimming this node
// closes the link whatever it holds), and no node reports that loss. The
// transport sends those still needed again by another way (see
// rtcTransport.signalUnsent); without that, a dialer would wait out
// DialTimeout for an answer to an offer nobody got. It may block for a
// few seconds.
func (n *Node) signalsUnsent(l *link) {
	t, ok := n.transport.(interface{ signalUnsent(ID, string, error) })
	if !ok {
		return
	}
	for _, e := range n.sent.takeVia(l, time.Now()) {
		t.signalUnsent(e.path[len(e.path)-1], e.conn, fmt.Errorf("%w: the link to %s closed with it", ErrSignalLost, l.remote.Short()))
	}
}

// relayPassTimeout bounds how long a hop waits to pass a relayed signal
// (or a failure notice) on to a congested link: past it the signal counts
// as lost, and its sender is told.
const relayPassTimeout = 2 * time.Second

// handleRelay checks a relayed signal and passes it on, or hands it to the
// transport when this node is the destination. A frame that is malformed
// or not signed by its sender scores down the neighbour that passed it
// (honest nodes check before passing on); a stale or replayed one is only
// dropped, as an honest relay may pass on a signal from a node whose clock
// is off.
func (n *Node) handleRelay(ctx context.Context, msg *Message) ([]byte, error) {
	now := time.Now()
	f, err := decodeRelay(msg.Payload, n.id, msg.From, now)
	if errors.Is(err, errRelayStale) {
		n.log.Debug("relayed signal dropped", "from", msg.From.Short(), "err", err)
		return nil, nil
	}
	if err != nil {
		n.Penalize(msg.From, err.Error())
		return nil, nil
	}
	if !n.relaySeen.first(f, now) {
		n.log.Debug("relayed signal dropped", "from", msg.From.Short(), "sender", f.Path[0].Short(), "err", errRelayReplay)
		return nil, nil
	}
	m, err := signal.DecodeMessage(f.Msg)
	if err != nil { // decodeRelay checked it
		return nil, nil
	}
	if f.Hop < len(f.Path)-1 {
		next := f.Path[f.Hop+1]
		pass := f
		pass.Hop++
		b, _ := json.Marshal(pass)
		pctx, cancel := context.WithTimeout(ctx, relayPassTimeout)
		err := n.Send(pctx, next, sigProto, b)
		cancel()
		if err != nil {
			n.log.Debug("relay: cannot pass on", "next", next.Short(), "err", err)
			n.sendLost(ctx, f, m.Type, "no way on to "+next.Short())
		}
		return nil, nil
	}
	if m.Type == sigLost {
		n.onLost(f)
		return nil, nil
	}
	src := f.Path[0]
	m.Src, m.Dst = string(src), string(n.id)
	back := make([]ID, len(f.Path))
	for i, id := range f.Path {
		back[len(f.Path)-1-i] = id
	}
	n.routes.put(src, back)
	if d, ok := n.transport.(interface {
		deliverSignal(signal.Message, ID, func(string))
	}); ok {
		d.deliverSignal(m, msg.From, func(reason string) { n.sendLost(ctx, f, m.Type, reason) })
	}
	return nil, nil
}

// Failure notices: a node that cannot pass a relayed offer or answer on
// (its link to the next hop went, or is congested), or that is its
// destination and refuses it for now (queue full, too many handshakes),
// tells the sender at once with a notice of its own, signed like any
// relayed signal and sent back along the path the signal came. The
// sender remembers the nonce and path of what it sent (sentSignals) and
// takes a notice only from a node on that path, which could have dropped
// the signal anyway: a third node can cancel no one's dial. Without the
// notice the dial would wait DialTimeout for an answer with its slot held.
//
// Only offers and answers are noticed: a lost candidate costs no dial
// (ICE learns the address from the other side's checks), and a lost
// notice is not noticed again.
const sigLost = "CATNEST-LOST"

// noticed reports whether a lost signal of type typ gets a notice.
func noticed(typ string) bool { return typ == signal.TypeOffer || typ == signal.TypeAnswer }

// lostPayload is a notice's payload: the nonce of the relayed signal that
// was lost, and why, for the sender's log.
type lostPayload struct {
	Nonce  []byte `json:"n"`
	Reason string `json:"r,omitempty"`
}

// maxLostReason bounds a notice's reason, in bytes.
const maxLostReason = 128

// maxLostSending bounds the notices being sent at once; past it they are
// dropped and the dials they were for time out as before.
const maxLostSending = 16

// decodeLost parses a notice's payload (which decodeRelay bounded to a
// signal's size).
func decodeLost(b []byte) (lostPayload, error) {
	var p lostPayload
	if len(b) > signal.MaxMessageSize {
		return p, errors.New("failure notice over the size limit")
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("bad failure notice: %w", err)
	}
	if len(p.Nonce) != relayNonceLen {
		return p, errors.New("bad failure notice: nonce length")
	}
	if len(p.Reason) > maxLostReason {
		return p, errors.New("bad failure notice: reason over its limit")
	}
	return p, nil
}

// sendLost tells the sender of f, a relayed signal of type typ that this
// node (f.Path[f.Hop]) could not pass on or take, that it was lost. It
// waits at most relayPassTimeout.
func (n *Node) sendLost(ctx context.Context, f relayFrame, typ, reason string) {
	if !noticed(typ) || f.Path[f.Hop] != n.id {
		return
	}
	if n.lostSending.Add(1) > maxLostSending {
		n.lostSending.Add(-1)
		n.log.Debug("failure notice dropped: too many at once", "sender", f.Path[0].Short())
		return
	}
	defer n.lostSending.Add(-1)
	back := make([]ID, f.Hop+1)
	for i := range back {
		back[i] = f.Path[f.Hop-i]
	}
	if len(reason) > maxLostReason {
		reason = reason[:maxLostReason]
	}
	p, _ := json.Marshal(lostPayload{Nonce: f.Nonce, Reason: reason})
	m, _ := json.Marshal(signal.Message{Type: sigLost, Src: string(n.id), Dst: string(back[len(back)-1]), Payload: p})
	fr, err := signRelay(n.cfg.Identity, back, m, time.Now())
	if err != nil {
		n.log.Debug("failure notice", "err", err)
		return
	}
	b, _ := json.Marshal(fr)
	sctx, cancel := context.WithTimeout(ctx, relayPassTimeout)
	defer cancel()
	if err := n.Send(sctx, back[1], sigProto, b); err != nil {
		n.log.Debug("failure notice not sent", "next", back[1].Short(), "err", err)
	}
}

// onLost takes a failure notice f that reached this node: when it names
// an offer or answer this node sent and comes from a node on that
// signal's path, the connection the signal was for is given up.
func (n *Node) onLost(f relayFrame) {
	m, err := signal.DecodeMessage(f.Msg)
	if err != nil {
		return
	}
	hop := f.Path[0]
	p, err := decodeLost(m.Payload)
	if err != nil {
		n.log.Debug("failure notice dropped", "from", hop.Short(), "err", err)
		return
	}
	dst, conn, ok := n.sent.take(p.Nonce, hop, time.Now())
	if !ok {
		n.log.Debug("failure notice for no signal of ours on its path: ignored", "from", hop.Short())
		return
	}
	n.routes.forget(dst, hop)
	if t, ok := n.transport.(interface{ signalLost(ID, string, error) }); ok {
		t.signalLost(dst, conn, fmt.Errorf("%w: %s reported %q", ErrSignalLost, hop.Short(), p.Reason))
	}
}

// sentSignals remembers the offers and answers this node sent through the
// mesh, by nonce, for as long as a notice about them can matter.
type sentSignals struct {
	mu sync.Mutex
	m  map[[relayNonceLen]byte]sentSignal
}

type sentSignal struct {
	path []ID
	conn string // the connection id the signal was for
	via  *link  // the link it went out on
	at   time.Time
}

const (
	// maxSentSignals bounds the remembered signals: the oldest goes first.
	maxSentSignals = 1024
	// sentSignalAge is how long a sent signal is remembered; a dial ends
	// sooner (DialTimeout).
	sentSignalAge = time.Minute
)

func (s *sentSignals) put(nonce []byte, path []ID, conn string, via *link, now time.Time) {
	var k [relayNonceLen]byte
	copy(k[:], nonce)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[[relayNonceLen]byte]sentSignal)
	}
	if len(s.m) >= maxSentSignals {
		var oldest [relayNonceLen]byte
		first := true
		for k, v := range s.m {
			if now.Sub(v.at) > sentSignalAge {
				delete(s.m, k)
				continue
			}
			if first || v.at.Before(s.m[oldest].at) {
				oldest, first = k, false
			}
		}
		if len(s.m) >= maxSentSignals {
			delete(s.m, oldest)
		}
	}
	s.m[k] = sentSignal{path: path, conn: conn, via: via, at: now}
}

// drop forgets the signal sent with nonce.
func (s *sentSignals) drop(nonce []byte) {
	var k [relayNonceLen]byte
	copy(k[:], nonce)
	s.mu.Lock()
	delete(s.m, k)
	s.mu.Unlock()
}

// takeVia finds the recent signals that went out on link l, and forgets
// them.
func (s *sentSignals) takeVia(l *link, now time.Time) []sentSignal {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sentSignal
	for k, e := range s.m {
		if e.via != l {
			continue
		}
		delete(s.m, k)
		if now.Sub(e.at) <= sentSignalAge {
			out = append(out, e)
		}
	}
	return out
}

// take finds the signal sent with nonce, if hop was on its path after this
// node and it is recent, and forgets it: one notice ends one signal.
func (s *sentSignals) take(nonce []byte, hop ID, now time.Time) (dst ID, conn string, ok bool) {
	var k [relayNonceLen]byte
	copy(k[:], nonce)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, found := s.m[k]
	if !found || now.Sub(e.at) > sentSignalAge || !slices.Contains(e.path[1:], hop) {
		return "", "", false
	}
	delete(s.m, k)
	return e.path[len(e.path)-1], e.conn, true
}
