package shards

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
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
			raceOneProc(t)
			synctest.Test(t, func(t *testing.T) { pushForgedRoutedMessages(t, plan) })
		})
	}
}

func pushForgedRoutedMessages(t *testing.T, plan Plan) {
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
	forge := func(to mesh.ID, msg []byte) error {
		_, err := recv[hostile].node.Request(ctx, to, ProtoPush, msg, mesh.OverBulk())
		return err
	}
	for k := range recv {
		if k == hostile || plan == PlanSpan && k >= 16 {
			continue // in a span, it forwards for group 2
		}
		if err := forge(src.node.ID(), forgedReport(t, recv[hostile], push, k, nil, whole, np)); err == nil {
			t.Errorf("the source took a report for member %d from member %d", k, hostile)
		}
	}
	if plan == PlanSpan {
		if err := forge(recv[4].node.ID(), forgedReport(t, recv[hostile], push, 9, nil, whole, np)); err == nil {
			t.Error("member 4 took a report for member 9 (its own group) from member 12")
		}
		end := append([]byte{pushEnd}, push[:]...)
		for _, k := range []int{2, 13} {
			if err := forge(recv[k].node.ID(), forgedRoute(t, recv[hostile], push, src.node.ID(), k, end)); err == nil {
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
	raceOneProc(t)
	synctest.Test(t, pushRoutedHangBlamesTarget)
}

func pushRoutedHangBlamesTarget(t *testing.T) {
	const size = 4 << 20
	want := randomFile(32, size)
	nw := meshtest.NewNetwork()
	cfg := DefaultPushConfig()
	cfg.Repair = 100 * time.Millisecond
	// A call's deadline and GoneAfter as a loaded CI machine needs: with
	// 1 s and 5 s, honest members of group 1 whose routed calls waited
	// behind a starved scheduler (a fifth of a core under -race) were
	// counted gone with 3.5 of 4 MB.
	cfg.BlockTimeout = 5 * time.Second
	cfg.GoneAfter = 20 * time.Second
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

// TestPushForwarderForgesDownstream: a member of a span push forges, for
// a receiver further down its own route, what passes through it: (a) a
// report that the receiver holds the whole file (the source would stop
// serving it and repair would never help it), (b) an end and an order
// routed to it, (c) a report in which the receiver blames an honest
// member as corrupt, and (d) a report the receiver signed in an earlier
// push, as it was and with the push id changed; and (e) it passes on a
// message the source signed twice. Each forgery is refused, the
// forwarder is scored down by whom it sent it to, the replay is taken
// once, every honest receiver ends with the file, and the source
// uploaded at most 1.1x the file and the forwarder's stripe.
func TestPushForwarderForgesDownstream(t *testing.T) {
	checkPushGoroutines(t)
	raceOneProc(t)
	synctest.Test(t, pushForwarderForgesDownstream)
}

func pushForwarderForgesDownstream(t *testing.T) {
	const size = 4 << 20
	want := randomFile(33, size)
	nw := meshtest.NewNetwork()
	cfg := DefaultPushConfig()
	cfg.Repair = 100 * time.Millisecond
	peers := pushNet(t, nw, 25, want, cfg, 0, nil)
	src, recv := peers[0], peers[1:]
	src.p.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	for _, pp := range recv {
		pp.p.cfg.Accept = AcceptFrom(ids(peers)...)
	}
	lim := rate.NewLimiter(rate.Limit(1<<20), BlockSize)
	src.p.waitUpload = func(ctx context.Context, n int) error { return lim.WaitN(ctx, n) }
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pid, err := src.p.push(ctx, src.src.id, ids(recv), PlanSpan, "file.bin")
	if err != nil {
		t.Fatal(err)
	}
	push, err := parsePushID(pid)
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, time.Minute, "every receiver to take the offer", func() bool {
		for _, pp := range recv {
			if !pp.holds(push) {
				return false
			}
		}
		return true
	})
	// Groups 0-7, 8-15, 16-23: member 12 forwards what goes between the
	// source and member 20 (the route 4, 12, 20), and 20's reports.
	const hostile, victim, honest = 12, 20, 21
	fwd := recv[hostile]
	np := src.src.m.NumPieces()
	whole := NewBitfield(np)
	for i := range np {
		whole.Set(i)
	}
	forge := func(to *pushPeer, msg []byte) error {
		_, err := fwd.p.request(ctx, to.node.ID(), msg, cfg.BlockTimeout)
		return err
	}
	refused := func(what string, to *pushPeer, msg []byte) {
		t.Helper()
		before := to.scoredDown(fwd.node.ID())
		if err := forge(to, msg); err == nil {
			t.Errorf("%s: taken", what)
		} else {
			t.Logf("%s: refused: %v", what, err)
		}
		if to.scoredDown(fwd.node.ID()) == before {
			t.Errorf("%s: the forwarder was not scored down", what)
		}
	}
	// (a) The victim holds the whole file: to the source, and to the
	// member of group 0 that passes 12's reports on.
	refused("a whole-file report for the victim, to member 4", recv[4], forgedReport(t, fwd, push, victim, nil, whole, np))
	refused("a whole-file report for the victim, to the source", src, forgedReport(t, fwd, push, victim, nil, whole, np))
	if r := pushReceiverStatus(t, src, pid, victim); r.Have == size && !recv[victim].getSink().whole(src.src.id) {
		t.Errorf("the source counts the victim whole before it is: %+v", r)
	}
	// (b) An order (send every piece to member 19) and an end routed to
	// the victim.
	all := make([]uint32, np)
	for i := range all {
		all[i] = uint32(i)
	}
	refused("an order routed to the victim", recv[victim], forgedRoute(t, fwd, push, src.node.ID(), victim, encodeOrder(push, 19, all)))
	refused("an end routed to the victim", recv[victim], forgedRoute(t, fwd, push, src.node.ID(), victim, append([]byte{pushEnd}, push[:]...)))
	if !recv[victim].holds(push) {
		t.Error("the victim dropped the push on a forged end")
	}
	// (c) The victim blames an honest member.
	refused("a report blaming member 21", src, forgedReport(t, fwd, push, victim, map[int]bool{honest: true}, NewBitfield(np), np))
	src.p.mu.Lock()
	op := src.p.out[push]
	src.p.mu.Unlock()
	op.mu.Lock()
	blamed := op.refused[victim][honest]
	op.mu.Unlock()
	if blamed {
		t.Error("the source counts member 21 out as a holder for the victim")
	}
	// (d) A report the victim signed in an earlier push: as it was (that
	// push is not the source's now), and as if of this one.
	var earlier pushID
	earlier[0] = 0xee
	old, err := recv[victim].p.signUp(earlier, victim, encodeReport(earlier, map[int]bool{honest: true}, whole, np))
	if err != nil {
		t.Fatal(err)
	}
	if err := forge(src, old); err == nil {
		t.Error("the source took a report of an earlier push")
	}
	copy(old[1:], push[:])
	sl := binary.BigEndian.Uint16(old[pushHeader+2:])
	copy(old[pushHeader+4+int(sl)+1:], push[:])
	refused("an earlier push's report, as if of this one", src, old)
	// (e) A probe the source signed, passed on twice: taken once.
	op.mu.Lock()
	op.seq[victim]++ // a number the source will not use itself
	seq := op.seq[victim]
	op.mu.Unlock()
	probe := encodeOrder(push, victim, nil)
	expires := time.Now().Add(routeTTL).Unix()
	sig, err := src.node.Sign(sigDown, downSigned(push, victim, seq, expires, probe))
	if err != nil {
		t.Fatal(err)
	}
	captured := routed{source: src.node.ID(), path: []int{victim}, seq: seq, expires: expires, sig: sig, inner: probe}.encode(push)
	if err := forge(recv[victim], captured); err != nil {
		t.Errorf("the source's probe, passed on: %v", err)
	}
	if err := forge(recv[victim], captured); err == nil {
		t.Error("the source's probe, passed on again: taken")
	}
	st := pushDone(t, src, pid, 2*time.Minute)
	for k, pp := range recv {
		if k == hostile {
			if r := st.Receivers[k]; r.State != "gone" {
				t.Errorf("the source keeps the forwarder in the push: %+v", r)
			}
			continue
		}
		if r := st.Receivers[k]; !pp.getSink().whole(src.src.id) || r.State != "done" {
			t.Errorf("receiver %d is not whole; status %+v", k, r)
		}
	}
	t.Logf("the source uploaded %.3fx the file", float64(st.Uploaded)/float64(size))
	if limit := int64(size*11/10 + size/8); st.Uploaded > limit {
		t.Errorf("the source uploaded %.3fx the file (at most 1.1x and the forwarder's stripe)", float64(st.Uploaded)/float64(size))
	}
}

// pushReceiverStatus is receiver k's line of push pid's status.
func pushReceiverStatus(t *testing.T, src *pushPeer, pid string, k int) PushReceiver {
	t.Helper()
	st, err := src.p.status(pid)
	if err != nil {
		t.Fatal(err)
	}
	return st.Receivers[k]
}

// forgedReport is a report for member origin of push pid that pp makes
// up and signs with its own key (it has no other).
func forgedReport(t *testing.T, pp *pushPeer, pid pushID, origin int, bad map[int]bool, have Bitfield, np int) []byte {
	t.Helper()
	report := encodeReport(pid, bad, have, np)
	sig, err := pp.node.Sign(sigUp, upSigned(pid, origin, report))
	if err != nil {
		t.Fatal(err)
	}
	return encodeUp(pid, origin, sig, report)
}

// forgedRoute is a message of source's routed to member target that pp
// makes up and signs with its own key.
func forgedRoute(t *testing.T, pp *pushPeer, pid pushID, source mesh.ID, target int, inner []byte) []byte {
	t.Helper()
	const seq = 1 << 40 // ahead of any the source used
	expires := time.Now().Add(routeTTL).Unix()
	sig, err := pp.node.Sign(sigDown, downSigned(pid, target, seq, expires, inner))
	if err != nil {
		t.Fatal(err)
	}
	return routed{source: source, path: []int{target}, seq: seq, expires: expires, sig: sig, inner: inner}.encode(pid)
}

// TestPushForwarderForgesAnswers: a member of the first group of a span
// push to 24 receivers, through which the source reaches the members at
// its place in the groups after, answers for them without passing
// anything on: to their offers that they refused (a receiver that
// refuses an offer leaves the push at once; "refused" only), to every
// other routed message that they took it (a receiver counted in that never got the
// offer, or the orders and probes meant to repair it). The receivers take
// pushes from the source only. Their answers are signed by them
// (checkAnswer), so the made-up ones count as failed calls: the source
// routes around the forwarder and every other receiver ends with the
// file, the source uploading at most 1.1x the file and its stripe.
// In "blame" it passes on honestly what goes to the second group, but
// answers whatever goes further down that the second group's member on
// the way refused it: a claim it cannot prove, so counted as that
// member's failed call, never as its refusal; the third group is reached
// around it.
func TestPushForwarderForgesAnswers(t *testing.T) {
	for _, mode := range []string{"refused", "taken", "blame"} {
		t.Run(mode, func(t *testing.T) {
			checkPushGoroutines(t)
			raceOneProc(t)
			synctest.Test(t, func(t *testing.T) { pushForwarderForgesAnswers(t, mode) })
		})
	}
}

func pushForwarderForgesAnswers(t *testing.T, mode string) {
	const size = 4 << 20
	want := randomFile(34, size)
	nw := meshtest.NewNetwork()
	cfg := DefaultPushConfig()
	cfg.Repair = 100 * time.Millisecond
	cfg.GoneAfter = 3 * time.Second
	peers := pushNet(t, nw, 25, want, cfg, 0, nil)
	src, recv := peers[0], peers[1:]
	src.p.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	for _, pp := range recv {
		pp.p.cfg.Accept = AcceptFrom(src.node.ID())
	}
	// Groups of a span of 24: 0-7, 8-15, 16-23; member 3 forwards for
	// 11 and 19.
	const hostile = 3
	var forged atomic.Int32
	h := recv[hostile]
	h.node.Handle(ProtoPush, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		b := m.Payload
		if len(b) > pushHeader && b[0] == pushRoute {
			if r, err := decodeRoute(b, 24); err == nil && len(r.path) > 1 {
				target := r.path[len(r.path)-1]
				if mode == "blame" {
					if len(r.path) < 3 {
						return h.p.ServeMesh(ctx, m)
					}
					forged.Add(1)
					return routeStatus(routeRefused, r.path[1], errors.New("shards: push refused: not for me")), nil
				}
				forged.Add(1)
				if mode == "refused" && r.inner[0] == pushOffer {
					return routeStatus(routeRefused, target, errors.New("shards: push refused: not for me")), nil
				}
				return nil, nil // "taken", as the protocol's answers were unsigned
			}
		}
		return h.p.ServeMesh(ctx, m)
	}))
	lim := rate.NewLimiter(rate.Limit(2<<20), BlockSize)
	src.p.waitUpload = func(ctx context.Context, n int) error { return lim.WaitN(ctx, n) }
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pid, err := src.p.push(ctx, src.src.id, ids(recv), PlanSpan, "file.bin")
	if err != nil {
		t.Fatal(err)
	}
	st := pushDone(t, src, pid, 2*time.Minute)
	if forged.Load() == 0 {
		t.Fatal("no routed message went through the forwarder: the test tests nothing")
	}
	for k, pp := range recv {
		if k == hostile {
			continue
		}
		if s := pp.getSink(); s == nil || !s.whole(src.src.id) || st.Receivers[k].State != "done" {
			t.Errorf("receiver %d is not whole; status %+v", k, st.Receivers[k])
		}
	}
	t.Logf("%d answers made up; the source uploaded %.3fx the file", forged.Load(), float64(st.Uploaded)/size)
	if st.Uploaded > size*11/10+size/8 {
		t.Errorf("the source uploaded %.3fx the file", float64(st.Uploaded)/size)
	}
}
