package shards

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/catnest/catnest/mesh"
)

// handlerPush is a node receiving a push, driven through its handler
// without a network: self is fuzzMembers[0], the others are members 1
// and 2, src the source.
type handlerPush struct {
	node *pushStubNode
	p    *pushes
	ip   *inPush
	sink *memSink
	data []byte
	src  mesh.ID
}

// newHandlerPush receives a push of a file of pieces pieces of pieceSize
// bytes each (a hand-made manifest, so that pieces of several blocks fit a
// small test).
func newHandlerPush(t *testing.T, pieces int, pieceSize int64) *handlerPush {
	t.Helper()
	data := randomFile(11, pieces*int(pieceSize))
	m := &Manifest{Size: int64(len(data)), PieceSize: pieceSize}
	for i := range pieces {
		m.Pieces = append(m.Pieces, md5.Sum(data[int64(i)*pieceSize:int64(i+1)*pieceSize]))
	}
	h := &handlerPush{node: &pushStubNode{id: fuzzMembers[0]}, data: data, src: "dddddddddddddddddddddddddddddddd"}
	h.sink = &memSink{want: data, m: m, held: NewBitfield(pieces)}
	h.p = newPushes(h.node, nil, DefaultPushConfig(), nil, nil)
	o := offer{Push: pushID{3}, ID: MD5(md5.Sum(data)), Plan: PlanMatrix, Name: "h.bin", Members: fuzzMembers, Manifest: m}
	h.ip = &inPush{offer: o, source: h.src, self: 0, via: -1, sink: h.sink, have: NewBitfield(pieces),
		downUntil: make([]time.Time, len(o.Members)), downs: make([]int, len(o.Members)), bad: make(map[int]bool), asm: make(map[asmKey]*assembly),
		perPeer: make(map[int]int), queued: make(map[relayJob]bool), wake: make(chan struct{}, 1), cancel: func() {}}
	h.p.in[o.Push] = h.ip
	return h
}

// block sends block off (a BlockSize-aligned offset) of piece i from a
// sender, as sendPiece frames it.
func (h *handlerPush) block(from mesh.ID, i int, off int64) error {
	m := h.ip.Manifest
	n := min(m.PieceLen(i)-off, BlockSize)
	b := make([]byte, blockHeader+n)
	b[0] = pushBlock
	copy(b[1:], h.ip.Push[:])
	binary.BigEndian.PutUint32(b[17:], uint32(i))
	binary.BigEndian.PutUint32(b[21:], uint32(off))
	copy(b[blockHeader:], h.data[m.PieceOffset(i)+off:])
	_, err := h.p.ServeMesh(context.Background(), &mesh.Message{From: from, Protocol: ProtoPush, Payload: b, Request: true, Channel: mesh.Bulk})
	return err
}

func (h *handlerPush) piece(t *testing.T, from mesh.ID, i int) {
	t.Helper()
	for off := int64(0); off < h.ip.Manifest.PieceLen(i); off += BlockSize {
		if err := h.block(from, i, off); err != nil {
			t.Fatalf("piece %d block at %d from %s: %v", i, off, from.Short(), err)
		}
	}
}

// TestPushHalfSentPieceOvertaken: a member half-way through sending a
// piece that another sender completes first is not held to account for
// it: time after time (a repair order racing the plan's relay does this),
// and it can still send new pieces, unscored. Its half-built piece is
// freed, not left counting against it.
func TestPushHalfSentPieceOvertaken(t *testing.T) {
	const pieces = 40
	h := newHandlerPush(t, pieces, 2*BlockSize)
	m1 := fuzzMembers[1]
	for i := range 2 * maxAssemblies {
		if err := h.block(m1, i, 0); err != nil {
			t.Fatalf("piece %d, first block from member 1: %v", i, err)
		}
		h.piece(t, h.src, i) // the source's copy lands first
		if err := h.block(m1, i, BlockSize); err != nil {
			t.Fatalf("piece %d, the rest from member 1 after the source's: %v", i, err)
		}
	}
	h.piece(t, m1, pieces-1)
	if !h.sink.held.Has(pieces-1) || h.sink.bad != 0 {
		t.Errorf("member 1's new piece held %v, %d bad", h.sink.held.Has(pieces-1), h.sink.bad)
	}
	if n := h.node.penalties.Load(); n != 0 {
		t.Errorf("an honest member was scored down %d times", n)
	}
	if n := len(h.ip.asm); n != 0 {
		t.Errorf("%d half-built pieces left", n)
	}
}

