package shards

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"unsafe"

	"github.com/catnest/catnest/internal/reslist"
	"github.com/catnest/catnest/mesh"
)

// summary is what a node advertises of its catalog in its directory
// record (resource "files"): enough for others to know whether the list
// they cached is still current, and nothing more.
type summary = reslist.Summary

// catalog is this node's own list of resources, as ProtoList serves it
// (a reslist.Local; see there for its version). A resource both shared
// and downloaded is listed once, worked out from both (merge): whichever
// wrote last won, and a service's copy of the user's file hid it.
type catalog struct {
	l *reslist.Local[Entry]

	// mu orders puts and removes, so that an entry is merged from what
	// its owners hold now. It is taken under the shares' and the
	// downloads' locks and takes none but l's.
	mu sync.Mutex
	// both holds each owner's own entry of the ids more than one owner
	// holds (by owner bit: ownShares, ownDownloads): only those, the
	// others' are l's.
	both map[MD5]*[2]Entry
}

// ownShares marks the catalog entries the shares put there.
const ownShares = 1

// ownDownloads marks the catalog entries of finished downloads, which
// this node serves too.
const ownDownloads = 2

func newCatalog() *catalog {
	return &catalog{
		l:    reslist.NewLocal(func(e Entry) reslist.Key { return e.ID }, entryHash),
		both: make(map[MD5]*[2]Entry),
	}
}

func entryHash(e Entry) uint64 {
	h := sha256.New()
	h.Write(e.ID[:])
	h.Write(e.Manifest[:])
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(e.Size)))
	h.Write([]byte(e.Name))
	h.Write([]byte{0})
	h.Write([]byte(e.Type))
	if e.Internal {
		// Only then: an upgrade leaves the versions of other entries as
		// they were. A type is printable, so never ends in this byte.
		h.Write([]byte{1})
	}
	return binary.BigEndian.Uint64(h.Sum(nil))
}

// slot is owner's index in catalog.both.
func slot(owner uint8) int {
	if owner == ownDownloads {
		return 1
	}
	return 0
}

// merge is the entry of a resource this node both shares (s) and
// downloaded (d): internal only if both are a service's; named as the
// user's one names it, the share's when both are the user's.
func merge(s, d Entry) Entry {
	e := s
	if e.Internal && !d.Internal {
		e = d
	}
	e.Internal = s.Internal && d.Internal
	return e
}

// put adds or replaces an entry held by owner.
func (c *catalog) put(owner uint8, e Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.both[e.ID]; p != nil {
		p[slot(owner)] = e
		c.l.Put(owner, merge(p[0], p[1]))
		return
	}
	if held, owners, ok := c.l.Held(e.ID); ok && owners&^owner != 0 {
		var p [2]Entry
		p[slot(owners&^owner)] = held
		p[slot(owner)] = e
		c.both[e.ID] = &p
		e = merge(p[0], p[1])
	}
	c.l.Put(owner, e)
}

// remove drops owner's hold on id; the entry goes when nobody holds it,
// else it is the other owner's again.
func (c *catalog) remove(owner uint8, id MD5) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.both[id]; p != nil {
		if _, owners, _ := c.l.Held(id); owners&owner != 0 {
			delete(c.both, id)
			other := uint8(ownShares|ownDownloads) &^ owner
			c.l.Put(other, p[slot(other)])
		}
	}
	c.l.Remove(owner, id)
}

func (c *catalog) summary() (int, uint64) {
	sm := c.l.Summary()
	return sm.Count, sm.Version
}

// entries returns the catalog in id order; the caller must not change it.
func (c *catalog) entries() ([]Entry, uint64) { return c.l.Entries() }

func compareID(a, b MD5) int { return cmp.Compare(string(a[:]), string(b[:])) }

// page is up to limit entries with ids after after.
func (c *catalog) page(after MD5, limit int) listPage { return c.l.Page(after, limit) }

// entrySize is what an Entry takes in a slice, besides its strings.
const entrySize = int64(unsafe.Sizeof(Entry{}))

