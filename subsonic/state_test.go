package subsonic

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/music"
)

// songIDsOf lists the ids of an answer's songs.
func songIDsOf(l []any) []string {
	var out []string
	for _, x := range l {
		out = append(out, x.(map[string]any)["id"].(string))
	}
	return out
}

// TestPlaylistsStarsAcrossRestart: playlists, stars, plays, albums'
// first-seen times and every id are the same after a restart, and a
// playlist's hidden songs (offline or banned) are kept but neither shown
// nor counted in the indexes an app removes by.
func TestPlaylistsStarsAcrossRestart(t *testing.T) {
	testutil.CheckGoroutines(t)
	m := newFakeMusic()
	genLibrary(m, 1000, 10)
	ts := newTestService(t, m)
	all := songIDsOf(ts.call(t, "search3", url.Values{"query": {""}, "songCount": {"1000"}}).ok(t).list("searchResult3", "song"))
	if len(all) != 1000 {
		t.Fatalf("%d songs", len(all))
	}
	first := ts.call(t, "getAlbumList2", url.Values{"type": {"newest"}, "size": {"500"}}).ok(t).list("albumList2", "album")

	// A playlist of 5 songs, by POST as apps with formPost send it.
	form := auth("xyz123")
	form.Set("f", "json")
	form.Set("name", "Road trip")
	form["songId"] = all[:5]
	resp, err := http.PostForm(ts.srv.URL+"/rest/createPlaylist", form)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	buf := make([]byte, 1<<16)
	for {
		n, err := resp.Body.Read(buf)
		b.WriteString(string(buf[:n]))
		if err != nil {
			break
		}
	}
	resp.Body.Close()
	pl := decodeAnswer(t, resp, []byte(b.String())).ok(t).obj("playlist")
	id := pl["id"].(string)
	if pl["songCount"].(float64) != 5 || pl["owner"] != testUser || !slices.Equal(songIDsOf(pl["entry"].([]any)), all[:5]) {
		t.Fatalf("created: %v", pl)
	}
	// Ban the second song: the playlist shows four, and removing index 1
	// removes what it shows at 1 (the third song), not the hidden one.
	var second music.Track
	for _, tr := range m.tracks {
		if tr.MD5.String() == all[1] {
			second = tr
		}
	}
	m.setBans("^" + second.Title + "$")
	ts.call(t, "updatePlaylist", url.Values{"playlistId": {id}, "songIndexToRemove": {"1"}, "songIdToAdd": {all[9]},
		"name": {"Road trip 2"}, "comment": {"for the car"}, "public": {"true"}}).ok(t)
	pl = ts.call(t, "getPlaylist", url.Values{"id": {id}}).ok(t).obj("playlist")
	want := []string{all[0], all[3], all[4], all[9]}
	if got := songIDsOf(pl["entry"].([]any)); !slices.Equal(got, want) || pl["name"] != "Road trip 2" || pl["comment"] != "for the car" || pl["public"] != true {
		t.Fatalf("updated: %v, want songs %v", pl, want)
	}
	if c := ts.call(t, "updatePlaylist", url.Values{"playlistId": {id}, "songIndexToRemove": {"4"}}).code(); c != 0 {
		t.Errorf("removing index 4 of 4 shown: code %d", c)
	}
	ts.call(t, "star", url.Values{"id": {all[0]}, "albumId": {albumID("Artist 003", "Album 0003")}, "artistId": {artistID("Artist 004")}}).ok(t)
	ts.call(t, "scrobble", url.Values{"id": {all[3]}}).ok(t)
	other := ts.call(t, "createPlaylist", url.Values{"name": {"Empty"}}).ok(t).obj("playlist")["id"].(string)
	ts.call(t, "deletePlaylist", url.Values{"id": {other}}).ok(t)

	ts.close()
	ts.open(t, m)
	m.setBans()
	if got := songIDsOf(ts.call(t, "search3", url.Values{"query": {""}, "songCount": {"1000"}}).ok(t).list("searchResult3", "song")); !slices.Equal(got, all) {
		t.Error("song ids changed across the restart")
	}
	created := func(l []any) (out []string) {
		for _, al := range l {
			out = append(out, fmt.Sprint(al.(map[string]any)["id"], al.(map[string]any)["created"]))
		}
		return out
	}
	if again := ts.call(t, "getAlbumList2", url.Values{"type": {"newest"}, "size": {"500"}}).ok(t).list("albumList2", "album"); !slices.Equal(created(again), created(first)) {
		t.Error("albums or their created times changed across the restart")
	}
	pls := ts.call(t, "getPlaylists", nil).ok(t).list("playlists", "playlist")
	if len(pls) != 1 || pls[0].(map[string]any)["id"] != id || pls[0].(map[string]any)["songCount"].(float64) != 5 {
		t.Fatalf("playlists after the restart: %v", pls)
	}
	if got := songIDsOf(ts.call(t, "getPlaylist", url.Values{"id": {id}}).ok(t).obj("playlist")["entry"].([]any)); !slices.Equal(got, []string{all[0], all[1], all[3], all[4], all[9]}) {
		t.Errorf("playlist after the restart, the ban lifted: %v", got)
	}
	st := ts.call(t, "getStarred2", nil).ok(t).obj("starred2")
	if len(st["song"].([]any)) != 1 || len(st["album"].([]any)) != 1 || len(st["artist"].([]any)) != 1 {
		t.Errorf("stars after the restart: %v", st)
	}
	if s := ts.call(t, "getSong", url.Values{"id": {all[3]}}).ok(t).obj("song"); s["playCount"].(float64) != 1 {
		t.Errorf("plays after the restart: %v", s)
	}
	ts.call(t, "unstar", url.Values{"id": {all[0]}, "albumId": {albumID("Artist 003", "Album 0003")}, "artistId": {artistID("Artist 004")}}).ok(t)
	st = ts.call(t, "getStarred2", nil).ok(t).obj("starred2")
	if len(st["song"].([]any))+len(st["album"].([]any))+len(st["artist"].([]any)) != 0 {
		t.Errorf("after unstar: %v", st)
	}
}

