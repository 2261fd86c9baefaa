package subsonic

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"image"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/music"
)

// TestAuth: a salted token, a plain password and an enc: password log
// in; a wrong one, a wrong user or a malformed enc: are error 40, missing
// credentials 10, an API key 42, and a node without a user set refuses
// everyone with 40.
func TestAuth(t *testing.T) {
	testutil.CheckGoroutines(t)
	m := newFakeMusic()
	ts := newTestService(t, m, func(c *Config) { c.LoginBurst = 1000 })
	ping := func(q url.Values) int {
		resp, err := http.Get(ts.srv.URL + "/rest/ping.view?f=json&" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return decodeAnswer(t, resp, b.Bytes()).code()
	}
	enc := "enc:" + hex.EncodeToString([]byte(testPass))
	for _, tt := range []struct {
		name string
		q    url.Values
		want int
	}{
		{"token", auth("c19b2d"), -1},
		{"token upper-case hex", func() url.Values {
			q := auth("c19b2d")
			q.Set("t", strings.ToUpper(q.Get("t")))
			return q
		}(), -1},
		{"plain", url.Values{"u": {testUser}, "p": {testPass}}, -1},
		{"enc", url.Values{"u": {testUser}, "p": {enc}}, -1},
		{"wrong password", url.Values{"u": {testUser}, "p": {"guess"}}, 40},
		{"wrong enc", url.Values{"u": {testUser}, "p": {"enc:" + hex.EncodeToString([]byte("guess"))}}, 40},
		{"enc not hex", url.Values{"u": {testUser}, "p": {"enc:zz"}}, 40},
		{"wrong user", url.Values{"u": {"bob"}, "p": {testPass}}, 40},
		{"wrong token", func() url.Values { q := auth("c19b2d"); q.Set("s", "other"); return q }(), 40},
		{"huge salt", func() url.Values { q := auth(strings.Repeat("s", 5000)); return q }(), 40},
		{"no user", url.Values{"p": {testPass}}, 10},
		{"no password", url.Values{"u": {testUser}}, 10},
		{"token without salt", url.Values{"u": {testUser}, "t": {"00"}}, 10},
		{"api key", url.Values{"apiKey": {"k"}, "u": {testUser}}, 42},
	} {
		if got := ping(tt.q); got != tt.want {
			t.Errorf("%s: code %d, want %d", tt.name, got, tt.want)
		}
	}
	if err := ts.SetCredentials(context.Background(), "", ""); err != nil {
		t.Fatal(err)
	}
	if got := ping(url.Values{"u": {testUser}, "p": {testPass}}); got != 40 {
		t.Errorf("no user set: code %d, want 40", got)
	}
	for _, bad := range [][2]string{{"", "x"}, {"x", ""}, {" x", "y"}, {"x", "a\x00b"}, {strings.Repeat("u", 200), "p"}} {
		if err := ts.SetCredentials(context.Background(), bad[0], bad[1]); err == nil {
			t.Errorf("SetCredentials(%q, %q) took it", bad[0], bad[1])
		}
	}
}

// TestLoginLimit: a client that keeps guessing is refused before its
// guesses are checked, the right password included, until the limit
// lets it try again.
func TestLoginLimit(t *testing.T) {
	testutil.CheckGoroutines(t)
	ts := newTestService(t, newFakeMusic(), func(c *Config) { c.LoginBurst, c.LoginRate = 5, 2 })
	try := func(pass string) answer {
		resp, err := http.Get(ts.srv.URL + "/rest/ping?f=json&u=" + testUser + "&p=" + url.QueryEscape(pass))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return decodeAnswer(t, resp, b.Bytes())
	}
	for i := range 200 {
		a := try(fmt.Sprintf("guess %d", i))
		if strings.Contains(fmt.Sprint(a), "too many failed logins") {
			break
		}
		if i == 199 {
			t.Fatal("200 wrong passwords in a row and no limit")
		}
	}
	if a := try(testPass); a.code() != 40 {
		t.Fatalf("the right password while limited: %v, want refused", a)
	}
	testutil.WaitFor(t, 30*time.Second, "the limit to let the right password in", func() bool {
		return try(testPass).code() == -1
	})
}

// TestLoginLimitAddresses: a host that guesses from ever new addresses
// of its IPv6 /64, or from more addresses than the limiters kept, gets
// no fresh allowance with each, and a client held back stays held back.
func TestLoginLimitAddresses(t *testing.T) {
	testutil.CheckGoroutines(t)
	const burst = 5
	ts := newTestService(t, newFakeMusic(), func(c *Config) { c.LoginBurst, c.LoginRate = burst, rate.Every(time.Hour) })
	try := func(remote, pass string) answer {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, "/rest/ping?f=json&u="+testUser+"&p="+url.QueryEscape(pass), nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		ts.ServeHTTP(rec, req)
		return decodeAnswer(t, rec.Result(), rec.Body.Bytes())
	}
	limited := func(a answer) bool { return strings.Contains(fmt.Sprint(a), "too many failed logins") }

	// One host, a new address of its /64 for each guess.
	for i := range 4 * burst {
		if a := try(fmt.Sprintf("[2001:db8:1:2::%x]:4000", i+1), "guess"); limited(a) {
			break
		} else if i == 4*burst-1 {
			t.Fatalf("%d guesses from one /64 and no limit", 4*burst)
		}
	}
	if a := try("[2001:db8:1:2:ffff::1]:4000", testPass); !limited(a) {
		t.Fatalf("another address of the /64 after its guesses: %v, want held back", a)
	}
	if a := try("[2001:db8:1:3::1]:4000", testPass); a.code() != -1 {
		t.Fatalf("another /64: %v, want in", a)
	}

	// A client held back, then more failing clients than are counted
	// apart: it is still held back, and so are the newest.
	for range burst {
		try("192.0.2.1:4000", "guess")
	}
	if a := try("192.0.2.1:4000", testPass); !limited(a) {
		t.Fatalf("after %d guesses: %v, want held back", burst, a)
	}
	for i := range maxLimiters + 2*burst {
		try(fmt.Sprintf("10.%d.%d.%d:4000", i>>16&255, i>>8&255, i&255), "guess")
	}
	if a := try("192.0.2.1:4000", testPass); !limited(a) {
		t.Fatalf("after %d other clients: %v, want still held back", maxLimiters, a)
	}
	if a := try("198.51.100.7:4000", "guess"); !limited(a) {
		t.Fatalf("a new client once %d failing ones are counted: %v, want held back", maxLimiters, a)
	}
}

// TestBadInput: whatever a client sends, the answer is a Subsonic
// error with the documented code, never a crash or another format.
func TestBadInput(t *testing.T) {
	testutil.CheckGoroutines(t)
	m := newFakeMusic()
	genLibrary(m, 300, 10)
	ts := newTestService(t, m)
	for _, tt := range []struct {
		method string
		q      url.Values
		want   int
	}{
		{"noSuchMethod", nil, 0},
		{"getSong/extra", nil, 0},
		{"getSong", nil, 10},
		{"getAlbum", nil, 10},
		{"getArtist", nil, 10},
		{"getMusicDirectory", nil, 10},
		{"stream", nil, 10},
		{"download", nil, 10},
		{"getCoverArt", nil, 10},
		{"getLyricsBySongId", nil, 10},
		{"getPlaylist", nil, 10},
		{"deletePlaylist", nil, 10},
		{"updatePlaylist", nil, 10},
		{"createPlaylist", nil, 10},
		{"scrobble", nil, 10},
		{"star", nil, 10},
		{"setRating", url.Values{"id": {"x"}}, 10},
		{"search3", nil, 10},
		{"getAlbumList2", nil, 10},
		{"getAlbumList2", url.Values{"type": {"byYear"}, "fromYear": {"1990"}}, 10},
		{"getAlbumList2", url.Values{"type": {"byGenre"}}, 10},
		{"getAlbumList2", url.Values{"type": {"best"}}, 0},
		{"getAlbumList2", url.Values{"type": {"random"}, "size": {"ten"}}, 0},
		{"search3", url.Values{"query": {""}, "songCount": {"1e3"}}, 0},
		{"scrobble", url.Values{"id": {"00000000000000000000000000000000"}}, 70},
		{"getSong", url.Values{"id": {"00000000000000000000000000000000"}}, 70},
		{"getSong", url.Values{"id": {"not-an-id"}}, 70},
		{"getAlbum", url.Values{"id": {"al-nope"}}, 70},
		{"getArtist", url.Values{"id": {"ar-nope"}}, 70},
		{"getMusicDirectory", url.Values{"id": {"x"}}, 70},
		{"stream", url.Values{"id": {"00000000000000000000000000000000"}}, 70},
		{"download", url.Values{"id": {"00000000000000000000000000000000"}}, 70},
		{"getLyricsBySongId", url.Values{"id": {"00000000000000000000000000000000"}}, 70},
		{"updatePlaylist", url.Values{"id": {"1"}}, 10},
		{"updatePlaylist", url.Values{"playlistId": {"999"}}, 70},
		{"getCoverArt", url.Values{"id": {"al-nope"}}, 70},
		{"getPlaylist", url.Values{"id": {"999"}}, 70},
		{"deletePlaylist", url.Values{"id": {"999"}}, 70},
		{"star", url.Values{"id": {"00000000000000000000000000000000"}}, 70},
		{"createPlaylist", url.Values{"name": {"x"}, "songId": {"nope"}}, 70},
		{"createPlaylist", url.Values{"name": {"a\x01b"}}, 0},
		{"createPlaylist", url.Values{"name": {strings.Repeat("n", 300)}}, 0},
		{"getIndexes", url.Values{"musicFolderId": {"7"}}, 70},
		{"setRating", url.Values{"id": {"x"}, "rating": {"9"}}, 0},
		{"scrobble", url.Values{"id": {"x"}, "submission": {"maybe"}}, 0},
	} {
		a := ts.call(t, tt.method, tt.q)
		if a.code() != tt.want {
			t.Errorf("%s %v: %v, want code %d", tt.method, tt.q, a, tt.want)
			continue
		}
		if msg, _ := a.obj("error")["message"].(string); msg == "" {
			t.Errorf("%s %v: an error without a message: %v", tt.method, tt.q, a)
		}
	}

	// Huge counts and offsets are clamped, not errors.
	a := ts.call(t, "search3", url.Values{"query": {""}, "songCount": {"99999999999999999999999"}, "albumCount": {"-5"}, "artistOffset": {"-1"}}).ok(t)
	if n := len(a.list("searchResult3", "song")); n != 300 {
		t.Errorf("songCount huge: %d songs, want all 300", n)
	}
	if n := len(a.list("searchResult3", "album")); n != 0 {
		t.Errorf("albumCount -5: %d albums, want 0", n)
	}
	if n := len(a.list("searchResult3", "artist")); n != 10 {
		t.Errorf("artistOffset -1: %d artists, want 10", n)
	}
	a = ts.call(t, "search3", url.Values{"query": {""}, "songOffset": {"99999999999999999999999"}}).ok(t)
	if n := len(a.list("searchResult3", "song")); n != 0 {
		t.Errorf("songOffset huge: %d songs, want 0", n)
	}
	a = ts.call(t, "getAlbumList2", url.Values{"type": {"alphabeticalByName"}, "size": {"1000000"}, "offset": {"1"}}).ok(t)
	if n := len(a.list("albumList2", "album")); n != 49 {
		t.Errorf("getAlbumList2 size huge, offset 1: %d albums, want 49", n)
	}
	a = ts.call(t, "getRandomSongs", url.Values{"size": {"1000000"}}).ok(t)
	if n := len(a.list("randomSongs", "song")); n != 300 {
		t.Errorf("getRandomSongs size huge: %d songs, want 300", n)
	}

	// A POST body over the limit.
	big := auth("abcdef")
	big.Set("f", "json")
	big.Set("name", "x")
	big.Set("songId", strings.Repeat("a", 2<<20))
	resp, err := http.Post(ts.srv.URL+"/rest/createPlaylist?f=json", "application/x-www-form-urlencoded", strings.NewReader(big.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	resp.Body.Close()
	if a := decodeAnswer(t, resp, b.Bytes()); a.code() != 0 || !strings.Contains(fmt.Sprint(a), "too large") {
		t.Errorf("2 MiB body: %v", a)
	}
	// Errors in XML are XML.
	resp, body := ts.get(t, "getSong", nil)
	var x struct {
		XMLName xml.Name
		Status  string `xml:"status,attr"`
		Error   struct {
			Code int `xml:"code,attr"`
		} `xml:"error"`
	}
	if err := xml.Unmarshal(body, &x); err != nil || x.XMLName.Local != "subsonic-response" || x.XMLName.Space != xmlns ||
		x.Status != "failed" || x.Error.Code != 10 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/xml") {
		t.Errorf("XML error: %v %+v %s", err, x, body)
	}
}

// TestBrowse walks a library of 5,000 tracks by 40 artists as an app
// does: indexes, artists, albums, songs, folders, search and album lists
// of every type, with ids that are the same however they are reached.
func TestBrowse(t *testing.T) {
	testutil.CheckGoroutines(t)
	m := newFakeMusic()
	genLibrary(m, 5000, 40)
	m.add(music.Track{Title: "Help", Artist: "The Beatles", Album: "Help!", Track: 1, Year: 1965, Duration: 139, Format: "flac"}, []byte("help"))
	m.add(music.Track{Title: "No Tags", Name: "untagged.wav", Format: "wav"}, []byte("untagged"))
	ts := newTestService(t, m)

	a := ts.call(t, "getArtists", nil).ok(t)
	var artists []map[string]any
	var letters []string
	for _, ix := range a.list("artists", "index") {
		ix := ix.(map[string]any)
		letters = append(letters, ix["name"].(string))
		for _, ar := range ix["artist"].([]any) {
			artists = append(artists, ar.(map[string]any))
		}
	}
	if len(artists) != 42 || !slices.Equal(letters, []string{"#", "A", "B"}) {
		t.Fatalf("getArtists: %d artists under %q", len(artists), letters)
	}
	for _, ar := range artists {
		if ar["id"] != artistID(ar["name"].(string)) {
			t.Errorf("artist %v: id is not the one of its name", ar)
		}
	}
	// The Beatles sort under B, without their article.
	ix := ts.call(t, "getIndexes", nil).ok(t).list("indexes", "index")
	b := ix[len(ix)-1].(map[string]any)
	if b["name"] != "B" || b["artist"].([]any)[0].(map[string]any)["name"] != "The Beatles" {
		t.Errorf("getIndexes: last index %v", b)
	}

	ar := ts.call(t, "getArtist", url.Values{"id": {artistID("Artist 007")}}).ok(t).obj("artist")
	albums := ar["album"].([]any)
	if ar["albumCount"].(float64) != 5 || len(albums) != 5 {
		t.Fatalf("getArtist: %v", ar)
	}
	al := albums[0].(map[string]any)
	if al["id"] != albumID("Artist 007", al["name"].(string)) || al["songCount"].(float64) != 25 {
		t.Fatalf("album %v", al)
	}
	got := ts.call(t, "getAlbum", url.Values{"id": {al["id"].(string)}}).ok(t).obj("album")
	songs := got["song"].([]any)
	if len(songs) != 25 {
		t.Fatalf("getAlbum: %d songs", len(songs))
	}
	for i, so := range songs {
		so := so.(map[string]any)
		if so["track"].(float64) != float64(i+1) || so["albumId"] != al["id"] || so["artistId"] != ar["id"] ||
			so["contentType"] != "audio/mpeg" || so["suffix"] != "mp3" || so["bitRate"].(float64) != 320 {
			t.Fatalf("song %d of the album: %v", i, so)
		}
		one := ts.call(t, "getSong", url.Values{"id": {so["id"].(string)}}).ok(t).obj("song")
		if one["title"] != so["title"] || one["parent"] != al["id"] {
			t.Fatalf("getSong %v: %v", so["id"], one)
		}
	}
	// Folder browsing reaches the same songs.
	dir := ts.call(t, "getMusicDirectory", url.Values{"id": {ar["id"].(string)}}).ok(t).obj("directory")
	if kids := dir["child"].([]any); len(kids) != 5 || kids[0].(map[string]any)["isDir"] != true {
		t.Fatalf("artist directory: %v", dir)
	}
	dir = ts.call(t, "getMusicDirectory", url.Values{"id": {al["id"].(string)}}).ok(t).obj("directory")
	if kids := dir["child"].([]any); len(kids) != 25 || kids[0].(map[string]any)["id"] != songs[0].(map[string]any)["id"] {
		t.Fatalf("album directory: %v", dir)
	}
	// Untagged tracks still have a place.
	un := ts.call(t, "search3", url.Values{"query": {"untagged"}}).ok(t).list("searchResult3", "song")
	if len(un) != 1 || un[0].(map[string]any)["artist"] != unknownArtist || un[0].(map[string]any)["album"] != unknownAlbum {
		t.Errorf("untagged track: %v", un)
	}

	// An empty query pages through the whole library, as apps that keep
	// a copy of it do.
	seen := map[string]bool{}
	for off := 0; ; off += 500 {
		page := ts.call(t, "search3", url.Values{"query": {`""`}, "songCount": {"500"}, "songOffset": {fmt.Sprint(off)},
			"artistCount": {"0"}, "albumCount": {"0"}}).ok(t).list("searchResult3", "song")
		for _, so := range page {
			seen[so.(map[string]any)["id"].(string)] = true
		}
		if len(page) < 500 {
			break
		}
	}
	if len(seen) != 5002 {
		t.Errorf("paging search3: %d songs, want 5002", len(seen))
	}
	res := ts.call(t, "search3", url.Values{"query": {"song 00421"}}).ok(t).obj("searchResult3")
	if s := res["song"].([]any); len(s) != 1 || s[0].(map[string]any)["title"] != "Song 00421" {
		t.Errorf("search3 song 00421: %v", res)
	}
	res = ts.call(t, "search3", url.Values{"query": {"beat*"}}).ok(t).obj("searchResult3")
	if len(res["artist"].([]any)) != 1 || len(res["album"].([]any)) != 1 || len(res["song"].([]any)) != 1 {
		t.Errorf("search3 beat*: %v", res)
	}

	// Album lists of every type.
	list := func(q url.Values) []string {
		var ids []string
		for _, al := range ts.call(t, "getAlbumList2", q).ok(t).list("albumList2", "album") {
			ids = append(ids, al.(map[string]any)["id"].(string))
		}
		return ids
	}
	if got := list(url.Values{"type": {"alphabeticalByName"}, "size": {"500"}}); len(got) != 202 {
		t.Errorf("alphabeticalByName: %d albums, want 202", len(got))
	}
	if got := list(url.Values{"type": {"random"}, "size": {"30"}}); len(got) != 30 {
		t.Errorf("random: %d albums", len(got))
	}
	if got := list(url.Values{"type": {"alphabeticalByArtist"}, "size": {"6"}}); len(got) != 6 || got[0] != albumID(unknownArtist, unknownAlbum) || got[1] != albumID("Artist 000", "Album 0000") {
		t.Errorf("alphabeticalByArtist: %v", got)
	}
	if got := list(url.Values{"type": {"newest"}, "size": {"500"}}); len(got) != 202 {
		t.Errorf("newest: %d albums", len(got))
	}
	if got := list(url.Values{"type": {"byYear"}, "fromYear": {"1965"}, "toYear": {"1965"}}); !slices.Equal(got, []string{albumID("The Beatles", "Help!")}) {
		t.Errorf("byYear 1965: %v", got)
	}
	years := ts.call(t, "getAlbumList2", url.Values{"type": {"byYear"}, "fromYear": {"2019"}, "toYear": {"1981"}, "size": {"500"}}).ok(t).list("albumList2", "album")
	if len(years) != 5*39 || years[0].(map[string]any)["year"].(float64) != 2019 {
		t.Errorf("byYear 2019..1981: %d albums, first %v", len(years), years[0])
	}
	if got := list(url.Values{"type": {"byGenre"}, "genre": {"Rock"}}); len(got) != 0 {
		t.Errorf("byGenre: %v, want none (no genres)", got)
	}
	for _, typ := range []string{"starred", "highest", "frequent", "recent"} {
		if got := list(url.Values{"type": {typ}}); len(got) != 0 {
			t.Errorf("%s before any star, rating or play: %v", typ, got)
		}
	}
	// Stars, ratings and plays order their lists.
	one, two := albumID("Artist 001", "Album 0001"), albumID("Artist 002", "Album 0002")
	ts.call(t, "star", url.Values{"albumId": {two}}).ok(t)
	ts.call(t, "setRating", url.Values{"id": {one}, "rating": {"5"}}).ok(t)
	ts.call(t, "setRating", url.Values{"id": {two}, "rating": {"2"}}).ok(t)
	s1 := ts.call(t, "getAlbum", url.Values{"id": {one}}).ok(t).obj("album")["song"].([]any)[0].(map[string]any)["id"].(string)
	s2 := ts.call(t, "getAlbum", url.Values{"id": {two}}).ok(t).obj("album")["song"].([]any)[0].(map[string]any)["id"].(string)
	now := time.Now().UnixMilli()
	ts.call(t, "scrobble", url.Values{"id": {s1, s1, s2}, "time": {fmt.Sprint(now - 3000), fmt.Sprint(now - 2000), fmt.Sprint(now - 1000)}}).ok(t)
	for typ, want := range map[string][]string{"starred": {two}, "highest": {one, two}, "frequent": {one, two}, "recent": {two, one}} {
		if got := list(url.Values{"type": {typ}}); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", typ, got, want)
		}
	}
	if got := ts.call(t, "getSong", url.Values{"id": {s1}}).ok(t).obj("song"); got["playCount"].(float64) != 2 || got["played"] == nil {
		t.Errorf("song played twice: %v", got)
	}
}

// TestBannedNeverAppear: a ban in force hides its tracks from the next
// request of every kind, and they come back when it is lifted.
func TestBannedNeverAppear(t *testing.T) {
	testutil.CheckGoroutines(t)
	m := newFakeMusic()
	genLibrary(m, 200, 5)
	m.add(music.Track{Title: "Forbidden", Artist: "Nobody", Album: "Secret", Track: 1, HasLyrics: true}, []byte("forbidden"))
	var id string
	for _, tr := range m.tracks {
		if tr.Title == "Forbidden" {
			id = tr.MD5.String()
			m.covers[tr.MD5] = pngOf(t, 8, 8)
			m.lyrics[tr.MD5] = music.Lyrics{Lines: []music.Line{{Text: "la"}}}
		}
	}
	ts := newTestService(t, m)
	ts.call(t, "getSong", url.Values{"id": {id}}).ok(t)
	ts.call(t, "star", url.Values{"id": {id}}).ok(t)
	pl := ts.call(t, "createPlaylist", url.Values{"name": {"mix"}, "songId": {id}}).ok(t).obj("playlist")["id"].(string)

	m.setBans("(?i)forbid")
	visible := func() []string {
		var where []string
		for method, q := range map[string]url.Values{
			"search3":        {"query": {""}, "songCount": {"1000"}},
			"getArtists":     nil,
			"getStarred2":    nil,
			"getPlaylist":    {"id": {pl}},
			"getAlbumList2":  {"type": {"alphabeticalByName"}, "size": {"500"}},
			"getRandomSongs": {"size": {"500"}},
		} {
			a := ts.call(t, method, q).ok(t)
			if s := fmt.Sprint(a); strings.Contains(s, id) || strings.Contains(s, "Forbidden") || strings.Contains(s, "Nobody") {
				where = append(where, method)
			}
		}
		for _, method := range []string{"getSong", "stream", "download", "getCoverArt", "getLyricsBySongId"} {
			if c := ts.call(t, method, url.Values{"id": {id}}).code(); c != 70 {
				where = append(where, fmt.Sprintf("%s (code %d)", method, c))
			}
		}
		if c := ts.call(t, "getCoverArt", url.Values{"id": {albumID("Nobody", "Secret")}}).code(); c != 70 {
			where = append(where, "album cover")
		}
		if l := ts.call(t, "getLyrics", url.Values{"artist": {"Nobody"}, "title": {"Forbidden"}}).ok(t).obj("lyrics"); l["value"] != "" {
			where = append(where, "getLyrics")
		}
		return where
	}
	if where := visible(); len(where) > 0 {
		t.Errorf("a banned track shows in %v", where)
	}
	m.setBans()
	if got := ts.call(t, "getPlaylist", url.Values{"id": {pl}}).ok(t).obj("playlist"); got["songCount"].(float64) != 1 {
		t.Errorf("the ban lifted, the playlist: %v", got)
	}
}

// TestCoverScalingBounded: an app asking for a grid of covers at once
// has at most maxScaling of them decoded and scaled at a time (each may
// take 192 MB), the others wait their turn, and all are answered.
func TestCoverScalingBounded(t *testing.T) {
	testutil.CheckGoroutines(t)
	m := newFakeMusic()
	m.add(music.Track{Title: "Tune", Artist: "Band", Album: "LP", Format: "mp3"}, []byte("audio"))
	m.covers[m.tracks[0].MD5] = pngOf(t, 160, 80)
	ts := newTestService(t, m)
	var mu sync.Mutex
	running, most := 0, 0
	release := make(chan struct{})
	scale := ts.covers.scale
	ts.covers.scale = func(data []byte, size int) ([]byte, error) {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		<-release
		mu.Lock()
		running--
		mu.Unlock()
		return scale(data, size)
	}
	const asks = 12
	var wg sync.WaitGroup
	sizes := make([]int, asks)
	for i := range asks {
		wg.Go(func() {
			// Sizes apart, so that none is answered from the cache.
			_, b := ts.get(t, "getCoverArt", url.Values{"id": {m.tracks[0].MD5.String()}, "size": {strconv.Itoa(64 + i)}})
			if cfg, _, err := image.DecodeConfig(bytes.NewReader(b)); err == nil {
				sizes[i] = cfg.Width
			}
		})
	}
	inWrapper := func() int { mu.Lock(); defer mu.Unlock(); return running }
	for range asks {
		testutil.WaitFor(t, 30*time.Second, "a cover being scaled", func() bool { return inWrapper() > 0 })
		release <- struct{}{}
	}
	wg.Wait()
	if most > maxScaling {
		t.Errorf("%d covers scaled at once, want at most %d", most, maxScaling)
	}
	for i, w := range sizes {
		if w != 64+i {
			t.Errorf("answer %d: a cover %d wide, want %d", i, w, 64+i)
		}
	}
}

// TestMedia: stream and download serve the track's bytes with Range;
// covers are scaled to the size asked (never up); lyrics come synced in
// milliseconds, or by artist and title as plain text.
func TestMedia(t *testing.T) {
	testutil.CheckGoroutines(t)
	m := newFakeMusic()
	audio := bytes.Repeat([]byte("0123456789"), 10000)
	m.add(music.Track{Title: "Tune", Artist: "Band", Album: "LP", Track: 1, Format: "flac", Name: "tune.flac"}, audio)
	tr := m.tracks[0]
	m.covers[tr.MD5] = pngOf(t, 640, 320)
	m.lyrics[tr.MD5] = music.Lyrics{Synced: true, Lines: []music.Line{{T: 1.5, Text: "one"}, {T: 62.25, Text: "two"}}}
	ts := newTestService(t, m)
	id := tr.MD5.String()

	q := auth("abcdef")
	q.Set("id", id)
	req, _ := http.NewRequest(http.MethodGet, ts.srv.URL+"/rest/stream.view?"+q.Encode()+"&maxBitRate=128", nil)
	req.Header.Set("Range", "bytes=1000-1999")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body.Bytes(), audio[1000:2000]) || resp.Header.Get("Content-Type") != "audio/flac" {
		t.Fatalf("stream with Range: %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), body.Len())
	}
	resp, b := ts.get(t, "download", url.Values{"id": {id}})
	if !bytes.Equal(b, audio) || !strings.Contains(resp.Header.Get("Content-Disposition"), "tune.flac") {
		t.Fatalf("download: %d bytes, %q", len(b), resp.Header.Get("Content-Disposition"))
	}

	for _, tt := range []struct {
		id, size string
		w, h     int
	}{
		{id, "", 640, 320},
		{id, "100", 100, 50},
		{albumID("Band", "LP"), "64", 64, 32},
		{artistID("Band"), "64", 64, 32},
		{id, "999999999999", 640, 320},
	} {
		resp, b := ts.get(t, "getCoverArt", url.Values{"id": {tt.id}, "size": {tt.size}})
		cfg, _, err := image.DecodeConfig(bytes.NewReader(b))
		if err != nil || cfg.Width != tt.w || cfg.Height != tt.h || !strings.HasPrefix(resp.Header.Get("Content-Type"), "image/") {
			t.Errorf("cover of %s at size %q: %v %dx%d %q, want %dx%d", tt.id, tt.size, err, cfg.Width, cfg.Height, resp.Header.Get("Content-Type"), tt.w, tt.h)
		}
	}

	sl := ts.call(t, "getLyricsBySongId", url.Values{"id": {id}}).ok(t).list("lyricsList", "structuredLyrics")
	if len(sl) != 1 {
		t.Fatalf("structured lyrics: %v", sl)
	}
	lines := sl[0].(map[string]any)["line"].([]any)
	if sl[0].(map[string]any)["synced"] != true || len(lines) != 2 || lines[1].(map[string]any)["start"].(float64) != 62250 ||
		lines[1].(map[string]any)["value"] != "two" {
		t.Errorf("structured lyrics: %v", sl)
	}
	if l := ts.call(t, "getLyrics", url.Values{"artist": {"band"}, "title": {" TUNE "}}).ok(t).obj("lyrics"); l["value"] != "one\ntwo" || l["title"] != "Tune" {
		t.Errorf("getLyrics: %v", l)
	}
	if l := ts.call(t, "getLyrics", url.Values{"artist": {"band"}, "title": {"other"}}).ok(t).obj("lyrics"); l["value"] != "" {
		t.Errorf("getLyrics of no song: %v", l)
	}
}
