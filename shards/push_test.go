package shards

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// memSource serves one resource held whole in memory, as the shares do
// from a user's file. corrupt, if set, flips a byte of every block it
// reads: a hostile sender.
type memSource struct {
	id      MD5
	m       *Manifest
	data    []byte
	corrupt bool
	sent    atomic.Int64
}

func newMemSource(t testing.TB, data []byte) *memSource {
	t.Helper()
	m, id, err := BuildManifest(context.Background(), bytes.NewReader(data), int64(len(data)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return &memSource{id: id, m: m, data: data}
}

func (s *memSource) manifestOf(id MD5) (*Manifest, bool) { return s.m, id == s.id }

func (s *memSource) haveOf(id MD5) Bitfield {
	if id != s.id {
		return nil
	}
	b := NewBitfield(s.m.NumPieces())
	for i := range s.m.NumPieces() {
		b.Set(i)
	}
	return b
}

func (s *memSource) readBlock(_ context.Context, r blockReq, p []byte) error {
	if r.ID != s.id || !blockInPiece(s.m, r) || len(p) != int(r.Len) {
		return ErrUnknown
	}
	copy(p, s.data[s.m.PieceOffset(int(r.Piece))+int64(r.Off):])
	if s.corrupt {
		p[len(p)/2] ^= 0x55
	}
	return nil
}

func (s *memSource) sentBlock(_ MD5, _ mesh.ID, n int) { s.sent.Add(int64(n)) }

// memSink keeps a pushed resource in memory and checks every piece it is
// given against the true bytes, which the test knows: a corrupt piece that
// reached it is counted in bad. corrupt makes its relays flip a byte.
//
// A piece equal to the true one is not copied: the sink serves it from
// want, which every sink of a net shares and nobody writes, and keeps
// private copies only of the pieces that differ. So a simulation of
// hundreds of receivers holds the file once, not once per receiver (a
// 256-receiver push of 16 MiB held 4 GiB of copies), and a sink still
// serves back exactly what it was given.
type memSink struct {
	want    []byte
	m       *Manifest
	corrupt bool

	mu   sync.Mutex
	own  map[int][]byte // pieces given that differ from want
	held Bitfield
	puts int
	bad  int
	by   map[mesh.ID]int // pieces stored, by sender
	// refuse, if set and true, fails every piece given (a full disk).
	refuse func() bool
}

func (s *memSink) putPiece(_ context.Context, from mesh.ID, i int, data []byte) error {
	if s.refuse != nil && s.refuse() {
		return errors.New("memsink: disk full")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.by == nil {
		s.by = make(map[mesh.ID]int)
	}
	s.by[from]++
	if bytes.Equal(data, s.piece(i, true)) {
		delete(s.own, i)
	} else {
		s.bad++
		if s.own == nil {
			s.own = make(map[int][]byte)
		}
		s.own[i] = bytes.Clone(data)
	}
	s.held.Set(i)
	s.puts++
	return nil
}

// piece is the sink's bytes of piece i, or the true ones if truth is set;
// s.mu is held. The result is not to be written.
func (s *memSink) piece(i int, truth bool) []byte {
	if p, ok := s.own[i]; ok && !truth {
		return p
	}
	off := s.m.PieceOffset(i)
	return s.want[off : off+s.m.PieceLen(i)]
}

func (s *memSink) have() Bitfield {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append(Bitfield(nil), s.held...)
}

func (s *memSink) readBlock(_ context.Context, r blockReq, p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.held.Has(int(r.Piece)) || !blockInPiece(s.m, r) {
		return ErrUnknown
	}
	copy(p, s.piece(int(r.Piece), false)[r.Off:])
	if s.corrupt {
		p[len(p)/2] ^= 0x55
	}
	return nil
}

// from is how many pieces the sink stored that id sent.
func (s *memSink) from(id mesh.ID) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.by[id]
}

func (s *memSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held.Count()
}

// whole reports whether the sink holds every piece and their MD5 is the
// resource id.
func (s *memSink) whole(id MD5) bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held.Count() != s.m.NumPieces() {
		return false
	}
	h := md5.New()
	for i := range s.m.NumPieces() {
		h.Write(s.piece(i, false))
	}
	return MD5(h.Sum(nil)) == id
}

// pushPeer is a node on a meshtest network with its pushes running.
type pushPeer struct {
	node   *mesh.Node
	p      *pushes
	src    *memSource
	opened atomic.Int32
	// penalties counts the peers its pushes scored down; scored, by
	// peer. The mesh's own count (PeerInfo.Failures) is per link, and a
	// penalty given on a link that was replaced since is not in it.
	penalties atomic.Int64
	scoredMu  sync.Mutex
	scored    map[mesh.ID]int

	mu   sync.Mutex
	sink *memSink
	// preheld, if set before the offer, names the pieces its sink holds
	// already when the push is offered (a resumed download).
	preheld func(i int) bool
	// refusePut makes its sink fail every piece given.
	refusePut atomic.Bool
}

// countPenalties is a node whose push handler's penalties are counted,
// so that a test can tell an honest sender was never scored down.
type countPenalties struct {
	*mesh.Node
	pp *pushPeer
}

func (c countPenalties) Penalize(id mesh.ID, reason string) {
	c.pp.penalties.Add(1)
	c.pp.scoredMu.Lock()
	if c.pp.scored == nil {
		c.pp.scored = make(map[mesh.ID]int)
	}
	c.pp.scored[id]++
	c.pp.scoredMu.Unlock()
	c.Node.Penalize(id, reason)
}

// scoredDown is how many times pp's pushes scored id down.
func (pp *pushPeer) scoredDown(id mesh.ID) int {
	pp.scoredMu.Lock()
	defer pp.scoredMu.Unlock()
	return pp.scored[id]
}

func (pp *pushPeer) getSink() *memSink {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return pp.sink
}

// fastNodes: nets of up to this many nodes run meshtest.Fast (see pushNet).
const fastNodes = 16

// pushNet starts n nodes on one network, each with its pushes: want is
// the file (receivers' sinks check against it), cfg their settings, rate
// (bytes/s, 0 none) the upload cap of every node.
func pushNet(t testing.TB, nw *meshtest.Network, n int, want []byte, cfg PushConfig, upload float64, corrupt func(k int) bool) []*pushPeer {
	t.Helper()
	return pushNetWith(t, nw, n, want, cfg, upload, corrupt, func(c *mesh.Config) {
		// Pushes link their members directly and need no directory;
		// the fast directory refresh of a large net linked all to
		// all (N² links, a signed record per node a second) would
		// take the CPU that the simulation measures.
		if n <= fastNodes {
			meshtest.Fast(c)
		}
		c.HighPeers = 2*n + 8
		c.ManualLinks = true
	})
}

// pushNetWith is pushNet with the nodes' mesh settings made by configure.
func pushNetWith(t testing.TB, nw *meshtest.Network, n int, want []byte, cfg PushConfig, upload float64, corrupt func(k int) bool, configure func(*mesh.Config)) []*pushPeer {
	t.Helper()
	peers := make([]*pushPeer, n)
	// One manifest for all: hashing the file once per node is minutes of
	// CPU in a net of hundreds.
	shared := newMemSource(t, want)
	for k := range peers {
		pp := &pushPeer{}
		pp.node = nw.NewNode(t, fmt.Sprintf("n%d", k), meshtest.Options{Configure: configure})
		bad := corrupt != nil && corrupt(k)
		pp.src = &memSource{id: shared.id, m: shared.m, data: want}
		pp.p = newPushes(countPenalties{pp.node, pp}, nil, cfg, []pieceSource{pp.src}, func(_ context.Context, _ mesh.ID, o offer) (pieceSink, error) {
			pp.opened.Add(1)
			pp.mu.Lock()
			defer pp.mu.Unlock()
			pp.sink = &memSink{want: want, m: o.Manifest, corrupt: bad, held: NewBitfield(o.Manifest.NumPieces()), refuse: pp.refusePut.Load}
			for i := range o.Manifest.NumPieces() {
				if pp.preheld != nil && pp.preheld(i) {
					pp.sink.held.Set(i)
				}
			}
			return pp.sink, nil
		})
		if upload > 0 {
			lim := rate.NewLimiter(rate.Limit(upload), BlockSize)
			pp.p.waitUpload = func(ctx context.Context, n int) error { return lim.WaitN(ctx, n) }
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { pp.p.serve(ctx); close(done) }()
		<-pp.p.started
		t.Cleanup(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Errorf("pushes of %s did not stop", pp.node.ID().Short())
			}
		})
		peers[k] = pp
	}
	return peers
}

