package meta

import (
	"encoding/binary"
	"fmt"
	"io"
)

// frameHeader is a decoded MPEG audio frame header.
type frameHeader struct {
	version    int // 1, 2, or 25 for 2.5
	layer      int // 1, 2, 3
	bitrate    int // bits per second
	sampleRate int
	channels   int
	size       int // bytes, header included
	samples    int // per channel in this frame
}

var (
	bitrates = [2][3][16]int{ // [MPEG-1, MPEG-2/2.5][layer-1][index], kbit/s
		{
			{0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448, 0},
			{0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 0},
			{0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0},
		},
		{
			{0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256, 0},
			{0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0},
			{0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0},
		},
	}
	sampleRates = [3]int{44100, 48000, 32000}
)

// parseFrameHeader decodes the 4 bytes of an MPEG audio frame header; ok is
// false for anything that is not one (free-format bitrate included, which
// cannot be walked without decoding).
func parseFrameHeader(b []byte) (frameHeader, bool) {
	if len(b) < 4 || b[0] != 0xff || b[1]&0xe0 != 0xe0 {
		return frameHeader{}, false
	}
	var h frameHeader
	switch (b[1] >> 3) & 3 {
	case 0:
		h.version = 25
	case 2:
		h.version = 2
	case 3:
		h.version = 1
	default:
		return frameHeader{}, false
	}
	layer := (b[1] >> 1) & 3
	if layer == 0 {
		return frameHeader{}, false
	}
	h.layer = 4 - int(layer)
	bi, si, pad := b[2]>>4, (b[2]>>2)&3, int(b[2]>>1)&1
	if bi == 0 || bi == 15 || si == 3 {
		return frameHeader{}, false
	}
	v := 0
	if h.version != 1 {
		v = 1
	}
	h.bitrate = bitrates[v][h.layer-1][bi] * 1000
	h.sampleRate = sampleRates[si]
	switch h.version {
	case 2:
		h.sampleRate /= 2
	case 25:
		h.sampleRate /= 4
	}
	h.channels = 2
	if b[3]>>6 == 3 {
		h.channels = 1
	}
	switch {
	case h.layer == 1:
		h.samples = 384
		h.size = (12*h.bitrate/h.sampleRate + pad) * 4
	case h.layer == 3 && h.version != 1:
		h.samples = 576
		h.size = 72*h.bitrate/h.sampleRate + pad
	default:
		h.samples = 1152
		h.size = 144*h.bitrate/h.sampleRate + pad
	}
	return h, true
}

// sideInfo is the size of the layer III side information, after which a
// Xing or Info header stands.
func (h frameHeader) sideInfo() int {
	switch {
	case h.version == 1 && h.channels == 2:
		return 32
	case h.version == 1, h.channels == 2:
		return 17
	default:
		return 9
	}
}

// syncWindow is how far after the tag Read looks for the first frame: past
// it a file is not an MP3 (or one with junk no player would sit through).
const syncWindow = 64 << 10

// findFrame finds the first frame at or after off whose successor is a
// frame too: one lone 0xFFE sync in text or a picture is not an MP3.
func findFrame(r io.ReaderAt, off, end int64) (int64, frameHeader, bool) {
	buf := make([]byte, min(syncWindow+4, max(end-off, 0)))
	n, _ := r.ReadAt(buf, off)
	buf = buf[:n]
	for i := 0; i+4 <= len(buf); i++ {
		if buf[i] != 0xff {
			continue
		}
		h, ok := parseFrameHeader(buf[i:])
		if !ok {
			continue
		}
		next := off + int64(i) + int64(h.size)
		if next == end {
			return off + int64(i), h, true
		}
		var nb [4]byte
		if _, err := r.ReadAt(nb[:], next); err != nil {
			continue
		}
		if h2, ok := parseFrameHeader(nb[:]); ok && h2.version == h.version && h2.layer == h.layer && h2.sampleRate == h.sampleRate {
			return off + int64(i), h, true
		}
	}
	return 0, frameHeader{}, false
}

func readMP3(r io.ReaderAt, size int64) (Info, error) {
	info := Info{Format: "mp3"}
	start, err := readID3v2(r, size, &info)
	if err != nil {
		return Info{}, err
	}
	end := size
	hasTags := start > 0
	if readID3v1(r, size, &info) {
		end -= 128
		hasTags = true
	}
	first, h, ok := findFrame(r, start, end)
	if !ok {
		if hasTags {
			return Info{}, fmt.Errorf("%w: tags but no MPEG audio frames", ErrCorrupt)
		}
		return Info{}, ErrNotAudio
	}
	info.SampleRate, info.Channels = h.sampleRate, h.channels
	if frames, bytes, delay, ok := vbrHeader(r, first, h); ok {
		samples := frames*int64(h.samples) - delay
		if samples > 0 {
			info.Duration = float64(samples) / float64(h.sampleRate)
		}
		if bytes <= 0 || bytes > end-first {
			bytes = end - first
		}
		if info.Duration > 0 {
			info.Bitrate = int(float64(bytes*8) / info.Duration)
		}
		return info, nil
	}
	frames, samples, audio, err := walkFrames(r, first, end)
	if err != nil {
		return Info{}, err
	}
	if frames < 2 {
		return Info{}, fmt.Errorf("%w: %d MPEG audio frame(s)", ErrCorrupt, frames)
	}
	info.Duration = float64(samples) / float64(h.sampleRate)
	if info.Duration > 0 {
		info.Bitrate = int(float64(audio*8) / info.Duration)
	}
	return info, nil
}

