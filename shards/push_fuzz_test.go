package shards

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// fuzzMembers are fixed node ids, so that seeds stay valid across runs.
var fuzzMembers = []mesh.ID{
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
	"cccccccccccccccccccccccccccccccc",
}

func fuzzOffer(t testing.TB) offer {
	data := randomFile(9, 200<<10)
	m, id, err := BuildManifest(context.Background(), bytes.NewReader(data), int64(len(data)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer{Push: pushID{7}, ID: id, Plan: PlanMatrix, Name: "a.bin", Members: fuzzMembers[1:], Manifest: m}
}

// FuzzDecodeOffer: an offer from a peer decodes only within its limits,
// and what decodes encodes back to the same bytes.
func FuzzDecodeOffer(f *testing.F) {
	o := fuzzOffer(f)
	b, err := encodeOffer(o)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	o.Plan = PlanChain
	b, _ = encodeOffer(o)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := decodeOffer(b)
		if err != nil {
			return
		}
		if len(b) > maxPushMsg || len(o.Members) > MaxPushReceivers {
			t.Fatalf("an offer of %d bytes and %d members decoded", len(b), len(o.Members))
		}
		again, err := encodeOffer(o)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("a decoded offer does not encode to its input: %v", err)
		}
	})
}

// FuzzDecodeOrder: orders name members and pieces in range only.
func FuzzDecodeOrder(f *testing.F) {
	f.Add(encodeOrder(pushID{1}, 1, []uint32{0, 3}), 3, 4)
	f.Fuzz(func(t *testing.T, b []byte, members, np int) {
		to, pieces, err := decodeOrder(b, members, np)
		if err != nil {
			return
		}
		if to >= members || slices.ContainsFunc(pieces, func(i uint32) bool { return int(i) >= np }) {
			t.Fatalf("order to %d of %v for %d members and %d pieces", to, pieces, members, np)
		}
	})
}

// FuzzPushMessage feeds any bytes, from the source, a member or a
// stranger, to the handler of a node that receives a push: it never
// panics, never stores a piece that does not match its MD5, and scores
// down a stranger's blocks.
func FuzzPushMessage(f *testing.F) {
	o := fuzzOffer(f)
	data := randomFile(9, 200<<10)
	off, _ := encodeOffer(offer{Push: pushID{8}, ID: o.ID, Plan: PlanMatrix, Name: "b.bin", Members: fuzzMembers[:2], Manifest: o.Manifest})
	f.Add(off, byte(0))
	block := append([]byte{pushBlock}, o.Push[:]...)
	block = append(block, 0, 0, 0, 1, 0, 0, 0, 0, relayFlag)
	f.Add(append(block, data[64<<10:128<<10]...), byte(0))
	f.Add(append(block, data[:64<<10]...), byte(1))
	f.Add(append(block, data[64<<10:128<<10]...), byte(2))
	f.Add(encodeOrder(o.Push, 1, []uint32{0, 1}), byte(0))
	f.Add(encodeReport(o.Push, map[int]bool{0: true}, NewBitfield(o.Manifest.NumPieces()), o.Manifest.NumPieces()), byte(1))
	f.Add(append([]byte{pushEnd}, o.Push[:]...), byte(0))
	// The source's routed messages and a member's report, signed: the
	// fuzzer starts from messages that pass the signature checks.
	signer := fuzzSigner(f)
	src := signer.ID()
	f.Add(signedRoute(f, signer, o.Push, []int{0}, 1, encodeOrder(o.Push, 1, []uint32{0})), byte(0))
	f.Add(signedRoute(f, signer, o.Push, []int{0, 1}, 2, append([]byte{pushEnd}, o.Push[:]...)), byte(1))
	f.Add(signedRoute(f, signer, pushID{8}, []int{0}, 3, off), byte(1))
	report := encodeReport(o.Push, nil, NewBitfield(o.Manifest.NumPieces()), o.Manifest.NumPieces())
	sig, err := signer.Sign(sigUp, upSigned(o.Push, 2, report))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(encodeUp(o.Push, 2, sig, report), byte(1))
	f.Fuzz(func(t *testing.T, b []byte, who byte) {
		node := &pushStubNode{id: fuzzMembers[0]}
		cfg := DefaultPushConfig()
		cfg.Accept = func(mesh.ID, MD5, string, int64) bool { return true }
		sink := &memSink{want: data, m: o.Manifest, held: NewBitfield(o.Manifest.NumPieces())}
		p := newPushes(node, nil, cfg, nil, func(context.Context, mesh.ID, offer) (pieceSink, error) { return sink, nil })
		ip := &inPush{offer: o, source: src, self: -1, via: -1, sink: sink, have: NewBitfield(o.Manifest.NumPieces()),
			bad: make(map[int]bool), asm: make(map[asmKey]*assembly),
			perPeer: make(map[int]int), queued: make(map[relayJob]bool), wake: make(chan struct{}, 1), cancel: func() {}}
		o.Members = fuzzMembers[:]
		ip.Members = o.Members
		ip.downUntil, ip.downs = make([]time.Time, len(o.Members)), make([]int, len(o.Members))
		p.in[o.Push] = ip
		from := []mesh.ID{src, fuzzMembers[1], "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"}[int(who)%3]
		_, err := p.ServeMesh(context.Background(), &mesh.Message{From: from, Protocol: ProtoPush, Payload: b, Request: true, Channel: mesh.Bulk})
		if sink.bad != 0 {
			t.Fatal("a piece that does not match its md5 was stored")
		}
		if errors.Is(err, ErrCorrupt) && node.penalties.Load() == 0 {
			t.Fatal("a corrupt piece went unpunished")
		}
		if len(b) > 0 && b[0] == pushBlock && int(who)%3 == 2 && node.penalties.Load() == 0 && err == nil {
			t.Fatal("a stranger's block was taken")
		}
	})
}

