package live

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// tnode is a mesh node with its live service, on an in-memory mesh; media
// goes over real pion connections on loopback.
type tnode struct {
	node *mesh.Node
	svc  *Service
	stop func()
}

func testConfig(fanout int) Config {
	c := DefaultConfig()
	c.Fanout = fanout
	c.LoopbackOnly = true
	c.RoomRefresh = 500 * time.Millisecond
	c.RoomTTL = 5 * time.Second
	c.Linger = 2 * time.Second
	return c
}

func newTNode(t testing.TB, nw *meshtest.Network, name string, cfg Config) *tnode {
	t.Helper()
	return newTNodeMesh(t, nw, name, cfg, meshtest.Fast)
}

// newTNodeMesh is newTNode with the mesh configured by configure.
func newTNodeMesh(t testing.TB, nw *meshtest.Network, name string, cfg Config, configure func(*mesh.Config)) *tnode {
	t.Helper()
	var ident *mesh.Identity
	n := nw.NewNode(t, name, meshtest.Options{Configure: func(c *mesh.Config) {
		configure(c)
		ident = c.Identity
	}})
	cfg.Identity = ident
	if cfg.Logger != nil {
		cfg.Logger = cfg.Logger.With("node", name)
	}
	svc, err := NewService(cfg, n)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Errorf("live service %s did not stop", name)
			}
		})
	}
	t.Cleanup(stop)
	return &tnode{node: n, svc: svc, stop: stop}
}

// clientAPI is a plain pion API, as a WHIP or WHEP client would have.
func clientAPI(t testing.TB) *webrtc.API {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return newAPI(t, se)
}

// newAPI is a pion API with the default codecs and interceptors and the
// settings se.
func newAPI(t testing.TB, se webrtc.SettingEngine) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
}

// videoRoom is a room's state whose hub has a video track (VP8) and no
// packets: a node that claims to carry the room, for tests of what
// others make of it.
func videoRoom(id string) *roomState {
	rs := newRoomState(id, true, time.Second)
	gen := rs.hub.upstream(1, nil)
	rs.hub.setSlot(gen, webrtc.RTPCodecTypeVideo, vp8Codec)
	return rs
}

// hubOutput adds to rs's hub an output over a new media connection of n,
// closed when the test ends.
func hubOutput(t testing.TB, n *tnode, rs *roomState) (*webrtc.PeerConnection, *output) {
	t.Helper()
	pc, err := n.svc.media.newPC()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	out, err := rs.hub.addOutput(pc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return pc, out
}

// gathered returns pc's local description once its candidates are in.
func gathered(t testing.TB, pc *webrtc.PeerConnection, sd webrtc.SessionDescription) string {
	t.Helper()
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(sd); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ICE gathering did not complete")
	}
	return pc.LocalDescription().SDP
}

// publisher is a WHIP client that sends synthetic VP8 and Opus RTP.
type publisher struct {
	pc           *webrtc.PeerConnection
	video, audio *webrtc.TrackLocalStaticRTP
	plis         atomic.Uint64
	sent         atomic.Uint64
	// videoSent and audioSent count each track's packets: the next
	// sequence numbers, as both start at 0.
	videoSent, audioSent atomic.Uint64
	// sending is closed when the send loop has stopped (see halt).
	sending chan struct{}
	// keyframe says whether video frame i is a keyframe; nil: all are.
	// Set it before start.
	keyframe func(i int) bool
	stopOnce sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup
}

func newPublisher(t testing.TB) (*publisher, string) {
	t.Helper()
	pc, err := clientAPI(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	p := &publisher{pc: pc, stop: make(chan struct{}), sending: make(chan struct{})}
	t.Cleanup(p.close)
	if p.video, err = webrtc.NewTrackLocalStaticRTP(vp8Codec, "video", "pub"); err != nil {
		t.Fatal(err)
	}
	if p.audio, err = webrtc.NewTrackLocalStaticRTP(opusCodec, "audio", "pub"); err != nil {
		t.Fatal(err)
	}
	for _, tr := range []*webrtc.TrackLocalStaticRTP{p.video, p.audio} {
		snd, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			t.Fatal(err)
		}
		p.wg.Go(func() {
			for {
				pkts, _, err := snd.Sender().ReadRTCP()
				if err != nil {
					return
				}
				for _, pk := range pkts {
					if _, ok := pk.(*rtcp.PictureLossIndication); ok {
						p.plis.Add(1)
					}
				}
			}
		})
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return p, gathered(t, pc, offer)
}

// start applies the answer and sends a 30 fps video of 3 packets a frame
// and 50 audio packets a second until close.
func (p *publisher) start(t testing.TB, answer string) {
	t.Helper()
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	p.wg.Go(func() {
		defer close(p.sending)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		var vseq, aseq uint16
		var vts, ats uint32
		frame := 0
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			if i%3 == 0 {
				for k := range 3 {
					pl := make([]byte, 800)
					if k == 0 {
						pl[0] = 0x10 // VP8 descriptor: start of partition 0
					}
					if p.keyframe != nil && !p.keyframe(frame) {
						pl[1] = 0x01 // VP8 frame header: P bit, an interframe
					}
					p.video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: vseq, Timestamp: vts, Marker: k == 2}, Payload: pl})
					vseq++
					p.sent.Add(1)
					p.videoSent.Add(1)
				}
				vts += 3000
				frame++
			}
			if i%2 == 0 {
				pl := make([]byte, 80)
				pl[0] = byte(rand.IntN(256))
				p.audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: aseq, Timestamp: ats}, Payload: pl})
				aseq++
				ats += 960
				p.sent.Add(1)
				p.audioSent.Add(1)
			}
		}
	})
}

