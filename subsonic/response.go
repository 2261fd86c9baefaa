package subsonic

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"net/http"
	"time"
)

// Version is the Subsonic API version answered.
const Version = "1.16.1"

// xmlns is the Subsonic XML namespace.
const xmlns = "http://subsonic.org/restapi"

// response is the subsonic-response element: the status and, on success,
// one payload (the field that the method fills).
type response struct {
	XMLName       xml.Name `xml:"subsonic-response" json:"-"`
	Xmlns         string   `xml:"xmlns,attr" json:"-"`
	Status        string   `xml:"status,attr" json:"status"`
	Version       string   `xml:"version,attr" json:"version"`
	Type          string   `xml:"type,attr" json:"type"`
	ServerVersion string   `xml:"serverVersion,attr" json:"serverVersion"`
	OpenSubsonic  bool     `xml:"openSubsonic,attr" json:"openSubsonic"`

	Error                  *errorBody         `xml:"error,omitempty" json:"error,omitempty"`
	License                *license           `xml:"license,omitempty" json:"license,omitempty"`
	OpenSubsonicExtensions *[]extension       `xml:"openSubsonicExtensions,omitempty" json:"openSubsonicExtensions,omitempty"`
	MusicFolders           *musicFolders      `xml:"musicFolders,omitempty" json:"musicFolders,omitempty"`
	Indexes                *indexes           `xml:"indexes,omitempty" json:"indexes,omitempty"`
	Directory              *directory         `xml:"directory,omitempty" json:"directory,omitempty"`
	Genres                 *genres            `xml:"genres,omitempty" json:"genres,omitempty"`
	Artists                *artistsID3        `xml:"artists,omitempty" json:"artists,omitempty"`
	Artist                 *artistWithAlbums  `xml:"artist,omitempty" json:"artist,omitempty"`
	Album                  *albumWithSongs    `xml:"album,omitempty" json:"album,omitempty"`
	Song                   *child             `xml:"song,omitempty" json:"song,omitempty"`
	AlbumList              *albumList         `xml:"albumList,omitempty" json:"albumList,omitempty"`
	AlbumList2             *albumList2        `xml:"albumList2,omitempty" json:"albumList2,omitempty"`
	RandomSongs            *songs             `xml:"randomSongs,omitempty" json:"randomSongs,omitempty"`
	SongsByGenre           *songs             `xml:"songsByGenre,omitempty" json:"songsByGenre,omitempty"`
	SearchResult2          *searchResult2     `xml:"searchResult2,omitempty" json:"searchResult2,omitempty"`
	SearchResult3          *searchResult3     `xml:"searchResult3,omitempty" json:"searchResult3,omitempty"`
	Starred                *starred           `xml:"starred,omitempty" json:"starred,omitempty"`
	Starred2               *starred2          `xml:"starred2,omitempty" json:"starred2,omitempty"`
	Playlists              *playlists         `xml:"playlists,omitempty" json:"playlists,omitempty"`
	Playlist               *playlistWithSongs `xml:"playlist,omitempty" json:"playlist,omitempty"`
	Lyrics                 *lyrics            `xml:"lyrics,omitempty" json:"lyrics,omitempty"`
	LyricsList             *lyricsList        `xml:"lyricsList,omitempty" json:"lyricsList,omitempty"`
	NowPlaying             *nowPlaying        `xml:"nowPlaying,omitempty" json:"nowPlaying,omitempty"`
	User                   *user              `xml:"user,omitempty" json:"user,omitempty"`
	ScanStatus             *scanStatus        `xml:"scanStatus,omitempty" json:"scanStatus,omitempty"`
	ArtistInfo2            *artistInfo        `xml:"artistInfo2,omitempty" json:"artistInfo2,omitempty"`
	AlbumInfo              *albumInfo         `xml:"albumInfo,omitempty" json:"albumInfo,omitempty"`
	SimilarSongs2          *songs             `xml:"similarSongs2,omitempty" json:"similarSongs2,omitempty"`
	TopSongs               *songs             `xml:"topSongs,omitempty" json:"topSongs,omitempty"`
	Bookmarks              *struct{}          `xml:"bookmarks,omitempty" json:"bookmarks,omitempty"`
	InternetRadioStations  *struct{}          `xml:"internetRadioStations,omitempty" json:"internetRadioStations,omitempty"`
}