// TestPushOfferLimits: an offer too large for a frame is refused when it is
// made, a message over the limit is refused before it is decoded, and an
// offer that leaves the receiver out or names its source is refused.
func TestPushOfferLimits(t *testing.T) {
	o := fuzzOffer(t)
	// The largest manifest fits an offer to a few receivers, not to the
	// most receivers a push may have.
	big := &Manifest{Size: MaxFileSize, PieceSize: PieceSizeFor(MaxFileSize), Pieces: make([]MD5, MaxPieces)}
	if _, err := encodeOffer(offer{Push: o.Push, ID: o.ID, Plan: PlanMatrix, Members: fuzzMembers, Manifest: big}); err != nil {
		t.Errorf("an offer of the largest manifest to 3: %v", err)
	}
	many := make([]mesh.ID, MaxPushReceivers)
	for k := range many {
		many[k] = testID(t)
	}
	if _, err := encodeOffer(offer{Push: o.Push, ID: o.ID, Plan: PlanMatrix, Members: many, Manifest: big}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("an offer of the largest manifest to %d: %v, want ErrTooLarge", len(many), err)
	}
	if _, err := encodeOffer(offer{Push: o.Push, ID: o.ID, Plan: PlanMatrix, Members: append(many, testID(t)), Manifest: o.Manifest}); !errors.Is(err, ErrBadFrame) {
		t.Errorf("an offer to %d: %v, want ErrBadFrame", len(many)+1, err)
	}
	node := &pushStubNode{id: fuzzMembers[0]}
	cfg := DefaultPushConfig()
	cfg.Accept = func(mesh.ID, MD5, string, int64) bool { return true }
	opened := 0
	p := newPushes(node, nil, cfg, nil, func(context.Context, mesh.ID, offer) (pieceSink, error) {
		opened++
		return nil, errors.New("not in this test")
	})
	serve := func(from mesh.ID, b []byte) error {
		_, err := p.ServeMesh(context.Background(), &mesh.Message{From: from, Protocol: ProtoPush, Payload: b, Request: true, Channel: mesh.Bulk})
		return err
	}
	if err := serve(fuzzMembers[1], make([]byte, maxPushMsg+1)); !errors.Is(err, ErrBadFrame) {
		t.Errorf("an oversized message: %v", err)
	}
	notMe, _ := encodeOffer(offer{Push: o.Push, ID: o.ID, Plan: PlanMatrix, Members: fuzzMembers[1:], Manifest: o.Manifest})
	if err := serve(testID(t), notMe); !errors.Is(err, ErrBadFrame) {
		t.Errorf("an offer that leaves this node out: %v", err)
	}
	withSource, _ := encodeOffer(offer{Push: o.Push, ID: o.ID, Plan: PlanMatrix, Members: fuzzMembers[:2], Manifest: o.Manifest})
	if err := serve(fuzzMembers[1], withSource); !errors.Is(err, ErrBadFrame) {
		t.Errorf("an offer that names its source: %v", err)
	}
	// The oversized message cannot come through a mesh frame: refused,
	// not scored; the two bad offers are.
	if opened != 0 || node.penalties.Load() != 2 {
		t.Errorf("%d sinks opened, %d penalties (want 0, 2)", opened, node.penalties.Load())
	}
}

