package live

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

// Codecs of a file source: what pion's default media engine offers.
var (
	vp8Codec  = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	opusCodec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}
)

// rtpMTU is the payload size the file source packetizes to.
const rtpMTU = 1200

// PublishFiles publishes a VP8 IVF file and an Opus Ogg file (either may be
// nil), looped, into a room this node hosts, until the room ends or Serve
// stops: the demo's test pattern. Keyframe requests are not answered; the
// video should have a keyframe at least every second.
func (s *Service) PublishFiles(room string, ivf, ogg []byte) error {
	if ivf == nil && ogg == nil {
		return fmt.Errorf("%w: nothing to publish", ErrBadInput)
	}
	if ivf != nil {
		if _, _, err := ivfreader.NewWith(bytes.NewReader(ivf)); err != nil {
			return fmt.Errorf("%w: IVF: %w", ErrBadInput, err)
		}
	}
	if ogg != nil {
		if _, _, err := oggreader.NewWith(bytes.NewReader(ogg)); err != nil {
			return fmt.Errorf("%w: Ogg: %w", ErrBadInput, err)
		}
	}
	tracks := 0
	if ivf != nil {
		tracks++
	}
	if ogg != nil {
		tracks++
	}
	s.mu.Lock()
	_, _, err := s.ownLocked(room)
	rs := s.rooms[room]
	select {
	case <-s.quit:
		rs = nil // stopping: shutdown waits for s.wg, counted only before
	default:
	}
	if err != nil || rs == nil {
		s.mu.Unlock()
		return cmp.Or(err, ErrUnknownRoom)
	}
	s.wg.Add(tracks) // the loops below, counted under s.mu as want does
	stop := make(chan struct{})
	if rs.stopSource != nil {
		rs.stopSource()
	}
	stopped := false
	rs.stopSource = func() {
		if !stopped {
			stopped = true
			close(stop)
		}
	}
	s.mu.Unlock()
	gen := rs.hub.upstream(tracks, nil)
	if ivf != nil {
		rs.hub.setSlot(gen, webrtc.RTPCodecTypeVideo, vp8Codec)
	}
	if ogg != nil {
		rs.hub.setSlot(gen, webrtc.RTPCodecTypeAudio, opusCodec)
	}
	send := func(kind webrtc.RTPCodecType) func(*rtp.Packet) bool {
		return func(p *rtp.Packet) bool { return rs.hub.forward(gen, kind, p) }
	}
	if ivf != nil {
		go func() { defer s.wg.Done(); loopIVF(ivf, stop, s.quit, send(webrtc.RTPCodecTypeVideo)) }()
	}
	if ogg != nil {
		go func() { defer s.wg.Done(); loopOgg(ogg, stop, s.quit, send(webrtc.RTPCodecTypeAudio)) }()
	}
	s.changed()
	return nil
}

// loopIVF sends the frames of an IVF file at their pace, over and over,
// until stop or quit is closed or send refuses.
func loopIVF(file []byte, stop, quit <-chan struct{}, send func(*rtp.Packet) bool) {
	pk := rtp.NewPacketizer(rtpMTU, 96, rand.Uint32(), &codecs.VP8Payloader{EnablePictureID: true}, rtp.NewRandomSequencer(), vp8Codec.ClockRate)
	next := time.Now()
	for {
		r, hdr, err := ivfreader.NewWith(bytes.NewReader(file))
		if err != nil {
			return
		}
		frame := time.Duration(float64(time.Second) * float64(hdr.TimebaseNumerator) / float64(hdr.TimebaseDenominator))
		if frame <= 0 || frame > time.Second {
			frame = time.Second / 30
		}
		for {
			data, _, err := r.ParseNextFrame()
			if errors.Is(err, io.EOF) || (err != nil && len(data) == 0) {
				break
			}
			if err != nil {
				return
			}
			for _, p := range pk.Packetize(data, uint32(frame.Seconds()*float64(vp8Codec.ClockRate))) {
				if !send(p) {
					return
				}
			}
			next = next.Add(frame)
			if !sleepUntil(next, stop, quit) {
				return
			}
		}
	}
}

// loopOgg sends the pages of an Opus Ogg file (one packet per page) at
// their pace, over and over.
func loopOgg(file []byte, stop, quit <-chan struct{}, send func(*rtp.Packet) bool) {
	pk := rtp.NewPacketizer(rtpMTU, 111, rand.Uint32(), &codecs.OpusPayloader{}, rtp.NewRandomSequencer(), opusCodec.ClockRate)
	next := time.Now()
	for {
		r, _, err := oggreader.NewWith(bytes.NewReader(file))
		if err != nil {
			return
		}
		var last uint64
		for {
			data, hdr, err := r.ParseNextPage()
			if err != nil {
				break
			}
			if _, isHeader := hdr.HeaderType(data); isHeader {
				continue
			}
			samples := hdr.GranulePosition - last
			last = hdr.GranulePosition
			if samples == 0 || samples > 48000 {
				samples = 960
			}
			for _, p := range pk.Packetize(data, uint32(samples)) {
				if !send(p) {
					return
				}
			}
			next = next.Add(time.Duration(samples) * time.Second / 48000)
			if !sleepUntil(next, stop, quit) {
				return
			}
		}
	}
}

func sleepUntil(t time.Time, stop, quit <-chan struct{}) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-stop:
		return false
	case <-quit:
		return false
	}
}
