package shards

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// trickleNet is thirty trickling holders (trickler: one block of each
// resource every three quarters of RequestTimeout, never stalled, a piece
// taking them a minute and more) and two honest holders, each honest
// upload capped at capRate, and a downloader with a budget of 8 pieces.
// Node ids cost nothing, so a hostile party can bring thirty holders.
//
// shared: the tricklers hold files[0] (2 MiB), which honest1 holds too,
// but only once honestToo is set (before, it would serve it at once);
// else each trickler is the only holder of a file of its own. later is a
// file of honest2's.
type trickleNet struct {
	d                 *runningDownloads
	honest1, honest2  *mesh.Node
	tricklers         []*mesh.Node
	files             []*readerSource
	later             *readerSource
	honestToo         atomic.Bool
	limit             int64
	timeout, every    time.Duration
	capRate           float64
	shared            bool
	laterSize, nFiles int
	logs              lineLog // the downloader's log
}

// lineLog keeps the lines of a log that name the honest holders.
type lineLog struct {
	mu    sync.Mutex
	keep  []string
	lines []string
}

func (l *lineLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) < 200 && slices.ContainsFunc(l.keep, func(k string) bool { return strings.Contains(string(b), k) }) {
		l.lines = append(l.lines, string(b))
	}
	return len(b), nil
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "")
}

const nTricklers = 30

// quietMesh keeps the mesh's own pace (links looked after every 2 s) and
// refreshes records every few minutes, not 20 s: the downloads here find
// holders by holdersOf, not the directory. At meshtest.Fast's pace the
// chatter of 33 nodes took three quarters of the test's CPU (16.5 CPU-s
// for the shared case under -race, 3.9 at the mesh's pace), more than a
// loaded machine gave it, and every request, honest ones too, ran past
// RequestTimeout. At the mesh's pace the directory's records (each of
// 33 nodes checking the signature of each record) still took 38% of it;
// beside eight busy loops on its core the test process had about a fifth
// of a CPU, the honest download's manifest took 5-14 s, the have ask and
// link 15-19 s, and an honest holder's blocks came more than
// RequestTimeout apart (its part ended "stopped answering"), while the
// budget's line had no honest loop in it.
func quietMesh(c *mesh.Config) {
	c.MaintainInterval = 2 * time.Second
	c.RecordRefresh = 5 * time.Minute
}

