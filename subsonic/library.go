package subsonic

import (
	"cmp"
	"context"
	"crypto/md5"
	"encoding/hex"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/catnest/catnest/music"
	"github.com/catnest/catnest/shards"
)

// Names shown for tracks without the tag.
const (
	unknownArtist = "[Unknown Artist]"
	unknownAlbum  = "[Unknown Album]"
)

// ignoredArticles are left out when artists are sorted and indexed.
const ignoredArticles = "The El La Los Las Le Les"

// song is a track of the index.
type libSong struct {
	music.Track
	id       string // the MD5 in hex
	album    *libAlbum
	artistID string
	search   string // lower-case title, artist and album, for search3
}

// album is the songs of one artist with one album name.
type libAlbum struct {
	id, name, artist, artistID string
	year                       int
	songs                      []*libSong // by track number, then title
	duration                   int
	cover                      string // id of a song with a cover; "" if none
	created                    time.Time
	search                     string // lower-case name and artist
}

// artist is the albums of one (normalised) artist name.
type libArtist struct {
	id, name string
	albums   []*libAlbum // by year, then name
	sortKey  string      // lower case, without a leading article
	search   string
}

// library is the index the API answers from: made from one track list
// of the music service, never changed after.
type library struct {
	songs   map[string]*libSong
	albums  map[string]*libAlbum
	artists map[string]*libArtist
	// Sorted lists: songs as the music service orders them (artist,
	// album, track, title), albums by name, artists by sortKey.
	songList   []*libSong
	albumList  []*libAlbum
	artistList []*libArtist
	built      time.Time
}

// normalise folds a name for an id: lower case, spaces collapsed, so
// that "The  Beatles" and "the beatles" are one artist.
func normalise(s string) string {
	return strings.Join(strings.Fields(strings.ToLower(s)), " ")
}

// nameID is the id of a name: prefix and the MD5 of its normalised parts.
func nameID(prefix string, parts ...string) string {
	h := md5.New()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{0})
		}
		h.Write([]byte(normalise(p)))
	}
	return prefix + hex.EncodeToString(h.Sum(nil))
}

func artistID(name string) string        { return nameID("ar-", name) }
func albumID(artist, name string) string { return nameID("al-", artist, name) }

// sortKey orders artist names as apps show them: case folded, without
// a leading article ("The Beatles" under B).
func sortKey(name string) string {
	k := strings.ToLower(strings.TrimSpace(name))
	for _, a := range strings.Fields(ignoredArticles) {
		if rest, ok := strings.CutPrefix(k, strings.ToLower(a)+" "); ok {
			return strings.TrimSpace(rest)
		}
	}
	return k
}

// indexName is the index an artist is listed under: its sort key's
// first letter in upper case, or "#".
func indexName(key string) string {
	r, _ := utf8.DecodeRuneInString(key)
	if !unicode.IsLetter(r) {
		return "#"
	}
	return string(unicode.ToUpper(r))
}

