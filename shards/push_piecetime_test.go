package shards

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestPushPieceTimeLeavesOffersOut: the piece time repair waits for
// relays by (outPush.pieceTime, stallChecks) is the source's first pass
// per piece, not that and the offers before it: a receiver that cannot
// be reached at the offer is offered again after backoffs (seconds), and
// counted in, those would make repair wait that much longer per piece
// for a receiver that stalls. In virtual time, so that the figure is
// the schedule's: 4 MiB at 1 MiB/s is 4 s of first pass, 64 pieces.
func TestPushPieceTimeLeavesOffersOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const size = 4 << 20
		want := randomFile(33, size)
		nw := meshtest.NewNetwork()
		nw.Latency = 5 * time.Millisecond
		cfg := DefaultPushConfig()
		peers := pushNet(t, nw, 9, want, cfg, 0, nil)
		src, recv := peers[0], peers[1:]
		for _, pp := range recv {
			pp.p.cfg.Accept = AcceptFrom(src.node.ID())
		}
		const u = 1 << 20
		lim := rate.NewLimiter(rate.Limit(u), BlockSize)
		src.p.waitUpload = func(ctx context.Context, n int) error { return lim.WaitN(ctx, n) }
		late := recv[3]
		var rest []mesh.ID
		for _, pp := range peers {
			if pp != late {
				rest = append(rest, pp.node.ID())
			}
		}
		nw.Partition([]mesh.ID{late.node.ID()}, rest)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		pid, err := src.p.push(ctx, src.src.id, ids(recv), PlanMatrix, "file.bin")
		if err != nil {
			t.Fatal(err)
		}
		src.p.mu.Lock()
		var op *outPush
		for _, o := range src.p.out {
			op = o
		}
		src.p.mu.Unlock()
		pieceTime := func() time.Duration {
			op.mu.Lock()
			defer op.mu.Unlock()
			return op.pieceTime
		}
		for pieceTime() == 0 {
			time.Sleep(10 * time.Millisecond) // virtual: the first pass ends
		}
		nw.Heal()
		pushDone(t, src, pid, 5*time.Minute)
		np := src.src.m.NumPieces()
		want1 := time.Duration(size / u * float64(time.Second) / float64(np))
		got := pieceTime()
		t.Logf("piece time %v, the upload's %v", got, want1)
		if got > want1*5/4 {
			t.Errorf("piece time %v, more than 1.25x the upload's %v: the offers counted in", got, want1)
		}
	})
}
