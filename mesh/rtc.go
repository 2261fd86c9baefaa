package mesh

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"

	"github.com/catnest/catnest/mesh/signal"
)

// Bounds on what signaling peers can make this node hold.
const (
	maxEarlyConns = 64  // connection ids with candidates that came before their offer
	maxCandidates = 64  // remote candidates per connection
	maxSessions   = 256 // connections being set up or up
)

// Bounds on inbound handshakes (offers being answered), which hold a
// PeerConnection until the link is up or the attempt times out. Each
// source has at most one: a new offer from it replaces the old, which the
// source has given up. Ids are free to make, so sources are also bounded
// by where their offers come from: ids the directory does not list get at
// most half the slots, which leaves the rest to nodes of the mesh, and one
// neighbour may relay only a few. An offer must also carry its sender's
// DTLS certificate, whose key hashes to the sender's id and which the SDP
// fingerprints, so that a captured offer replayed under other ids is
// refused before it costs anything.
const (
	maxInboundHandshakes = 16 // at once, in all
	maxUnknownHandshakes = 8  // from ids the directory does not list
	maxHandshakesVia     = 4  // from offers one neighbour relayed
)

// offerPayload is the PeerJS OFFER payload, so that the reference
// PeerServer relays it like any other.
type offerPayload struct {
	SDP           webrtc.SessionDescription `json:"sdp"`
	Type          string                    `json:"type"`
	ConnectionID  string                    `json:"connectionId"`
	Label         string                    `json:"label,omitempty"`
	Reliable      bool                      `json:"reliable"`
	Serialization string                    `json:"serialization,omitempty"`
	Metadata      json.RawMessage           `json:"metadata,omitempty"`
}

type answerPayload struct {
	SDP          webrtc.SessionDescription `json:"sdp"`
	Type         string                    `json:"type"`
	ConnectionID string                    `json:"connectionId"`
}

type candidatePayload struct {
	Candidate    webrtc.ICECandidateInit `json:"candidate"`
	Type         string                  `json:"type"`
	ConnectionID string                  `json:"connectionId"`
}

// rtcTransport makes links as WebRTC PeerConnections, signaled through a
// PeerServer-compatible rendezvous.
type rtcTransport struct {
	cfg  *Config
	log  *slog.Logger
	id   ID
	api  *webrtc.API
	cert webrtc.Certificate
	// certDER is cert in DER, which offers carry (see checkOfferCert).
	certDER []byte
	// closing tracks PeerConnection closes, which run on their own
	// goroutines; Serve waits for them.
	closing sync.WaitGroup

	// route sends a signal through the mesh (Node.routeSignal); relayed
	// holds signals that came that way, for Serve to handle.
	route   func(ctx context.Context, dst ID, m signal.Message) error
	relayed chan relayedSignal
	// refuse reports whether offers from a node are refused (it is
	// banned); known, whether the directory lists it. Both may be nil.
	refuse, known func(ID) bool

	mu       sync.Mutex
	stopping bool // Serve is ending: closes are no longer tracked
	sig      *signal.Client
	sessions map[string]*rtcConn // by connection id
	early    map[string]*earlyCandidates
	inbound  map[ID]*handshake // inbound handshakes, by source
	// guestH serves guest connections (see HandleGuests); guests are
	// those set up or up, by connection id.
	guestH GuestHandler
	guests map[string]*Guest
	// earlyPages holds pages' candidates that came before their offer,
	// apart from early: any page may send candidates for any number of
	// connection ids, and they must not push out those of nodes' links.
	earlyPages map[string]*earlyCandidates
	// turn holds the ICE servers the rendezvous handed out (see
	// keepTURN), valid until turnExpires.
	turn        []webrtc.ICEServer
	turnExpires time.Time
	// turnFirst is closed once the first fetch of TURN credentials has
	// ended, however it ended; turnOnce closes it.
	turnFirst chan struct{}
	turnOnce  sync.Once
	// registered is closed once the node has first registered with the
	// rendezvous (see waitRegistered); stopped, once Serve ends.
	registered, stopped chan struct{}
	regOnce, stopOnce   sync.Once
}

// relayedSignal is a signal that came through the mesh, and the neighbour
// that passed it to this node.
type relayedSignal struct {
	msg signal.Message
	via ID
	// refused tells the signal's sender, with a failure notice back along
	// its path, that this node drops it (Node.sendLost). It may block for
	// a short while.
	refused func(reason string)
}

// handshake is an inbound handshake holding a slot.
type handshake struct {
	src    ID
	via    ID // the neighbour that relayed the offer; "" for the rendezvous
	known  bool
	cancel context.CancelFunc
}

type earlyCandidates struct {
	peer  string // a node ID or a page's PeerJS id
	at    time.Time
	cands []webrtc.ICECandidateInit
}

