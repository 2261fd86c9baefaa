package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/catnest/catnest/mesh/signal"
)

// Guests are web pages that use the stock PeerJS client: they register
// with the same rendezvous as the node and call peer.connect(nodeID). Their
// offers look like a node's (the PeerJS OFFER shape) but are told apart by
// what only nodes send: a node's offer carries {catnest: 1, cert} in its
// PeerJS metadata (see checkOfferCert). A guest's DataConnection is its
// own PeerConnection, never a link: it carries none of the mesh protocols,
// and the node hands it to the handler set with HandleGuests.

// DefaultMaxGuests is how many guest connections a node holds at once
// unless Config.MaxGuests says otherwise.
const DefaultMaxGuests = 32

// Bounds on what one guest connection can make the node hold.
const (
	// guestQueue is how many received messages wait for the handler, and
	// guestQueueBytes how many bytes they may hold together (a message can
	// be MaxBulkFrame, so the count alone would let each page make the node
	// hold 16 MiB); a page that sends faster than it is served is
	// disconnected.
	guestQueue      = 64
	guestQueueBytes = 1 << 20
	// guestSendHigh: Send waits while this much is buffered to a guest.
	guestSendHigh = 1 << 20
	guestSendLow  = 256 << 10
)

// ErrGuestTooFast: a guest sent more messages or bytes than its queue
// holds.
var ErrGuestTooFast = errors.New("mesh: guest sends faster than it is served")

// GuestHandler serves one guest connection. It runs on its own goroutine
// once the connection's data channel is open, and may block until the
// guest is done; ctx ends when the node stops. The connection is closed
// when the handler returns.
type GuestHandler func(ctx context.Context, g *Guest)

// HandleGuests sets the handler of guest connections (PeerJS pages that
// connect to this node through its rendezvous). Without one, guest offers
// are ignored. Call it before Serve; it has no effect on a node whose
// transport is not WebRTC.
func (n *Node) HandleGuests(h GuestHandler) {
	if t, ok := n.transport.(*rtcTransport); ok {
		t.mu.Lock()
		t.guestH = h
		t.mu.Unlock()
	}
}

// Guest is a PeerJS DataConnection from a web page. Its messages are the
// data-channel messages as the page's serialization made them (see
// package mesh/peerjs).
type Guest struct {
	t      *rtcTransport
	pc     *webrtc.PeerConnection
	peer   string
	offer  offerPayload
	in     chan []byte
	queued atomic.Int64 // bytes in in
	low    chan struct{}
	opened chan struct{}
	done   chan struct{}
	dc     *webrtc.DataChannel // set once, before opened closes
	mu     sync.Mutex
	err    error
	nCands int
	// answered is set once the answer is sent; until then local
	// candidates wait in pending, since the PeerJS client fails on a
	// candidate that comes before the answer it belongs to.
	answered bool
	pending  []webrtc.ICECandidateInit
	openOnce sync.Once
	once     sync.Once
}

// Peer is the page's PeerJS id, as the rendezvous relayed it. Any page
// can pick any id: it proves nothing.
func (g *Guest) Peer() string { return g.peer }

// Label is the DataConnection's label (PeerJS: the connection id unless
// the page set one).
func (g *Guest) Label() string { return g.offer.Label }

// Serialization is what the page asked for: "binary" (the PeerJS
// default), "binary-utf8", "json", "raw" or "msgpack".
func (g *Guest) Serialization() string { return g.offer.Serialization }

// Metadata is the page's PeerJS metadata, unchecked JSON.
func (g *Guest) Metadata() json.RawMessage { return g.offer.Metadata }

