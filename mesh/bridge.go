package mesh

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Bridges: two nodes that cannot link directly (ICE fails: NATs that
// block every direct path, and no TURN relay) link through a neighbour
// both of them have, which relays their frames. A bridged link is a Conn
// like any other (Route RouteBridge), so everything above the transport
// works over it unchanged.
//
// The choices:
//
//   - The ends authenticate each other and encrypt end to end: the
//     opener's and the accepter's ephemeral ECDH keys are each signed with
//     the node key (whose SPKI hashes to the node ID), and the frames are
//     sealed with AES-GCM under keys derived from their shared secret. The
//     bridging node sees sizes and timing, nothing else, and cannot forge,
//     alter, drop or reorder a frame without the link closing.
//   - The bridging node forwards each frame as it comes, on the same
//     channel, waiting while the far link is full, so that it holds no
//     queue: its memory does not grow with the bridge's traffic. It paces
//     each bridge to Config.BridgeRate bytes a second (waiting, so the
//     senders are held back as by a slow link) and relays at most
//     Config.MaxBridges bridges at once, two per node.
//   - A frame is sealed whole and cut into fragments that fit the
//     carrying link's frames; the carrying channels are ordered, so the
//     nonce is a per-channel counter neither end sends. With
//     RTCConfig.UnorderedBulk, bridged bulk frames travel on Ctl.
//   - The accepter does not send until the opener's first frame has
//     authenticated (key confirmation), so a replayed open costs it one
//     handshake slot until HelloTimeout.

const bridgeProto = "mesh/bridge/1"

const (
	bridgeIDLen = 16
	// bridgeOpenMaxAge bounds how old an open may be when it arrives.
	bridgeOpenMaxAge = 2 * time.Minute
	// maxBridgeOpen bounds an encoded open request or answer.
	maxBridgeOpen = 4 << 10
	// bridgeHeader is op, bridge id and flags, before the fragment.
	bridgeHeader = 1 + bridgeIDLen + 1
	// maxBridgesPerNode bounds the bridges one node may have through
	// this one at once.
	maxBridgesPerNode = 2
)

// Bridge data ops, the first byte of a bridgeProto message.
const (
	bridgeData  = 1
	bridgeClose = 2
)

// Flags of a data fragment.
const (
	bridgeFlagBulk = 1 << 0 // the bridged frame is on the Bulk channel
	bridgeFlagMore = 1 << 1 // more fragments of the frame follow
)

var errBridgeRefused = errors.New("mesh: bridge refused")

// bridgeOpen is the request that opens a bridge, from the opener (From)
// to the bridging node (Via) and on to the accepter (To), and the answer
// back, which carries the accepter's half.
type bridgeOpen struct {
	ID   []byte `json:"id"`
	From ID     `json:"from"`
	To   ID     `json:"to"`
	Via  ID     `json:"via"`
	// Time is when the opener signed, Unix ms.
	Time int64  `json:"t"`
	EA   []byte `json:"ea"` // the opener's ephemeral P-256 ECDH key
	KeyA []byte `json:"ka"` // the opener's SPKI
	SigA []byte `json:"sa"`
	// The answer: the accepter's ephemeral key, SPKI and signature.
	EB   []byte `json:"eb,omitempty"`
	KeyB []byte `json:"kb,omitempty"`
	SigB []byte `json:"sb,omitempty"`
}

// signedA and signedB are what the opener and the accepter sign.
func (o *bridgeOpen) signedA() []byte {
	b := []byte("catnest bridge open 1\n")
	b = append(b, o.ID...)
	b = append(b, o.From...)
	b = append(b, o.To...)
	b = append(b, o.Via...)
	b = binary.BigEndian.AppendUint64(b, uint64(o.Time))
	return append(b, o.EA...)
}

func (o *bridgeOpen) signedB() []byte {
	b := append([]byte("catnest bridge accept 1\n"), o.signedA()...)
	return append(b, o.EB...)
}

// decodeBridgeOpen parses an open request or answer and checks its form.
func decodeBridgeOpen(b []byte) (bridgeOpen, error) {
	var o bridgeOpen
	if len(b) > maxBridgeOpen {
		return o, errors.New("bridge open over the size limit")
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return o, fmt.Errorf("bad bridge open: %w", err)
	}
	if len(o.ID) != bridgeIDLen || len(o.EA) != 65 || len(o.KeyA) > maxRelayKey || len(o.SigA) > maxRelaySig ||
		(o.EB != nil && len(o.EB) != 65) || len(o.KeyB) > maxRelayKey || len(o.SigB) > maxRelaySig {
		return o, errors.New("bad bridge open: a field has the wrong size")
	}
	for _, id := range []ID{o.From, o.To, o.Via} {
		if _, err := ParseID(string(id)); err != nil {
			return o, fmt.Errorf("bad bridge open: %w", err)
		}
	}
	return o, nil
}

// checkSig checks that spki is id's key and signed msg with sig.
func checkSig(id ID, spki, sig, msg []byte) error {
	if idFromSPKI(spki) != id {
		return errors.New("the key is not the node's")
	}
	pub, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		return err
	}
	ek, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return errors.New("the key is not ECDSA")
	}
	sum := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(ek, sum[:], sig) {
		return errors.New("bad signature")
	}
	return nil
}

