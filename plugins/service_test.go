package plugins

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/internal/reslist"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
	"github.com/catnest/catnest/shards"
)

// tnode is a node of a test mesh with its shards and plugins services.
type tnode struct {
	mesh    *mesh.Node
	nw      *meshtest.Network
	ident   *mesh.Identity
	dir     string
	db      *bbolt.DB
	shards  *shards.Service
	plugins *Service
	stop    func()
}

// newMesh makes n linked nodes with shards and plugins, served until
// the test ends.
func newMesh(t *testing.T, names ...string) []*tnode {
	t.Helper()
	nw := meshtest.NewNetwork()
	var out []*tnode
	for _, name := range names {
		ident, err := mesh.NewIdentity()
		if err != nil {
			t.Fatal(err)
		}
		n := nw.NewNode(t, name, meshtest.Options{Configure: func(c *mesh.Config) {
			meshtest.Fast(c)
			c.Identity = ident
		}})
		tn := &tnode{mesh: n, nw: nw, ident: ident, dir: t.TempDir()}
		tn.start(t)
		out = append(out, tn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range out[1:] {
		if err := n.mesh.Connect(ctx, out[0].mesh.ID()); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// start opens the node's DB and serves its services until stop or the
// end of the test.
func (tn *tnode) start(t *testing.T) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(tn.dir, "catnest.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	scfg := shards.DefaultConfig()
	scfg.Node, scfg.DB, scfg.Dir = tn.mesh, db, tn.dir
	sh, err := shards.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Node, cfg.Shards, cfg.Identity, cfg.DB, cfg.Dir = tn.mesh, sh, tn.ident, db, tn.dir
	cfg.FetchTimeout = 30 * time.Second
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- sh.Serve(ctx) }()
	go func() { done <- p.Serve(ctx) }()
	stopped := false
	tn.db, tn.shards, tn.plugins = db, sh, p
	tn.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		for range 2 {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("Serve did not stop")
			}
		}
		db.Close()
	}
	t.Cleanup(tn.stop)
}

func src(name, version, perms, body string) []byte {
	return []byte(fmt.Sprintf("// ==CatnestPlugin==\n// @name %s\n// @description %s, a test plugin\n// @version %s\n// @permissions %s\n// ==/CatnestPlugin==\nexport default class P { %s }\n", name, name, version, perms, body))
}

// market waits until n's market holds a listing that cond accepts.
func market(t *testing.T, n *tnode, what string, cond func([]Listing) bool) []Listing {
	t.Helper()
	var ls []Listing
	testutil.WaitFor(t, 30*time.Second, what, func() bool {
		var err error
		ls, err = n.plugins.Market(context.Background(), "")
		return err == nil && cond(ls)
	})
	return ls
}

func find(ls []Listing, pub mesh.ID, name string) (Listing, bool) {
	i := slices.IndexFunc(ls, func(l Listing) bool { return l.Publisher == pub && l.Name == name })
	if i < 0 {
		return Listing{}, false
	}
	return ls[i], true
}

// TestPublishInstallUpdate: a plugin published on a is in b's market,
// installs over shards with the permissions granted, is updated by a's
// newer version (keeping its data), stays installed across a restart
// with a offline, and shows offline in the market then. A plugin of the
// same name by c is listed apart.
func TestPublishInstallUpdate(t *testing.T) {
	testutil.CheckGoroutines(t)
	ns := newMesh(t, "a", "b", "c")
	a, b, c := ns[0], ns[1], ns[2]
	ctx := context.Background()

	if _, err := a.plugins.Publish(ctx, []byte("not a plugin")); !errors.Is(err, ErrBadPlugin) {
		t.Fatalf("publishing junk: %v", err)
	}
	v1, err := a.plugins.Publish(ctx, src("Echo", "1.0.0", "chat-read chat-write", "v1() {}"))
	if err != nil {
		t.Fatal(err)
	}
	if again, err := a.plugins.Publish(ctx, src("Echo", "1.0.0", "chat-read chat-write", "v1() {}")); err != nil || again.ID != v1.ID {
		t.Fatalf("publishing the same file again: %v, %v", again, err)
	}
	if _, err := a.plugins.Publish(ctx, src("Echo", "1.0.0", "chat-read", "other() {}")); !errors.Is(err, ErrBadPlugin) {
		t.Fatalf("another file under a published version: %v", err)
	}
	cEcho, err := c.plugins.Publish(ctx, src("Echo", "3.0.0", "", "c() {}"))
	if err != nil {
		t.Fatal(err)
	}
	ls := market(t, b, "b to list both Echos", func(ls []Listing) bool {
		_, okA := find(ls, a.mesh.ID(), "Echo")
		_, okC := find(ls, c.mesh.ID(), "Echo")
		return okA && okC
	})
	la, _ := find(ls, a.mesh.ID(), "Echo")
	if la.ID != v1.ID || la.PublisherName != "a" || !la.Online || !slices.Equal(la.Permissions, []string{"chat-read", "chat-write"}) {
		t.Fatalf("a's Echo in b's market: %+v", la)
	}
	if got, _ := b.plugins.Market(ctx, "ECHO, A TEST"); len(got) != 2 {
		t.Fatalf("search: %+v", got)
	}
	if got, _ := b.plugins.Market(ctx, "karaoke"); len(got) != 0 {
		t.Fatalf("search for what is not there: %+v", got)
	}

	inst, err := b.plugins.Install(ctx, v1.ID, []string{"chat-read", "storage"})
	if err != nil {
		t.Fatal(err)
	}
	if !inst.Enabled || !slices.Equal(inst.Granted, []string{"chat-read"}) || inst.Publisher != a.mesh.ID() {
		t.Fatalf("installed: %+v", inst)
	}
	if got, err := b.plugins.Source(ctx, v1.ID); err != nil || string(got) != string(src("Echo", "1.0.0", "chat-read chat-write", "v1() {}")) {
		t.Fatalf("source: %q, %v", got, err)
	}
	// The plugin's file is shared for plugins on a and fetched for
	// plugins on b: the market lists it, no node's Files does.
	for _, n := range []*tnode{a, b, c} {
		if fs, err := n.shards.Files(ctx); err != nil || len(fs) != 0 {
			t.Fatalf("%s's Files: %+v, %v; want none", n.mesh.Name(), fs, err)
		}
	}
	if err := b.plugins.SetData(ctx, v1.ID, "greeting", "hi"); err != nil {
		t.Fatal(err)
	}

	v2, err := a.plugins.Publish(ctx, src("Echo", "1.1.0", "chat-read chat-write storage", "v2() {}"))
	if err != nil {
		t.Fatal(err)
	}
	market(t, b, "b to see Echo 1.1.0", func(ls []Listing) bool {
		l, ok := find(ls, a.mesh.ID(), "Echo")
		return ok && l.ID == v2.ID && l.Installed == "1.0.0"
	})
	if _, err := b.plugins.Install(ctx, v2.ID, []string{"chat-read", "storage"}); err != nil {
		t.Fatal(err)
	}
	all, _ := b.plugins.Installed(ctx)
	if len(all) != 1 || all[0].ID != v2.ID || all[0].Version != "1.1.0" || !slices.Equal(all[0].Granted, []string{"chat-read", "storage"}) {
		t.Fatalf("after the update: %+v", all)
	}
	if d, err := b.plugins.Data(ctx, v2.ID); err != nil || d["greeting"] != "hi" {
		t.Fatalf("data after the update: %v, %v", d, err)
	}
	if _, err := b.plugins.Install(ctx, cEcho.ID, nil); err != nil {
		t.Fatal(err)
	}
	if all, _ := b.plugins.Installed(ctx); len(all) != 2 {
		t.Fatalf("two Echos by two publishers: %+v", all)
	}
	if err := b.plugins.SetEnabled(ctx, v2.ID, false); err != nil {
		t.Fatal(err)
	}

	// a goes; b restarts: the plugin stays, and the market shows it
	// offline.
	a.stop()
	a.nw.Kill(a.mesh.ID())
	b.stop()
	b.start(t)
	all, err = b.plugins.Installed(ctx)
	if err != nil || len(all) != 2 || all[0].Enabled && all[0].ID == v2.ID {
		t.Fatalf("after a restart: %+v, %v", all, err)
	}
	if got, err := b.plugins.Source(ctx, v2.ID); err != nil || !strings.Contains(string(got), "v2()") {
		t.Fatalf("source after a restart: %v", err)
	}
	market(t, b, "a's Echo to show offline", func(ls []Listing) bool {
		l, ok := find(ls, a.mesh.ID(), "Echo")
		return ok && !l.Online && l.ID == v2.ID && l.PublisherName == "a"
	})
	if err := b.plugins.Uninstall(ctx, v2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.plugins.Source(ctx, v2.ID); !errors.Is(err, ErrUnknown) {
		t.Fatalf("source of an uninstalled plugin: %v", err)
	}
}

// TestInstallRefusesForgery: a hostile node lists a plugin signed by
// itself in another publisher's name, and one whose file is not what
// its entry says; neither installs, and the first never reaches the
// market. Verify refuses a tampered file and a forged signature.
func TestInstallRefusesForgery(t *testing.T) {
	testutil.CheckGoroutines(t)
	ns := newMesh(t, "honest", "victim", "mallory")
	honest, victim, mallory := ns[0], ns[1], ns[2]
	ctx := context.Background()

	good := src("Echo", "1.0.0", "chat-write", "")
	e, err := honest.plugins.Publish(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	// Verify, on its own.
	if _, err := Verify(e, good); err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-3] = '/'
	if _, err := Verify(e, tampered); !errors.Is(err, ErrTampered) {
		t.Fatalf("tampered file: %v", err)
	}
	forged := e
	forged.Signature, _ = Sign(mallory.ident, e.Name, e.Version, e.ID)
	forged.Publisher = honest.mesh.ID()
	if _, err := Verify(forged, good); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "not the claimed publisher") {
		t.Fatalf("a key not the publisher's: %v", err)
	}
	stolenKey := e
	mine, _ := Sign(mallory.ident, e.Name, e.Version, e.ID)
	stolenKey.Sig = mine.Sig
	if _, err := Verify(stolenKey, good); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "did not sign") {
		t.Fatalf("a signature not by the key: %v", err)
	}
	resigned := e
	resigned.Version = "9.0.0"
	if err := resigned.check(); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("an entry whose version is not what was signed: %v", err)
	}

	// Mallory lists a file of her own, signed by her, in honest's name.
	evil := src("Echo", "2.0.0", "chat-read chat-write storage", "steal() {}")
	me, err := mallory.plugins.Publish(ctx, evil)
	if err != nil {
		t.Fatal(err)
	}
	mallory.plugins.own.Remove(1, me.ID)
	bad := me
	bad.Publisher = honest.mesh.ID()
	mallory.plugins.own.Put(1, bad)
	mallory.plugins.advertise()
	market(t, victim, "the honest Echo in the market", func(ls []Listing) bool {
		_, ok := find(ls, honest.mesh.ID(), "Echo")
		return ok
	})
	// Mallory's list is refused whole (her summary reached the victim
	// with her record; the page fails its signature check).
	ls, _ := victim.plugins.Market(ctx, "")
	for _, l := range ls {
		if l.ID == me.ID {
			t.Fatalf("the forged entry is in the market: %+v", l)
		}
	}
	if _, err := victim.plugins.Install(ctx, me.ID, []string{"chat-write"}); !errors.Is(err, ErrUnknown) {
		t.Fatalf("installing the forged entry: %v", err)
	}

	// Mallory signs an entry for a file that says it is something else.
	other := src("Helper", "1.0.0", "storage", "")
	oe, err := mallory.plugins.Publish(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	mallory.plugins.own.Remove(1, oe.ID)
	mallory.plugins.own.Remove(1, me.ID)
	lie := oe
	lie.Name, lie.Permissions = "Echo", ""
	lie.Signature, _ = Sign(mallory.ident, lie.Name, lie.Version, lie.ID)
	mallory.plugins.own.Put(1, lie)
	mallory.plugins.advertise()
	market(t, victim, "mallory's entry in the market", func(ls []Listing) bool {
		l, ok := find(ls, mallory.mesh.ID(), "Echo")
		return ok && l.ID == oe.ID
	})
	if _, err := victim.plugins.Install(ctx, oe.ID, nil); !errors.Is(err, ErrTampered) {
		t.Fatalf("installing a file that is not what its entry says: %v", err)
	}
	if all, _ := victim.plugins.Installed(ctx); len(all) != 0 {
		t.Fatalf("something was installed: %+v", all)
	}
	if _, err := victim.plugins.Install(ctx, e.ID, nil); err != nil {
		t.Fatalf("the honest plugin: %v", err)
	}
}