// TestPushPieceSentAgainFromTheStart: a sender whose sending of a piece
// failed half-way (its request timed out, the answer was lost) starts the
// piece again from its first block: the receiver takes it, unscored.
func TestPushPieceSentAgainFromTheStart(t *testing.T) {
	h := newHandlerPush(t, 4, 2*BlockSize)
	m2 := fuzzMembers[2]
	if err := h.block(m2, 1, 0); err != nil {
		t.Fatal(err)
	}
	h.piece(t, m2, 1)
	if !h.sink.held.Has(1) || h.sink.bad != 0 || h.node.penalties.Load() != 0 {
		t.Errorf("piece sent again: held %v, %d bad, %d penalties", h.sink.held.Has(1), h.sink.bad, h.node.penalties.Load())
	}
	// Out of order is still refused: a block past the start of a piece
	// it has not begun.
	if err := h.block(m2, 2, BlockSize); err == nil || h.node.penalties.Load() != 1 {
		t.Errorf("a block out of order: %v, %d penalties", err, h.node.penalties.Load())
	}
}

// TestPushHalfSentBytesBounded: the pieces half-sent to a receiver by all
// the members of a push together are bounded (a source may name 255
// members, each within its own bound): past it a new piece is refused,
// without scoring its honest sender down, and taken again once room is
// made.
func TestPushHalfSentBytesBounded(t *testing.T) {
	h := newHandlerPush(t, 8, 2*BlockSize)
	h.p.maxBuffered = 4 * 2 * BlockSize
	m1, m2 := fuzzMembers[1], fuzzMembers[2]
	for i := range 3 {
		if err := h.block(m1, i, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.block(m2, 3, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.block(m2, 4, 0); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a fifth half-sent piece over the bound: %v, want ErrTooLarge", err)
	}
	if err := h.block(m1, 0, BlockSize); err != nil { // piece 0 is whole: room again
		t.Fatal(err)
	}
	h.piece(t, m2, 4)
	if !h.sink.held.Has(0) || !h.sink.held.Has(4) || h.node.penalties.Load() != 0 {
		t.Errorf("held 0: %v, 4: %v; %d penalties", h.sink.held.Has(0), h.sink.held.Has(4), h.node.penalties.Load())
	}
}

// TestPushHalfSentPiecesExpire: hostile members start pieces until the
// half-sent bound is full and send no more of them. Before BlockTimeout
// an honest sender's new piece is refused (busy: the hostile pieces
// could still be finished); after it the stale ones are dropped and the
// honest piece gets in. Before, they stayed for the whole push, and
// the receiver answered every sender busy for good.
func TestPushHalfSentPiecesExpire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHandlerPush(t, 16, 2*BlockSize)
		h.p.maxBuffered = 8 * 2 * BlockSize
		m1, m2 := fuzzMembers[1], fuzzMembers[2]
		for i := range 8 {
			if err := h.block([]mesh.ID{m1, m2}[i%2], i, 0); err != nil {
				t.Fatalf("hostile piece %d: %v", i, err)
			}
		}
		if err := h.block(h.src, 8, 0); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("the honest piece while the buffer is full: %v, want ErrTooLarge", err)
		}
		time.Sleep(h.p.cfg.BlockTimeout - time.Second)
		if err := h.block(h.src, 8, 0); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("the honest piece before BlockTimeout: %v, want ErrTooLarge", err)
		}
		time.Sleep(2 * time.Second)
		for i := 8; i < 16; i++ {
			h.piece(t, h.src, i)
		}
		for i := 8; i < 16; i++ {
			if !h.sink.held.Has(i) {
				t.Errorf("honest piece %d not held", i)
			}
		}
		if h.ip.asmBytes != 0 || len(h.ip.asm) != 0 {
			t.Errorf("%d half-sent pieces (%d bytes) left", len(h.ip.asm), h.ip.asmBytes)
		}
	})
}

