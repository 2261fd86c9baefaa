package live

import (
	"encoding/binary"
	"slices"
	"strings"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/rtp/codecs/av1/obu"
	"github.com/pion/rtp/codecs/vp9"
	"github.com/pion/webrtc/v4"
)

// The keyframe cache: each hub keeps the packets of the last whole
// keyframe that went through it, so that a new output (a viewer or a
// child) gets a sharp picture at once instead of waiting for the next
// keyframe the publisher sends. Keyframes are found in the RTP payloads
// without decoding, per codec: the first packet of a keyframe says so in
// its payload header (VP8, VP9, AV1) or carries an IDR slice or the
// parameter sets before one (H.264).

// keyParts are the parts of a keyframe a packet carries.
type keyParts uint8

const (
	// partKey: the packet starts a keyframe (VP8, VP9, AV1).
	partKey keyParts = 1 << iota
	// H.264: a frame can be decoded from scratch when it has its
	// sequence and picture parameter sets and an IDR slice.
	partSPS
	partPPS
	partIDR
)

// keyframeCodec finds the keyframes of one video codec.
type keyframeCodec struct {
	mime string
	// scan reads one RTP payload: start says it may be the first packet of
	// a keyframe; has, the keyframe parts it carries. It never keeps the
	// payload and takes any bytes (a peer sends them).
	scan func(payload []byte) (start bool, has keyParts)
	// need are the parts a frame must have, over all its packets, to be
	// cached.
	need keyParts
}

var (
	vp8Keys  = &keyframeCodec{mime: webrtc.MimeTypeVP8, scan: scanVP8, need: partKey}
	vp9Keys  = &keyframeCodec{mime: webrtc.MimeTypeVP9, scan: scanVP9, need: partKey}
	av1Keys  = &keyframeCodec{mime: webrtc.MimeTypeAV1, scan: scanAV1, need: partKey}
	h264Keys = &keyframeCodec{mime: webrtc.MimeTypeH264, scan: scanH264, need: partSPS | partPPS | partIDR}
)

// keyframeCodecFor returns the keyframe finder of a video codec, or nil
// for a codec whose keyframes the cache does not know (nothing is cached).
func keyframeCodecFor(mime string) *keyframeCodec {
	for _, kc := range []*keyframeCodec{vp8Keys, vp9Keys, av1Keys, h264Keys} {
		if strings.EqualFold(kc.mime, mime) {
			return kc
		}
	}
	return nil
}

// Bounds of the keyframe cache, per room and node: 512 packets of at most
// an MTU (pion reads no more) are under 768 KiB, more than a 1080p
// keyframe takes; maxKeyframeBytes holds whatever the MTU. A larger
// keyframe is not cached: new outputs then wait for the next one.
const (
	maxKeyframePackets = 512
	maxKeyframeBytes   = 1 << 20
)

// keyCache is a hub's keyframe cache. The hub's vmu guards it.
type keyCache struct {
	// gen is the upstream generation the cache belongs to: a packet of
	// another one is neither cached nor forwarded (its upstream was
	// replaced, and with it the stream whose keyframe this is).
	gen uint64
	// key holds the packets of the last whole keyframe and its codec;
	// building collects the frame coming in, parts and bytes what it has.
	key      []*rtp.Packet
	keyCodec *keyframeCodec
	building []*rtp.Packet
	codec    *keyframeCodec
	parts    keyParts
	bytes    int
}

// reset forgets the cache for upstream generation gen.
func (c *keyCache) reset(gen uint64) {
	*c = keyCache{gen: gen}
}

// add follows one video packet going through: a packet that may start a
// keyframe starts a new frame, the next packets of that frame (same
// timestamp, no sequence number missing) add to it, and when its last
// packet (the marker) came, the frame is kept if it has every part of a
// keyframe of its codec.
func (c *keyCache) add(kc *keyframeCodec, p *rtp.Packet) {
	start, has := kc.scan(p.Payload)
	switch {
	case len(c.building) > 0 && c.codec == kc && p.Timestamp == c.building[0].Timestamp &&
		p.SequenceNumber == c.building[len(c.building)-1].SequenceNumber+1:
		if len(c.building) >= maxKeyframePackets || c.bytes+len(p.Payload) > maxKeyframeBytes {
			c.building = nil // too large to cache
			return
		}
	case start:
		c.building, c.codec, c.parts, c.bytes = make([]*rtp.Packet, 0, 16), kc, 0, 0
	default:
		c.building = nil // lost, reordered or not a keyframe
		return
	}
	q := *p
	// p's buffers are the reader's, reused for the next packet.
	q.Payload = slices.Clone(p.Payload)
	q.CSRC = slices.Clone(p.CSRC)
	c.building = append(c.building, &q)
	c.parts |= has
	c.bytes += len(q.Payload)
	if p.Marker {
		if c.parts&kc.need == kc.need {
			c.key, c.keyCodec = c.building, kc
		}
		c.building = nil
	}
}

