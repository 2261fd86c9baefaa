package shards

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestPushTwelveDefaultLinkLimits pushes a 16 MiB file from a source to
// twelve receivers whose mesh keeps its default link limits (TargetPeers
// 4, HighPeers 8) and its own overlay links: the matrix needs every
// receiver linked to the eleven others and the source, beyond HighPeers,
// which the push's temporary links may go (mesh Config.MaxTemporary).
// One receiver leaves half-way; the eleven others end with the file, and
// the source uploads at most 1.1x the file.
func TestPushTwelveDefaultLinkLimits(t *testing.T) {
	checkPushGoroutines(t)
	raceOneProc(t)
	synctest.Test(t, pushTwelveDefaultLinkLimits)
}

func pushTwelveDefaultLinkLimits(t *testing.T) {
	const size = 16 << 20
	want := randomFile(12, size)
	nw := meshtest.NewNetwork()
	cfg := DefaultPushConfig()
	cfg.Repair = 100 * time.Millisecond
	cfg.GoneAfter = 2 * time.Second // the leaver's: it fails every call at once
	peers := pushNetWith(t, nw, 13, want, cfg, 0, nil, func(c *mesh.Config) {
		meshtest.Fast(c) // the overlay links up within a second; link limits stay the defaults
	})
	src, recv := peers[0], peers[1:]
	src.p.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	d := mesh.DefaultConfig()
	// The overlay fills first, so that its links take up the budget the
	// push must live with.
	testutil.WaitFor(t, 30*time.Second, "the overlay to link every node", func() bool {
		for _, pp := range peers {
			if len(pp.node.Peers()) < d.LowPeers {
				return false
			}
		}
		return true
	})
	for _, pp := range recv {
		pp.p.cfg.Accept = AcceptFrom(src.node.ID())
	}
	lim := rate.NewLimiter(rate.Limit(8<<20), BlockSize)
	src.p.waitUpload = func(ctx context.Context, n int) error { return lim.WaitN(ctx, n) }
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pid, err := src.p.push(ctx, src.src.id, ids(recv), PlanMatrix, "file.bin")
	if err != nil {
		t.Fatal(err)
	}
	leaver := recv[5]
	testutil.WaitFor(t, 2*time.Minute, "the leaver to hold half the file", func() bool {
		s := leaver.getSink()
		return s != nil && s.count() >= src.src.m.NumPieces()/2
	})
	// The budget is what it was made for: every node holds more links
	// than HighPeers now, and none more than HighPeers are ordinary.
	over := 0
	for k, pp := range peers {
		ps := pp.node.Peers()
		ordinary := 0
		for _, pi := range ps {
			if !pi.Temporary {
				ordinary++
			}
		}
		if len(ps) > d.HighPeers {
			over++
		}
		if ordinary > d.HighPeers || len(ps) > d.HighPeers+d.MaxTemporary {
			t.Errorf("node %d holds %d links, %d ordinary", k, len(ps), ordinary)
		}
	}
	if over == 0 {
		t.Error("no node went beyond HighPeers: the test does not test the budget")
	}
	nw.Kill(leaver.node.ID())
	testutil.WaitFor(t, 2*time.Minute, "the push to end", func() bool {
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
		if s := pp.getSink(); !s.whole(src.src.id) {
			t.Errorf("receiver %d (opened %d) is not whole; status %+v", k, pp.opened.Load(), r)
		}
		if r.State != "done" || r.Have != size {
			t.Errorf("receiver %d: status %+v", k, r)
		}
	}
	t.Logf("the source uploaded %.3fx the file", float64(st.Uploaded)/size)
	if st.Uploaded > size*11/10 {
		t.Errorf("the source uploaded %.3fx the file (at most 1.1x)", float64(st.Uploaded)/size)
	}
}

// testWriter writes log lines to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}

// TestPushSpanBoundedLinks pushes a 2 MiB file to forty receivers with the
// span plan and the mesh's default link limits (HighPeers 8, MaxTemporary
// 32: forty links a node at most). The source links to the first group
// only, at most spanGroup receivers, and reaches the others through it
// (pushroute.go); each receiver exchanges pieces with its group (eight at
// most), the previous group's owners of its stripes and the next
// group's, and repairs come from its group first, then the group before;
// so it holds at most 3·spanGroup+1 links whatever N (the matrix: N-1 and
// the source, beyond the budget at N = 40). One receiver leaves half-way;
// the others end with the file, and the source uploads at most 1.1x the
// file. With CATNEST_LONG_TESTS=1 it runs with a hundred receivers too.
func TestPushSpanBoundedLinks(t *testing.T) {
	sizes := []int{40}
	if os.Getenv("CATNEST_LONG_TESTS") != "" {
		sizes = append(sizes, 100)
	}
	for _, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			checkPushGoroutines(t)
			raceOneProc(t)
			synctest.Test(t, func(t *testing.T) { pushSpanBoundedLinks(t, n) })
		})
	}
}

