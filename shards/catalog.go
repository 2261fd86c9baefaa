package shards

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/catnest/catnest/mesh"
)

// summary is what a node advertises of its catalog in its directory
// record (resource "files"): enough for others to know whether the list
// they cached is still current, and nothing more.
type summary struct {
	Count   int    `json:"count"`
	Version uint64 `json:"version"`
}

// catalog is this node's own list of resources, as ProtoList serves it.
// Its version is the XOR of a hash of every entry: the same entries give
// the same version on any run, so a peer's cache keyed by it stays valid
// across restarts, and any change gives another.
type catalog struct {
	mu      sync.Mutex
	items   map[MD5]catalogItem
	version uint64
	sorted  []Entry // by id; nil when items changed since
}

type catalogItem struct {
	e      Entry
	owners uint8 // which parts hold it: ownShares, ownDownloads
}

// ownDownloads marks the catalog entries of finished downloads, which
// this node serves too.
const ownDownloads = 2

func newCatalog() *catalog { return &catalog{items: make(map[MD5]catalogItem)} }

func entryHash(e Entry) uint64 {
	h := sha256.New()
	h.Write(e.ID[:])
	h.Write(e.Manifest[:])
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(e.Size)))
	h.Write([]byte(e.Name))
	h.Write([]byte{0})
	h.Write([]byte(e.Type))
	return binary.BigEndian.Uint64(h.Sum(nil))
}

// put adds or replaces an entry held by owner.
func (c *catalog) put(owner uint8, e Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it, ok := c.items[e.ID]
	if ok && it.e == e && it.owners&owner != 0 {
		return
	}
	if ok {
		c.version ^= entryHash(it.e)
	}
	it.e = e
	it.owners |= owner
	c.items[e.ID] = it
	c.version ^= entryHash(e)
	c.sorted = nil
}

// remove drops owner's hold on id; the entry goes when nobody holds it.
func (c *catalog) remove(owner uint8, id MD5) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it, ok := c.items[id]
	if !ok || it.owners&owner == 0 {
		return
	}
	if it.owners &^= owner; it.owners != 0 {
		c.items[id] = it
		return
	}
	delete(c.items, id)
	c.version ^= entryHash(it.e)
	c.sorted = nil
}

func (c *catalog) summary() (int, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items), c.version
}

// entries returns the catalog in id order; the caller must not change it.
func (c *catalog) entries() ([]Entry, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sorted == nil {
		c.sorted = make([]Entry, 0, len(c.items))
		for _, it := range c.items {
			c.sorted = append(c.sorted, it.e)
		}
		slices.SortFunc(c.sorted, func(a, b Entry) int { return compareID(a.ID, b.ID) })
	}
	return c.sorted, c.version
}

func compareID(a, b MD5) int { return cmp.Compare(string(a[:]), string(b[:])) }

// page is up to limit entries with ids after after.
func (c *catalog) page(after MD5, limit int) listPage {
	all, version := c.entries()
	i, _ := slices.BinarySearchFunc(all, after, func(e Entry, id MD5) int { return compareID(e.ID, id) })
	if i < len(all) && all[i].ID == after {
		i++
	}
	end := min(i+limit, len(all))
	return listPage{Version: version, Entries: slices.Clone(all[i:end]), More: end < len(all)}
}

// remoteCatalogs caches other nodes' catalogs by node and version: a list
// is fetched from its own node alone, only when that node advertises a
// version not cached, and only when someone asks (Files).
type remoteCatalogs struct {
	mu     sync.Mutex
	limit  int
	byNode map[mesh.ID]*remoteCatalog
	// used is the bytes the cached catalogs and the fetches under way
	// hold (entryCost), at most maxBytes.
	used, maxBytes int64
	// fetching holds the fetches under way, so that callers asking at
	// once share one.
	fetching map[mesh.ID]*fetchCall
}

type remoteCatalog struct {
	version uint64
	entries []Entry // by id
	cost    int64   // reserved from remoteCatalogs.used
	used    time.Time
}

// entrySize is what an Entry takes in a slice, besides its strings.
const entrySize = int64(unsafe.Sizeof(Entry{}))

// entriesCost is the memory entries take, counted against MaxRemoteBytes:
// their slice's capacity and their strings.
func entriesCost(entries []Entry) int64 {
	n := int64(cap(entries)) * entrySize
	for _, e := range entries {
		n += int64(len(e.Name) + len(e.Type))
	}
	return n
}

type fetchCall struct {
	version uint64
	done    chan struct{}
	entries []Entry
	err     error
}

