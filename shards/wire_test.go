package shards

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestHaveRoundTrip(t *testing.T) {
	for _, n := range []int{1, 7, 8, 9, 2048} {
		for _, fill := range []string{"none", "all", "some"} {
			b := NewBitfield(n)
			for i := range n {
				if fill == "all" || (fill == "some" && i%3 == 0 && n > 1) {
					b.Set(i)
				}
			}
			got, err := decodeHave(encodeHave(b, n), n)
			if err != nil {
				t.Fatalf("n=%d %s: %v", n, fill, err)
			}
			if !bytes.Equal(got, b) {
				t.Fatalf("n=%d %s: round trip changed the bitfield", n, fill)
			}
		}
	}
	bad := NewBitfield(9)
	bad[1] = 0x01 // bit 15, past piece 8
	if _, err := decodeHave(append([]byte{haveSome}, bad...), 9); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("bit past the end: %v", err)
	}
	if _, err := decodeHave([]byte{haveSome, 0}, 9); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("short bitfield: %v", err)
	}
}

func TestBlockReq(t *testing.T) {
	r := blockReq{ID: MD5{9}, Piece: 3, Off: 1 << 18, Len: BlockSize}
	got, err := decodeBlockReq(encodeBlockReq(r))
	if err != nil || got != r {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, l := range []uint32{0, BlockSize + 1} {
		r.Len = l
		if _, err := decodeBlockReq(encodeBlockReq(r)); !errors.Is(err, ErrBadFrame) {
			t.Errorf("len %d: %v", l, err)
		}
	}
	m := &Manifest{Size: MinPieceSize + 10, PieceSize: MinPieceSize, Pieces: make([]MD5, 2)}
	for _, tc := range []struct {
		r  blockReq
		ok bool
	}{
		{blockReq{Piece: 0, Off: 0, Len: MinPieceSize}, true},
		{blockReq{Piece: 0, Off: 1, Len: MinPieceSize}, false},
		{blockReq{Piece: 1, Off: 0, Len: 10}, true},
		{blockReq{Piece: 1, Off: 5, Len: 6}, false},
		{blockReq{Piece: 2, Off: 0, Len: 1}, false},
		{blockReq{Piece: 1 << 31, Off: 0, Len: 1}, false},
	} {
		if got := blockInPiece(m, tc.r); got != tc.ok {
			t.Errorf("%+v: in piece %v, want %v", tc.r, got, tc.ok)
		}
	}
}

func TestListPage(t *testing.T) {
	p := listPage{Version: 42, More: true}
	for i := range MaxListPage {
		p.Entries = append(p.Entries, Entry{
			ID:   MD5{byte(i >> 8), byte(i)},
			Size: int64(i) << 20,
			Name: fmt.Sprintf("%0*d", MaxNameLen, i),
			Type: string(bytes.Repeat([]byte("t"), MaxTypeLen)),
		})
	}
	b, err := encodeListPage(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxListPageSize || len(b) > 256<<10 {
		t.Fatalf("a full page is %d bytes", len(b))
	}
	got, err := decodeListPage(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Fatal("round trip changed the page")
	}
	p.Entries[1], p.Entries[2] = p.Entries[2], p.Entries[1]
	b, _ = encodeListPage(p)
	if _, err := decodeListPage(b); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("entries out of order: %v", err)
	}
	p.Entries = []Entry{{Name: "../x"}}
	b, _ = encodeListPage(p)
	if _, err := decodeListPage(b); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("bad name: %v", err)
	}
}

// TestListPageInternal: the internal mark travels as a MIME parameter on
// the type, within MaxTypeLen, so that a node that predates it decodes
// the page (its type is printable and fits); a page without the mark, as
// such a node sends, decodes as the user's.
func TestListPageInternal(t *testing.T) {
	long := strings.Repeat("t", maxBaseType)
	p := listPage{Version: 1, Entries: []Entry{
		{ID: MD5{1}, Name: "0123.jpg", Type: "image/jpeg", Internal: true},
		{ID: MD5{2}, Name: "x.bin", Type: long, Internal: true},
		{ID: MD5{3}, Name: "song.mp3", Type: "audio/mpeg"},
	}}
	b, err := encodeListPage(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("image/jpeg"+internalParam)) {
		t.Fatal("the mark is not on the type")
	}
	got, err := decodeListPage(b)
	if err != nil || !reflect.DeepEqual(got, p) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, e := range p.Entries {
		if wt := wireType(e); len(wt) > MaxTypeLen || !printable(wt) {
			t.Fatalf("type %q would not decode on an older node", wt)
		}
	}
	old := listPage{Version: 1, Entries: []Entry{{ID: MD5{1}, Name: "a.jpg", Type: "image/jpeg"}}}
	b, _ = encodeListPage(old)
	if got, err := decodeListPage(b); err != nil || got.Entries[0].Internal || got.Entries[0].Type != "image/jpeg" {
		t.Fatalf("an unmarked page: %+v, %v", got, err)
	}
	if typ := typeFor("x.lrc"); len(typ) > maxBaseType {
		t.Fatalf("typeFor leaves no room for the mark: %q", typ)
	}
}

func FuzzDecodeListPage(f *testing.F) {
	b, _ := encodeListPage(listPage{Version: 1, Entries: []Entry{{ID: MD5{1}, Size: 3, Name: "a.txt", Type: "text/plain"}}})
	f.Add(b)
	b, _ = encodeListPage(listPage{Version: 2, Entries: []Entry{{ID: MD5{1}, Size: 3, Name: "c.jpg", Type: "image/jpeg", Internal: true}, {ID: MD5{2}, Name: "d", Type: internalParam}}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeListPage(b)
		if err != nil {
			return
		}
		again, err := encodeListPage(p)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("a decoded page does not encode to its input: %v", err)
		}
	})
}

func FuzzDecodeHave(f *testing.F) {
	f.Add([]byte{haveSome, 0xa0}, 3)
	f.Add([]byte{haveAll}, 10)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n < 0 || n > MaxPieces {
			return
		}
		bf, err := decodeHave(b, n)
		if err != nil {
			return
		}
		if !bf.Valid(n) {
			t.Fatal("decoded bitfield does not fit")
		}
	})
}

func FuzzDecodeBlockReq(f *testing.F) {
	f.Add(encodeBlockReq(blockReq{Len: 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeBlockReq(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeBlockReq(r), b) {
			t.Fatal("round trip")
		}
	})
}
