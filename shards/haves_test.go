package shards

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// haveNet is a downloader linked to a holder and to peers that hold
// nothing, on meshtest, for the have-polling tests (run in a synctest
// bubble: the counts are over virtual time, which the machine's load does
// not move).
type haveNet struct {
	nw     *meshtest.Network
	d, h   *mesh.Node
	others []*mesh.Node
	asked  []*atomic.Int64 // have and manifest requests each of others got
	// gate, when set for others[k], makes it serve what serves[k] does;
	// until then it answers ErrUnknown, as a node without the resource.
	gate   []*atomic.Bool
	serves []*testServer
}

func newHaveNet(t *testing.T, others int, holder *testServer, serves func(k int) *testServer) *haveNet {
	t.Helper()
	manual := func(c *mesh.Config) {
		c.ManualLinks = true
		c.HighPeers = others + 8
	}
	hn := &haveNet{nw: meshtest.NewNetwork()}
	hn.d = hn.nw.NewNode(t, "downloader", meshtest.Options{Configure: manual})
	hn.h = hn.nw.NewNode(t, "holder", meshtest.Options{Configure: manual})
	holder.register(hn.h)
	ctx := t.Context()
	if err := hn.d.Connect(ctx, hn.h.ID()); err != nil {
		t.Fatal(err)
	}
	for k := range others {
		n := hn.nw.NewNode(t, fmt.Sprintf("other%d", k), meshtest.Options{Configure: manual})
		asked, gate := new(atomic.Int64), new(atomic.Bool)
		srv := serves(k)
		h := mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
			if m.Protocol == ProtoHave || m.Protocol == ProtoManifest {
				asked.Add(1)
			}
			if srv == nil || !gate.Load() {
				return nil, ErrUnknown
			}
			return srv.serveMesh(ctx, m)
		})
		for _, proto := range []string{ProtoManifest, ProtoHave, ProtoBlock, ProtoSpan} {
			n.Handle(proto, h)
		}
		if err := hn.d.Connect(ctx, n.ID()); err != nil {
			t.Fatal(err)
		}
		hn.others = append(hn.others, n)
		hn.asked = append(hn.asked, asked)
		hn.gate = append(hn.gate, gate)
		hn.serves = append(hn.serves, srv)
	}
	return hn
}

func (hn *haveNet) askedTotal() int64 {
	var n int64
	for _, a := range hn.asked {
		n += a.Load()
	}
	return n
}