func newRTCTransport(cfg *Config, log *slog.Logger) (*rtcTransport, error) {
	cert, err := newCertificate(cfg.Identity)
	if err != nil {
		return nil, err
	}
	pemCert, err := cert.PEM()
	if err != nil {
		return nil, fmt.Errorf("mesh: DTLS certificate: %w", err)
	}
	var der []byte
	for rest := []byte(pemCert); ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			der = blk.Bytes
		}
	}
	if der == nil {
		return nil, errors.New("mesh: DTLS certificate: no certificate in its PEM")
	}
	return &rtcTransport{
		cfg:        cfg,
		log:        log,
		id:         cfg.Identity.ID,
		api:        newAPI(cfg.RTC, log),
		cert:       *cert,
		certDER:    der,
		relayed:    make(chan relayedSignal, 256),
		sessions:   make(map[string]*rtcConn),
		early:      make(map[string]*earlyCandidates),
		earlyPages: make(map[string]*earlyCandidates),
		inbound:    make(map[ID]*handshake),
		guests:     make(map[string]*Guest),

		turnFirst:  make(chan struct{}),
		registered: make(chan struct{}),
		stopped:    make(chan struct{}),
	}, nil
}

// newCertificate makes a DTLS certificate for the node key, so that the
// handshake proves the node ID.
func newCertificate(ident *Identity) (*webrtc.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	cert, err := webrtc.NewCertificate(ident.Key, x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: string(ident.ID)},
		NotBefore:    now.Add(-24 * time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
	})
	if err != nil {
		return nil, fmt.Errorf("mesh: DTLS certificate: %w", err)
	}
	return cert, nil
}

// newAPI builds the pion API with catnest's settings.
func newAPI(rc RTCConfig, log *slog.Logger) *webrtc.API {
	var se webrtc.SettingEngine
	se.LoggerFactory = slogFactory{log: log}
	// Nodes on one host link over loopback; pion leaves it out by default.
	se.SetIncludeLoopbackCandidate(true)
	if rc.LoopbackOnly {
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	}
	if rc.UDPBuffer > 0 {
		if n, err := newBufferedNet(rc.UDPBuffer); err != nil {
			log.Warn("UDP socket buffers left at the system default", "err", err)
		} else {
			se.SetNet(n)
		}
	}
	// A window under the two 1 MB packetio buffers of pion's receive path
	// (ICE agent, mux endpoint), which drop datagrams when their goroutine
	// is late, would end those drops; but pion/sctp sends no window update
	// when the application reads, and at 768 KiB a download stalled for 15 s
	// on zero-window probes. BENCHMARKS.md "drop".
	se.SetSCTPMaxReceiveBufferSize(rc.SCTPReceiveBuffer)
	se.EnableSCTPZeroChecksum(!rc.DisableZeroChecksum)
	// pion enforces this on inbound messages too: larger ones close the channel.
	se.SetSCTPMaxMessageSize(MaxBulkFrame)
	se.SetICETimeouts(5*time.Second, 15*time.Second, 2*time.Second)
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

// Serve registers with the rendezvous and answers offers until ctx ends.
func (t *rtcTransport) Serve(ctx context.Context, accept func(Conn)) error {
	var wg sync.WaitGroup
	registered := make(chan struct{}, 1)
	sig, err := signal.NewClient(signal.ClientConfig{
		URL:    t.cfg.SignalURL,
		Key:    t.cfg.SignalKey,
		ID:     string(t.id),
		Signer: t.cfg.Identity.Key, // proves the id: nobody else can hold it, a restart takes it back
		Logger: t.log,
		OnMessage: func(m signal.Message) {
			t.onSignal(ctx, &wg, m, accept)
		},
		OnState: func(up bool) {
			if up {
				t.log.Info("registered with rendezvous", "url", t.cfg.SignalURL)
				t.regOnce.Do(func() { close(t.registered) })
				select {
				case registered <- struct{}{}:
				default:
				}
			} else {
				t.log.Info("rendezvous connection lost; links stay up", "url", t.cfg.SignalURL)
			}
		},
	})
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.sig = sig
	t.mu.Unlock()
	wg.Go(func() { t.keepTURN(ctx, sig, registered) })
	wg.Go(func() {
		for {
			select {
			case r := <-t.relayed:
				t.onSignalVia(ctx, &wg, r.msg, r.via, r.refused, accept)
			case <-ctx.Done():
				return
			}
		}
	})
	err = sig.Serve(ctx)
	t.stopOnce.Do(func() { close(t.stopped) })
	t.mu.Lock()
	t.sig = nil
	t.stopping = true
	conns := make([]*rtcConn, 0, len(t.sessions))
	for _, c := range t.sessions {
		conns = append(conns, c)
	}
	guests := make([]*Guest, 0, len(t.guests))
	for _, g := range t.guests {
		guests = append(guests, g)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	for _, g := range guests {
		g.Close()
	}
	wg.Wait()
	t.closing.Wait()
	return err
}

// Candidates lists the rendezvous's peers, when it allows discovery.
func (t *rtcTransport) Candidates(ctx context.Context) ([]ID, error) {
	t.mu.Lock()
	sig := t.sig
	t.mu.Unlock()
	if sig == nil {
		return nil, nil
	}
	ids, err := sig.Peers(ctx)
	if errors.Is(err, signal.ErrDiscoveryDisabled) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]ID, 0, len(ids))
	for _, s := range ids {
		if id, err := ParseID(s); err == nil {
			out = append(out, id) // other ids are PeerJS pages, not nodes
		}
	}
	return out, nil
}