func newRemoteCatalogs(limit int, maxBytes int64) *remoteCatalogs {
	return &remoteCatalogs{limit: limit, maxBytes: maxBytes, byNode: make(map[mesh.ID]*remoteCatalog), fetching: make(map[mesh.ID]*fetchCall)}
}

// reserve takes n bytes of the budget for a fetch under way, dropping the
// least recently used catalogs to make room; false if they do not fit.
func (rc *remoteCatalogs) reserve(n int64) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for rc.used+n > rc.maxBytes && len(rc.byNode) > 0 {
		rc.evictLocked()
	}
	if rc.used+n > rc.maxBytes {
		return false
	}
	rc.used += n
	return true
}

// release gives back n reserved bytes.
func (rc *remoteCatalogs) release(n int64) {
	rc.mu.Lock()
	rc.used -= n
	rc.mu.Unlock()
}

// evictLocked drops the least recently used catalog. rc.mu is held.
func (rc *remoteCatalogs) evictLocked() {
	var oldest mesh.ID
	var at time.Time
	for id, c := range rc.byNode {
		if at.IsZero() || c.used.Before(at) {
			oldest, at = id, c.used
		}
	}
	rc.dropLocked(oldest)
}

func (rc *remoteCatalogs) dropLocked(node mesh.ID) {
	if c := rc.byNode[node]; c != nil {
		rc.used -= c.cost
		delete(rc.byNode, node)
	}
}

// cached returns the catalog of node at version, if held.
func (rc *remoteCatalogs) cached(node mesh.ID, version uint64) ([]Entry, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	c := rc.byNode[node]
	if c == nil || c.version != version {
		return nil, false
	}
	c.used = time.Now()
	return c.entries, true
}

// store caches node's catalog; cost, reserved by its fetch, is now the
// cache's.
func (rc *remoteCatalogs) store(node mesh.ID, version uint64, entries []Entry, cost int64) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.dropLocked(node)
	rc.byNode[node] = &remoteCatalog{version: version, entries: entries, cost: cost, used: time.Now()}
	for len(rc.byNode) > rc.limit {
		rc.evictLocked()
	}
}