// newRemoteCatalogs makes the cache of other nodes' catalogs: each is
// fetched from its own node alone, only when that node advertises a
// version not cached, and only when someone asks (Files).
func (s *Service) newRemoteCatalogs() *reslist.Remote[Entry] {
	return reslist.NewRemote(reslist.RemoteConfig[Entry]{
		Name: resourceName,
		What: "shards: catalog",
		Key:  func(e Entry) reslist.Key { return e.ID },
		Cost: func(e Entry) int64 { return int64(len(e.Name) + len(e.Type)) },
		Request: func(ctx context.Context, node mesh.ID, after reslist.Key) ([]byte, error) {
			return s.request(ctx, node, ProtoList, encodeListReq(listReq{After: after, Limit: MaxListPage}))
		},
		Decode:     decodeListPage,
		Penalize:   s.node.Penalize,
		BadFrame:   ErrBadFrame,
		Cache:      s.cfg.CatalogCache,
		MaxEntries: s.cfg.MaxRemoteEntries,
		MaxBytes:   s.cfg.MaxRemoteBytes,
		Timeout:    s.cfg.CatalogTimeout,
		MaxFetches: maxFetches,
		Logger:     s.log,
	})
}

// maxFetches bounds the remote catalogs fetched at once by one Files.
const maxFetches = 4

// advertised reads the catalog summary from a record; ok is false when
// the node advertises none or one that does not decode.
func advertised(r mesh.Record) (summary, bool) { return reslist.Advertised(r, resourceName) }

// Files lists what every online node shares, each resource once with the
// nodes that hold it. Remote catalogs come from the cache when their
// version is unchanged, else from their own node, paged; a node that
// cannot be reached is left out (and logged), not an error.
func (s *Service) Files(ctx context.Context) ([]File, error) {
	lists, err := s.catalogLists(ctx)
	if err != nil {
		return nil, err
	}
	// A service's internal files (music's covers) are not the user's to
	// see; lookups by id (lookup, holders) still find them.
	return slices.DeleteFunc(mergeCatalogs(s.node.ID(), lists), func(f File) bool { return f.internal }), nil
}

// catalogLists returns the catalog of every online node, this one's
// included, fetching those whose version changed since they were cached.
func (s *Service) catalogLists(ctx context.Context) (map[mesh.ID][]Entry, error) {
	own, _ := s.catalog.entries()
	return s.remote.Lists(ctx, s.node.Directory(), s.node.ID(), own)
}

