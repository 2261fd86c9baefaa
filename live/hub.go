package live

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// hub is one room's media on one node: the tracks it gets from upstream
// (the publisher at the host, the parent elsewhere) and the outputs it
// forwards them to, children and local viewers alike. It forwards RTP as
// it comes, without decoding; each output has its own TrackLocalStaticRTP,
// so pion's interceptors answer NACKs per output from what was sent on it.
type hub struct {
	room string
	// interval is the least time between two keyframe requests upstream.
	interval time.Duration

	mu sync.Mutex
	// slots are the room's tracks, video first; a nil entry is a kind the
	// room does not carry.
	slots [2]*slot
	// expect is how many slots the upstream will fill; ready is closed
	// (and replaced on reset) once it has.
	expect int
	ready  chan struct{}
	// gen counts upstream changes, so that a reader of a replaced upstream
	// stops forwarding.
	gen uint64
	// pli asks the current upstream for a keyframe; nil when it cannot.
	pli func() error
	// lastPLI is when the last keyframe request went upstream; pending
	// says one is scheduled for when the interval ends.
	lastPLI time.Time
	pending *time.Timer
	closed  bool

	// outs is read on every packet: copy on write.
	outs atomic.Pointer[[]*output]

	// videoKeys finds the keyframes of the video slot's codec; nil when
	// the cache does not know it. mu guards it.
	videoKeys *keyframeCodec

	// vmu orders the video forwarding against a new output's start, so
	// that the output gets the cached keyframe and then every later
	// packet, none twice and none in between lost. It is taken before mu,
	// never while mu is held.
	vmu sync.Mutex
	// keys is the keyframe cache (keyframe.go), sent to a new output at
	// once so that its decoder shows a sharp picture without waiting for
	// the next keyframe.
	keys keyCache
	// lastSeq is the sequence number of the last video packet forwarded.
	lastSeq uint16

	// Counters for tests and benchmarks.
	packetsIn   atomic.Uint64
	keyframesUp atomic.Uint64
	lastIn      atomic.Int64 // unix nanos of the last packet in
	// trace, when set (by benchmarks), records the video packets' times.
	trace atomic.Pointer[hopTrace]
}

// hopTrace records, by video sequence number, when a packet arrived at a
// hub (in) and when the hub had written it to every output (out): a
// benchmark reads the latency per relay hop from it without a lock or an
// allocation per packet, which would be part of what it measures. An entry
// packs the time since base (ns) with the sequence number it is for, so
// that the last traceLen packets can be read back.
type hopTrace struct {
	base    int64 // unix ns
	in, out [traceLen]atomic.Int64
}

const traceLen = 1 << 12

func newHopTrace() *hopTrace { return &hopTrace{base: time.Now().UnixNano()} }

func (t *hopTrace) mark(a *[traceLen]atomic.Int64, seq uint16, now int64) {
	a[seq%traceLen].Store((now-t.base)<<16 | int64(seq))
}

// at returns when packet seq was recorded in a (unix ns), if it was.
func (t *hopTrace) at(a *[traceLen]atomic.Int64, seq uint16) (int64, bool) {
	v := a[seq%traceLen].Load()
	if v == 0 || uint16(v) != seq {
		return 0, false
	}
	return t.base + v>>16, true
}

// slot is one of the room's tracks.
type slot struct {
	kind  webrtc.RTPCodecType
	codec webrtc.RTPCodecCapability
}

// output is one downstream PeerConnection's tracks.
type output struct {
	tracks [2]*webrtc.TrackLocalStaticRTP
	sent   atomic.Uint64
	// cached counts the packets sent from the keyframe cache.
	cached atomic.Uint64
	// dtls is the connection's DTLS transport; see whenUp.
	dtls *webrtc.DTLSTransport
	once sync.Once
}

func newHub(room string, interval time.Duration) *hub {
	h := &hub{room: room, interval: interval, ready: make(chan struct{})}
	h.outs.Store(&[]*output{})
	return h
}

func kindIndex(k webrtc.RTPCodecType) int {
	if k == webrtc.RTPCodecTypeAudio {
		return 1
	}
	return 0
}

