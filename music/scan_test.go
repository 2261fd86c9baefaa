package music

import (
	"crypto/md5"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/shards"
)

// TestLibraryGrowsDuringScan: while files keep arriving in a music folder
// (a collection copied in, or a long first scan), shards reports one
// every few milliseconds; the library must take them in as it goes, not
// wait for a pause in the stream, and in the end list every one.
func TestLibraryGrowsDuringScan(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newMesh(t, 1)
	dir := t.TempDir()
	// A rescan is due RescanDelay after a change; files arrive far more
	// often than that.
	const every, maxFiles = 20 * time.Millisecond, 3000
	tn := newTestNodeWith(t, nodes[0], func(c *Config) { c.RescanDelay = time.Second }, dir)

	stop := make(chan struct{})
	var written atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		r := rand.New(rand.NewPCG(3, 4))
		tick := time.NewTicker(every)
		defer tick.Stop()
		for k := range maxFiles {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			data := make([]byte, 8<<10)
			for i := 44; i+8 <= len(data); i += 8 {
				data[i] = byte(r.Uint32())
			}
			data[len(data)-1] = byte(k)
			data[len(data)-2] = byte(k >> 8)
			testutil.WAVHeader(data)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%04d.wav", k)), data, 0o600); err != nil {
				t.Error(err)
				return
			}
			written.Add(1)
		}
	})
	stopOnce := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopOnce()

	tracksBy(t, tn, "tracks listed while files still arrive", func(m map[shards.MD5]Track) bool {
		if written.Load() >= maxFiles {
			t.Fatalf("%d files written, and the library listed %d of them only once they stopped coming", maxFiles, len(m))
		}
		return len(m) >= 50
	})
	stopOnce()
	n := int(written.Load())
	tracksBy(t, tn, fmt.Sprintf("all %d tracks listed", n), func(m map[shards.MD5]Track) bool { return len(m) == n })
}

// TestTagsReadWhileDiskBusy: the tag cache is written as tags are read,
// but reading tags must not wait for those writes: with the database's
// writer held by another (a disk slow to sync), a scan of a thousand
// files is still listed in full, and the cache gets every record once
// the writer is free.
func TestTagsReadWhileDiskBusy(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newMesh(t, 1)
	dir := t.TempDir()
	// Shards shares no folder: the files come in as generated shares,
	// so that music alone writes the database.
	tn := newTestNodeWith(t, nodes[0], func(c *Config) { c.Folders = []string{dir} })
	const n = 1000
	var ts []shards.Transfer
	for k := range n {
		path := filepath.Join(dir, fmt.Sprintf("%04d.wav", k))
		data := make([]byte, 4<<10)
		data[len(data)-1], data[len(data)-2] = byte(k), byte(k>>8)
		testutil.WAVHeader(data)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		ts = append(ts, shards.Transfer{ID: md5.Sum(data), Name: filepath.Base(path), Size: int64(len(data)), State: shards.StateSeeding, Path: path})
	}

	busy, err := tn.db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			busy.Rollback()
		}
	}
	defer release()
	tn.sh.mu.Lock()
	tn.sh.extra = append(tn.sh.extra, ts...)
	tn.sh.mu.Unlock()
	tn.music.rescanSoon()
	tracksBy(t, tn, "the tracks listed while the database is busy", func(m map[shards.MD5]Track) bool { return len(m) == n })
	release()
	testutil.WaitFor(t, 60*time.Second, "every tag record in the cache", func() bool {
		got, err := tn.music.cachedTags(func() []shards.MD5 {
			ids := make([]shards.MD5, len(ts))
			for i, tr := range ts {
				ids[i] = tr.ID
			}
			return ids
		}())
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		return len(got) == n
	})
}

// TestChangeTakenWhenShardsDone: RescanDelay gathers the changes of a
// scan under way; once shards has nothing left to hash, a change (here
// 2,000 tracks listed and a rescan asked for, as attaching a cover does)
// is taken in at once, whatever RescanDelay is.
func TestChangeTakenWhenShardsDone(t *testing.T) {
	testutil.CheckGoroutines(t)
	_, nodes := newMesh(t, 1)
	dir := t.TempDir()
	tn := newTestNodeWith(t, nodes[0], func(c *Config) { c.Folders, c.RescanDelay = []string{dir}, time.Hour })
	for round := range 3 {
		ts, tags := genTracks(2000, uint64(round), dir)
		tn.addExtra(t, ts, tags)
		tracksBy(t, tn, fmt.Sprintf("round %d's tracks listed", round), func(m map[shards.MD5]Track) bool { return len(m) == 2000*(round+1) })
	}
}
