package shards

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
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

// TestDownloadThreeHolders: a 24 MiB file from three holders at once: every
// holder sends pieces, the transfer reports each one's share, and the
// finished file is the resource.
func TestDownloadThreeHolders(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "h1", "h2", "h3", "dl")
	data, src := testFile(t, 24<<20, 1)
	servers := make([]*testServer, 3)
	for i := range servers {
		// A cap per holder, so that no one holder is done before the
		// others have linked: each must be drawn from.
		servers[i] = &testServer{sources: []pieceSource{src}, limit: rate.NewLimiter(rate.Limit(8<<20), BlockSize)}
		servers[i].register(nodes[i])
	}
	holders := nodeIDs(nodes[:3]...)
	dir := t.TempDir()
	d := startDownloads(t, nodes[3], dir, openTestDB(t, filepath.Join(dir, "db")), func(MD5) []mesh.ID { return holders }, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tr, err := d.fetch(ctx, Link{ID: src.id, Name: "three.bin"})
	if err != nil {
		t.Fatal(err)
	}
	if tr.State != StateDownloading {
		t.Fatalf("state %s", tr.State)
	}
	tr = waitState(t, d.downloads, src.id, StateDone, time.Minute)
	if got := fileMD5(t, tr.Path); got != src.id {
		t.Fatalf("finished file md5 %s, want %s", got, src.id)
	}
	if tr.Have != int64(len(data)) || tr.Path != filepath.Join(dir, "downloads", "three.bin") {
		t.Fatalf("transfer %+v", tr)
	}
	var total int64
	for i, s := range servers {
		if s.served.Load() == 0 || tr.Sources[holders[i]] == 0 {
			t.Errorf("holder %d sent %d bytes, %d counted", i, s.served.Load(), tr.Sources[holders[i]])
		}
		total += tr.Sources[holders[i]]
	}
	if total != int64(len(data)) {
		t.Errorf("sources add up to %d, want %d", total, len(data))
	}
	if _, err := os.Stat(partPath(dir, src.id)); !os.IsNotExist(err) {
		t.Errorf("part file left behind: %v", err)
	}
}

// TestDownloadLiar: one of three holders flips a byte in every block. The
// download completes from the honest two with the right MD5, no piece that
// fails its MD5 is ever written, and the liar is banned for the resource
// and scored down in the mesh.
func TestDownloadLiar(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "liar", "h2", "h3", "dl")
	_, src := testFile(t, 16<<20, 2)
	liar := &testServer{sources: []pieceSource{src}, corrupt: true}
	liar.register(nodes[0])
	for _, n := range nodes[1:3] {
		(&testServer{sources: []pieceSource{src}, limit: rate.NewLimiter(rate.Limit(4<<20), BlockSize)}).register(n)
	}
	holders := nodeIDs(nodes[:3]...)
	dir := t.TempDir()
	var badWrites atomic.Int64
	d := startDownloads(t, nodes[3], dir, openTestDB(t, filepath.Join(dir, "db")), func(MD5) []mesh.ID { return holders },
		func(_ *DownloadsConfig, d *downloads) {
			d.afterWrite = func(id MD5, piece int, data []byte) {
				if !src.man.Verify(piece, data) {
					badWrites.Add(1)
				}
			}
		})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The link names the liar: it is asked first.
	if _, err := d.fetch(ctx, src.link(nodes[0].ID(), "liar.bin")); err != nil {
		t.Fatal(err)
	}
	tr := waitState(t, d.downloads, src.id, StateDone, time.Minute)
	if got := fileMD5(t, tr.Path); got != src.id {
		t.Fatalf("finished file md5 %s, want %s", got, src.id)
	}
	if n := badWrites.Load(); n != 0 {
		t.Fatalf("%d corrupt pieces written", n)
	}
	if liar.served.Load() == 0 {
		t.Fatal("the liar was never asked: the test proves nothing")
	}
	dl := d.get(src.id)
	dl.mu.Lock()
	banned, bad, fromLiar := dl.banned[nodes[0].ID()], dl.bad[nodes[0].ID()], dl.sources[nodes[0].ID()]
	dl.mu.Unlock()
	if !banned || bad < d.cfg.MaxBadPieces || fromLiar != 0 {
		t.Fatalf("liar banned %v after %d bad pieces; %d bytes counted from it", banned, bad, fromLiar)
	}
	for _, p := range nodes[3].Peers() {
		if p.ID == nodes[0].ID() && p.Failures < d.cfg.MaxBadPieces {
			t.Errorf("the liar's link counts %d offences", p.Failures)
		}
	}
}

// TestDownloadResumeAfterCrash: the downloader dies half-way (its serve
// loop and node stop with no clean-up of its own, right after a piece was
// written and before its bit was committed); a new one on the same data
// dir and store finishes the file without fetching any piece again that
// the first had written.
// Into a user's folder (Link.Dir) the same: the part file there is found
// again (the record keeps the folder).
func TestDownloadResumeAfterCrash(t *testing.T) {
	t.Run("downloads", func(t *testing.T) { testResumeAfterCrash(t, false) })
	t.Run("dir", func(t *testing.T) { testResumeAfterCrash(t, true) })
}