// TestHavePollingBacksOff: 30 downloads on a node linked to 32 peers that
// hold none of them (and to their one, slow, holder) ask those peers for
// their haves ever more rarely, down to once per haveBackoffMax
// HaveIntervals each; before, each download asked each peer every 3
// HaveIntervals: in the 5 minutes counted, 48,000 requests where now
// at most 5,760 go. Each peer is still asked now and then (it may start
// downloading), and peers that leave leave no state behind.
func TestHavePollingBacksOff(t *testing.T) {
	raceOneProc(t)
	const nDownloads, others = 30, 32
	synctest.Test(t, func(t *testing.T) {
		holder := &testServer{limit: rate.NewLimiter(4<<10, 4<<10)}
		var links []Link
		for k := range nDownloads {
			_, src := testFile(t, 1<<20, byte(k+1))
			holder.sources = append(holder.sources, src)
			links = append(links, src.link("", fmt.Sprintf("f%d", k)))
		}
		hn := newHaveNet(t, others, holder, func(int) *testServer { return nil })
		// The holder serves blocks only once every download has its
		// manifest: the slow blocks of the first downloads would
		// otherwise fill its queue and keep the manifest from the
		// others, which then ask every peer for it (fetchManifest, not
		// the have polling counted here) for as long as the test runs.
		var open atomic.Bool
		gated := mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
			if !open.Load() {
				return nil, ErrUnknown
			}
			return holder.serveMesh(ctx, m)
		})
		hn.h.Handle(ProtoBlock, gated)
		hn.h.Handle(ProtoSpan, gated)
		for k := range links {
			links[k].Node = hn.h.ID()
		}
		dir := t.TempDir()
		db := openTestDB(t, filepath.Join(dir, "db"))
		t.Cleanup(func() { db.Close() })
		const interval = 2 * time.Second
		rd := startDownloads(t, hn.d, dir, db, func(MD5) []mesh.ID { return []mesh.ID{hn.h.ID()} }, func(c *DownloadsConfig, d *downloads) {
			c.HaveInterval = interval
			d.noLanes = true // md5-simd's pooled channels must not come from the bubble
		})
		for _, l := range links {
			if _, err := rd.fetch(t.Context(), l); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(time.Minute) // virtual: the holder answers at once
		for _, l := range links {
			dl := rd.get(l.ID)
			for {
				dl.mu.Lock()
				got := dl.man != nil
				dl.mu.Unlock()
				if got {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("download %s has no manifest after a minute", l.ID)
				}
				time.Sleep(interval)
			}
		}
		open.Store(true)
		// The backoff reaches its cap after 6+8+16+32+64 s.
		time.Sleep(3 * time.Minute)
		before := hn.askedTotal()
		const stretch = 5 * time.Minute
		time.Sleep(stretch)
		got := hn.askedTotal() - before
		pairs := int64(nDownloads * others)
		// Each pair is asked every haveBackoffMax intervals: 4.7
		// times in the stretch, 5 at most.
		most := pairs * int64(stretch/(haveBackoffMax*interval)+1)
		least := pairs * int64(stretch/(haveBackoffMax*interval)-1)
		t.Logf("%d have requests to %d non-holders from %d downloads in %v (%.1f/s; at most %d, at least %d)",
			got, others, nDownloads, stretch, float64(got)/stretch.Seconds(), most, least)
		if got > most {
			t.Errorf("%d have requests in %v, want at most %d", got, stretch, most)
		}
		if got < least {
			t.Errorf("%d have requests in %v, want at least %d: peers must still be asked now and then", got, stretch, least)
		}
		for _, l := range links {
			if tr := rd.get(l.ID).transfer(); tr.State != StateDownloading {
				t.Fatalf("download %s is %s, want it still downloading (the holder is slow)", l.ID, tr.State)
			}
		}

		// Half the peers leave: the downloads forget them.
		for _, n := range hn.others[:others/2] {
			hn.nw.Kill(n.ID())
		}
		time.Sleep(haveBackoffMax*interval + 2*interval)
		for _, l := range links {
			dl := rd.get(l.ID)
			dl.mu.Lock()
			n := len(dl.idle)
			dl.mu.Unlock()
			if n > 1+others/2 {
				t.Errorf("download %s keeps %d idle peers after half of %d left, want at most %d", l.ID, n, others, 1+others/2)
			}
		}
	})
}

