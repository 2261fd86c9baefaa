package webui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/color"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/music"
	"github.com/catnest/catnest/shards"
)

// musicFixture is a server with a fakeMusic holding three tracks: song
// (local, with a cover and synced lyrics), remote (held by bravo and
// charlie) and noise (by "Bad Band", cached).
type musicFixture struct {
	*filesFixture // call, want, refuses
	music         *fakeMusic
	song          music.Track
	remote        music.Track
	noise         music.Track
	songB         []byte
	cover         []byte
}

func newMusicFixture(t *testing.T) *musicFixture {
	t.Helper()
	node := newFakeNode("alpha")
	m := newFakeMusic()
	f := &musicFixture{filesFixture: &filesFixture{t: t, node: node}, music: m}
	f.songB = testWAV(2, 8000, 1)
	f.song = m.add(music.Track{Title: "Song", Artist: "Ann", Album: "First", Track: 1, Year: 2020, Duration: 2,
		Format: "wav", Bitrate: 128000, SampleRate: 8000, Channels: 1, Local: true, Sources: []mesh.ID{node.id}}, f.songB)
	f.remote = m.add(music.Track{Title: "Far", Artist: "Ann", Album: "First", Track: 2, Duration: 1, Format: "wav",
		Sources: []mesh.ID{fakeID("bravo"), fakeID("charlie")}}, testWAV(1, 8000, 2))
	f.noise = m.add(music.Track{Title: "Noise", Artist: "Bad Band", Duration: 1, Format: "wav", Cached: true, CacheRemovable: true},
		testWAV(1, 8000, 3))
	f.cover = testPNG(t, 40, 40, color.RGBA{10, 200, 30, 255})
	m.setCover(f.song.MD5, "image/png", f.cover, []byte("thumb bytes"))
	m.setLyrics(f.song.MD5, music.Lyrics{Synced: true, Lines: []music.Line{{T: 0, Text: "one"}, {T: 1, Text: "two"}}, Raw: "[00:00]one\n[00:01]two"})
	f.base = startServer(t, Config{APIKey: testAPIKey, Music: m}, node)
	f.c = newClient(t)
	return f
}

func trackPath(id shards.MD5, sub string) string {
	return "/api/music/tracks/" + id.String() + "/" + sub
}

func TestMusicDisabled(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	base := startServer(t, Config{}, node)
	c := newClient(t)
	id := shards.MD5{1}
	for _, r := range [][2]string{
		{"GET", "/api/music/tracks"}, {"GET", trackPath(id, "stream")}, {"GET", trackPath(id, "cover")},
		{"PUT", trackPath(id, "cover")}, {"GET", trackPath(id, "lyrics")}, {"PUT", trackPath(id, "lyrics")},
		{"DELETE", trackPath(id, "cache")}, {"GET", "/api/music/bans"}, {"PUT", "/api/music/bans"},
		{"GET", "/api/music/scan"},
	} {
		req := newRequest(t, r[0], base+r[1])
		req.Header.Set("Origin", base)
		resp, b := do(t, c, req)
		wantJSONError(t, resp, b, http.StatusNotFound)
		if !strings.Contains(string(b), "music is not enabled") {
			t.Errorf("%s %s: %s, want it to say music is not enabled", r[0], r[1], b)
		}
	}
}