// FuzzDecodeRoute: a routed message and a routed answer from a peer decode
// to a path of members of the push, within maxRouteHops, or an error.
func FuzzDecodeRoute(f *testing.F) {
	pid := pushID{3}
	signer := fuzzSigner(f)
	f.Add(signedRoute(f, signer, pid, []int{0, 5, 9}, 7, append([]byte{pushEnd}, pid[:]...)), 10)
	f.Add(routeStatus(routeRefused, 5, errors.New("no")), 3)
	f.Add(routeStatus(routeUnreachable, 9, errors.New("gone")), 3)
	f.Add(routeStatus(routeRefused, 2, errors.New("off the way")), 3)
	f.Add([]byte{routeTaken, 0, 9, 0, 3, 1, 2, 3}, 10)
	f.Fuzz(func(t *testing.T, b []byte, members int) {
		members = members % (MaxPushReceivers + 1)
		if r, err := decodeRoute(b, members); err == nil {
			limit := members
			if limit <= 0 {
				limit = MaxPushReceivers
			}
			if len(r.path) == 0 || len(r.path) > maxRouteHops || len(r.inner) < pushHeader ||
				len(r.sig) == 0 || len(r.sig) > mesh.MaxSignature {
				t.Fatalf("route of %d hops, inner of %d bytes, signature of %d", len(r.path), len(r.inner), len(r.sig))
			}
			for _, h := range r.path {
				if h < 0 || h >= limit {
					t.Fatalf("route through member %d of %d", h, limit)
				}
			}
			if !bytes.Equal(r.encode(pushID(b[1:pushHeader])), b) {
				t.Fatal("a decoded route does not encode to its input")
			}
			// A signature binds the push, the target, the sequence
			// number and the message (not the hops the forwarders take
			// off): one that checks out does not with any changed.
			pid := pushID(b[1:pushHeader])
			if r.check(pid) == nil {
				other := pid
				other[0]++
				moved := r
				moved.path = append(slices.Clone(r.path[:len(r.path)-1]), (r.path[len(r.path)-1]+1)%MaxPushReceivers)
				later := r
				later.seq++
				if r.check(other) == nil || moved.check(pid) == nil || later.check(pid) == nil {
					t.Fatalf("a signature checks out for a message it was not made for: %+v", r)
				}
			}
		}
		// An answer to message 7 along members 0, 5, 9: none is the
		// target's (9) without its signature, and none names a member
		// off the way.
		ids := fuzzMembers[:]
		path := []int{0, 5, 9}
		if k, err := checkAnswer(pid, path, 7, b, ids); err == nil || k >= 0 && !slices.Contains(path, k) {
			t.Fatalf("answer names member %d (err %v)", k, err)
		}
	})
}

// FuzzDecodeUp: a report on its way up decodes only with a signature
// within its limit and a report of its own push, and checks out only as
// its origin signed it.
func FuzzDecodeUp(f *testing.F) {
	pid := pushID{4}
	signer := fuzzSigner(f)
	report := encodeReport(pid, map[int]bool{1: true}, NewBitfield(20), 20)
	sig, err := signer.Sign(sigUp, upSigned(pid, 2, report))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(encodeUp(pid, 2, sig, report))
	f.Fuzz(func(t *testing.T, b []byte) {
		origin, sig, report, err := decodeUp(b, pid)
		if err != nil {
			return
		}
		if len(sig) == 0 || len(sig) > mesh.MaxSignature || len(report) < pushHeader || report[0] != pushHave ||
			pushID(report[1:pushHeader]) != pid || origin > 0xffff {
			t.Fatalf("decoded origin %d, signature of %d bytes, report %x", origin, len(sig), report)
		}
		if !bytes.Equal(encodeUp(pid, origin, sig, report), b) {
			t.Fatal("a decoded report does not encode to its input")
		}
		if mesh.CheckSigned(signer.ID(), sigUp, upSigned(pid, origin, report), sig) == nil && origin != 2 {
			t.Fatalf("a report signed for member 2 checks out for member %d", origin)
		}
		if _, _, err := decodeReport(report[pushHeader:], 20, 20); err == nil && mesh.CheckSigned(signer.ID(), sigUp, upSigned(pid, origin, report), sig) == nil {
			bad, _, _ := decodeReport(report[pushHeader:], 20, 20)
			if !slices.Equal(bad, []int{1}) {
				t.Fatalf("a report that blames %v checks out", bad)
			}
		}
	})
}

// fuzzSigner is a node (not served) whose key signs the fuzz targets'
// seeds, so that they start from messages that pass the signature checks.
func fuzzSigner(tb testing.TB) *mesh.Node {
	tb.Helper()
	ident, err := mesh.NewIdentity()
	if err != nil {
		tb.Fatal(err)
	}
	cfg := mesh.DefaultConfig()
	cfg.Identity = ident
	cfg.Transport = meshtest.NewNetwork().Transport(ident.ID)
	n, err := mesh.NewNode(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// signedRoute is msg routed along path from signer, the source, signed.
func signedRoute(tb testing.TB, signer *mesh.Node, pid pushID, path []int, seq uint64, msg []byte) []byte {
	tb.Helper()
	expires := time.Now().Add(routeTTL).Unix()
	sig, err := signer.Sign(sigDown, downSigned(pid, path[len(path)-1], seq, expires, msg))
	if err != nil {
		tb.Fatal(err)
	}
	return routed{source: signer.ID(), path: path, seq: seq, expires: expires, sig: sig, inner: msg}.encode(pid)
}
