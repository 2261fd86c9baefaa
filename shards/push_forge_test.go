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

// TestPushForgedRoutedMessages: a hostile member of a push sends the
// routed messages of pushroute.go for members it does not forward for:
// a report to the source saying another member holds the whole file
// (which would stop the source serving it, and, for every member, end
// the push), a report passed up through a member of an earlier group for
// one of that member's own group, and ends routed to a member of its own
// or an earlier group. Each is refused, the members it named keep the
// push, and every honest receiver ends with the file from the push.
func TestPushForgedRoutedMessages(t *testing.T) {
	for _, plan := range []Plan{PlanMatrix, PlanSpan} {
		t.Run(string(plan), func(t *testing.T) {
			checkPushGoroutines(t)
			const size = 4 << 20
			want := randomFile(31, size)
			nw := meshtest.NewNetwork()
			cfg := DefaultPushConfig()
			cfg.Repair = 100 * time.Millisecond
			peers := pushNet(t, nw, 25, want, cfg, 0, nil)
			src, recv := peers[0], peers[1:]
			src.p.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
			for _, pp := range recv {
				pp.p.cfg.Accept = AcceptFrom(ids(peers)...)
			}
			// At least four seconds of the source's upload: the push is
			// still on when the forgeries arrive.
			lim := rate.NewLimiter(rate.Limit(1<<20), BlockSize)
			src.p.waitUpload = func(ctx context.Context, n int) error { return lim.WaitN(ctx, n) }
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			pid, err := src.p.push(ctx, src.src.id, ids(recv), plan, "file.bin")
			if err != nil {
				t.Fatal(err)
			}
			var push pushID
			src.p.mu.Lock()
			for id := range src.p.out {
				push = id
			}
			src.p.mu.Unlock()
			testutil.WaitFor(t, time.Minute, "every receiver to take the offer", func() bool {
				for _, pp := range recv {
					if !pp.holds(push) {
						return false
					}
				}
				return true
			})
			// Groups of a span of 24: 0-7, 8-15, 16-23.
			const hostile = 12
			np := src.src.m.NumPieces()
			whole := NewBitfield(np)
			for i := range np {
				whole.Set(i)
			}
			report := encodeReport(push, nil, whole, np)
			forge := func(to mesh.ID, msg []byte) error {
				_, err := recv[hostile].node.Request(ctx, to, ProtoPush, msg, mesh.OverBulk())
				return err
			}
			for k := range recv {
				if k == hostile || plan == PlanSpan && k >= 16 {
					continue // in a span, it forwards for group 2
				}
				if err := forge(src.node.ID(), encodeUp(push, k, report)); err == nil {
					t.Errorf("the source took a report for member %d from member %d", k, hostile)
				}
			}
			if plan == PlanSpan {
				if err := forge(recv[4].node.ID(), encodeUp(push, 9, report)); err == nil {
					t.Error("member 4 took a report for member 9 (its own group) from member 12")
				}
				end := append([]byte{pushEnd}, push[:]...)
				for _, k := range []int{2, 13} {
					if err := forge(recv[k].node.ID(), encodeRoute(push, src.node.ID(), []int{k}, end)); err == nil {
						t.Errorf("member %d took an end routed by member %d", k, hostile)
					}
					if !recv[k].holds(push) {
						t.Errorf("member %d dropped the push on an end routed by member %d", k, hostile)
					}
				}
			}
			st := pushDone(t, src, pid, 2*time.Minute)
			for k, pp := range recv {
				if k == hostile {
					continue
				}
				if r := st.Receivers[k]; !pp.getSink().whole(src.src.id) || r.State != "done" {
					t.Errorf("receiver %d is not whole; status %+v", k, r)
				}
			}
		})
	}
}

// holds reports whether pp receives push id now.
func (pp *pushPeer) holds(id pushID) bool {
	pp.p.mu.Lock()
	defer pp.p.mu.Unlock()
	return pp.p.in[id] != nil
}

// TestPushRoutedHangBlamesTarget: a receiver two groups down a span that
// stops reading (its machine hangs: meshtest Stall) fails the routed
// calls made to it by timing out. The failure counts against it, not
// against the first group's member the call went through (whose own
// deadline, as long as its forwarders', would run out first): so it is
// counted gone after GoneAfter and the push ends for the others, who end
// with the file; the members it was reached through stay in the push.
func TestPushRoutedHangBlamesTarget(t *testing.T) {
	checkPushGoroutines(t)
	const size = 4 << 20
	want := randomFile(32, size)
	nw := meshtest.NewNetwork()
	cfg := DefaultPushConfig()
	cfg.Repair = 100 * time.Millisecond
	cfg.BlockTimeout = time.Second
	cfg.GoneAfter = 5 * time.Second
	peers := pushNet(t, nw, 25, want, cfg, 0, nil)
	src, recv := peers[0], peers[1:]
	src.p.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	for _, pp := range recv {
		pp.p.cfg.Accept = AcceptFrom(ids(peers)...)
	}
	lim := rate.NewLimiter(rate.Limit(2<<20), BlockSize)
	src.p.waitUpload = func(ctx context.Context, n int) error { return lim.WaitN(ctx, n) }
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pid, err := src.p.push(ctx, src.src.id, ids(recv), PlanSpan, "file.bin")
	if err != nil {
		t.Fatal(err)
	}
	hung := recv[20] // group 2 of 0-7, 8-15, 16-23
	testutil.WaitFor(t, time.Minute, "the one to hang to take the offer", func() bool {
		s := hung.getSink()
		return s != nil
	})
	nw.Stall(hung.node.ID(), 10*time.Minute)
	defer nw.Stall(hung.node.ID(), 0)
	st := pushDone(t, src, pid, 2*time.Minute)
	nw.Stall(hung.node.ID(), 0)
	checkAllWhole(t, src, recv, st, size, hung)
}