func ids(peers []*pushPeer) []mesh.ID {
	out := make([]mesh.ID, len(peers))
	for k, pp := range peers {
		out[k] = pp.node.ID()
	}
	return out
}

func randomFile(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed+1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// checkPushGoroutines fails the test if push workers outlive it. Registered
// first, it runs after every node has stopped.
func checkPushGoroutines(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		testutil.WaitFor(t, 10*time.Second, "push goroutines to end", func() bool {
			buf := make([]byte, 1<<22)
			st := string(buf[:runtime.Stack(buf, true)])
			return !strings.Contains(st, "shards.(*pushes)")
		})
	})
}

// TestPushOneLeavesHalfWay pushes a 16 MiB file from a source to six
// receivers, every node's upload capped alike, and takes one receiver off
// the network once it holds half the file: the five others end with the
// file (its MD5), the source's status says so, and the source uploaded at
// most 1.1x the file.
func TestPushOneLeavesHalfWay(t *testing.T) {
	for _, plan := range []Plan{PlanMatrix, PlanChain} {
		t.Run(string(plan), func(t *testing.T) {
			checkPushGoroutines(t)
			const size = 16 << 20
			want := randomFile(1, size)
			nw := meshtest.NewNetwork()
			cfg := DefaultPushConfig()
			cfg.Repair = 100 * time.Millisecond
			cfg.GoneAfter = 2 * time.Second // the leaver's: it fails every call at once
			peers := pushNet(t, nw, 7, want, cfg, 0, nil)
			src, recv := peers[0], peers[1:]
			for _, pp := range recv {
				pp.p.cfg.Accept = AcceptFrom(src.node.ID())
			}
			// The source's upload is capped so that the push takes a
			// while: the receiver leaves in the middle, not at the end.
			lim := rate.NewLimiter(rate.Limit(8<<20), BlockSize)
			src.p.waitUpload = func(ctx context.Context, n int) error { return lim.WaitN(ctx, n) }
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			pid, err := src.p.push(ctx, src.src.id, ids(recv), plan, "file.bin")
			if err != nil {
				t.Fatal(err)
			}
			leaver := recv[2]
			testutil.WaitFor(t, time.Minute, "the leaver to hold half the file", func() bool {
				s := leaver.getSink()
				return s != nil && s.count() >= src.src.m.NumPieces()/2
			})
			nw.Kill(leaver.node.ID())
			testutil.WaitFor(t, 90*time.Second, "the push to end", func() bool {
				st, err := src.p.status(pid)
				return err == nil && st.Done
			})
			st, err := src.p.status(pid)
			if err != nil {
				t.Fatal(err)
			}
			for k, pp := range recv {
				r := st.Receivers[k]
				if pp == leaver {
					if r.State != "gone" {
						t.Errorf("the leaver is %q", r.State)
					}
					continue
				}
				if !pp.getSink().whole(src.src.id) {
					t.Errorf("receiver %d has %d pieces of %d, or the wrong bytes", k, pp.getSink().count(), src.src.m.NumPieces())
				}
				if r.State != "done" || r.Have != size {
					t.Errorf("receiver %d: status %+v", k, r)
				}
				if pp.getSink().bad != 0 {
					t.Errorf("receiver %d stored %d corrupt pieces", k, pp.getSink().bad)
				}
			}
			// Every node is honest: none may be scored down for what it
			// sent while the push worked round the leaver.
			for k, pp := range peers {
				if pp != leaver && pp.penalties.Load() != 0 {
					t.Errorf("node %d scored honest peers down %d times", k, pp.penalties.Load())
				}
			}
			t.Logf("%s: the source uploaded %.3fx the file", plan, float64(st.Uploaded)/size)
			if st.Uploaded != src.src.sent.Load() {
				t.Errorf("status says %d uploaded, the source counted %d", st.Uploaded, src.src.sent.Load())
			}
			// By construction (awaitSpread, repair): the source sends
			// again only the pieces the leaver alone held, at most
			// spreadPieces of them, whatever the load. That is under
			// the 1.1x here.
			limit := size + int64(src.p.spreadPieces(src.src.m))*src.src.m.PieceSize
			if st.Uploaded > limit || st.Uploaded > size*11/10 {
				t.Errorf("the source uploaded %d bytes, %.3fx the file (at most %.3fx)", st.Uploaded, float64(st.Uploaded)/size, float64(limit)/size)
			}
		})
	}
}

