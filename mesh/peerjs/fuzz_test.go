package peerjs

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzUnpack: any bytes decode or fail cleanly, and what decodes packs to
// bytes that decode to a value that packs the same (packing normalises,
// as the client does: -0 and whole floats pack as integers).
func FuzzUnpack(f *testing.F) {
	f.Add([]byte{0x82, 0xb2, 'o', 'p', 0xb1, 'x', 0xa1, 'n', 0x05})
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Unpack(b)
		if err != nil {
			return
		}
		p, err := Pack(v)
		if err != nil {
			t.Fatalf("Pack of an unpacked value: %v", err)
		}
		v2, err := Unpack(p)
		if err != nil {
			t.Fatalf("Unpack(Pack(v)): %v", err)
		}
		p2, err := Pack(v2)
		if err != nil || !bytes.Equal(p, p2) {
			t.Fatalf("packing is not stable: % x then % x (%v)", p, p2, err)
		}
	})
}

// FuzzDecoder feeds a stream of messages, split from the input, to a
// binary Decoder: it never panics and keeps its bounds.
func FuzzDecoder(f *testing.F) {
	c1, _ := Pack(map[string]any{"__peerData": int64(1), "n": int64(0), "total": int64(2), "data": []byte{0x81, 0xb1}})
	c2, _ := Pack(map[string]any{"__peerData": int64(1), "n": int64(1), "total": int64(2), "data": []byte{'a', 0x01}})
	f.Add(append(append([]byte{byte(len(c1))}, c1...), append([]byte{byte(len(c2))}, c2...)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 4 << 10
		dec, _ := NewDecoder(Binary, max)
		for len(b) > 0 {
			n := min(int(b[0]), len(b)-1)
			msg := b[1 : 1+n]
			b = b[1+n:]
			out, err := dec.Decode(msg)
			if err != nil {
				return
			}
			if out != nil && !json.Valid(out) {
				t.Fatalf("Decode gave invalid JSON %q", out)
			}
			if len(dec.partial) > maxPartial {
				t.Fatalf("%d partial messages", len(dec.partial))
			}
		}
	})
}
