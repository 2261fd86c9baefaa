package recon

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"math/bits"
	"slices"
	"sort"
)

// Item is one element of a reconciled set: a message's time (unix
// milliseconds) and ID. Items are ordered by (Time, ID).
type Item struct {
	Time int64
	ID   [32]byte
}

func compareItems(a, b Item) int {
	if a.Time != b.Time {
		if a.Time < b.Time {
			return -1
		}
		return 1
	}
	return bytes.Compare(a.ID[:], b.ID[:])
}

// sum256 is a 256-bit unsigned integer, little-endian limbs.
type sum256 [4]uint64

func idSum(id *[32]byte) sum256 {
	var s sum256
	for k := range s {
		s[k] = binary.LittleEndian.Uint64(id[8*k:])
	}
	return s
}

func (a sum256) add(b sum256) sum256 {
	var c uint64
	for k := range a {
		a[k], c = bits.Add64(a[k], b[k], c)
	}
	return a
}

func (a sum256) sub(b sum256) sum256 {
	var c uint64
	for k := range a {
		a[k], c = bits.Sub64(a[k], b[k], c)
	}
	return a
}

// fingerprint is SHA-256(sum mod 2^256, little-endian ‖ varint count),
// truncated by the caller.
func fingerprint(sum sum256, count int) [32]byte {
	var buf [32 + binary.MaxVarintLen64]byte
	for k, l := range sum {
		binary.LittleEndian.PutUint64(buf[8*k:], l)
	}
	n := binary.PutUvarint(buf[32:], uint64(count))
	return sha256.Sum256(buf[:32+n])
}

// Set is a sorted, deduplicated, immutable view of one side's items, with
// prefix sums of the IDs so that the fingerprint of any range costs O(1).
// A Set may be shared by any number of sessions and goroutines.
type Set struct {
	items []Item
	sums  []sum256 // sums[i] = sum of items[:i].ID
}

// NewSet sorts and deduplicates a copy of items. It costs O(n log n) time
// and about 72 bytes per item.
func NewSet(items []Item) *Set {
	it := slices.Clone(items)
	slices.SortFunc(it, compareItems)
	it = slices.CompactFunc(it, func(a, b Item) bool { return a == b })
	s := &Set{items: it, sums: make([]sum256, len(it)+1)}
	for i := range it {
		s.sums[i+1] = s.sums[i].add(idSum(&it[i].ID))
	}
	return s
}

// Len is the number of distinct items.
func (s *Set) Len() int { return len(s.items) }

// fp is the fingerprint of items[i:j].
func (s *Set) fp(i, j int) [32]byte {
	return fingerprint(s.sums[j].sub(s.sums[i]), j-i)
}

// search returns the first index k >= from with items[k] >= b.
func (s *Set) search(b bound, from int) int {
	if b.kind == boundInf {
		return len(s.items)
	}
	return from + sort.Search(len(s.items)-from, func(k int) bool {
		return !b.above(s.items[from+k])
	})
}