// keyframeFor returns the cached keyframe if it is of the codec of track
// t and no more than 16383 packets behind lastSeq: SRTP's receiver would
// take a jump back to the live packets from further for a wrap of the
// sequence numbers and drop them all.
func (c *keyCache) keyframeFor(t *webrtc.TrackLocalStaticRTP, lastSeq uint16) []*rtp.Packet {
	if t == nil || len(c.key) == 0 || !strings.EqualFold(t.Codec().MimeType, c.keyCodec.mime) {
		return nil
	}
	if lastSeq-c.key[len(c.key)-1].SequenceNumber >= 1<<14 {
		return nil
	}
	return c.key
}

func scanVP8(payload []byte) (bool, keyParts) {
	if isVP8KeyframeStart(payload) {
		return true, partKey
	}
	return false, 0
}

// isVP8KeyframeStart reports whether a VP8 RTP payload starts a keyframe:
// the payload descriptor (RFC 7741 §4.2) marks the start of partition 0,
// and the VP8 frame header's P bit is 0 (RFC 6386 §9.1).
func isVP8KeyframeStart(payload []byte) bool {
	var vp codecs.VP8Packet
	frame, err := vp.Unmarshal(payload)
	return err == nil && vp.S == 1 && vp.PID == 0 && len(frame) > 0 && frame[0]&0x01 == 0
}

// scanVP9: a VP9 keyframe starts with a packet whose payload descriptor
// (RFC 9628 §4.2) marks the start of a frame (B) not predicted from an
// earlier one (P = 0) of the lowest spatial layer, and whose frame header
// says key frame (VP9 bitstream §6.2: frame_type 0, sync code).
func scanVP9(payload []byte) (bool, keyParts) {
	var vp codecs.VP9Packet
	frame, err := vp.Unmarshal(payload)
	if err != nil || !vp.B || vp.P || (vp.L && vp.SID != 0) {
		return false, 0
	}
	var h vp9.Header
	if h.Unmarshal(frame) != nil || h.ShowExistingFrame || h.NonKeyFrame {
		return false, 0
	}
	return true, partKey
}

// scanAV1: an AV1 keyframe starts with a packet whose aggregation header
// (AV1 RTP §4.4) has N = 1, the first packet of a coded video sequence,
// and Z = 0, and whose first OBU is the sequence header a decoder starts
// from.
func scanAV1(payload []byte) (bool, keyParts) {
	const zBit, nBit = 0x80, 0x08
	if len(payload) < 2 || payload[0]&zBit != 0 || payload[0]&nBit == 0 {
		return false, 0
	}
	el := payload[1:]
	if w := payload[0] >> 4 & 0x3; w != 1 {
		// The first OBU element has a length field unless it is the only one.
		n, k, err := obu.ReadLeb128(el)
		if err != nil || n == 0 || n > uint(len(el))-k {
			return false, 0
		}
		el = el[k : k+n]
	}
	h, err := obu.ParseOBUHeader(el)
	if err != nil || h.Type != obu.OBUSequenceHeader {
		return false, 0
	}
	return true, partKey
}

// H.264 NAL unit types (RFC 6184 §5.2).
const (
	naluIDR   = 5
	naluSPS   = 7
	naluPPS   = 8
	naluSTAPA = 24
	naluFUA   = 28
)

func h264Part(t byte) keyParts {
	switch t {
	case naluIDR:
		return partIDR
	case naluSPS:
		return partSPS
	case naluPPS:
		return partPPS
	}
	return 0
}

// scanH264 reads the NAL unit types of an H.264 RTP payload: a single NAL
// unit, the units a STAP-A aggregates, or the unit an FU-A's first
// fragment starts. A packet with an SPS or the start of an IDR slice may
// start a keyframe; the frame is one when it also has the PPS. pion's
// depacketizer rebuilds the NAL units (allocating) and has no keyframe
// test, so the headers are read here.
func scanH264(payload []byte) (bool, keyParts) {
	if len(payload) == 0 {
		return false, 0
	}
	var has keyParts
	switch t := payload[0] & 0x1f; {
	case t >= 1 && t < naluSTAPA:
		has = h264Part(t)
	case t == naluSTAPA:
		for i := 1; i < len(payload); {
			if len(payload)-i < 3 {
				return false, 0
			}
			n := int(binary.BigEndian.Uint16(payload[i:]))
			i += 2
			if n == 0 || n > len(payload)-i {
				return false, 0 // malformed: nothing in it counts
			}
			has |= h264Part(payload[i] & 0x1f)
			i += n
		}
	case t == naluFUA:
		if len(payload) < 2 || !(&codecs.H264Packet{}).IsPartitionHead(payload) {
			return false, 0 // a later fragment of a unit counted at its start
		}
		has = h264Part(payload[1] & 0x1f)
	}
	return has&(partSPS|partIDR) != 0, has
}
