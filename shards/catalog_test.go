package shards

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// countLists wraps a service's list handler to count the pages it serves.
func countLists(s *Service, n *mesh.Node) *atomic.Int64 {
	var c atomic.Int64
	n.Handle(ProtoList, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		c.Add(1)
		return s.handleList(ctx, m)
	}))
	return &c
}

// advertisedBy waits until viewer's directory shows owner's catalog summary
// as want.
func waitAdvertised(t *testing.T, viewer *mesh.Node, owner mesh.ID, want summary) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, "the catalog summary to spread", func() bool {
		r, ok := viewer.Lookup(owner)
		if !ok {
			return false
		}
		sm, ok := advertised(r)
		return ok && sm == want
	})
}

// TestCatalog100k pages a catalog of 100,000 entries to another node, which
// caches it by version: an unchanged catalog is not fetched again, a
// changed one is, and an offline node's entries leave the list.
func TestCatalog100k(t *testing.T) {
	testutil.CheckGoroutines(t)
	const n = 100_000
	a, b := newPair(t)
	sa := serveTest(t, testConfig(t, a))
	sb := serveTest(t, testConfig(t, b))
	pages := countLists(sa, a)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	entries := fakeEntries(n, 1)
	for _, e := range entries {
		sa.catalog.put(ownShares, e)
	}
	sa.changed()
	count, version := sa.catalog.summary()
	if count != n {
		t.Fatalf("catalog holds %d", count)
	}
	waitAdvertised(t, b, a.ID(), summary{Count: n, Version: version})

	files, err := sb.Files(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != n {
		t.Fatalf("Files lists %d, want %d", len(files), n)
	}
	byID := make(map[MD5]File, n)
	for _, f := range files {
		byID[f.ID] = f
	}
	for _, e := range entries {
		f, ok := byID[e.ID]
		if !ok || f.Name != e.Name || f.Size != e.Size || f.Manifest != e.Manifest || !slices.Equal(f.Holders, []mesh.ID{a.ID()}) {
			t.Fatalf("entry %s listed as %+v", e.ID, f)
		}
	}
	wantPages := int64((n + MaxListPage - 1) / MaxListPage)
	if got := pages.Load(); got != wantPages {
		t.Fatalf("%d pages served, want %d", got, wantPages)
	}

	// Unchanged: served from the cache.
	if files, err = sb.Files(ctx); err != nil || len(files) != n {
		t.Fatalf("second Files: %d, %v", len(files), err)
	}
	if got := pages.Load(); got != wantPages {
		t.Fatalf("an unchanged catalog was fetched again: %d pages", got)
	}
	if h := sb.holders(entries[123].ID); !slices.Equal(h, []mesh.ID{a.ID()}) {
		t.Fatalf("holders %v", h)
	}

	// Changed: fetched again, once, and b's subscribers told.
	sub := sb.SubscribeShards()
	defer sub.Close()
	extra := fakeEntries(1, 99)[0]
	sa.catalog.put(ownShares, extra)
	sa.catalog.remove(ownShares, entries[0].ID)
	sa.changed()
	_, v2 := sa.catalog.summary()
	waitAdvertised(t, b, a.ID(), summary{Count: n, Version: v2})
	testutil.WaitFor(t, 10*time.Second, "a files event", func() bool {
		for {
			select {
			case e := <-sub.C():
				if e.Files {
					return true
				}
			default:
				return false
			}
		}
	})
	if files, err = sb.Files(ctx); err != nil || len(files) != n {
		t.Fatalf("Files after a change: %d, %v", len(files), err)
	}
	if got := pages.Load(); got != 2*wantPages {
		t.Fatalf("%d pages served in all, want %d", got, 2*wantPages)
	}
	ids := make(map[MD5]bool, n)
	for _, f := range files {
		ids[f.ID] = true
	}
	if !ids[extra.ID] || ids[entries[0].ID] {
		t.Fatal("the change is not in the list")
	}
}

func TestCatalogOfflineNodeLeaves(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	fast := func(c *mesh.Config) { meshtest.Fast(c) }
	a := nw.NewNode(t, "a", meshtest.Options{Configure: fast})
	b := nw.NewNode(t, "b", meshtest.Options{Configure: fast})
	c := nw.NewNode(t, "c", meshtest.Options{Configure: fast})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, n := range []*mesh.Node{b, c} {
		if err := n.Connect(ctx, a.ID()); err != nil {
			t.Fatal(err)
		}
	}
	sa := serveTest(t, testConfig(t, a))
	sb := serveTest(t, testConfig(t, b))
	sc := serveTest(t, testConfig(t, c))
	shared := fakeEntries(3, 2)
	for _, s := range []*Service{sb, sc} {
		for _, e := range shared {
			s.catalog.put(ownShares, e)
		}
		s.changed()
	}
	sa.catalog.put(ownShares, shared[0])
	sa.changed()
	_, v := sb.catalog.summary()
	_, va := sa.catalog.summary()
	waitAdvertised(t, b, c.ID(), summary{Count: 3, Version: v})
	waitAdvertised(t, b, a.ID(), summary{Count: 1, Version: va})

	// c is reached through a temporary link: it is not a neighbour of b.
	files, err := sb.Files(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("%d files", len(files))
	}
	for _, f := range files {
		want := []mesh.ID{b.ID(), c.ID()}
		if f.ID == shared[0].ID {
			want = append(want, a.ID())
		}
		if !sameIDs(f.Holders, want) {
			t.Fatalf("%s held by %v, want %v", f.Name, f.Holders, want)
		}
		if f.Holders[0] != b.ID() {
			t.Fatal("this node is not listed first")
		}
	}

	nw.Kill(c.ID())
	testutil.WaitFor(t, 30*time.Second, "the offline node's entries to leave", func() bool {
		files, err := sb.Files(ctx)
		if err != nil {
			return false
		}
		for _, f := range files {
			if slices.Contains(f.Holders, c.ID()) {
				return false
			}
		}
		return len(files) == 3
	})
	if h := sb.holders(shared[1].ID); len(h) != 0 {
		t.Fatalf("remote holders of a file only the offline node had: %v", h)
	}
}

func sameIDs(a, b []mesh.ID) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestHostileCatalog: a node whose catalog pages break the rules is left
// out of the listing and scored down; the listing ends and holds the
// honest nodes' files, and this node holds no more than MaxRemoteEntries
// of the liar's.
func TestHostileCatalog(t *testing.T) {
	for _, tc := range []struct {
		name string
		page func(req listReq, calls int) []byte
	}{
		{"endless", func(req listReq, calls int) []byte {
			// Always more, with fresh ids after the last.
			var p listPage
			p.More = true
			next := req.After
			for range req.Limit {
				next = incID(next)
				p.Entries = append(p.Entries, Entry{ID: next, Name: "x", Type: "t"})
			}
			b, _ := encodeListPage(p)
			return b
		}},
		{"no progress", func(req listReq, calls int) []byte {
			b, _ := encodeListPage(listPage{More: true})
			return b
		}},
		{"goes back", func(req listReq, calls int) []byte {
			b, _ := encodeListPage(listPage{More: true, Entries: []Entry{{ID: MD5{1}, Name: "x"}}})
			return b
		}},
		{"version moves", func(req listReq, calls int) []byte {
			b, _ := encodeListPage(listPage{Version: uint64(calls), More: true, Entries: []Entry{{ID: incID(req.After), Name: "x"}}})
			return b
		}},
		{"garbage", func(req listReq, calls int) []byte {
			return []byte("not a page at all, but long enough")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testutil.CheckGoroutines(t)
			a, liar := newPair(t)
			cfg := testConfig(t, a)
			cfg.MaxRemoteEntries = 5000
			sa := serveTest(t, cfg)
			own := fakeEntries(2, 3)
			for _, e := range own {
				sa.catalog.put(ownShares, e)
			}
			sa.changed()
			var calls atomic.Int64
			liar.Handle(ProtoList, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
				req, err := decodeListReq(m.Payload)
				if err != nil {
					return nil, err
				}
				return tc.page(req, int(calls.Add(1))), nil
			}))
			if err := liar.SetResource(resourceName, summary{Count: 10, Version: 0}); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, 20*time.Second, "the liar's record", func() bool {
				r, ok := a.Lookup(liar.ID())
				_, adv := advertised(r)
				return ok && adv
			})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			files, err := sa.Files(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != len(own) {
				t.Fatalf("%d files listed, want this node's %d", len(files), len(own))
			}
			if _, err := sa.remoteCatalog(ctx, liar.ID(), 0); err == nil {
				t.Fatal("the liar's catalog was taken")
			} else {
				t.Logf("refused: %v", err)
			}
			if got := calls.Load(); got == 0 || got > 2*int64(cfg.MaxRemoteEntries/MaxListPage+2) {
				t.Fatalf("%d pages asked of the liar", got)
			}
			if len(sa.remote.All()) != 0 {
				t.Fatal("the liar's catalog was cached")
			}
		})
	}
}

