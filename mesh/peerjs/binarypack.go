package peerjs

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strconv"
	"unicode/utf8"
)

// MaxDepth bounds how deeply arrays and maps may nest in a BinaryPack
// value, so that a small hostile message cannot exhaust the stack.
const MaxDepth = 32

// Unpack decodes one BinaryPack value (the peerjs-js-binarypack dialect of
// MessagePack: 0xa0-0xaf, 0xda and 0xdb are byte strings; 0xb0-0xbf, 0xd8
// and 0xd9 are UTF-8 strings). Results are nil, bool, int64, float64,
// string, []byte, []any and map[string]any (keys that are not strings are
// written as JavaScript would: numbers in decimal, true, false, null).
// Trailing bytes are an error. The caller bounds len(b); Unpack allocates
// at most a small multiple of it.
func Unpack(b []byte) (any, error) {
	u := unpacker{b: b}
	v, err := u.value(0)
	if err != nil {
		return nil, err
	}
	if u.i != len(b) {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b)-u.i)
	}
	return v, nil
}

type unpacker struct {
	b []byte
	i int
}

func (u *unpacker) read(n uint64) ([]byte, error) {
	if n > uint64(len(u.b)-u.i) {
		return nil, fmt.Errorf("%w: %d bytes wanted at offset %d, %d left", ErrMalformed, n, u.i, len(u.b)-u.i)
	}
	p := u.b[u.i : u.i+int(n)]
	u.i += int(n)
	return p, nil
}