// Recv returns the next message from the page. It fails once the
// connection is closed, with ErrGuestTooFast when the page overran its
// queue.
func (g *Guest) Recv(ctx context.Context) ([]byte, error) {
	select {
	case b := <-g.in:
		g.queued.Add(-int64(len(b)))
		return b, nil
	case <-g.done:
		select {
		case b := <-g.in:
			g.queued.Add(-int64(len(b)))
			return b, nil
		default:
		}
		return nil, g.closeErr()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Send sends one data-channel message to the page, waiting while much is
// buffered to it, so that a page that does not read cannot make the node
// hold unbounded memory.
func (g *Guest) Send(ctx context.Context, b []byte) error {
	for g.dc.BufferedAmount() > guestSendHigh {
		select {
		case <-g.low:
		case <-g.done:
			return g.closeErr()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := g.dc.Send(b); err != nil {
		return fmt.Errorf("mesh: send to guest: %w", err)
	}
	return nil
}

// Flush waits until everything sent has left for the page, or ctx ends,
// so that a last answer (an error, say) arrives before Close.
func (g *Guest) Flush(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for g.dc.BufferedAmount() > 0 {
		select {
		case <-t.C:
		case <-g.done:
			return g.closeErr()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Close closes the connection. The page sees its DataConnection close.
func (g *Guest) Close() error {
	g.closeWith(nil)
	return nil
}

// Done is closed once the connection is.
func (g *Guest) Done() <-chan struct{} { return g.done }

func (g *Guest) closeErr() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return g.err
	}
	return ErrLinkClosed
}

func (g *Guest) closeWith(err error) {
	g.once.Do(func() {
		g.mu.Lock()
		g.err = err
		g.mu.Unlock()
		close(g.done)
		t := g.t
		t.mu.Lock()
		if t.guests[g.offer.ConnectionID] == g {
			delete(t.guests, g.offer.ConnectionID)
		}
		if t.stopping {
			go g.pc.Close()
		} else {
			t.closing.Go(func() { g.pc.Close() })
		}
		t.mu.Unlock()
	})
}

// isGuestOffer reports whether an offer is a PeerJS data connection from
// a page rather than a link from a node.
func isGuestOffer(p offerPayload) bool {
	if p.Type != "data" {
		return false
	}
	var meta struct {
		Catnest int `json:"catnest"`
	}
	return len(p.Metadata) == 0 || json.Unmarshal(p.Metadata, &meta) != nil || meta.Catnest == 0
}

// guestSignal handles a signal from the rendezvous if it belongs to a
// guest connection, and reports whether it did. It runs on the signal
// client's read goroutine.
func (t *rtcTransport) guestSignal(ctx context.Context, wg *sync.WaitGroup, m signal.Message) bool {
	_, idErr := ParseID(m.Src)
	fromPage := idErr != nil
	switch m.Type {
	case signal.TypeOffer:
		p, err := decodeOffer(m.Payload)
		if err != nil || !isGuestOffer(p) {
			return fromPage // a page's bad offer goes nowhere else either
		}
		t.mu.Lock()
		h := t.guestH
		t.mu.Unlock()
		if h == nil {
			t.log.Debug("guest offer ignored: guests are not served", "src", m.Src)
			return true
		}
		g, err := t.newGuest(m.Src, p)
		if err != nil {
			t.log.Info("guest refused", "src", m.Src, "err", err)
			return true
		}
		wg.Go(func() { t.runGuest(ctx, g, h) })
		return true
	case signal.TypeCandidate:
		p, err := decodeCandidate(m.Payload)
		if err != nil {
			return fromPage
		}
		t.mu.Lock()
		g := t.guests[p.ConnectionID]
		t.mu.Unlock()
		if g != nil && g.peer == m.Src {
			g.addCandidate(p.Candidate)
			return true
		}
		if fromPage {
			t.mu.Lock()
			if t.guestH != nil {
				keepEarlyIn(t.earlyPages, m.Src, p)
			}
			t.mu.Unlock()
			return true
		}
		return false
	case signal.TypeLeave, signal.TypeExpire:
		t.mu.Lock()
		var gone []*Guest
		for _, g := range t.guests {
			if g.peer == m.Src {
				gone = append(gone, g)
			}
		}
		t.mu.Unlock()
		for _, g := range gone {
			g.Close()
		}
		return fromPage
	}
	return fromPage
}

// newGuest takes a slot for a guest connection and sets up its
// PeerConnection.
func (t *rtcTransport) newGuest(src string, p offerPayload) (*Guest, error) {
	// Offers past the bound are refused before a PeerConnection is made
	// for them: a page may send many.
	t.mu.Lock()
	full := len(t.guests) >= t.maxGuests()
	t.mu.Unlock()
	if full {
		return nil, errGuestsFull
	}
	pc, err := t.api.NewPeerConnection(webrtc.Configuration{
		ICEServers:   t.cfg.ICEServers,
		Certificates: []webrtc.Certificate{t.cert},
	})
	if err != nil {
		return nil, fmt.Errorf("mesh: new peer connection: %w", err)
	}
	g := &Guest{
		t: t, pc: pc, peer: src, offer: p,
		in:     make(chan []byte, guestQueue),
		low:    make(chan struct{}, 1),
		opened: make(chan struct{}),
		done:   make(chan struct{}),
	}
	t.mu.Lock()
	switch {
	case t.stopping:
		err = ErrClosed
	case len(t.guests) >= t.maxGuests():
		err = errGuestsFull
	case t.guests[p.ConnectionID] != nil:
		err = fmt.Errorf("connection id %q in use", p.ConnectionID)
	}
	if err != nil {
		t.mu.Unlock()
		pc.Close()
		return nil, err
	}
	t.guests[p.ConnectionID] = g
	early := t.earlyPages[p.ConnectionID]
	delete(t.earlyPages, p.ConnectionID)
	t.mu.Unlock()

	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		taken := false
		g.openOnce.Do(func() {
			taken = true
			g.dc = dc
			dc.SetBufferedAmountLowThreshold(guestSendLow)
			dc.OnBufferedAmountLow(func() {
				select {
				case g.low <- struct{}{}:
				default:
				}
			})
			dc.OnOpen(func() { close(g.opened) })
			dc.OnClose(func() { g.Close() })
			dc.OnMessage(func(m webrtc.DataChannelMessage) { g.deliver(m.Data) })
		})
		if !taken {
			dc.Close() // one channel per DataConnection
		}
	})
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		g.mu.Lock()
		if !g.answered {
			g.pending = append(g.pending, c.ToJSON())
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		g.sendCandidate(c.ToJSON())
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			g.Close()
		}
	})
	if err := pc.SetRemoteDescription(p.SDP); err != nil {
		g.Close()
		return nil, fmt.Errorf("mesh: guest offer: %w", err)
	}
	if early != nil && early.peer == src {
		for _, c := range early.cands {
			g.addCandidate(c)
		}
	}
	return g, nil
}

// deliver queues a message from the page for Recv, or closes the
// connection with ErrGuestTooFast when the queue is full in messages or
// bytes. It runs on the data channel's read goroutine, one message at a
// time, so the check and the add cannot race with another deliver.
func (g *Guest) deliver(b []byte) {
	if n := g.queued.Load(); n > 0 && n+int64(len(b)) > guestQueueBytes {
		g.closeWith(ErrGuestTooFast)
		return
	}
	g.queued.Add(int64(len(b)))
	select {
	case g.in <- b:
	case <-g.done:
		g.queued.Add(-int64(len(b)))
	default:
		g.queued.Add(-int64(len(b)))
		g.closeWith(ErrGuestTooFast)
	}
}

var errGuestsFull = errors.New("mesh: as many guests as the node serves")

// maxGuests is Config.MaxGuests or its default.
func (t *rtcTransport) maxGuests() int {
	if t.cfg.MaxGuests == 0 {
		return DefaultMaxGuests
	}
	return t.cfg.MaxGuests
}

// sendCandidate trickles a local candidate to the page.
func (g *Guest) sendCandidate(c webrtc.ICECandidateInit) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.t.sendRendezvous(ctx, signal.TypeCandidate, g.peer, candidatePayload{
		Candidate: c, Type: "data", ConnectionID: g.offer.ConnectionID,
	}); err != nil {
		g.t.log.Debug("send candidate to guest", "guest", g.peer, "err", err)
	}
}

