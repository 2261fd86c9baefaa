package live

import (
	"context"
	"crypto/subtle"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// session is a WHIP publisher or a WHEP viewer.
type session struct {
	id   string
	room string
	pc   *webrtc.PeerConnection
	// out is a viewer's output; nil for a publisher.
	out *output
}

// supported lists the codecs a publisher may send: what the tree forwards.
var supported = map[string]bool{
	"video/vp8": true, "video/vp9": true, "video/h264": true, "video/av1": true, "audio/opus": true,
}

// watchTimeout bounds how long a WHEP request waits for the room's media
// to reach this node.
const watchTimeout = 10 * time.Second

// Publish takes a WHIP offer for a room this node hosts, with the room's
// bearer token, and returns the answer and the session's ID. A new
// publisher replaces the previous one (OBS reconnecting).
func (s *Service) Publish(ctx context.Context, room, token, offer string) (answer, sid string, err error) {
	s.mu.Lock()
	o, _, err := s.ownLocked(room)
	if err == nil && subtle.ConstantTimeCompare([]byte(token), []byte(o.token)) != 1 {
		err = ErrBadToken
	}
	s.mu.Unlock()
	if err != nil {
		return "", "", err
	}
	off, err := parseOffer(offer)
	if err != nil {
		return "", "", err
	}
	usable := 0
	for kind := range off.kinds {
		for c := range off.codecs {
			if supported[c] && webrtc.NewRTPCodecType(kindOf(c)) == kind {
				usable++
				break
			}
		}
	}
	if usable == 0 {
		return "", "", fmt.Errorf("%w: this node takes VP8, VP9, H.264 or AV1 video and Opus audio", ErrNoCodec)
	}
	pc, err := s.media.newPC()
	if err != nil {
		return "", "", err
	}
	ss := &session{id: newSessionID(publisherSession), room: room, pc: pc}
	answer, err = s.startPublish(ctx, ss, offer, usable)
	if err != nil {
		pc.Close()
		return "", "", err
	}
	return answer, ss.id, nil
}

func kindOf(codec string) string {
	for i := range codec {
		if codec[i] == '/' {
			return codec[:i]
		}
	}
	return codec
}

func (s *Service) startPublish(ctx context.Context, ss *session, offer string, tracks int) (string, error) {
	pc := ss.pc
	var videoSSRC atomic.Uint32
	s.mu.Lock()
	rs := s.rooms[ss.room]
	s.mu.Unlock()
	if rs == nil {
		return "", ErrUnknownRoom
	}
	gen := rs.hub.upstream(tracks, func() error {
		ssrc := videoSSRC.Load()
		if ssrc == 0 {
			return nil
		}
		return pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if t.Kind() == webrtc.RTPCodecTypeVideo {
			videoSSRC.Store(uint32(t.SSRC()))
		}
		dropped, ok := rs.hub.setSlot(gen, t.Kind(), t.Codec().RTPCodecCapability)
		if !ok {
			return
		}
		s.resetOutputs(rs, dropped)
		s.changed()
		rs.hub.pump(gen, t, nil)
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed {
			s.Stop(ss.room, ss.id)
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoCodec, err)
	}
	sdp, err := complete(ctx, pc, ans)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	if s.rooms[ss.room] != rs {
		s.mu.Unlock()
		return "", ErrUnknownRoom
	}
	old := rs.pub
	rs.pub = ss
	s.sessions[ss.id] = ss
	if old != nil {
		delete(s.sessions, old.id)
	}
	s.mu.Unlock()
	if old != nil {
		go old.pc.Close()
	}
	s.log.Info("publishing", "room", ss.room, "session", ss.id)
	return sdp, nil
}

// Watch takes a WHEP offer for a room and returns the answer and the
// session's ID. On a node that does not carry the room yet, it attaches to
// the room's tree first.
func (s *Service) Watch(ctx context.Context, room, offer string) (answer, sid string, err error) {
	off, err := parseOffer(offer)
	if err != nil {
		if _, ok := s.Room(room); !ok {
			return "", "", ErrUnknownRoom
		}
		return "", "", err
	}
	s.mu.Lock()
	if n := s.viewersLocked(); n >= s.cfg.MaxViewers {
		s.mu.Unlock()
		return "", "", fmt.Errorf("%w: %d viewers, limit %d; watch from another node", ErrBusy, n, s.cfg.MaxViewers)
	}
	// The place is held while the request waits; the session takes it
	// over when it is made.
	s.watching++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.watching--
		s.mu.Unlock()
	}()
	rs, release, err := s.want(room)
	if err != nil {
		return "", "", err
	}
	defer release()
	wctx, cancel := context.WithTimeout(ctx, watchTimeout)
	defer cancel()
	if !rs.hub.waitReady(wctx.Done()) {
		s.mu.Lock()
		why := rs.lastErr
		s.mu.Unlock()
		if why != nil {
			return "", "", fmt.Errorf("%w: no media reached this node within %v: %w", ErrNotLive, watchTimeout, why)
		}
		return "", "", fmt.Errorf("%w: no media reached this node within %v", ErrNotLive, watchTimeout)
	}
	usable := false
	for _, sl := range rs.hub.codecs() {
		if sl != nil && off.kinds[sl.kind] && off.has(*sl) {
			usable = true
		}
	}
	if !usable {
		return "", "", fmt.Errorf("%w: the room sends %s", ErrNoCodec, describe(rs.hub.codecs()))
	}
	pc, err := s.media.newPC()
	if err != nil {
		return "", "", err
	}
	ss := &session{id: newSessionID(viewerSession), room: room, pc: pc}
	ok := false
	defer func() {
		if !ok {
			pc.Close()
		}
	}()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", "", fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	if ss.out, err = rs.hub.addOutput(pc, func(sl slot) bool { return off.kinds[sl.kind] && off.has(sl) }); err != nil {
		return "", "", err
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", "", fmt.Errorf("%w: %w", ErrNoCodec, err)
	}
	sdp, err := complete(ctx, pc, ans)
	if err != nil {
		return "", "", err
	}
	s.mu.Lock()
	if s.rooms[room] != rs {
		s.mu.Unlock()
		return "", "", ErrUnknownRoom
	}
	rs.viewers[ss.id] = ss
	s.sessions[ss.id] = ss
	s.mu.Unlock()
	ok = true
	// Forwarding starts when the viewer's connection is up, with the
	// cached keyframe; the viewer has not even had the answer yet.
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			s.startViewer(rs, ss)
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			s.Stop(room, ss.id)
		}
	})
	s.reportViewers(room)
	s.changed()
	return sdp, ss.id, nil
}