// TestPushChainRepairFromLaterMember: in a chain, a receiver that holds
// some pieces already (a resumed download) does not pass those on, so the
// one after it misses them and repair orders them from their holders,
// some of which come after it in the chain. Such a holder sends them
// without asking for a relay (the receiver refuses that from a later
// member and scores it down; the order then stood for BlockTimeout while
// an honest holder was banned): every receiver ends with the file, no
// node scores another down, and the source sends each piece once.
func TestPushChainRepairFromLaterMember(t *testing.T) {
	checkPushGoroutines(t)
	const size = 4 << 20
	want := randomFile(4, size)
	nw := meshtest.NewNetwork()
	cfg := DefaultPushConfig()
	cfg.Repair = 100 * time.Millisecond
	peers := pushNet(t, nw, 7, want, cfg, 0, nil)
	src, recv := peers[0], peers[1:]
	// Receivers 1 and 3 hold every fourth piece: receiver 1 passes none
	// of them to 2, which orders them from 0, 1 and 3 (repair spreads the
	// orders over the holders).
	for _, k := range []int{1, 3} {
		recv[k].mu.Lock()
		recv[k].preheld = func(i int) bool { return i%4 == 0 }
		recv[k].mu.Unlock()
	}
	for _, pp := range recv {
		pp.p.cfg.Accept = AcceptFrom(src.node.ID())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pid, err := src.p.push(ctx, src.src.id, ids(recv), PlanChain, "file.bin")
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 90*time.Second, "the push to end", func() bool {
		st, err := src.p.status(pid)
		return err == nil && st.Done
	})
	st, err := src.p.status(pid)
	if err != nil {
		t.Fatal(err)
	}
	for k, pp := range recv {
		if r := st.Receivers[k]; r.State != "done" || !pp.getSink().whole(src.src.id) {
			t.Errorf("receiver %d: status %+v, %d pieces of %d", k, r, pp.getSink().count(), src.src.m.NumPieces())
		}
	}
	for k, pp := range peers {
		if n := pp.penalties.Load(); n != 0 {
			t.Errorf("node %d scored honest peers down %d times", k, n)
		}
	}
	if st.Uploaded != size {
		t.Errorf("the source uploaded %d bytes of a %d-byte file", st.Uploaded, size)
	}
}

