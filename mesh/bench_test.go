package mesh_test

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// Knobs of BenchmarkLinkGoodput, after -args:
//
//	go test -run '^$' -bench LinkGoodput ./mesh/ -args -goodput.rounds=5
var (
	goodputRounds = flag.Int("goodput.rounds", 2, "BenchmarkLinkGoodput: measured rounds per configuration; a round is one catnest and one plain pion transfer")
	goodputMiB    = flag.Int("goodput.mib", 64, "BenchmarkLinkGoodput: MiB per transfer")
)

// goodputCase is one configuration of BenchmarkLinkGoodput. Both the
// catnest pair and the plain pion pair run with rtc.
type goodputCase struct {
	name string
	rtc  mesh.RTCConfig
	msg  int // payload bytes per message
}

// goodputCases: the first row is catnest's defaults (keep it in step with
// fillDefaults); each other row changes one thing.
func goodputCases() []goodputCase {
	def := mesh.RTCConfig{
		LoopbackOnly:      true,
		SCTPReceiveBuffer: 4 << 20,
		SendBufferHigh:    4 << 20,
		SendBufferLow:     1 << 20,
	}
	with := func(f func(*mesh.RTCConfig)) mesh.RTCConfig {
		rc := def
		f(&rc)
		return rc
	}
	return []goodputCase{
		{"default", def, 64 << 10},
		{"rbuf=1MiB", with(func(rc *mesh.RTCConfig) { rc.SCTPReceiveBuffer = 1 << 20 }), 64 << 10},
		{"rbuf=8MiB", with(func(rc *mesh.RTCConfig) { rc.SCTPReceiveBuffer = 8 << 20 }), 64 << 10},
		{"zerochecksum=off", with(func(rc *mesh.RTCConfig) { rc.DisableZeroChecksum = true }), 64 << 10},
		{"msg=16KiB", def, 16 << 10},
		{"msg=256KiB", def, 256 << 10},
		{"unordered", with(func(rc *mesh.RTCConfig) { rc.UnorderedBulk = true }), 64 << 10},
		// Unacknowledged bytes at most 512 KiB and one message, under
		// the two 1 MB packet buffers of pion's receive path.
		{"sendhigh=512KiB", with(func(rc *mesh.RTCConfig) { rc.SendBufferHigh, rc.SendBufferLow = 512<<10, 256<<10 }), 64 << 10},
	}
}