// deliverSignal takes a signal that came through the mesh from neighbour
// via. It does not wait for room: when the queue is full the signal is
// dropped and its sender told (refused), so that its dial ends at once.
func (t *rtcTransport) deliverSignal(m signal.Message, via ID, refused func(reason string)) {
	select {
	case t.relayed <- relayedSignal{msg: m, via: via, refused: refused}:
	default:
		t.log.Debug("relayed signal dropped: queue full", "src", m.Src)
		refused("signal queue full")
	}
}

// signalLost ends the connection connID with remote, if it is still being
// set up, with err: a node on the way reported that a signal it needs was
// lost (see Node.onLost). A lost answer is sent again first, at most
// twice: the dialer is waiting for it, and only this end can end that
// wait early. The first time by a fresh path through the mesh (onLost has
// dropped the route through the hop that lost it), as the answer went:
// the dialer may not be at this node's rendezvous at all (another server,
// or its connection down), where the rendezvous would hold the answer and
// the dialer wait out DialTimeout. The second time through the rendezvous
// (sendSignal falls back to the mesh when it is out of reach): a mesh path
// is drawn from directory records, which lag the links, and when the
// dialer's links churn (every neighbour trimming it at once) the fresh
// path is often as stale as the one that lost the answer. Each resend
// follows a notice from a hop on the path of an answer this node sent, so
// a peer can make it send no more than two per answer, and only to the
// dialer.
func (t *rtcTransport) signalLost(remote ID, connID string, err error) {
	c := t.session(connID, remote)
	if c == nil || c.isReady() {
		return
	}
	if n := c.resend(); !c.outbound && n <= maxAnswerResends {
		if ld := c.pc.LocalDescription(); ld != nil {
			ctx, cancel := context.WithTimeout(context.Background(), relayPassTimeout)
			send := t.sendSignal
			if n > 1 {
				send = t.rendezvousFirst
			}
			serr := send(ctx, signal.TypeAnswer, remote, answerPayload{SDP: *ld, Type: "data", ConnectionID: connID})
			cancel()
			if serr == nil {
				t.log.Debug("answer lost: sent again", "peer", remote.Short(), "err", err)
				return
			}
			err = fmt.Errorf("%w; sending the answer again: %v", err, serr)
		}
	}
	t.log.Debug("connection given up", "peer", remote.Short(), "err", err)
	c.fail(err)
}

// sendSignal sends a signal through the mesh when there is a path to dst,
// else through the rendezvous.
func (t *rtcTransport) sendSignal(ctx context.Context, typ string, dst ID, payload any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	m := signal.Message{Type: typ, Dst: string(dst), Payload: b}
	if t.route != nil {
		if err := t.route(ctx, dst, m); err == nil {
			return nil
		}
	}
	t.mu.Lock()
	sig := t.sig
	t.mu.Unlock()
	if sig == nil {
		return signal.ErrNotConnected
	}
	return sig.Send(ctx, m)
}

// maxAnswerResends bounds how often a lost answer is sent again (see
// signalLost).
const maxAnswerResends = 2

// rendezvousFirst sends a signal through the rendezvous, which reaches dst
// whatever its links when dst is there too, and through the mesh only when
// the rendezvous is out of reach (Send fails at once when not connected).
func (t *rtcTransport) rendezvousFirst(ctx context.Context, typ string, dst ID, payload any) error {
	t.mu.Lock()
	sig := t.sig
	t.mu.Unlock()
	if sig != nil {
		b, err := json.Marshal(payload)
		if err != nil {
			return err
		}
		if err := sig.Send(ctx, signal.Message{Type: typ, Dst: string(dst), Payload: b}); err == nil {
			return nil
		}
	}
	return t.sendSignal(ctx, typ, dst, payload)
}