// TestMusicTracks lists the library with every field of the contract;
// banned tracks only with ?banned=1, marked.
func TestMusicTracks(t *testing.T) {
	checkGoroutines(t)
	f := newMusicFixture(t)
	list := decode[[]map[string]any](t, f.want(200, "GET", "/api/music/tracks", ""))
	if len(list) != 3 {
		t.Fatalf("%d tracks, want 3: %v", len(list), list)
	}
	for _, k := range []string{"md5", "title", "artist", "album", "track", "year", "duration", "format", "bitrate",
		"sample_rate", "local", "cached", "cache_removable", "sources", "has_cover", "has_lyrics"} {
		for _, tr := range list {
			if _, ok := tr[k]; !ok {
				t.Errorf("track has no %q: %v", k, tr)
			}
		}
	}
	// Sorted by artist, album, track number; sources never null.
	if list[0]["md5"] != f.song.MD5.String() || list[1]["md5"] != f.remote.MD5.String() || list[2]["md5"] != f.noise.MD5.String() {
		t.Errorf("order %v %v %v", list[0]["title"], list[1]["title"], list[2]["title"])
	}
	if src, ok := list[2]["sources"].([]any); !ok || len(src) != 0 {
		t.Errorf("sources of a cached-only track %v, want []", list[2]["sources"])
	}
	if list[0]["has_cover"] != true || list[0]["has_lyrics"] != true || list[0]["duration"] != 2.0 || list[0]["local"] != true {
		t.Errorf("song %v", list[0])
	}

	f.want(200, "PUT", "/api/music/bans", `{"patterns": ["^Bad"]}`)
	list = decode[[]map[string]any](t, f.want(200, "GET", "/api/music/tracks", ""))
	if len(list) != 2 {
		t.Errorf("with a ban: %d tracks, want 2", len(list))
	}
	for _, tr := range list {
		if _, ok := tr["banned"]; ok {
			t.Errorf("an unbanned track says banned: %v", tr)
		}
	}
	list = decode[[]map[string]any](t, f.want(200, "GET", "/api/music/tracks?banned=1", ""))
	if len(list) != 3 || list[2]["md5"] != f.noise.MD5.String() || list[2]["banned"] != true {
		t.Errorf("?banned=1: %v", list)
	}
	f.refuses([]badInput{
		{"bad banned", "GET", "/api/music/tracks?banned=yes", "", 400, "want 1 or 0"},
		{"POST", "POST", "/api/music/tracks", "", 405, "not allowed"},
	})
}

// TestMusicStream serves a track with Range requests and the right type;
// unknown is 404, banned 403, and a page elsewhere cannot play one.
func TestMusicStream(t *testing.T) {
	checkGoroutines(t)
	f := newMusicFixture(t)
	stream := trackPath(f.song.MD5, "stream")
	resp, b := f.call("GET", stream, "")
	h := resp.Header
	if resp.StatusCode != 200 || !bytes.Equal(b, f.songB) {
		t.Fatalf("GET stream: %d, %d bytes, want 200 and %d", resp.StatusCode, len(b), len(f.songB))
	}
	if h.Get("Content-Type") != "audio/wav" || h.Get("Accept-Ranges") != "bytes" || h.Get("ETag") != `"`+f.song.MD5.String()+`"` ||
		h.Get("Cross-Origin-Resource-Policy") != "same-origin" || !strings.HasPrefix(h.Get("Content-Security-Policy"), "sandbox") ||
		h.Get("Cache-Control") != "private, no-cache" {
		t.Errorf("headers %v", h)
	}
	// A seek to 75%, as the player does it.
	from := len(f.songB) * 3 / 4
	resp, b = f.call("GET", stream, "", "Range", fmt.Sprintf("bytes=%d-", from))
	if resp.StatusCode != 206 || !bytes.Equal(b, f.songB[from:]) ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", from, len(f.songB)-1, len(f.songB)) {
		t.Errorf("range from 75%%: %d, %d bytes, %q", resp.StatusCode, len(b), resp.Header.Get("Content-Range"))
	}
	if _, seeks := f.music.streamed(f.song.MD5); len(seeks) != 2 || seeks[1] != int64(from) {
		t.Errorf("reads started at %v, want the second at %d", seeks, from)
	}
	resp, _ = f.call("GET", stream, "", "Range", fmt.Sprintf("bytes=%d-", len(f.songB)+1))
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("range past the end: %d, want 416", resp.StatusCode)
	}
	resp, b = f.call("HEAD", stream, "")
	if resp.StatusCode != 200 || len(b) != 0 || resp.Header.Get("Content-Length") != fmt.Sprint(len(f.songB)) {
		t.Errorf("HEAD: %d, %d bytes, length %q", resp.StatusCode, len(b), resp.Header.Get("Content-Length"))
	}
	if resp, _ := f.call("GET", stream, "", "If-None-Match", `"`+f.song.MD5.String()+`"`); resp.StatusCode != 304 {
		t.Errorf("revalidation: %d, want 304", resp.StatusCode)
	}

	f.want(200, "PUT", "/api/music/bans", `{"patterns": ["Band$"]}`)
	f.refuses([]badInput{
		{"bad id", "GET", "/api/music/tracks/song.wav/stream", "", 400, "bad id"},
		{"unknown", "GET", trackPath(shards.MD5{7}, "stream"), "", 404, "unknown track"},
		{"banned", "GET", trackPath(f.noise.MD5, "stream"), "", 403, "banned"},
		{"POST", "POST", stream, "", 405, "not allowed"},
	})
	if opens, _ := f.music.streamed(f.noise.MD5); opens != 0 {
		t.Errorf("a banned track was opened %d times", opens)
	}
	for _, site := range []string{"cross-site", "same-site"} {
		if resp, _ := f.call("GET", stream, "", "Sec-Fetch-Site", site); resp.StatusCode != http.StatusForbidden {
			t.Errorf("Sec-Fetch-Site %s: %d, want 403", site, resp.StatusCode)
		}
	}
	testutil.WaitFor(t, 10*time.Second, "the readers to be closed", func() bool { return f.music.openReaders() == 0 })
}