// halt stops sending and returns once the last packet was written; the
// connection stays up, so that its NACKs are still answered.
func (p *publisher) halt() {
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.sending
}

func (p *publisher) close() {
	p.stopOnce.Do(func() { close(p.stop) })
	p.pc.Close()
	p.wg.Wait()
}

// viewer is a WHEP client that counts the packets it gets.
type viewer struct {
	pc           *webrtc.PeerConnection
	video, audio atomic.Uint64
	wg           sync.WaitGroup
	// onVideo and onAudio, if set before the answer, see every packet.
	onVideo, onAudio func(*rtp.Packet)
	// reuse, if set before the answer, reads every packet into the same
	// buffer, so that a benchmark's viewers allocate nothing per packet;
	// onVideo and onAudio must not keep the packet then.
	reuse bool
}

func newViewer(t testing.TB) (*viewer, string) {
	t.Helper()
	pc, err := clientAPI(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	v := &viewer{pc: pc}
	t.Cleanup(func() { pc.Close(); v.wg.Wait() })
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		v.wg.Add(1)
		defer v.wg.Done()
		buf, reused := make([]byte, readBufSize), &rtp.Packet{}
		for {
			p := reused
			if !v.reuse {
				p = &rtp.Packet{}
				buf = make([]byte, readBufSize)
			}
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			if p.Unmarshal(buf[:n]) != nil {
				continue
			}
			if tr.Kind() == webrtc.RTPCodecTypeVideo {
				v.video.Add(1)
				if v.onVideo != nil {
					v.onVideo(p)
				}
			} else {
				v.audio.Add(1)
				if v.onAudio != nil {
					v.onAudio(p)
				}
			}
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return v, gathered(t, pc, offer)
}

func (v *viewer) answer(t testing.TB, sdp string) {
	t.Helper()
	if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		t.Fatal(err)
	}
}

// publishTo publishes a test stream to room on host, where it was
// created, and starts sending; set, if not nil, sets the publisher up
// before it sends.
func publishTo(t testing.TB, ctx context.Context, host *tnode, room Created, set func(*publisher)) *publisher {
	t.Helper()
	pub, offer := newPublisher(t)
	if set != nil {
		set(pub)
	}
	ans, _, err := host.svc.Publish(ctx, room.ID, room.Token, offer)
	if err != nil {
		t.Fatal(err)
	}
	pub.start(t, ans)
	return pub
}

// publishRoom creates a room named name on host and publishes a test
// stream to it (publishTo).
func publishRoom(t testing.TB, ctx context.Context, host *tnode, name string, set func(*publisher)) (Created, *publisher) {
	t.Helper()
	room, err := host.svc.Create(ctx, name, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return room, publishTo(t, ctx, host, room, set)
}

// waitRoom waits until every node's index has the room.
func waitRoom(t testing.TB, id string, nodes ...*tnode) {
	t.Helper()
	testutil.WaitFor(t, 30*time.Second, "the room in every index", func() bool {
		for _, n := range nodes {
			if _, ok := n.svc.Room(id); !ok {
				return false
			}
		}
		return true
	})
}

// watch makes a viewer on n and waits until it gets video and audio.
func watch(t testing.TB, n *tnode, room string) (*viewer, string) {
	t.Helper()
	v, offer := newViewer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ans, sid, err := n.svc.Watch(ctx, room, offer)
	if err != nil {
		t.Fatalf("watch on %s: %v", n.node.Name(), err)
	}
	v.answer(t, ans)
	return v, sid
}

func waitMedia(t testing.TB, v *viewer, what string) {
	t.Helper()
	v0, a0 := v.video.Load(), v.audio.Load()
	testutil.WaitFor(t, 30*time.Second, what, func() bool {
		return v.video.Load() > v0+30 && v.audio.Load() > a0+10
	})
}

var _ = errors.Is
var _ = io.EOF