type errorBody struct {
	Code    int    `xml:"code,attr" json:"code"`
	Message string `xml:"message,attr" json:"message"`
}

type license struct {
	Valid bool `xml:"valid,attr" json:"valid"`
}

type extension struct {
	Name     string `xml:"name,attr" json:"name"`
	Versions []int  `xml:"versions" json:"versions"`
}

type musicFolder struct {
	ID   int    `xml:"id,attr" json:"id"`
	Name string `xml:"name,attr" json:"name"`
}

type musicFolders struct {
	Folders []musicFolder `xml:"musicFolder" json:"musicFolder"`
}

type artistRef struct {
	ID             string `xml:"id,attr" json:"id"`
	Name           string `xml:"name,attr" json:"name"`
	CoverArt       string `xml:"coverArt,attr,omitempty" json:"coverArt,omitempty"`
	AlbumCount     int    `xml:"albumCount,attr" json:"albumCount"`
	Starred        string `xml:"starred,attr,omitempty" json:"starred,omitempty"`
	UserRating     int    `xml:"userRating,attr,omitempty" json:"userRating,omitempty"`
	ArtistImageURL string `xml:"artistImageUrl,attr,omitempty" json:"artistImageUrl,omitempty"`
}

type index struct {
	Name    string      `xml:"name,attr" json:"name"`
	Artists []artistRef `xml:"artist" json:"artist"`
}

type indexes struct {
	LastModified    int64   `xml:"lastModified,attr" json:"lastModified"`
	IgnoredArticles string  `xml:"ignoredArticles,attr" json:"ignoredArticles"`
	Index           []index `xml:"index" json:"index"`
}

type artistsID3 struct {
	IgnoredArticles string  `xml:"ignoredArticles,attr" json:"ignoredArticles"`
	Index           []index `xml:"index" json:"index"`
}

type directory struct {
	ID       string  `xml:"id,attr" json:"id"`
	Parent   string  `xml:"parent,attr,omitempty" json:"parent,omitempty"`
	Name     string  `xml:"name,attr" json:"name"`
	Starred  string  `xml:"starred,attr,omitempty" json:"starred,omitempty"`
	Children []child `xml:"child" json:"child"`
}

type genres struct {
	Genres []struct{} `xml:"genre" json:"genre"`
}

// album is AlbumID3 (and, with IsDir and Title, a directory child).
type album struct {
	ID         string `xml:"id,attr" json:"id"`
	Parent     string `xml:"parent,attr,omitempty" json:"parent,omitempty"`
	IsDir      bool   `xml:"isDir,attr,omitempty" json:"isDir,omitempty"`
	Title      string `xml:"title,attr,omitempty" json:"title,omitempty"`
	Name       string `xml:"name,attr" json:"name"`
	Album      string `xml:"album,attr,omitempty" json:"album,omitempty"`
	Artist     string `xml:"artist,attr" json:"artist"`
	ArtistID   string `xml:"artistId,attr" json:"artistId"`
	CoverArt   string `xml:"coverArt,attr,omitempty" json:"coverArt,omitempty"`
	SongCount  int    `xml:"songCount,attr" json:"songCount"`
	Duration   int    `xml:"duration,attr" json:"duration"`
	PlayCount  int64  `xml:"playCount,attr,omitempty" json:"playCount,omitempty"`
	Played     string `xml:"played,attr,omitempty" json:"played,omitempty"`
	Created    string `xml:"created,attr" json:"created"`
	Starred    string `xml:"starred,attr,omitempty" json:"starred,omitempty"`
	UserRating int    `xml:"userRating,attr,omitempty" json:"userRating,omitempty"`
	Year       int    `xml:"year,attr,omitempty" json:"year,omitempty"`
	// OpenSubsonic
	DisplayArtist string `xml:"displayArtist,attr,omitempty" json:"displayArtist,omitempty"`
}

type artistWithAlbums struct {
	artistRef
	Albums []album `xml:"album" json:"album"`
}

type albumWithSongs struct {
	album
	Songs []child `xml:"song" json:"song"`
}

