package shards

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// TestDownloadByIDWrongManifest: a link with no manifest hash names a
// hostile holder that answers with the manifest and pieces of another file
// of the same size. Its pieces verify against its manifest, so only the
// whole-file MD5 catches it. The download must still end with the right
// file from the honest holder: the lying manifest rejected, its sender
// banned, and the honest holder (whose pieces do not fit the lie) neither
// banned nor scored down.
func TestDownloadByIDWrongManifest(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "liar", "honest", "dl")
	data, src := testFile(t, 4<<20, 11)
	otherData, other := testFile(t, len(data), 12)
	lie := &readerSource{id: src.id, man: other.man, r: bytes.NewReader(otherData)}
	(&testServer{sources: []pieceSource{lie}}).register(nodes[0])
	honest := &testServer{sources: []pieceSource{src}, limit: rate.NewLimiter(rate.Limit(4<<20), BlockSize)}
	honest.register(nodes[1])
	// The manifest is asked of both holders at once and the first in is
	// taken: the honest one refuses its first ask, so that the liar's is
	// taken whatever the order and its rejection is what is tested.
	var manAsks atomic.Int64
	nodes[1].Handle(ProtoManifest, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		if manAsks.Add(1) == 1 {
			return nil, fmt.Errorf("%w: %s", ErrUnknown, src.id)
		}
		return honest.serveMesh(ctx, m)
	}))
	holders := nodeIDs(nodes[:2]...)
	dir := t.TempDir()
	d := startDownloads(t, nodes[2], dir, openTestDB(t, filepath.Join(dir, "db")), func(MD5) []mesh.ID { return holders }, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Typed by hand: the liar's node, the id, no manifest hash.
	if _, err := d.fetch(ctx, Link{Node: nodes[0].ID(), ID: src.id, Name: "wanted.bin", Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	tr := waitState(t, d.downloads, src.id, StateDone, time.Minute)
	if got := fileMD5(t, tr.Path); got != src.id {
		t.Fatalf("finished file md5 %s, want %s", got, src.id)
	}
	if tr.Manifest != src.man.Hash() {
		t.Fatalf("transfer's manifest %s, want the honest one", tr.Manifest)
	}
	dl := d.get(src.id)
	dl.mu.Lock()
	liarBanned, honestBanned, honestBad := dl.banned[nodes[0].ID()], dl.banned[nodes[1].ID()], dl.bad[nodes[1].ID()]
	dl.mu.Unlock()
	if !liarBanned || honestBanned || honestBad != 0 {
		t.Fatalf("liar banned %v; honest banned %v with %d bad pieces", liarBanned, honestBanned, honestBad)
	}
	for _, p := range nodes[2].Peers() {
		if p.ID == nodes[1].ID() && p.Failures != 0 {
			t.Errorf("the honest holder's link counts %d offences", p.Failures)
		}
	}
}

// TestDownloadPartFileLost: the stored bitfield names pieces, but the part
// file is gone (a crash between finish's rename and its record, or a user
// who cleaned the data dir). A restart must not count the holes of a new
// part file as verified pieces: a reader gets the resource's bytes, not
// zeros, and the download ends with the right file.
func TestDownloadPartFileLost(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw, nodes := newTestNet(t, "holder", "first")
	data, src := testFile(t, 8<<20, 13)
	(&testServer{sources: []pieceSource{src}, limit: rate.NewLimiter(rate.Limit(2<<20), BlockSize)}).register(nodes[0])
	holders := []mesh.ID{nodes[0].ID()}
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "db")
	db := openTestDB(t, dbPath)
	first := startDownloads(t, nodes[1], dir, db, func(MD5) []mesh.ID { return holders }, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := first.fetch(ctx, src.link(nodes[0].ID(), "lost.bin")); err != nil {
		t.Fatal(err)
	}
	// Any committed piece: with commits at most once a second, piece 0's
	// bit (rarest first picks it at random) could come after the last
	// piece and the part file be renamed already.
	piece := -1
	testutil.WaitFor(t, 30*time.Second, "a piece's bit to be committed", func() bool {
		_, haves, _, err := loadDownloads(db)
		if err != nil {
			return false
		}
		for i := range src.man.NumPieces() {
			if haves[src.id].Has(i) {
				piece = i
				return true
			}
		}
		return false
	})
	first.stop()
	<-first.done
	nw.Kill(nodes[1].ID())
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(partPath(dir, src.id)); err != nil {
		t.Fatal(err)
	}

	second := nw.NewNode(t, "second")
	d := startDownloads(t, second, dir, openTestDB(t, dbPath), func(MD5) []mesh.ID { return holders }, nil)
	t.Cleanup(func() { d.db.Close() })
	c, err := d.open(ctx, src.id)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	off := src.man.PieceOffset(piece)
	buf := make([]byte, src.man.PieceLen(piece))
	if _, err := c.Seek(off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, data[off:off+int64(len(buf))]) {
		t.Fatalf("piece %d read as verified from a part file that lost it", piece)
	}
	tr := waitState(t, d.downloads, src.id, StateDone, time.Minute)
	if got := fileMD5(t, tr.Path); got != src.id {
		t.Fatalf("finished file md5 %s, want %s", got, src.id)
	}
}

// staller takes requests and never answers them (until the test ends):
// answerHave, if set, is what it says it holds.
type staller struct {
	stop       chan struct{}
	answerHave *readerSource
	asked      atomic.Int64
}

func (s *staller) register(t *testing.T, n Node, protos ...string) {
	s.stop = make(chan struct{})
	t.Cleanup(func() { close(s.stop) })
	for _, p := range protos {
		n.Handle(p, mesh.HandlerFunc(s.serveMesh))
	}
}

func (s *staller) serveMesh(ctx context.Context, m *mesh.Message) ([]byte, error) {
	if s.answerHave != nil {
		switch m.Protocol {
		case ProtoManifest:
			return s.answerHave.man.Encode(), nil
		case ProtoHave:
			return encodeHave(allPieces(s.answerHave.man.NumPieces()), s.answerHave.man.NumPieces()), nil
		}
	}
	s.asked.Add(1)
	select {
	case <-ctx.Done():
	case <-s.stop:
	}
	return nil, ErrUnknown
}

// TestDownloadManifestStall: the link's node takes the manifest request and
// never answers; the honest holder the catalog lists must still be asked.
func TestDownloadManifestStall(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "stall", "honest", "dl")
	_, src := testFile(t, 2<<20, 14)
	st := &staller{}
	st.register(t, nodes[0], ProtoManifest, ProtoHave, ProtoBlock)
	(&testServer{sources: []pieceSource{src}}).register(nodes[1])
	holders := nodeIDs(nodes[:2]...)
	dir := t.TempDir()
	d := startDownloads(t, nodes[2], dir, openTestDB(t, filepath.Join(dir, "db")), func(MD5) []mesh.ID { return holders },
		func(c *DownloadsConfig, _ *downloads) { c.RequestTimeout = time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.fetch(ctx, src.link(nodes[0].ID(), "stall.bin")); err != nil {
		t.Fatal(err)
	}
	tr := waitState(t, d.downloads, src.id, StateDone, time.Minute)
	if got := fileMD5(t, tr.Path); got != src.id {
		t.Fatalf("finished file md5 %s, want %s", got, src.id)
	}
	if st.asked.Load() == 0 {
		t.Fatal("the staller was never asked: the test proves nothing")
	}
}

// TestDownloadBlockStall: a holder says it has every piece, takes block
// requests and never answers. Once it has pieces in hand, a reader asks
// for piece 0, which it holds: the read must not wait for endgame (the
// whole rest of the file from the honest holder) but be served once the
// staller is given up on.
func TestDownloadBlockStall(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "stall", "honest", "dl")
	data, src := testFile(t, 16<<20, 15)
	st := &staller{answerHave: src}
	st.register(t, nodes[0], ProtoManifest, ProtoHave, ProtoBlock)
	(&testServer{sources: []pieceSource{src}, limit: rate.NewLimiter(rate.Limit(2<<20), BlockSize)}).register(nodes[1])
	var withHonest atomic.Bool
	holders := func(MD5) []mesh.ID {
		if withHonest.Load() {
			return nodeIDs(nodes[:2]...)
		}
		return nodeIDs(nodes[0])
	}
	dir := t.TempDir()
	d := startDownloads(t, nodes[2], dir, openTestDB(t, filepath.Join(dir, "db")), holders,
		func(c *DownloadsConfig, _ *downloads) { c.RequestTimeout = time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.fetch(ctx, Link{ID: src.id, Name: "stall.bin"}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the staller to hold requests", func() bool { return st.asked.Load() > 0 })
	withHonest.Store(true)
	c, err := d.open(ctx, src.id)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, src.man.PieceSize)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, data[:len(buf)]) {
		t.Fatal("wrong bytes")
	}
	if tr := d.get(src.id).transfer(); tr.Have > int64(len(data))/2 {
		t.Fatalf("the read of piece 0 waited for %d of %d bytes: the staller kept it until endgame", tr.Have, len(data))
	}
	waitState(t, d.downloads, src.id, StateDone, time.Minute)
}

// TestPushStallDoesNotHoldPull: a push makes a download and then only ever
// sends a piece it already gave (a stuck or hostile pusher). The download
// holds its pulls while the push brings pieces, not for as long as the
// pusher keeps repeating itself: it pulls the rest and finishes.
func TestPushStallDoesNotHoldPull(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "pusher", "holder", "dl")
	data, src := testFile(t, 2<<20, 16)
	(&testServer{sources: []pieceSource{src}}).register(nodes[1])
	holders := []mesh.ID{nodes[1].ID()}
	dir := t.TempDir()
	d := startDownloads(t, nodes[2], dir, openTestDB(t, filepath.Join(dir, "db")), func(MD5) []mesh.ID { return holders },
		func(c *DownloadsConfig, _ *downloads) { c.PushHold = time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sink, err := d.pushSink(ctx, nodes[0].ID(), offer{ID: src.id, Name: "pushed.bin", Manifest: src.man})
	if err != nil {
		t.Fatal(err)
	}
	piece0 := data[:src.man.PieceLen(0)]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if err := sink.putPiece(ctx, "", 0, piece0); err != nil {
				t.Errorf("put piece 0: %v", err)
				return
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	defer wg.Wait()
	defer close(stop)
	tr := waitState(t, d.downloads, src.id, StateDone, 45*time.Second)
	if got := fileMD5(t, tr.Path); got != src.id {
		t.Fatalf("finished file md5 %s, want %s", got, src.id)
	}
}

// TestDownloadHolderLookups: the catalog lookup of a resource's holders
// (in the Service: every online catalog brought up to date and merged, a
// hundred thousand entries on a large mesh) is made about once per
// HaveInterval, not once per verified piece.
func TestDownloadHolderLookups(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	_, src := testFile(t, 16<<20, 17)
	(&testServer{sources: []pieceSource{src}}).register(nodes[0])
	var lookups atomic.Int64
	holders := func(MD5) []mesh.ID {
		lookups.Add(1)
		return nodeIDs(nodes[0])
	}
	dir := t.TempDir()
	d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), holders,
		func(c *DownloadsConfig, _ *downloads) { c.HaveInterval = time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	if _, err := d.fetch(ctx, Link{ID: src.id, Name: "many.bin"}); err != nil {
		t.Fatal(err)
	}
	waitState(t, d.downloads, src.id, StateDone, time.Minute)
	// One lookup on fetch, one for the manifest, then one per interval:
	// however long the download took on a busy machine.
	limit := 3 + int64(time.Since(start)/time.Second)
	if n, pieces := lookups.Load(), src.man.NumPieces(); n > limit {
		t.Fatalf("%d holder lookups for %d pieces, want at most %d", n, pieces, limit)
	}
}