// vbrHeader reads a Xing/Info or VBRI header in the first frame at off: the
// number of audio frames and bytes, and the samples of encoder delay and
// padding a LAME tag says to drop (0 without one). The header frame itself
// is not audio.
func vbrHeader(r io.ReaderAt, off int64, h frameHeader) (frames, bytes, delay int64, ok bool) {
	if h.layer != 3 || h.size < 4+h.sideInfo()+8 {
		return 0, 0, 0, false
	}
	b := make([]byte, h.size)
	if n, _ := r.ReadAt(b, off); n < len(b) {
		return 0, 0, 0, false
	}
	x := 4 + h.sideInfo()
	if tag := string(b[x : x+4]); tag == "Xing" || tag == "Info" {
		flags := binary.BigEndian.Uint32(b[x+4:])
		p := x + 8
		field := func() (int64, bool) {
			if p+4 > len(b) {
				return 0, false
			}
			v := int64(binary.BigEndian.Uint32(b[p:]))
			p += 4
			return v, true
		}
		if flags&1 == 0 {
			return 0, 0, 0, false // no frame count: measure instead
		}
		if frames, ok = field(); !ok || frames == 0 {
			return 0, 0, 0, false
		}
		if flags&2 != 0 {
			bytes, _ = field()
		}
		if flags&4 != 0 {
			p += 100
		}
		if flags&8 != 0 {
			p += 4
		}
		// LAME extension: 9 bytes of version, 12 of settings, then 12 bits
		// each of delay and padding.
		if p+24 <= len(b) && (string(b[p:p+4]) == "LAME" || string(b[p:p+4]) == "Lavf" || string(b[p:p+4]) == "Lavc") {
			d := int64(b[p+21])<<4 | int64(b[p+22])>>4
			pad := int64(b[p+22]&0x0f)<<8 | int64(b[p+23])
			delay = d + pad
			if delay >= frames*int64(h.samples) {
				delay = 0
			}
		}
		return frames, bytes, delay, true
	}
	// VBRI (Fraunhofer) stands 32 bytes after the header whatever the mode.
	const v = 4 + 32
	if len(b) >= v+18 && string(b[v:v+4]) == "VBRI" {
		bytes = int64(binary.BigEndian.Uint32(b[v+10:]))
		frames = int64(binary.BigEndian.Uint32(b[v+14:]))
		return frames, bytes, 0, frames > 0
	}
	return 0, 0, 0, false
}

// walkFrames counts the frames from off to end by their headers alone,
// reading in blocks; junk between frames is skipped by a resync within
// syncWindow, past which the walk stops.
func walkFrames(r io.ReaderAt, off, end int64) (frames, samples, audio int64, err error) {
	const block = 256 << 10
	buf := make([]byte, min(block, max(end-off, 0)))
	var bufOff int64 = -1
	var bufLen int
	at := func(p int64) []byte { // the 4 bytes at p, or nil past end
		if p+4 > end {
			return nil
		}
		if bufOff < 0 || p < bufOff || p+4 > bufOff+int64(bufLen) {
			n, _ := r.ReadAt(buf[:min(int64(len(buf)), end-p)], p)
			bufOff, bufLen = p, n
			if n < 4 {
				return nil
			}
		}
		i := p - bufOff
		return buf[i : i+4]
	}
	first, _ := parseFrameHeader(at(off))
	for off < end {
		b := at(off)
		if b == nil {
			break
		}
		h, ok := parseFrameHeader(b)
		if ok && !same(h, first) {
			ok = false
		}
		if !ok {
			// Resync: the next header of the same stream followed by
			// another (or the end), within syncWindow, scanned through
			// the same buffer so junk costs its length once.
			next := int64(-1)
			for p := off + 1; p < end && p-off <= syncWindow; p++ {
				b := at(p)
				if b == nil {
					break
				}
				if b[0] != 0xff {
					continue
				}
				if nh, ok := parseFrameHeader(b); ok && same(nh, first) {
					q := p + int64(nh.size)
					if q == end {
						next = p
						break
					}
					if hb := at(q); hb != nil {
						if h2, ok := parseFrameHeader(hb); ok && same(h2, first) {
							next = p
							break
						}
					}
				}
			}
			if next < 0 {
				break
			}
			off = next
			continue
		}
		if off+int64(h.size) > end {
			break // a truncated last frame
		}
		frames++
		samples += int64(h.samples)
		audio += int64(h.size)
		off += int64(h.size)
	}
	return frames, samples, audio, nil
}

// same tells whether two frame headers are of one stream.
func same(a, b frameHeader) bool {
	return a.version == b.version && a.layer == b.layer && a.sampleRate == b.sampleRate
}