func pushSpanBoundedLinks(t *testing.T, n int) {
	const size = 2 << 20
	want := randomFile(13, size)
	nw := meshtest.NewNetwork()
	nw.ShareSignatureChecks = true
	cfg := DefaultPushConfig()
	cfg.Repair = 100 * time.Millisecond
	cfg.GoneAfter = 3 * time.Second // the leaver's
	// No overlay: its links are TestPushTwelveDefaultLinkLimits's
	// subject; here they would only take the CPU of dozens of nodes
	// linking all they can. The budget is the default.
	began := time.Now()
	peers := pushNetWith(t, nw, n+1, want, cfg, 0, nil, func(c *mesh.Config) { c.ManualLinks = true })
	t.Logf("%d nodes started in %v", n+1, time.Since(began).Round(time.Millisecond))
	src, recv := peers[0], peers[1:]
	src.p.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	d := mesh.DefaultConfig()
	// As users set it up (--accept-push SOURCE): the receivers take
	// pushes from the source alone, and still take its offers through
	// the members before them, signed by the source.
	for _, pp := range recv {
		pp.p.cfg.Accept = AcceptFrom(src.node.ID())
	}
	if f := os.Getenv("PUSH_DEBUG_LOG"); f != "" {
		w, _ := os.Create(f)
		defer w.Close()
		for k, pp := range peers {
			pp.p.log = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", k)
		}
	}
	lim := rate.NewLimiter(rate.Limit(4<<20), BlockSize)
	src.p.waitUpload = func(ctx context.Context, n int) error { return lim.WaitN(ctx, n) }
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The most links the source holds at any time, sampled.
	var srcLinks atomic.Int32
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if l := int32(len(src.node.Peers())); l > srcLinks.Load() {
				srcLinks.Store(l)
			}
			select {
			case <-tick.C:
			case <-stop:
				return
			}
		}
	}()
	stopSampling := sync.OnceFunc(func() { close(stop); <-sampled })
	defer stopSampling()
	start := time.Now()
	pid, err := src.p.push(ctx, src.src.id, ids(recv), PlanSpan, "file.bin")
	if err != nil {
		t.Fatal(err)
	}
	// It leaves as soon as it holds half the file (killed from the poll
	// itself: pieces come in bursts, and a moment later it could be
	// whole).
	leaver := recv[10]
	testutil.WaitFor(t, 2*time.Minute, "the leaver to hold half the file", func() bool {
		s := leaver.getSink()
		if s == nil || s.count() < src.src.m.NumPieces()/2 {
			return false
		}
		nw.Kill(leaver.node.ID())
		return true
	})
	// Its group (7), the group before (its owners, and repairs when its
	// own group holds nothing to repair from: 8), the group after (its
	// owner, and repairs it serves: 8), and the source: 25. Repair falls
	// back to any holder when those fail, and routes skip a failing
	// group, so a loaded machine has shown 27; a matrix needs N-1 = 39.
	const spanLinks = 4 * spanGroup
	most := 0
	for k, pp := range recv {
		l := len(pp.node.Peers())
		most = max(most, l)
		if l > spanLinks {
			t.Errorf("receiver %d holds %d links, want at most %d", k, l, spanLinks)
		}
	}
	t.Logf("at half-way (%v) a receiver holds at most %d links (budget %d)", time.Since(start).Round(time.Millisecond), most, d.HighPeers+d.MaxTemporary)
	st := pushDone(t, src, pid, 2*time.Minute)
	t.Logf("the push ended after %v", time.Since(start).Round(time.Millisecond))
	checkAllWhole(t, src, recv, st, size, leaver)
	stopSampling()
	t.Logf("the source held at most %d links", srcLinks.Load())
	if l := int(srcLinks.Load()); l > spanGroup {
		t.Errorf("the source held %d links, want at most %d (the first group)", l, spanGroup)
	}
}
