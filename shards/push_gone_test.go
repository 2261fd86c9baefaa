package shards

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// pushDone waits for push pid from src to end and returns its status.
func pushDone(t *testing.T, src *pushPeer, pid string, within time.Duration) PushStatus {
	t.Helper()
	testutil.WaitFor(t, within, "the push to end", func() bool {
		st, err := src.p.status(pid)
		return err == nil && st.Done
	})
	st, err := src.p.status(pid)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// checkAllWhole fails the test unless every receiver but those in skip
// holds the file whole, uncorrupted, and the source's status says so,
// and the source uploaded at most 1.1x the file.
func checkAllWhole(t *testing.T, src *pushPeer, recv []*pushPeer, st PushStatus, size int64, skip ...*pushPeer) {
	t.Helper()
	for k, pp := range recv {
		if len(skip) > 0 && pp == skip[0] {
			if r := st.Receivers[k]; r.State != "gone" {
				t.Errorf("the leaver is %q", r.State)
			}
			continue
		}
		r := st.Receivers[k]
		if s := pp.getSink(); !s.whole(src.src.id) || s.bad != 0 {
			t.Errorf("receiver %d is not whole; status %+v", k, r)
		}
		if r.State != "done" || r.Have != size {
			t.Errorf("receiver %d: status %+v", k, r)
		}
	}
	t.Logf("the source uploaded %.3fx the file", float64(st.Uploaded)/float64(size))
	if st.Uploaded > size*11/10 {
		t.Errorf("the source uploaded %.3fx the file (at most 1.1x)", float64(st.Uploaded)/float64(size))
	}
}

// TestPushBusyReceiverNotGone: a receiver that answers nothing for three
// times BlockTimeout half-way (its machine too busy to read: meshtest
// Stall) fails the calls made to it meanwhile, the source's and its
// peers' relays. It is not counted gone for that: the push routes around
// it, tries it again after a backoff, and it ends with the file like the
// others; the source uploads at most 1.1x the file.
func TestPushBusyReceiverNotGone(t *testing.T) {
	for _, plan := range []Plan{PlanMatrix, PlanSpan} {
		t.Run(string(plan), func(t *testing.T) {
			checkPushGoroutines(t)
			const size = 4 << 20
			want := randomFile(21, size)
			nw := meshtest.NewNetwork()
			cfg := DefaultPushConfig()
			cfg.Repair = 100 * time.Millisecond
			cfg.BlockTimeout = time.Second
			peers := pushNet(t, nw, 11, want, cfg, 0, nil)
			src, recv := peers[0], peers[1:]
			src.p.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
			for _, pp := range recv {
				pp.p.cfg.Accept = AcceptFrom(ids(peers)...)
			}
			lim := rate.NewLimiter(rate.Limit(2<<20), BlockSize)
			src.p.waitUpload = func(ctx context.Context, n int) error { return lim.WaitN(ctx, n) }
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			pid, err := src.p.push(ctx, src.src.id, ids(recv), plan, "file.bin")
			if err != nil {
				t.Fatal(err)
			}
			busy := recv[1] // in the first group of a span: the source feeds it
			testutil.WaitFor(t, time.Minute, "the busy one to hold a quarter of the file", func() bool {
				s := busy.getSink()
				return s != nil && s.count() >= src.src.m.NumPieces()/4
			})
			nw.Stall(busy.node.ID(), 3*cfg.BlockTimeout)
			st := pushDone(t, src, pid, 2*time.Minute)
			checkAllWhole(t, src, recv, st, size)
		})
	}
}

// TestPushOfferRetried: a receiver that cannot be reached when the push
// is offered (its link not up yet: a partition here) is offered it again
// after a backoff, and ends with the file.
func TestPushOfferRetried(t *testing.T) {
	checkPushGoroutines(t)
	const size = 2 << 20
	want := randomFile(22, size)
	nw := meshtest.NewNetwork()
	cfg := DefaultPushConfig()
	cfg.Repair = 100 * time.Millisecond
	peers := pushNet(t, nw, 6, want, cfg, 0, nil)
	src, recv := peers[0], peers[1:]
	src.p.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	for _, pp := range recv {
		pp.p.cfg.Accept = AcceptFrom(src.node.ID())
	}
	late := recv[2]
	var rest []mesh.ID
	for _, pp := range peers {
		if pp != late {
			rest = append(rest, pp.node.ID())
		}
	}
	nw.Partition([]mesh.ID{late.node.ID()}, rest)
	lim := rate.NewLimiter(rate.Limit(2<<20), BlockSize)
	src.p.waitUpload = func(ctx context.Context, n int) error { return lim.WaitN(ctx, n) }
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pid, err := src.p.push(ctx, src.src.id, ids(recv), PlanMatrix, "file.bin")
	if err != nil {
		t.Fatal(err)
	}
	// The first pass has begun: the offers are over, the late one's
	// failed.
	testutil.WaitFor(t, time.Minute, "the others to get pieces", func() bool {
		s := recv[0].getSink()
		return s != nil && s.count() > 0
	})
	if late.opened.Load() != 0 {
		t.Fatal("the partitioned receiver took the offer")
	}
	nw.Heal()
	st := pushDone(t, src, pid, time.Minute)
	checkAllWhole(t, src, recv, st, size)
}
