package subsonic

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/internal/pubsub"
	"github.com/catnest/catnest/music"
	"github.com/catnest/catnest/shards"
)

// fakeMusic is a Music kept in memory: bans are regular expressions
// over title, artist and album, a banned or unknown track neither lists
// nor streams nor shows a cover, and every change is published as a
// library event, as the music service does.
type fakeMusic struct {
	mu     sync.Mutex
	tracks []music.Track
	audio  map[shards.MD5][]byte
	covers map[shards.MD5][]byte
	lyrics map[shards.MD5]music.Lyrics
	bans   []*regexp.Regexp
	events pubsub.Topic[music.Event]
	reads  int // calls of Tracks
}

func newFakeMusic() *fakeMusic {
	return &fakeMusic{audio: map[shards.MD5][]byte{}, covers: map[shards.MD5][]byte{}, lyrics: map[shards.MD5]music.Lyrics{}}
}

// add puts a track with audio bytes into the library.
func (m *fakeMusic) add(t music.Track, audio []byte) {
	m.mu.Lock()
	t.MD5 = md5.Sum(audio)
	t.Size = int64(len(audio))
	m.tracks = append(m.tracks, t)
	m.audio[t.MD5] = audio
	m.mu.Unlock()
	m.events.Publish(music.Event{Library: true})
}

func (m *fakeMusic) setBans(patterns ...string) {
	m.mu.Lock()
	m.bans = nil
	for _, p := range patterns {
		m.bans = append(m.bans, regexp.MustCompile(p))
	}
	m.mu.Unlock()
	m.events.Publish(music.Event{Library: true})
}

func (m *fakeMusic) bannedLocked(t music.Track) bool {
	for _, b := range m.bans {
		if b.MatchString(t.Title) || b.MatchString(t.Artist) || b.MatchString(t.Album) {
			return true
		}
	}
	return false
}

func (m *fakeMusic) Tracks(ctx context.Context, banned bool) ([]music.Track, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	out := make([]music.Track, 0, len(m.tracks))
	for _, t := range m.tracks {
		t.Banned = m.bannedLocked(t)
		t.HasCover = m.covers[t.MD5] != nil
		_, t.HasLyrics = m.lyrics[t.MD5]
		if t.Banned && !banned {
			continue
		}
		out = append(out, t)
	}
	return out, nil
}

func (m *fakeMusic) playable(id shards.MD5) error {
	for _, t := range m.tracks {
		if t.MD5 == id {
			if m.bannedLocked(t) {
				return music.ErrBanned
			}
			return nil
		}
	}
	return music.ErrUnknown
}

func (m *fakeMusic) Stream(ctx context.Context, id shards.MD5) (shards.Content, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.playable(id); err != nil {
		return nil, err
	}
	return &memContent{Reader: bytes.NewReader(m.audio[id]), name: id.String()}, nil
}

func (m *fakeMusic) Cover(ctx context.Context, id shards.MD5, thumb bool) (string, []byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.playable(id); err != nil {
		return "", nil, err
	}
	c := m.covers[id]
	if c == nil {
		return "", nil, music.ErrNoCover
	}
	return http.DetectContentType(c), c, nil
}

func (m *fakeMusic) Lyrics(ctx context.Context, id shards.MD5) (music.Lyrics, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.playable(id); err != nil {
		return music.Lyrics{}, err
	}
	l, ok := m.lyrics[id]
	if !ok {
		return music.Lyrics{}, music.ErrNoLyrics
	}
	return l, nil
}

func (m *fakeMusic) SubscribeMusic() *pubsub.Subscription[music.Event] { return m.events.Subscribe(64) }

// memContent is a track's bytes in memory.
type memContent struct {
	*bytes.Reader
	name string
}

func (c *memContent) Name() string       { return c.name }
func (c *memContent) ModTime() time.Time { return time.Time{} }
func (c *memContent) Close() error       { return nil }

