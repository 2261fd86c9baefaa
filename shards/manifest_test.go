package shards

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"math/rand/v2"
	"testing"
)

func TestPieceSizeFor(t *testing.T) {
	for _, tc := range []struct {
		size, want int64
	}{
		{0, MinPieceSize},
		{1, MinPieceSize},
		{MinPieceSize * TargetPieces, MinPieceSize},
		{MinPieceSize*TargetPieces + 1, 2 * MinPieceSize},
		{1 << 30, 512 << 10},
		{MaxFileSize, MaxPieceSize},
	} {
		got := PieceSizeFor(tc.size)
		if got != tc.want {
			t.Errorf("PieceSizeFor(%d) = %d, want %d", tc.size, got, tc.want)
		}
		if n := (tc.size + got - 1) / got; n > MaxPieces {
			t.Errorf("size %d: %d pieces, over %d", tc.size, n, MaxPieces)
		}
	}
}

func TestBuildManifest(t *testing.T) {
	for _, size := range []int64{0, 1, MinPieceSize - 1, MinPieceSize, MinPieceSize + 1, 3*MinPieceSize + 17, MinPieceSize*TargetPieces + 5} {
		data := make([]byte, size)
		rand.NewChaCha8([32]byte{byte(size), byte(size >> 8), byte(size >> 16)}).Read(data)
		var last int64
		m, id, err := BuildManifest(context.Background(), bytes.NewReader(data), size, func(done int64) { last = done })
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if id != md5.Sum(data) {
			t.Errorf("size %d: id %s, want md5 of the data", size, id)
		}
		if size > 0 && last != size {
			t.Errorf("size %d: last progress %d", size, last)
		}
		var joined int64
		for i := range m.NumPieces() {
			off, n := m.PieceOffset(i), m.PieceLen(i)
			if !m.Verify(i, data[off:off+n]) {
				t.Fatalf("size %d: piece %d does not verify", size, i)
			}
			joined += n
		}
		if joined != size {
			t.Errorf("size %d: pieces cover %d bytes", size, joined)
		}
		got, err := DecodeManifest(m.Encode())
		if err != nil {
			t.Fatalf("size %d: decode: %v", size, err)
		}
		if got.Hash() != m.Hash() || got.Size != size {
			t.Errorf("size %d: round trip changed the manifest", size)
		}
	}
}

func TestBuildManifestShortRead(t *testing.T) {
	_, _, err := BuildManifest(context.Background(), bytes.NewReader(make([]byte, 100)), 200, nil)
	if err == nil {
		t.Fatal("a file shorter than its size built a manifest")
	}
	_, _, err = BuildManifest(context.Background(), bytes.NewReader(nil), MaxFileSize+1, nil)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over MaxFileSize: %v, want ErrTooLarge", err)
	}
}

func TestDecodeManifestRejects(t *testing.T) {
	m, _, err := BuildManifest(context.Background(), bytes.NewReader(make([]byte, 3*MinPieceSize)), 3*MinPieceSize, nil)
	if err != nil {
		t.Fatal(err)
	}
	good := m.Encode()
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for name, b := range map[string][]byte{
		"empty":       nil,
		"magic":       mut(func(b []byte) []byte { b[0] = 'X'; return b }),
		"truncated":   good[:len(good)-1],
		"extra":       append(append([]byte(nil), good...), 0),
		"piece size":  mut(func(b []byte) []byte { b[14]++; return b }),
		"piece count": mut(func(b []byte) []byte { b[19]++; return b }),
		"size":        mut(func(b []byte) []byte { b[11] = 0xff; b[10] = 0xff; return b }),
		"huge":        make([]byte, MaxManifestSize+1),
	} {
		if _, err := DecodeManifest(b); !errors.Is(err, ErrBadManifest) {
			t.Errorf("%s: %v, want ErrBadManifest", name, err)
		}
	}
}

func FuzzDecodeManifest(f *testing.F) {
	m, _, _ := BuildManifest(context.Background(), bytes.NewReader(make([]byte, 2*MinPieceSize+1)), 2*MinPieceSize+1, nil)
	f.Add(m.Encode())
	f.Add([]byte("CNM1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeManifest(b)
		if err != nil {
			return
		}
		if !bytes.Equal(m.Encode(), b) {
			t.Fatal("a decoded manifest does not encode to its input")
		}
	})
}
