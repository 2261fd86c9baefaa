package shards

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// manifestWaitNet is newHaveNet with nDownloads downloads started whose
// links name a node that is offline (it left the network): nobody linked
// holds their manifests. holders stands in for the catalogs.
func manifestWaitNet(t *testing.T, nDownloads, others int, interval time.Duration, holders func(MD5) []mesh.ID, serves func(k int) *testServer) (*haveNet, *runningDownloads, []*readerSource) {
	t.Helper()
	hn := newHaveNet(t, others, &testServer{}, serves)
	gone := hn.nw.NewNode(t, "gone", meshtest.Options{Configure: func(c *mesh.Config) { c.ManualLinks = true }})
	hn.nw.Kill(gone.ID())
	dir := t.TempDir()
	db := openTestDB(t, filepath.Join(dir, "db"))
	t.Cleanup(func() { db.Close() })
	rd := startDownloads(t, hn.d, dir, db, holders, func(c *DownloadsConfig, d *downloads) {
		c.HaveInterval = interval
		d.noLanes = true // md5-simd's pooled channels must not come from the bubble
	})
	var srcs []*readerSource
	for k := range nDownloads {
		_, src := testFile(t, 256<<10, byte(k+1))
		srcs = append(srcs, src)
		if _, err := rd.fetch(t.Context(), src.link(gone.ID(), fmt.Sprintf("f%d", k))); err != nil {
			t.Fatal(err)
		}
	}
	return hn, rd, srcs
}

// TestManifestAsksBackOff: 30 downloads whose holder is offline, on a node
// linked to 32 peers that hold none of them, ask those peers for the
// manifest ever more rarely, down to once per haveBackoffMax HaveIntervals
// each, as the have polling does. Before, each download asked every peer
// every 30 s: 9,600 asks in the 5 minutes counted, where now at most 4,800
// go. Each peer is still asked now and then, the transfers say that no
// holder is online, and peers that leave leave no state behind.
func TestManifestAsksBackOff(t *testing.T) {
	raceOneProc(t)
	const nDownloads, others = 30, 32
	synctest.Test(t, func(t *testing.T) {
		const interval = 2 * time.Second
		hn, rd, srcs := manifestWaitNet(t, nDownloads, others, interval, nil, func(int) *testServer { return nil })
		// The backoff reaches its cap after 4+8+16+32+64 s.
		time.Sleep(3 * time.Minute)
		before := hn.askedTotal()
		const stretch = 5 * time.Minute
		time.Sleep(stretch)
		got := hn.askedTotal() - before
		pairs := int64(nDownloads * others)
		most := pairs * int64(stretch/(haveBackoffMax*interval)+1)
		least := pairs * int64(stretch/(haveBackoffMax*interval)-1)
		t.Logf("%d manifest asks to %d non-holders from %d downloads in %v (%.1f/s; at most %d, at least %d)",
			got, others, nDownloads, stretch, float64(got)/stretch.Seconds(), most, least)
		if got > most {
			t.Errorf("%d manifest asks in %v, want at most %d", got, stretch, most)
		}
		if got < least {
			t.Errorf("%d manifest asks in %v, want at least %d: peers must still be asked now and then", got, stretch, least)
		}
		for _, src := range srcs {
			tr := rd.get(src.id).transfer()
			if tr.State != StateDownloading || tr.Waiting != WaitNoHolder {
				t.Fatalf("download %s is %s waiting %q, want downloading waiting %q", src.id, tr.State, tr.Waiting, WaitNoHolder)
			}
		}

		// Half the peers leave: the downloads forget them.
		for _, n := range hn.others[:others/2] {
			hn.nw.Kill(n.ID())
		}
		time.Sleep(haveBackoffMax*interval + 2*interval)
		for _, src := range srcs {
			dl := rd.get(src.id)
			dl.mu.Lock()
			n := len(dl.idle)
			dl.mu.Unlock()
			// The linked non-holder, the offline link's node, the rest.
			if n > 2+others/2 {
				t.Errorf("download %s keeps %d idle peers after half of %d left, want at most %d", src.id, n, others, 2+others/2)
			}
		}
	})
}

