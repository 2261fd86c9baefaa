package shards

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// requestLog records the block requests a testServer serves.
type requestLog struct {
	mu   sync.Mutex
	reqs []blockReq
}

func (l *requestLog) add(_ mesh.ID, r blockReq) {
	l.mu.Lock()
	l.reqs = append(l.reqs, r)
	l.mu.Unlock()
}

func (l *requestLog) all() []blockReq {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]blockReq(nil), l.reqs...)
}

// TestDownloadSpans: a 16 MiB file has 64 KiB pieces; from one fast holder
// it is fetched in blocks that run across pieces (ProtoSpan), so that the
// 16 requests in flight to a peer hold up to 4 MiB, not 1 MiB, and the
// file costs a fraction of a request per piece. Before, every piece was a
// request of its own (or more: slow start begins with 8 KiB blocks).
func TestDownloadSpans(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	data, src := testFile(t, 16<<20, 31)
	if src.man.PieceSize != 64<<10 {
		t.Fatalf("piece size %d: the test needs pieces smaller than a block", src.man.PieceSize)
	}
	var log requestLog
	srv := &testServer{sources: []pieceSource{src}, onBlock: log.add}
	srv.register(nodes[0])
	dir := t.TempDir()
	d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := d.fetch(ctx, src.link(nodes[0].ID(), "spans.bin")); err != nil {
		t.Fatal(err)
	}
	tr := waitState(t, d.downloads, src.id, StateDone, 2*time.Minute)
	if got := fileMD5(t, tr.Path); got != src.id {
		t.Fatalf("finished file md5 %s, want %s", got, src.id)
	}
	reqs := log.all()
	var most uint32
	var spanned int64 // bytes in blocks of more than a piece
	for _, r := range reqs {
		most = max(most, r.Len)
		if int64(r.Len) > src.man.PieceSize {
			spanned += int64(r.Len)
		}
	}
	pieces := src.man.NumPieces()
	t.Logf("%d pieces in %d requests, the largest %d KiB, %d%% of the bytes in spans", pieces, len(reqs), most>>10, 100*spanned/int64(len(data)))
	if spanned < int64(len(data))/2 {
		t.Errorf("%d of %d bytes in blocks of more than a piece: blocks do not span pieces", spanned, len(data))
	}
	if most != BlockSize {
		t.Errorf("largest block %d bytes, want %d (several pieces)", most, BlockSize)
	}
	if got := srv.served.Load(); got != int64(len(data)) {
		t.Errorf("holder served %d bytes for a file of %d", got, len(data))
	}
}

// TestDownloadSpanFallback: a holder that predates ProtoSpan answers "no
// handler"; the download asks it piece by piece instead, without counting
// that against it, and completes.
func TestDownloadSpanFallback(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "old", "dl")
	data, src := testFile(t, 8<<20, 32)
	var log requestLog
	srv := &testServer{sources: []pieceSource{src}, noSpan: true, onBlock: log.add}
	srv.register(nodes[0])
	dir := t.TempDir()
	d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := d.fetch(ctx, src.link(nodes[0].ID(), "old.bin")); err != nil {
		t.Fatal(err)
	}
	tr := waitState(t, d.downloads, src.id, StateDone, 2*time.Minute)
	if got := fileMD5(t, tr.Path); got != src.id {
		t.Fatalf("finished file md5 %s, want %s", got, src.id)
	}
	for _, r := range log.all() {
		if int64(r.Off)+int64(r.Len) > src.man.PieceLen(int(r.Piece)) {
			t.Fatalf("the old holder served a block outside its piece: %+v", r)
		}
	}
	if got := srv.served.Load(); got != int64(len(data)) {
		t.Errorf("holder served %d bytes for a file of %d", got, len(data))
	}
	dl := d.get(src.id)
	dl.mu.Lock()
	bad := len(dl.bad) + len(dl.banned)
	dl.mu.Unlock()
	if bad != 0 {
		t.Errorf("the old holder was counted %d offences", bad)
	}
}

