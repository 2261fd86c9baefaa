package shards

import (
	"context"
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

// delayHave serves srv, its haves after d.
func delayHave(srv *testServer, d time.Duration) mesh.Handler {
	return mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		if m.Protocol == ProtoHave {
			time.Sleep(d)
		}
		return srv.serveMesh(ctx, m)
	})
}

// TestWaitingNoFlapAtStart: a download gets its manifest at once and its
// holder answers its have after a second. It must not say it waits for a
// holder meanwhile: the holder asked has not answered yet.
func TestWaitingNoFlapAtStart(t *testing.T) {
	raceOneProc(t)
	synctest.Test(t, func(t *testing.T) {
		_, dnode, nodes := askNet(t, "holder")
		holder := nodes[0]
		_, src := testFile(t, 1<<20, 52)
		h := delayHave(&testServer{sources: []pieceSource{src}}, time.Second)
		for _, proto := range []string{ProtoManifest, ProtoHave, ProtoBlock, ProtoSpan} {
			holder.Handle(proto, h)
		}
		dir := t.TempDir()
		db := openTestDB(t, filepath.Join(dir, "db"))
		t.Cleanup(func() { db.Close() })
		rd := startDownloads(t, dnode, dir, db, nil, func(c *DownloadsConfig, d *downloads) {
			c.HaveInterval = 2 * time.Second
			d.noLanes = true
		})
		if _, err := rd.fetch(t.Context(), src.link(holder.ID(), "wanted.bin")); err != nil {
			t.Fatal(err)
		}
		dl := rd.get(src.id)
		saw := false
		testutil.WaitFor(t, time.Minute, "finished download", func() bool {
			tr := dl.transfer()
			saw = saw || tr.Waiting == WaitNoHolder
			return tr.State == StateDone
		})
		if saw {
			t.Errorf("the download said %q while its holder's have was on its way", WaitNoHolder)
		}
	})
}

// TestWaitingNoHolderSlowHaves: the only holder of a download under way
// goes offline; two linked peers answer every have "none" after 19 s,
// one joined 12 s after the other, so that at all times one of them is
// asked. The download must still say it waits for a holder: a peer asked
// anew, which answered before, does not hold the wait undecided.
func TestWaitingNoHolderSlowHaves(t *testing.T) {
	raceOneProc(t)
	synctest.Test(t, func(t *testing.T) {
		nw, dnode, nodes := askNet(t, "holder", "slowA")
		holder, slowA := nodes[0], nodes[1]
		_, src := testFile(t, 4<<20, 51)
		(&testServer{sources: []pieceSource{src}, limit: rate.NewLimiter(256<<10, BlockSize)}).register(holder)
		slowHave := mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
			if m.Protocol != ProtoHave {
				return nil, ErrUnknown
			}
			select {
			case <-ctx.Done():
			case <-time.After(19 * time.Second):
			}
			return []byte{haveNone}, nil
		})
		for _, proto := range []string{ProtoManifest, ProtoHave, ProtoBlock, ProtoSpan} {
			slowA.Handle(proto, slowHave)
		}
		var listed atomic.Bool
		listed.Store(true)
		hid := holder.ID()
		dir := t.TempDir()
		db := openTestDB(t, filepath.Join(dir, "db"))
		t.Cleanup(func() { db.Close() })
		rd := startDownloads(t, dnode, dir, db, func(MD5) []mesh.ID {
			if listed.Load() {
				return []mesh.ID{hid}
			}
			return nil
		}, func(c *DownloadsConfig, d *downloads) {
			c.HaveInterval = 2 * time.Second
			c.RequestTimeout = 20 * time.Second
			d.noLanes = true
		})
		if _, err := rd.fetch(t.Context(), src.link(holder.ID(), "wanted.bin")); err != nil {
			t.Fatal(err)
		}
		dl := rd.get(src.id)
		time.Sleep(12 * time.Second)
		manual := func(c *mesh.Config) { c.ManualLinks = true }
		slowB := nw.NewNode(t, "slowB", meshtest.Options{Configure: manual})
		for _, proto := range []string{ProtoManifest, ProtoHave, ProtoBlock, ProtoSpan} {
			slowB.Handle(proto, slowHave)
		}
		if err := dnode.Connect(t.Context(), slowB.ID()); err != nil {
			t.Fatal(err)
		}
		nw.Kill(holder.ID())
		listed.Store(false)
		tr := dl.transfer()
		if tr.Have == tr.Size {
			t.Fatal("the download finished before its holder left: the test proves nothing")
		}
		took := testutil.WaitFor(t, 5*time.Minute, "no_holder", func() bool { return dl.transfer().Waiting == WaitNoHolder })
		t.Logf("no_holder %v after the holder left, %d of %d bytes", took, tr.Have, tr.Size)
	})
}
