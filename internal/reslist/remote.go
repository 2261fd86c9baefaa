package reslist

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/catnest/catnest/mesh"
)

// RemoteConfig says how a Remote fetches, decodes and bounds other nodes'
// lists of one kind.
type RemoteConfig[E any] struct {
	// Name is the list's entry in directory records ("files", "music").
	Name string
	// What names the list in errors and penalties ("shards: catalog").
	What string
	// Key names an entry; pages are in key order.
	Key func(E) Key
	// Cost is the bytes an entry holds besides its slot in a slice (its
	// strings), counted against MaxBytes.
	Cost func(E) int64
	// Request asks node for the page of entries after after. It is called
	// on the fetching caller's goroutine and may block until ctx ends.
	Request func(ctx context.Context, node mesh.ID, after Key) ([]byte, error)
	// Decode decodes a page; an error scores the node down.
	Decode func([]byte) (Page[E], error)
	// Penalize scores down a node that sent a page that breaks the rules.
	Penalize func(node mesh.ID, reason string)
	// BadFrame is wrapped by the errors of pages that break the rules.
	BadFrame error
	// Cache is how many lists are kept; the least recently used go first.
	Cache int
	// MaxEntries bounds the entries taken from one node.
	MaxEntries int
	// MaxBytes bounds the memory all lists take together, cached and
	// being fetched: a list that does not fit is refused as it comes.
	MaxBytes int64
	// Timeout bounds the listing of one node's list, all its pages.
	Timeout time.Duration
	// MaxFetches bounds the lists Lists fetches at once (4 if 0).
	MaxFetches int
	Logger     *slog.Logger
}

// Remote caches other nodes' lists by node and version: a list is fetched
// from its own node alone, only when that node advertises a version not
// cached, and only when someone asks.
type Remote[E any] struct {
	cfg      RemoteConfig[E]
	slotSize int64

	mu     sync.Mutex
	byNode map[mesh.ID]*remoteList[E]
	// used is the bytes the cached lists and the fetches under way hold
	// (entriesCost), at most MaxBytes.
	used int64
	// fetching holds the fetches under way, so that callers asking at
	// once share one.
	fetching map[mesh.ID]*fetchCall[E]
}

type remoteList[E any] struct {
	version uint64
	entries []E // by key
	cost    int64
	used    time.Time
}

type fetchCall[E any] struct {
	version uint64
	done    chan struct{}
	entries []E
	err     error
}

// NewRemote makes an empty cache.
func NewRemote[E any](cfg RemoteConfig[E]) *Remote[E] {
	if cfg.MaxFetches <= 0 {
		cfg.MaxFetches = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var zero E
	return &Remote[E]{cfg: cfg, slotSize: int64(unsafe.Sizeof(zero)), byNode: make(map[mesh.ID]*remoteList[E]), fetching: make(map[mesh.ID]*fetchCall[E])}
}

// entriesCost is the memory entries take: their slice's capacity and
// what Cost counts of each.
func (rc *Remote[E]) entriesCost(entries []E) int64 {
	n := int64(cap(entries)) * rc.slotSize
	for _, e := range entries {
		n += rc.cfg.Cost(e)
	}
	return n
}

// Used is the bytes the cached lists and the fetches under way hold.
func (rc *Remote[E]) Used() int64 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.used
}

// reserve takes n bytes of the budget for a fetch under way, dropping the
// least recently used lists to make room; false if they do not fit.
func (rc *Remote[E]) reserve(n int64) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for rc.used+n > rc.cfg.MaxBytes && len(rc.byNode) > 0 {
		rc.evictLocked()
	}
	if rc.used+n > rc.cfg.MaxBytes {
		return false
	}
	rc.used += n
	return true
}

func (rc *Remote[E]) release(n int64) {
	rc.mu.Lock()
	rc.used -= n
	rc.mu.Unlock()
}

// evictLocked drops the least recently used list. rc.mu is held.
func (rc *Remote[E]) evictLocked() {
	var oldest mesh.ID
	var at time.Time
	for id, c := range rc.byNode {
		if at.IsZero() || c.used.Before(at) {
			oldest, at = id, c.used
		}
	}
	rc.dropLocked(oldest)
}

