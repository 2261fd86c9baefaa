package shards

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// askCounter is a downloader's node that counts the manifest requests it
// has out at once (most), as the asker sees them: the mesh does not tell a
// handler that its asker gave up.
type askCounter struct {
	*mesh.Node
	out, most atomic.Int64
}

func (c *askCounter) Request(ctx context.Context, to mesh.ID, proto string, payload []byte, opts ...mesh.SendOption) ([]byte, error) {
	if proto == ProtoManifest {
		n := c.out.Add(1)
		defer c.out.Add(-1)
		for m := c.most.Load(); n > m && !c.most.CompareAndSwap(m, n); m = c.most.Load() {
		}
	}
	return c.Node.Request(ctx, to, proto, payload, opts...)
}

// silentNode takes every request and never answers (until the test
// ends), as a hung or hostile holder; asked counts the manifest asks.
type silentNode struct {
	stop  chan struct{}
	asked atomic.Int64
}

func newSilentNode(t *testing.T, n *mesh.Node) *silentNode {
	s := &silentNode{stop: make(chan struct{})}
	t.Cleanup(func() { close(s.stop) })
	h := mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		if m.Protocol == ProtoManifest {
			s.asked.Add(1)
		}
		select {
		case <-ctx.Done():
		case <-s.stop:
		}
		return nil, ErrUnknown
	})
	for _, proto := range []string{ProtoManifest, ProtoHave, ProtoBlock, ProtoSpan} {
		n.Handle(proto, h)
	}
	return s
}

// delayManifest serves srv, its manifests after d.
func delayManifest(srv *testServer, d time.Duration) mesh.Handler {
	return mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		if m.Protocol == ProtoManifest {
			time.Sleep(d)
		}
		return srv.serveMesh(ctx, m)
	})
}