// TestManifestLateHolderFound: downloads whose holders were offline for
// minutes, their linked peers backed off to the cap, find a holder that
// turns up at once: one that the catalog lists (it came online and
// advertises the resource), and one that asks this node for its have (a
// fellow downloader that got the manifest elsewhere). They get their
// manifests within a few HaveIntervals and finish.
func TestManifestLateHolderFound(t *testing.T) {
	raceOneProc(t)
	const nDownloads, others = 8, 16
	synctest.Test(t, func(t *testing.T) {
		const interval = 2 * time.Second
		// others[0] comes to hold the first half of the resources,
		// others[1] the second half; the sources are the files
		// manifestWaitNet makes (the same seeds).
		var halves [2][]pieceSource
		inFirst := make(map[MD5]bool)
		for k := range nDownloads {
			_, src := testFile(t, 256<<10, byte(k+1))
			halves[2*k/nDownloads] = append(halves[2*k/nDownloads], src)
			inFirst[src.id] = 2*k < nDownloads
		}
		var listed atomic.Pointer[mesh.ID]
		holders := func(id MD5) []mesh.ID {
			if h := listed.Load(); h != nil && inFirst[id] {
				return []mesh.ID{*h}
			}
			return nil
		}
		serves := func(k int) *testServer {
			if k > 1 {
				return nil
			}
			return &testServer{sources: halves[k]}
		}
		hn, rd, mine := manifestWaitNet(t, nDownloads, others, interval, holders, serves)
		(&testServer{sources: []pieceSource{rd.downloads}}).register(hn.d)
		time.Sleep(3 * time.Minute) // the peers' backoff is at its cap
		for _, src := range mine {
			if tr := rd.get(src.id).transfer(); tr.Have != 0 || tr.Waiting != WaitNoHolder {
				t.Fatalf("download %s has %d bytes waiting %q before any holder came, want none waiting %q", src.id, tr.Have, tr.Waiting, WaitNoHolder)
			}
		}
		first, second := mine[:nDownloads/2], mine[nDownloads/2:]
		waitManifests := func(what string, group []*readerSource) {
			t.Helper()
			deadline := time.Now().Add(3 * interval)
			for _, src := range group {
				dl := rd.get(src.id)
				for {
					dl.mu.Lock()
					got := dl.man != nil
					dl.mu.Unlock()
					if got {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("download %s has no manifest %v after %s", src.id, 3*interval, what)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}

		// justAsked waits until every download of group has just asked
		// peer for the manifest: backed off to the cap, it would not ask
		// again for haveBackoffMax HaveIntervals, so what finds the holder
		// within a few is what the test is about, not the backoff's turn.
		justAsked := func(group []*readerSource, peer mesh.ID) {
			t.Helper()
			mark := time.Now()
			for _, src := range group {
				dl := rd.get(src.id)
				for {
					dl.mu.Lock()
					ip := dl.idle[peer]
					asked := ip != nil && !ip.at.Before(mark)
					dl.mu.Unlock()
					if asked {
						break
					}
					if time.Since(mark) > 2*haveBackoffMax*interval {
						t.Fatalf("download %s did not ask %s in %v", src.id, peer.Short(), 2*haveBackoffMax*interval)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}

		// others[0] comes to hold the first half and the catalogs list it.
		id0 := hn.others[0].ID()
		justAsked(first, id0)
		hn.gate[0].Store(true)
		listed.Store(&id0)
		waitManifests("the catalog listed a holder", first)

		// others[1] holds the second half and asks this node for its
		// haves, as a downloader of them does.
		justAsked(second, hn.others[1].ID())
		hn.gate[1].Store(true)
		for _, src := range second {
			if _, err := hn.others[1].Request(t.Context(), hn.d.ID(), ProtoHave, src.id[:]); err == nil {
				t.Fatalf("the downloader answered a have of %s it has no manifest of", src.id)
			}
		}
		waitManifests("a holder asked for its have", second)

		deadline := time.Now().Add(time.Minute)
		for _, src := range mine {
			for rd.get(src.id).transfer().State != StateDone {
				if time.Now().After(deadline) {
					t.Fatalf("download %s is not done a minute after its holder came", src.id)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if tr := rd.get(src.id).transfer(); tr.Waiting != "" {
				t.Errorf("done download %s still waiting %q", src.id, tr.Waiting)
			}
		}
	})
}

// TestManifestAsksBackOffOnlineLinkNode: downloads of links whose node is
// online and linked but no longer serves the resources (the user removed
// the files) ask it for the manifest ever more rarely too, as a peer that
// holds nothing. Known holders were exempt from the backoff: each such
// download asked the link's node every HaveInterval for good (4,500 asks
// in the 5 minutes counted here, where now at most 150 go). It is still
// asked now and then: once it serves the files again the downloads finish.
func TestManifestAsksBackOffOnlineLinkNode(t *testing.T) {
	raceOneProc(t)
	const nDownloads = 30
	synctest.Test(t, func(t *testing.T) {
		const interval = 2 * time.Second
		var srcs []pieceSource
		var mine []*readerSource
		for k := range nDownloads {
			_, src := testFile(t, 256<<10, byte(k+1))
			srcs, mine = append(srcs, src), append(mine, src)
		}
		hn := newHaveNet(t, 2, &testServer{}, func(k int) *testServer {
			if k > 0 {
				return nil
			}
			return &testServer{sources: srcs}
		})
		dir := t.TempDir()
		db := openTestDB(t, filepath.Join(dir, "db"))
		t.Cleanup(func() { db.Close() })
		rd := startDownloads(t, hn.d, dir, db, nil, func(c *DownloadsConfig, d *downloads) {
			c.HaveInterval = interval
			d.noLanes = true // md5-simd's pooled channels must not come from the bubble
		})
		link := hn.others[0].ID()
		for k, src := range mine {
			if _, err := rd.fetch(t.Context(), src.link(link, fmt.Sprintf("f%d", k))); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(3 * time.Minute)
		before := hn.asked[0].Load()
		const stretch = 5 * time.Minute
		time.Sleep(stretch)
		got := hn.asked[0].Load() - before
		most := int64(nDownloads) * int64(stretch/(haveBackoffMax*interval)+1)
		t.Logf("%d manifest asks to the online link node that dropped the files from %d downloads in %v (at most %d)", got, nDownloads, stretch, most)
		if got > most {
			t.Errorf("%d manifest asks to the link's node in %v, want at most %d", got, stretch, most)
		}
		if got == 0 {
			t.Errorf("the link's node was not asked in %v: it must still be asked now and then", stretch)
		}
		for _, src := range mine {
			if tr := rd.get(src.id).transfer(); tr.State != StateDownloading || tr.Waiting != WaitManifest {
				t.Fatalf("download %s is %s waiting %q, want downloading waiting %q", src.id, tr.State, tr.Waiting, WaitManifest)
			}
		}

		hn.gate[0].Store(true) // it serves the files again
		deadline := time.Now().Add(haveBackoffMax*interval + time.Minute)
		for _, src := range mine {
			for rd.get(src.id).transfer().State != StateDone {
				if time.Now().After(deadline) {
					t.Fatalf("download %s is not done %v after the link's node served it again", src.id, haveBackoffMax*interval+time.Minute)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	})
}