// incID is the id after id.
func incID(id MD5) MD5 {
	for i := len(id) - 1; i >= 0; i-- {
		id[i]++
		if id[i] != 0 {
			break
		}
	}
	return id
}

func TestMergeCatalogsPrefersAgreement(t *testing.T) {
	self, _ := mesh.ParseID("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	x, _ := mesh.ParseID("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	y, _ := mesh.ParseID("cccccccccccccccccccccccccccccccc")
	liar, _ := mesh.ParseID("dddddddddddddddddddddddddddddddd")
	honest := Entry{ID: MD5{7}, Manifest: Hash{1}, Size: 10, Name: "a.txt", Type: "text/plain"}
	forged := honest
	forged.Manifest = Hash{2}
	files := mergeCatalogs(self, map[mesh.ID][]Entry{
		liar: {forged},
		x:    {honest},
		y:    {honest},
	})
	if len(files) != 1 || files[0].Manifest != honest.Manifest || !sameIDs(files[0].Holders, []mesh.ID{x, y}) {
		t.Fatalf("merged %+v", files)
	}
}

// TestMergeCatalogsName: holders that agree on a file's bytes but not its
// name. The name is saved with a download by id and sets the type it is
// served with: one node, first by id (ids are cheap to choose), named it
// for everyone; now most holders do, and this node's own name wins.
func TestMergeCatalogsName(t *testing.T) {
	self, _ := mesh.ParseID("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	liar, _ := mesh.ParseID("22222222222222222222222222222222")
	x, _ := mesh.ParseID("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	y, _ := mesh.ParseID("cccccccccccccccccccccccccccccccc")
	honest := Entry{ID: MD5{7}, Manifest: Hash{1}, Size: 10, Name: "photo.png", Type: "image/png"}
	renamed := honest
	renamed.Name, renamed.Type = "photo.html", "text/html; charset=utf-8"
	files := mergeCatalogs(self, map[mesh.ID][]Entry{liar: {renamed}, x: {honest}, y: {honest}})
	if len(files) != 1 || files[0].Name != "photo.png" || files[0].Type != "image/png" || !sameIDs(files[0].Holders, []mesh.ID{liar, x, y}) {
		t.Fatalf("merged %+v, want photo.png (image/png) held by all three", files)
	}
	// This node's own name, whatever the others say.
	mine := honest
	mine.Name = "mine.png"
	files = mergeCatalogs(self, map[mesh.ID][]Entry{self: {mine}, liar: {renamed}, x: {honest}, y: {honest}})
	if len(files) != 1 || files[0].Name != "mine.png" || len(files[0].Holders) != 4 {
		t.Fatalf("merged %+v, want this node's mine.png", files)
	}
	// A tie: the same name on every node, whatever order they are met in.
	for range 20 {
		files = mergeCatalogs(self, map[mesh.ID][]Entry{liar: {renamed}, x: {honest}})
		if len(files) != 1 || files[0].Name != "photo.html" {
			t.Fatalf("a tie merged %+v, want the first holder's name", files)
		}
	}
}

func TestCatalogVersion(t *testing.T) {
	c1, c2 := newCatalog(), newCatalog()
	es := fakeEntries(1000, 4)
	for _, e := range es {
		c1.put(ownShares, e)
	}
	for _, e := range slices.Backward(es) {
		c2.put(ownShares, e)
	}
	n1, v1 := c1.summary()
	n2, v2 := c2.summary()
	if n1 != 1000 || n1 != n2 || v1 != v2 || v1 == 0 {
		t.Fatalf("the same entries in another order: %d %x, %d %x", n1, v1, n2, v2)
	}
	renamed := es[5]
	renamed.Name = "other.txt"
	c2.put(ownShares, renamed)
	if _, v := c2.summary(); v == v1 {
		t.Fatal("a rename kept the version")
	}
	c2.put(ownShares, es[5])
	if _, v := c2.summary(); v != v1 {
		t.Fatal("undoing the rename did not restore the version")
	}
	// Two owners: the entry stays until both let go.
	c1.put(2, es[0])
	c1.remove(ownShares, es[0].ID)
	if n, _ := c1.summary(); n != 1000 {
		t.Fatal("an entry another owner holds went")
	}
	c1.remove(2, es[0].ID)
	if n, _ := c1.summary(); n != 999 {
		t.Fatal("an entry nobody holds stayed")
	}
	// Pages cover the catalog once, in order.
	var after MD5
	var seen []MD5
	for {
		p := c1.page(after, 77)
		for _, e := range p.Entries {
			seen = append(seen, e.ID)
		}
		if !p.More {
			break
		}
		after = p.Entries[len(p.Entries)-1].ID
	}
	if len(seen) != 999 || !slices.IsSortedFunc(seen, compareID) {
		t.Fatalf("pages gave %d entries", len(seen))
	}
}

func FuzzAdvertised(f *testing.F) {
	f.Add([]byte(`{"count":3,"version":12345}`))
	f.Add([]byte(`{"count":-1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > mesh.MaxResourceSize {
			return
		}
		r := mesh.Record{Resources: map[string]json.RawMessage{resourceName: b}}
		sm, ok := advertised(r)
		if ok && sm.Count < 0 {
			t.Fatalf("negative count %d accepted", sm.Count)
		}
	})
}

// TestRemoteCatalogsMemoryBounded: a node with an endless catalog of long
// names, within the entry bound, is refused once its catalog outgrows
// MaxRemoteBytes, and the budget is given back; an honest catalog fetched
// later is taken, pushing out the least recently used when the budget is
// full.
func TestRemoteCatalogsMemoryBounded(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	a := nw.NewNode(t, "a", meshtest.Options{Configure: meshtest.Fast})
	liar := nw.NewNode(t, "liar", meshtest.Options{Configure: meshtest.Fast})
	h1 := nw.NewNode(t, "h1", meshtest.Options{Configure: meshtest.Fast})
	h2 := nw.NewNode(t, "h2", meshtest.Options{Configure: meshtest.Fast})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, n := range []*mesh.Node{liar, h1, h2} {
		if err := n.Connect(ctx, a.ID()); err != nil {
			t.Fatal(err)
		}
	}
	const budget = 4 << 20
	cfg := testConfig(t, a)
	cfg.MaxRemoteBytes = budget
	sa := serveTest(t, cfg)

	long := strings.Repeat("n", MaxNameLen-4) + ".txt"
	var calls atomic.Int64
	liar.Handle(ProtoList, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		req, err := decodeListReq(m.Payload)
		if err != nil {
			return nil, err
		}
		calls.Add(1)
		p := listPage{More: true}
		next := req.After
		for range req.Limit {
			next = incID(next)
			p.Entries = append(p.Entries, Entry{ID: next, Name: long, Type: "text/plain"})
		}
		return encodeListPage(p)
	}))
	if err := liar.SetResource(resourceName, summary{Count: 10, Version: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := sa.remoteCatalog(ctx, liar.ID(), 1); err == nil {
		t.Fatal("the endless catalog was taken")
	} else {
		t.Logf("refused: %v", err)
	}
	// A page holds about MaxListPage*(entrySize+len(long)) bytes.
	perPage := int64(MaxListPage) * (entrySize + int64(len(long)))
	if got := calls.Load(); got > budget/perPage+2 {
		t.Fatalf("%d pages of %d bytes taken of the liar with a budget of %d", got, perPage, budget)
	}
	used := sa.remote.Used()
	if used != 0 || len(sa.remote.All()) != 0 {
		t.Fatalf("after the refusal %d bytes held, %d catalogs cached", used, len(sa.remote.All()))
	}

	// Two honest catalogs each of more than half the budget: the second
	// pushes the first out, and is held within the budget.
	big := fakeEntries(int(budget/2/(entrySize+60)), 8)
	for i := range big {
		big[i].Name = strings.Repeat("b", 50) + big[i].Name[:min(len(big[i].Name), 10)]
	}
	slices.SortFunc(big, func(a, b Entry) int { return compareID(a.ID, b.ID) })
	for _, n := range []*mesh.Node{h1, h2} {
		sn := serveTest(t, testConfig(t, n))
		for _, e := range big {
			sn.catalog.put(ownShares, e)
		}
		sn.changed()
		_, v := sn.catalog.summary()
		got, err := sa.remoteCatalog(ctx, n.ID(), v)
		if err != nil || len(got) != len(big) {
			t.Fatalf("an honest catalog: %d entries, %v", len(got), err)
		}
	}
	all := sa.remote.All()
	if _, ok := all[h2.ID()]; !ok || len(all) != 1 {
		t.Fatalf("cached %d catalogs, want h2's alone", len(all))
	}
	used = sa.remote.Used()
	if used <= 0 || used > budget {
		t.Fatalf("%d bytes held, budget %d", used, budget)
	}
}

// BenchmarkMergeCatalogs: the merge of Files over 100 online nodes of
// 10,000 files each, all different (a million files), all the same, and
// all the same under a name of each node's own (the most names to count).
func BenchmarkMergeCatalogs(b *testing.B) {
	for _, c := range []struct {
		name          string
		same, renamed bool
	}{{"same=false", false, false}, {"same=true", true, false}, {"same=true,renamed", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			lists := make(map[mesh.ID][]Entry, 100)
			shared := fakeEntries(10000, 1)
			var self mesh.ID
			for i := range 100 {
				id := mesh.ID(fmt.Sprintf("%032x", i+1))
				if i == 0 {
					self = id
				}
				switch {
				case c.renamed:
					own := slices.Clone(shared)
					for j := range own {
						own[j].Name = fmt.Sprintf("%d-%s", i, own[j].Name)
					}
					lists[id] = own
				case c.same:
					lists[id] = shared
				default:
					lists[id] = fakeEntries(10000, uint64(i+10))
				}
			}
			var n int
			for b.Loop() {
				n = len(mergeCatalogs(self, lists))
			}
			b.ReportMetric(float64(n), "files")
		})
	}
}

// TestSlowCatalogLeftOut: a node that answers every catalog page slowly
// and never ends is left out of Files after CatalogTimeout, for every
// caller asking at once; Files lists the rest.
func TestSlowCatalogLeftOut(t *testing.T) {
	testutil.CheckGoroutines(t)
	a, slow := newPair(t)
	cfg := testConfig(t, a)
	cfg.CatalogTimeout = 2 * time.Second
	sa := serveTest(t, cfg)
	own := fakeEntries(3, 5)
	for _, e := range own {
		sa.catalog.put(ownShares, e)
	}
	sa.changed()
	quit := make(chan struct{})
	defer close(quit)
	slow.Handle(ProtoList, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		req, err := decodeListReq(m.Payload)
		if err != nil {
			return nil, err
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-quit:
		case <-ctx.Done():
		}
		return encodeListPage(listPage{More: true, Entries: []Entry{{ID: incID(req.After), Name: "x"}}})
	}))
	if err := slow.SetResource(resourceName, summary{Count: 10, Version: 1}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the slow node's record", func() bool {
		r, ok := a.Lookup(slow.ID())
		_, adv := advertised(r)
		return ok && adv
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			files, err := sa.Files(ctx)
			if err == nil && len(files) != len(own) {
				err = fmt.Errorf("%d files listed, want this node's %d", len(files), len(own))
			}
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
