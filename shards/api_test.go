package shards

import (
	"context"
	"crypto/md5"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestServiceEndToEnd runs whole Services: a file one node shares is found
// in the others' Files, fetched by id alone (holders from the catalog),
// listed in the downloader's catalog once done, then fetched by a third
// node from both; a push through the Service reaches a node that accepts
// pushes from the source; Open reads a share and a download.
func TestServiceEndToEnd(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	var nodes []*mesh.Node
	for _, name := range []string{"a", "b", "c", "d"} {
		nodes = append(nodes, nw.NewNode(t, name, meshtest.Options{Configure: meshtest.Fast}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, n := range nodes[1:] {
		if err := n.Connect(ctx, nodes[0].ID()); err != nil {
			t.Fatal(err)
		}
	}
	var svcs []*Service
	for i, n := range nodes {
		cfg := testConfig(t, n)
		if i == 3 {
			cfg.Push.Accept = AcceptFrom(nodes[0].ID())
		}
		svcs = append(svcs, serveTest(t, cfg))
	}
	a, b, c, d := svcs[0], svcs[1], svcs[2], svcs[3]

	path := filepath.Join(t.TempDir(), "movie.bin")
	data := writeRandom(t, path, 6<<20+123, 7)
	shared, err := a.Share(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if shared.ID != md5.Sum(data) {
		t.Fatalf("shared id %s", shared.ID)
	}
	testutil.WaitFor(t, 30*time.Second, "b to list a's file", func() bool {
		fs, err := b.Files(ctx)
		return err == nil && len(fs) == 1 && fs[0].ID == shared.ID && len(fs[0].Holders) == 1
	})
	if tr, err := b.Fetch(ctx, Link{ID: shared.ID}); err != nil {
		t.Fatal(err)
	} else if tr.Manifest != shared.Manifest {
		t.Fatalf("a fetch by id has manifest %s, not the catalog's %s", tr.Manifest, shared.Manifest)
	} else if tr.Name != "movie.bin" {
		// The Files view fetches by id: its downloads were named by
		// their MD5.
		t.Fatalf("a fetch by id is named %q, not the catalog's movie.bin", tr.Name)
	}
	done := func(s *Service) func() bool {
		return func() bool {
			ts, _ := s.Shares(ctx)
			for _, t := range ts {
				if t.ID == shared.ID && t.State == StateDone {
					return true
				}
			}
			return false
		}
	}
	testutil.WaitFor(t, 60*time.Second, "b's download to finish", done(b))
	if tr, err := b.Transfer(ctx, shared.ID); err != nil || filepath.Base(tr.Path) != "movie.bin" {
		t.Fatalf("b's finished download: %+v, %v; want it saved as movie.bin", tr, err)
	}
	testutil.WaitFor(t, 30*time.Second, "c to see a and b hold the file", func() bool {
		fs, err := c.Files(ctx)
		return err == nil && len(fs) == 1 && len(fs[0].Holders) == 2
	})
	for _, s := range []*Service{a, b} {
		r, err := s.Open(ctx, shared.ID)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || md5.Sum(got) != shared.ID {
			t.Fatalf("Open read %d bytes, %v", len(got), err)
		}
	}
	// c reads through Open before anything is downloaded: the reader
	// fetches.
	r, err := c.Open(ctx, shared.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Name() != "movie.bin" {
		// The web UI serves it with the Content-Type of its name.
		t.Errorf("a file opened before it was fetched is named %q, not the catalog's movie.bin", r.Name())
	}
	if _, err := r.Seek(5<<20, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	tail, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(tail) != string(data[5<<20:]) {
		t.Fatalf("c read %d bytes of the tail, %v", len(tail), err)
	}

	pid, err := a.Push(ctx, shared.ID, []mesh.ID{nodes[3].ID()}, PlanMatrix)
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "the push to reach d", done(d))
	st, err := a.PushStatus(ctx, pid)
	if err != nil {
		t.Fatal(err)
	}
	// At most 1.1x the file; less when d, on a loaded machine, went
	// PushHold without a pushed piece and pulled the rest from b and c.
	if st.Uploaded > int64(len(data))*11/10 {
		t.Errorf("push: the source uploaded %d bytes of a %d-byte file", st.Uploaded, len(data))
	}
	ts, _ := d.Shares(ctx)
	got, err := os.ReadFile(ts[0].Path)
	if err != nil || md5.Sum(got) != shared.ID {
		t.Fatalf("d's pushed file: %v", err)
	}
	// A node that takes no pushes refuses one.
	if pid, err := a.Push(ctx, shared.ID, []mesh.ID{nodes[2].ID()}, PlanMatrix); err == nil {
		testutil.WaitFor(t, 30*time.Second, "the refused push to end", func() bool {
			st, err := a.PushStatus(ctx, pid)
			return err == nil && st.Done
		})
		st, _ := a.PushStatus(ctx, pid)
		if st.Receivers[0].State == "done" {
			t.Error("a node that takes no pushes took one")
		}
	}
	if ts, _ := c.Shares(ctx); len(ts) != 1 || ts[0].State == StateDone && ts[0].Have != int64(len(data)) {
		t.Errorf("c's transfers after a refused push: %+v", ts)
	}
	if err := b.Remove(ctx, shared.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("a's file after b's remove: %v", err)
	}
	if err := a.Remove(ctx, shared.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the user's file after unsharing: %v", err)
	}
}

// TestServicePushCreditsRelays: a matrix push through Services credits each
// receiver's pieces to whoever sent them, the source or a relaying member,
// so the per-peer contribution bar shows the relays' share.
func TestServicePushCreditsRelays(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	var nodes []*mesh.Node
	for _, name := range []string{"src", "r1", "r2", "r3"} {
		nodes = append(nodes, nw.NewNode(t, name, meshtest.Options{Configure: meshtest.Fast}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var svcs []*Service
	for i, n := range nodes {
		cfg := testConfig(t, n)
		if i > 0 {
			cfg.Push.Accept = AcceptFrom(nodes[0].ID())
		}
		svcs = append(svcs, serveTest(t, cfg))
	}
	path := filepath.Join(t.TempDir(), "album.zip")
	data := writeRandom(t, path, 4<<20, 9)
	shared, err := svcs[0].Share(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	var to []mesh.ID
	for _, n := range nodes[1:] {
		to = append(to, n.ID())
	}
	if _, err := svcs[0].Push(ctx, shared.ID, to, PlanMatrix); err != nil {
		t.Fatal(err)
	}
	for i, s := range svcs[1:] {
		var tr Transfer
		testutil.WaitFor(t, 60*time.Second, "the push to finish at "+nodes[i+1].Name(), func() bool {
			ts, _ := s.Shares(ctx)
			if len(ts) == 1 && ts[0].State == StateDone {
				tr = ts[0]
				return true
			}
			return false
		})
		var sum int64
		for _, n := range tr.Sources {
			sum += n
		}
		if sum != int64(len(data)) {
			t.Errorf("%s: sources add up to %d of %d bytes: %v", nodes[i+1].Name(), sum, len(data), tr.Sources)
		}
		if tr.Sources[nodes[0].ID()] >= int64(len(data)) || len(tr.Sources) < 2 {
			t.Errorf("%s: every byte credited to the source, none to the relays: %v", nodes[i+1].Name(), tr.Sources)
		}
	}
}
