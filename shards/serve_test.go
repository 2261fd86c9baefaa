package shards

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/pubsub"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// testServer serves ProtoManifest, ProtoHave and ProtoBlock from sources, as
// the Service's handlers do: a minimal stand-in, so the downloader can be
// tested on its own.
type testServer struct {
	sources []pieceSource
	// limit caps the bytes served per second; nil: unlimited.
	limit *rate.Limiter
	// corrupt flips a byte in every block it serves.
	corrupt bool
	// tamper, if set, may change the bytes of each block served (of r).
	tamper func(r blockReq, p []byte)
	// refuse, if set, is a node this server answers that it has nothing.
	refuse mesh.ID
	// noSpan leaves ProtoSpan unserved, as a node that predates it.
	noSpan bool
	// onBlock, if set, sees every block request served (of ProtoBlock
	// and ProtoSpan).
	onBlock func(from mesh.ID, r blockReq)
	served  atomic.Int64
}

func (s *testServer) register(n Node) {
	for _, proto := range []string{ProtoManifest, ProtoHave, ProtoBlock, ProtoSpan} {
		if proto == ProtoSpan && s.noSpan {
			continue
		}
		n.Handle(proto, mesh.HandlerFunc(s.serveMesh))
	}
}

func (s *testServer) serveMesh(ctx context.Context, m *mesh.Message) ([]byte, error) {
	if s.refuse != "" && m.From == s.refuse {
		return nil, ErrUnknown
	}
	switch m.Protocol {
	case ProtoManifest, ProtoHave:
		if len(m.Payload) != len(MD5{}) {
			return nil, ErrBadFrame
		}
		id := MD5(m.Payload)
		for _, src := range s.sources {
			if d, ok := src.(*downloads); ok && m.Protocol == ProtoHave {
				d.askedHave(id, m.From) // as Service.handleHave
			}
			man, ok := src.manifestOf(id)
			if !ok {
				continue
			}
			if m.Protocol == ProtoManifest {
				return man.Encode(), nil
			}
			if h := src.haveOf(id); h != nil {
				return encodeHave(h, man.NumPieces()), nil
			}
		}
		return nil, fmt.Errorf("%w: %s", ErrUnknown, id)
	case ProtoBlock, ProtoSpan:
		r, err := decodeBlockReq(m.Payload)
		if err != nil {
			return nil, err
		}
		for _, src := range s.sources {
			man, ok := src.manifestOf(r.ID)
			if !ok {
				continue
			}
			last, ok := int(r.Piece), blockInPiece(man, r)
			if m.Protocol == ProtoSpan {
				last, ok = blockSpan(man, r)
			}
			if !ok || !src.haveOf(r.ID).HasRange(int(r.Piece), last) {
				continue
			}
			// In pieces of at most the burst, as Service.waitUpload: a
			// small burst keeps a slow cap from starting with a free
			// quarter of a MiB.
			for n := int(r.Len); s.limit != nil && n > 0; n -= s.limit.Burst() {
				if err := s.limit.WaitN(ctx, min(n, s.limit.Burst())); err != nil {
					return nil, err
				}
			}
			p := make([]byte, r.Len)
			if err := readSpan(ctx, src, man, r, p); err != nil {
				return nil, err
			}
			if s.corrupt {
				p[len(p)/2] ^= 0x55
			}
			if s.tamper != nil {
				s.tamper(r, p)
			}
			if s.onBlock != nil {
				s.onBlock(m.From, r)
			}
			src.sentBlock(r.ID, m.From, len(p))
			s.served.Add(int64(len(p)))
			return p, nil
		}
		return nil, fmt.Errorf("%w: %s piece %d", ErrUnknown, r.ID, r.Piece)
	}
	return nil, fmt.Errorf("no protocol %s", m.Protocol)
}

// readerSource is a whole resource served from an io.ReaderAt (bytes in
// memory, or bytes made up on the fly for large benchmarks).
type readerSource struct {
	id  MD5
	man *Manifest
	r   io.ReaderAt
}

func (s *readerSource) manifestOf(id MD5) (*Manifest, bool) { return s.man, id == s.id }
func (s *readerSource) haveOf(id MD5) Bitfield {
	if id != s.id {
		return nil
	}
	return allPieces(s.man.NumPieces())
}
func (s *readerSource) readBlock(ctx context.Context, r blockReq, p []byte) error {
	_, err := s.r.ReadAt(p, s.man.PieceOffset(int(r.Piece))+int64(r.Off))
	return err
}
func (s *readerSource) sentBlock(MD5, mesh.ID, int) {}

// testFile makes size bytes of random data and their manifest.
func testFile(t testing.TB, size int, seed byte) ([]byte, *readerSource) {
	t.Helper()
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{seed}).Read(data)
	m, id, err := BuildManifest(context.Background(), bytes.NewReader(data), int64(size), nil)
	if err != nil {
		t.Fatal(err)
	}
	return data, &readerSource{id: id, man: m, r: bytes.NewReader(data)}
}

func (s *readerSource) link(holder mesh.ID, name string) Link {
	return Link{Node: holder, Channel: FilesChannel, ID: s.id, Manifest: s.man.Hash(), Name: name, Size: s.man.Size}
}

func openTestDB(t testing.TB, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// runningDownloads is a downloads under test with its serve loop.
type runningDownloads struct {
	*downloads
	events *pubsub.Topic[Event]
	stop   context.CancelFunc
	done   chan struct{}
}

// startDownloads runs downloads over node n until stop or the test's end.
// It closes db at the test's end unless the test does.
func startDownloads(t testing.TB, n Node, dir string, db *bolt.DB, holders func(MD5) []mesh.ID, tune func(*DownloadsConfig, *downloads)) *runningDownloads {
	t.Helper()
	cfg := DownloadsConfig{Dir: dir, HaveInterval: 300 * time.Millisecond}
	events := new(pubsub.Topic[Event])
	d, err := newDownloads(cfg, n, db, holders, events, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(&d.cfg, d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rd := &runningDownloads{downloads: d, events: events, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(rd.done)
		d.serve(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-rd.done:
		case <-time.After(15 * time.Second):
			t.Error("downloads did not stop")
		}
	})
	return rd
}

// newTestNet makes a meshtest network with n nodes (Fast timers) named
// after their role.
func newTestNet(t testing.TB, names ...string) (*meshtest.Network, []*mesh.Node) {
	t.Helper()
	nw := meshtest.NewNetwork()
	nodes := make([]*mesh.Node, len(names))
	for i, name := range names {
		nodes[i] = nw.NewNode(t, name, meshtest.Options{Configure: meshtest.Fast})
	}
	return nw, nodes
}

func nodeIDs(nodes ...*mesh.Node) []mesh.ID {
	out := make([]mesh.ID, len(nodes))
	for i, n := range nodes {
		out[i] = n.ID()
	}
	return out
}

func fileMD5(t testing.TB, path string) MD5 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return MD5(h.Sum(nil))
}

// waitState waits for the download of id to reach state want, failing at
// once on StateFailed.
func waitState(t testing.TB, d *downloads, id MD5, want State, timeout time.Duration) Transfer {
	t.Helper()
	var tr Transfer
	deadline := time.Now().Add(timeout)
	for {
		for _, x := range d.transfers() {
			if x.ID == id {
				tr = x
			}
		}
		if tr.State == want {
			return tr
		}
		if tr.State == StateFailed && want != StateFailed {
			t.Fatalf("download failed: %s", tr.Error)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %+v", timeout, want, tr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
