package music

import (
	"context"
	"crypto/md5"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
	"github.com/catnest/catnest/shards"
)

// withExtra is a shards service whose Shares also lists generated
// seeding transfers: a library of thousands of tracks without thousands
// of files (their tags are put in the tag cache beforehand).
type withExtra struct {
	*shards.Service
	mu    sync.Mutex
	extra []shards.Transfer
}

func (w *withExtra) Shares(ctx context.Context) ([]shards.Transfer, error) {
	out, err := w.Service.Shares(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	return append(out, w.extra...), err
}

// testNode is a node with its shards and music services.
type testNode struct {
	node   *mesh.Node
	shards *shards.Service
	sh     *withExtra
	music  *Service
	dir    string
	db     *bbolt.DB
	stop   func()
	tune   func(*Config)
	// tuneShards, if set, edits shards' Config.
	tuneShards func(*shards.Config)
}

// newTestNode serves shards and music on n until the test ends (or
// stop); folders are music folders, shared by shards too.
func newTestNode(t testing.TB, n *mesh.Node, folders ...string) *testNode {
	t.Helper()
	return newTestNodeWith(t, n, nil, folders...)
}

// newTestNodeWith is newTestNode with tune applied to music's Config.
func newTestNodeWith(t testing.TB, n *mesh.Node, tune func(*Config), folders ...string) *testNode {
	t.Helper()
	return newTestNodeTuned(t, n, tune, nil, folders...)
}

// newTestNodeTuned is newTestNodeWith with tuneShards applied to shards'
// Config too.
func newTestNodeTuned(t testing.TB, n *mesh.Node, tune func(*Config), tuneShards func(*shards.Config), folders ...string) *testNode {
	t.Helper()
	dir := t.TempDir()
	db, err := bbolt.Open(filepath.Join(dir, "catnest.db"), 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tn := &testNode{node: n, dir: dir, db: db, tune: tune, tuneShards: tuneShards}
	tn.start(t, folders...)
	return tn
}

func (tn *testNode) start(t testing.TB, folders ...string) {
	t.Helper()
	scfg := shards.DefaultConfig()
	scfg.Node, scfg.DB, scfg.Dir = tn.node, tn.db, tn.dir
	scfg.Folders = folders
	scfg.WatchDelay = 50 * time.Millisecond
	if tn.tuneShards != nil {
		tn.tuneShards(&scfg)
	}
	ss, err := shards.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	tn.shards = ss
	tn.sh = &withExtra{Service: ss}
	mcfg := DefaultConfig()
	mcfg.Shards, mcfg.Node, mcfg.DB, mcfg.Dir, mcfg.Folders = tn.sh, tn.node, tn.db, tn.dir, folders
	mcfg.RescanDelay = 50 * time.Millisecond
	if tn.tune != nil {
		tn.tune(&mcfg)
	}
	ms, err := New(mcfg)
	if err != nil {
		t.Fatal(err)
	}
	tn.music = ms
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := ss.Serve(ctx); err != nil {
			t.Errorf("shards: %v", err)
		}
	})
	wg.Go(func() {
		if err := ms.Serve(ctx); err != nil {
			t.Errorf("music: %v", err)
		}
	})
	var once sync.Once
	tn.stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
		})
	}
	t.Cleanup(func() {
		tn.stop()
		tn.db.Close()
	})
}

// genTracks makes n generated tracks: transfers under folder and their
// tag records. Track i of seed s has artist "artist-(i%97)".
func genTracks(n int, seed uint64, folder string) ([]shards.Transfer, map[shards.MD5]tagRecord) {
	r := rand.New(rand.NewPCG(seed, 7))
	ts := make([]shards.Transfer, n)
	tags := make(map[shards.MD5]tagRecord, n)
	for i := range ts {
		var id shards.MD5
		for j := range id {
			id[j] = byte(r.Uint32())
		}
		name := fmt.Sprintf("%05d track.mp3", i)
		ts[i] = shards.Transfer{ID: id, Name: name, Size: int64(3e6 + i), State: shards.StateSeeding,
			Path: filepath.Join(folder, fmt.Sprintf("artist-%d", i%97), name)}
		tags[id] = tagRecord{Title: fmt.Sprintf("Song %d", i), Artist: fmt.Sprintf("artist-%d", i%97), Album: fmt.Sprintf("album-%d", i%500),
			Track: i%12 + 1, Year: 1990 + i%30, Duration: 180 + float64(i%60), Format: "mp3", Bitrate: 320000, SampleRate: 44100, Channels: 2}
	}
	return ts, tags
}