// TestPushCorruptRelayNeitherStoredNorRelayed has one of five receivers
// flip a byte in every piece it relays: the other four never store a
// corrupt piece, never pass one on (none of them scores another honest one
// down), score the liar down, and still end with the file, its pieces
// ordered from honest receivers or the source instead.
func TestPushCorruptRelayNeitherStoredNorRelayed(t *testing.T) {
	checkPushGoroutines(t)
	const size = 8 << 20
	want := randomFile(2, size)
	nw := meshtest.NewNetwork()
	cfg := DefaultPushConfig() // the default repair period: honest holders get time to answer orders
	const liar = 2
	peers := pushNet(t, nw, 6, want, cfg, 0, func(k int) bool { return k == liar })
	src, recv := peers[0], peers[1:]
	for _, pp := range recv {
		pp.p.cfg.Accept = AcceptFrom(src.node.ID())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pid, err := src.p.push(ctx, src.src.id, ids(recv), PlanMatrix, "file.bin")
	if err != nil {
		t.Fatal(err)
	}
	honest := func(k int) bool { return k != liar }
	testutil.WaitFor(t, 90*time.Second, "the honest receivers to hold the file", func() bool {
		for k, pp := range peers[1:] {
			if honest(k+1) && !pp.getSink().whole(src.src.id) {
				return false
			}
		}
		return true
	})
	liarID := peers[liar].node.ID()
	scored := false
	for k, pp := range peers {
		if k == 0 || !honest(k) {
			continue
		}
		if bad := pp.getSink().bad; bad != 0 {
			t.Errorf("receiver %d stored %d corrupt pieces", k, bad)
		}
		scored = scored || pp.scoredDown(liarID) > 0
		for _, o := range peers {
			if id := o.node.ID(); id != liarID && pp.scoredDown(id) != 0 {
				t.Errorf("receiver %d scored honest %s down %d times: a corrupt piece was relayed", k, id.Short(), pp.scoredDown(id))
			}
		}
	}
	if !scored {
		t.Error("no honest receiver scored the liar down")
	}
	var st PushStatus
	testutil.WaitFor(t, 30*time.Second, "the push to end", func() bool {
		st, err = src.p.status(pid)
		return err == nil && st.Done
	})
	if s := st.Receivers[liar-1].State; s != "gone" {
		t.Errorf("the liar is %q, want gone", s)
	}
	t.Logf("the source uploaded %.3fx the file", float64(st.Uploaded)/size)
	// What the liar was fed and passed on to nobody honest only the
	// source can give again, once: awaitSpread stops feeding it after
	// spreadPieces such pieces, and the liar is dropped once caught, so
	// its later pieces go to honest owners. Every other piece has an
	// honest holder to order it from. Whatever the load, then; sending
	// each of the liar's pieces to every other receiver would be 1.8x.
	limit := size + int64(src.p.spreadPieces(src.src.m))*src.src.m.PieceSize
	if st.Uploaded > limit {
		t.Errorf("the source uploaded %.3fx the file (at most %.3fx)", float64(st.Uploaded)/size, float64(limit)/size)
	}
}

// TestPushRefused: a node takes a push only from the nodes its Accept
// names, and only up to MaxBytes; a refused push opens no sink there and
// does not stop the receivers that took it. The default takes none.
func TestPushRefused(t *testing.T) {
	checkPushGoroutines(t)
	const size = 1 << 20
	want := randomFile(3, size)
	nw := meshtest.NewNetwork()
	cfg := DefaultPushConfig()
	cfg.Repair = 100 * time.Millisecond
	peers := pushNet(t, nw, 5, want, cfg, 0, nil)
	src := peers[0]
	peers[1].p.cfg.Accept = AcceptFrom(src.node.ID())
	// peers[2] keeps the default: no pushes at all.
	peers[3].p.cfg.Accept = AcceptFrom(peers[1].node.ID()) // someone else
	peers[4].p.cfg.Accept = AcceptFrom(src.node.ID())
	peers[4].p.cfg.MaxBytes = size - 1
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pid, err := src.p.push(ctx, src.src.id, ids(peers[1:]), PlanMatrix, "file.bin")
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the push to end", func() bool {
		st, err := src.p.status(pid)
		return err == nil && st.Done
	})
	st, _ := src.p.status(pid)
	if !peers[1].getSink().whole(src.src.id) || st.Receivers[0].State != "done" {
		t.Errorf("the willing receiver: %+v", st.Receivers[0])
	}
	for k := 2; k < 5; k++ {
		if n := peers[k].opened.Load(); n != 0 || st.Receivers[k-1].State != "gone" {
			t.Errorf("receiver %d opened %d sinks and is %q", k, n, st.Receivers[k-1].State)
		}
	}
	// The status says why each is gone: a user who pushed saw "gone"
	// three times, the reason only in the source's log.
	if e := st.Receivers[0].Error; e != "" {
		t.Errorf("the willing receiver has error %q", e)
	}
	for k, want := range map[int]string{
		2: "refused: this node does not take pushes from " + src.node.ID().Short(),
		3: "refused: this node does not take pushes from " + src.node.ID().Short(),
		4: "refused: file too large: push of 1048576 bytes (this node takes up to 1048575)",
	} {
		if got := st.Receivers[k-1].Error; got != want {
			t.Errorf("receiver %d: error %q, want %q", k, got, want)
		}
	}
}

