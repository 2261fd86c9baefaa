package shards

import (
	"context"
	"crypto/md5"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/testutil"
)

// TestSumSpansBatch: the span answers the fetch loop takes together are
// checked in the SIMD lanes together (sumSpans), each piece's MD5 its own
// whatever shares its round: a piece a hostile holder flipped a byte in
// fails, its neighbours and the pieces of the other answers pass, and
// answers not to be checked (an error, one whose pieces are no longer this
// peer's, a short one) get none.
func TestSumSpansBatch(t *testing.T) {
	testutil.CheckGoroutines(t)
	data, src := testFile(t, 4<<20, 36)
	m := src.man
	ps := m.PieceSize
	if ps != 64<<10 {
		t.Fatalf("piece size %d: the test needs spans of four pieces", ps)
	}
	d := &downloads{}
	l := newLanes()
	d.lanes.Store(l)
	defer l.close()
	dl := d.newDownload(src.link("", "batch.bin"))
	dl.setManifest(m, m.Hash())
	p := &peer{attempts: make(map[int]*attempt)}
	span := func(first, n int, live bool) blockResult {
		r := blockResult{req: blockReq{Piece: uint32(first), Len: uint32(int64(n) * ps)}}
		for i := first; i < first+n; i++ {
			a := &attempt{piece: i}
			if live {
				p.attempts[i] = a
			}
			r.as = append(r.as, a)
		}
		r.data = append([]byte(nil), data[int64(first)*ps:int64(first+n)*ps]...)
		return r
	}
	batch := []blockResult{span(0, 4, true), span(8, 4, true), span(16, 4, true), span(24, 4, true)}
	batch[1].data[ps+ps/2] ^= 0x55 // piece 9
	sums := dl.sumSpans(p, batch)
	if len(sums) != len(batch) {
		t.Fatalf("%d sums for %d answers", len(sums), len(batch))
	}
	for i, r := range batch {
		for k, a := range r.as {
			want := md5.Sum(r.data[int64(k)*ps : int64(k+1)*ps])
			if sums[i][k] != want {
				t.Errorf("answer %d piece %d: sum %x, want %x", i, a.piece, sums[i][k], want)
			}
			if good := sums[i][k] == m.Pieces[a.piece]; good != (a.piece != 9) {
				t.Errorf("piece %d checks %v against the manifest", a.piece, good)
			}
		}
	}

	errAnswer := span(32, 4, true)
	errAnswer.err = errors.New("refused")
	short := span(40, 4, true)
	short.data = short.data[:len(short.data)-1]
	batch = []blockResult{span(48, 4, false), errAnswer, short, span(56, 4, true)}
	sums = dl.sumSpans(p, batch)
	for i := range 3 {
		if sums[i] != nil {
			t.Errorf("answer %d (not to be checked) got sums", i)
		}
	}
	for k, a := range batch[3].as {
		if sums[3][k] != m.Pieces[a.piece] {
			t.Errorf("piece %d: sum %x, want the manifest's %x", a.piece, sums[3][k], m.Pieces[a.piece])
		}
	}

	// Too few pieces to fill the lanes: checked one by one instead.
	if sums := dl.sumSpans(p, []blockResult{span(60, 2, true)}); sums != nil {
		t.Errorf("a span of two pieces alone got lane sums")
	}
}

// TestDownloadSpansPaired: from a holder whose answers come one at a time
// (served at 48 MiB/s, a span every 5 ms), most span answers are held for
// the next one and their pieces checked in the SIMD lanes eight at once,
// at about half the CPU a byte of four (holdSpans); before, each span was
// checked alone as it came, four pieces at a time. The file is whole.
func TestDownloadSpansPaired(t *testing.T) {
	testutil.CheckGoroutines(t)
	// Answers are held only while the link's measured rate sends two
	// spans within holdMax (about 21 MB/s for 25 ms): a loaded CI machine
	// under -race may measure less and hold nothing. With half a second
	// the bar is about 1 MB/s; the holder still serves 48 MiB/s, so what
	// is measured is the pairing, not the machine's speed.
	oldHold := holdMax
	holdMax = 500 * time.Millisecond
	t.Cleanup(func() { holdMax = oldHold })
	_, nodes := newTestNet(t, "holder", "dl")
	_, src := testFile(t, 16<<20, 37)
	srv := &testServer{sources: []pieceSource{src}, limit: rate.NewLimiter(rate.Limit(48<<20), BlockSize)}
	srv.register(nodes[0])
	dir := t.TempDir()
	d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := d.fetch(ctx, src.link(nodes[0].ID(), "paired.bin")); err != nil {
		t.Fatal(err)
	}
	tr := waitState(t, d.downloads, src.id, StateDone, 2*time.Minute)
	if got := fileMD5(t, tr.Path); got != src.id {
		t.Fatalf("finished file md5 %s, want %s", got, src.id)
	}
	n, paired := d.lanePieces.Load(), d.lanePaired.Load()
	t.Logf("%d of %d pieces checked in the lanes, %d of them 8 or more at once", n, src.man.NumPieces(), paired)
	if n < int64(src.man.NumPieces())/2 {
		t.Fatalf("only %d of %d pieces checked in the lanes: the test proves nothing", n, src.man.NumPieces())
	}
	// Under -race the loop is slow enough that answers queue and pair
	// up now and then without the hold as well (58-78% in runs of the
	// code before); without it, 0-25%.
	if paired < n*4/5 {
		t.Errorf("%d of %d pieces checked in the lanes 8 or more at once: spans are checked alone", paired, n)
	}
}
