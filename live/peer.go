package live

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// media makes the service's media PeerConnections.
type media struct {
	api  *webrtc.API
	conf webrtc.Configuration
}

// nackHistory is how many sent packets each output keeps to answer NACKs
// from (a power of two, as pion wants). pion's default, 1024, holds
// 1024 × 1.5 KB per video output whatever the bitrate: with a relay's
// fanout outputs and its viewers that is megabytes of live heap per room,
// and the collector's marking of it takes CPU from forwarding when it
// runs. A loss is asked for again within a few round trips; 512 packets
// are 0.7 s of an 8 Mbit/s stream and 2 s of 2.5 Mbit/s.
const nackHistory = 512

// ICE timing of media connections: a parent that stops answering is given
// up after Config.ParentSilence (ICE's disconnected state), so its
// children attach elsewhere well within two seconds; keepAlive keeps an
// idle connection's checks going often enough for that.
const (
	keepAlive = 250 * time.Millisecond
	// gatherTimeout bounds the wait for ICE candidates before an offer or
	// answer is sent (no trickle: one request carries all of them).
	gatherTimeout = 5 * time.Second
)

func newMedia(cfg Config) (*media, error) {
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m); err != nil {
		return nil, fmt.Errorf("live: codecs: %w", err)
	}
	ir := &interceptor.Registry{}
	// NACK generator and responder, RTCP reports, TWCC header extension:
	// loss is repaired on each hop.
	if err := webrtc.RegisterDefaultInterceptorsWithOptions(m, ir, webrtc.WithNackResponderOptions(nack.ResponderSize(nackHistory))); err != nil {
		return nil, fmt.Errorf("live: interceptors: %w", err)
	}
	var se webrtc.SettingEngine
	se.LoggerFactory = slogFactory{log: cfg.Logger}
	se.SetIncludeLoopbackCandidate(true)
	if cfg.LoopbackOnly {
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	}
	se.SetICETimeouts(cfg.ParentSilence, cfg.ParentSilence+max(cfg.ParentSilence, 2500*time.Millisecond), keepAlive)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	return &media{api: api, conf: webrtc.Configuration{ICEServers: cfg.ICEServers}}, nil
}

// registerCodecs registers the codecs a room may carry (supported): VP8,
// VP9, H.264 and AV1 video, each with its RTX stream for NACK repair, and
// Opus audio. Not pion's defaults: with those a WHIP offer listing H.265
// (or G.722) first makes a room of it, which the keyframe cache does not
// know and browsers that cannot decode it are offered anyway. Payload
// types are pion's and Chromium's usual ones.
func registerCodecs(m *webrtc.MediaEngine) error {
	fb := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	video := func(mime, fmtp string, pt, rtx webrtc.PayloadType) []webrtc.RTPCodecParameters {
		return []webrtc.RTPCodecParameters{
			{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp, RTCPFeedback: fb}, PayloadType: pt},
			{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: fmt.Sprintf("apt=%d", pt)}, PayloadType: rtx},
		}
	}
	const h264 = "level-asymmetry-allowed=1;packetization-mode=%d;profile-level-id=%s"
	var vs []webrtc.RTPCodecParameters
	vs = append(vs, video(webrtc.MimeTypeVP8, "", 96, 97)...)
	vs = append(vs, video(webrtc.MimeTypeH264, fmt.Sprintf(h264, 1, "42001f"), 102, 103)...)
	vs = append(vs, video(webrtc.MimeTypeH264, fmt.Sprintf(h264, 0, "42001f"), 104, 105)...)
	vs = append(vs, video(webrtc.MimeTypeH264, fmt.Sprintf(h264, 1, "42e01f"), 106, 107)...)
	vs = append(vs, video(webrtc.MimeTypeH264, fmt.Sprintf(h264, 0, "42e01f"), 108, 109)...)
	vs = append(vs, video(webrtc.MimeTypeH264, fmt.Sprintf(h264, 1, "4d001f"), 127, 125)...)
	vs = append(vs, video(webrtc.MimeTypeH264, fmt.Sprintf(h264, 0, "4d001f"), 39, 40)...)
	vs = append(vs, video(webrtc.MimeTypeAV1, "", 45, 46)...)
	vs = append(vs, video(webrtc.MimeTypeVP9, "profile-id=0", 98, 99)...)
	vs = append(vs, video(webrtc.MimeTypeVP9, "profile-id=2", 100, 101)...)
	vs = append(vs, video(webrtc.MimeTypeH264, fmt.Sprintf(h264, 1, "64001f"), 112, 113)...)
	for _, c := range vs {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
	}
	return m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: opusCodec, PayloadType: 111}, webrtc.RTPCodecTypeAudio)
}