// TestGoneWhy: a receiver's reason quotes its own answer, a peer's bytes:
// shown as one printable line of at most maxGoneWhy bytes and a "…", not
// with the escape sequences, line breaks and bidi overrides it sent.
func TestGoneWhy(t *testing.T) {
	msg := "shards: push refused: \x1b[2J\x1b]0;owned\x07not\r\nfrom\tyou \u202egpj.exe\xff" + strings.Repeat("é", 5000)
	got := goneWhy("refused", &mesh.RemoteError{Msg: msg})
	if !strings.HasPrefix(got, "refused: [2J]0;ownednot  from you gpj.exe\ufffdéé") || !utf8.ValidString(got) ||
		len(got) > maxGoneWhy+len("…") || !strings.HasSuffix(got, "…") {
		t.Fatalf("goneWhy = %q (%d bytes)", got, len(got))
	}
	for _, r := range got {
		if !unicode.IsPrint(r) {
			t.Fatalf("goneWhy = %q: holds %U", got, r)
		}
	}
	if got := goneWhy("its calls failed", errors.New("mesh: no link")); got != "its calls failed: mesh: no link" {
		t.Errorf("goneWhy of a local error = %q", got)
	}
}

// pushStubNode is a Node that records penalties, for driving the handler
// directly.
type pushStubNode struct {
	id        mesh.ID
	penalties atomic.Int32
}