// upstream starts a new upstream that will fill expect slots, and returns
// its generation. pli asks it for a keyframe.
func (h *hub) upstream(expect int, pli func() error) uint64 {
	h.mu.Lock()
	h.gen++
	gen := h.gen
	h.expect = expect
	h.pli = pli
	h.mu.Unlock()
	// A new publisher's stream is another stream; at a relay the new
	// parent's cache sends the keyframe again. From here on the old
	// upstream's packets are neither cached nor forwarded.
	h.vmu.Lock()
	if gen > h.keys.gen {
		h.keys.reset(gen)
	}
	h.vmu.Unlock()
	return gen
}

// setSlot records the codec of one of generation gen's tracks. A codec
// that differs from the one outputs were made for resets the hub: the
// outputs are dropped (their owners are told through reset's return) and
// the room starts over.
func (h *hub) setSlot(gen uint64, kind webrtc.RTPCodecType, codec webrtc.RTPCodecCapability) (dropped []*output, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if gen != h.gen || h.closed {
		return nil, false
	}
	i := kindIndex(kind)
	if s := h.slots[i]; s != nil && !sameCodec(s.codec, codec) {
		dropped = *h.outs.Load()
		h.outs.Store(&[]*output{})
		h.slots = [2]*slot{}
		h.ready = make(chan struct{})
	}
	h.slots[i] = &slot{kind: kind, codec: codec}
	if i == 0 {
		h.videoKeys = keyframeCodecFor(codec.MimeType)
	}
	n := 0
	for _, s := range h.slots {
		if s != nil {
			n++
		}
	}
	if n >= h.expect {
		select {
		case <-h.ready:
		default:
			close(h.ready)
		}
	}
	return dropped, true
}

func sameCodec(a, b webrtc.RTPCodecCapability) bool {
	return a.MimeType == b.MimeType && a.ClockRate == b.ClockRate && a.Channels == b.Channels && a.SDPFmtpLine == b.SDPFmtpLine
}

// waitReady waits until the upstream has filled its slots, or done.
func (h *hub) waitReady(done <-chan struct{}) bool {
	h.mu.Lock()
	ready := h.ready
	h.mu.Unlock()
	select {
	case <-ready:
		return true
	case <-done:
		return false
	}
}

// isReady reports whether the hub has media to forward.
func (h *hub) isReady() bool {
	h.mu.Lock()
	ready := h.ready
	h.mu.Unlock()
	select {
	case <-ready:
		return true
	default:
		return false
	}
}

// codecs returns the room's slots.
func (h *hub) codecs() [2]*slot {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.slots
}

// forward sends one packet of generation gen to every output.
func (h *hub) forward(gen uint64, kind webrtc.RTPCodecType, p *rtp.Packet) bool {
	h.mu.Lock()
	cur := gen == h.gen && !h.closed
	kc := h.videoKeys
	h.mu.Unlock()
	if !cur {
		return false
	}
	h.packetsIn.Add(1)
	now := time.Now().UnixNano()
	h.lastIn.Store(now)
	// Header extensions go no further than the hop they came on: their IDs
	// are negotiated per connection, so the next hop would read them as
	// other extensions (pion's interceptors then drop the packet).
	q := *p
	q.Header.Extension, q.Header.Extensions, q.Header.ExtensionProfile = false, nil, 0
	i := kindIndex(kind)
	var tr *hopTrace
	if i == 0 {
		h.vmu.Lock()
		defer h.vmu.Unlock()
		if gen != h.keys.gen {
			return false // replaced since the check above
		}
		h.lastSeq = q.SequenceNumber
		if kc != nil {
			h.keys.add(kc, &q)
		}
		if tr = h.trace.Load(); tr != nil {
			tr.mark(&tr.in, q.SequenceNumber, now)
		}
	}
	for _, o := range *h.outs.Load() {
		if t := o.tracks[i]; t != nil {
			// An error is a closed or failing binding; its owner notices
			// through the PeerConnection's state.
			_ = t.WriteRTP(&q)
			o.sent.Add(1)
		}
	}
	if tr != nil {
		tr.mark(&tr.out, q.SequenceNumber, time.Now().UnixNano())
	}
	return true
}

// pump reads one upstream track and forwards it until the track ends or
// the upstream is replaced. first, if not nil, is called after the first
// packet was forwarded.
//
// It reads every packet into the same buffer and packet: forward is done
// with a packet when it returns (pion's tracks copy what they write, the
// keyframe cache what it keeps), so a forwarded packet allocates nothing
// here. ReadRTP would allocate a receive buffer and a packet each time:
// at every relay, for every packet, garbage that the collector's pauses
// and mark work turn into latency for the whole node.
func (h *hub) pump(gen uint64, t *webrtc.TrackRemote, first func()) {
	buf := make([]byte, readBufSize)
	var p rtp.Packet
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			return
		}
		if p.Unmarshal(buf[:n]) != nil {
			continue // authenticated by SRTP but not RTP: dropped alone
		}
		if !h.forward(gen, t.Kind(), &p) {
			return
		}
		if first != nil {
			first()
			first = nil
		}
	}
}

