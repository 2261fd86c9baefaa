package shards

import (
	"container/list"
	"math"
	"sync"
	"time"
)

// rateTau is the time constant of a rateMeter: the rate follows a change
// within a few seconds and does not flicker between blocks.
const rateTau = 2 * time.Second

// rateMeter measures bytes per second, decaying exponentially. The zero
// value is ready to use; it is safe for concurrent use.
type rateMeter struct {
	mu    sync.Mutex
	v     float64 // decayed bytes
	last  time.Time
	moved bool // bytes were added since takeMoved
}

func (m *rateMeter) decay(now time.Time) {
	if !m.last.IsZero() {
		if dt := now.Sub(m.last); dt > 0 {
			m.v *= math.Exp(-float64(dt) / float64(rateTau))
		}
	}
	m.last = now
}

func (m *rateMeter) add(n int, now time.Time) {
	m.mu.Lock()
	m.decay(now)
	m.v += float64(n)
	m.moved = true
	m.mu.Unlock()
}

func (m *rateMeter) rate(now time.Time) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.decay(now)
	return m.v / rateTau.Seconds()
}

// takeMoved reports whether bytes were added since the last call.
func (m *rateMeter) takeMoved() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	moved := m.moved
	m.moved = false
	return moved
}

// pieceCache keeps recently checked pieces, least recently used out first,
// so that the blocks of one piece cost one read and one MD5 together.
type pieceCache struct {
	mu    sync.Mutex
	limit int64
	size  int64
	lru   *list.List // of *cachedPiece, most recent first
	index map[pieceKey]*list.Element
}

type pieceKey struct {
	id    MD5
	piece uint32
}

type cachedPiece struct {
	key  pieceKey
	data []byte
}

func newPieceCache(limit int64) *pieceCache {
	return &pieceCache{limit: limit, lru: list.New(), index: make(map[pieceKey]*list.Element)}
}

// get returns a cached piece; the caller must not change it.
func (c *pieceCache) get(id MD5, piece uint32) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.index[pieceKey{id, piece}]
	if e == nil {
		return nil
	}
	c.lru.MoveToFront(e)
	return e.Value.(*cachedPiece).data
}

func (c *pieceCache) put(id MD5, piece uint32, data []byte) {
	if int64(len(data)) > c.limit {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := pieceKey{id, piece}
	if e := c.index[k]; e != nil {
		c.lru.MoveToFront(e)
		return
	}
	c.index[k] = c.lru.PushFront(&cachedPiece{key: k, data: data})
	c.size += int64(len(data))
	for c.size > c.limit {
		c.removeLocked(c.lru.Back())
	}
}

// drop forgets the pieces of a resource.
func (c *pieceCache) drop(id MD5) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.lru.Front(); e != nil; {
		next := e.Next()
		if e.Value.(*cachedPiece).key.id == id {
			c.removeLocked(e)
		}
		e = next
	}
}

func (c *pieceCache) removeLocked(e *list.Element) {
	p := c.lru.Remove(e).(*cachedPiece)
	delete(c.index, p.key)
	c.size -= int64(len(p.data))
}