func (n *pushStubNode) ID() mesh.ID                   { return n.id }
func (n *pushStubNode) Handle(string, mesh.Handler)   {}
func (n *pushStubNode) Peers() []mesh.PeerInfo        { return nil }
func (n *pushStubNode) Directory() []mesh.Record      { return nil }
func (n *pushStubNode) SetResource(string, any) error { return nil }
func (n *pushStubNode) Penalize(mesh.ID, string)      { n.penalties.Add(1) }
func (n *pushStubNode) Request(context.Context, mesh.ID, string, []byte, ...mesh.SendOption) ([]byte, error) {
	return nil, mesh.ErrNotConnected
}
func (n *pushStubNode) Send(context.Context, mesh.ID, string, []byte, ...mesh.SendOption) error {
	return mesh.ErrNotConnected
}
func (n *pushStubNode) SubscribePeers() (<-chan mesh.PeerEvent, func()) { return nil, func() {} }
func (n *pushStubNode) Lookup(mesh.ID) (mesh.Record, bool)              { return mesh.Record{}, false }
func (n *pushStubNode) SubscribeDirectory() (<-chan struct{}, func())   { return nil, func() {} }
func (n *pushStubNode) Expand(context.Context, ...mesh.ID) error        { return mesh.ErrNotConnected }
func (n *pushStubNode) Connect(context.Context, mesh.ID) error          { return mesh.ErrNotConnected }
func (n *pushStubNode) Sign(string, []byte) ([]byte, error) {
	return nil, fmt.Errorf("a stub node has no key")
}

