package live

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh/meshtest"
)

// Codecs of the fixtures in testdata/keyframes (make.sh there), as the
// live service's MediaEngine registers them.
var (
	vp9Codec  = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0"}
	av1Codec  = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000}
	h264Codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}
)

// fixture is an encoded clip of 5 frames, keyframes at 0 and 3.
type fixture struct {
	name  string
	codec webrtc.RTPCodecCapability
	// frames are the encoded frames (H.264: Annex B access units).
	frames [][]byte
	// payloader packetises one frame at an MTU, as a sender would.
	payloader func() func(mtu uint16, frame []byte) [][]byte
}

var keyframeIndexes = map[int]bool{0: true, 3: true}

func loadIVF(t testing.TB, name string) [][]byte {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "keyframes", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for {
		fr, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, fr)
	}
}

// loadH264 splits an Annex B stream into access units: a new one starts
// at an SEI, SPS, AUD or slice that follows a slice (x264 writes one
// slice a frame here).
func loadH264(t testing.TB, name string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "keyframes", name))
	if err != nil {
		t.Fatal(err)
	}
	var aus [][]byte
	var cur []byte
	lastSlice := false
	for _, nal := range bytes.Split(b, []byte{0, 0, 1}) {
		nal = bytes.TrimRight(nal, "\x00")
		if len(nal) == 0 {
			continue
		}
		typ := nal[0] & 0x1f
		if lastSlice && (typ == 1 || typ == 5 || typ == 6 || typ == 7 || typ == 9) {
			aus = append(aus, cur)
			cur = nil
		}
		cur = append(append(cur, 0, 0, 0, 1), nal...)
		lastSlice = typ == 1 || typ == 5
	}
	return append(aus, cur)
}

func fixtures(t testing.TB) []fixture {
	return []fixture{
		{"vp8", vp8Codec, loadIVF(t, "vp8.ivf"), func() func(uint16, []byte) [][]byte {
			p := &codecs.VP8Payloader{EnablePictureID: true}
			return p.Payload
		}},
		{"vp9", vp9Codec, loadIVF(t, "vp9.ivf"), func() func(uint16, []byte) [][]byte {
			p := &codecs.VP9Payloader{}
			return p.Payload
		}},
		{"av1", av1Codec, loadIVF(t, "av1.ivf"), func() func(uint16, []byte) [][]byte {
			p := &codecs.AV1Payloader{}
			return p.Payload
		}},
		{"h264 stap-a", h264Codec, loadH264(t, "h264.h264"), func() func(uint16, []byte) [][]byte {
			p := &codecs.H264Payloader{}
			return p.Payload
		}},
		{"h264 single nal units", h264Codec, loadH264(t, "h264.h264"), func() func(uint16, []byte) [][]byte {
			p := &codecs.H264Payloader{DisableStapA: true}
			return p.Payload
		}},
	}
}

// rtpFrames packetises frames into RTP packets: one timestamp a frame,
// consecutive sequence numbers from seq, the marker on each frame's last
// packet.
func rtpFrames(pay func(uint16, []byte) [][]byte, mtu uint16, frames [][]byte, seq uint16, ts uint32) [][]*rtp.Packet {
	out := make([][]*rtp.Packet, len(frames))
	for i, fr := range frames {
		pls := pay(mtu, fr)
		for k, pl := range pls {
			out[i] = append(out[i], &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: k == len(pls)-1}, Payload: pl})
			seq++
		}
		ts += 3000
	}
	return out
}

func cachedPayloads(h *hub) [][]byte {
	h.vmu.Lock()
	defer h.vmu.Unlock()
	var out [][]byte
	for _, p := range h.keys.key {
		out = append(out, p.Payload)
	}
	return out
}

func payloadsOf(pkts []*rtp.Packet) [][]byte {
	var out [][]byte
	for _, p := range pkts {
		out = append(out, p.Payload)
	}
	return out
}