// genLibrary adds n generated tracks: track i is by "Artist i%artists",
// on album "Album i%(artists*5)", numbered within its album.
func genLibrary(m *fakeMusic, n, artists int) {
	albums := artists * 5
	for i := range n {
		ar := i % artists
		al := i % albums
		m.add(music.Track{
			Title: fmt.Sprintf("Song %05d", i), Artist: fmt.Sprintf("Artist %03d", ar),
			Album: fmt.Sprintf("Album %04d", al), Track: i/albums + 1, Year: 1980 + al%40,
			Duration: 180 + float64(i%120), Format: "mp3", Bitrate: 320000, SampleRate: 44100, Channels: 2,
			Name: fmt.Sprintf("%05d.mp3", i),
		}, []byte(fmt.Sprintf("audio of track %d", i)))
	}
}

// testService is a Service over m behind a loopback HTTP server.
type testService struct {
	*Service
	db  *bbolt.DB
	srv *httptest.Server
	dir string
}

const (
	testUser = "alice"
	testPass = "s3cret pass"
)

// newTestService serves m's library with user alice.
func newTestService(t testing.TB, m Music, tune ...func(*Config)) *testService {
	t.Helper()
	dir := t.TempDir()
	ts := &testService{dir: dir}
	ts.open(t, m, tune...)
	if err := ts.SetCredentials(context.Background(), testUser, testPass); err != nil {
		t.Fatal(err)
	}
	return ts
}

// open (again) makes the service over the DB in ts.dir.
func (ts *testService) open(t testing.TB, m Music, tune ...func(*Config)) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(ts.dir, "catnest.db"), 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// No fsync per write: the tests make thousands, and never crash.
	db.NoSync = true
	cfg := DefaultConfig()
	cfg.Music, cfg.DB, cfg.Version = m, db, "test"
	for _, f := range tune {
		f(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/rest/", s)
	ts.Service, ts.db, ts.srv = s, db, httptest.NewServer(mux)
	t.Cleanup(ts.close)
}

func (ts *testService) close() {
	if ts.srv == nil {
		return
	}
	ts.srv.Close()
	ts.Service.Close()
	ts.db.Close()
	ts.srv = nil
}

// auth is a salted token login of alice.
func auth(salt string) url.Values {
	sum := md5.Sum([]byte(testPass + salt))
	return url.Values{"u": {testUser}, "t": {hex.EncodeToString(sum[:])}, "s": {salt}, "v": {Version}, "c": {"test"}}
}

// get asks method with alice's token and the given parameters, and
// returns the raw answer.
func (ts *testService) get(t testing.TB, method string, q url.Values) (*http.Response, []byte) {
	t.Helper()
	v := auth("abcdef")
	for k, vs := range q {
		v[k] = vs
	}
	resp, err := http.Get(ts.srv.URL + "/rest/" + method + "?" + v.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// answer is a JSON subsonic-response.
type answer map[string]any

// call asks method in JSON and returns its subsonic-response.
func (ts *testService) call(t testing.TB, method string, q url.Values) answer {
	t.Helper()
	if q == nil {
		q = url.Values{}
	}
	q.Set("f", "json")
	resp, b := ts.get(t, method, q)
	return decodeAnswer(t, resp, b)
}

func decodeAnswer(t testing.TB, resp *http.Response, b []byte) answer {
	t.Helper()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	var env struct {
		R answer `json:"subsonic-response"`
	}
	if err := json.Unmarshal(b, &env); err != nil || env.R == nil {
		t.Fatalf("not a subsonic-response (%v): %s", err, b)
	}
	return env.R
}

// ok fails the test unless a is a success, and returns it.
func (a answer) ok(t testing.TB) answer {
	t.Helper()
	if a["status"] != "ok" {
		t.Fatalf("failed: %v", a)
	}
	return a
}

// code is the error code of a failed answer, -1 for a success.
func (a answer) code() int {
	if a["status"] == "ok" {
		return -1
	}
	e, _ := a["error"].(map[string]any)
	c, _ := e["code"].(float64)
	return int(c)
}

// list returns a["a"]["b"]… as a list (nil if absent).
func (a answer) list(path ...string) []any {
	var v any = map[string]any(a)
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	l, _ := v.([]any)
	return l
}

// obj returns a["a"]["b"]… as an object.
func (a answer) obj(path ...string) map[string]any {
	var v any = map[string]any(a)
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	m, _ := v.(map[string]any)
	return m
}

// pngOf makes a w×h PNG.
func pngOf(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 128, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
