package shards

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// drained is a limiter of r bytes/s that starts empty: a slow holder that
// begins with a burst of free bytes would not be slow for the first blocks.
func drained(r float64, burst int) *rate.Limiter {
	l := rate.NewLimiter(rate.Limit(r), burst)
	l.AllowN(time.Now(), burst)
	return l
}

// TestDownloadSlowHolder: a holder whose upload is capped far below what
// one block per RequestTimeout needs (with blocks of a whole 64 KiB piece:
// 8 s a block at 8 KiB/s against a 3 s timeout, 2 s at 32 KiB/s against
// 1 s) still delivers: blocks shrink to the measured rate, every answer
// comes within the timeout, the download completes with the right MD5, and
// blocks are asked for about once (a request that timed out would be asked
// again, and its bytes served for nothing).
func TestDownloadSlowHolder(t *testing.T) {
	testutil.CheckGoroutines(t)
	tests := []struct {
		name    string
		rate    float64
		timeout time.Duration
		size    int
	}{
		{"8KiB/s", 8 << 10, 3 * time.Second, 96 << 10},
		{"32KiB/s", 32 << 10, time.Second, 256 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, nodes := newTestNet(t, "holder", "dl")
			_, src := testFile(t, tt.size, 21)
			srv := &testServer{sources: []pieceSource{src}, limit: drained(tt.rate, 4<<10)}
			srv.register(nodes[0])
			dir := t.TempDir()
			d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), nil,
				func(c *DownloadsConfig, _ *downloads) { c.RequestTimeout = tt.timeout })
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := d.fetch(ctx, src.link(nodes[0].ID(), "slow.bin")); err != nil {
				t.Fatal(err)
			}
			tr := waitState(t, d.downloads, src.id, StateDone, time.Minute)
			if got := fileMD5(t, tr.Path); got != src.id {
				t.Fatalf("finished file md5 %s, want %s", got, src.id)
			}
			// Each block is asked for about once. Not exactly once: on a
			// starved machine a block can still miss a 1 s timeout now and
			// then; before blocks followed the rate, every one did, and
			// the holder served the file many times over without end.
			if got := srv.served.Load(); got > 2*int64(tt.size) {
				t.Errorf("the holder served %d bytes for a file of %d: requests kept timing out and were asked again", got, tt.size)
			} else if got != int64(tt.size) {
				t.Logf("the holder served %d bytes for a file of %d (some requests timed out)", got, tt.size)
			}
		})
	}
}

// TestDownloadSeekSlowHolder: a reader seeks to a piece nobody has asked
// for while a holder capped at 32 KiB/s has the download's requests
// queued. The piece must come after about the blocks already on their way,
// not behind a queue of several hundred KiB (8 blocks of a 64 KiB piece,
// 16 s at that rate, when the depth was fixed): counted in bytes the holder
// served between the seek and the first block of that piece, at most 4
// seconds' worth at its rate. The read returns the piece's bytes.
func TestDownloadSeekSlowHolder(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	const cap = 32 << 10
	data, src := testFile(t, 2<<20, 22)
	var (
		mu     sync.Mutex
		target = -1
		ahead  = int64(-1) // bytes served after the seek before target's first block
		seekAt int64
	)
	srv := &testServer{sources: []pieceSource{src}, limit: drained(cap, 64<<10)}
	srv.onBlock = func(_ mesh.ID, r blockReq) {
		mu.Lock()
		defer mu.Unlock()
		if int(r.Piece) == target && ahead < 0 {
			ahead = srv.served.Load() - seekAt
		}
	}
	srv.register(nodes[0])
	dir := t.TempDir()
	d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.fetch(ctx, src.link(nodes[0].ID(), "seek.bin")); err != nil {
		t.Fatal(err)
	}
	dl := d.get(src.id)
	// Two pieces in: the pipeline has measured the holder's rate and is
	// in its steady state.
	testutil.WaitFor(t, 30*time.Second, "two pieces", func() bool {
		dl.mu.Lock()
		defer dl.mu.Unlock()
		return dl.man != nil && dl.have.Count() >= 2
	})
	// The last piece that is neither held nor asked for.
	dl.mu.Lock()
	m := dl.man
	for i := m.NumPieces() - 1; i >= 0 && target < 0; i-- {
		if !dl.have.Has(i) && dl.tries[i] == 0 {
			mu.Lock()
			target = i
			mu.Unlock()
		}
	}
	dl.mu.Unlock()
	if target < m.NumPieces()/2 {
		t.Fatalf("no piece left to seek to (target %d)", target)
	}
	c, err := d.open(ctx, src.id)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mu.Lock()
	seekAt = srv.served.Load()
	mu.Unlock()
	if _, err := c.Seek(m.PieceOffset(target), io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, m.PieceLen(target))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data[m.PieceOffset(target):m.PieceOffset(target)+m.PieceLen(target)]) {
		t.Fatal("the piece read after the seek is not the file's")
	}
	mu.Lock()
	defer mu.Unlock()
	if ahead < 0 {
		t.Fatal("the target piece was read without the holder serving it")
	}
	t.Logf("served %d KiB between the seek and piece %d's first block (%.1f s at %d KiB/s)", ahead>>10, target, float64(ahead)/cap, cap>>10)
	if ahead > 4*cap {
		t.Errorf("the seek waited behind %d KiB of queued blocks (%.1f s at %d KiB/s), want at most %d KiB",
			ahead>>10, float64(ahead)/cap, cap>>10, 4*cap>>10)
	}
}