// Dial opens a link to id through the rendezvous.
func (t *rtcTransport) Dial(ctx context.Context, id ID) (Conn, error) {
	if err := t.waitRegistered(ctx); err != nil {
		return nil, err
	}
	t.waitTURN(ctx)
	c, err := t.newConn(id, true, "dc_"+rand.Text())
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		return nil, fmt.Errorf("mesh: create offer: %w", err)
	}
	if err := c.pc.SetLocalDescription(offer); err != nil {
		return nil, fmt.Errorf("mesh: set local description: %w", err)
	}
	if err := t.sendSignal(ctx, signal.TypeOffer, id, t.offer(offer, c.connID)); err != nil {
		return nil, fmt.Errorf("mesh: send offer to %s: %w", id.Short(), err)
	}
	select {
	case ans := <-c.answer:
		if err := c.setRemote(ans); err != nil {
			return nil, err
		}
	case <-c.failed:
		return nil, c.failure()
	case <-ctx.Done():
		return nil, fmt.Errorf("mesh: no answer from %s: %w", id.Short(), ctx.Err())
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// offer is the OFFER payload of connection connID with local description
// sdp.
func (t *rtcTransport) offer(sdp webrtc.SessionDescription, connID string) offerPayload {
	meta, _ := json.Marshal(offerMeta{Catnest: 1, Cert: t.certDER})
	return offerPayload{
		SDP: sdp, Type: "data", ConnectionID: connID, Label: "catnest",
		Reliable: true, Serialization: "raw", Metadata: meta,
	}
}

// maxOfferResends bounds how often an offer is sent again (see
// signalUnsent).
const maxOfferResends = 2

// signalUnsent sends a signal of connection connID with remote again, when
// the connection still needs it: it went out on a link that has closed
// since, and may have been lost with it (see Node.signalsUnsent). An
// answer is taken as lost (signalLost). An offer is sent again while no
// answer has come, at most twice, as a lost answer is: first by a fresh
// path (this node's links no longer include the closed one), then through
// the rendezvous first. The link may have carried the offer before it
// closed: the answerer takes an offer it has already as its answer's loss
// and sends that again (answerAgain).
func (t *rtcTransport) signalUnsent(remote ID, connID string, err error) {
	c := t.session(connID, remote)
	if c == nil || c.isReady() {
		return
	}
	if !c.outbound {
		t.signalLost(remote, connID, err)
		return
	}
	if c.answered() {
		return
	}
	n := c.resend()
	if ld := c.pc.LocalDescription(); n <= maxOfferResends && ld != nil {
		ctx, cancel := context.WithTimeout(context.Background(), relayPassTimeout)
		send := t.sendSignal
		if n > 1 {
			send = t.rendezvousFirst
		}
		serr := send(ctx, signal.TypeOffer, remote, t.offer(*ld, connID))
		cancel()
		if serr == nil {
			t.log.Debug("offer lost with its link: sent again", "peer", remote.Short(), "err", err)
			return
		}
		err = fmt.Errorf("%w; sending the offer again: %v", err, serr)
	}
	t.log.Debug("dial given up", "peer", remote.Short(), "err", err)
	c.fail(err)
}

// answerAgain sends the answer of connection c again: its dialer sent the
// offer again (signalUnsent), so the answer may not have reached it. At
// most maxAnswerResends times per connection, and only to the dialer;
// before the answer is made, answerOffer sends it anyway. An offer that
// came through the rendezvous (via is "") is answered through it first:
// the dialer found no path through the mesh.
func (t *rtcTransport) answerAgain(c *rtcConn, via ID) {
	c.mu.Lock()
	c.offersAgain++
	n := c.offersAgain
	c.mu.Unlock()
	ld := c.pc.LocalDescription()
	if n > maxAnswerResends || ld == nil || ld.Type != webrtc.SDPTypeAnswer {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), relayPassTimeout)
	defer cancel()
	send := t.sendSignal
	if via == "" {
		send = t.rendezvousFirst
	}
	if err := send(ctx, signal.TypeAnswer, c.remote, answerPayload{SDP: *ld, Type: "data", ConnectionID: c.connID}); err != nil {
		t.log.Debug("offer came again: answer not sent again", "peer", c.remote.Short(), "err", err)
		return
	}
	t.log.Debug("offer came again: answer sent again", "peer", c.remote.Short())
}

// onSignal handles a message the rendezvous relayed to us. It runs on the
// signal client's read goroutine, so slow work moves to goroutines.
func (t *rtcTransport) onSignal(ctx context.Context, wg *sync.WaitGroup, m signal.Message, accept func(Conn)) {
	t.onSignalVia(ctx, wg, m, "", nil, accept)
}

// onSignalVia handles a signal that came from the rendezvous (via is "")
// or through the mesh from neighbour via; refused, when not nil, tells
// the sender of a relayed offer that is turned away for now.
func (t *rtcTransport) onSignalVia(ctx context.Context, wg *sync.WaitGroup, m signal.Message, via ID, refused func(string), accept func(Conn)) {
	if via == "" && t.guestSignal(ctx, wg, m) {
		return
	}
	src, err := ParseID(m.Src)
	if err != nil {
		t.log.Debug("signal from a non-node id", "src", m.Src, "type", m.Type)
		return
	}
	switch m.Type {
	case signal.TypeOffer:
		if t.refuse != nil && t.refuse(src) {
			t.log.Debug("offer from a banned node refused", "src", src.Short())
			return
		}
		p, err := decodeOffer(m.Payload)
		if err == nil {
			err = checkOfferCert(src, p)
		}
		if err != nil {
			t.log.Debug("offer refused", "src", src.Short(), "via", via.Short(), "err", err)
			return
		}
		if c := t.session(p.ConnectionID, src); c != nil && !c.outbound {
			// An offer this node is answering, or has: its dialer sent it
			// again (signalUnsent), and starting over would break the
			// handshake in progress.
			if !c.isReady() {
				wg.Go(func() { t.answerAgain(c, via) })
			}
			return
		}
		hctx, h, err := t.admit(ctx, src, via)
		if err != nil {
			t.log.Info("offer dropped", "src", src.Short(), "via", via.Short(), "err", err)
			if refused != nil {
				// Off this goroutine, which serves every relayed signal.
				wg.Go(func() { refused("busy: " + err.Error()) })
			}
			return
		}
		wg.Go(func() {
			defer t.release(h)
			c, err := t.answerOffer(hctx, src, p)
			if err != nil {
				t.log.Info("inbound link failed", "src", src.Short(), "err", err)
				return
			}
			accept(c)
		})
	case signal.TypeAnswer:
		p, err := decodeAnswer(m.Payload)
		if err != nil {
			t.log.Info("signal rejected", "src", src.Short(), "err", err)
			return
		}
		if c := t.session(p.ConnectionID, src); c != nil && c.outbound {
			select {
			case c.answer <- p.SDP:
			default:
			}
		}
	case signal.TypeCandidate:
		p, err := decodeCandidate(m.Payload)
		if err != nil {
			t.log.Info("signal rejected", "src", src.Short(), "err", err)
			return
		}
		if c := t.session(p.ConnectionID, src); c != nil {
			c.addCandidate(p.Candidate)
			return
		}
		t.keepEarly(src, p)
	case signal.TypeLeave, signal.TypeExpire:
		// The peer is gone or never came: fail dials to it still waiting.
		t.mu.Lock()
		for _, c := range t.sessions {
			if c.remote == src && !c.isReady() {
				c.fail(fmt.Errorf("mesh: %s is not at the rendezvous (%s)", src.Short(), m.Type))
			}
		}
		t.mu.Unlock()
	}
}