// askNet makes a downloader linked to one node per name (manual links,
// in the caller's synctest bubble).
func askNet(t *testing.T, names ...string) (*meshtest.Network, *mesh.Node, []*mesh.Node) {
	t.Helper()
	manual := func(c *mesh.Config) {
		c.ManualLinks = true
		c.HighPeers = len(names) + 8
	}
	nw := meshtest.NewNetwork()
	d := nw.NewNode(t, "downloader", meshtest.Options{Configure: manual})
	var nodes []*mesh.Node
	for _, name := range names {
		n := nw.NewNode(t, name, meshtest.Options{Configure: manual})
		if err := d.Connect(t.Context(), n.ID()); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	return nw, d, nodes
}

func (dl *download) hasManifest() bool {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	return dl.man != nil
}

// TestManifestAskedInParallel: the link's node takes the manifest request
// and never answers, a holder the catalog lists answers at once with the
// manifest of another file, an honest one answers after a second. Asked
// one at a time, the silent node held the download for RequestTimeout
// (20 s) before anyone else was asked; now the three are asked at once
// and the manifest is in after the honest holder's second. The lying
// manifest is not used (it does not match the link's hash) and its sender
// is scored down and sends no piece.
func TestManifestAskedInParallel(t *testing.T) {
	raceOneProc(t)
	synctest.Test(t, func(t *testing.T) {
		_, dnode, nodes := askNet(t, "silent", "liar", "honest")
		silent, liar, honest := nodes[0], nodes[1], nodes[2]
		data, src := testFile(t, 1<<20, 21)
		otherData, other := testFile(t, len(data), 22)
		sil := newSilentNode(t, silent)
		lie := &testServer{sources: []pieceSource{&readerSource{id: src.id, man: other.man, r: bytes.NewReader(otherData)}}}
		lie.register(liar)
		const honestDelay = time.Second
		h := delayManifest(&testServer{sources: []pieceSource{src}}, honestDelay)
		for _, proto := range []string{ProtoManifest, ProtoHave, ProtoBlock, ProtoSpan} {
			honest.Handle(proto, h)
		}
		dir := t.TempDir()
		db := openTestDB(t, filepath.Join(dir, "db"))
		t.Cleanup(func() { db.Close() })
		const timeout = 20 * time.Second
		listed := []mesh.ID{liar.ID(), honest.ID()}
		counter := &askCounter{Node: dnode}
		rd := startDownloads(t, counter, dir, db, func(MD5) []mesh.ID { return listed }, func(c *DownloadsConfig, d *downloads) {
			c.HaveInterval = 2 * time.Second
			c.RequestTimeout = timeout
			d.noLanes = true // md5-simd's pooled channels must not come from the bubble
		})
		if _, err := rd.fetch(t.Context(), src.link(silent.ID(), "wanted.bin")); err != nil {
			t.Fatal(err)
		}
		dl := rd.get(src.id)
		took := testutil.WaitFor(t, 2*timeout, "manifest", dl.hasManifest)
		t.Logf("manifest in %v (the honest holder answers after %v; RequestTimeout %v); %d asks out at most at once",
			took, honestDelay, timeout, counter.most.Load())
		if took >= timeout/2 {
			t.Errorf("manifest in %v beside a silent link node: the asks waited on it (RequestTimeout %v)", took, timeout)
		}
		if sil.asked.Load() == 0 {
			t.Fatal("the silent node was never asked: the test proves nothing")
		}
		dl.mu.Lock()
		got := dl.manHash
		dl.mu.Unlock()
		if got != src.man.Hash() {
			t.Fatalf("download took manifest %s, want the link's %s", got, src.man.Hash())
		}
		testutil.WaitFor(t, time.Minute, "finished download", func() bool { return dl.transfer().State == StateDone })
		final := dl.transfer()
		if got := fileMD5(t, final.Path); got != src.id {
			t.Fatalf("finished file md5 %s, want %s", got, src.id)
		}
		if n := final.Sources[liar.ID()]; n != 0 {
			t.Errorf("%d bytes taken from the liar", n)
		}
		for _, p := range dnode.Peers() {
			if p.ID == liar.ID() && p.Failures == 0 {
				t.Errorf("the liar's link counts no offence")
			}
			if p.ID == honest.ID() && p.Failures != 0 {
				t.Errorf("the honest holder's link counts %d offences", p.Failures)
			}
		}
	})
}

// TestManifestAsksBounded: a download whose link's node and first five
// listed holders never answer has at most manifestAsks manifest requests
// out at once, not one per holder, and still gets the manifest from the
// honest holder listed last once the silent ones time out: those asked
// already, due again, wait behind it.
func TestManifestAsksBounded(t *testing.T) {
	raceOneProc(t)
	synctest.Test(t, func(t *testing.T) {
		const silent = 6
		var names []string
		for k := range silent {
			names = append(names, fmt.Sprintf("silent%d", k))
		}
		_, dnode, nodes := askNet(t, append(names, "honest")...)
		_, src := testFile(t, 256<<10, 23)
		var asked []*silentNode
		for _, n := range nodes[:silent] {
			asked = append(asked, newSilentNode(t, n))
		}
		(&testServer{sources: []pieceSource{src}}).register(nodes[silent])
		dir := t.TempDir()
		db := openTestDB(t, filepath.Join(dir, "db"))
		t.Cleanup(func() { db.Close() })
		const timeout = 20 * time.Second
		var listed []mesh.ID
		for _, n := range nodes[1:] {
			listed = append(listed, n.ID())
		}
		counter := &askCounter{Node: dnode}
		rd := startDownloads(t, counter, dir, db, func(MD5) []mesh.ID { return listed }, func(c *DownloadsConfig, d *downloads) {
			c.HaveInterval = 2 * time.Second
			c.RequestTimeout = timeout
			d.noLanes = true
		})
		if _, err := rd.fetch(t.Context(), src.link(nodes[0].ID(), "wanted.bin")); err != nil {
			t.Fatal(err)
		}
		dl := rd.get(src.id)
		took := testutil.WaitFor(t, 5*timeout, "manifest", dl.hasManifest)
		t.Logf("manifest in %v behind %d silent holders; %d asks out at most at once", took, silent, counter.most.Load())
		// Two rounds of timeouts of three silent holders each, then the
		// honest one: not starved by the silent ones due again first.
		if want := (silent/manifestAsks + 1) * timeout; took > want {
			t.Errorf("manifest in %v behind %d silent holders, want at most %v", took, silent, want)
		}
		if most := counter.most.Load(); most > manifestAsks {
			t.Errorf("%d manifest asks out at once, want at most %d", most, manifestAsks)
		}
		if most := counter.most.Load(); most < 2 {
			t.Errorf("at most %d manifest ask out at once: the asks did not go in parallel", most)
		}
		for k, s := range asked[:manifestAsks] {
			if s.asked.Load() == 0 {
				t.Errorf("silent holder %d, among the first %d, was not asked", k, manifestAsks)
			}
		}
	})
}

// TestWaitingNoHolderWithManifest: a download that has its manifest and
// part of the file loses its only holder (it goes offline); it says it
// waits for a holder (no_holder) and stays downloading, and once another
// holder comes online it says so no more and finishes. Before, Waiting was
// only set before the manifest came: this download showed 0 B/s and
// nothing of why for as long as the holder stayed away.
func TestWaitingNoHolderWithManifest(t *testing.T) {
	raceOneProc(t)
	synctest.Test(t, func(t *testing.T) {
		nw, dnode, nodes := askNet(t, "holder", "bystander")
		holder := nodes[0]
		_, src := testFile(t, 4<<20, 24)
		// Slow, so the holder goes while the download runs.
		(&testServer{sources: []pieceSource{src}, limit: rate.NewLimiter(256<<10, BlockSize)}).register(holder)
		var listed atomic.Pointer[mesh.ID]
		hid := holder.ID()
		listed.Store(&hid)
		holders := func(MD5) []mesh.ID {
			if h := listed.Load(); h != nil {
				return []mesh.ID{*h}
			}
			return nil
		}
		dir := t.TempDir()
		db := openTestDB(t, filepath.Join(dir, "db"))
		t.Cleanup(func() { db.Close() })
		const interval = 2 * time.Second
		rd := startDownloads(t, dnode, dir, db, holders, func(c *DownloadsConfig, d *downloads) {
			c.HaveInterval = interval
			d.noLanes = true
		})
		if _, err := rd.fetch(t.Context(), src.link(holder.ID(), "wanted.bin")); err != nil {
			t.Fatal(err)
		}
		dl := rd.get(src.id)
		testutil.WaitFor(t, time.Minute, "first MiB", func() bool { return dl.transfer().Have >= 1<<20 })
		if tr := dl.transfer(); tr.Waiting != "" {
			t.Fatalf("download waiting %q while its holder serves it", tr.Waiting)
		}

		nw.Kill(holder.ID())
		listed.Store(nil) // the catalogs drop it
		took := testutil.WaitFor(t, time.Minute, "no_holder", func() bool { return dl.transfer().Waiting == WaitNoHolder })
		tr := dl.transfer()
		t.Logf("waiting %q %v after the holder left, %d of %d bytes", tr.Waiting, took, tr.Have, tr.Size)
		if tr.State != StateDownloading || tr.Have == tr.Size {
			t.Fatalf("download is %s with %d of %d bytes, want downloading, not done", tr.State, tr.Have, tr.Size)
		}
		time.Sleep(time.Minute)
		if tr := dl.transfer(); tr.State != StateDownloading || tr.Waiting != WaitNoHolder {
			t.Fatalf("a minute on, download is %s waiting %q, want downloading waiting %q", tr.State, tr.Waiting, WaitNoHolder)
		}

		// Another holder comes online, linked and listed.
		manual := func(c *mesh.Config) { c.ManualLinks = true }
		back := nw.NewNode(t, "holder2", meshtest.Options{Configure: manual})
		(&testServer{sources: []pieceSource{src}, limit: rate.NewLimiter(256<<10, BlockSize)}).register(back)
		if err := dnode.Connect(t.Context(), back.ID()); err != nil {
			t.Fatal(err)
		}
		bid := back.ID()
		listed.Store(&bid)
		had := dl.transfer().Have
		testutil.WaitFor(t, time.Minute, "waiting cleared while pieces come", func() bool {
			tr := dl.transfer()
			return tr.State == StateDownloading && tr.Waiting == "" && tr.Have > had
		})
		testutil.WaitFor(t, time.Minute, "finished download", func() bool { return dl.transfer().State == StateDone })
	})
}

// TestWaitingNoHolderUnshared: the only holder of a download under way,
// the link's node, stops sharing the file (DELETE on it) and stays online,
// answering "unknown" to every ask. The download says it waits for a
// holder and stays downloading, neither failing nor asking the holder
// more than now and then; once the holder shares the file again it
// finishes.
func TestWaitingNoHolderUnshared(t *testing.T) {
	raceOneProc(t)
	synctest.Test(t, func(t *testing.T) {
		_, dnode, nodes := askNet(t, "holder")
		holder := nodes[0]
		_, src := testFile(t, 4<<20, 25)
		srv := &testServer{sources: []pieceSource{src}, limit: rate.NewLimiter(256<<10, BlockSize)}
		var unshared atomic.Bool
		var asked atomic.Int64
		h := mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
			if !unshared.Load() {
				return srv.serveMesh(ctx, m)
			}
			asked.Add(1)
			return nil, fmt.Errorf("%w: %s", ErrUnknown, src.id)
		})
		for _, proto := range []string{ProtoManifest, ProtoHave, ProtoBlock, ProtoSpan} {
			holder.Handle(proto, h)
		}
		dir := t.TempDir()
		db := openTestDB(t, filepath.Join(dir, "db"))
		t.Cleanup(func() { db.Close() })
		const interval = 2 * time.Second
		rd := startDownloads(t, dnode, dir, db, nil, func(c *DownloadsConfig, d *downloads) {
			c.HaveInterval = interval
			d.noLanes = true
		})
		if _, err := rd.fetch(t.Context(), src.link(holder.ID(), "wanted.bin")); err != nil {
			t.Fatal(err)
		}
		dl := rd.get(src.id)
		testutil.WaitFor(t, time.Minute, "first MiB", func() bool { return dl.transfer().Have >= 1<<20 })

		unshared.Store(true)
		took := testutil.WaitFor(t, time.Minute, "no_holder", func() bool { return dl.transfer().Waiting == WaitNoHolder })
		before := asked.Load()
		const stretch = 5 * time.Minute
		time.Sleep(stretch)
		got := asked.Load() - before
		tr := dl.transfer()
		t.Logf("waiting %q %v after the holder stopped sharing; %d asks to it in the %v after, %d of %d bytes",
			tr.Waiting, took, got, stretch, tr.Have, tr.Size)
		if tr.State != StateDownloading || tr.Waiting != WaitNoHolder || tr.Have == tr.Size {
			t.Fatalf("download is %s waiting %q with %d of %d bytes, want downloading waiting %q", tr.State, tr.Waiting, tr.Have, tr.Size, WaitNoHolder)
		}
		// Asked every 3 HaveIntervals at most: a have, and its blocks'
		// refusals do not count as it holds nothing.
		if most := int64(stretch/(3*interval)) + 2; got > most {
			t.Errorf("%d asks to the holder that stopped sharing in %v, want at most %d", got, stretch, most)
		}
		if got == 0 {
			t.Errorf("the holder was not asked in %v: it must still be asked now and then", stretch)
		}

		unshared.Store(false)
		had := tr.Have
		testutil.WaitFor(t, time.Minute, "waiting cleared while pieces come", func() bool {
			tr := dl.transfer()
			return tr.State == StateDownloading && tr.Waiting == "" && tr.Have > had
		})
		testutil.WaitFor(t, time.Minute, "finished download", func() bool { return dl.transfer().State == StateDone })
	})
}