// TestNowPlaying: a scrobble with submission=false is what the app
// plays now: getNowPlaying lists it, the web UI's subscription gets the
// list, and a song scrobbled played counts without showing there.
func TestNowPlaying(t *testing.T) {
	testutil.CheckGoroutines(t)
	m := newFakeMusic()
	genLibrary(m, 50, 5)
	ts := newTestService(t, m)
	sub := ts.SubscribeNowPlaying()
	defer sub.Close()
	ids := songIDsOf(ts.call(t, "search3", url.Values{"query": {""}}).ok(t).list("searchResult3", "song"))
	ts.call(t, "scrobble", url.Values{"id": {ids[2]}, "submission": {"false"}, "c": {"DSub"}}).ok(t)
	select {
	case l := <-sub.C():
		if len(l) != 1 || l[0].ID != ids[2] || l[0].Player != "DSub" || l[0].User != testUser || l[0].Title == "" {
			t.Fatalf("now playing event: %+v", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no now-playing event")
	}
	e := ts.call(t, "getNowPlaying", nil).ok(t).list("nowPlaying", "entry")
	if len(e) != 1 || e[0].(map[string]any)["id"] != ids[2] || e[0].(map[string]any)["playerName"] != "DSub" || e[0].(map[string]any)["username"] != testUser {
		t.Fatalf("getNowPlaying: %v", e)
	}
	// The same player's next song replaces its entry; another player
	// has its own.
	ts.call(t, "scrobble", url.Values{"id": {ids[3]}, "submission": {"false"}, "c": {"DSub"}}).ok(t)
	ts.call(t, "scrobble", url.Values{"id": {ids[4]}, "submission": {"false"}, "c": {"Feishin"}}).ok(t)
	ts.call(t, "scrobble", url.Values{"id": {ids[5]}}).ok(t)
	np, _ := ts.NowPlaying(context.Background())
	var got []string
	for _, n := range np {
		got = append(got, n.Player+" "+n.ID)
	}
	slices.Sort(got)
	if want := []string{"DSub " + ids[3], "Feishin " + ids[4]}; !slices.Equal(got, want) {
		t.Errorf("now playing: %v, want %v", got, want)
	}
	// Entries end with their song.
	if nowPlayingLive(NowPlaying{Since: time.Now().Add(-5 * time.Minute), Duration: 200}, time.Now()) {
		t.Error("a 200 s song started 5 minutes ago still shows")
	}
	if !nowPlayingLive(NowPlaying{Since: time.Now().Add(-3 * time.Minute), Duration: 200}, time.Now()) {
		t.Error("a 200 s song started 3 minutes ago does not show")
	}
	// A time in the future (a wrong clock, or an app that wants its
	// entry shown for ever) is taken as now.
	future := strconv.FormatInt(time.Now().Add(100*365*24*time.Hour).UnixMilli(), 10)
	ts.call(t, "scrobble", url.Values{"id": {ids[6]}, "submission": {"false"}, "c": {"Clock"}, "time": {future}}).ok(t)
	ts.call(t, "scrobble", url.Values{"id": {ids[6]}, "time": {future}}).ok(t)
	for _, n := range ts.store.nowPlaying(time.Now().Add(2 * time.Hour)) {
		t.Errorf("two hours on, still playing: %+v", n)
	}
	if last := ts.store.playsOf(ids[6]).Last; last.After(time.Now()) {
		t.Errorf("played last at %v, in the future", last)
	}
}

// TestLimits: what a client can make the node keep is bounded.
func TestLimits(t *testing.T) {
	testutil.CheckGoroutines(t)
	m := newFakeMusic()
	genLibrary(m, 20, 2)
	ts := newTestService(t, m)
	id := songIDsOf(ts.call(t, "search3", url.Values{"query": {""}}).ok(t).list("searchResult3", "song"))[0]
	for i := range maxPlaylists {
		if _, err := ts.store.createPlaylist(storedPlaylist{Name: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if c := ts.call(t, "createPlaylist", url.Values{"name": {"one more"}}).code(); c != 0 {
		t.Errorf("playlist %d: code %d", maxPlaylists+1, c)
	}
	post := func(method string, form url.Values) answer {
		t.Helper()
		for k, v := range auth("abcdef") {
			form[k] = v
		}
		resp, err := http.PostForm(ts.srv.URL+"/rest/"+method+"?f=json", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return decodeAnswer(t, resp, b)
	}
	songs := func(n int) []string { return slices.Repeat([]string{id}, n) }
	post("createPlaylist", url.Values{"playlistId": {"1"}, "songId": songs(maxPlaylistSongs - 100)}).ok(t)
	if a := post("updatePlaylist", url.Values{"playlistId": {"1"}, "songIdToAdd": songs(101)}); a.code() != 0 || !strings.Contains(fmt.Sprint(a), "at most") {
		t.Errorf("%d songs in a playlist: %v", maxPlaylistSongs+1, a)
	}
	if a := post("createPlaylist", url.Values{"playlistId": {"1"}, "songId": songs(20_000)}); a.code() != 0 {
		t.Errorf("20,000 songIds: %v", a)
	}
	if n := ts.call(t, "getPlaylist", url.Values{"id": {"1"}}).ok(t).obj("playlist")["songCount"].(float64); n != maxPlaylistSongs-100 {
		t.Errorf("after refused changes the playlist has %v songs, want %d", n, maxPlaylistSongs-100)
	}
}
