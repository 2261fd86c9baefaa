package reslist

import (
	"slices"
	"sync"
)

// Key orders and names an entry: the MD5 of a resource.
type Key = [16]byte

// Summary is what a node advertises of a list in its directory record:
// enough for others to know whether the copy they cached is still current.
type Summary struct {
	Count   int    `json:"count"`
	Version uint64 `json:"version"`
}

// Page is a page of a list: its version when the page was cut, its entries
// in key order, and whether more follow.
type Page[E any] struct {
	Version uint64
	Entries []E
	More    bool
}

// Local is a node's own list. Its version is the XOR of a hash of every
// entry: the same entries give the same version on any run, so a peer's
// cache keyed by it stays valid across restarts, and any change gives
// another. An entry may be held by several owners (bits of a uint8: parts
// of the node that list it); it goes when the last lets go.
type Local[E comparable] struct {
	key  func(E) Key
	hash func(E) uint64

	mu      sync.Mutex
	items   map[Key]item[E]
	version uint64
	sorted  []E // by key; nil when items changed since
}

type item[E any] struct {
	e      E
	owners uint8
}

// NewLocal makes an empty list of entries named by key and hashed (for
// the version) by hash; hash must cover every field peers see.
func NewLocal[E comparable](key func(E) Key, hash func(E) uint64) *Local[E] {
	return &Local[E]{key: key, hash: hash, items: make(map[Key]item[E])}
}

// Put adds or replaces an entry held by owner.
func (l *Local[E]) Put(owner uint8, e E) {
	k := l.key(e)
	l.mu.Lock()
	defer l.mu.Unlock()
	it, ok := l.items[k]
	if ok && it.e == e && it.owners&owner != 0 {
		return
	}
	if ok {
		l.version ^= l.hash(it.e)
	}
	it.e = e
	it.owners |= owner
	l.items[k] = it
	l.version ^= l.hash(e)
	l.sorted = nil
}

// Remove drops owner's hold on k; the entry goes when nobody holds it.
func (l *Local[E]) Remove(owner uint8, k Key) {
	l.mu.Lock()
	defer l.mu.Unlock()
	it, ok := l.items[k]
	if !ok || it.owners&owner == 0 {
		return
	}
	if it.owners &^= owner; it.owners != 0 {
		l.items[k] = it
		return
	}
	delete(l.items, k)
	l.version ^= l.hash(it.e)
	l.sorted = nil
}

// Get returns the entry named k.
func (l *Local[E]) Get(k Key) (E, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	it, ok := l.items[k]
	return it.e, ok
}

// Held returns the entry named k and the owners that hold it.
func (l *Local[E]) Held(k Key) (E, uint8, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	it, ok := l.items[k]
	return it.e, it.owners, ok
}

// Summary is the count and version to advertise.
func (l *Local[E]) Summary() Summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Summary{Count: len(l.items), Version: l.version}
}

// Entries returns the list in key order and its version; the caller must
// not change the slice.
func (l *Local[E]) Entries() ([]E, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sorted == nil {
		l.sorted = make([]E, 0, len(l.items))
		for _, it := range l.items {
			l.sorted = append(l.sorted, it.e)
		}
		slices.SortFunc(l.sorted, func(a, b E) int { return CompareKey(l.key(a), l.key(b)) })
	}
	return l.sorted, l.version
}

// Page is up to limit entries with keys after after.
func (l *Local[E]) Page(after Key, limit int) Page[E] {
	all, version := l.Entries()
	i, _ := slices.BinarySearchFunc(all, after, func(e E, k Key) int { return CompareKey(l.key(e), k) })
	if i < len(all) && l.key(all[i]) == after {
		i++
	}
	end := min(i+limit, len(all))
	return Page[E]{Version: version, Entries: slices.Clone(all[i:end]), More: end < len(all)}
}

// CompareKey orders keys bytewise.
func CompareKey(a, b Key) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// Find returns the entry named k in a list sorted by key.
func Find[E any](entries []E, key func(E) Key, k Key) (E, bool) {
	i, ok := slices.BinarySearchFunc(entries, k, func(e E, k Key) int { return CompareKey(key(e), k) })
	if !ok {
		var zero E
		return zero, false
	}
	return entries[i], true
}