func testResumeAfterCrash(t *testing.T, intoDir bool) {
	testutil.CheckGoroutines(t)
	nw, nodes := newTestNet(t, "holder", "first")
	_, src := testFile(t, 16<<20, 3)
	n := src.man.NumPieces()
	var mu sync.Mutex
	fetchedBy := make(map[mesh.ID]map[int]bool)
	srv := &testServer{sources: []pieceSource{src}, limit: rate.NewLimiter(rate.Limit(8<<20), BlockSize),
		onBlock: func(from mesh.ID, r blockReq) {
			mu.Lock()
			defer mu.Unlock()
			if fetchedBy[from] == nil {
				fetchedBy[from] = make(map[int]bool)
			}
			// A block may span pieces (ProtoSpan): every one it covers.
			last, _ := blockSpan(src.man, r)
			for i := int(r.Piece); i <= last; i++ {
				fetchedBy[from][i] = true
			}
		}}
	srv.register(nodes[0])
	holders := []mesh.ID{nodes[0].ID()}
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "db")
	db := openTestDB(t, dbPath)
	var written atomic.Int64
	var first *runningDownloads
	crashed := make(chan struct{})
	var once sync.Once
	first = startDownloads(t, nodes[1], dir, db, func(MD5) []mesh.ID { return holders }, func(_ *DownloadsConfig, d *downloads) {
		d.afterWrite = func(MD5, int, []byte) {
			if written.Add(1) >= int64(n/2) {
				once.Do(func() {
					first.stop() // dies here: this piece is on disk, its bit is not
					close(crashed)
				})
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l := src.link(nodes[0].ID(), "resume.bin")
	wantPart, wantDir := partPath(dir, src.id), filepath.Join(dir, "downloads")
	if intoDir {
		l.Dir = t.TempDir()
		wantPart, wantDir = filepath.Join(l.Dir, ".catnest-"+src.id.String()+".part"), l.Dir
	}
	if _, err := first.fetch(ctx, l); err != nil {
		t.Fatal(err)
	}
	select {
	case <-crashed:
	case <-ctx.Done():
		t.Fatal("the first downloader never got half-way")
	}
	<-first.done
	nw.Kill(nodes[1].ID())
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// What the first one left on disk that verifies.
	onDisk := make(map[int]bool)
	part, err := os.ReadFile(wantPart)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		off := src.man.PieceOffset(i)
		if src.man.Verify(i, part[off:off+src.man.PieceLen(i)]) {
			onDisk[i] = true
		}
	}
	if len(onDisk) < n/2 {
		t.Fatalf("%d of %d pieces on disk after the crash", len(onDisk), n)
	}

	second := nw.NewNode(t, "second")
	d := startDownloads(t, second, dir, openTestDB(t, dbPath), func(MD5) []mesh.ID { return holders }, nil)
	t.Cleanup(func() { d.db.Close() })
	tr := waitState(t, d.downloads, src.id, StateDone, time.Minute)
	if got := fileMD5(t, tr.Path); got != src.id {
		t.Fatalf("finished file md5 %s, want %s", got, src.id)
	}
	if filepath.Dir(tr.Path) != wantDir {
		t.Errorf("finished file at %s, want it in %s", tr.Path, wantDir)
	}
	if _, err := os.Stat(wantPart); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("part file %s after the end: %v", wantPart, err)
	}
	mu.Lock()
	defer mu.Unlock()
	again := 0
	for i := range fetchedBy[second.ID()] {
		if onDisk[i] {
			again++
		}
	}
	if again > 0 {
		t.Fatalf("the second downloader fetched %d of the %d pieces the first had written", again, len(onDisk))
	}
	if got, want := len(fetchedBy[second.ID()]), n-len(onDisk); got != want {
		t.Fatalf("the second downloader fetched %d pieces, want the %d missing", got, want)
	}
}

// TestReaderRemote: random seeks and reads over a resource that is still
// arriving return its bytes; a read in the middle of the file is served
// while most of the file is still missing, because the reader's pieces are
// fetched first.
func TestReaderRemote(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	data, src := testFile(t, 32<<20, 4)
	(&testServer{sources: []pieceSource{src}, limit: rate.NewLimiter(rate.Limit(4<<20), BlockSize)}).register(nodes[0])
	holders := []mesh.ID{nodes[0].ID()}
	dir := t.TempDir()
	d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), func(MD5) []mesh.ID { return holders }, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := d.open(ctx, src.id)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Size() != int64(len(data)) {
		t.Fatalf("size %d", c.Size())
	}
	// A read three quarters in, at once.
	mid := int64(len(data)) * 3 / 4
	if _, err := c.Seek(mid, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100<<10)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, data[mid:mid+int64(len(buf))]) {
		t.Fatal("wrong bytes at three quarters")
	}
	if tr := d.get(src.id).transfer(); tr.Have > int64(len(data))/2 {
		t.Fatalf("the read in the middle waited for %d of %d bytes", tr.Have, len(data))
	}
	rng := rand.New(rand.NewPCG(4, 4))
	for i := range 60 {
		off := rng.Int64N(int64(len(data)))
		n := rng.Int64N(600 << 10)
		whence := io.SeekStart
		want := off
		if i%3 == 1 { // from the end
			whence, off = io.SeekEnd, off-int64(len(data))
		}
		pos, err := c.Seek(off, whence)
		if err != nil || pos != want {
			t.Fatalf("seek %d: %d %v", off, pos, err)
		}
		got := make([]byte, n)
		k, err := io.ReadFull(c, got)
		end := min(want+n, int64(len(data)))
		if int64(k) != end-want || (err != nil && err != io.ErrUnexpectedEOF && err != io.EOF) {
			t.Fatalf("read %d at %d: %d bytes, %v", n, want, k, err)
		}
		if !bytes.Equal(got[:k], data[want:end]) {
			t.Fatalf("read %d at %d: wrong bytes", n, want)
		}
	}
	if _, err := c.Seek(-1, io.SeekStart); err == nil {
		t.Fatal("seek before the start accepted")
	}
	testutil.WaitFor(t, time.Minute, "the download to finish", func() bool { return d.get(src.id).transfer().State == StateDone })
}