// TestDownloadBudget: 20 downloads at once from two holders, with a
// node-wide budget of 1 MiB of piece buffers (16 pieces of 64 KiB, where
// 40 peer loops would each hold up to 16 without it). All complete with the
// right MD5; the piece buffers held at once, sampled throughout, and the
// budget's own peak stay within it; at the end nothing is held.
func TestDownloadBudget(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "h1", "h2", "dl")
	const nFiles, limit = 20, 1 << 20
	var srcs []pieceSource
	var files []*readerSource
	for i := range nFiles {
		_, src := testFile(t, 2<<20, byte(100+i))
		srcs, files = append(srcs, src), append(files, src)
	}
	for _, n := range nodes[:2] {
		(&testServer{sources: srcs, limit: rate.NewLimiter(rate.Limit(8<<20), BlockSize)}).register(n)
	}
	holders := nodeIDs(nodes[:2]...)
	dir := t.TempDir()
	d := startDownloads(t, nodes[2], dir, openTestDB(t, filepath.Join(dir, "db")), func(MD5) []mesh.ID { return holders },
		func(c *DownloadsConfig, d *downloads) {
			c.MaxBuffered = limit
			d.budget = newBudget(limit, c.RequestTimeout)
		})
	// held is what the downloads' attempts hold in piece buffers now,
	// every download locked at once so that the sum is of one moment (an
	// attempt ends and another starts under one download's lock; no code
	// holds two).
	held := func() int64 {
		d.mu.Lock()
		dls := make([]*download, 0, len(d.all))
		for _, dl := range d.all {
			dls = append(dls, dl)
		}
		d.mu.Unlock()
		for _, dl := range dls {
			dl.mu.Lock()
		}
		var n int64
		for _, dl := range dls {
			for _, p := range dl.peers {
				if dl.man != nil {
					n += int64(len(p.attempts)) * dl.man.PieceSize
				}
			}
		}
		for _, dl := range dls {
			dl.mu.Unlock()
		}
		return n
	}
	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var once sync.Once
	halt := func() { once.Do(func() { close(stop) }); wg.Wait() }
	defer halt()
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if h := held(); h > peak.Load() {
				peak.Store(h)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i, src := range files {
		if _, err := d.fetch(ctx, src.link(holders[i%2], fmt.Sprintf("f%d.bin", i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, src := range files {
		tr := waitState(t, d.downloads, src.id, StateDone, 2*time.Minute)
		if got := fileMD5(t, tr.Path); got != src.id {
			t.Fatalf("%s: finished file md5 %s", src.id, got)
		}
	}
	halt()
	used, budgetPeak := d.budget.stats()
	t.Logf("piece buffers held at once: %d KiB sampled, %d KiB by the budget (limit %d KiB)", peak.Load()>>10, budgetPeak>>10, limit>>10)
	if peak.Load() > limit || budgetPeak > limit {
		t.Errorf("held %d bytes of piece buffers at once (the budget saw %d), limit %d", peak.Load(), budgetPeak, limit)
	}
	if used != 0 {
		t.Errorf("%d bytes still taken from the budget after every download ended", used)
	}
}

// TestDownloadSameNameAtOnce: 24 downloads of different files with one name
// finish at about the same time. Each must end in a file of its own
// ("same.bin", "same (2).bin", ...) holding its own bytes: a name picked as
// free and then renamed onto by another download finishing at the same
// moment would leave one transfer pointing at the other's file.
func TestDownloadSameNameAtOnce(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	const n = 24
	var srcs []pieceSource
	var files []*readerSource
	for i := range n {
		_, src := testFile(t, 256<<10, byte(200+i))
		srcs, files = append(srcs, src), append(files, src)
	}
	// A cap, so that the downloads go on side by side and end together.
	(&testServer{sources: srcs, limit: rate.NewLimiter(rate.Limit(8<<20), BlockSize)}).register(nodes[0])
	dir := t.TempDir()
	d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, src := range files {
		if _, err := d.fetch(ctx, src.link(nodes[0].ID(), "same.bin")); err != nil {
			t.Fatal(err)
		}
	}
	paths := make(map[string]MD5)
	for _, src := range files {
		tr := waitState(t, d.downloads, src.id, StateDone, time.Minute)
		if other, ok := paths[tr.Path]; ok {
			t.Errorf("%s and %s both finished at %s", other, src.id, tr.Path)
		}
		paths[tr.Path] = src.id
		if got := fileMD5(t, tr.Path); got != src.id {
			t.Errorf("%s: the file at %s has md5 %s", src.id, tr.Path, got)
		}
	}
}

// TestDownloadBudgetFair: a long download (12 MiB) fills the node's budget
// of piece buffers (4 pieces; its pipeline wants more), then a short one
// (1 MiB) starts. The short one must be served while the long one still
// runs: bytes go to the loops that wait for them first, not back to the
// loop that just gave them back, which would keep the short one waiting
// until the long one ended.
func TestDownloadBudgetFair(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newTestNet(t, "holder", "dl")
	_, long := testFile(t, 12<<20, 31)
	_, short := testFile(t, 1<<20, 32)
	// One holder, 2 MiB/s in all: the long download takes about 6 s.
	(&testServer{sources: []pieceSource{long, short}, limit: rate.NewLimiter(rate.Limit(2<<20), 64<<10)}).register(nodes[0])
	const limit = 4 * MinPieceSize
	dir := t.TempDir()
	d := startDownloads(t, nodes[1], dir, openTestDB(t, filepath.Join(dir, "db")), nil,
		func(c *DownloadsConfig, d *downloads) {
			c.MaxBuffered = limit
			d.budget = newBudget(limit, c.RequestTimeout)
		})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.fetch(ctx, long.link(nodes[0].ID(), "long.bin")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the long download to fill the budget", func() bool {
		used, _ := d.budget.stats()
		tr := d.get(long.id).transfer()
		return used == limit && tr.Have >= 1<<20
	})
	if _, err := d.fetch(ctx, short.link(nodes[0].ID(), "short.bin")); err != nil {
		t.Fatal(err)
	}
	waitState(t, d.downloads, short.id, StateDone, time.Minute)
	if tr := d.get(long.id).transfer(); tr.State != StateDownloading {
		t.Errorf("the short download ended only after the long one (%s, %d of %d bytes)", tr.State, tr.Have, tr.Size)
	}
	waitState(t, d.downloads, long.id, StateDone, time.Minute)
	if used, _ := d.budget.stats(); used != 0 {
		t.Errorf("%d bytes still taken from the budget", used)
	}
}