// TestDataLimits: a plugin's data stays within MaxData bytes and
// maxDataKeys keys whatever it tries; the refused write changes nothing.
func TestDataLimits(t *testing.T) {
	testutil.CheckGoroutines(t)
	ns := newMesh(t, "a", "b")
	a, b := ns[0], ns[1]
	ctx := context.Background()
	e, err := a.plugins.Publish(ctx, src("Store", "1.0.0", "storage", ""))
	if err != nil {
		t.Fatal(err)
	}
	market(t, b, "the plugin in b's market", func(ls []Listing) bool { return len(ls) == 1 })
	if _, err := b.plugins.Install(ctx, e.ID, []string{"storage"}); err != nil {
		t.Fatal(err)
	}
	val := strings.Repeat("x", 1000)
	var stored int
	for i := range 1000 {
		err := b.plugins.SetData(ctx, e.ID, fmt.Sprintf("k%03d", i), val)
		if err != nil {
			if !errors.Is(err, ErrDataFull) {
				t.Fatal(err)
			}
			break
		}
		stored++
	}
	d, _ := b.plugins.Data(ctx, e.ID)
	size := 0
	for k, v := range d {
		size += len(k) + len(v)
	}
	if len(d) != stored || size > MaxData || stored < MaxData/1004-1 {
		t.Fatalf("%d keys, %d bytes kept after %d writes", len(d), size, stored)
	}
	if err := b.plugins.SetData(ctx, e.ID, "big", strings.Repeat("y", MaxData)); !errors.Is(err, ErrDataFull) {
		t.Fatalf("a value over MaxData: %v", err)
	}
	if err := b.plugins.SetData(ctx, e.ID, "k000", ""); err != nil {
		t.Fatal(err)
	}
	if d, _ := b.plugins.Data(ctx, e.ID); len(d) != stored-1 {
		t.Fatalf("delete: %d keys", len(d))
	}
	if err := b.plugins.SetData(ctx, shards.MD5(md5.Sum([]byte("x"))), "k", "v"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("data of a plugin not installed: %v", err)
	}
}

