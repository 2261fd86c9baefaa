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

// waitFor polls cond every 100 ms of the bubble's time for up to d and
// returns how long it took; it fails the test past d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("no %s after %v", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
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
		took := waitFor(t, 2*timeout, "manifest", dl.hasManifest)
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
		waitFor(t, time.Minute, "finished download", func() bool { return dl.transfer().State == StateDone })
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
		took := waitFor(t, 5*timeout, "manifest", dl.hasManifest)
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