// BenchmarkLinkGoodput sends 64 MiB one way over the bulk channel of a
// link between two real nodes on loopback, and, in the same rounds, over
// one data channel between two bare pion PeerConnections with the same
// SettingEngine settings and the same flow control. The two alternate, so
// that noise from a shared machine falls on both; the figures are medians
// over the rounds: MB/s of each, ratio (catnest/plain, per round), and
// process CPU-seconds per transfer.
func BenchmarkLinkGoodput(b *testing.B) {
	rv := startRendezvous(b, false)
	for _, c := range goodputCases() {
		b.Run(c.name, func(b *testing.B) {
			total := *goodputMiB << 20
			if total%c.msg != 0 {
				b.Fatalf("%d bytes is not a whole number of %d-byte messages", total, c.msg)
			}
			// Labels tell the two apart in a -cpuprofile: goroutines
			// started while setting up a pair inherit them.
			var mp *meshPair
			var pp *plainPair
			pprof.Do(context.Background(), pprof.Labels("pair", "catnest"), func(context.Context) {
				mp = newMeshPair(b, rv.url(), c.rtc)
			})
			pprof.Do(context.Background(), pprof.Labels("pair", "plain"), func(context.Context) {
				pp = newPlainPair(b, c.rtc)
			})
			// Warm up both: connection set-up work, the congestion window.
			for _, s := range []goodputSender{mp, pp} {
				if _, _, err := transfer(s, 2<<20, c.msg, !c.rtc.UnorderedBulk); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			var meshRate, plain, ratio, meshCPU, plainCPU []float64
			for i := range b.N * *goodputRounds {
				order := []goodputSender{mp, pp}
				if i%2 == 1 {
					order = []goodputSender{pp, mp}
				}
				var rate [2]float64
				for _, s := range order {
					mbps, cpu, err := transfer(s, total, c.msg, !c.rtc.UnorderedBulk)
					if err != nil {
						b.Fatalf("%s: %v", s.name(), err)
					}
					if s == goodputSender(mp) {
						rate[0] = mbps
						meshRate, meshCPU = append(meshRate, mbps), append(meshCPU, cpu)
					} else {
						rate[1] = mbps
						plain, plainCPU = append(plain, mbps), append(plainCPU, cpu)
					}
				}
				ratio = append(ratio, rate[0]/rate[1])
				b.Logf("round %d: catnest %.1f MB/s (%.2f CPU-s), plain %.1f MB/s (%.2f CPU-s), ratio %.3f",
					i, rate[0], meshCPU[len(meshCPU)-1], rate[1], plainCPU[len(plainCPU)-1], rate[0]/rate[1])
			}
			b.StopTimer()
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(median(meshRate), "catnest-MB/s")
			b.ReportMetric(median(plain), "plain-MB/s")
			b.ReportMetric(median(ratio), "ratio")
			b.ReportMetric(median(meshCPU), "catnest-CPU-s")
			b.ReportMetric(median(plainCPU), "plain-CPU-s")
			b.Logf("catnest MB/s %.1f..%.1f, plain MB/s %.1f..%.1f, ratio %.3f..%.3f",
				slices.Min(meshRate), slices.Max(meshRate), slices.Min(plain), slices.Max(plain), slices.Min(ratio), slices.Max(ratio))
		})
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// goodputSender is one end of a pair under test.
type goodputSender interface {
	name() string
	label() string // for pprof
	// expect makes s the receiver's sink for the next transfer.
	expect(s *sink)
	send(ctx context.Context, p []byte) error
}

// transfer sends total bytes in msg-byte messages and waits until the
// receiver has checked them all. It returns MB/s and process CPU-seconds.
func transfer(s goodputSender, total, msg int, ordered bool) (mbps, cpu float64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := total / msg
	k := newSink(n, msg, ordered)
	s.expect(k)
	buf := make([]byte, msg)
	for i := range buf {
		buf[i] = byte(i)
	}
	runtime.GC()
	cpu0 := cpuTime()
	start := time.Now()
	pprof.Do(ctx, pprof.Labels("pair", s.label()), func(ctx context.Context) {
		for i := range n {
			// The sender may reuse buf: both Send paths copy it.
			stamp(buf, k.id, i)
			if err = s.send(ctx, buf); err != nil {
				err = fmt.Errorf("send %d of %d: %w", i, n, err)
				return
			}
		}
	})
	if err != nil {
		return 0, 0, err
	}
	select {
	case <-k.done:
	case <-ctx.Done():
		k.mu.Lock()
		defer k.mu.Unlock()
		return 0, 0, fmt.Errorf("receiver has %d of %d bytes: %w", k.bytes, total, ctx.Err())
	}
	d := time.Since(start)
	cpu = (cpuTime() - cpu0).Seconds()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err != nil {
		return 0, 0, k.err
	}
	if k.bytes != int64(total) {
		return 0, 0, fmt.Errorf("receiver got %d bytes, want %d", k.bytes, total)
	}
	return float64(total) / d.Seconds() / 1e6, cpu, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Each message starts and ends with the transfer id and its sequence
// number, so that the receiver sees loss, duplicates, reordering (on an
// ordered channel), truncation and strays from an earlier transfer.
func stamp(p []byte, id uint32, seq int) {
	binary.BigEndian.PutUint32(p, id)
	binary.BigEndian.PutUint32(p[4:], uint32(seq))
	copy(p[len(p)-8:], p[:8])
}

var sinkIDs atomic.Uint32

// sink checks what the receiver gets in one transfer.
type sink struct {
	id      uint32
	n, size int
	ordered bool
	done    chan struct{}

	mu    sync.Mutex
	next  int
	seen  []bool
	count int
	bytes int64
	err   error
}

func newSink(n, size int, ordered bool) *sink {
	return &sink{id: sinkIDs.Add(1), n: n, size: size, ordered: ordered, seen: make([]bool, n), done: make(chan struct{})}
}

func (k *sink) add(p []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err != nil || k.count == k.n {
		if k.err == nil {
			k.err = errors.New("a message after the last")
		}
		return
	}
	k.bytes += int64(len(p))
	err := k.check(p)
	if err != nil {
		k.err = err
		close(k.done)
		return
	}
	k.count++
	if k.count == k.n {
		close(k.done)
	}
}

func (k *sink) check(p []byte) error {
	if len(p) != k.size {
		return fmt.Errorf("message of %d bytes, want %d", len(p), k.size)
	}
	id, seq := binary.BigEndian.Uint32(p), int(binary.BigEndian.Uint32(p[4:]))
	if id != k.id || string(p[:8]) != string(p[len(p)-8:]) {
		return fmt.Errorf("message %d: bad stamp (transfer %d, want %d)", k.count, id, k.id)
	}
	if seq >= k.n || k.seen[seq] {
		return fmt.Errorf("message %d: sequence number %d repeated or out of range", k.count, seq)
	}
	if k.ordered && seq != k.next {
		return fmt.Errorf("message %d: sequence number %d, want %d on an ordered channel", k.count, seq, k.next)
	}
	k.seen[seq] = true
	k.next = seq + 1
	return nil
}

// meshPair is two catnest nodes linked over WebRTC; a sends to b on bulk.
type meshPair struct {
	a, b *mesh.Node
	cur  atomic.Pointer[sink]
}

const goodputProto = "goodput/1"

func newMeshPair(b *testing.B, signalURL string, rc mesh.RTCConfig) *meshPair {
	b.Helper()
	p := &meshPair{
		a: goodputNode(b, signalURL, "sender", rc),
		b: goodputNode(b, signalURL, "receiver", rc),
	}
	p.b.Handle(goodputProto, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		if k := p.cur.Load(); k != nil {
			k.add(m.Payload)
		}
		return nil, nil
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for range 50 { // until the receiver has registered with the rendezvous
		if err = p.a.Connect(ctx, p.b.ID()); err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		b.Fatal(err)
	}
	testutil.WaitFor(b, 20*time.Second, "both ends of the link", func() bool { return fullyLinked(p.a, p.b) })
	return p
}

func (p *meshPair) name() string   { return "catnest" }
func (p *meshPair) label() string  { return "catnest" }
func (p *meshPair) expect(k *sink) { p.cur.Store(k) }
func (p *meshPair) send(ctx context.Context, b []byte) error {
	return p.a.Send(ctx, p.b.ID(), goodputProto, b, mesh.OverBulk())
}

// goodputNode runs a node with RTC settings rc until the benchmark ends.
func goodputNode(b *testing.B, signalURL, name string, rc mesh.RTCConfig) *mesh.Node {
	b.Helper()
	ident, err := mesh.NewIdentity()
	if err != nil {
		b.Fatal(err)
	}
	cfg := mesh.DefaultConfig()
	cfg.Identity = ident
	cfg.Name = name
	cfg.SignalURL = signalURL
	cfg.ManualLinks = true
	cfg.RTC = rc
	cfg.Logger = testLogger(b)
	n, err := mesh.NewNode(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	b.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				b.Errorf("node %s: %v", name, err)
			}
		case <-time.After(15 * time.Second):
			b.Errorf("node %s did not stop", name)
		}
	})
	return n
}

// plainPair is two pion PeerConnections in this process with one data
// channel, sending raw payloads: the baseline.
type plainPair struct {
	tx, rx *webrtc.PeerConnection
	dc     *webrtc.DataChannel
	high   uint64
	low    chan struct{}
	cur    atomic.Pointer[sink]
}

// plainAPI mirrors newAPI in rtc.go: the same SettingEngine for rc.
func plainAPI(rc mesh.RTCConfig) *webrtc.API {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetSCTPMaxReceiveBufferSize(rc.SCTPReceiveBuffer)
	se.EnableSCTPZeroChecksum(!rc.DisableZeroChecksum)
	se.SetSCTPMaxMessageSize(mesh.MaxBulkFrame)
	se.SetICETimeouts(5*time.Second, 15*time.Second, 2*time.Second)
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

func newPlainPair(b *testing.B, rc mesh.RTCConfig) *plainPair {
	b.Helper()
	api := plainAPI(rc)
	p := &plainPair{high: rc.SendBufferHigh, low: make(chan struct{}, 1)}
	var err error
	if p.tx, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		b.Fatal(err)
	}
	if p.rx, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		p.tx.Close()
		p.rx.Close()
	})
	opened := make(chan struct{}, 2)
	channel := func(pc *webrtc.PeerConnection) *webrtc.DataChannel {
		negotiated, id, ordered := true, uint16(1), !rc.UnorderedBulk
		dc, err := pc.CreateDataChannel("bulk", &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &id, Ordered: &ordered})
		if err != nil {
			b.Fatal(err)
		}
		dc.OnOpen(func() { opened <- struct{}{} })
		return dc
	}
	p.dc = channel(p.tx)
	p.dc.SetBufferedAmountLowThreshold(rc.SendBufferLow)
	p.dc.OnBufferedAmountLow(func() {
		select {
		case p.low <- struct{}{}:
		default:
		}
	})
	channel(p.rx).OnMessage(func(m webrtc.DataChannelMessage) {
		if k := p.cur.Load(); k != nil {
			k.add(m.Data)
		}
	})

	offer, err := p.tx.CreateOffer(nil)
	if err != nil {
		b.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(p.tx)
	if err := p.tx.SetLocalDescription(offer); err != nil {
		b.Fatal(err)
	}
	<-gathered
	if err := p.rx.SetRemoteDescription(*p.tx.LocalDescription()); err != nil {
		b.Fatal(err)
	}
	answer, err := p.rx.CreateAnswer(nil)
	if err != nil {
		b.Fatal(err)
	}
	gathered = webrtc.GatheringCompletePromise(p.rx)
	if err := p.rx.SetLocalDescription(answer); err != nil {
		b.Fatal(err)
	}
	<-gathered
	if err := p.tx.SetRemoteDescription(*p.rx.LocalDescription()); err != nil {
		b.Fatal(err)
	}
	timeout := time.After(20 * time.Second)
	for range 2 {
		select {
		case <-opened:
		case <-timeout:
			b.Fatal("plain pion data channels did not open")
		}
	}
	return p
}

func (p *plainPair) name() string   { return "plain pion" }
func (p *plainPair) label() string  { return "plain" }
func (p *plainPair) expect(k *sink) { p.cur.Store(k) }

// send has the flow control of rtcConn.Send.
func (p *plainPair) send(ctx context.Context, b []byte) error {
	waited := false
	for p.dc.BufferedAmount() > p.high {
		waited = true
		select {
		case <-p.low:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if waited {
		select {
		case p.low <- struct{}{}:
		default:
		}
	}
	return p.dc.Send(b)
}
