package subsonic

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"image"
	"slices"
	"testing"

	"github.com/catnest/catnest/internal/subsonictest"
	"github.com/catnest/catnest/internal/testutil"
)

// TestInteropSubsonicAPI drives home's API with npm subsonic-api, the
// client library apps are built on: log in with a salted token and by
// POST, browse every artist, album and song, search, seek in and play
// away's track (through the shards reader), a scaled cover, lyrics,
// playlists, stars, now playing, and the errors it must understand.
func TestInteropSubsonicAPI(t *testing.T) {
	testutil.CheckGoroutines(t)
	ml := newMeshLibrary(t)
	from, to := 1000, 40_999
	plan := map[string]any{"remote": ml.remote.String(), "rangeFrom": from, "rangeTo": to, "search": "mesh tunes",
		"lyricsArtist": "Zoë", "lyricsTitle": "Warm Nest"}
	type status struct {
		Status       int    `json:"status"`
		Type         string `json:"type"`
		ContentRange string `json:"contentRange"`
		Length       int    `json:"length"`
		MD5          string `json:"md5"`
	}
	type apiErr struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	var got struct {
		Ping, PingPost string
		WrongPassword  *apiErr
		License        struct{ Valid bool }
		Extensions     []string
		Folders        int
		Artists        []string
		Songs          []struct {
			ID, Title, Artist, Album, AlbumID, CoverArt, Suffix string
			Duration                                            int
			Size                                                int64
		}
		Indexes, Newest, Random int
		Search, SearchPost      []string
		Song                    string
		Range, Stream, Download status
		Cover                   struct {
			Status       int
			Type, Base64 string
		}
		LyricsBySongID []struct {
			Synced bool
			Line   []struct {
				Start *int64
				Value string
			}
		} `json:"lyricsBySongId"`
		Lyrics          struct{ Artist, Title, Value string }
		PlaylistCreated struct {
			ID        string
			SongCount int
		}
		Playlist struct {
			Name, Comment string
			Entries       []string
		}
		Playlists                          []string
		Deleted, Star, Unstar, Scrobble    string
		PlaylistsAfter, StarredAfter, Huge int
		Starred                            []string
		NowPlaying                         []struct{ ID, User, Player string }
		UnknownMethod, NotFound, Missing   *apiErr
	}
	subsonictest.Drive(t, ml.api.srv.URL, testUser, testPass, plan, &got)

	if got.Ping != "ok" || got.PingPost != "ok" || !got.License.Valid || got.Folders != 1 ||
		!slices.Contains(got.Extensions, "songLyrics") || !slices.Contains(got.Extensions, "formPost") {
		t.Errorf("ping %q, by POST %q, license %v, folders %d, extensions %q", got.Ping, got.PingPost, got.License, got.Folders, got.Extensions)
	}
	if got.WrongPassword == nil || got.WrongPassword.Code != 40 {
		t.Errorf("wrong password: %+v", got.WrongPassword)
	}
	if len(got.Songs) != 5 || got.Indexes != len(got.Artists) || slices.Contains(got.Artists, "Walker") || got.Newest != 5 || got.Random != 3 {
		t.Errorf("browsed %d songs by %q (indexes %d), %d newest albums, %d random", len(got.Songs), got.Artists, got.Indexes, got.Newest, got.Random)
	}
	for _, so := range got.Songs {
		if so.ID == ml.banned.String() || so.Artist == "Walker" {
			t.Errorf("the banned track browsed: %+v", so)
		}
	}
	slices.Sort(got.Search)
	if want := []string{"Flac Song", "Warm Nest", "猫窝之歌"}; !slices.Equal(got.Search, want) || len(got.SearchPost) != 3 {
		t.Errorf("search3 %q: %q (by POST %q), want %q", plan["search"], got.Search, got.SearchPost, want)
	}
	if got.Song != "Wave Tone" {
		t.Errorf("getSong of away's track: %q", got.Song)
	}
	sum := func(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }
	if r := got.Range; r.Status != 206 || r.Length != to-from+1 || r.MD5 != sum(ml.remoteBytes[from:to+1]) || r.ContentRange == "" {
		t.Errorf("seek in away's track: %+v", r)
	}
	if s := got.Stream; s.Status != 200 || s.MD5 != ml.remote.String() || s.Type != "audio/wav" {
		t.Errorf("stream of away's track: %+v", s)
	}
	if d := got.Download; d.Status != 200 || d.MD5 != ml.remote.String() {
		t.Errorf("download of away's track: %+v", d)
	}
	img, _ := base64.StdEncoding.DecodeString(got.Cover.Base64)
	if cfg, _, err := image.DecodeConfig(bytes.NewReader(img)); err != nil || max(cfg.Width, cfg.Height) != 64 || got.Cover.Type != "image/jpeg" {
		t.Errorf("cover at size 64: %v %dx%d %q", err, cfg.Width, cfg.Height, got.Cover.Type)
	}
	if l := got.LyricsBySongID; len(l) != 1 || !l[0].Synced || len(l[0].Line) < 3 || l[0].Line[0].Start == nil || l[0].Line[0].Value == "" {
		t.Errorf("structured lyrics: %+v", l)
	}
	if got.Lyrics.Title != "Warm Nest" || got.Lyrics.Value == "" {
		t.Errorf("getLyrics: %+v", got.Lyrics)
	}
	ids := make([]string, len(got.Songs))
	for i, so := range got.Songs {
		ids[i] = so.ID
	}
	if got.PlaylistCreated.SongCount != 3 || got.Playlist.Name != "Interop" || got.Playlist.Comment != "by npm" ||
		!slices.Equal(got.Playlist.Entries, []string{ids[1], ids[2], ids[3]}) || !slices.Equal(got.Playlists, []string{"Interop"}) ||
		got.Deleted != "ok" || got.PlaylistsAfter != 0 {
		t.Errorf("playlists: created %+v, then %+v, listed %q, deleted %q, %d left", got.PlaylistCreated, got.Playlist, got.Playlists, got.Deleted, got.PlaylistsAfter)
	}
	if got.Star != "ok" || !slices.Equal(got.Starred, []string{ml.remote.String()}) || got.Unstar != "ok" || got.StarredAfter != 0 {
		t.Errorf("stars: %q %q %q %d", got.Star, got.Starred, got.Unstar, got.StarredAfter)
	}
	if got.Scrobble != "ok" || len(got.NowPlaying) != 1 || got.NowPlaying[0].ID != ml.remote.String() || got.NowPlaying[0].User != testUser || got.NowPlaying[0].Player != "subsonic-api" {
		t.Errorf("now playing: %q %+v", got.Scrobble, got.NowPlaying)
	}
	if e := got.UnknownMethod; e == nil || e.Code != 0 || e.Message == "" {
		t.Errorf("unknown method: %+v", e)
	}
	if e := got.NotFound; e == nil || e.Code != 70 {
		t.Errorf("unknown song: %+v", e)
	}
	if e := got.Missing; e == nil || e.Code != 10 {
		t.Errorf("getSong without id: %+v", e)
	}
	if got.Huge != 5 {
		t.Errorf("search3 with a huge songCount: %d songs", got.Huge)
	}
}