// startViewer starts forwarding to a viewer whose connection is up.
func (s *Service) startViewer(rs *roomState, ss *session) {
	s.mu.Lock()
	cur := s.rooms[ss.room] == rs && rs.viewers[ss.id] == ss
	s.mu.Unlock()
	if !cur {
		return
	}
	rs.hub.start(ss.out)
	// A viewer stopped meanwhile took its output away before the start
	// added it: take it away again, or the hub forwards to it for ever.
	s.mu.Lock()
	gone := rs.viewers[ss.id] != ss
	s.mu.Unlock()
	if gone {
		rs.hub.removeOutput(ss.out)
	}
}

func describe(slots [2]*slot) string {
	var out string
	for _, sl := range slots {
		if sl != nil {
			if out != "" {
				out += " and "
			}
			out += sl.codec.MimeType
		}
	}
	return out
}

// Stop ends a WHIP or WHEP session of room.
func (s *Service) Stop(room, id string) error {
	s.mu.Lock()
	ss := s.sessions[id]
	if ss == nil || ss.room != room {
		s.mu.Unlock()
		return ErrUnknownSession
	}
	delete(s.sessions, id)
	rs := s.rooms[room]
	if rs != nil {
		if rs.pub == ss {
			rs.pub = nil
		}
		if rs.viewers[id] == ss {
			delete(rs.viewers, id)
			rs.hub.removeOutput(ss.out)
		}
	}
	s.mu.Unlock()
	go ss.pc.Close()
	s.reportViewers(room)
	s.changed()
	return nil
}