// TestKeyframeCacheCodecs: real encoded clips of every video codec the
// rooms negotiate, packetised by pion's payloaders at a WebRTC MTU and at
// a small one (so that frames span many packets: FU-A for H.264), go
// through a hub. After each frame the cache holds exactly the last
// keyframe's packets; interframes never replace it. Each detector takes
// a keyframe's first packet for a start and no interframe packet.
func TestKeyframeCacheCodecs(t *testing.T) {
	for _, fx := range fixtures(t) {
		for _, mtu := range []uint16{1200, 200} {
			t.Run(fmt.Sprintf("%s mtu %d", fx.name, mtu), func(t *testing.T) {
				if len(fx.frames) != 5 {
					t.Fatalf("%d frames in the fixture, want 5", len(fx.frames))
				}
				kc := keyframeCodecFor(fx.codec.MimeType)
				if kc == nil {
					t.Fatalf("no keyframe finder for %s", fx.codec.MimeType)
				}
				frames := rtpFrames(fx.payloader(), mtu, fx.frames, 65000, 1000) // the sequence numbers wrap
				h := newHub("r", time.Second)
				gen := h.upstream(1, nil)
				h.setSlot(gen, webrtc.RTPCodecTypeVideo, fx.codec)
				last := -1
				for i, pkts := range frames {
					if mtu == 200 && len(pkts) < 2 && keyframeIndexes[i] {
						t.Fatalf("keyframe %d in %d packet at MTU 200: the test means to split it", i, len(pkts))
					}
					for k, p := range pkts {
						start, _ := kc.scan(p.Payload)
						if start && !keyframeIndexes[i] {
							t.Fatalf("packet %d of interframe %d taken for a keyframe start", k, i)
						}
						if k == 0 && keyframeIndexes[i] && !start {
							t.Fatalf("first packet of keyframe %d (% x) not taken for a start", i, p.Payload[:min(8, len(p.Payload))])
						}
						h.forward(gen, webrtc.RTPCodecTypeVideo, p)
					}
					if keyframeIndexes[i] {
						last = i
					}
					got, want := cachedPayloads(h), payloadsOf(frames[last])
					if len(got) != len(want) {
						t.Fatalf("after frame %d: %d packets cached, want the %d of keyframe %d", i, len(got), len(want), last)
					}
					for k := range got {
						if !bytes.Equal(got[k], want[k]) {
							t.Fatalf("after frame %d: cached packet %d is not keyframe %d's", i, k, last)
						}
					}
				}
			})
		}
	}
}

// TestKeyframeCacheH264NeedsParameterSets: an IDR frame without its SPS
// and PPS cannot be decoded by a viewer that starts from it, so it is not
// cached; nor are the parameter sets alone.
func TestKeyframeCacheH264NeedsParameterSets(t *testing.T) {
	aus := loadH264(t, "h264.h264")
	var idrOnly, paramsOnly []byte
	for _, nal := range bytes.Split(aus[0], []byte{0, 0, 0, 1}) {
		if len(nal) == 0 {
			continue
		}
		switch nal[0] & 0x1f {
		case naluIDR:
			idrOnly = append(append(idrOnly, 0, 0, 0, 1), nal...)
		case naluSPS, naluPPS:
			paramsOnly = append(append(paramsOnly, 0, 0, 0, 1), nal...)
		}
	}
	if len(idrOnly) == 0 || len(paramsOnly) == 0 {
		t.Fatal("the first access unit has no IDR slice or no parameter sets")
	}
	for _, mtu := range []uint16{1200, 200} {
		h := newHub("r", time.Second)
		gen := h.upstream(1, nil)
		h.setSlot(gen, webrtc.RTPCodecTypeVideo, h264Codec)
		pay := (&codecs.H264Payloader{}).Payload
		for _, p := range rtpFrames(pay, mtu, [][]byte{idrOnly, paramsOnly}, 1, 1) {
			for _, q := range p {
				h.forward(gen, webrtc.RTPCodecTypeVideo, q)
			}
		}
		if got := cachedPayloads(h); len(got) != 0 {
			t.Fatalf("MTU %d: %d packets cached of an IDR without parameter sets and parameter sets without an IDR", mtu, len(got))
		}
	}
}

// TestKeyframeCacheOtherCodecOutput: a cached keyframe goes only to an
// output of its own codec (a room whose publisher changed codecs gives
// its new outputs the new codec).
func TestKeyframeCacheOtherCodecOutput(t *testing.T) {
	fx := fixtures(t)[0] // VP8
	h := newHub("r", time.Second)
	gen := h.upstream(1, nil)
	h.setSlot(gen, webrtc.RTPCodecTypeVideo, fx.codec)
	for _, p := range rtpFrames(fx.payloader(), 1200, fx.frames[:1], 1, 1)[0] {
		h.forward(gen, webrtc.RTPCodecTypeVideo, p)
	}
	for _, tc := range []struct {
		codec webrtc.RTPCodecCapability
		want  bool
	}{{vp8Codec, true}, {h264Codec, false}} {
		tr, err := webrtc.NewTrackLocalStaticRTP(tc.codec, "video", "x")
		if err != nil {
			t.Fatal(err)
		}
		o := &output{tracks: [2]*webrtc.TrackLocalStaticRTP{tr}}
		h.attachOutput(o)
		if got := o.cached.Load() > 0; got != tc.want {
			t.Fatalf("an output of %s got the cached VP8 keyframe: %v, want %v", tc.codec.MimeType, got, tc.want)
		}
		h.removeOutput(o)
	}
}

