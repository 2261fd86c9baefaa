package shards

import "math/bits"

// Bitfield records which pieces are held: bit i (most significant first in
// each byte, as BitTorrent has it) is piece i.
type Bitfield []byte

// NewBitfield makes an empty bitfield for n pieces.
func NewBitfield(n int) Bitfield { return make(Bitfield, (n+7)/8) }

// Has reports whether piece i is set; out of range is false.
func (b Bitfield) Has(i int) bool {
	return i >= 0 && i/8 < len(b) && b[i/8]&(0x80>>(i%8)) != 0
}

// HasRange reports whether every piece from first to last is set.
func (b Bitfield) HasRange(first, last int) bool {
	for i := first; i <= last; i++ {
		if !b.Has(i) {
			return false
		}
	}
	return first <= last
}

// Set marks piece i; out of range is ignored.
func (b Bitfield) Set(i int) {
	if i >= 0 && i/8 < len(b) {
		b[i/8] |= 0x80 >> (i % 8)
	}
}

// Clear unmarks piece i.
func (b Bitfield) Clear(i int) {
	if i >= 0 && i/8 < len(b) {
		b[i/8] &^= 0x80 >> (i % 8)
	}
}

// Count is the number of pieces set.
func (b Bitfield) Count() int {
	n := 0
	for _, x := range b {
		n += bits.OnesCount8(x)
	}
	return n
}

// Valid reports whether b fits n pieces: the right length and no bit set
// past piece n-1.
func (b Bitfield) Valid(n int) bool {
	if len(b) != (n+7)/8 {
		return false
	}
	if r := n % 8; r != 0 && b[len(b)-1]&(0xff>>r) != 0 {
		return false
	}
	return true
}