// FuzzDecodePage: any bytes decode into a page within the limits, every
// entry signed by its publisher, or fail with ErrBadPage.
func FuzzDecodePage(f *testing.F) {
	ident, err := mesh.NewIdentity()
	if err != nil {
		f.Fatal(err)
	}
	id := shards.MD5(md5.Sum([]byte("x")))
	sig, _ := Sign(ident, "x", "1.0.0", id)
	good, _ := encodePage(pageOf(Entry{ID: id, Size: 1, Name: "x", Version: "1.0.0", Permissions: "chat-read", Signature: sig}))
	f.Add(good)
	f.Add([]byte(`{"v":1,"e":[],"m":true}`))
	f.Add([]byte(`{"v":1,"e":[{"id":"00000000000000000000000000000000","n":"x","v":"1","s":1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePage(b)
		if err != nil {
			if !errors.Is(err, ErrBadPage) {
				t.Fatalf("error %v does not wrap ErrBadPage", err)
			}
			return
		}
		if len(p.Entries) > MaxPage {
			t.Fatalf("%d entries", len(p.Entries))
		}
		for _, e := range p.Entries {
			if err := e.Verify(e.Name, e.Version, e.ID); err != nil {
				t.Fatalf("accepted an entry with a bad signature: %v", err)
			}
		}
	})
}

// pageOf is a last page holding entries.
func pageOf(entries ...Entry) reslist.Page[Entry] {
	return reslist.Page[Entry]{Version: 1, Entries: entries}
}