// TestDownloadPauseResumeRemove: a paused download stops taking pieces and
// keeps them; resumed, it finishes; a removed one leaves no partial data,
// no record and an event.
func TestDownloadPauseResumeRemove(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	_, src := testFile(t, 8<<20, 5)
	_, other := testFile(t, 8<<20, 6)
	(&testServer{sources: []pieceSource{src, other}, limit: rate.NewLimiter(rate.Limit(4<<20), BlockSize)}).register(nodes[0])
	dir := t.TempDir()
	var afterPause atomic.Int64
	var paused atomic.Bool
	d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), nil, func(_ *DownloadsConfig, d *downloads) {
		d.afterWrite = func(id MD5, _ int, _ []byte) {
			if id == src.id && paused.Load() {
				afterPause.Add(1)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.fetch(ctx, src.link(nodes[0].ID(), "a.bin")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "some pieces", func() bool { return d.get(src.id).transfer().Have > 0 })
	if err := d.pause(ctx, src.id); err != nil {
		t.Fatal(err)
	}
	paused.Store(true)
	tr := d.get(src.id).transfer()
	if tr.State != StatePaused || tr.Have == 0 || tr.Have == tr.Size {
		t.Fatalf("after pause: %+v", tr)
	}
	// Another download runs meanwhile; the paused one must not move.
	if _, err := d.fetch(ctx, other.link(nodes[0].ID(), "b.bin")); err != nil {
		t.Fatal(err)
	}
	waitState(t, d.downloads, other.id, StateDone, time.Minute)
	if n := afterPause.Load(); n != 0 || d.get(src.id).transfer().Have != tr.Have {
		t.Fatalf("%d pieces written while paused", n)
	}
	paused.Store(false)
	if err := d.resume(ctx, src.id); err != nil {
		t.Fatal(err)
	}
	done := waitState(t, d.downloads, src.id, StateDone, time.Minute)
	if fileMD5(t, done.Path) != src.id {
		t.Fatal("wrong bytes after resume")
	}

	// Remove a download under way: its part file and record go.
	if err := os.Remove(done.Path); err != nil {
		t.Fatal(err)
	}
	if err := d.remove(ctx, src.id); err != nil {
		t.Fatal(err)
	}
	sub := d.events.Subscribe(16)
	defer sub.Close()
	if _, err := d.fetch(ctx, src.link(nodes[0].ID(), "a.bin")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "some pieces again", func() bool { return d.get(src.id).transfer().Have > 0 })
	if err := d.remove(ctx, src.id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(partPath(dir, src.id)); !os.IsNotExist(err) {
		t.Fatalf("part file after remove: %v", err)
	}
	for _, x := range d.transfers() {
		if x.ID == src.id {
			t.Fatalf("removed download still listed: %+v", x)
		}
	}
	recs, _, _, err := loadDownloads(d.db)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.ID == src.id {
			t.Fatal("removed download still stored")
		}
	}
	testutil.WaitFor(t, 10*time.Second, "a removed event", func() bool {
		for {
			select {
			case e := <-sub.C():
				if e.Removed != nil && *e.Removed == src.id {
					return true
				}
			default:
				return false
			}
		}
	})
	if err := d.pause(ctx, src.id); !errors.Is(err, ErrUnknown) {
		t.Fatalf("pause of a removed download: %v", err)
	}
}