func signWith(ident *Identity, msg []byte) (spki, sig []byte, err error) {
	spki, err = x509.MarshalPKIXPublicKey(&ident.Key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256(msg)
	sig, err = ecdsa.SignASN1(rand.Reader, ident.Key, sum[:])
	return spki, sig, err
}

// bridgeKeys derives the two directions' AEADs from the ECDH secret.
func bridgeKeys(secret []byte, o *bridgeOpen) (ab, ba cipher.AEAD, err error) {
	salt := sha256.Sum256(o.signedB())
	k, err := hkdf.Key(sha256.New, secret, salt[:], "catnest bridge keys 1", 64)
	if err != nil {
		return nil, nil, err
	}
	mk := func(key []byte) (cipher.AEAD, error) {
		blk, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(blk)
	}
	if ab, err = mk(k[:32]); err != nil {
		return nil, nil, err
	}
	ba, err = mk(k[32:])
	return ab, ba, err
}

// bridges is a node's bridge state: the bridges it relays for others, and
// the ends of its own bridged links.
type bridges struct {
	n *Node

	mu    sync.Mutex
	relay map[[bridgeIDLen]byte]*bridgeRelay
	ends  map[[bridgeIDLen]byte]*bridgeConn
	// notices are close notices in flight (see notice); stopped: Serve
	// has waited for them, send no more.
	notices sync.WaitGroup
	stopped bool
}

// notice tells via, on a goroutine that stop waits for, that bridge bid
// closed.
func (br *bridges) notice(via ID, bid [bridgeIDLen]byte) {
	br.mu.Lock()
	defer br.mu.Unlock()
	if br.stopped {
		return
	}
	br.notices.Go(func() {
		if l := br.n.link(via); l != nil {
			sendClose(l, bid)
		}
	})
}

// stop waits for the close notices in flight; Serve calls it when the
// links are gone.
func (br *bridges) stop() {
	br.mu.Lock()
	br.stopped = true
	br.mu.Unlock()
	br.notices.Wait()
}

// bridgeRelay is a bridge this node relays between a and b.
type bridgeRelay struct {
	a, b ID
	lim  *rate.Limiter
}

// newRelayLimiter paces a relayed bridge to bytesPerSec, with a burst of
// a second's worth or one largest frame, whichever is more.
func newRelayLimiter(bytesPerSec float64) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(bytesPerSec), max(int(bytesPerSec), MaxBulkFrame))
}