// TestHubUpstreamAndOutputsConcurrently: a relay re-attaches to a new
// parent (a new upstream) while a child's or viewer's connection comes up
// (its output starts). The two once took the hub's locks in opposite
// orders and could deadlock, freezing the room at that node.
func TestHubUpstreamAndOutputsConcurrently(t *testing.T) {
	testutil.CheckGoroutines(t)
	h := newHub("r", time.Millisecond)
	const rounds = 200000
	var wg sync.WaitGroup
	done, begin := make(chan struct{}), make(chan struct{})
	wg.Go(func() {
		<-begin
		for range rounds {
			gen := h.upstream(1, func() error { return nil })
			h.forward(gen, webrtc.RTPCodecTypeVideo, &rtp.Packet{Payload: []byte{0x10, 0x00}})
		}
	})
	wg.Go(func() {
		<-begin
		for range rounds {
			o := &output{}
			h.attachOutput(o)
			h.removeOutput(o)
		}
	})
	close(begin)
	go func() { wg.Wait(); close(done) }()
	testutil.WaitFor(t, 2*time.Minute, "new upstreams and new outputs all done (a deadlock stops them)", func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
	h.close()
}

// fuzzKeyframe checks one detector on any bytes: it never panics, never
// keeps the bytes it is given, and a one-packet frame is cached only when
// the detector found a start and every part of a keyframe of its codec.
func fuzzKeyframe(f *testing.F, kc *keyframeCodec) {
	f.Fuzz(func(t *testing.T, b []byte) {
		start, has := kc.scan(b)
		if kc == h264Keys && start && has&(partSPS|partIDR) == 0 {
			t.Fatalf("H.264 start with neither SPS nor IDR: %b", has)
		}
		var c keyCache
		c.add(kc, &rtp.Packet{Header: rtp.Header{Marker: true}, Payload: b})
		cached := len(c.key) == 1
		if cached != (start && has&kc.need == kc.need) {
			t.Fatalf("cached %v, start %v, parts %b of %b", cached, start, has, kc.need)
		}
		if cached && len(b) > 0 {
			b[0] ^= 0xff
			if bytes.Equal(c.key[0].Payload, b) {
				t.Fatal("the cache keeps the caller's bytes")
			}
		}
	})
}

func FuzzKeyframeVP8(f *testing.F)  { fuzzKeyframe(f, vp8Keys) }
func FuzzKeyframeVP9(f *testing.F)  { fuzzKeyframe(f, vp9Keys) }
func FuzzKeyframeAV1(f *testing.F)  { fuzzKeyframe(f, av1Keys) }
func FuzzKeyframeH264(f *testing.F) { fuzzKeyframe(f, h264Keys) }

// clipPublisher is a WHIP client that sends an encoded clip's frames as
// video only: interframes (1, 2 and 4, again and again) and one keyframe
// (frame 0) when asked. It ignores keyframe requests, like an encoder
// with a long keyframe interval.
type clipPublisher struct {
	pc      *webrtc.PeerConnection
	track   *webrtc.TrackLocalStaticRTP
	key     [][]byte   // the keyframe's payloads
	inter   [][][]byte // the interframes' payloads
	sendKey chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newClipPublisher(t *testing.T, fx fixture) (*clipPublisher, string) {
	t.Helper()
	pc, err := clientAPI(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	p := &clipPublisher{pc: pc, sendKey: make(chan struct{}, 1), stop: make(chan struct{})}
	t.Cleanup(func() { close(p.stop); pc.Close(); p.wg.Wait() })
	pay := fx.payloader()
	for i, fr := range fx.frames {
		pls := pay(1200, fr)
		switch {
		case i == 0:
			p.key = pls
		case !keyframeIndexes[i]:
			p.inter = append(p.inter, pls)
		}
	}
	if p.track, err = webrtc.NewTrackLocalStaticRTP(fx.codec, "video", "pub"); err != nil {
		t.Fatal(err)
	}
	snd, err := pc.AddTransceiverFromTrack(p.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.Fatal(err)
	}
	p.wg.Go(func() {
		for {
			if _, _, err := snd.Sender().ReadRTCP(); err != nil {
				return
			}
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return p, gathered(t, pc, offer)
}

func (p *clipPublisher) start(t *testing.T, answer string) {
	t.Helper()
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	p.wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		var seq uint16
		var ts uint32
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			pls := p.inter[i%len(p.inter)]
			select {
			case <-p.sendKey:
				pls = p.key
			default:
			}
			for k, pl := range pls {
				_ = p.track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: k == len(pls)-1}, Payload: pl})
				seq++
			}
			ts += 3000
		}
	})
}