// buildLibrary indexes a track list (banned tracks already left out).
// created gives an album's first-seen time.
func buildLibrary(tracks []music.Track, created func(albumID string) time.Time) *library {
	lib := &library{
		songs:   make(map[string]*libSong, len(tracks)),
		albums:  make(map[string]*libAlbum),
		artists: make(map[string]*libArtist),
		built:   time.Now(),
	}
	lib.songList = make([]*libSong, 0, len(tracks))
	for _, t := range tracks {
		if t.Banned {
			continue
		}
		if t.Artist = strings.TrimSpace(t.Artist); t.Artist == "" {
			t.Artist = unknownArtist
		}
		if t.Album = strings.TrimSpace(t.Album); t.Album == "" {
			t.Album = unknownAlbum
		}
		if strings.TrimSpace(t.Title) == "" {
			t.Title = t.Name
		}
		s := &libSong{Track: t, id: t.MD5.String()}
		if _, dup := lib.songs[s.id]; dup {
			continue
		}
		arID := artistID(t.Artist)
		ar := lib.artists[arID]
		if ar == nil {
			ar = &libArtist{id: arID, name: t.Artist, sortKey: sortKey(t.Artist), search: strings.ToLower(t.Artist)}
			lib.artists[arID] = ar
			lib.artistList = append(lib.artistList, ar)
		}
		alID := albumID(t.Artist, t.Album)
		al := lib.albums[alID]
		if al == nil {
			al = &libAlbum{id: alID, name: t.Album, artist: ar.name, artistID: arID,
				search: strings.ToLower(t.Album + "\x00" + ar.name)}
			if created != nil {
				al.created = created(alID)
			}
			lib.albums[alID] = al
			lib.albumList = append(lib.albumList, al)
			ar.albums = append(ar.albums, al)
		}
		s.album, s.artistID = al, arID
		s.search = strings.ToLower(t.Title + "\x00" + t.Artist + "\x00" + t.Album + "\x00" + t.Name)
		al.songs = append(al.songs, s)
		al.duration += int(t.Duration + 0.5)
		al.year = max(al.year, t.Year)
		if al.cover == "" && t.HasCover {
			al.cover = s.id
		}
		lib.songs[s.id] = s
		lib.songList = append(lib.songList, s)
	}
	for _, al := range lib.albumList {
		slices.SortFunc(al.songs, func(a, b *libSong) int {
			return cmp.Or(cmp.Compare(a.Track.Track, b.Track.Track), cmp.Compare(a.Title, b.Title), cmp.Compare(a.id, b.id))
		})
	}
	for _, ar := range lib.artistList {
		slices.SortFunc(ar.albums, func(a, b *libAlbum) int {
			return cmp.Or(cmp.Compare(a.year, b.year), cmp.Compare(strings.ToLower(a.name), strings.ToLower(b.name)), cmp.Compare(a.id, b.id))
		})
	}
	slices.SortFunc(lib.albumList, func(a, b *libAlbum) int {
		return cmp.Or(cmp.Compare(strings.ToLower(a.name), strings.ToLower(b.name)), cmp.Compare(a.id, b.id))
	})
	slices.SortFunc(lib.artistList, func(a, b *libArtist) int {
		return cmp.Or(cmp.Compare(a.sortKey, b.sortKey), cmp.Compare(a.id, b.id))
	})
	return lib
}

// cover is an artist's cover art: its first album's with one.
func (a *libArtist) cover() string {
	for _, al := range a.albums {
		if al.cover != "" {
			return al.id
		}
	}
	return ""
}

// coverTrack resolves a coverArt id (a song's, an album's or an
// artist's) to the track whose cover it shows.
func (l *library) coverTrack(id string) (shards.MD5, bool) {
	switch {
	case strings.HasPrefix(id, "al-"):
		if al := l.albums[id]; al != nil && al.cover != "" {
			return l.songs[al.cover].MD5, true
		}
	case strings.HasPrefix(id, "ar-"):
		if ar := l.artists[id]; ar != nil {
			if c := ar.cover(); c != "" {
				return l.songs[l.albums[c].cover].MD5, true
			}
		}
	default:
		if s := l.songs[strings.ToLower(id)]; s != nil {
			return s.MD5, true
		}
	}
	return shards.MD5{}, false
}

// library returns the index, rebuilt when the music service said the
// library changed since it was built. The events are read here, at
// request time, so that what a request sees is never older than the
// last change published before it began: a ban set a moment ago hides
// its tracks from the next request.
func (s *Service) library(ctx context.Context) (*library, error) {
	s.libMu.Lock()
	defer s.libMu.Unlock()
	dirty := s.lib == nil
	for drained := false; !drained; {
		select {
		case ev := <-s.musicSub.C():
			dirty = dirty || ev.Library
		default:
			drained = true
		}
	}
	if s.musicSub.Missed() > 0 {
		dirty = true
	}
	if !dirty {
		return s.lib, nil
	}
	tracks, err := s.music.Tracks(ctx, false)
	if err != nil {
		// A failed read leaves the old index, and the next request
		// tries again.
		s.lib = nil
		return nil, err
	}
	lib := buildLibrary(tracks, s.store.albumCreated)
	if err := s.store.flushCreated(); err != nil {
		s.log.Warn("subsonic: keep albums' first-seen times", "err", err)
	}
	s.lib = lib
	return lib, nil
}