// TestMusicCover serves and attaches covers: the thumbnail, types a
// browser shows as images only, and an upload that is not an image is
// refused.
func TestMusicCover(t *testing.T) {
	checkGoroutines(t)
	f := newMusicFixture(t)
	cover := trackPath(f.song.MD5, "cover")
	resp, b := f.call("GET", cover, "")
	if resp.StatusCode != 200 || !bytes.Equal(b, f.cover) || resp.Header.Get("Content-Type") != "image/png" ||
		!strings.HasPrefix(resp.Header.Get("Content-Security-Policy"), "sandbox") {
		t.Fatalf("GET cover: %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(b))
	}
	etag := resp.Header.Get("ETag")
	if resp, _ := f.call("GET", cover, "", "If-None-Match", etag); resp.StatusCode != 304 {
		t.Errorf("revalidation: %d, want 304", resp.StatusCode)
	}
	if b := f.want(200, "GET", cover+"?thumb=1", ""); string(b) != "thumb bytes" {
		t.Errorf("thumbnail: %q", b)
	}

	// Attach a cover to the remote track: the bytes decide the type.
	remote := trackPath(f.remote.MD5, "cover")
	f.want(404, "GET", remote, "")
	png := testPNG(t, 8, 8, color.RGBA{1, 2, 3, 255})
	resp, _ = f.call("PUT", remote, string(png), "Content-Type", "image/jpeg")
	if resp.StatusCode != 204 {
		t.Fatalf("PUT cover: %d", resp.StatusCode)
	}
	resp, b = f.call("GET", remote, "")
	if resp.StatusCode != 200 || !bytes.Equal(b, png) || resp.Header.Get("Content-Type") != "image/png" {
		t.Errorf("attached cover: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp.Header.Get("ETag") == etag {
		t.Error("two covers have the same ETag")
	}
	// A cover a peer calls SVG is not served as one.
	f.music.setCover(f.noise.MD5, "image/svg+xml", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`), nil)
	if resp, _ := f.call("GET", trackPath(f.noise.MD5, "cover"), ""); resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("an SVG cover served as %q", resp.Header.Get("Content-Type"))
	}

	before := len(f.music.callLog())
	f.refuses([]badInput{
		{"text", "PUT", remote, "just text", 400, "not a JPEG, PNG, GIF or WebP"},
		{"svg", "PUT", remote, `<svg xmlns="http://www.w3.org/2000/svg"></svg>`, 400, "not a JPEG"},
		{"empty", "PUT", remote, "", 400, "empty body"},
		{"too large", "PUT", remote, string(png) + strings.Repeat("x", maxCoverBody), 413, "too large"},
		{"unknown", "PUT", trackPath(shards.MD5{7}, "cover"), string(png), 404, "unknown track"},
		{"bad thumb", "GET", cover + "?thumb=yes", "", 400, "want 1 or 0"},
		{"no lyrics", "GET", trackPath(f.noise.MD5, "lyrics"), "", 404, "no lyrics"},
	})
	if n := len(f.music.callLog()) - before; n != 1 { // only the unknown track reached the service
		t.Errorf("%d refused uploads reached the service, want 1 (unknown): %v", n, f.music.callLog())
	}
	// Attaching changes the node: a request from elsewhere is refused.
	req := newRequest(t, "PUT", f.base+remote)
	req.Header.Set("Origin", "http://evil.example")
	req.Body = http.NoBody
	if resp, b := do(t, f.c, req); resp.StatusCode != 403 {
		t.Errorf("cross-origin PUT: %d %s, want 403", resp.StatusCode, b)
	}
	for _, site := range []string{"cross-site", "same-site"} {
		if resp, _ := f.call("GET", cover, "", "Sec-Fetch-Site", site); resp.StatusCode != http.StatusForbidden {
			t.Errorf("cover from %s: %d, want 403", site, resp.StatusCode)
		}
	}
}

// TestMusicLyrics serves lyrics and attaches them as JSON or as the file.
func TestMusicLyrics(t *testing.T) {
	checkGoroutines(t)
	f := newMusicFixture(t)
	l := decode[music.Lyrics](t, f.want(200, "GET", trackPath(f.song.MD5, "lyrics"), ""))
	if !l.Synced || len(l.Lines) != 2 || l.Lines[1].T != 1 || l.Lines[1].Text != "two" || l.Raw == "" {
		t.Errorf("lyrics %+v", l)
	}
	lyrics := trackPath(f.remote.MD5, "lyrics")
	f.want(404, "GET", lyrics, "")
	f.want(204, "PUT", lyrics, `{"raw": "la la\nlo"}`)
	l = decode[music.Lyrics](t, f.want(200, "GET", lyrics, ""))
	if l.Raw != "la la\nlo" || len(l.Lines) != 2 {
		t.Errorf("attached as JSON: %+v", l)
	}
	// The file itself, as curl -T sends it.
	resp, _ := f.call("PUT", lyrics, "[00:01.00]歌词\n", "Content-Type", "application/octet-stream")
	if resp.StatusCode != 204 {
		t.Fatalf("PUT file: %d", resp.StatusCode)
	}
	if l = decode[music.Lyrics](t, f.want(200, "GET", lyrics, "")); l.Raw != "[00:01.00]歌词\n" {
		t.Errorf("attached as a file: %+v", l)
	}
	var raw map[string]any
	json.Unmarshal(f.want(200, "GET", lyrics, ""), &raw)
	if _, ok := raw["lines"].([]any); !ok {
		t.Errorf("lines %v, want an array", raw["lines"])
	}
	before := len(f.music.callLog())
	f.refuses([]badInput{
		{"empty", "PUT", lyrics, `{"raw": "  "}`, 400, "empty lyrics"},
		{"unknown field", "PUT", lyrics, `{"raw": "x", "synced": true}`, 400, "unknown field"},
		{"too long", "PUT", lyrics, `{"raw": "` + strings.Repeat("a", maxLyricsBody+1) + `"}`, 413, "too long"},
		{"not json", "PUT", lyrics, `{"raw": `, 400, "bad request body"},
		{"unknown track", "GET", trackPath(shards.MD5{7}, "lyrics"), "", 404, "unknown track"},
	})
	resp, b := f.call("PUT", lyrics, "\xff\xfe bad", "Content-Type", "text/plain")
	if resp.StatusCode != 400 || !strings.Contains(string(b), "not UTF-8") {
		t.Errorf("non-UTF-8 lyrics: %d %s", resp.StatusCode, b)
	}
	resp, _ = f.call("PUT", lyrics, strings.Repeat("a", maxLyricsBody+1), "Content-Type", "text/plain")
	if resp.StatusCode != 413 {
		t.Errorf("a long file: %d, want 413", resp.StatusCode)
	}
	if n := len(f.music.callLog()) - before; n != 0 {
		t.Errorf("%d refused uploads reached the service: %v", n, f.music.callLog())
	}
	for _, site := range []string{"cross-site", "same-site"} {
		if resp, _ := f.call("GET", trackPath(f.song.MD5, "lyrics"), "", "Sec-Fetch-Site", site); resp.StatusCode != http.StatusForbidden {
			t.Errorf("lyrics from %s: %d, want 403", site, resp.StatusCode)
		}
	}
}

// TestMusicBans edits the ban list: an invalid pattern is refused with
// the reason and the list stays as it was.
func TestMusicBans(t *testing.T) {
	checkGoroutines(t)
	f := newMusicFixture(t)
	if b := f.want(200, "GET", "/api/music/bans", ""); strings.TrimSpace(string(b)) != `{"patterns":[]}` {
		t.Errorf("no bans: %s", b)
	}
	got := decode[BansJSON](t, f.want(200, "PUT", "/api/music/bans", `{"patterns": ["(?i)noise", "^Far$"]}`))
	if len(got.Patterns) != 2 || got.Patterns[1] != "^Far$" {
		t.Errorf("PUT answered %v", got)
	}
	if list := decode[[]music.Track](t, f.want(200, "GET", "/api/music/tracks", "")); len(list) != 1 {
		t.Errorf("%d tracks after banning two, want 1", len(list))
	}
	many := make([]string, music.MaxBans+1)
	for i := range many {
		many[i] = fmt.Sprint(i)
	}
	manyJSON, _ := json.Marshal(BansJSON{Patterns: many})
	f.refuses([]badInput{
		{"invalid", "PUT", "/api/music/bans", `{"patterns": ["ok", "(unclosed"]}`, 400, "missing closing )"},
		{"missing", "PUT", "/api/music/bans", `{}`, 400, `missing "patterns"`},
		{"empty pattern", "PUT", "/api/music/bans", `{"patterns": [" "]}`, 400, "would ban every track"},
		// The service's own limits, so that the UI says what it refuses.
		{"long pattern", "PUT", "/api/music/bans", `{"patterns": ["` + strings.Repeat("a", music.MaxBanPattern+1) + `"]}`, 400, "too long"},
		{"too many", "PUT", "/api/music/bans", string(manyJSON), 400, fmt.Sprintf("at most %d", music.MaxBans)},
		{"unknown field", "PUT", "/api/music/bans", `{"patterns": [], "x": 1}`, 400, "unknown field"},
		{"huge body", "PUT", "/api/music/bans", `{"patterns": ["` + strings.Repeat("a", maxChatBody) + `"]}`, 413, "too large"},
	})
	if got := decode[BansJSON](t, f.want(200, "GET", "/api/music/bans", "")); len(got.Patterns) != 2 || got.Patterns[0] != "(?i)noise" {
		t.Errorf("after refused edits: %v, want the two patterns unchanged", got)
	}
	f.want(200, "PUT", "/api/music/bans", `{"patterns": []}`)
	if list := decode[[]music.Track](t, f.want(200, "GET", "/api/music/tracks", "")); len(list) != 3 {
		t.Errorf("%d tracks after clearing the bans, want 3", len(list))
	}
	req := newRequest(t, "PUT", f.base+"/api/music/bans")
	req.Body = http.NoBody
	if resp, b := do(t, f.c, req); resp.StatusCode != 403 { // neither Origin nor the key
		t.Errorf("PUT without Origin: %d %s, want 403", resp.StatusCode, b)
	}
}

func TestMusicRemoveCacheAndScan(t *testing.T) {
	checkGoroutines(t)
	f := newMusicFixture(t)
	f.music.mu.Lock()
	f.music.usersCopy = map[shards.MD5]bool{f.noise.MD5: true}
	f.music.mu.Unlock()
	f.refuses([]badInput{{"the user's download", "DELETE", trackPath(f.noise.MD5, "cache"), "", 409, "the user's download"}})
	f.music.mu.Lock()
	if tr := f.music.tracks[f.noise.MD5]; tr == nil || !tr.Cached {
		t.Errorf("the user's copy after a refused DELETE: %+v", tr)
	}
	f.music.usersCopy, f.music.calls = nil, nil
	f.music.mu.Unlock()
	f.want(204, "DELETE", trackPath(f.noise.MD5, "cache"), "")
	if log := f.music.callLog(); len(log) != 1 || log[0] != "removecache "+f.noise.MD5.String() {
		t.Errorf("calls %v", log)
	}
	f.refuses([]badInput{
		{"gone", "DELETE", trackPath(f.noise.MD5, "cache"), "", 404, "unknown track"},
		{"bad id", "DELETE", "/api/music/tracks/x/cache", "", 400, "bad id"},
	})

	if b := f.want(200, "GET", "/api/music/scan", ""); strings.TrimSpace(string(b)) != `{"state":"idle","files":0,"done":0,"bytes":0,"errors":[]}` {
		t.Errorf("idle scan: %s", b)
	}
	f.music.setScan(music.ScanStatus{State: "scanning", Files: 10, Done: 4, Bytes: 1 << 20,
		Errors: []music.ScanError{{Path: "/m/bad.mp3", Reason: "not an MP3"}}})
	st := decode[music.ScanStatus](t, f.want(200, "GET", "/api/music/scan", ""))
	if st.State != "scanning" || st.Done != 4 || len(st.Errors) != 1 || st.Errors[0].Reason != "not an MP3" {
		t.Errorf("scan %+v", st)
	}
}

// nextMusic waits for the next "music" event that ok accepts.
func nextMusic(t *testing.T, events <-chan sseEvent, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	return nextObject(t, events, "music", ok)
}

func TestMusicEvents(t *testing.T) {
	checkGoroutines(t)
	f := newMusicFixture(t)
	events, _ := openEvents(t, f.c, f.base)
	testutil.WaitFor(t, 10*time.Second, "the stream to subscribe", func() bool { return f.music.events.Len() == 1 })
	f.music.setScan(music.ScanStatus{State: "scanning", Files: 3, Done: 1})
	ev := nextMusic(t, events, func(v map[string]any) bool { return v["scan"] != nil })
	if sc := ev["scan"].(map[string]any); sc["done"] != 1.0 || sc["errors"] == nil {
		t.Errorf("scan event %v, want done 1 and errors []", sc)
	}
	f.want(204, "PUT", trackPath(f.remote.MD5, "lyrics"), `{"raw": "x"}`)
	nextMusic(t, events, func(v map[string]any) bool { return v["library"] == true })
}

func TestMusicEventsResync(t *testing.T) {
	checkGoroutines(t)
	f := newMusicFixture(t)
	for i := range fakeMusicBuffer + 10 {
		f.music.stalled = append(f.music.stalled, music.Event{Scan: &music.ScanStatus{State: "scanning", Done: i}})
	}
	events, _ := openEvents(t, f.c, f.base)
	n := 0
	nextMusic(t, events, func(v map[string]any) bool {
		if v["library"] == true {
			return true
		}
		n++
		return false
	})
	if n != fakeMusicBuffer {
		t.Errorf("library resync after %d events, want after the %d buffered", n, fakeMusicBuffer)
	}
}