// mergeCatalogs lists each resource once with its holders. Nodes that
// disagree on a resource's manifest (one of them lies: the manifest
// follows from the bytes) are split by it, and the manifest most of them
// hold wins, this node's own first. Its name is this node's own if it
// holds it, else the one most of its holders give: the name is saved
// with a download by id and sets the Content-Type it is served with, and
// the first holder by node id (an id is cheap to choose) named it alone.
func mergeCatalogs(self mesh.ID, lists map[mesh.ID][]Entry) []File {
	type variant struct {
		e       Entry
		holders []mesh.ID
		// voters counts the holders whose name counts (voting).
		voters int
		// names counts the voters for each name (with the type its
		// first voter gives), once one disagrees with e; nil till then.
		names map[string]nameVote
	}
	byID := make(map[MD5][]*variant)
	// marked holds the ids some holder marks Internal, true once another
	// lists it as the user's: a peer that marks a file internal hides
	// only its own listing of it, never this node's share nor another
	// holder's. For such an id, the internal holders' names (a cover
	// named by its MD5) do not vote. Only the marked ids are kept: a map
	// of every id took 100 MB more for a million entries.
	marked := make(map[MD5]bool)
	for _, entries := range lists {
		for _, e := range entries {
			if e.Internal {
				marked[e.ID] = false
			}
		}
	}
	if len(marked) > 0 {
		for _, entries := range lists {
			for _, e := range entries {
				if _, ok := marked[e.ID]; ok && !e.Internal {
					marked[e.ID] = true
				}
			}
		}
	}
	users := func(id MD5) bool {
		u, ok := marked[id]
		return u || !ok
	}
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
			v := vs[i]
			v.holders = append(v.holders, n)
			if e.Internal && users(e.ID) {
				continue
			}
			switch {
			case v.voters == 0:
				v.e.Name, v.e.Type = e.Name, e.Type
			case e.Name != v.e.Name && v.names == nil:
				v.names = map[string]nameVote{v.e.Name: {typ: v.e.Type, n: v.voters}}
			}
			if v.names != nil {
				nv, ok := v.names[e.Name]
				if !ok {
					nv.typ = e.Type
				}
				nv.n++
				v.names[e.Name] = nv
			}
			v.voters++
		}
	}
	out := make([]File, 0, len(byID))
	for id, vs := range byID {
		best := vs[0]
		for _, v := range vs[1:] {
			if len(v.holders) > len(best.holders) {
				best = v
			}
		}
		if best.names != nil && best.holders[0] != self {
			best.e.Name, best.e.Type = mostNamed(best.names, best.e)
		}
		out = append(out, File{
			ID:       best.e.ID,
			Name:     best.e.Name,
			Size:     best.e.Size,
			Type:     best.e.Type,
			Manifest: best.e.Manifest,
			Holders:  best.holders,
			internal: !users(id),
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

// nameVote is how many holders give a resource one name.
type nameVote struct {
	typ string
	n   int
}

// mostNamed is the name (and its type) most holders give; a tie goes to
// first's (the first holder by id), then to the least name.
func mostNamed(names map[string]nameVote, first Entry) (string, string) {
	bestName, best := first.Name, names[first.Name]
	for name, nv := range names {
		if nv.n > best.n || (nv.n == best.n && bestName != first.Name && name < bestName) {
			bestName, best = name, nv
		}
	}
	return bestName, best.typ
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// remoteCatalog returns node's catalog at version, fetching it unless
// cached (reslist.Remote.Get).
func (s *Service) remoteCatalog(ctx context.Context, node mesh.ID, version uint64) ([]Entry, error) {
	return s.remote.Get(ctx, node, version)
}

// request asks node over the bulk channel, linking to it first (a
// temporary link) if it is not a neighbour; both tries together have
// RequestTimeout.
func (s *Service) request(ctx context.Context, node mesh.ID, proto string, payload []byte) ([]byte, error) {
	b, err := reslist.Request(ctx, s.node, node, proto, payload, s.cfg.RequestTimeout, mesh.OverBulk())
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
	for node, entries := range s.remote.All() {
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
// own first, as Files has it). It looks id up in
// each catalog rather than merging them all, which at 100 nodes of 10,000
// files each would cost seconds.
func (s *Service) lookupHolders(ctx context.Context, id MD5) ([]mesh.ID, error) {
	f, err := s.lookup(ctx, id)
	return f.Holders, err
}

// lookupCached is lookup over the catalogs cached now, of online nodes:
// it fetches none.
func (s *Service) lookupCached(id MD5) (File, error) {
	found := make(map[mesh.ID][]Entry, 4)
	for node, entries := range s.remote.All() {
		if _, ok := s.node.Lookup(node); !ok {
			continue
		}
		if i, ok := slices.BinarySearchFunc(entries, id, func(e Entry, id MD5) int { return compareID(e.ID, id) }); ok {
			found[node] = entries[i : i+1]
		}
	}
	return s.pick(id, found)
}

// lookup is lookupHolders with the whole File: the manifest's hash, and
// the name and size the catalogs give it.
func (s *Service) lookup(ctx context.Context, id MD5) (File, error) {
	lists, err := s.catalogLists(ctx)
	if err != nil {
		return File{}, err
	}
	found := make(map[mesh.ID][]Entry, 4)
	for node, entries := range lists {
		if i, ok := slices.BinarySearchFunc(entries, id, func(e Entry, id MD5) int { return compareID(e.ID, id) }); ok {
			found[node] = entries[i : i+1]
		}
	}
	return s.pick(id, found)
}

// pick is the File of id that the catalogs found (each node's entry of
// it) agree on, with its holders other than this node.
func (s *Service) pick(id MD5, found map[mesh.ID][]Entry) (File, error) {
	files := mergeCatalogs(s.node.ID(), found)
	if len(files) == 0 {
		return File{}, fmt.Errorf("%w: %s", ErrNoHolders, id)
	}
	f := files[0]
	f.Holders = slices.DeleteFunc(f.Holders, func(n mesh.ID) bool { return n == s.node.ID() })
	if len(f.Holders) == 0 {
		return File{}, fmt.Errorf("%w: %s", ErrNoHolders, id)
	}
	return f, nil
}