func (g *Guest) addCandidate(c webrtc.ICECandidateInit) {
	g.mu.Lock()
	g.nCands++
	n := g.nCands
	g.mu.Unlock()
	if n > maxCandidates {
		return
	}
	if err := g.pc.AddICECandidate(c); err != nil {
		g.t.log.Debug("bad guest candidate", "guest", g.peer, "err", err)
	}
}

// runGuest answers the guest's offer, waits for its data channel and
// runs the handler.
func (t *rtcTransport) runGuest(ctx context.Context, g *Guest, h GuestHandler) {
	defer g.Close()
	err := func() error {
		ans, err := g.pc.CreateAnswer(nil)
		if err != nil {
			return fmt.Errorf("create answer: %w", err)
		}
		if err := g.pc.SetLocalDescription(ans); err != nil {
			return fmt.Errorf("set local description: %w", err)
		}
		sctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
		defer cancel()
		if err := t.sendRendezvous(sctx, signal.TypeAnswer, g.peer, answerPayload{
			SDP: ans, Type: "data", ConnectionID: g.offer.ConnectionID,
		}); err != nil {
			return fmt.Errorf("send answer: %w", err)
		}
		g.mu.Lock()
		g.answered = true
		pending := g.pending
		g.pending = nil
		g.mu.Unlock()
		for _, c := range pending {
			g.sendCandidate(c)
		}
		select {
		case <-g.opened:
			return nil
		case <-g.done:
			return g.closeErr()
		case <-sctx.Done():
			return fmt.Errorf("data channel not open: %w", sctx.Err())
		}
	}()
	if err != nil {
		t.log.Info("guest connection failed", "guest", g.peer, "err", err)
		return
	}
	t.log.Debug("guest connected", "guest", g.peer, "serialization", g.offer.Serialization)
	h(ctx, g)
}

// sendRendezvous sends a signal through the rendezvous only: a page is not
// in the mesh.
func (t *rtcTransport) sendRendezvous(ctx context.Context, typ, dst string, payload any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	t.mu.Lock()
	sig := t.sig
	t.mu.Unlock()
	if sig == nil {
		return signal.ErrNotConnected
	}
	return sig.Send(ctx, signal.Message{Type: typ, Dst: dst, Payload: b})
}