// admit takes a handshake slot for an offer from src that came via (see
// maxInboundHandshakes). An earlier handshake with src is cancelled: src
// has given it up, since it offers again.
func (t *rtcTransport) admit(ctx context.Context, src, via ID) (context.Context, *handshake, error) {
	known := t.known != nil && t.known(src)
	t.mu.Lock()
	defer t.mu.Unlock()
	if old := t.inbound[src]; old != nil {
		old.cancel()
		delete(t.inbound, src)
	}
	unknown, viaCount := 0, 0
	for _, h := range t.inbound {
		if !h.known {
			unknown++
		}
		if via != "" && h.via == via {
			viaCount++
		}
	}
	switch {
	case len(t.inbound) >= maxInboundHandshakes:
		return nil, nil, fmt.Errorf("%d handshakes at once", len(t.inbound))
	case !known && unknown >= maxUnknownHandshakes:
		return nil, nil, fmt.Errorf("%d handshakes at once with nodes the directory does not list", unknown)
	case via != "" && viaCount >= maxHandshakesVia:
		return nil, nil, fmt.Errorf("%d handshakes at once relayed by %s", viaCount, via.Short())
	}
	hctx, cancel := context.WithCancel(ctx)
	h := &handshake{src: src, via: via, known: known, cancel: cancel}
	t.inbound[src] = h
	return hctx, h, nil
}

// release frees h's slot, unless a newer offer from its source took it.
func (t *rtcTransport) release(h *handshake) {
	h.cancel()
	t.mu.Lock()
	if t.inbound[h.src] == h {
		delete(t.inbound, h.src)
	}
	t.mu.Unlock()
}

// session finds the connection with id connID set up with src.
func (t *rtcTransport) session(connID string, src ID) *rtcConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.sessions[connID]; c != nil && c.remote == src {
		return c
	}
	return nil
}

// keepEarly holds candidates that came before their offer, within bounds.
func (t *rtcTransport) keepEarly(src ID, p candidatePayload) {
	t.mu.Lock()
	defer t.mu.Unlock()
	keepEarlyIn(t.early, string(src), p)
}

// keepEarlyIn adds a candidate from src (a node ID or a page's PeerJS id)
// to early, which holds at most maxEarlyConns connection ids, the oldest
// going first. The caller holds t.mu.
func keepEarlyIn(early map[string]*earlyCandidates, src string, p candidatePayload) {
	e := early[p.ConnectionID]
	if e == nil {
		if len(early) >= maxEarlyConns {
			var oldest string
			for k, v := range early {
				if oldest == "" || v.at.Before(early[oldest].at) {
					oldest = k
				}
			}
			delete(early, oldest)
		}
		e = &earlyCandidates{peer: src, at: time.Now()}
		early[p.ConnectionID] = e
	}
	if e.peer == src && len(e.cands) < maxCandidates {
		e.cands = append(e.cands, p.Candidate)
	}
}