// child is a song (Child), or in a directory a song or an album.
type child struct {
	ID          string `xml:"id,attr" json:"id"`
	Parent      string `xml:"parent,attr,omitempty" json:"parent,omitempty"`
	IsDir       bool   `xml:"isDir,attr" json:"isDir"`
	Title       string `xml:"title,attr" json:"title"`
	Album       string `xml:"album,attr,omitempty" json:"album,omitempty"`
	Artist      string `xml:"artist,attr,omitempty" json:"artist,omitempty"`
	Track       int    `xml:"track,attr,omitempty" json:"track,omitempty"`
	Year        int    `xml:"year,attr,omitempty" json:"year,omitempty"`
	CoverArt    string `xml:"coverArt,attr,omitempty" json:"coverArt,omitempty"`
	Size        int64  `xml:"size,attr,omitempty" json:"size,omitempty"`
	ContentType string `xml:"contentType,attr,omitempty" json:"contentType,omitempty"`
	Suffix      string `xml:"suffix,attr,omitempty" json:"suffix,omitempty"`
	Duration    int    `xml:"duration,attr,omitempty" json:"duration,omitempty"`
	BitRate     int    `xml:"bitRate,attr,omitempty" json:"bitRate,omitempty"`
	Path        string `xml:"path,attr,omitempty" json:"path,omitempty"`
	PlayCount   int64  `xml:"playCount,attr,omitempty" json:"playCount,omitempty"`
	Played      string `xml:"played,attr,omitempty" json:"played,omitempty"`
	Created     string `xml:"created,attr,omitempty" json:"created,omitempty"`
	Starred     string `xml:"starred,attr,omitempty" json:"starred,omitempty"`
	UserRating  int    `xml:"userRating,attr,omitempty" json:"userRating,omitempty"`
	AlbumID     string `xml:"albumId,attr,omitempty" json:"albumId,omitempty"`
	ArtistID    string `xml:"artistId,attr,omitempty" json:"artistId,omitempty"`
	Type        string `xml:"type,attr,omitempty" json:"type,omitempty"`
	IsVideo     bool   `xml:"isVideo,attr" json:"isVideo"`
	// OpenSubsonic
	MediaType     string `xml:"mediaType,attr,omitempty" json:"mediaType,omitempty"`
	SamplingRate  int    `xml:"samplingRate,attr,omitempty" json:"samplingRate,omitempty"`
	ChannelCount  int    `xml:"channelCount,attr,omitempty" json:"channelCount,omitempty"`
	DisplayArtist string `xml:"displayArtist,attr,omitempty" json:"displayArtist,omitempty"`
	// getNowPlaying entries
	Username   string `xml:"username,attr,omitempty" json:"username,omitempty"`
	MinutesAgo *int   `xml:"minutesAgo,attr,omitempty" json:"minutesAgo,omitempty"`
	PlayerID   *int   `xml:"playerId,attr,omitempty" json:"playerId,omitempty"`
	PlayerName string `xml:"playerName,attr,omitempty" json:"playerName,omitempty"`
}

type albumList struct {
	Albums []album `xml:"album" json:"album"`
}

type albumList2 struct {
	Albums []album `xml:"album" json:"album"`
}

type songs struct {
	Songs []child `xml:"song" json:"song"`
}

type searchResult2 struct {
	Artists []artistRef `xml:"artist" json:"artist"`
	Albums  []album     `xml:"album" json:"album"`
	Songs   []child     `xml:"song" json:"song"`
}

type searchResult3 = searchResult2

type starred = searchResult2

type starred2 = searchResult2

type playlist struct {
	ID        string `xml:"id,attr" json:"id"`
	Name      string `xml:"name,attr" json:"name"`
	Comment   string `xml:"comment,attr,omitempty" json:"comment,omitempty"`
	Owner     string `xml:"owner,attr" json:"owner"`
	Public    bool   `xml:"public,attr" json:"public"`
	SongCount int    `xml:"songCount,attr" json:"songCount"`
	Duration  int    `xml:"duration,attr" json:"duration"`
	Created   string `xml:"created,attr" json:"created"`
	Changed   string `xml:"changed,attr" json:"changed"`
	CoverArt  string `xml:"coverArt,attr,omitempty" json:"coverArt,omitempty"`
}

type playlists struct {
	Playlists []playlist `xml:"playlist" json:"playlist"`
}

