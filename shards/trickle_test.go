package shards

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// trickler is a hostile holder: it serves manifests and haves at once, but
// the block requests of each resource one at a time, each answered every
// (half of RequestTimeout): it never stalls, and a piece takes it dozens of
// seconds.
type trickler struct {
	srv   *testServer
	every time.Duration
	// prompt are resources whose blocks it answers at once, as an honest
	// holder: one such piece proves it (budget.pieceDone).
	prompt map[MD5]bool
	stop   chan struct{}
	mu     sync.Mutex
	lanes  map[MD5]chan struct{}
}

func (tr *trickler) register(t testing.TB, n Node) {
	tr.stop, tr.lanes = make(chan struct{}), make(map[MD5]chan struct{})
	t.Cleanup(func() { close(tr.stop) })
	for _, proto := range []string{ProtoManifest, ProtoHave, ProtoBlock} {
		n.Handle(proto, mesh.HandlerFunc(tr.serveMesh))
	}
}

func (tr *trickler) serveMesh(ctx context.Context, m *mesh.Message) ([]byte, error) {
	if m.Protocol != ProtoBlock {
		return tr.srv.serveMesh(ctx, m)
	}
	r, err := decodeBlockReq(m.Payload)
	if err != nil {
		return nil, err
	}
	if tr.prompt[r.ID] {
		return tr.srv.serveMesh(ctx, m)
	}
	tr.mu.Lock()
	lane := tr.lanes[r.ID]
	if lane == nil {
		lane = make(chan struct{}, 1)
		tr.lanes[r.ID] = lane
	}
	tr.mu.Unlock()
	select {
	case lane <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-tr.stop:
		return nil, ErrUnknown
	}
	defer func() { <-lane }()
	wait := time.NewTimer(tr.every)
	defer wait.Stop()
	select {
	case <-wait.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-tr.stop:
		return nil, ErrUnknown
	}
	return tr.srv.serveMesh(ctx, m)
}