func newBridges(n *Node) *bridges {
	return &bridges{n: n, relay: make(map[[bridgeIDLen]byte]*bridgeRelay), ends: make(map[[bridgeIDLen]byte]*bridgeConn)}
}

// dial opens a bridged link to id through a neighbour that lists id among
// its own, trying them until one works.
func (br *bridges) dial(ctx context.Context, id ID) (Conn, error) {
	rec, ok := br.n.Lookup(id)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not in the directory", errBridgeRefused, id.Short())
	}
	var vias []ID
	for _, p := range br.n.Peers() {
		if p.Route != RouteBridge && slices.Contains(rec.Neighbors, p.ID) {
			vias = append(vias, p.ID)
		}
	}
	if len(vias) == 0 {
		return nil, fmt.Errorf("%w: no neighbour links to %s", errBridgeRefused, id.Short())
	}
	var errs []error
	for _, via := range vias {
		c, err := br.open(ctx, id, via)
		if err == nil {
			return c, nil
		}
		errs = append(errs, fmt.Errorf("via %s: %w", via.Short(), err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// open runs the opener's side of the handshake through via.
func (br *bridges) open(ctx context.Context, to, via ID) (Conn, error) {
	n := br.n
	eph, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	o := bridgeOpen{ID: make([]byte, bridgeIDLen), From: n.id, To: to, Via: via, Time: time.Now().UnixMilli(), EA: eph.PublicKey().Bytes()}
	rand.Read(o.ID)
	if o.KeyA, o.SigA, err = signWith(n.cfg.Identity, o.signedA()); err != nil {
		return nil, err
	}
	var bid [bridgeIDLen]byte
	copy(bid[:], o.ID)
	// The end is registered before the answer, so that the accepter's
	// frames, which may overtake it, find it.
	c := newBridgeConn(br, bid, to, via, true)
	if !br.addEnd(c) {
		return nil, errors.New("mesh: bridge id taken")
	}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	req, _ := json.Marshal(o)
	resp, err := n.Request(ctx, via, bridgeProto, req)
	if err != nil {
		return nil, err
	}
	a, err := decodeBridgeOpen(resp)
	if err == nil && (!slices.Equal(a.ID, o.ID) || a.EB == nil) {
		err = errors.New("the answer is not for this bridge")
	}
	if err == nil {
		err = checkSig(to, a.KeyB, a.SigB, (&bridgeOpen{ID: o.ID, From: o.From, To: o.To, Via: o.Via, Time: o.Time, EA: o.EA, EB: a.EB}).signedB())
	}
	if err != nil {
		// Not held against via: it cannot check the accepter's half.
		return nil, fmt.Errorf("mesh: bridge answer: %w", err)
	}
	o.EB = a.EB
	peb, err := ecdh.P256().NewPublicKey(a.EB)
	if err != nil {
		return nil, fmt.Errorf("mesh: bridge answer: %w", err)
	}
	secret, err := eph.ECDH(peb)
	if err != nil {
		return nil, err
	}
	ab, ba, err := bridgeKeys(secret, &o)
	if err != nil {
		return nil, err
	}
	c.setKeys(ab, ba)
	c.confirm() // the accepter proved itself; the opener speaks first
	ok = true
	return c, nil
}

// handleOpen serves an open request: at the bridging node it checks and
// passes it on; at the accepter it answers.
func (br *bridges) handleOpen(ctx context.Context, m *Message) ([]byte, error) {
	n := br.n
	o, err := decodeBridgeOpen(m.Payload)
	if err != nil {
		n.Penalize(m.From, err.Error())
		return nil, err
	}
	if d := time.Since(time.UnixMilli(o.Time)); d > bridgeOpenMaxAge || d < -bridgeOpenMaxAge {
		return nil, fmt.Errorf("%w: the open is stale", errBridgeRefused)
	}
	if err := checkSig(o.From, o.KeyA, o.SigA, o.signedA()); err != nil {
		n.Penalize(m.From, "bridge open: "+err.Error())
		return nil, fmt.Errorf("%w: %v", errBridgeRefused, err)
	}
	var bid [bridgeIDLen]byte
	copy(bid[:], o.ID)
	switch {
	case o.Via == n.id && m.From == o.From:
		return br.relayOpen(ctx, bid, o, m.Payload)
	case o.To == n.id && m.From == o.Via:
		return br.accept(ctx, bid, o)
	}
	return nil, fmt.Errorf("%w: not for this node", errBridgeRefused)
}

// relayOpen makes this node the bridge between o.From and o.To, if it may.
func (br *bridges) relayOpen(ctx context.Context, bid [bridgeIDLen]byte, o bridgeOpen, raw []byte) ([]byte, error) {
	n := br.n
	cfg := &n.cfg
	if cfg.BridgeRate < 0 || cfg.MaxBridges < 0 {
		return nil, fmt.Errorf("%w: this node bridges for nobody", errBridgeRefused)
	}
	to, from := n.link(o.To), n.link(o.From)
	if to == nil || from == nil || o.To == o.From {
		return nil, fmt.Errorf("%w: no link to %s", errBridgeRefused, o.To.Short())
	}
	if routeOf(to.conn) == RouteBridge || routeOf(from.conn) == RouteBridge {
		// A bridge over a bridge would relay every frame twice.
		return nil, fmt.Errorf("%w: the link to %s is itself bridged", errBridgeRefused, o.To.Short())
	}
	br.mu.Lock()
	perFrom, perTo := 0, 0
	for _, r := range br.relay {
		if r.a == o.From || r.b == o.From {
			perFrom++
		}
		if r.a == o.To || r.b == o.To {
			perTo++
		}
	}
	_, taken := br.relay[bid]
	if held := len(br.relay); taken || held >= cfg.MaxBridges || perFrom >= maxBridgesPerNode || perTo >= maxBridgesPerNode {
		br.mu.Unlock()
		return nil, fmt.Errorf("%w: %d bridges already", errBridgeRefused, held)
	}
	r := &bridgeRelay{a: o.From, b: o.To, lim: newRelayLimiter(cfg.BridgeRate)}
	br.relay[bid] = r
	br.mu.Unlock()
	resp, err := n.Request(ctx, o.To, bridgeProto, raw)
	if err != nil {
		br.dropRelay(bid)
		return nil, err
	}
	n.log.Info("bridging", "a", o.From.Short(), "b", o.To.Short())
	return resp, nil
}

// accept answers an open for a bridged link to this node.
func (br *bridges) accept(ctx context.Context, bid [bridgeIDLen]byte, o bridgeOpen) ([]byte, error) {
	n := br.n
	if n.banned(o.From) {
		return nil, fmt.Errorf("%w: banned", errBridgeRefused)
	}
	eph, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	pea, err := ecdh.P256().NewPublicKey(o.EA)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBridgeRefused, err)
	}
	secret, err := eph.ECDH(pea)
	if err != nil {
		return nil, err
	}
	o.EB = eph.PublicKey().Bytes()
	if o.KeyB, o.SigB, err = signWith(n.cfg.Identity, o.signedB()); err != nil {
		return nil, err
	}
	ab, ba, err := bridgeKeys(secret, &o)
	if err != nil {
		return nil, err
	}
	c := newBridgeConn(br, bid, o.From, o.Via, false)
	c.setKeys(ba, ab)
	if !br.addEnd(c) {
		return nil, fmt.Errorf("%w: bridge id taken", errBridgeRefused)
	}
	// Unconfirmed until the opener's first frame authenticates.
	c.mu.Lock()
	c.unconfirmed = time.AfterFunc(n.cfg.HelloTimeout, func() {
		if !c.isConfirmed() {
			c.Close()
		}
	})
	c.mu.Unlock()
	select {
	case n.conns <- newConn{conn: c}:
	case <-ctx.Done():
		c.Close()
		return nil, ctx.Err()
	case <-n.done:
		c.Close()
		return nil, ErrClosed
	}
	return json.Marshal(bridgeOpen{ID: o.ID, From: o.From, To: o.To, Via: o.Via, Time: o.Time, EA: o.EA, EB: o.EB, KeyB: o.KeyB, SigB: o.SigB})
}

func (br *bridges) addEnd(c *bridgeConn) bool {
	br.mu.Lock()
	defer br.mu.Unlock()
	if br.ends[c.bid] != nil {
		return false
	}
	br.ends[c.bid] = c
	return true
}

func (br *bridges) dropEnd(c *bridgeConn) {
	br.mu.Lock()
	if br.ends[c.bid] == c {
		delete(br.ends, c.bid)
	}
	br.mu.Unlock()
}

func (br *bridges) dropRelay(bid [bridgeIDLen]byte) *bridgeRelay {
	br.mu.Lock()
	defer br.mu.Unlock()
	r := br.relay[bid]
	delete(br.relay, bid)
	return r
}

// onData handles a bridgeProto message from l's peer on ch: at the
// bridging node it passes it on, at an end it delivers it. It runs on the
// link's receive goroutine and may block, which holds back the sender.
func (br *bridges) onData(ctx context.Context, l *link, ch Channel, b []byte) {
	if len(b) < 1+bridgeIDLen || (b[0] != bridgeData && b[0] != bridgeClose) || (b[0] == bridgeData && len(b) < bridgeHeader) {
		l.violation(errors.New("malformed bridge frame"))
		return
	}
	var bid [bridgeIDLen]byte
	copy(bid[:], b[1:1+bridgeIDLen])
	br.mu.Lock()
	r := br.relay[bid]
	c := br.ends[bid]
	br.mu.Unlock()
	switch {
	case r != nil && (l.remote == r.a || l.remote == r.b):
		next := r.b
		if l.remote == r.b {
			next = r.a
		}
		if b[0] == bridgeClose {
			br.dropRelay(bid)
		} else if err := r.lim.WaitN(ctx, min(len(b), r.lim.Burst())); err != nil {
			return
		}
		nl := br.n.link(next)
		if nl == nil {
			br.dropRelay(bid)
			sendClose(l, bid)
			return
		}
		// The wait for the far link holds back everything l's peer sends
		// on ch, its pings too: a far end that does not read (or whose
		// handlers hold its receiving) would have this node time the
		// near one out. Past a while the bridge is closed instead.
		fctx, cancel := context.WithTimeout(ctx, br.n.cfg.PeerTimeout/4)
		err := nl.send(fctx, ch, frame{kind: kindMsg, proto: bridgeProto, payload: b})
		cancel()
		if err != nil {
			br.n.log.Debug("bridge: cannot pass on", "next", next.Short(), "err", err)
			if b[0] == bridgeData && ctx.Err() == nil && br.dropRelay(bid) != nil {
				sendClose(l, bid)
				br.notice(next, bid)
			}
		}
	case c != nil && l.remote == c.via:
		if b[0] == bridgeClose {
			c.closeLocal()
			return
		}
		c.receive(ch, b[1+bridgeIDLen], b[bridgeHeader:])
	}
	// Anything else is for a bridge that has closed.
}

// linkDown closes the bridges that went over the link to id.
func (br *bridges) linkDown(id ID) {
	br.mu.Lock()
	var ends []*bridgeConn
	for _, c := range br.ends {
		if c.via == id {
			ends = append(ends, c)
		}
	}
	var tell []ID
	var bids [][bridgeIDLen]byte
	for bid, r := range br.relay {
		if r.a == id || r.b == id {
			delete(br.relay, bid)
			other := r.a
			if other == id {
				other = r.b
			}
			tell, bids = append(tell, other), append(bids, bid)
		}
	}
	br.mu.Unlock()
	for _, c := range ends {
		c.closeLocal()
	}
	for i, other := range tell {
		if l := br.n.link(other); l != nil {
			sendClose(l, bids[i])
		}
	}
}

func closeFrame(bid [bridgeIDLen]byte) []byte {
	return append([]byte{bridgeClose}, bid[:]...)
}

// closeNoticeTimeout bounds the wait to tell a neighbour a bridge closed;
// a neighbour that does not take it learns it from the next frame.
const closeNoticeTimeout = time.Second

// sendClose tells l's peer that bridge bid closed, waiting a moment at
// most.
func sendClose(l *link, bid [bridgeIDLen]byte) {
	ctx, cancel := context.WithTimeout(context.Background(), closeNoticeTimeout)
	defer cancel()
	l.send(ctx, Ctl, frame{kind: kindMsg, proto: bridgeProto, payload: closeFrame(bid)})
}

// bridgeConn is one end of a bridged link: a Conn whose frames travel,
// sealed, through the neighbour via.
type bridgeConn struct {
	br       *bridges
	bid      [bridgeIDLen]byte
	remote   ID
	via      ID
	outbound bool

	// seal and open are set once, by setKeys, which then closes keyed:
	// the opener's end is registered before the answer that brings its
	// keys, and a hostile bridging node may send it frames before then.
	seal, open cipher.AEAD
	keyed      chan struct{}
	dir        byte // 0 for the opener's frames, 1 for the accepter's

	sendMu  [2]sync.Mutex
	sendCtr [2]uint64 // guarded by sendMu
	// recvCtr and partial are used on the carrying link's receive
	// goroutine for each channel only.
	recvCtr [2]uint64
	partial [2][]byte

	started   chan struct{}
	recv      func(Channel, []byte)
	confirmed chan struct{}
	done      chan struct{}
	startOnce sync.Once
	confOnce  sync.Once
	closeOnce sync.Once

	mu sync.Mutex
	// unconfirmed closes an accepted end that the opener never speaks on.
	unconfirmed *time.Timer
}

func newBridgeConn(br *bridges, bid [bridgeIDLen]byte, remote, via ID, outbound bool) *bridgeConn {
	c := &bridgeConn{br: br, bid: bid, remote: remote, via: via, outbound: outbound,
		keyed: make(chan struct{}), started: make(chan struct{}), confirmed: make(chan struct{}), done: make(chan struct{})}
	if !outbound {
		c.dir = 1
	}
	return c
}

func (c *bridgeConn) setKeys(seal, open cipher.AEAD) {
	c.seal, c.open = seal, open
	close(c.keyed)
}

func (c *bridgeConn) confirm() {
	c.confOnce.Do(func() {
		close(c.confirmed)
		c.stopTimer()
	})
}

func (c *bridgeConn) stopTimer() {
	c.mu.Lock()
	if c.unconfirmed != nil {
		c.unconfirmed.Stop()
	}
	c.mu.Unlock()
}

func (c *bridgeConn) isConfirmed() bool {
	select {
	case <-c.confirmed:
		return true
	default:
		return false
	}
}

func nonce(dir byte, ch Channel, ctr uint64) []byte {
	var nb [12]byte
	nb[0], nb[1] = dir, byte(ch)
	binary.BigEndian.PutUint64(nb[4:], ctr)
	return nb[:]
}

// carrier is the channel of the carrying link a bridged channel uses.
func (c *bridgeConn) carrier(ch Channel) Channel {
	if ch == Bulk && c.br.n.cfg.RTC.UnorderedBulk {
		return Ctl
	}
	return ch
}

func (c *bridgeConn) Remote() ID     { return c.remote }
func (c *bridgeConn) Outbound() bool { return c.outbound }
func (c *bridgeConn) Route() Route   { return RouteBridge }

func (c *bridgeConn) Start(recv func(Channel, []byte)) {
	c.startOnce.Do(func() {
		c.recv = recv
		close(c.started)
	})
}

// Send seals b and sends it through via in fragments that fit its link.
func (c *bridgeConn) Send(ctx context.Context, ch Channel, b []byte) error {
	if int(ch) > 1 {
		return fmt.Errorf("mesh: no channel %d", ch)
	}
	select {
	case <-c.confirmed:
	case <-c.done:
		return ErrLinkClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	l := c.br.n.link(c.via)
	if l == nil {
		c.closeLocal()
		return ErrLinkClosed
	}
	c.sendMu[ch].Lock()
	defer c.sendMu[ch].Unlock()
	sealed := c.seal.Seal(nil, nonce(c.dir, ch, c.sendCtr[ch]), b, c.bid[:])
	c.sendCtr[ch]++
	carrier := c.carrier(ch)
	room := MaxPayload(carrier) - bridgeHeader
	for len(sealed) > 0 {
		part := sealed[:min(room, len(sealed))]
		sealed = sealed[len(part):]
		flags := byte(0)
		if ch == Bulk {
			flags |= bridgeFlagBulk
		}
		if len(sealed) > 0 {
			flags |= bridgeFlagMore
		}
		p := make([]byte, 0, bridgeHeader+len(part))
		p = append(append(append(p, bridgeData), c.bid[:]...), flags)
		p = append(p, part...)
		if err := l.send(ctx, carrier, frame{kind: kindMsg, proto: bridgeProto, payload: p}); err != nil {
			select {
			case <-c.done:
				return ErrLinkClosed
			default:
			}
			// A fragment may be lost: the stream of this channel is broken.
			c.Close()
			return err
		}
	}
	return nil
}

// receive takes one fragment; a whole frame is opened and delivered.
func (c *bridgeConn) receive(carrier Channel, flags byte, part []byte) {
	select {
	case <-c.keyed:
	default:
		// The accepter speaks only after the opener: nobody honest sends
		// a frame before the answer.
		c.fault("a bridged frame before the bridge was answered")
		return
	}
	ch := Ctl
	if flags&bridgeFlagBulk != 0 {
		ch = Bulk
	}
	if c.carrier(ch) != carrier {
		c.fault("bridged frame on the wrong channel")
		return
	}
	limit := maxFrame(ch) + 16
	if len(c.partial[ch])+len(part) > limit {
		c.fault("bridged frame over its size limit")
		return
	}
	c.partial[ch] = append(c.partial[ch], part...)
	if flags&bridgeFlagMore != 0 {
		return
	}
	sealed := c.partial[ch]
	c.partial[ch] = nil
	b, err := c.open.Open(sealed[:0], nonce(1-c.dir, ch, c.recvCtr[ch]), sealed, c.bid[:])
	if err != nil {
		c.fault("a bridged frame does not authenticate")
		return
	}
	c.recvCtr[ch]++
	c.confirm()
	select {
	case <-c.started:
	case <-c.done:
		return
	}
	c.recv(ch, b)
}

// fault closes a bridge whose frames were tampered with or malformed.
func (c *bridgeConn) fault(why string) {
	c.br.n.log.Warn("bridged link closed", "peer", c.remote.Short(), "via", c.via.Short(), "why", why)
	c.Close()
}

// Close closes the bridged link and tells the bridging node. It may be
// called with the node's lock held (Serve closes every link so), so the
// notice goes on a goroutine of its own.
func (c *bridgeConn) Close() error {
	if c.closeLocal() {
		c.br.notice(c.via, c.bid)
	}
	return nil
}

// closeLocal closes this end and reports whether it was open.
func (c *bridgeConn) closeLocal() bool {
	first := false
	c.closeOnce.Do(func() {
		first = true
		close(c.done)
		c.stopTimer()
		c.br.dropEnd(c)
	})
	return first
}

func (c *bridgeConn) Done() <-chan struct{} { return c.done }