// putTags fills the tag cache of a DB.
func putTags(t testing.TB, db *bbolt.DB, tags map[shards.MD5]tagRecord) {
	t.Helper()
	err := db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketTags)
		if err != nil {
			return err
		}
		for id, r := range tags {
			v, _ := json.Marshal(r)
			if err := b.Put(id[:], v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// addExtra lists generated tracks on a node and has music rescan.
func (tn *testNode) addExtra(t testing.TB, ts []shards.Transfer, tags map[shards.MD5]tagRecord) {
	putTags(t, tn.db, tags)
	tn.sh.mu.Lock()
	tn.sh.extra = append(tn.sh.extra, ts...)
	tn.sh.mu.Unlock()
	tn.music.rescanSoon()
}

// writeWAV writes a small WAV file (a RIFF/WAVE header and random
// samples, 1.7 s) and returns its MD5.
func writeWAV(t *testing.T, path string, seed uint64) shards.MD5 {
	t.Helper()
	return writeWAVData(t, path, 300<<10, [32]byte{byte(seed), byte(seed >> 8)})
}

// writeBigWAV writes a WAV of size bytes of random sound and returns its
// MD5.
func writeBigWAV(t *testing.T, path string, size int, seed uint64) shards.MD5 {
	t.Helper()
	return writeWAVData(t, path, size, [32]byte{byte(seed), byte(seed >> 8), 7})
}

// writeWAVs writes n files 0.wav, 1.wav… to dir with writeWAV, seeds
// seed, seed+1…, and returns their MD5s.
func writeWAVs(t *testing.T, dir string, n int, seed uint64) []shards.MD5 {
	t.Helper()
	ids := make([]shards.MD5, n)
	for i := range ids {
		ids[i] = writeWAV(t, filepath.Join(dir, fmt.Sprintf("%d.wav", i)), seed+uint64(i))
	}
	return ids
}

// writeBigWAVs is writeWAVs with writeBigWAV files of size bytes.
func writeBigWAVs(t *testing.T, dir string, n, size int, seed uint64) []shards.MD5 {
	t.Helper()
	ids := make([]shards.MD5, n)
	for i := range ids {
		ids[i] = writeBigWAV(t, filepath.Join(dir, fmt.Sprintf("%d.wav", i)), size, seed+uint64(i))
	}
	return ids
}

// writeWAVData writes size bytes of random sound drawn from key, under a
// WAV header, and returns their MD5.
func writeWAVData(t *testing.T, path string, size int, key [32]byte) shards.MD5 {
	t.Helper()
	data := make([]byte, size)
	r := rand.NewChaCha8(key)
	r.Read(data)
	testutil.WAVHeader(data)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return md5.Sum(data)
}

// tracksBy waits until cond holds of n's library, and returns it.
func tracksBy(t *testing.T, tn *testNode, what string, cond func(map[shards.MD5]Track) bool) map[shards.MD5]Track {
	t.Helper()
	var got map[shards.MD5]Track
	testutil.WaitFor(t, 60*time.Second, what, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ts, err := tn.music.Tracks(ctx, true)
		if err != nil {
			return false
		}
		got = make(map[shards.MD5]Track, len(ts))
		for _, tr := range ts {
			got[tr.MD5] = tr
		}
		return cond(got)
	})
	return got
}

// waitOneSource waits until tn lists each of ids with one source: the
// node that shares them.
func waitOneSource(t *testing.T, tn *testNode, ids []shards.MD5) {
	t.Helper()
	tracksBy(t, tn, "a's tracks", func(m map[shards.MD5]Track) bool {
		for _, id := range ids {
			if len(m[id].Sources) != 1 {
				return false
			}
		}
		return true
	})
}

// slowSharer starts two linked nodes: a shares the files write puts in
// its folder, uploading at 1 MiB/s (slowUploads), and b shares nothing.
// It waits until b lists each file with a as its one source, and returns
// b and the files' MD5s.
func slowSharer(t *testing.T, write func(dir string) []shards.MD5) (*testNode, []shards.MD5) {
	t.Helper()
	_, nodes := newMesh(t, 2)
	dirA := t.TempDir()
	ids := write(dirA)
	newTestNodeTuned(t, nodes[0], nil, slowUploads, dirA)
	b := newTestNode(t, nodes[1])
	waitOneSource(t, b, ids)
	return b, ids
}

// slowUploads makes a node upload at 1 MiB/s, so that a download of a
// few MiB from it runs for seconds.
func slowUploads(c *shards.Config) { c.UploadRate = 1 << 20 }

// cacheClock is the time a node's cache sees, which the test moves on.
type cacheClock struct{ ns atomic.Int64 }

func newCacheClock() *cacheClock {
	c := &cacheClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *cacheClock) now() time.Time { return time.Unix(0, c.ns.Load()) }

// later moves the clock an hour on.
func (c *cacheClock) later() { c.ns.Add(int64(time.Hour)) }

// newCachingNode starts a node whose cache holds limit bytes, on clock,
// and counts a track as playing for a second past its length.
func newCachingNode(t *testing.T, n *mesh.Node, limit int64, clock *cacheClock, folders ...string) *testNode {
	t.Helper()
	return newTestNodeWith(t, n, func(c *Config) {
		c.CacheLimit = limit
		c.PlayingGrace = time.Second
		c.now = clock.now
	}, folders...)
}

// playWhole reads track ids[i] on tn whole, as the player does, and
// returns its stream, open.
func playWhole(t *testing.T, ctx context.Context, tn *testNode, ids []shards.MD5, i int) shards.Content {
	t.Helper()
	c, err := tn.music.Stream(ctx, ids[i])
	if err != nil {
		t.Fatal(err)
	}
	if all, err := io.ReadAll(c); err != nil || md5.Sum(all) != ids[i] {
		c.Close()
		t.Fatalf("track %d: %d bytes, %v", i, len(all), err)
	}
	return c
}

// newMesh makes n linked nodes on a fresh network.
func newMesh(t testing.TB, n int) (*meshtest.Network, []*mesh.Node) {
	t.Helper()
	nw := meshtest.NewNetwork()
	nodes := make([]*mesh.Node, n)
	for i := range nodes {
		nodes[i] = nw.NewNode(t, fmt.Sprintf("n%d", i), meshtest.Options{Configure: meshtest.Fast})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range nodes[1:] {
		if err := n.Connect(ctx, nodes[0].ID()); err != nil {
			t.Fatal(err)
		}
	}
	return nw, nodes
}