func (rc *Remote[E]) dropLocked(node mesh.ID) {
	if c := rc.byNode[node]; c != nil {
		rc.used -= c.cost
		delete(rc.byNode, node)
	}
}

// Cached returns the list of node at version, if held.
func (rc *Remote[E]) Cached(node mesh.ID, version uint64) ([]E, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	c := rc.byNode[node]
	if c == nil || c.version != version {
		return nil, false
	}
	c.used = time.Now()
	return c.entries, true
}

// store caches node's list; cost, reserved by its fetch, is now the
// cache's.
func (rc *Remote[E]) store(node mesh.ID, version uint64, entries []E, cost int64) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.dropLocked(node)
	rc.byNode[node] = &remoteList[E]{version: version, entries: entries, cost: cost, used: time.Now()}
	for len(rc.byNode) > rc.cfg.Cache {
		rc.evictLocked()
	}
}

// ForgetOffline drops the lists of nodes no longer in the directory.
func (rc *Remote[E]) ForgetOffline(dir []mesh.Record) {
	online := make(map[mesh.ID]bool, len(dir))
	for _, r := range dir {
		online[r.ID] = true
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for id := range rc.byNode {
		if !online[id] {
			rc.dropLocked(id)
		}
	}
}

// All returns every cached list.
func (rc *Remote[E]) All() map[mesh.ID][]E {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make(map[mesh.ID][]E, len(rc.byNode))
	for id, c := range rc.byNode {
		out[id] = c.entries
	}
	return out
}

// Advertised reads the summary of list name from a record; ok is false
// when the node advertises none or one that does not decode.
func Advertised(r mesh.Record, name string) (Summary, bool) {
	raw, ok := r.Resources[name]
	if !ok {
		return Summary{}, false
	}
	var sm Summary
	if err := json.Unmarshal(raw, &sm); err != nil || sm.Count < 0 {
		return Summary{}, false
	}
	return sm, true
}

// Lists returns the list of every node in dir that advertises one, own
// as self's, fetching those whose version changed since they were cached.
// A node that cannot be listed is left out (and logged), not an error.
func (rc *Remote[E]) Lists(ctx context.Context, dir []mesh.Record, self mesh.ID, own []E) (map[mesh.ID][]E, error) {
	lists := make(map[mesh.ID][]E, len(dir))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, rc.cfg.MaxFetches)
	for _, r := range dir {
		if r.ID == self {
			mu.Lock()
			lists[self] = own
			mu.Unlock()
			continue
		}
		sm, ok := Advertised(r, rc.cfg.Name)
		if !ok || sm.Count == 0 {
			continue
		}
		if entries, ok := rc.Cached(r.ID, sm.Version); ok {
			mu.Lock()
			lists[r.ID] = entries
			mu.Unlock()
			continue
		}
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			entries, err := rc.Get(ctx, r.ID, sm.Version)
			if err != nil {
				rc.cfg.Logger.Debug("list not fetched", "list", rc.cfg.Name, "node", r.ID.Short(), "err", err)
				return
			}
			mu.Lock()
			lists[r.ID] = entries
			mu.Unlock()
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return lists, nil
}

// maxVersionRetries bounds how often a listing starts over because the
// node's list changed while it was paged through.
const maxVersionRetries = 3

// Get returns node's list at version, fetching it unless cached. Callers
// asking at once share one fetch, made by the first on its own goroutine
// and context; if that caller gives up, the next one tries.
func (rc *Remote[E]) Get(ctx context.Context, node mesh.ID, version uint64) ([]E, error) {
	for {
		if entries, ok := rc.Cached(node, version); ok {
			return entries, nil
		}
		rc.mu.Lock()
		call := rc.fetching[node]
		if call == nil {
			call = &fetchCall[E]{version: version, done: make(chan struct{})}
			rc.fetching[node] = call
			rc.mu.Unlock()
			var v uint64
			var cost int64
			fctx, cancel := context.WithTimeout(ctx, rc.cfg.Timeout)
			call.entries, v, cost, call.err = rc.fetch(fctx, node, version)
			if call.err != nil && ctx.Err() == nil && fctx.Err() != nil {
				// Not a caller giving up, which the next one would retry:
				// the node is too slow, for them all.
				call.err = fmt.Errorf("%s of %s not listed within %v", rc.cfg.What, node.Short(), rc.cfg.Timeout)
			}
			cancel()
			if call.err == nil {
				rc.store(node, v, call.entries, cost)
			}
			rc.mu.Lock()
			delete(rc.fetching, node)
			rc.mu.Unlock()
			close(call.done)
			return call.entries, call.err
		}
		rc.mu.Unlock()
		select {
		case <-call.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if call.err == nil && call.version == version {
			return call.entries, nil
		}
		if call.err != nil && ctx.Err() == nil && !errors.Is(call.err, context.Canceled) && !errors.Is(call.err, context.DeadlineExceeded) {
			return nil, call.err
		}
	}
}

var errVersionMoved = errors.New("reslist: list changed while listed")

// fetch pages through node's list. If the list changes while it is paged
// (a page carries another version), it starts over at the new version, up
// to maxVersionRetries times.
func (rc *Remote[E]) fetch(ctx context.Context, node mesh.ID, version uint64) ([]E, uint64, int64, error) {
	for range maxVersionRetries {
		entries, got, cost, err := rc.fetchPages(ctx, node, version)
		if err == nil || !errors.Is(err, errVersionMoved) {
			return entries, got, cost, err
		}
		version = got
	}
	return nil, 0, 0, fmt.Errorf("%s of %s kept changing while it was listed", rc.cfg.What, node.Short())
}

// fetchPages pages through node's list at one version. What it holds is
// reserved from MaxBytes as it comes; on success the reservation (cost)
// goes with the entries, on failure it is given back. A page that breaks
// the rules (undecodable, out of order, no progress) scores the node down.
func (rc *Remote[E]) fetchPages(ctx context.Context, node mesh.ID, version uint64) (entries []E, _ uint64, cost int64, err error) {
	defer func() {
		if err != nil {
			rc.release(cost)
		}
	}()
	var after Key
	first := true
	for {
		b, err := rc.cfg.Request(ctx, node, after)
		if err != nil {
			return nil, 0, cost, err
		}
		p, err := rc.cfg.Decode(b)
		if err != nil {
			rc.cfg.Penalize(node, rc.cfg.What+": bad page")
			return nil, 0, cost, err
		}
		if first {
			first = false
			// Newer than the record read: take it from the start.
			version = p.Version
		} else if p.Version != version {
			return nil, p.Version, cost, errVersionMoved
		}
		if len(p.Entries) > 0 && len(entries) > 0 && CompareKey(rc.cfg.Key(p.Entries[0]), after) <= 0 {
			rc.cfg.Penalize(node, rc.cfg.What+": page out of order")
			return nil, 0, cost, fmt.Errorf("%w: %s page of %s goes back", rc.cfg.BadFrame, rc.cfg.What, node.Short())
		}
		if !slices.IsSortedFunc(p.Entries, func(a, b E) int { return CompareKey(rc.cfg.Key(a), rc.cfg.Key(b)) }) {
			rc.cfg.Penalize(node, rc.cfg.What+": page out of order")
			return nil, 0, cost, fmt.Errorf("%w: %s page of %s is not in order", rc.cfg.BadFrame, rc.cfg.What, node.Short())
		}
		if len(entries)+len(p.Entries) > rc.cfg.MaxEntries {
			return nil, 0, cost, fmt.Errorf("%s of %s is over %d entries; not taken", rc.cfg.What, node.Short(), rc.cfg.MaxEntries)
		}
		grown := slices.Grow(entries, len(p.Entries))
		more := int64(cap(grown)-cap(entries))*rc.slotSize + rc.entriesCost(p.Entries) - int64(cap(p.Entries))*rc.slotSize
		if !rc.reserve(more) {
			return nil, 0, cost, fmt.Errorf("%s of %s is over the %d bytes kept of remote lists; not taken", rc.cfg.What, node.Short(), rc.cfg.MaxBytes)
		}
		cost += more
		entries = append(grown, p.Entries...)
		if !p.More {
			return entries, version, cost, nil
		}
		if len(p.Entries) == 0 {
			rc.cfg.Penalize(node, rc.cfg.What+": empty page with more to come")
			return nil, 0, cost, fmt.Errorf("%w: empty %s page of %s says more follow", rc.cfg.BadFrame, rc.cfg.What, node.Short())
		}
		after = rc.cfg.Key(p.Entries[len(p.Entries)-1])
	}
}