// TestPushExpiredPieceNotPenalized: an honest sender whose uplink is
// slow (its next block waits for its upload longer than BlockTimeout)
// has its half-sent piece dropped as stale when the buffer fills. Its
// next block is then refused (it starts the piece over later), not
// scored as out of order: the drop was this node's, not an offence.
// A block after a piece never begun still is.
func TestPushExpiredPieceNotPenalized(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHandlerPush(t, 16, 2*BlockSize)
		h.p.maxBuffered = 8 * 2 * BlockSize
		m1, m2 := fuzzMembers[1], fuzzMembers[2]
		if err := h.block(h.src, 0, 0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(h.p.cfg.BlockTimeout + time.Second)
		for i := 1; i < 8; i++ {
			if err := h.block([]mesh.ID{m1, m2}[i%2], i, 0); err != nil {
				t.Fatalf("piece %d: %v", i, err)
			}
		}
		// The buffer is full: the honest sender's stale piece goes.
		if err := h.block(m1, 8, 0); err != nil {
			t.Fatalf("piece 8 once the stale piece is dropped: %v", err)
		}
		if err := h.block(h.src, 0, BlockSize); err == nil {
			t.Fatal("the rest of a dropped piece was taken")
		}
		if n := h.node.penalties.Load(); n != 0 {
			t.Fatalf("the slow honest sender was penalized %d times for a piece this node dropped", n)
		}
		if err := h.block(m2, 9, BlockSize); err == nil || h.node.penalties.Load() != 1 {
			t.Errorf("a block of a piece never begun: %v, %d penalties", err, h.node.penalties.Load())
		}
	})
}

// TestPushRelayAskedOnlyBySource: in a matrix push a member cannot have
// this node relay what it sends (that would make it upload every piece to
// all the others again): such a block is refused and scored down; the
// source's is taken and relayed to every other member.
func TestPushRelayAskedOnlyBySource(t *testing.T) {
	h := newHandlerPush(t, 4, MinPieceSize)
	frame := func(from mesh.ID, i int) error {
		b := make([]byte, blockHeader+MinPieceSize)
		b[0] = pushBlock
		copy(b[1:], h.ip.Push[:])
		binary.BigEndian.PutUint32(b[17:], uint32(i))
		b[25] = relayFlag
		copy(b[blockHeader:], h.data[h.ip.Manifest.PieceOffset(i):])
		_, err := h.p.ServeMesh(context.Background(), &mesh.Message{From: from, Protocol: ProtoPush, Payload: b, Request: true, Channel: mesh.Bulk})
		return err
	}
	if err := frame(fuzzMembers[1], 1); !errors.Is(err, ErrBadFrame) || h.node.penalties.Load() != 1 {
		t.Errorf("a member asking for relays: %v, %d penalties", err, h.node.penalties.Load())
	}
	if h.sink.held.Has(1) || len(h.ip.queue) != 0 {
		t.Errorf("the member's block was taken: held %v, %d relays queued", h.sink.held.Has(1), len(h.ip.queue))
	}
	if err := frame(h.src, 0); err != nil {
		t.Fatal(err)
	}
	if len(h.ip.queue) != len(fuzzMembers)-1 {
		t.Errorf("the source's block: %d relays queued, want %d", len(h.ip.queue), len(fuzzMembers)-1)
	}
}