// TestDownloadTricklersDoNotStarve: holders that answer every block request
// just inside RequestTimeout (one block of each resource every half of it,
// so a 64 KiB piece takes them about half a minute) would hold a piece
// buffer per download for as long as they like, and 8 such downloads fill
// a budget of 8 pieces: no other download on the node is served until a
// trickled piece is done. Both ways of filling the budget are tried: one
// trickler the only holder of 8 downloads (the per-peer share of the budget
// gives back what it holds beyond a quarter), and 4 tricklers holding the 8
// downloads along with an honest holder (their pieces are given up as far
// slower than the honest holder's). Either way a later download from an
// honest holder (2 MiB, 32 pieces), and in the second case the 8 as well,
// must finish before any trickler has brought a single piece. (A trickler
// now holds one piece at a time node-wide, not proven until it brings one
// within RequestTimeout; see budget.)
func TestDownloadTricklersDoNotStarve(t *testing.T) {
	testutil.CheckGoroutines(t)
	tests := []struct {
		name      string
		tricklers int
		honestToo bool // the honest holder holds the 8 downloads too
		split     bool // each trickler is the only holder of its own 2
	}{
		{"one trickler holds 8 downloads", 1, false, false},
		{"four tricklers and an honest holder", 4, true, false},
		// Node ids cost nothing: 4 tricklers that each hold a quarter
		// of the budget fill it without any holding more than its
		// share, and with no other holder none is slower than another.
		{"four tricklers each the only holder of two", 4, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.CheckGoroutines(t)
			const nFiles, timeout = 8, 4 * time.Second
			names := []string{"honest", "dl"}
			for i := range tt.tricklers {
				names = append(names, fmt.Sprintf("trickler%d", i))
			}
			_, nodes := newTestNet(t, names...)
			honest, dlNode, tricklers := nodes[0], nodes[1], nodes[2:]
			var srcs []pieceSource
			var files []*readerSource
			for i := range nFiles {
				_, src := testFile(t, 1<<20, byte(60+i))
				srcs, files = append(srcs, src), append(files, src)
			}
			_, later := testFile(t, 2<<20, 59)
			// holderOf is the trickler that holds file i.
			holderOf := func(i int) *mesh.Node { return tricklers[0] }
			if tt.split {
				holderOf = func(i int) *mesh.Node { return tricklers[i%len(tricklers)] }
			}
			for _, n := range tricklers {
				var own []pieceSource
				for i, src := range srcs {
					if holderOf(i) == n || !tt.split {
						own = append(own, src)
					}
				}
				(&trickler{srv: &testServer{sources: own}, every: timeout / 2}).register(t, n)
			}
			// The honest holder has the 8 only once the tricklers hold
			// the budget (before, it would serve them at once).
			var honestToo atomic.Bool
			laterOnly, all := &testServer{sources: []pieceSource{later}}, &testServer{sources: append([]pieceSource{later}, srcs...)}
			for _, proto := range []string{ProtoManifest, ProtoHave, ProtoBlock} {
				honest.Handle(proto, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
					if honestToo.Load() {
						return all.serveMesh(ctx, m)
					}
					return laterOnly.serveMesh(ctx, m)
				}))
			}
			holdersOf := func(id MD5) []mesh.ID {
				if id == later.id {
					return nodeIDs(honest)
				}
				if honestToo.Load() {
					return append(nodeIDs(tricklers...), honest.ID())
				}
				if i := slices.IndexFunc(files, func(src *readerSource) bool { return src.id == id }); tt.split && i >= 0 {
					return nodeIDs(holderOf(i))
				}
				return nodeIDs(tricklers...)
			}
			const limit = nFiles * MinPieceSize
			dir := t.TempDir()
			d := startDownloads(t, dlNode, dir, openTestDB(t, filepath.Join(dir, "db")), holdersOf,
				func(c *DownloadsConfig, d *downloads) {
					c.MaxBuffered, c.RequestTimeout = limit, timeout
					d.budget = newBudget(limit, c.RequestTimeout)
				})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			for i, src := range files {
				if _, err := d.fetch(ctx, src.link(holderOf(i).ID(), fmt.Sprintf("f%d.bin", i))); err != nil {
					t.Fatal(err)
				}
			}
			// A peer not proven (none of the tricklers is) holds one
			// piece at a time, node-wide: they hold all they can get.
			full := min(limit, int64(tt.tricklers)*MinPieceSize)
			testutil.WaitFor(t, time.Minute, "the tricklers to hold all they can", func() bool {
				used, _ := d.budget.stats()
				return used == full
			})
			honestToo.Store(tt.honestToo)
			if _, err := d.fetch(ctx, later.link(honest.ID(), "later.bin")); err != nil {
				t.Fatal(err)
			}
			// trickled is a piece a trickler brought; done, whether the
			// downloads the honest holder serves are.
			trickled := func() bool {
				for _, src := range files {
					dl := d.get(src.id)
					dl.mu.Lock()
					n := 0
					for _, tr := range tricklers {
						n += int(dl.sources[tr.ID()])
					}
					dl.mu.Unlock()
					if n > 0 {
						return true
					}
				}
				return false
			}
			served := []*readerSource{later}
			if tt.honestToo {
				served = append(served, files...)
			}
			done := func() bool {
				return !slices.ContainsFunc(served, func(src *readerSource) bool { return d.get(src.id).transfer().State != StateDone })
			}
			testutil.WaitFor(t, time.Minute, "the honest downloads to finish or a trickled piece", func() bool { return done() || trickled() })
			if trickled() {
				tr := d.get(later.id).transfer()
				t.Fatalf("a trickler brought a piece before the honest downloads finished: the later one has %d of %d bytes", tr.Have, tr.Size)
			}
			for _, src := range served {
				if got := fileMD5(t, d.get(src.id).transfer().Path); got != src.id {
					t.Fatalf("%s: finished file md5 %s", src.id, got)
				}
			}
			if used, peak := d.budget.stats(); peak > limit || used > limit {
				t.Errorf("budget: %d bytes held, %d at most, limit %d", used, peak, limit)
			}
		})
	}
}