// answerOffer sets up the inbound side of a link.
func (t *rtcTransport) answerOffer(ctx context.Context, src ID, p offerPayload) (Conn, error) {
	t.waitTURN(ctx)
	c, err := t.newConn(src, false, p.ConnectionID)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	t.mu.Lock()
	early := t.early[p.ConnectionID]
	delete(t.early, p.ConnectionID)
	t.mu.Unlock()
	if err := c.setRemote(p.SDP); err != nil {
		return nil, err
	}
	if early != nil && early.peer == string(src) {
		for _, cand := range early.cands {
			c.addCandidate(cand)
		}
	}
	ans, err := c.pc.CreateAnswer(nil)
	if err != nil {
		return nil, fmt.Errorf("mesh: create answer: %w", err)
	}
	if err := c.pc.SetLocalDescription(ans); err != nil {
		return nil, fmt.Errorf("mesh: set local description: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	defer cancel()
	if err := t.sendSignal(ctx, signal.TypeAnswer, src, answerPayload{SDP: ans, Type: "data", ConnectionID: c.connID}); err != nil {
		return nil, fmt.Errorf("mesh: send answer to %s: %w", src.Short(), err)
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// rtcConn is a Conn over one PeerConnection.
type rtcConn struct {
	t        *rtcTransport
	pc       *webrtc.PeerConnection
	connID   string
	remote   ID
	outbound bool
	dc       [2]*webrtc.DataChannel
	low      [2]chan struct{}
	answer   chan webrtc.SessionDescription

	// route is the Route of the selected candidate pair; nil until ICE
	// has selected one.
	route atomic.Pointer[Route]

	started chan struct{}
	recv    func(Channel, []byte)
	opened  chan struct{} // both channels open and the remote proven
	failed  chan struct{}
	done    chan struct{}

	mu        sync.Mutex
	remoteSet bool
	cands     []webrtc.ICECandidateInit
	nCands    int
	openCount int
	err       error
	resends   int // lost notices for the answer (signalLost), or resends of the offer (signalUnsent)
	// offersAgain counts the offers that came again (answerAgain).
	offersAgain int
	startOnce   sync.Once
	failOnce    sync.Once
	closeOnce   sync.Once
}

func (t *rtcTransport) newConn(remote ID, outbound bool, connID string) (*rtcConn, error) {
	policy := webrtc.ICETransportPolicyAll
	if t.cfg.RTC.RelayOnly {
		policy = webrtc.ICETransportPolicyRelay
	}
	pc, err := t.api.NewPeerConnection(webrtc.Configuration{
		ICEServers:         t.iceServers(),
		ICETransportPolicy: policy,
		Certificates:       []webrtc.Certificate{t.cert},
	})
	if err != nil {
		return nil, fmt.Errorf("mesh: new peer connection: %w", err)
	}
	c := &rtcConn{
		t: t, pc: pc, connID: connID, remote: remote, outbound: outbound,
		low:     [2]chan struct{}{make(chan struct{}, 1), make(chan struct{}, 1)},
		answer:  make(chan webrtc.SessionDescription, 1),
		started: make(chan struct{}),
		opened:  make(chan struct{}),
		failed:  make(chan struct{}),
		done:    make(chan struct{}),
	}
	t.mu.Lock()
	if len(t.sessions) >= maxSessions || t.sessions[connID] != nil {
		t.mu.Unlock()
		pc.Close()
		return nil, fmt.Errorf("mesh: cannot set up connection %q now", connID)
	}
	t.sessions[connID] = c
	t.mu.Unlock()

	// The route follows the selected candidate pair, which ICE may
	// change while the link lives.
	pc.SCTP().Transport().ICETransport().OnSelectedCandidatePairChange(func(p *webrtc.ICECandidatePair) {
		c.route.Store(pairRoute(p))
	})
	ordered := true
	for i, label := range [2]string{"ctl", "bulk"} {
		ch := Channel(i)
		id := uint16(i)
		negotiated := true
		ord := ordered
		if ch == Bulk && t.cfg.RTC.UnorderedBulk {
			ord = false
		}
		dc, err := pc.CreateDataChannel(label, &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &id, Ordered: &ord})
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("mesh: create %s channel: %w", label, err)
		}
		dc.SetBufferedAmountLowThreshold(t.cfg.RTC.SendBufferLow)
		dc.OnBufferedAmountLow(func() {
			select {
			case c.low[ch] <- struct{}{}:
			default:
			}
		})
		dc.OnOpen(c.channelOpen)
		dc.OnClose(func() { c.Close() })
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			select {
			case <-c.started:
			case <-c.done:
				return
			}
			c.recv(ch, m.Data)
		})
		c.dc[i] = dc
	}
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := t.sendSignal(ctx, signal.TypeCandidate, remote, candidatePayload{
			Candidate: cand.ToJSON(), Type: "data", ConnectionID: connID,
		}); err != nil {
			t.log.Debug("send candidate", "peer", remote.Short(), "err", err)
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateFailed:
			c.fail(fmt.Errorf("%w: connection failed (ICE found no working candidate pair)", ErrNoPath))
			c.Close()
		case webrtc.PeerConnectionStateClosed:
			c.Close()
		}
	})
	return c, nil
}

// channelOpen runs when a data channel opens; once both have, it checks
// that the DTLS peer holds the key of the node we meant.
func (c *rtcConn) channelOpen() {
	c.mu.Lock()
	c.openCount++
	both := c.openCount == 2
	c.mu.Unlock()
	if !both {
		return
	}
	der := c.pc.SCTP().Transport().GetRemoteCertificate()
	got, err := idFromCertificate(der)
	if err != nil {
		c.fail(fmt.Errorf("%w: %v", ErrIdentityMismatch, err))
		return
	}
	if got != c.remote {
		c.t.log.Warn("remote identity mismatch: closing", "want", c.remote.Short(), "got", got.Short())
		c.fail(fmt.Errorf("%w: wanted %s, the remote proved %s", ErrIdentityMismatch, c.remote.Short(), got.Short()))
		c.Close()
		return
	}
	close(c.opened)
}

func (c *rtcConn) isReady() bool {
	select {
	case <-c.opened:
		return true
	default:
		return false
	}
}

func (c *rtcConn) waitReady(ctx context.Context) error {
	select {
	case <-c.opened:
		return nil
	case <-c.failed:
		return c.failure()
	case <-c.done:
		if err := c.failure(); err != nil {
			return err
		}
		return fmt.Errorf("%w: during setup", ErrLinkClosed)
	case <-ctx.Done():
		return fmt.Errorf("mesh: link to %s not ready: %w", c.remote.Short(), ctx.Err())
	}
}

func (c *rtcConn) fail(err error) {
	c.failOnce.Do(func() {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		close(c.failed)
	})
}

// answered reports whether an outbound connection has its answer.
func (c *rtcConn) answered() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remoteSet
}

// resend counts a lost notice for the answer (or the loss of the offer)
// and returns the count, the resend it would be.
func (c *rtcConn) resend() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resends++
	return c.resends
}