func newTrickleNet(tb testing.TB, shared bool, laterSize int, capRate float64) *trickleNet {
	tb.Helper()
	tn := &trickleNet{limit: 8 * MinPieceSize, timeout: 8 * time.Second, capRate: capRate, shared: shared, laterSize: laterSize}
	tn.every = tn.timeout * 3 / 4
	// Thirty: a node links to at most HighPeers + MaxTemporary (40)
	// others, and the honest holders need links too.
	names := []string{"honest1", "honest2", "dl"}
	for i := range nTricklers {
		names = append(names, fmt.Sprintf("trickler%d", i))
	}
	nw := meshtest.NewNetwork()
	nw.ShareSignatureChecks = true // each record checked once, not by 33 nodes (quietMesh)
	nodes := make([]*mesh.Node, len(names))
	for i, name := range names {
		nodes[i] = nw.NewNode(tb, name, meshtest.Options{Configure: quietMesh})
	}
	tn.honest1, tn.honest2, tn.tricklers = nodes[0], nodes[1], nodes[3:]
	tn.nFiles = 1
	if !shared {
		tn.nFiles = nTricklers
	}
	for i := range tn.nFiles {
		size := 1 << 20
		if shared {
			size = 2 << 20 // 32 pieces: every trickler has one to take
		}
		_, src := testFile(tb, size, byte(70+i))
		tn.files = append(tn.files, src)
	}
	_, tn.later = testFile(tb, laterSize, 69)
	for i, n := range tn.tricklers {
		own := tn.files[0]
		if !shared {
			own = tn.files[i]
		}
		(&trickler{srv: &testServer{sources: []pieceSource{own}}, every: tn.every}).register(tb, n)
	}
	capped := func() *rate.Limiter { return rate.NewLimiter(rate.Limit(capRate), BlockSize) }
	if shared {
		(&testServer{sources: []pieceSource{tn.files[0]}, limit: capped()}).register(tn.honest1)
	}
	(&testServer{sources: []pieceSource{tn.later}, limit: capped()}).register(tn.honest2)
	holdersOf := func(id MD5) []mesh.ID {
		if id == tn.later.id {
			return nodeIDs(tn.honest2)
		}
		if i := slices.IndexFunc(tn.files, func(src *readerSource) bool { return src.id == id }); !shared && i >= 0 {
			return nodeIDs(tn.tricklers[i])
		}
		if tn.honestToo.Load() {
			return append(nodeIDs(tn.tricklers...), tn.honest1.ID())
		}
		return nodeIDs(tn.tricklers...)
	}
	tn.logs.keep = []string{tn.honest1.ID().Short(), tn.honest2.ID().Short()}
	dir := tb.TempDir()
	tn.d = startDownloads(tb, nodes[2], dir, openTestDB(tb, filepath.Join(dir, "db")), holdersOf,
		func(c *DownloadsConfig, d *downloads) {
			c.MaxBuffered, c.RequestTimeout = tn.limit, tn.timeout
			d.budget = newBudget(tn.limit, c.RequestTimeout)
			d.log = slog.New(slog.NewTextHandler(&tn.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		})
	return tn
}

// trickle fetches the tricklers' files and waits until the tricklers hold
// a quarter of the budget or more, twice the slow loops' reserve (all of
// it, with whole pieces charged up front; now slow loops that a faster one
// waits on give back their dawdling pieces, so what they hold goes up and
// down).
func (tn *trickleNet) trickle(tb testing.TB, ctx context.Context) {
	tb.Helper()
	for i, src := range tn.files {
		if _, err := tn.d.fetch(ctx, src.link(tn.tricklers[i].ID(), fmt.Sprintf("f%d.bin", i))); err != nil {
			tb.Fatal(err)
		}
	}
	// Setup, not what is tested: thirty downloads dial their holders and
	// ask every linked peer for a have, which took more than a minute at
	// CI's load.
	testutil.WaitFor(tb, 3*time.Minute, "the tricklers to hold a quarter of the budget", func() bool {
		return tn.trickled() >= tn.limit/4
	})
}

// trickled is what the tricklers hold of the budget now.
func (tn *trickleNet) trickled() int64 {
	b := tn.d.budget
	b.mu.Lock()
	defer b.mu.Unlock()
	var held int64
	for _, n := range tn.tricklers {
		held += b.byPeer[n.ID()]
	}
	return held
}

// standing says where dl stands with holder h: its manifest, why it
// waits, and h's part in it (or its backoff if it has none), for a
// failure's message.
func (tn *trickleNet) standing(dl *download, h mesh.ID) string {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	s := fmt.Sprintf("manifest %v, waiting %q, %d peers", dl.man != nil, dl.waiting, len(dl.peers))
	if p := dl.peers[h]; p != nil {
		s += fmt.Sprintf("; its holder has %d pieces, fetches %d, in the budget's line %v, gave up %d", p.has.Count(), len(p.attempts), p.wait.queued, len(p.gaveUp))
	} else if ip := dl.idle[h]; ip != nil {
		s += fmt.Sprintf("; its holder idle since %v, level %d, due in %v", time.Since(ip.at).Round(time.Millisecond), ip.level, time.Until(ip.due(dl.d.cfg, true)).Round(time.Millisecond))
	} else {
		s += "; its holder not asked yet"
	}
	return s
}

// served are the downloads honest holders serve.
func (tn *trickleNet) served() []*readerSource {
	if tn.shared {
		return []*readerSource{tn.later, tn.files[0]}
	}
	return []*readerSource{tn.later}
}

// pieceTrickled reports whether a trickler has brought a whole piece.
func (tn *trickleNet) pieceTrickled() bool {
	for _, src := range tn.files {
		tr := tn.d.get(src.id).transfer()
		for _, n := range tn.tricklers {
			if tr.Sources[n.ID()] > 0 {
				return true
			}
		}
	}
	return false
}

// TestDownloadManyTricklers: thirty trickling holders took a piece's
// buffer each (a whole piece charged before its first byte), so budget ÷
// piece size of them (8 here, 64 with 512 KiB pieces and the default
// budget) held the whole budget, and a download from an honest holder
// waited for a trickled piece to be done: a minute or more. Now a peer is
// charged by the block, as it is asked for; a slow one's loops go after
// the others, and what they hold beyond an eighth of the budget they give
// back when others wait.
//
// Two ways: the thirty hold a file along with an honest holder, or each
// is the only holder of a file of its own. Either way, once they hold a
// quarter of the budget or more, a download from another honest holder (2 MiB, 32
// pieces), and the first file where an honest holder has it, must finish
// before any trickler has brought a whole piece (8 blocks or more at one
// per 6 s: 48 s or more); the budget is never exceeded, and comes back to
// zero once the downloads are removed.
func TestDownloadManyTricklers(t *testing.T) {
	testutil.CheckGoroutines(t)
	for _, shared := range []bool{true, false} {
		name := "thirty tricklers and an honest holder of one file"
		if !shared {
			name = "thirty tricklers each the only holder of a file"
		}
		t.Run(name, func(t *testing.T) {
			testutil.CheckGoroutines(t)
			tn := newTrickleNet(t, shared, 2<<20, 8<<20)
			d := tn.d
			ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
			defer cancel()
			tn.trickle(t, ctx)
			tn.honestToo.Store(true)
			start := time.Now()
			if _, err := d.fetch(ctx, tn.later.link(tn.honest2.ID(), "later.bin")); err != nil {
				t.Fatal(err)
			}
			served := tn.served()
			done := func() bool {
				return !slices.ContainsFunc(served, func(src *readerSource) bool { return d.get(src.id).transfer().State != StateDone })
			}
			// Until they finish or a trickler brings a piece (in 48 s
			// or more if it keeps its piece); with neither, a failure
			// says where the downloads are.
			// When each honest holder first brought bytes, and the CPU
			// the test process had meanwhile: a loaded machine starving
			// the whole test (little CPU a second) shows apart from
			// waits in the budget (the holder found, bytes late).
			holders := []*mesh.Node{tn.honest2, tn.honest1}
			first := make([]time.Duration, len(served))
			cpu0 := processCPU()
			deadline := time.Now().Add(4 * time.Minute)
			var story []string // the later download's standing as it changed
			lastSt := ""
			for !done() && !tn.pieceTrickled() && time.Now().Before(deadline) {
				if st := tn.standing(d.get(tn.later.id), tn.honest2.ID()); st != lastSt && len(story) < 40 {
					lastSt = st
					story = append(story, fmt.Sprintf("%v: %s", time.Since(start).Round(time.Millisecond), st))
				}
				for i, src := range served {
					if first[i] == 0 && d.get(src.id).transfer().Sources[holders[i].ID()] > 0 {
						first[i] = time.Since(start).Round(time.Millisecond)
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
			cpu := processCPU() - cpu0
			if !done() {
				var states []string
				for i, src := range served {
					tr := d.get(src.id).transfer()
					states = append(states, fmt.Sprintf("%s %s %d of %d bytes (%s)", tr.Name, tr.State, tr.Have, tr.Size, tn.standing(d.get(src.id), holders[i].ID())))
				}
				b := d.budget
				b.mu.Lock()
				now := time.Now()
				var line []string
				for _, w := range b.line {
					line = append(line, fmt.Sprintf("%.8s class %d want %d KiB for %v", w.peer, b.classLocked(w, now), w.want>>10, now.Sub(w.since).Round(time.Millisecond)))
				}
				used := b.used
				var hs []string
				for i, h := range []*mesh.Node{tn.honest1, tn.honest2} {
					id := h.ID()
					hs = append(hs, fmt.Sprintf("honest%d slow %v, proven %v (last piece %v), holds %d KiB", i+1, b.slow[id], b.proven[id], b.took[id], b.byPeer[id]>>10))
				}
				h2 := fmt.Sprintf("%s; a trial stalls after %v, %d pieces evicted", strings.Join(hs, "; "), b.trialStallLocked(now), b.evicted)
				b.mu.Unlock()
				t.Fatalf("the honest downloads did not finish before a trickler brought a piece (%v) or the deadline, after %v (first honest bytes after %v, %v of CPU): %s; %d KiB of the budget held; %s; in line: %s\nlater.bin's standing as it changed:\n%s",
					tn.pieceTrickled(), time.Since(start).Round(time.Millisecond), first, cpu.Round(time.Millisecond), strings.Join(states, "; "), used>>10, h2, strings.Join(line, ", "), strings.Join(story, "\n")+"\nthe downloader's log of the honest holders:\n"+tn.logs.String())
			}
			trickled := tn.trickled()
			b := d.budget
			b.mu.Lock()
			t.Logf("honest downloads done %v after the later fetch (first honest bytes after %v); the test process had %v of CPU meanwhile; the tricklers hold %d KiB; %d pieces evicted, %d peers slow",
				time.Since(start).Round(time.Millisecond), first, cpu.Round(time.Millisecond), trickled>>10, b.evicted, len(b.slow))
			b.mu.Unlock()
			if testing.Verbose() {
				t.Logf("later.bin's standing as it changed:\n%s\nthe downloader's log of the honest holders:\n%s", strings.Join(story, "\n"), tn.logs.String())
			}
			for _, src := range served {
				if got := fileMD5(t, d.get(src.id).transfer().Path); got != src.id {
					t.Fatalf("%s: finished file md5 %s", src.id, got)
				}
			}
			if used, peak := d.budget.stats(); peak > tn.limit || used > tn.limit {
				t.Errorf("budget: %d bytes held, %d at most, limit %d", used, peak, tn.limit)
			}
			for _, src := range tn.files {
				if err := d.remove(ctx, src.id); err != nil {
					t.Fatal(err)
				}
			}
			testutil.WaitFor(t, time.Minute, "the budget back at zero", func() bool {
				b := d.budget
				b.mu.Lock()
				defer b.mu.Unlock()
				return b.used == 0 && len(b.holds) == 0 && len(b.line) == 0 && len(b.byPeer) == 0
			})
		})
	}
}

// BenchmarkDownloadTricklers: TestDownloadManyTricklers with the honest
// holders' uploads capped (-shards.cap MiB/s) and the later download 8
// MiB: once thirty tricklers hold the budget, the honest downloads'
// goodput over the cap, from the fetch to the end (what a user sees):
// later-fraction for the download from honest2 alone, shared-fraction for
// the file thirty tricklers and honest1 hold (2 MiB, so fetched at once
// with the later one it shares the node's budget; its goodput is over its
// own holder's cap). alone-fraction is the later download's with no
// tricklers, in the same run. Target: 0.7 or more.
func BenchmarkDownloadTricklers(b *testing.B) {
	const size = 8 << 20
	capRate := *benchCapMiB * (1 << 20)
	var later, shared, alone []float64
	for i := range b.N * *benchRounds {
		for _, mode := range []string{"split", "shared", "alone"} {
			tn := newTrickleNet(b, mode == "shared", size, capRate)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			if mode != "alone" {
				tn.trickle(b, ctx)
			}
			tn.honestToo.Store(true)
			start := time.Now()
			if _, err := tn.d.fetch(ctx, tn.later.link(tn.honest2.ID(), "later.bin")); err != nil {
				b.Fatal(err)
			}
			if mode == "shared" {
				// Already fetched: it gets honest1 as a holder at its
				// next have refresh; timed from now.
				tr := waitState(b, tn.d.downloads, tn.files[0].id, StateDone, 4*time.Minute)
				shared = append(shared, float64(tr.Size)/time.Since(start).Seconds()/capRate)
			}
			waitState(b, tn.d.downloads, tn.later.id, StateDone, 4*time.Minute)
			frac := size / time.Since(start).Seconds() / capRate
			switch mode {
			case "alone":
				alone = append(alone, frac)
			case "split":
				later = append(later, frac)
			}
			b.Logf("round %d, %s: later %.3f of the cap", i, mode, frac)
			cancel()
			tn.d.stop()
			<-tn.d.done
		}
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(later), "later-fraction")
	b.ReportMetric(median(shared), "shared-fraction")
	b.ReportMetric(median(alone), "alone-fraction")
}