// TestHavePollingBackedOffPeerFetching: a peer that held none of a
// resource, and so is asked only once a minute, starts fetching pieces of
// it from this node; it is asked for its have again at once, and the
// download fetches from it.
func TestHavePollingBackedOffPeerFetching(t *testing.T) {
	raceOneProc(t)
	synctest.Test(t, func(t *testing.T) {
		_, src := testFile(t, 16<<20, 9)
		holder := &testServer{sources: []pieceSource{src}, limit: rate.NewLimiter(32<<10, 16<<10)}
		hn := newHaveNet(t, 1, holder, func(int) *testServer { return &testServer{sources: []pieceSource{src}} })
		dir := t.TempDir()
		db := openTestDB(t, filepath.Join(dir, "db"))
		t.Cleanup(func() { db.Close() })
		const interval = 2 * time.Second
		rd := startDownloads(t, hn.d, dir, db, func(MD5) []mesh.ID { return []mesh.ID{hn.h.ID()} }, func(c *DownloadsConfig, d *downloads) {
			c.HaveInterval = interval
			d.noLanes = true // md5-simd's pooled channels must not come from the bubble
		})
		// The downloader serves what it has, as a Service does.
		(&testServer{sources: []pieceSource{rd.downloads}}).register(hn.d)
		l := src.link(hn.h.ID(), "big.bin")
		if _, err := rd.fetch(t.Context(), l); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Minute) // the peer's backoff is at its cap
		// Right after one ask, the next is a minute away.
		n0 := hn.asked[0].Load()
		for hn.asked[0].Load() == n0 {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(10 * time.Millisecond)
		n1 := hn.asked[0].Load()
		dl := rd.get(l.ID)
		dl.mu.Lock()
		piece := -1
		for i := range dl.man.NumPieces() {
			if dl.have.Has(i) {
				piece = i
				break
			}
		}
		dl.mu.Unlock()
		if piece < 0 {
			t.Fatal("the downloader holds no piece after 3 minutes")
		}
		hn.gate[0].Store(true)
		req := blockReq{ID: l.ID, Piece: uint32(piece), Len: uint32(src.man.PieceLen(piece))}
		if _, err := hn.others[0].Request(t.Context(), hn.d.ID(), ProtoBlock, encodeBlockReq(req), mesh.OverBulk()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(interval)
		if n := hn.asked[0].Load(); n == n1 {
			t.Fatalf("the peer fetched a block and was not asked for its have within %v (asked %d times before)", interval, n1)
		}
		deadline := time.Now().Add(time.Minute)
		for {
			dl.mu.Lock()
			got := dl.sources[hn.others[0].ID()]
			dl.mu.Unlock()
			if got > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the download fetched nothing from the peer once it held the file")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// TestPartFileErrorOnePrefix: a part file that cannot be made fails the
// download with an error that says "shards: " once (it read "shards:
// shards: …").
func TestPartFileErrorOnePrefix(t *testing.T) {
	dir := t.TempDir()
	// The part files' folder is a file: the part file cannot be made.
	if err := os.WriteFile(filepath.Join(dir, "shards"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	db := openTestDB(t, filepath.Join(dir, "db"))
	t.Cleanup(func() { db.Close() })
	d, err := newDownloads(DownloadsConfig{Dir: dir}, nil, db, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, src := testFile(t, 1<<20, 3)
	dl := d.newDownload(src.link("", "f.bin"))
	dl.setManifest(src.man, src.man.Hash())
	_, err = dl.openFile()
	if err == nil {
		t.Fatal("a part file was made in a folder that is a file")
	}
	if got := err.Error(); !strings.HasPrefix(got, "shards: ") || strings.Contains(got, "shards: shards:") {
		t.Fatalf("error %q, want one \"shards: \" prefix", got)
	}
}

// raceOneProc runs the rest of the test on one P when the race detector
// is on. Go 1.26's synctest runs a bubble's due timers under one race
// context (bubble.timers.raceCtx), from the bubble's root and from any
// bubbled goroutine that starts or reads a timer already due, on several
// threads at once: ThreadSanitizer's state for that context is corrupted
// and the process dies (SIGSEGV in its StackDepot, or "CHECK failed:
// tsan_rtl.cpp:346"), a bubble with a few hundred goroutines that start
// context deadlines and timers dies within a second. On one P no two
// threads run Go code at once; the detector still finds races, as it
// orders accesses by happens-before, not by time.
func raceOneProc(t *testing.T) {
	t.Helper()
	if !raceEnabled {
		return
	}
	prev := runtime.GOMAXPROCS(1)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
}

// TestHaveBackoffLongInterval: a peer that keeps answering that it does
// not have the resource waits at most haveBackoffMax HaveIntervals, and
// never less than before, however many times it answered so and whatever
// the interval: HaveInterval<<level overflowed past ~8.6 s intervals once
// level reached 30, and the peer was then asked every 3 intervals again.
func TestHaveBackoffLongInterval(t *testing.T) {
	for _, interval := range []time.Duration{time.Second, 10 * time.Second, time.Minute, time.Hour} {
		cfg := DownloadsConfig{HaveInterval: interval, RequestTimeout: 20 * time.Second}
		ip := new(idlePeer)
		no := fmt.Errorf("%w: %w", errNoPieces, &mesh.RemoteError{Msg: "unknown"})
		at := time.Unix(1e9, 0)
		var last time.Duration
		for k := range 200 {
			ip.ended(cfg, at, no)
			wait := ip.due(cfg, false).Sub(at)
			if wait < last || wait > haveBackoffMax*interval {
				t.Fatalf("interval %v, answer %d: wait %v after %v, want it to grow up to %v", interval, k+1, wait, last, haveBackoffMax*interval)
			}
			last = wait
		}
		if last != haveBackoffMax*interval {
			t.Errorf("interval %v: wait %v after 200 answers, want %v", interval, last, haveBackoffMax*interval)
		}
	}
}