func testID(t testing.TB) mesh.ID {
	t.Helper()
	ident, err := mesh.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return ident.ID
}

// TestPushSlowSourceNotForgotten: a receiver that hears nothing for longer
// than Idle while the source is still pushing (a slow source, or a
// receiver waiting for repair) keeps the push: it asks the source, which
// answers, rather than forgetting the push and refusing what comes next.
func TestPushSlowSourceNotForgotten(t *testing.T) {
	checkPushGoroutines(t)
	// In virtual time: on real time, a loaded machine stretched the
	// 4 s pieces past the wait for the end.
	synctest.Test(t, func(t *testing.T) {
		const size = 3 * MinPieceSize
		want := randomFile(5, size)
		nw := meshtest.NewNetwork()
		nw.Latency = 2 * time.Millisecond
		cfg := DefaultPushConfig()
		cfg.Repair = 100 * time.Millisecond
		cfg.Idle = 1500 * time.Millisecond
		peers := pushNet(t, nw, 3, want, cfg, 0, nil)
		src, recv := peers[0], peers[1:]
		for _, pp := range recv {
			pp.p.cfg.Accept = AcceptFrom(src.node.ID())
		}
		// A piece every 4 s: longer than Idle between the pieces a
		// receiver gets.
		lim := rate.NewLimiter(rate.Limit(MinPieceSize/4), MinPieceSize)
		lim.AllowN(time.Now(), MinPieceSize) // no burst at the start either
		src.p.waitUpload = func(ctx context.Context, n int) error { return lim.WaitN(ctx, n) }
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		pid, err := src.p.push(ctx, src.src.id, ids(recv), PlanMatrix, "slow.bin")
		if err != nil {
			t.Fatal(err)
		}
		st := pushDone(t, src, pid, 5*time.Minute)
		for k, pp := range recv {
			if r := st.Receivers[k]; r.State != "done" || !pp.getSink().whole(src.src.id) {
				t.Errorf("receiver %d: %+v", k, r)
			}
		}
	})
}

// TestMemSinkSharesTrueBytes: 256 sinks given every piece of an 8 MiB
// file hold it once between them (what a 256-receiver simulation needs),
// and a sink given a piece that differs keeps and serves back what it was
// given, as a store would.
func TestMemSinkSharesTrueBytes(t *testing.T) {
	want := randomFile(21, 8<<20)
	src := newMemSource(t, want)
	m := src.m
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	sinks := make([]*memSink, 256)
	for k := range sinks {
		sinks[k] = &memSink{want: want, m: m, held: NewBitfield(m.NumPieces())}
		for i := range m.NumPieces() {
			off := m.PieceOffset(i)
			// A fresh buffer per put, as a push's assembly is.
			if err := sinks[k].putPiece(context.Background(), "", i, bytes.Clone(want[off:off+m.PieceLen(i)])); err != nil {
				t.Fatal(err)
			}
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > int64(len(want)) {
		t.Errorf("256 sinks of an 8 MiB file hold %d MiB more heap, want at most one copy", grew>>20)
	}
	for k, s := range sinks {
		if !s.whole(src.id) || s.bad != 0 {
			t.Fatalf("sink %d: whole %v, %d bad", k, s.whole(src.id), s.bad)
		}
	}
	runtime.KeepAlive(sinks)

	// A corrupt piece is kept as given and served back so.
	s := sinks[0]
	bad := bytes.Clone(want[:m.PieceLen(0)])
	bad[7] ^= 1
	if err := s.putPiece(context.Background(), "", 0, bad); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, min(BlockSize, m.PieceLen(0)))
	if err := s.readBlock(context.Background(), blockReq{ID: src.id, Piece: 0, Len: uint32(len(got))}, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bad[:len(got)]) || s.bad != 1 || s.whole(src.id) {
		t.Errorf("after a corrupt piece: served it %v, %d bad, whole %v", bytes.Equal(got, bad[:len(got)]), s.bad, s.whole(src.id))
	}
}