func (m *media) newPC() (*webrtc.PeerConnection, error) {
	pc, err := m.api.NewPeerConnection(m.conf)
	if err != nil {
		return nil, fmt.Errorf("live: peer connection: %w", err)
	}
	return pc, nil
}

// complete sets the local description and waits until its candidates are
// gathered, so that it can be sent whole.
func complete(ctx context.Context, pc *webrtc.PeerConnection, sd webrtc.SessionDescription) (string, error) {
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(sd); err != nil {
		return "", fmt.Errorf("live: local description: %w", err)
	}
	t := time.NewTimer(gatherTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return pc.LocalDescription().SDP, nil
}

// maxSDP bounds a session description from a peer or an HTTP client.
const maxSDP = 64 << 10

// offered is what an SDP offer asks for: its media kinds and, per kind, the
// codec names it lists (lower case, e.g. "video/vp8").
type offered struct {
	kinds  map[webrtc.RTPCodecType]bool
	codecs map[string]bool
}

// parseOffer checks that s is an SDP offer with media and lists its
// codecs. pion's own parser checks the rest when it applies it.
func parseOffer(s string) (offered, error) {
	o := offered{kinds: map[webrtc.RTPCodecType]bool{}, codecs: map[string]bool{}}
	if len(s) > maxSDP {
		return o, fmt.Errorf("%w: %d bytes, limit %d", ErrBadSDP, len(s), maxSDP)
	}
	var d sdp.SessionDescription
	if err := d.UnmarshalString(s); err != nil {
		return o, fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	for _, md := range d.MediaDescriptions {
		kind := webrtc.NewRTPCodecType(md.MediaName.Media)
		if kind == 0 {
			continue
		}
		o.kinds[kind] = true
		for _, a := range md.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			_, enc, ok := strings.Cut(a.Value, " ")
			if !ok {
				continue
			}
			name, _, _ := strings.Cut(enc, "/")
			o.codecs[strings.ToLower(md.MediaName.Media+"/"+name)] = true
		}
	}
	if len(o.kinds) == 0 {
		return o, fmt.Errorf("%w: no audio or video in the offer", ErrNoCodec)
	}
	return o, nil
}

// has reports whether the offer lists the codec of s.
func (o offered) has(s slot) bool { return o.codecs[strings.ToLower(s.codec.MimeType)] }

// slogFactory adapts pion's logging to slog, at debug level: pion's own
// warnings are about single packets and connections, which the service
// reports itself when they matter.
type slogFactory struct{ log *slog.Logger }

func (f slogFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) Trace(string)              {}
func (l pionLogger) Tracef(string, ...any)     {}
func (l pionLogger) Debug(string)              {}
func (l pionLogger) Debugf(string, ...any)     {}
func (l pionLogger) Info(msg string)           { l.log.Debug(msg) }
func (l pionLogger) Infof(f string, a ...any)  { l.log.Debug(fmt.Sprintf(f, a...)) }
func (l pionLogger) Warn(msg string)           { l.log.Debug(msg) }
func (l pionLogger) Warnf(f string, a ...any)  { l.log.Debug(fmt.Sprintf(f, a...)) }
func (l pionLogger) Error(msg string)          { l.log.Debug(msg) }
func (l pionLogger) Errorf(f string, a ...any) { l.log.Debug(fmt.Sprintf(f, a...)) }