func (u *unpacker) uint(size int) (uint64, error) {
	p, err := u.read(uint64(size))
	if err != nil {
		return 0, err
	}
	var v uint64
	for _, c := range p {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

func (u *unpacker) value(depth int) (any, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", ErrMalformed, MaxDepth)
	}
	t, err := u.uint(1)
	if err != nil {
		return nil, err
	}
	switch {
	case t < 0x80:
		return int64(t), nil
	case t >= 0xe0:
		return int64(t) - 0x100, nil
	case t >= 0xa0 && t <= 0xaf:
		return u.bytes(t - 0xa0)
	case t >= 0xb0 && t <= 0xbf:
		return u.string(t - 0xb0)
	case t >= 0x90 && t <= 0x9f:
		return u.array(t-0x90, depth)
	case t >= 0x80 && t <= 0x8f:
		return u.object(t-0x80, depth)
	}
	switch t {
	case 0xc0, 0xc1, 0xd4, 0xd5, 0xd6, 0xd7: // null, undefined and reserved (undefined in JS)
		return nil, nil
	case 0xc2:
		return false, nil
	case 0xc3:
		return true, nil
	case 0xca:
		v, err := u.uint(4)
		return float64(math.Float32frombits(uint32(v))), err
	case 0xcb:
		v, err := u.uint(8)
		return math.Float64frombits(v), err
	case 0xcc, 0xcd, 0xce, 0xcf:
		v, err := u.uint(1 << (t - 0xcc))
		if v > math.MaxInt64 {
			return float64(v), err
		}
		return int64(v), err
	case 0xd0:
		v, err := u.uint(1)
		return int64(int8(v)), err
	case 0xd1:
		v, err := u.uint(2)
		return int64(int16(v)), err
	case 0xd2:
		v, err := u.uint(4)
		return int64(int32(v)), err
	case 0xd3:
		v, err := u.uint(8)
		return int64(v), err
	}
	// Sized strings, byte strings, arrays and maps: 0xd8-0xdf.
	var n uint64
	if t >= 0xd8 && t <= 0xdf {
		size := 2
		if t&1 == 1 {
			size = 4
		}
		if n, err = u.uint(size); err != nil {
			return nil, err
		}
	}
	switch t {
	case 0xd8, 0xd9:
		return u.string(n)
	case 0xda, 0xdb:
		return u.bytes(n)
	case 0xdc, 0xdd:
		return u.array(n, depth)
	case 0xde, 0xdf:
		return u.object(n, depth)
	}
	return nil, fmt.Errorf("%w: unknown type byte 0x%02x", ErrMalformed, t)
}

func (u *unpacker) bytes(n uint64) ([]byte, error) {
	p, err := u.read(n)
	if err != nil {
		return nil, err
	}
	return append([]byte{}, p...), nil
}

func (u *unpacker) string(n uint64) (string, error) {
	p, err := u.read(n)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(p) {
		return "", fmt.Errorf("%w: string is not UTF-8", ErrMalformed)
	}
	return string(p), nil
}

// array and object check that each claimed element could have at least
// its one type byte left, so a short message cannot claim a huge count.
func (u *unpacker) array(n uint64, depth int) ([]any, error) {
	if n > uint64(len(u.b)-u.i) {
		return nil, fmt.Errorf("%w: array of %d with %d bytes left", ErrMalformed, n, len(u.b)-u.i)
	}
	out := make([]any, 0, n)
	for range n {
		v, err := u.value(depth + 1)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (u *unpacker) object(n uint64, depth int) (map[string]any, error) {
	if n > uint64(len(u.b)-u.i)/2 {
		return nil, fmt.Errorf("%w: map of %d with %d bytes left", ErrMalformed, n, len(u.b)-u.i)
	}
	out := make(map[string]any, n)
	for range n {
		k, err := u.value(depth + 1)
		if err != nil {
			return nil, err
		}
		v, err := u.value(depth + 1)
		if err != nil {
			return nil, err
		}
		out[keyString(k)] = v
	}
	return out, nil
}

// keyString is the property name JavaScript makes of a map key.
func keyString(k any) string {
	switch k := k.(type) {
	case string:
		return k
	case int64:
		return strconv.FormatInt(k, 10)
	case float64:
		return strconv.FormatFloat(k, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(k)
	case nil:
		return "null"
	}
	return fmt.Sprint(k)
}

// Pack encodes v as BinaryPack, as the PeerJS client would pack the same
// JavaScript value. v may hold nil, bool, any Go integer, float32,
// float64, string, []byte, []any and map[string]any (keys are packed in
// sorted order); integers pack in the smallest form, like the client's.
func Pack(v any) ([]byte, error) {
	return appendPack(nil, v, 0)
}

func appendPack(b []byte, v any, depth int) ([]byte, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("peerjs: pack: nested deeper than %d", MaxDepth)
	}
	switch v := v.(type) {
	case nil:
		return append(b, 0xc0), nil
	case bool:
		if v {
			return append(b, 0xc3), nil
		}
		return append(b, 0xc2), nil
	case int:
		return packInt(b, int64(v)), nil
	case int64:
		return packInt(b, v), nil
	case int32:
		return packInt(b, int64(v)), nil
	case uint64:
		if v > math.MaxInt64 {
			return binary.BigEndian.AppendUint64(append(b, 0xcf), v), nil
		}
		return packInt(b, int64(v)), nil
	case float32:
		return packFloat(b, float64(v)), nil
	case float64:
		return packFloat(b, v), nil
	case string:
		return append(packLen(b, uint64(len(v)), 0xb0, 0xd8), v...), nil
	case []byte:
		return append(packLen(b, uint64(len(v)), 0xa0, 0xda), v...), nil
	case []any:
		b = packLen(b, uint64(len(v)), 0x90, 0xdc)
		for _, e := range v {
			var err error
			if b, err = appendPack(b, e, depth+1); err != nil {
				return nil, err
			}
		}
		return b, nil
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = packLen(b, uint64(len(v)), 0x80, 0xde)
		for _, k := range keys {
			b = append(packLen(b, uint64(len(k)), 0xb0, 0xd8), k...)
			var err error
			if b, err = appendPack(b, v[k], depth+1); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
	return nil, fmt.Errorf("peerjs: pack: unsupported type %T", v)
}

// packLen writes a length header: fix+n below 16, else the 16-bit form
// (code16) or the 32-bit one (code16+1).
func packLen(b []byte, n uint64, fix, code16 byte) []byte {
	switch {
	case n <= 0x0f:
		return append(b, fix+byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, code16), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, code16+1), uint32(n))
	}
}

func packInt(b []byte, n int64) []byte {
	switch {
	case n >= -32 && n <= 0x7f:
		return append(b, byte(n))
	case n >= 0 && n <= 0xff:
		return append(b, 0xcc, byte(n))
	case n >= -128 && n <= 0x7f:
		return append(b, 0xd0, byte(n))
	case n >= 0 && n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(n))
	case n >= -32768 && n <= 0x7fff:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(n))
	case n >= 0 && n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(n))
	case n >= math.MinInt32 && n <= math.MaxInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(n))
}

// packFloat packs whole numbers as integers, as the client does (a
// JavaScript number has no separate integer type).
func packFloat(b []byte, f float64) []byte {
	if f == math.Trunc(f) && f >= -(1<<53) && f <= 1<<53 {
		return packInt(b, int64(f))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcb), math.Float64bits(f))
}