// forgetOffline drops the catalogs of nodes no longer in the directory.
func (rc *remoteCatalogs) forgetOffline(dir []mesh.Record) {
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

// all returns every cached catalog.
func (rc *remoteCatalogs) all() map[mesh.ID][]Entry {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make(map[mesh.ID][]Entry, len(rc.byNode))
	for id, c := range rc.byNode {
		out[id] = c.entries
	}
	return out
}

// maxFetches bounds the remote catalogs fetched at once by one Files.
const maxFetches = 4

// maxVersionRetries bounds how often a listing starts over because the
// node's catalog changed while it was paged through.
const maxVersionRetries = 3

// advertised reads the catalog summary from a record; ok is false when
// the node advertises none or one that does not decode.
func advertised(r mesh.Record) (summary, bool) {
	raw, ok := r.Resources[resourceName]
	if !ok {
		return summary{}, false
	}
	var sm summary
	if err := json.Unmarshal(raw, &sm); err != nil || sm.Count < 0 {
		return summary{}, false
	}
	return sm, true
}

// Files lists what every online node shares, each resource once with the
// nodes that hold it. Remote catalogs come from the cache when their
// version is unchanged, else from their own node, paged; a node that
// cannot be reached is left out (and logged), not an error.
func (s *Service) Files(ctx context.Context) ([]File, error) {
	lists, err := s.catalogLists(ctx)
	if err != nil {
		return nil, err
	}
	return mergeCatalogs(s.node.ID(), lists), nil
}

// catalogLists returns the catalog of every online node, this one's
// included, fetching those whose version changed since they were cached.
func (s *Service) catalogLists(ctx context.Context) (map[mesh.ID][]Entry, error) {
	dir := s.node.Directory()
	self := s.node.ID()
	lists := make(map[mesh.ID][]Entry, len(dir))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxFetches)
	for _, r := range dir {
		if r.ID == self {
			own, _ := s.catalog.entries()
			mu.Lock()
			lists[self] = own
			mu.Unlock()
			continue
		}
		sm, ok := advertised(r)
		if !ok || sm.Count == 0 {
			continue
		}
		if entries, ok := s.remote.cached(r.ID, sm.Version); ok {
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
			entries, err := s.remoteCatalog(ctx, r.ID, sm.Version)
			if err != nil {
				s.log.Debug("catalog not fetched", "node", r.ID.Short(), "err", err)
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

// mergeCatalogs lists each resource once with its holders. Nodes that
// disagree on a resource's manifest (one of them lies: the manifest
// follows from the bytes) are split by it, and the manifest most of them
// hold wins, this node's own first.
func mergeCatalogs(self mesh.ID, lists map[mesh.ID][]Entry) []File {
	type variant struct {
		e       Entry
		holders []mesh.ID
	}
	byID := make(map[MD5][]*variant)
	nodes := make([]mesh.ID, 0, len(lists))
	for id := range lists {
		nodes = append(nodes, id)
	}
	slices.SortFunc(nodes, func(a, b mesh.ID) int {
		if a == self || b == self {
			return cmp.Compare(b2i(a != self), b2i(b != self))
		}
		return cmp.Compare(a, b)
	})
	for _, n := range nodes {
		for _, e := range lists[n] {
			vs := byID[e.ID]
			i := slices.IndexFunc(vs, func(v *variant) bool { return v.e.Manifest == e.Manifest && v.e.Size == e.Size })
			if i < 0 {
				vs = append(vs, &variant{e: e})
				byID[e.ID] = vs
				i = len(vs) - 1
			}
			vs[i].holders = append(vs[i].holders, n)
		}
	}
	out := make([]File, 0, len(byID))
	for _, vs := range byID {
		best := vs[0]
		for _, v := range vs[1:] {
			if len(v.holders) > len(best.holders) {
				best = v
			}
		}
		out = append(out, File{
			ID:       best.e.ID,
			Name:     best.e.Name,
			Size:     best.e.Size,
			Type:     best.e.Type,
			Manifest: best.e.Manifest,
			Holders:  best.holders,
		})
	}
	slices.SortFunc(out, func(a, b File) int {
		if c := cmp.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return compareID(a.ID, b.ID)
	})
	return out
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// remoteCatalog returns node's catalog at version, fetching it unless
// cached. Callers asking at once share one fetch, made by the first on its
// own goroutine and context; if that caller gives up, the next one tries.
func (s *Service) remoteCatalog(ctx context.Context, node mesh.ID, version uint64) ([]Entry, error) {
	rc := s.remote
	for {
		if entries, ok := rc.cached(node, version); ok {
			return entries, nil
		}
		rc.mu.Lock()
		call := rc.fetching[node]
		if call == nil {
			call = &fetchCall{version: version, done: make(chan struct{})}
			rc.fetching[node] = call
			rc.mu.Unlock()
			var v uint64
			var cost int64
			fctx, cancel := context.WithTimeout(ctx, s.cfg.CatalogTimeout)
			call.entries, v, cost, call.err = s.fetchCatalog(fctx, node, version)
			if call.err != nil && ctx.Err() == nil && fctx.Err() != nil {
				// Not a caller giving up, which the next one would retry:
				// the node is too slow, for them all.
				call.err = fmt.Errorf("shards: catalog of %s not listed within %v", node.Short(), s.cfg.CatalogTimeout)
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

// fetchCatalog pages through node's catalog. If the catalog changes while
// it is paged (a page carries another version), it starts over at the new
// version, up to maxVersionRetries times. A page that breaks the rules
// (out of order, no progress, past MaxRemoteEntries) scores the node down.
func (s *Service) fetchCatalog(ctx context.Context, node mesh.ID, version uint64) ([]Entry, uint64, int64, error) {
	for range maxVersionRetries {
		entries, got, cost, err := s.fetchPages(ctx, node, version)
		if err == nil || !errors.Is(err, errVersionMoved) {
			return entries, got, cost, err
		}
		version = got
	}
	return nil, 0, 0, fmt.Errorf("shards: catalog of %s kept changing while it was listed", node.Short())
}

var errVersionMoved = errors.New("shards: catalog changed while listed")

// fetchPages pages through node's catalog at one version. What it holds
// is reserved from MaxRemoteBytes as it comes; on success the reservation
// (cost) goes with the entries, on failure it is given back.
func (s *Service) fetchPages(ctx context.Context, node mesh.ID, version uint64) (entries []Entry, _ uint64, cost int64, err error) {
	defer func() {
		if err != nil {
			s.remote.release(cost)
		}
	}()
	var after MD5
	first := true
	for {
		b, err := s.request(ctx, node, ProtoList, encodeListReq(listReq{After: after, Limit: MaxListPage}))
		if err != nil {
			return nil, 0, cost, err
		}
		p, err := decodeListPage(b)
		if err != nil {
			s.node.Penalize(node, "shards: bad catalog page")
			return nil, 0, cost, err
		}
		if first {
			first = false
			if p.Version != version {
				// Newer than the record we read; take it from the start.
				version = p.Version
			}
		} else if p.Version != version {
			return nil, p.Version, cost, errVersionMoved
		}
		if len(p.Entries) > 0 && compareID(p.Entries[0].ID, after) <= 0 && len(entries) > 0 {
			s.node.Penalize(node, "shards: catalog page out of order")
			return nil, 0, cost, fmt.Errorf("%w: catalog page of %s goes back", ErrBadFrame, node.Short())
		}
		if len(entries)+len(p.Entries) > s.cfg.MaxRemoteEntries {
			return nil, 0, cost, fmt.Errorf("shards: catalog of %s is over %d entries; not taken", node.Short(), s.cfg.MaxRemoteEntries)
		}
		grown := slices.Grow(entries, len(p.Entries))
		more := int64(cap(grown)-cap(entries))*entrySize + entriesCost(p.Entries) - int64(cap(p.Entries))*entrySize
		if !s.remote.reserve(more) {
			return nil, 0, cost, fmt.Errorf("shards: catalog of %s is over the %d bytes kept of remote catalogs; not taken", node.Short(), s.cfg.MaxRemoteBytes)
		}
		cost += more
		entries = append(grown, p.Entries...)
		if !p.More {
			return entries, version, cost, nil
		}
		if len(p.Entries) == 0 {
			s.node.Penalize(node, "shards: empty catalog page with more to come")
			return nil, 0, cost, fmt.Errorf("%w: empty catalog page of %s says more follow", ErrBadFrame, node.Short())
		}
		after = p.Entries[len(p.Entries)-1].ID
	}
}

// request asks node over the bulk channel, linking to it first (a
// temporary link) if it is not a neighbour; each try has RequestTimeout.
func (s *Service) request(ctx context.Context, node mesh.ID, proto string, payload []byte) ([]byte, error) {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	b, err := s.node.Request(rctx, node, proto, payload, mesh.OverBulk())
	if errors.Is(err, mesh.ErrNotConnected) {
		if err := s.node.Expand(rctx, node); err != nil {
			return nil, fmt.Errorf("shards: link to %s: %w", node.Short(), err)
		}
		b, err = s.node.Request(rctx, node, proto, payload, mesh.OverBulk())
	}
	if err != nil {
		return nil, fmt.Errorf("shards: %s from %s: %w", proto, node.Short(), err)
	}
	return b, nil
}

// holders lists the online nodes other than this one whose cached catalog
// holds id, for the downloader. It does not fetch: Files (or
// lookupHolders) fills the cache.
func (s *Service) holders(id MD5) []mesh.ID {
	var out []mesh.ID
	for node, entries := range s.remote.all() {
		if _, ok := s.node.Lookup(node); !ok {
			continue
		}
		if _, ok := slices.BinarySearchFunc(entries, id, func(e Entry, id MD5) int { return compareID(e.ID, id) }); ok {
			out = append(out, node)
		}
	}
	slices.Sort(out)
	return out
}

// lookupHolders brings the online catalogs up to date and returns the
// nodes that list id under the manifest most of them agree on (this node's
// own first, as Files has it), and that manifest's hash. It looks id up in
// each catalog rather than merging them all, which at 100 nodes of 10,000
// files each would cost seconds.
func (s *Service) lookupHolders(ctx context.Context, id MD5) ([]mesh.ID, error) {
	h, _, err := s.lookup(ctx, id)
	return h, err
}

func (s *Service) lookup(ctx context.Context, id MD5) ([]mesh.ID, Hash, error) {
	lists, err := s.catalogLists(ctx)
	if err != nil {
		return nil, Hash{}, err
	}
	found := make(map[mesh.ID][]Entry, 4)
	for node, entries := range lists {
		if i, ok := slices.BinarySearchFunc(entries, id, func(e Entry, id MD5) int { return compareID(e.ID, id) }); ok {
			found[node] = entries[i : i+1]
		}
	}
	files := mergeCatalogs(s.node.ID(), found)
	if len(files) == 0 {
		return nil, Hash{}, fmt.Errorf("%w: %s", ErrNoHolders, id)
	}
	holders := slices.DeleteFunc(files[0].Holders, func(n mesh.ID) bool { return n == s.node.ID() })
	if len(holders) == 0 {
		return nil, Hash{}, fmt.Errorf("%w: %s", ErrNoHolders, id)
	}
	return holders, files[0].Manifest, nil
}
