package peerjs

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestPackUnpackRoundTrip(t *testing.T) {
	long := strings.Repeat("é", 40000)
	cases := []any{
		nil, true, false, int64(0), int64(127), int64(-32), int64(-33), int64(255), int64(-129),
		int64(65535), int64(-32769), int64(1 << 31), int64(-1 << 31), int64(1 << 40), int64(-1 << 40),
		1.5, -2.25, "", "hi", long, []byte{}, []byte("0123456789abcdefg"), bytes.Repeat([]byte{7}, 70000),
		[]any{int64(1), "two", []any{nil}}, map[string]any{"op": "history", "limit": int64(50), "n": map[string]any{}},
	}
	for _, v := range cases {
		b, err := Pack(v)
		if err != nil {
			t.Fatalf("Pack(%T): %v", v, err)
		}
		got, err := Unpack(b)
		if err != nil {
			t.Fatalf("Unpack(Pack(%T)): %v", v, err)
		}
		want, _ := json.Marshal(v)
		have, _ := json.Marshal(got)
		if !bytes.Equal(want, have) {
			t.Fatalf("round trip of %T: got %.80s, want %.80s", v, have, want)
		}
	}
}

// TestUnpackClientBytes checks bytes as peerjs-js-binarypack 1.5 packs
// them (worked out from its source): its string codes differ from
// MessagePack's.
func TestUnpackClientBytes(t *testing.T) {
	cases := []struct {
		in   []byte
		want string
	}{
		{[]byte{0x82, 0xb2, 'o', 'p', 0xb8, 'c', 'h', 'a', 'n', 'n', 'e', 'l', 's', 0xb5, 'l', 'i', 'm', 'i', 't', 0xcc, 200}, `{"limit":200,"op":"channels"}`},
		{append([]byte{0xd8, 0, 16}, "0123456789abcdef"...), `"0123456789abcdef"`},
		{[]byte{0xa3, 1, 2, 3}, `"AQID"`},
		{[]byte{0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0}, `1.5`},
		{[]byte{0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}, `-2`},
		{[]byte{0x81, 0x01, 0xc3}, `{"1":true}`},
		{[]byte{0xc1}, `null`},
	}
	for _, c := range cases {
		v, err := Unpack(c.in)
		if err != nil {
			t.Fatalf("Unpack(% x): %v", c.in, err)
		}
		got, _ := json.Marshal(v)
		if string(got) != c.want {
			t.Fatalf("Unpack(% x) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestUnpackRejects(t *testing.T) {
	deep := bytes.Repeat([]byte{0x91}, MaxDepth+2)
	cases := map[string][]byte{
		"empty":              {},
		"truncated string":   {0xb5, 'a'},
		"huge array claim":   {0xdd, 0xff, 0xff, 0xff, 0xff, 0},
		"huge map claim":     {0xdf, 0x7f, 0xff, 0xff, 0xff, 0, 0},
		"huge bytes claim":   {0xdb, 0xff, 0xff, 0xff, 0xff},
		"deep":               append(deep, 0xc0),
		"trailing":           {0xc0, 0xc0},
		"unknown type":       {0xc4},
		"string not utf8":    {0xb2, 0xff, 0xfe},
		"truncated uint64":   {0xcf, 1, 2},
		"map missing value":  {0x81, 0xb1, 'a'},
		"array missing item": {0x92, 0xc0},
	}
	for name, b := range cases {
		if _, err := Unpack(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Unpack(% x) = %v, want ErrMalformed", name, b, err)
		}
	}
}

func TestChunkedRoundTrip(t *testing.T) {
	text := strings.Repeat("x", 3*ChunkMTU)
	v, _ := json.Marshal(map[string]any{"op": "post", "text": text})
	enc, err := NewEncoder(Binary)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := enc.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 4 {
		t.Fatalf("%d messages, want 4 chunks", len(msgs))
	}
	dec, _ := NewDecoder(Binary, 64<<10)
	// Chunks may come out of order on an unordered channel.
	order := []int{2, 0, 3, 1}
	var got []byte
	for i, k := range order {
		out, err := dec.Decode(msgs[k])
		if err != nil {
			t.Fatalf("chunk %d: %v", k, err)
		}
		if i < len(order)-1 && out != nil {
			t.Fatalf("complete after %d chunks", i+1)
		}
		got = out
	}
	var m map[string]string
	if err := json.Unmarshal(got, &m); err != nil || m["text"] != text || m["op"] != "post" {
		t.Fatalf("reassembled %.60s (%v)", got, err)
	}
	if len(dec.partial) != 0 {
		t.Fatalf("%d partial messages left", len(dec.partial))
	}
}

func chunkMsg(t *testing.T, id any, n, total int64, data []byte) []byte {
	t.Helper()
	b, err := Pack(map[string]any{"__peerData": id, "n": n, "total": total, "data": data})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecoderRejects(t *testing.T) {
	const max = 64 << 10
	part := bytes.Repeat([]byte{0xa0}, ChunkMTU)
	closeMsg, _ := Pack(map[string]any{"__peerData": map[string]any{"type": "close"}})
	cases := []struct {
		name string
		ser  string
		msgs [][]byte
		want error
	}{
		{"json not json", JSON, [][]byte{[]byte(`{"op":`)}, ErrMalformed},
		{"json not utf8", JSON, [][]byte{{'"', 0xff, '"'}}, ErrMalformed},
		{"json oversized", JSON, [][]byte{[]byte(`"` + strings.Repeat("a", max) + `"`)}, ErrTooLarge},
		{"json close", JSON, [][]byte{[]byte(`{"__peerData":{"type":"close"}}`)}, ErrClosed},
		{"binary close", Binary, [][]byte{closeMsg}, ErrClosed},
		{"binary oversized", Binary, [][]byte{make([]byte, max+1)}, ErrTooLarge},
		{"chunk n out of range", Binary, [][]byte{chunkMsg(t, 1, 3, 3, nil)}, ErrMalformed},
		{"chunk total too big", Binary, [][]byte{chunkMsg(t, 1, 0, 1000, nil)}, ErrTooLarge},
		{"chunk twice", Binary, [][]byte{chunkMsg(t, 1, 0, 2, []byte{1}), chunkMsg(t, 1, 0, 2, []byte{1})}, ErrMalformed},
		{"chunk total changes", Binary, [][]byte{chunkMsg(t, 1, 0, 2, []byte{1}), chunkMsg(t, 1, 1, 3, []byte{1})}, ErrMalformed},
		{"chunk data too big", Binary, [][]byte{chunkMsg(t, 1, 0, 2, make([]byte, ChunkMTU+1))}, ErrTooLarge},
		{"chunk without data", Binary, [][]byte{mustPack(t, map[string]any{"__peerData": int64(1), "n": int64(0), "total": int64(1)})}, ErrMalformed},
		{"too many partial", Binary, [][]byte{chunkMsg(t, 1, 0, 2, nil), chunkMsg(t, 2, 0, 2, nil), chunkMsg(t, 3, 0, 2, nil),
			chunkMsg(t, 4, 0, 2, nil), chunkMsg(t, 5, 0, 2, nil)}, ErrTooLarge},
		{"reassembled not binarypack", Binary, [][]byte{chunkMsg(t, 9, 0, 1, []byte{0xc4})}, ErrMalformed},
		{"reassembled too many bytes", Binary, [][]byte{chunkMsg(t, 1, 0, 5, part), chunkMsg(t, 1, 1, 5, part),
			chunkMsg(t, 1, 2, 5, part), chunkMsg(t, 1, 3, 5, part), chunkMsg(t, 1, 4, 5, part)}, ErrTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dec, err := NewDecoder(c.ser, max)
			if err != nil {
				t.Fatal(err)
			}
			var last error
			for _, m := range c.msgs {
				if _, last = dec.Decode(m); last != nil {
					break
				}
			}
			if !errors.Is(last, c.want) {
				t.Fatalf("got %v, want %v", last, c.want)
			}
		})
	}
}

func mustPack(t *testing.T, v any) []byte {
	t.Helper()
	b, err := Pack(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSerializations(t *testing.T) {
	for _, s := range []string{"raw", "msgpack", "x"} {
		if _, err := NewDecoder(s, 1024); !errors.Is(err, ErrSerialization) {
			t.Errorf("NewDecoder(%q): %v, want ErrSerialization", s, err)
		}
	}
	enc, _ := NewEncoder(JSON)
	if _, err := enc.Encode([]byte(`"` + strings.Repeat("a", ChunkMTU) + `"`)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized JSON: %v", err)
	}
}