// TestKeyframeCacheCodecsRelayed: for VP9, AV1 and H.264 rooms (VP8 is
// TestNewViewerGetsKeyframe's), the publisher sends one keyframe of a
// real clip and then only interframes; a viewer that joins later on
// another node (host → relay → viewer, over pion connections) gets that
// keyframe whole before anything else, from the relays' caches.
func TestKeyframeCacheCodecsRelayed(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	a := newTNode(t, nw, "a", testConfig(3))
	b := newTNode(t, nw, "b", testConfig(3))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, fx := range fixtures(t)[1:4] { // VP9, AV1, H.264
		t.Run(fx.name, func(t *testing.T) {
			room, err := a.svc.Create(ctx, fx.name, "", "")
			if err != nil {
				t.Fatal(err)
			}
			defer a.svc.End(ctx, room.ID)
			pub, offer := newClipPublisher(t, fx)
			ans, _, err := a.svc.Publish(ctx, room.ID, room.Token, offer)
			if err != nil {
				t.Fatal(err)
			}
			pub.start(t, ans)
			waitRoom(t, room.ID, a, b)
			a.svc.mu.Lock()
			hub := a.svc.rooms[room.ID].hub
			a.svc.mu.Unlock()
			testutil.WaitFor(t, 30*time.Second, "media at the host", func() bool { return hub.packetsIn.Load() > 30 })
			pub.sendKey <- struct{}{}
			testutil.WaitFor(t, 30*time.Second, "the host forwarding well past the keyframe", func() bool {
				hub.vmu.Lock()
				defer hub.vmu.Unlock()
				return len(hub.keys.key) > 0 && hub.lastSeq-hub.keys.key[0].SequenceNumber > 100
			})
			var mu sync.Mutex
			var first [][]byte
			v, offer := newViewer(t)
			v.onVideo = func(p *rtp.Packet) {
				mu.Lock()
				defer mu.Unlock()
				if len(first) < len(pub.key) {
					first = append(first, bytes.Clone(p.Payload))
				}
			}
			ans, _, err = b.svc.Watch(ctx, room.ID, offer)
			if err != nil {
				t.Fatalf("watch on b: %v", err)
			}
			v.answer(t, ans)
			testutil.WaitFor(t, 30*time.Second, "video at b's viewer", func() bool { return v.video.Load() > uint64(len(pub.key))+20 })
			mu.Lock()
			defer mu.Unlock()
			for k := range pub.key {
				if !bytes.Equal(first[k], pub.key[k]) {
					t.Fatalf("video packet %d of %d at b's viewer is not the keyframe's", k, len(pub.key))
				}
			}
			if ti, _ := b.svc.Tree(room.ID); ti.Parent != a.node.ID() {
				t.Fatalf("b's tree %+v: want a as parent", ti)
			}
		})
	}
}

// BenchmarkKeyframeCache: what following the keyframes costs the
// forwarding, per video packet of a real clip (one keyframe in three
// frames, so more than a live stream's share), with no outputs.
func BenchmarkKeyframeCache(b *testing.B) {
	for _, fx := range fixtures(b) {
		b.Run(fx.name, func(b *testing.B) {
			var pkts []*rtp.Packet
			for _, fr := range rtpFrames(fx.payloader(), 1200, fx.frames, 1, 1) {
				pkts = append(pkts, fr...)
			}
			h := newHub("r", time.Second)
			gen := h.upstream(1, nil)
			h.setSlot(gen, webrtc.RTPCodecTypeVideo, fx.codec)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				p := *pkts[i%len(pkts)]
				p.SequenceNumber = uint16(i)
				p.Timestamp = uint32(i/len(pkts)*len(fx.frames)) + pkts[i%len(pkts)].Timestamp
				h.forward(gen, webrtc.RTPCodecTypeVideo, &p)
			}
		})
	}
}
