package subsonic

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
	"github.com/catnest/catnest/music"
	"github.com/catnest/catnest/shards"
)

// fixtures are the music files of testdata/music at the repository root.
const fixtures = "../testdata/music"

// realNode is a mesh node with its real shards and music services.
type realNode struct {
	node  *mesh.Node
	music *music.Service
	db    *bbolt.DB
	dir   string
}

// startRealNode serves shards and music on n over the music folder dir
// until the test ends.
func startRealNode(t *testing.T, n *mesh.Node, dir string) *realNode {
	t.Helper()
	data := t.TempDir()
	db, err := bbolt.Open(filepath.Join(data, "catnest.db"), 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	db.NoSync = true
	scfg := shards.DefaultConfig()
	scfg.Node, scfg.DB, scfg.Dir = n, db, data
	if dir != "" {
		scfg.Folders = []string{dir}
	}
	scfg.WatchDelay = 50 * time.Millisecond
	ss, err := shards.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	mcfg := music.DefaultConfig()
	mcfg.Shards, mcfg.Node, mcfg.DB, mcfg.Dir, mcfg.Folders = ss, n, db, data, scfg.Folders
	mcfg.RescanDelay = 50 * time.Millisecond
	ms, err := music.New(mcfg)
	if err != nil {
		t.Fatal(err)
	}
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
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		db.Close()
	})
	return &realNode{node: n, music: ms, db: db, dir: data}
}

// copyFixture copies a fixture into dir under name.
func copyFixture(t *testing.T, fixture, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, fixture))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// meshLibrary is two linked nodes: home, whose Subsonic API the tests
// drive, shares three fixtures (an MP3 with an embedded cover and synced
// lyrics, an MP3 with a sidecar .lrc, a FLAC); away shares three more
// (a WAV, two MP3s), one of them by an artist home bans.
type meshLibrary struct {
	home, away *realNode
	api        *testService
	// remote is away's WAV and its bytes; banned the track home bans.
	remote, banned shards.MD5
	remoteBytes    []byte
}

// newMeshLibrary starts the two nodes and waits until home's library
// shows the five tracks it may.
func newMeshLibrary(t *testing.T) *meshLibrary {
	t.Helper()
	nw := meshtest.NewNetwork()
	a := nw.NewNode(t, "home", meshtest.Options{Configure: meshtest.Fast})
	b := nw.NewNode(t, "away", meshtest.Options{Configure: meshtest.Fast})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Connect(ctx, a.ID()); err != nil {
		t.Fatal(err)
	}
	homeDir, awayDir := t.TempDir(), t.TempDir()
	copyFixture(t, "cbr_v23.mp3", homeDir, "nest song.mp3")
	copyFixture(t, "vbr_xing_v24.mp3", homeDir, "warm nest.mp3")
	copyFixture(t, "song.lrc", homeDir, "warm nest.lrc")
	copyFixture(t, "tagged.flac", homeDir, "flac song.flac")
	wav := copyFixture(t, "info.wav", awayDir, "wave tone.wav")
	banned := copyFixture(t, "vbr_noxing_v1.mp3", awayDir, "walker.mp3")
	copyFixture(t, "cbr_plain.mp3", awayDir, "plain.mp3")
	ml := &meshLibrary{home: startRealNode(t, a, homeDir), away: startRealNode(t, b, awayDir),
		remote: md5.Sum(wav), banned: md5.Sum(banned), remoteBytes: wav}
	if err := ml.home.music.SetBans(ctx, []string{"^Walker$"}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "home's library to hold all six tracks", func() bool {
		ts, err := ml.home.music.Tracks(context.Background(), true)
		return err == nil && len(ts) == 6
	})
	ml.api = newTestService(t, ml.home.music)
	return ml
}

// TestRemoteTrackThroughShards: a Subsonic app on home plays away's
// track: stream seeks with Range and download reads it whole, through
// the shards reader, byte for byte; the banned track of away never
// shows; covers, lyrics and the albums of real files come through.
func TestRemoteTrackThroughShards(t *testing.T) {
	testutil.CheckGoroutines(t)
	ml := newMeshLibrary(t)
	ts := ml.api
	all := ts.call(t, "search3", url.Values{"query": {""}, "songCount": {"100"}}).ok(t).obj("searchResult3")
	songs := map[string]map[string]any{}
	for _, so := range all["song"].([]any) {
		so := so.(map[string]any)
		songs[so["title"].(string)] = so
	}
	if len(songs) != 5 || songs["No Header"] != nil {
		t.Fatalf("home's library: %v", songs)
	}
	if fmt.Sprint(all["artist"]) == "" || bytes.Contains([]byte(fmt.Sprint(all)), []byte("Walker")) {
		t.Fatalf("the banned artist shows: %v", all["artist"])
	}
	if c := ts.call(t, "stream", url.Values{"id": {ml.banned.String()}}).code(); c != 70 {
		t.Errorf("stream of the banned track: code %d", c)
	}
	wave := songs["Wave Tone"]
	if wave == nil || wave["id"] != ml.remote.String() || wave["suffix"] != "wav" || wave["duration"].(float64) != 5 {
		t.Fatalf("away's WAV: %v", wave)
	}
	q := auth("abcdef")
	q.Set("id", ml.remote.String())
	req, _ := http.NewRequest(http.MethodGet, ts.srv.URL+"/rest/stream?"+q.Encode(), nil)
	from, to := len(ml.remoteBytes)/2, len(ml.remoteBytes)/2+9999
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, to))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, ml.remoteBytes[from:to+1]) {
		t.Fatalf("remote stream with Range: %d, %d bytes, equal %v", resp.StatusCode, len(got), bytes.Equal(got, ml.remoteBytes[from:to+1]))
	}
	_, got = ts.get(t, "download", url.Values{"id": {ml.remote.String()}})
	if !bytes.Equal(got, ml.remoteBytes) {
		t.Fatalf("remote download: %d bytes of %d", len(got), len(ml.remoteBytes))
	}
	// The cover embedded in the MP3, scaled.
	nest := songs["猫窝之歌"]
	if nest == nil || nest["coverArt"] == "" || nest["album"] != "Mesh Tunes" || nest["track"].(float64) != 3 {
		t.Fatalf("the MP3 with a cover: %v", nest)
	}
	_, img := ts.get(t, "getCoverArt", url.Values{"id": {nest["coverArt"].(string)}, "size": {"100"}})
	if ct := http.DetectContentType(img); ct != "image/jpeg" {
		t.Errorf("cover at size 100: %s, %d bytes", ct, len(img))
	}
	ly := ts.call(t, "getLyricsBySongId", url.Values{"id": {songs["Warm Nest"]["id"].(string)}}).ok(t).list("lyricsList", "structuredLyrics")
	if len(ly) != 1 || ly[0].(map[string]any)["synced"] != true || len(ly[0].(map[string]any)["line"].([]any)) < 3 {
		t.Errorf("the sidecar lyrics: %v", ly)
	}
}
