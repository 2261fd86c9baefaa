package shards

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// testDB opens a bbolt file in dir, closed when the test ends.
func testDB(t testing.TB, dir string) *bbolt.DB {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(dir, "catnest.db"), 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// testConfig is a Config for tests: short watch delay and timeouts, a
// database and data dir in t.TempDir.
func testConfig(t *testing.T, node Node) Config {
	t.Helper()
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Node = node
	cfg.DB = testDB(t, dir)
	cfg.Dir = dir
	cfg.WatchDelay = 50 * time.Millisecond
	cfg.RequestTimeout = 20 * time.Second
	return cfg
}

// shareLink shares path on s and returns the link it gives.
func shareLink(t *testing.T, ctx context.Context, s *Service, path string) Link {
	t.Helper()
	tr, err := s.Share(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ParseLink(tr.Link)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// serveTest runs a service until the test ends.
func serveTest(t *testing.T, cfg Config) *Service {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Serve did not stop")
		}
	})
	testutil.WaitFor(t, 10*time.Second, "Serve to start", s.open)
	return s
}

// newPair makes two linked nodes on a fresh network.
func newPair(t *testing.T) (a, b *mesh.Node) {
	t.Helper()
	nw := meshtest.NewNetwork()
	a = nw.NewNode(t, "a", meshtest.Options{Configure: meshtest.Fast})
	b = nw.NewNode(t, "b", meshtest.Options{Configure: meshtest.Fast})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.Connect(ctx, a.ID()); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// writeRandom writes size random bytes to path and returns them.
func writeRandom(t *testing.T, path string, size int, seed uint64) []byte {
	t.Helper()
	data := make([]byte, size)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(data)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return data
}

// fetchManifest asks node for id's manifest and checks it against want.
func fetchManifest(ctx context.Context, n *mesh.Node, from mesh.ID, id MD5) (*Manifest, error) {
	b, err := n.Request(ctx, from, ProtoManifest, id[:], mesh.OverBulk())
	if err != nil {
		return nil, err
	}
	return DecodeManifest(b)
}

// fetchBlock asks for one block over bulk.
func fetchBlock(ctx context.Context, n *mesh.Node, from mesh.ID, r blockReq) ([]byte, error) {
	return n.Request(ctx, from, ProtoBlock, encodeBlockReq(r), mesh.OverBulk())
}

// fetchWhole downloads a resource block by block, checking every piece.
func fetchWhole(ctx context.Context, n *mesh.Node, from mesh.ID, id MD5, m *Manifest) ([]byte, error) {
	out := make([]byte, 0, m.Size)
	for i := range m.NumPieces() {
		piece := make([]byte, 0, m.PieceLen(i))
		for off := int64(0); off < m.PieceLen(i); off += BlockSize {
			l := min(BlockSize, m.PieceLen(i)-off)
			b, err := fetchBlock(ctx, n, from, blockReq{ID: id, Piece: uint32(i), Off: uint32(off), Len: uint32(l)})
			if err != nil {
				return nil, err
			}
			if int64(len(b)) != l {
				return nil, errors.New("short block")
			}
			piece = append(piece, b...)
		}
		if !m.Verify(i, piece) {
			return nil, ErrCorrupt
		}
		out = append(out, piece...)
	}
	return out, nil
}

func TestShareServesInPlace(t *testing.T) {
	testutil.CheckGoroutines(t)
	a, b := newPair(t)
	sa := serveTest(t, testConfig(t, a))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	path := filepath.Join(t.TempDir(), "holiday film.mp4")
	data := writeRandom(t, path, 20<<20+12345, 1)
	tr, err := sa.Share(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if tr.ID != md5.Sum(data) || tr.State != StateSeeding || tr.Have != tr.Size || tr.Path != path || tr.Type != "video/mp4" {
		t.Fatalf("transfer %+v", tr)
	}
	l, err := ParseLink(tr.Link)
	if err != nil || l.ID != tr.ID || l.Node != a.ID() || l.Manifest != tr.Manifest || l.Name != "holiday film.mp4" {
		t.Fatalf("link %s: %+v %v", tr.Link, l, err)
	}

	m, err := fetchManifest(ctx, b, a.ID(), tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m.Hash() != tr.Manifest {
		t.Fatal("the manifest served does not hash to the advertised one")
	}
	have, err := b.Request(ctx, a.ID(), ProtoHave, tr.ID[:])
	if err != nil {
		t.Fatal(err)
	}
	if bf, err := decodeHave(have, m.NumPieces()); err != nil || bf.Count() != m.NumPieces() {
		t.Fatalf("have: %v %v", bf.Count(), err)
	}
	got, err := fetchWhole(ctx, b, a.ID(), tr.ID, m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the bytes served are not the file's")
	}
	testutil.WaitFor(t, 10*time.Second, "uploaded to count the bytes served", func() bool {
		sh, _ := sa.Shares(ctx)
		return len(sh) == 1 && sh[0].Uploaded == int64(len(data))
	})

	// Blocks are bulk traffic: asked for on ctl they are refused.
	if _, err := b.Request(ctx, a.ID(), ProtoBlock, encodeBlockReq(blockReq{ID: tr.ID, Len: 10})); err == nil {
		t.Fatal("a block request on ctl was answered")
	}
}

func TestUnknownOrPathRefused(t *testing.T) {
	testutil.CheckGoroutines(t)
	a, b := newPair(t)
	sa := serveTest(t, testConfig(t, a))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	dir := t.TempDir()
	shared := filepath.Join(dir, "shared.txt")
	writeRandom(t, shared, 100<<10, 2)
	secret := filepath.Join(dir, "secret.txt")
	secretData := writeRandom(t, secret, 100<<10, 3)
	tr, err := sa.Share(ctx, shared)
	if err != nil {
		t.Fatal(err)
	}
	secretID := MD5(md5.Sum(secretData))

	refused := func(what string, proto string, payload []byte) {
		t.Helper()
		resp, err := b.Request(ctx, a.ID(), proto, payload, mesh.OverBulk())
		var re *mesh.RemoteError
		if !errors.As(err, &re) {
			t.Errorf("%s: answered %d bytes, err %v; want a refusal", what, len(resp), err)
		}
	}
	// Resources this node does not share, however the peer names them.
	for _, proto := range []string{ProtoManifest, ProtoHave} {
		refused(proto+" of an unshared file's md5", proto, secretID[:])
		refused(proto+" of a path", proto, []byte(secret))
		refused(proto+" of a short path", proto, []byte("/etc/passwd12345"))
	}
	refused("block of an unshared file", ProtoBlock, encodeBlockReq(blockReq{ID: secretID, Len: 100}))
	refused("block request holding a path", ProtoBlock, append([]byte(secret), make([]byte, 28)...))
	refused("block past the piece", ProtoBlock, encodeBlockReq(blockReq{ID: tr.ID, Off: 100 << 10, Len: 1}))
	refused("list request that is a path", ProtoList, []byte(secret))

	// Sharing refuses what is not a readable regular file, clearly.
	for _, p := range []string{dir, filepath.Join(dir, "missing"), "/dev/null"} {
		if _, err := sa.Share(ctx, p); !errors.Is(err, ErrNotFile) {
			t.Errorf("Share(%s) = %v, want ErrNotFile", p, err)
		}
	}

	// Unsharing stops the serving and leaves the file.
	if err := sa.Unshare(tr.ID); err != nil {
		t.Fatal(err)
	}
	refused("manifest after unshare", ProtoManifest, tr.ID[:])
	if _, err := os.Stat(shared); err != nil {
		t.Fatalf("Unshare touched the user's file: %v", err)
	}
	if err := sa.Unshare(tr.ID); !errors.Is(err, ErrUnknown) {
		t.Fatalf("second Unshare: %v", err)
	}
	if sh, _ := sa.Shares(ctx); len(sh) != 0 {
		t.Fatalf("shares after unshare: %+v", sh)
	}
}

// TestChangedFileNeverServedStale edits a shared file on disk while a peer
// keeps asking for its blocks: every block answered must be the file as it
// was hashed, and the new bytes must come back shared under their own id.
func TestChangedFileNeverServedStale(t *testing.T) {
	for _, tc := range []struct {
		name string
		// notRacy treats the file as hashed long after its last change,
		// so only the stamp (size, mtime, ctime, inode) can catch the edit.
		notRacy bool
		grow    bool // the edit changes the size
	}{
		{"same size, mtime restored", false, false},
		{"same size, mtime restored, stamp only", true, false},
		{"other size", false, true},
		{"other size, stamp only", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testutil.CheckGoroutines(t)
			a, b := newPair(t)
			sa := serveTest(t, testConfig(t, a))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			path := filepath.Join(t.TempDir(), "notes.bin")
			old := writeRandom(t, path, 3<<20+100, 4)
			tr, err := sa.Share(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			if tc.notRacy {
				sa.shares.mu.Lock()
				sh := sa.shares.byID[tr.ID]
				files := append([]shareFile(nil), sh.files...)
				files[0].Racy = false
				sh.files = files
				sa.shares.mu.Unlock()
			}
			m, err := fetchManifest(ctx, b, a.ID(), tr.ID)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}

			// Edit one byte in each piece (or append), then put the
			// mtime back.
			edited := append([]byte(nil), old...)
			for i := range m.NumPieces() {
				edited[m.PieceOffset(i)+7] ^= 0xff
			}
			if tc.grow {
				edited = append(edited, "more"...)
			}
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(edited, 0); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}

			// Every block asked for is the old bytes or refused.
			served := 0
			for i := range m.NumPieces() {
				r := blockReq{ID: tr.ID, Piece: uint32(i), Off: 0, Len: uint32(min(BlockSize, m.PieceLen(i)))}
				blk, err := fetchBlock(ctx, b, a.ID(), r)
				if err != nil {
					continue
				}
				served++
				off := m.PieceOffset(i)
				if !bytes.Equal(blk, old[off:off+int64(len(blk))]) {
					t.Fatalf("piece %d served stale: the edited bytes went out under the old id", i)
				}
			}
			t.Logf("%d of %d blocks served after the edit (each the old bytes)", served, m.NumPieces())

			// The edit is shared under its own id, the old one is gone.
			newID := MD5(md5.Sum(edited))
			testutil.WaitFor(t, 20*time.Second, "the edited file shared under its new id", func() bool {
				sh, _ := sa.Shares(ctx)
				return len(sh) == 1 && sh[0].ID == newID
			})
			if _, err := fetchManifest(ctx, b, a.ID(), tr.ID); err == nil {
				t.Fatal("the old id is still served")
			}
			nm, err := fetchManifest(ctx, b, a.ID(), newID)
			if err != nil {
				t.Fatal(err)
			}
			got, err := fetchWhole(ctx, b, a.ID(), newID, nm)
			if err != nil || !bytes.Equal(got, edited) {
				t.Fatalf("the edited file served wrong: %v", err)
			}
			entries, _ := sa.catalog.entries()
			if len(entries) != 1 || entries[0].ID != newID {
				t.Fatalf("catalog after the edit: %+v", entries)
			}
		})
	}
}

func TestSharesSurviveRestart(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	a := nw.NewNode(t, "a", meshtest.Options{Configure: meshtest.Fast})
	dir := t.TempDir()
	cfg := testConfig(t, a)
	kept := filepath.Join(dir, "kept.dat")
	keptData := writeRandom(t, kept, 1<<20, 5)
	edited := filepath.Join(dir, "edited.dat")
	writeRandom(t, edited, 1<<20, 6)

	s1, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, p := range []string{kept, edited} {
		if _, err := s1.Share(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	tr1 := s1.shares.list()
	// While the node is down, one file changes.
	editedData := writeRandom(t, edited, 1<<20+1, 7)

	s2 := serveTest(t, cfg)
	testutil.WaitFor(t, 20*time.Second, "the edited file hashed again", func() bool {
		sh, _ := s2.Shares(ctx)
		ids := map[MD5]bool{}
		for _, t := range sh {
			ids[t.ID] = true
		}
		return len(sh) == 2 && ids[md5.Sum(keptData)] && ids[md5.Sum(editedData)]
	})
	sh, _ := s2.Shares(ctx)
	for _, t2 := range sh {
		if t2.ID == md5.Sum(keptData) {
			for _, t1 := range tr1 {
				if t1.ID == t2.ID && !t1.Added.Equal(t2.Added) {
					t.Fatalf("the unchanged share was added again: %v then %v", t1.Added, t2.Added)
				}
			}
		}
	}
	if n, _ := s2.catalog.summary(); n != 2 {
		t.Fatalf("catalog holds %d", n)
	}
}

// fakeEntries makes n catalog entries with ids spread over the id space.
func fakeEntries(n int, seed uint64) []Entry {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]Entry, n)
	for i := range out {
		var id MD5
		for j := range id {
			id[j] = byte(r.Uint32())
		}
		out[i] = Entry{ID: id, Manifest: Hash{byte(i)}, Size: int64(i), Name: "file-" + strings.Repeat("x", i%40) + ".txt", Type: "text/plain"}
	}
	return out
}

func TestWaitUpload(t *testing.T) {
	testutil.CheckGoroutines(t)
	a, _ := newPair(t)
	cfg := testConfig(t, a)
	cfg.UploadRate = 1 << 20
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// More than the burst passes, in pieces.
	if err := s.waitUpload(ctx, 3*BlockSize); err != nil {
		t.Fatal(err)
	}
	// A wait that cannot end before ctx does gives up at once.
	short, cancel2 := context.WithTimeout(ctx, time.Millisecond)
	defer cancel2()
	if err := s.waitUpload(short, 100*BlockSize); err == nil {
		t.Fatal("waited past the context's deadline")
	}
	if _, err := New(Config{Node: a, DB: cfg.DB, UploadRate: -1}); err == nil {
		t.Fatal("a negative rate was taken")
	}
	none, err := New(Config{Node: a, DB: cfg.DB, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := none.waitUpload(short, 1<<30); err != nil {
		t.Fatalf("no cap: %v", err)
	}
}

// TestRacyFileCheckedByPiece: an edit made within the file system's clock
// tick of the hashing leaves the stamp as it was (simulated here by
// stamping the share with the edited file's stamp). Such a racy file's
// pieces are checked against their MD5s before they are served, so the
// edit never goes out under the old id.
func TestRacyFileCheckedByPiece(t *testing.T) {
	testutil.CheckGoroutines(t)
	a, b := newPair(t)
	sa := serveTest(t, testConfig(t, a))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "racy.bin")
	old := writeRandom(t, path, 1<<20+100, 31)
	tr, err := sa.Share(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := fetchManifest(ctx, b, a.ID(), tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	edited := append([]byte(nil), old...)
	for i := range m.NumPieces() {
		edited[m.PieceOffset(i)+3] ^= 0xff
	}
	if err := os.WriteFile(path, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	sa.shares.mu.Lock()
	sh := sa.shares.byID[tr.ID]
	files := append([]shareFile(nil), sh.files...)
	files[0].Stamp, files[0].Racy = stampOf(fi), true
	sh.files = files
	sa.shares.mu.Unlock()
	for i := range m.NumPieces() {
		r := blockReq{ID: tr.ID, Piece: uint32(i), Len: uint32(min(BlockSize, m.PieceLen(i)))}
		blk, err := fetchBlock(ctx, b, a.ID(), r)
		if err != nil {
			continue
		}
		off := m.PieceOffset(i)
		if !bytes.Equal(blk, old[off:off+int64(len(blk))]) {
			t.Fatalf("piece %d of a racy file served stale", i)
		}
	}
}