// TestServeSpan: a shared file's holder serves a span across pieces with
// the file's bytes, and refuses one that runs past the end of the file or
// goes over ctl.
func TestServeSpan(t *testing.T) {
	testutil.CheckGoroutines(t)
	a, b := newPair(t)
	sa := serveTest(t, testConfig(t, a))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "span.bin")
	data := writeRandom(t, path, 4<<20+777, 3)
	tr, err := sa.Share(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := fetchManifest(ctx, b, a.ID(), tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	ask := func(r blockReq, opts ...mesh.SendOption) ([]byte, error) {
		return b.Request(ctx, a.ID(), ProtoSpan, encodeBlockReq(r), opts...)
	}
	ps := m.PieceSize
	for _, c := range []struct {
		piece    int
		off, len int64
	}{
		{0, 0, BlockSize},                      // four whole pieces
		{2, 1000, BlockSize},                   // from inside a piece, into a fifth
		{m.NumPieces() - 3, 0, 2*ps + 777},     // to the end of the file
		{m.NumPieces() - 1, 100, 777 - 100},    // inside the short last piece
		{m.NumPieces() - 2, ps - 1, 1 + 777},   // the last byte of a piece and all of the next
		{m.NumPieces() - 5, 0, BlockSize - 1},  // ends a byte short of a piece
		{m.NumPieces() - 6, ps / 2, BlockSize}, // three and a half pieces and half of a fifth
	} {
		r := blockReq{ID: tr.ID, Piece: uint32(c.piece), Off: uint32(c.off), Len: uint32(c.len)}
		got, err := ask(r, mesh.OverBulk())
		if err != nil {
			t.Fatalf("span %+v: %v", c, err)
		}
		at := int64(c.piece)*ps + c.off
		if want := data[at : at+c.len]; !bytes.Equal(got, want) {
			t.Fatalf("span %+v: %d bytes, not the file's", c, len(got))
		}
	}
	var re *mesh.RemoteError
	for name, r := range map[string]blockReq{
		"past the end":          {ID: tr.ID, Piece: uint32(m.NumPieces() - 1), Off: 0, Len: 778},
		"from past the last":    {ID: tr.ID, Piece: uint32(m.NumPieces()), Len: 10},
		"offset past its piece": {ID: tr.ID, Piece: 0, Off: uint32(ps), Len: 10},
	} {
		if _, err := ask(r, mesh.OverBulk()); !errors.As(err, &re) {
			t.Errorf("span %s: %v, want a refusal", name, err)
		}
	}
	if _, err := ask(blockReq{ID: tr.ID, Len: 10}); err == nil {
		t.Error("a span asked for on ctl was answered")
	}
}

// FuzzBlockSpan: whatever a peer asks for, a span that blockSpan accepts
// lies inside the file, and readSpan splits it into blocks that each lie
// inside their piece.
func FuzzBlockSpan(f *testing.F) {
	m := &Manifest{Size: 1<<20 + 5, PieceSize: 64 << 10, Pieces: make([]MD5, 17)}
	f.Add(encodeBlockReq(blockReq{Piece: 0, Off: 0, Len: BlockSize}))
	f.Add(encodeBlockReq(blockReq{Piece: 15, Off: 65535, Len: 6}))
	f.Add(encodeBlockReq(blockReq{Piece: 16, Off: 0, Len: 5}))
	f.Add(encodeBlockReq(blockReq{Piece: 16, Off: 4, Len: 2}))
	f.Add(encodeBlockReq(blockReq{Piece: 1<<32 - 1, Off: 1<<32 - 1, Len: BlockSize}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeBlockReq(b)
		if err != nil {
			return
		}
		last, ok := blockSpan(m, r)
		if !ok {
			return
		}
		start := m.PieceOffset(int(r.Piece)) + int64(r.Off)
		end := start + int64(r.Len)
		if start < 0 || end > m.Size || last < int(r.Piece) || last >= m.NumPieces() || (end-1)/m.PieceSize != int64(last) {
			t.Fatalf("accepted %+v: bytes %d-%d, pieces %d-%d of %d", r, start, end, r.Piece, last, m.NumPieces())
		}
		src := &spanCheck{t: t, m: m}
		if err := readSpan(context.Background(), src, m, r, make([]byte, r.Len)); err != nil {
			t.Fatalf("readSpan %+v: %v", r, err)
		}
		if src.n != int64(r.Len) || src.last != last {
			t.Fatalf("readSpan %+v read %d bytes up to piece %d, want %d up to %d", r, src.n, src.last, r.Len, last)
		}
	})
}

// spanCheck is a pieceSource that checks each block it is asked to read.
type spanCheck struct {
	pieceSource
	t    *testing.T
	m    *Manifest
	n    int64
	last int
}

func (s *spanCheck) readBlock(_ context.Context, r blockReq, p []byte) error {
	if !blockInPiece(s.m, r) || len(p) != int(r.Len) {
		s.t.Fatalf("readSpan asked for %+v (%d bytes), outside its piece", r, len(p))
	}
	s.n += int64(r.Len)
	s.last = int(r.Piece)
	return nil
}

// TestDownloadSpanCorruptPiece: a holder sends one span (the first of four
// pieces, which is checked in SIMD lanes) with its second piece corrupt. Only that piece is
// dropped and fetched again, the span's other pieces are kept (no piece
// but it is asked for twice), the holder is counted one offence, and the
// file completes with the right MD5.
func TestDownloadSpanCorruptPiece(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	_, src := testFile(t, 16<<20+777, 33)
	ps := src.man.PieceSize
	var log requestLog
	var mu sync.Mutex
	bad := -1 // the piece sent corrupt
	srv := &testServer{sources: []pieceSource{src}, onBlock: log.add, tamper: func(r blockReq, p []byte) {
		mu.Lock()
		defer mu.Unlock()
		if bad >= 0 || r.Off != 0 || int64(len(p)) != spanLanes*ps {
			return
		}
		bad = int(r.Piece) + 1
		p[ps+ps/2] ^= 0x55
	}}
	srv.register(nodes[0])
	dir := t.TempDir()
	d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := d.fetch(ctx, src.link(nodes[0].ID(), "corrupt.bin")); err != nil {
		t.Fatal(err)
	}
	tr := waitState(t, d.downloads, src.id, StateDone, 2*time.Minute)
	if got := fileMD5(t, tr.Path); got != src.id {
		t.Fatalf("finished file md5 %s, want %s", got, src.id)
	}
	mu.Lock()
	corrupt := bad
	mu.Unlock()
	if corrupt < 0 {
		t.Fatal("no span of four pieces was served: the test proves nothing")
	}
	asked := make([]int, src.man.NumPieces()) // times each piece's first byte was asked for
	for _, r := range log.all() {
		for i := int64(r.Piece); i*ps < int64(r.Piece)*ps+int64(r.Off)+int64(r.Len); i++ {
			if i*ps >= int64(r.Piece)*ps+int64(r.Off) {
				asked[i]++
			}
		}
	}
	for i, n := range asked {
		want := 1
		if i == corrupt {
			want = 2
		}
		if n != want {
			t.Errorf("piece %d asked for %d times, want %d (piece %d was sent corrupt)", i, n, want, corrupt)
		}
	}
	dl := d.get(src.id)
	dl.mu.Lock()
	offences, banned := dl.bad[nodes[0].ID()], dl.banned[nodes[0].ID()]
	dl.mu.Unlock()
	if offences != 1 || banned {
		t.Errorf("holder counted %d offences (banned %v), want 1", offences, banned)
	}
}
