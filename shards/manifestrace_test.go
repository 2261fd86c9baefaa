package shards

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// TestManifestHashlessLinkNodeFirst: a link without a manifest hash, its
// node honest but slow to answer (a second), and a linked peer that holds
// nothing known answering at once with the manifest of another file of
// the same size. Without a hash the first manifest in is taken and only
// the whole file's MD5 at the end tells: asked together, the liar's won
// the race, and the download fetched the whole file from the liar alone
// (the honest node serves "another manifest") before rejecting it. Peers
// that are not known holders are asked only while no known holder is, as
// when the asks went one at a time, link's node first.
func TestManifestHashlessLinkNodeFirst(t *testing.T) {
	raceOneProc(t)
	synctest.Test(t, func(t *testing.T) {
		_, dnode, nodes := askNet(t, "linknode", "liar")
		linkNode, liar := nodes[0], nodes[1]
		_, src := testFile(t, 1<<20, 41)
		otherData, other := testFile(t, 1<<20, 42)
		// Slow, as a liar would be, so that its manifest is still in use
		// when looked at.
		lie := &testServer{sources: []pieceSource{&readerSource{id: src.id, man: other.man, r: bytes.NewReader(otherData)}}, limit: rate.NewLimiter(64<<10, BlockSize)}
		lie.register(liar)
		h := delayManifest(&testServer{sources: []pieceSource{src}}, time.Second)
		for _, proto := range []string{ProtoManifest, ProtoHave, ProtoBlock, ProtoSpan} {
			linkNode.Handle(proto, h)
		}
		dir := t.TempDir()
		db := openTestDB(t, filepath.Join(dir, "db"))
		t.Cleanup(func() { db.Close() })
		rd := startDownloads(t, dnode, dir, db, nil, func(c *DownloadsConfig, d *downloads) {
			c.HaveInterval = 2 * time.Second
			c.RequestTimeout = 20 * time.Second
			d.noLanes = true
		})
		l := src.link(linkNode.ID(), "wanted.bin")
		l.Manifest = Hash{}
		if _, err := rd.fetch(t.Context(), l); err != nil {
			t.Fatal(err)
		}
		dl := rd.get(src.id)
		testutil.WaitFor(t, time.Minute, "manifest", dl.hasManifest)
		dl.mu.Lock()
		got := dl.manHash
		dl.mu.Unlock()
		if got != src.man.Hash() {
			t.Fatalf("download took manifest %s (the liar's is %s), want the link node's %s", got, other.man.Hash(), src.man.Hash())
		}
		testutil.WaitFor(t, time.Minute, "finished download", func() bool { return dl.transfer().State == StateDone })
		if n := dl.transfer().Sources[liar.ID()]; n != 0 {
			t.Errorf("%d bytes taken from the liar", n)
		}
	})
}

// busyManifests is a downloader's node to which peer busy answers every
// manifest request busy (mesh.ErrBusy) while on; haveAt is when peer busy
// was first asked for its have.
type busyManifests struct {
	*mesh.Node
	busy mesh.ID
	mu   sync.Mutex
	on   bool
	// haveAt: when busy was first asked for its have.
	haveAt time.Time
}

func (b *busyManifests) Request(ctx context.Context, to mesh.ID, proto string, payload []byte, opts ...mesh.SendOption) ([]byte, error) {
	if to == b.busy {
		b.mu.Lock()
		on := b.on
		if proto == ProtoHave && b.haveAt.IsZero() {
			b.haveAt = time.Now()
		}
		b.mu.Unlock()
		if on && proto == ProtoManifest {
			return nil, fmt.Errorf("%w: %s", mesh.ErrBusy, to.Short())
		}
	}
	return b.Node.Request(ctx, to, proto, payload, opts...)
}

// TestManifestCancelledBusyAskNoBackoff: the link's node is busy when
// asked for the manifest and a listed holder serves it after a second;
// the busy node's ask is then cancelled. A cancelled ask says nothing of
// its peer, but it ended with the busy error (requestPatient, stopped
// while waiting to retry) and was recorded as a failure: the link's node
// was asked for its have 2 HaveIntervals later instead of at once.
func TestManifestCancelledBusyAskNoBackoff(t *testing.T) {
	raceOneProc(t)
	synctest.Test(t, func(t *testing.T) {
		_, dnode, nodes := askNet(t, "busy", "holder")
		busy, holder := nodes[0], nodes[1]
		_, src := testFile(t, 8<<20, 43) // 32 s from the holder alone
		(&testServer{sources: []pieceSource{src}}).register(busy)
		slow := &testServer{sources: []pieceSource{src}, limit: rate.NewLimiter(256<<10, BlockSize)}
		h := delayManifest(slow, time.Second)
		for _, proto := range []string{ProtoManifest, ProtoHave, ProtoBlock, ProtoSpan} {
			holder.Handle(proto, h)
		}
		dir := t.TempDir()
		db := openTestDB(t, filepath.Join(dir, "db"))
		t.Cleanup(func() { db.Close() })
		const interval = 10 * time.Second
		bn := &busyManifests{Node: dnode, busy: busy.ID(), on: true}
		listed := []mesh.ID{holder.ID()}
		rd := startDownloads(t, bn, dir, db, func(MD5) []mesh.ID { return listed }, func(c *DownloadsConfig, d *downloads) {
			c.HaveInterval = interval
			c.RequestTimeout = 20 * time.Second
			d.noLanes = true
		})
		if _, err := rd.fetch(t.Context(), src.link(busy.ID(), "wanted.bin")); err != nil {
			t.Fatal(err)
		}
		dl := rd.get(src.id)
		testutil.WaitFor(t, time.Minute, "manifest", dl.hasManifest)
		manAt := time.Now()
		bn.mu.Lock()
		bn.on = false
		bn.mu.Unlock()
		testutil.WaitFor(t, time.Minute, "the busy node asked for its have", func() bool {
			bn.mu.Lock()
			defer bn.mu.Unlock()
			return !bn.haveAt.IsZero()
		})
		bn.mu.Lock()
		after := bn.haveAt.Sub(manAt)
		bn.mu.Unlock()
		t.Logf("the busy link node asked for its have %v after the manifest came", after)
		if after >= interval {
			t.Errorf("the link node, whose manifest ask was cancelled, asked for its have %v after the manifest: it was backed off", after)
		}
		testutil.WaitFor(t, time.Minute, "finished download", func() bool { return dl.transfer().State == StateDone })
	})
}