// TestServiceHolderRemovesWhileDownloading: whole Services; the only
// holder of a file removes it (DELETE /api/shards/{id} on it) while
// another node downloads it. The downloader shows its transfer
// downloading and waiting for a holder (no_holder, in GET /api/shards,
// the Files view and catnest get), and once the holder shares the file
// again it finishes. Before, it showed downloading at 0 B/s and nothing
// of why.
func TestServiceHolderRemovesWhileDownloading(t *testing.T) {
	testutil.CheckGoroutines(t)
	a, b := newPair(t)
	cfga := testConfig(t, a)
	cfga.UploadRate = 512 << 10 // the download runs for seconds
	sa := serveTest(t, cfga)
	sb := serveTest(t, testConfig(t, b))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "f.bin")
	writeRandom(t, path, 8<<20+5, 31)
	l := shareLink(t, ctx, sa, path)
	if _, err := sb.Fetch(ctx, l); err != nil {
		t.Fatal(err)
	}
	transfer := func() Transfer {
		tr, err := sb.Transfer(ctx, l.ID)
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	testutil.WaitFor(t, time.Minute, "the first MiB", func() bool { return transfer().Have >= 1<<20 })
	if err := sa.Remove(ctx, l.ID); err != nil {
		t.Fatal(err)
	}
	took := testutil.WaitFor(t, time.Minute, "the downloader to wait for a holder", func() bool {
		tr := transfer()
		if tr.State != StateDownloading {
			t.Fatalf("download is %s (%s) after its holder removed the file, want downloading", tr.State, tr.Error)
		}
		return tr.Waiting == WaitNoHolder
	})
	tr := transfer()
	t.Logf("waiting %q %v after the holder removed the file, %d of %d bytes", tr.Waiting, took, tr.Have, tr.Size)
	if tr.Have == tr.Size {
		t.Fatal("the download finished before the holder removed the file: the test proves nothing")
	}
	if _, err := sa.Share(ctx, path); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 2*time.Minute, "the download to finish once the file is shared again", func() bool {
		tr := transfer()
		if tr.State == StateFailed {
			t.Fatalf("download failed: %s", tr.Error)
		}
		return tr.State == StateDone
	})
	if got := fileMD5(t, transfer().Path); got != l.ID {
		t.Fatalf("finished file md5 %s, want %s", got, l.ID)
	}
}