// readBufSize holds any packet pion passes on: it reads at most its
// receive MTU (1460 bytes by default) from the socket.
const readBufSize = 1500

// addOutput makes an output of every slot the wanted filter accepts and
// adds its tracks to pc; the output gets packets from then on. Keyframe
// requests that pc's receiver sends come back to the hub.
func (h *hub) addOutput(pc *webrtc.PeerConnection, want func(slot) bool) (*output, error) {
	o := &output{}
	var senders []*webrtc.RTPSender
	for i, s := range h.codecs() {
		if s == nil || (want != nil && !want(*s)) {
			continue
		}
		t, err := webrtc.NewTrackLocalStaticRTP(s.codec, s.kind.String(), "catnest-"+h.room)
		if err != nil {
			return nil, fmt.Errorf("live: track: %w", err)
		}
		snd, err := pc.AddTrack(t)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNoCodec, err)
		}
		o.tracks[i] = t
		senders = append(senders, snd)
	}
	if len(senders) == 0 {
		return nil, ErrNoCodec
	}
	o.dtls = senders[0].Transport()
	for _, snd := range senders {
		go h.readRTCP(snd)
	}
	return o, nil
}

// attachOutput starts forwarding to o: first the cached keyframe, so that
// a new viewer gets a sharp picture at once, then every packet as it
// comes. It also asks upstream for a fresh keyframe, since the packets
// after the cached one refer to frames o never got. Call it once o's
// connection is up: pion drops what is written before.
func (h *hub) attachOutput(o *output) {
	h.vmu.Lock()
	defer h.vmu.Unlock()
	for _, p := range h.keys.keyframeFor(o.tracks[0], h.lastSeq) {
		_ = o.tracks[0].WriteRTP(p)
		o.sent.Add(1)
		o.cached.Add(1)
	}
	h.mu.Lock()
	outs := slices.Clone(*h.outs.Load())
	h.outs.Store(ptr(append(outs, o)))
	h.mu.Unlock()
	h.keyframe()
}

func ptr[T any](v T) *T { return &v }

// start attaches o once its connection is up (see attachOutput); a
// connection may report "connected" more than once.
func (h *hub) start(o *output) {
	o.once.Do(func() {
		// pion reports the connection up before SRTP runs; the DTLS
		// transport's start holds the lock its State takes until then.
		_ = o.dtls.State()
		h.attachOutput(o)
	})
}

// removeOutput stops forwarding to o.
func (h *hub) removeOutput(o *output) {
	h.mu.Lock()
	defer h.mu.Unlock()
	outs := slices.DeleteFunc(slices.Clone(*h.outs.Load()), func(x *output) bool { return x == o })
	h.outs.Store(&outs)
}

// readRTCP reads an output's RTCP until its PeerConnection closes and
// passes keyframe requests up.
func (h *hub) readRTCP(snd *webrtc.RTPSender) {
	for {
		pkts, _, err := snd.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				h.keyframe()
			}
		}
	}
}

// keyframe asks upstream for a keyframe: at once if the last request is
// older than interval, else once when the interval ends, however many ask
// meanwhile.
func (h *hub) keyframe() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.pending != nil {
		return
	}
	wait := h.interval - time.Since(h.lastPLI)
	if wait <= 0 {
		h.sendPLILocked()
		return
	}
	h.pending = time.AfterFunc(wait, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.pending = nil
		if !h.closed {
			h.sendPLILocked()
		}
	})
}

func (h *hub) sendPLILocked() {
	h.lastPLI = time.Now()
	if h.pli == nil {
		return
	}
	h.keyframesUp.Add(1)
	pli := h.pli
	// The upstream's WriteRTCP does not call back into the hub.
	if err := pli(); err != nil && !errors.Is(err, io.ErrClosedPipe) {
		return
	}
}

// close stops the hub: nothing more is forwarded or requested.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if h.pending != nil {
		h.pending.Stop()
		h.pending = nil
	}
	h.outs.Store(&[]*output{})
}