func (c *rtcConn) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *rtcConn) setRemote(sd webrtc.SessionDescription) error {
	if err := c.pc.SetRemoteDescription(sd); err != nil {
		return fmt.Errorf("mesh: set remote description: %w", err)
	}
	c.mu.Lock()
	c.remoteSet = true
	cands := c.cands
	c.cands = nil
	c.mu.Unlock()
	for _, cand := range cands {
		c.addCandidate(cand)
	}
	return nil
}

func (c *rtcConn) addCandidate(cand webrtc.ICECandidateInit) {
	c.mu.Lock()
	if c.nCands >= maxCandidates {
		c.mu.Unlock()
		return
	}
	c.nCands++
	if !c.remoteSet {
		c.cands = append(c.cands, cand)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	if err := c.pc.AddICECandidate(cand); err != nil {
		c.t.log.Debug("bad remote candidate", "peer", c.remote.Short(), "err", err)
	}
}

// Route is how the link's traffic travels: RouteTURN when either end of
// the selected candidate pair is a relay's.
func (c *rtcConn) Route() Route {
	if r := c.route.Load(); r != nil {
		return *r
	}
	if p, err := c.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair(); err == nil && p != nil {
		return *pairRoute(p)
	}
	return RouteDirect
}

func pairRoute(p *webrtc.ICECandidatePair) *Route {
	r := RouteDirect
	if p != nil && ((p.Local != nil && p.Local.Typ == webrtc.ICECandidateTypeRelay) ||
		(p.Remote != nil && p.Remote.Typ == webrtc.ICECandidateTypeRelay)) {
		r = RouteTURN
	}
	return &r
}

func (c *rtcConn) Remote() ID     { return c.remote }
func (c *rtcConn) Outbound() bool { return c.outbound }

func (c *rtcConn) Start(recv func(Channel, []byte)) {
	c.startOnce.Do(func() {
		c.recv = recv
		close(c.started)
	})
}

func (c *rtcConn) Send(ctx context.Context, ch Channel, b []byte) error {
	if int(ch) >= len(c.dc) {
		return fmt.Errorf("mesh: no channel %d", ch)
	}
	dc := c.dc[ch]
	high := c.t.cfg.RTC.SendBufferHigh
	waited := false
	for dc.BufferedAmount() > high {
		waited = true
		select {
		case <-c.low[ch]:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return ErrLinkClosed
		}
	}
	if waited {
		// Another sender may be waiting on the same drain: pass it on.
		select {
		case c.low[ch] <- struct{}{}:
		default:
		}
	}
	return dc.Send(b)
}

func (c *rtcConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		// pc.Close may wait on pion's goroutines, some of which may be the
		// caller (a data channel callback): do it on its own goroutine,
		// which Serve waits for unless it is already ending.
		c.t.mu.Lock()
		if c.t.sessions[c.connID] == c {
			delete(c.t.sessions, c.connID)
		}
		if c.t.stopping {
			go c.pc.Close()
		} else {
			c.t.closing.Go(func() { c.pc.Close() })
		}
		c.t.mu.Unlock()
	})
	return nil
}

func (c *rtcConn) Done() <-chan struct{} { return c.done }

// Refreshing TURN credentials: the rendezvous hands registered clients
// short-lived ones (signal.Client.TURN); they are fetched on each
// registration and again when three quarters of their life has passed,
// so that links made at any time get valid ones.
const (
	turnFetchTimeout = 10 * time.Second
	turnRetryMin     = time.Second
	turnRetryMax     = time.Minute
	// turnRefreshMin bounds how soon credentials are refreshed, against a
	// rendezvous that hands out ones that expire at once.
	turnRefreshMin = 5 * time.Second
)

// keepTURN fetches TURN credentials from the rendezvous each time the
// client registers (a signal on registered) and before they expire,
// until ctx ends.
func (t *rtcTransport) keepTURN(ctx context.Context, sig *signal.Client, registered <-chan struct{}) {
	timer := time.NewTimer(0)
	if !timer.Stop() {
		<-timer.C
	}
	defer timer.Stop()
	retry := turnRetryMin
	for {
		select {
		case <-ctx.Done():
			return
		case <-registered:
		case <-timer.C:
		}
		timer.Stop()
		fctx, cancel := context.WithTimeout(ctx, turnFetchTimeout)
		creds, err := sig.TURN(fctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, signal.ErrNoTURN):
			// Fetched again on the next registration only.
			t.setTURN(nil, time.Time{})
		case err != nil:
			t.log.Debug("TURN credentials", "err", err, "retry", retry)
			timer.Reset(retry)
			retry = min(2*retry, turnRetryMax)
		default:
			retry = turnRetryMin
			servers := iceServersFrom(creds.ICEServers, t.log)
			t.setTURN(servers, creds.Expires)
			t.log.Info("TURN credentials from the rendezvous", "servers", len(servers), "expires", creds.Expires.Round(time.Second))
			timer.Reset(max(time.Until(creds.Expires)*3/4, turnRefreshMin))
		}
		t.turnOnce.Do(func() { close(t.turnFirst) })
	}
}

func (t *rtcTransport) setTURN(s []webrtc.ICEServer, expires time.Time) {
	t.mu.Lock()
	t.turn, t.turnExpires = s, expires
	t.mu.Unlock()
	t.turnOnce.Do(func() { close(t.turnFirst) })
}