type playlistWithSongs struct {
	playlist
	Entries []child `xml:"entry" json:"entry"`
}

type lyrics struct {
	Artist string `xml:"artist,attr,omitempty" json:"artist,omitempty"`
	Title  string `xml:"title,attr,omitempty" json:"title,omitempty"`
	Value  string `xml:",chardata" json:"value"`
}

type lyricLine struct {
	Start *int64 `xml:"start,attr,omitempty" json:"start,omitempty"`
	Value string `xml:",chardata" json:"value"`
}

type structuredLyrics struct {
	DisplayArtist string      `xml:"displayArtist,attr,omitempty" json:"displayArtist,omitempty"`
	DisplayTitle  string      `xml:"displayTitle,attr,omitempty" json:"displayTitle,omitempty"`
	Lang          string      `xml:"lang,attr" json:"lang"`
	Offset        int64       `xml:"offset,attr" json:"offset"`
	Synced        bool        `xml:"synced,attr" json:"synced"`
	Lines         []lyricLine `xml:"line" json:"line"`
}

type lyricsList struct {
	StructuredLyrics []structuredLyrics `xml:"structuredLyrics" json:"structuredLyrics"`
}

type nowPlaying struct {
	Entries []child `xml:"entry" json:"entry"`
}

type user struct {
	Username          string `xml:"username,attr" json:"username"`
	ScrobblingEnabled bool   `xml:"scrobblingEnabled,attr" json:"scrobblingEnabled"`
	AdminRole         bool   `xml:"adminRole,attr" json:"adminRole"`
	SettingsRole      bool   `xml:"settingsRole,attr" json:"settingsRole"`
	DownloadRole      bool   `xml:"downloadRole,attr" json:"downloadRole"`
	UploadRole        bool   `xml:"uploadRole,attr" json:"uploadRole"`
	PlaylistRole      bool   `xml:"playlistRole,attr" json:"playlistRole"`
	CoverArtRole      bool   `xml:"coverArtRole,attr" json:"coverArtRole"`
	CommentRole       bool   `xml:"commentRole,attr" json:"commentRole"`
	PodcastRole       bool   `xml:"podcastRole,attr" json:"podcastRole"`
	StreamRole        bool   `xml:"streamRole,attr" json:"streamRole"`
	JukeboxRole       bool   `xml:"jukeboxRole,attr" json:"jukeboxRole"`
	ShareRole         bool   `xml:"shareRole,attr" json:"shareRole"`
	Folders           []int  `xml:"folder" json:"folder"`
}

type scanStatus struct {
	Scanning bool  `xml:"scanning,attr" json:"scanning"`
	Count    int64 `xml:"count,attr" json:"count"`
}

type artistInfo struct {
	Biography string `xml:"biography,omitempty" json:"biography,omitempty"`
}

type albumInfo struct {
	Notes string `xml:"notes,omitempty" json:"notes,omitempty"`
}

// stamp formats a time as the API's xsd:dateTime, in UTC.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// format is how a request wants its answer: "xml" or "json".
type format string

// write answers r: the response in XML or JSON, HTTP 200 (Subsonic
// clients read errors from the body, not from the status).
func write(w http.ResponseWriter, f format, version string, r *response) {
	r.ServerVersion = version
	r.Xmlns = xmlns
	r.Version = Version
	r.Type = "catnest"
	r.OpenSubsonic = true
	if r.Status == "" {
		r.Status = "ok"
	}
	var buf bytes.Buffer
	h := w.Header()
	var err error
	if f == "json" {
		h.Set("Content-Type", "application/json; charset=utf-8")
		err = json.NewEncoder(&buf).Encode(struct {
			R *response `json:"subsonic-response"`
		}{r})
	} else {
		h.Set("Content-Type", "text/xml; charset=utf-8")
		buf.WriteString(xml.Header)
		err = xml.NewEncoder(&buf).Encode(r)
	}
	if err != nil {
		// Only a programming error gets here: every field encodes.
		http.Error(w, "subsonic: encoding the response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(buf.Bytes())
}

// writeError answers a Subsonic error.
func writeError(w http.ResponseWriter, f format, version string, e *apiError) {
	write(w, f, version, &response{Status: "failed", Error: &errorBody{Code: e.code, Message: e.msg}})
}
