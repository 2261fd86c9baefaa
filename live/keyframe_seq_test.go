package live

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/pion/rtp"
)

// Packets of a FuzzKeyframeCacheSequence input: a codec byte (index in
// seqCodecs), then per packet a flags byte, a repeat byte, a big-endian
// uint16 payload length and the payload. Flags: seqMarker sets the
// marker (on the last repeat), seqNewTS moves to the next timestamp,
// seqGap skips a sequence number, seqBack repeats the last one.
const (
	seqMarker = 1 << iota
	seqNewTS
	seqGap
	seqBack
)

var seqCodecs = []*keyframeCodec{vp8Keys, vp9Keys, av1Keys, h264Keys}

// encodeSeqFrames writes frames of RTP packets (one timestamp a frame,
// consecutive sequence numbers, as rtpFrames makes them) as a fuzz input.
func encodeSeqFrames(codec byte, frames [][]*rtp.Packet) []byte {
	b := []byte{codec}
	for _, fr := range frames {
		for k, p := range fr {
			var fl byte
			if p.Marker {
				fl |= seqMarker
			}
			if k == 0 {
				fl |= seqNewTS
			}
			b = append(b, fl, 0)
			b = binary.BigEndian.AppendUint16(b, uint16(len(p.Payload)))
			b = append(b, p.Payload...)
		}
	}
	return b
}

// FuzzKeyframeCacheSequence drives a keyframe cache with any sequence of
// packets (lost, repeated, reordered, endless or oversized frames), the
// way a hostile publisher or parent can, through one reused read buffer
// as the hub's pump does. After every packet: the frame being built is
// within maxKeyframePackets and maxKeyframeBytes; the cached keyframe
// changes only on a marker packet, and is then exactly the packets given
// last, from a keyframe start to that marker, one timestamp, no sequence
// number missing, with every part its codec needs; and it keeps its
// bytes when the reader's buffer is reused.
func FuzzKeyframeCacheSequence(f *testing.F) {
	for i, fx := range fixtures(f) {
		codec := byte(i)
		if i >= len(seqCodecs) {
			codec = 3 // the second H.264 packetisation
		}
		for _, mtu := range []uint16{1200, 200} {
			f.Add(encodeSeqFrames(codec, rtpFrames(fx.payloader(), mtu, fx.frames, 65530, 1)))
		}
	}
	f.Fuzz(runSeq)
}

func runSeq(t *testing.T, in []byte) {
	{
		if len(in) == 0 {
			return
		}
		kc := seqCodecs[int(in[0])%len(seqCodecs)]
		in = in[1:]
		type sent struct {
			h  rtp.Header
			pl []byte
		}
		var (
			c      keyCache
			hist   []sent                  // every packet given, cloned
			buf    = make([]byte, len(in)) // a payload is no longer than the input
			seq    = uint16(65000)
			ts     = uint32(7)
			key    []*rtp.Packet
			keyEnd int // index in hist after key's last packet
		)
		checkKey := func() {
			t.Helper()
			if len(c.key) > len(hist[:keyEnd]) {
				t.Fatalf("%d packets cached of %d given", len(c.key), keyEnd)
			}
			run := hist[keyEnd-len(c.key) : keyEnd]
			var parts keyParts
			for k, p := range c.key {
				if p.SequenceNumber != run[k].h.SequenceNumber || p.Timestamp != run[k].h.Timestamp ||
					p.Marker != run[k].h.Marker || !bytes.Equal(p.Payload, run[k].pl) {
					t.Fatalf("cached packet %d of %d is not the packet given in its place", k, len(c.key))
				}
				if p.Timestamp != c.key[0].Timestamp || k > 0 && p.SequenceNumber != c.key[k-1].SequenceNumber+1 {
					t.Fatalf("cached packet %d: timestamp %d seq %d after seq %d of timestamp %d", k, p.Timestamp, p.SequenceNumber, c.key[max(k-1, 0)].SequenceNumber, c.key[0].Timestamp)
				}
				if p.Marker != (k == len(c.key)-1) {
					t.Fatalf("cached packet %d of %d has marker %v", k, len(c.key), p.Marker)
				}
				_, has := kc.scan(p.Payload)
				parts |= has
			}
			if start, _ := kc.scan(c.key[0].Payload); !start {
				t.Fatal("the cached frame's first packet starts no keyframe")
			}
			if parts&kc.need != kc.need {
				t.Fatalf("cached frame has parts %b of %b", parts, kc.need)
			}
		}
		// 4096 packets reach every bound and keep an input fast.
		for len(in) >= 4 && len(hist) < 4096 {
			fl, rep, n := in[0], int(in[1]), int(binary.BigEndian.Uint16(in[2:]))
			in = in[4:]
			n = min(n, len(in))
			pl := bytes.Clone(in[:n]) // shared by the repeats' history
			in = in[n:]
			if fl&seqNewTS != 0 {
				ts += 3000
			}
			for r := 0; r <= rep*4; r++ {
				switch {
				case fl&seqBack != 0 && r == 0:
				case fl&seqGap != 0 && r == 0:
					seq += 2
				default:
					seq++
				}
				h := rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: fl&seqMarker != 0 && r == rep*4}
				hist = append(hist, sent{h, pl})
				// One buffer for every packet, as the hub's pump reads them.
				c.add(kc, &rtp.Packet{Header: h, Payload: buf[:copy(buf, pl)]})
				clear(buf[:n])
				if len(c.building) > maxKeyframePackets {
					t.Fatalf("%d packets in the frame being built", len(c.building))
				}
				if len(c.building) > 0 {
					total := 0
					for _, p := range c.building {
						total += len(p.Payload)
					}
					if total > maxKeyframeBytes {
						t.Fatalf("%d bytes in the frame being built", total)
					}
				}
				changed := len(c.key) != len(key) || len(key) > 0 && c.key[0] != key[0]
				if changed {
					if !h.Marker {
						t.Fatalf("the cached keyframe changed on packet seq %d without a marker", seq)
					}
					key, keyEnd = c.key, len(hist)
					checkKey()
				}
			}
		}
		if len(c.key) > 0 {
			checkKey() // still the bytes given, the buffer reused since
		}
	}
}