// waitRegistered waits, until ctx ends, for the node's first registration
// with the rendezvous. Until then a node has no links and the rendezvous is
// its only way to send an offer, which would fail at once with
// signal.ErrNotConnected: a dial made just after the node started (the
// maintainer's first, a Connect) would fail for nothing, as a dial a
// moment later succeeds. The rendezvous lists a client before the client
// has read its OPEN, so a caller that waits for the listing (a peer, a
// test) cannot tell that moment either. Once registered, a node that loses
// the rendezvous fails such dials at once as before: it may have other
// ways through the mesh, and a lost rendezvous may not come back soon.
// When ctx ends first, the error says both why (signal.ErrNotConnected,
// which the maintainer takes as no fault of the peer's) and ctx's: the
// dial ends there, without making a connection and an offer it cannot
// send.
func (t *rtcTransport) waitRegistered(ctx context.Context) error {
	select {
	case <-t.registered:
	case <-t.stopped:
	case <-ctx.Done():
		return fmt.Errorf("mesh: waiting for the first registration with the rendezvous: %w (%w)", signal.ErrNotConnected, ctx.Err())
	}
	return nil
}

// waitTURN waits, for at most turnFetchTimeout, for the first fetch of
// TURN credentials, so that the first links of a node behind a NAT are
// not tried, and failed, without its relay.
// A node not registered with the rendezvous does not wait: it fetches
// none until it is.
func (t *rtcTransport) waitTURN(ctx context.Context) {
	t.mu.Lock()
	sig := t.sig
	t.mu.Unlock()
	if sig == nil || !sig.Connected() {
		return
	}
	timer := time.NewTimer(turnFetchTimeout)
	defer timer.Stop()
	select {
	case <-t.turnFirst:
	case <-timer.C:
	case <-ctx.Done():
	}
}

// iceServers are the configured ICE servers and the rendezvous's, while
// their credentials last.
func (t *rtcTransport) iceServers() []webrtc.ICEServer {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.turn) == 0 || time.Now().After(t.turnExpires) {
		return t.cfg.ICEServers
	}
	return append(slices.Clone(t.cfg.ICEServers), t.turn...)
}

// maxHandedServers bounds the ICE server URLs taken from a rendezvous.
const maxHandedServers = 8

// iceServersFrom keeps the STUN and TURN servers pion can use: one bad
// URL from the rendezvous would make every PeerConnection fail.
func iceServersFrom(in []signal.ICEServer, log *slog.Logger) []webrtc.ICEServer {
	var out []webrtc.ICEServer
	n := 0
	for _, s := range in {
		var urls []string
		for _, u := range s.URLs {
			if n >= maxHandedServers {
				break
			}
			if _, err := stun.ParseURI(u); err != nil {
				log.Debug("TURN credentials: unusable URL", "url", u, "err", err)
				continue
			}
			urls = append(urls, u)
			n++
		}
		if len(urls) > 0 {
			out = append(out, webrtc.ICEServer{URLs: urls, Username: s.Username, Credential: s.Credential})
		}
	}
	return out
}

// bufferedNet is the standard network with larger kernel buffers on the
// UDP sockets it opens (RTCConfig.UDPBuffer): ICE's host sockets, mDNS's,
// and a TURN client's. It lists the network interfaces anew on each call,
// as pion does by default with a stdnet.Net of its own for each
// PeerConnection: this one is shared by every link of the node, and a
// stdnet.Net lists them once, when made, so a node started before its
// network came up (or moved to another) gathered its candidates from the
// addresses it had at start for good.
type bufferedNet struct {
	*stdnet.Net // for its calls that keep no state: Listen, Dial, Resolve
	size        int
}

// Interfaces lists the interfaces as they are now.
func (n *bufferedNet) Interfaces() ([]*transport.Interface, error) {
	c, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("mesh: network interfaces: %w", err)
	}
	return c.Interfaces()
}

// InterfaceByIndex looks index up among the interfaces as they are now.
func (n *bufferedNet) InterfaceByIndex(index int) (*transport.Interface, error) {
	c, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("mesh: network interfaces: %w", err)
	}
	return c.InterfaceByIndex(index)
}

// InterfaceByName looks name up among the interfaces as they are now.
func (n *bufferedNet) InterfaceByName(name string) (*transport.Interface, error) {
	c, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("mesh: network interfaces: %w", err)
	}
	return c.InterfaceByName(name)
}

func newBufferedNet(size int) (*bufferedNet, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("mesh: network interfaces: %w", err)
	}
	return &bufferedNet{Net: n, size: size}, nil
}

// ListenUDP opens the socket as the standard network does, then asks for
// the buffers; a kernel that gives less is not an error.
func (n *bufferedNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	if uc, ok := c.(*net.UDPConn); ok {
		n.grow(uc)
	}
	return c, nil
}

// ListenPacket is ListenUDP for the sockets ICE opens by address string.
func (n *bufferedNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	if uc, ok := c.(*net.UDPConn); ok {
		n.grow(uc)
	}
	return c, nil
}

func (n *bufferedNet) grow(c *net.UDPConn) {
	_ = c.SetReadBuffer(n.size)
	_ = c.SetWriteBuffer(n.size)
}
