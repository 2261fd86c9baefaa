package subsonic

import (
	"cmp"
	"context"
	"math/rand/v2"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"
)

// routes is the method table, by lower-case name.
func (s *Service) routes() map[string]method {
	m := map[string]method{
		"ping":                      s.ping,
		"getLicense":                s.getLicense,
		"getOpenSubsonicExtensions": s.getExtensions,
		"getMusicFolders":           s.getMusicFolders,
		"getIndexes":                s.getIndexes,
		"getMusicDirectory":         s.getMusicDirectory,
		"getGenres":                 s.getGenres,
		"getArtists":                s.getArtists,
		"getArtist":                 s.getArtist,
		"getAlbum":                  s.getAlbum,
		"getSong":                   s.getSong,
		"getAlbumList":              s.getAlbumList,
		"getAlbumList2":             s.getAlbumList2,
		"getRandomSongs":            s.getRandomSongs,
		"getSongsByGenre":           s.getSongsByGenre,
		"search2":                   s.search2,
		"search3":                   s.search3,
		"getStarred":                s.getStarred,
		"getStarred2":               s.getStarred2,
		"star":                      s.star,
		"unstar":                    s.unstar,
		"setRating":                 s.setRating,
		"scrobble":                  s.scrobble,
		"getNowPlaying":             s.getNowPlaying,
		"getPlaylists":              s.getPlaylists,
		"getPlaylist":               s.getPlaylist,
		"createPlaylist":            s.createPlaylist,
		"updatePlaylist":            s.updatePlaylist,
		"deletePlaylist":            s.deletePlaylist,
		"stream":                    s.stream,
		"download":                  s.download,
		"getCoverArt":               s.getCoverArt,
		"getLyrics":                 s.getLyrics,
		"getLyricsBySongId":         s.getLyricsBySongID,
		"getUser":                   s.getUser,
		"getScanStatus":             s.getScanStatus,
		// Asked by apps as they open a page; catnest has nothing more
		// to say than an empty answer.
		"getArtistInfo":            empty(func(r *response) { r.ArtistInfo2 = &artistInfo{} }),
		"getArtistInfo2":           empty(func(r *response) { r.ArtistInfo2 = &artistInfo{} }),
		"getAlbumInfo":             empty(func(r *response) { r.AlbumInfo = &albumInfo{} }),
		"getAlbumInfo2":            empty(func(r *response) { r.AlbumInfo = &albumInfo{} }),
		"getSimilarSongs":          empty(func(r *response) { r.SimilarSongs2 = &songs{Songs: []child{}} }),
		"getSimilarSongs2":         empty(func(r *response) { r.SimilarSongs2 = &songs{Songs: []child{}} }),
		"getTopSongs":              empty(func(r *response) { r.TopSongs = &songs{Songs: []child{}} }),
		"getBookmarks":             empty(func(r *response) { r.Bookmarks = &struct{}{} }),
		"getInternetRadioStations": empty(func(r *response) { r.InternetRadioStations = &struct{}{} }),
	}
	out := make(map[string]method, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}

func empty(fill func(*response)) method {
	return func(context.Context, http.ResponseWriter, *http.Request, params) (*response, error) {
		r := &response{}
		fill(r)
		return r, nil
	}
}

func (s *Service) ping(context.Context, http.ResponseWriter, *http.Request, params) (*response, error) {
	return &response{}, nil
}

func (s *Service) getLicense(context.Context, http.ResponseWriter, *http.Request, params) (*response, error) {
	return &response{License: &license{Valid: true}}, nil
}

func (s *Service) getExtensions(context.Context, http.ResponseWriter, *http.Request, params) (*response, error) {
	ext := []extension{{Name: "formPost", Versions: []int{1}}, {Name: "songLyrics", Versions: []int{1}}}
	return &response{OpenSubsonicExtensions: &ext}, nil
}

// folderID is the one music folder: the mesh-wide library.
const folderID = 1

func (s *Service) getMusicFolders(context.Context, http.ResponseWriter, *http.Request, params) (*response, error) {
	return &response{MusicFolders: &musicFolders{Folders: []musicFolder{{ID: folderID, Name: "catnest mesh"}}}}, nil
}

func (s *Service) getGenres(context.Context, http.ResponseWriter, *http.Request, params) (*response, error) {
	return &response{Genres: &genres{Genres: []struct{}{}}}, nil
}

func (s *Service) getUser(_ context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	u, _ := s.store.credentials()
	if name := p.str("username"); name != "" && name != u {
		return nil, notFound("user", name)
	}
	return &response{User: &user{Username: u, ScrobblingEnabled: true, AdminRole: true, SettingsRole: true,
		DownloadRole: true, PlaylistRole: true, CoverArtRole: true, StreamRole: true, Folders: []int{folderID}}}, nil
}

func (s *Service) getScanStatus(ctx context.Context, _ http.ResponseWriter, _ *http.Request, _ params) (*response, error) {
	lib, err := s.library(ctx)
	if err != nil {
		return nil, err
	}
	return &response{ScanStatus: &scanStatus{Count: int64(len(lib.songList))}}, nil
}

// contentTypes of the formats the music service reads.
var contentTypes = map[string]string{"mp3": "audio/mpeg", "flac": "audio/flac", "wav": "audio/wav"}

func contentType(format string) string {
	if t, ok := contentTypes[format]; ok {
		return t
	}
	return "audio/mpeg"
}

// annotated are the user's stars, ratings and plays for the ids of one
// answer.
func (s *Service) child(so *libSong) child {
	c := child{
		ID: so.id, Parent: so.album.id, Title: so.Title, Album: so.Album, Artist: so.Artist,
		Track: so.Track.Track, Year: so.Year, Size: so.Size, ContentType: contentType(so.Format),
		Suffix: so.Format, Duration: int(so.Duration + 0.5), BitRate: so.Bitrate / 1000,
		Path:    path.Join(safeSegment(so.Artist), safeSegment(so.Album), safeSegment(so.Name)),
		AlbumID: so.album.id, ArtistID: so.artistID, Type: "music", MediaType: "song",
		SamplingRate: so.SampleRate, ChannelCount: so.Channels, DisplayArtist: so.Artist,
		Created: stamp(so.album.created),
	}
	switch {
	case so.HasCover:
		c.CoverArt = so.id
	case so.album.cover != "":
		c.CoverArt = so.album.id
	}
	c.Starred = stamp(s.store.starred(so.id))
	c.UserRating = s.store.rating(so.id)
	pl := s.store.playsOf(so.id)
	c.PlayCount, c.Played = pl.Count, stamp(pl.Last)
	return c
}

var slashes = strings.NewReplacer("/", "_", "\\", "_")

// safeSegment makes a name one segment of a path.
func safeSegment(s string) string {
	s = slashes.Replace(s)
	if s == "." || s == ".." || s == "" {
		return "_"
	}
	return s
}

func (s *Service) children(ss []*libSong) []child {
	out := make([]child, 0, len(ss))
	for _, so := range ss {
		out = append(out, s.child(so))
	}
	return out
}

func (s *Service) album(al *libAlbum) album {
	a := album{ID: al.id, Name: al.name, Artist: al.artist, ArtistID: al.artistID, SongCount: len(al.songs),
		Duration: al.duration, Created: stamp(al.created), Year: al.year, DisplayArtist: al.artist}
	if al.cover != "" {
		a.CoverArt = al.id
	}
	a.Starred = stamp(s.store.starred(al.id))
	a.UserRating = s.store.rating(al.id)
	pl := s.albumPlays(al)
	a.PlayCount, a.Played = pl.Count, stamp(pl.Last)
	return a
}

// albumPlays sums the plays of an album's songs.
func (s *Service) albumPlays(al *libAlbum) plays {
	var sum plays
	for _, so := range al.songs {
		p := s.store.playsOf(so.id)
		sum.Count += p.Count
		if p.Last.After(sum.Last) {
			sum.Last = p.Last
		}
	}
	return sum
}

func (s *Service) albums(as []*libAlbum) []album {
	out := make([]album, 0, len(as))
	for _, al := range as {
		out = append(out, s.album(al))
	}
	return out
}

func (s *Service) artistRef(ar *libArtist) artistRef {
	return artistRef{ID: ar.id, Name: ar.name, AlbumCount: len(ar.albums), CoverArt: ar.cover(),
		Starred: stamp(s.store.starred(ar.id)), UserRating: s.store.rating(ar.id)}
}

func (s *Service) artistRefs(as []*libArtist) []artistRef {
	out := make([]artistRef, 0, len(as))
	for _, ar := range as {
		out = append(out, s.artistRef(ar))
	}
	return out
}

// indexOf groups the artists by the first letter of their sort key.
func (s *Service) indexOf(lib *library) []index {
	out := []index{}
	for _, ar := range lib.artistList {
		name := indexName(ar.sortKey)
		if len(out) == 0 || out[len(out)-1].Name != name {
			out = append(out, index{Name: name})
		}
		out[len(out)-1].Artists = append(out[len(out)-1].Artists, s.artistRef(ar))
	}
	// "#" sorts first in Unicode order already ('#' < 'A') unless the
	// sort keys start with other symbols; keep one "#" group.
	var merged []index
	for _, ix := range out {
		if i := slices.IndexFunc(merged, func(m index) bool { return m.Name == ix.Name }); i >= 0 {
			merged[i].Artists = append(merged[i].Artists, ix.Artists...)
			continue
		}
		merged = append(merged, ix)
	}
	if merged == nil {
		merged = []index{}
	}
	return merged
}

// checkFolder refuses a musicFolderId other than the one folder.
func checkFolder(p params) error {
	if !p.has("musicFolderId") {
		return nil
	}
	id, e := p.integer("musicFolderId", folderID, -1, 1<<31)
	if e != nil {
		return e
	}
	if id != folderID {
		return notFound("music folder", p.str("musicFolderId"))
	}
	return nil
}

func (s *Service) getIndexes(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	if err := checkFolder(p); err != nil {
		return nil, err
	}
	since, e := p.integer("ifModifiedSince", 0, 0, 1<<62)
	if e != nil {
		return nil, e
	}
	lib, err := s.library(ctx)
	if err != nil {
		return nil, err
	}
	ix := &indexes{LastModified: lib.built.UnixMilli(), IgnoredArticles: ignoredArticles, Index: []index{}}
	if since < ix.LastModified {
		ix.Index = s.indexOf(lib)
	}
	return &response{Indexes: ix}, nil
}

func (s *Service) getArtists(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	if err := checkFolder(p); err != nil {
		return nil, err
	}
	lib, err := s.library(ctx)
	if err != nil {
		return nil, err
	}
	return &response{Artists: &artistsID3{IgnoredArticles: ignoredArticles, Index: s.indexOf(lib)}}, nil
}

func (s *Service) getArtist(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	id, lib, err := s.libraryParam(ctx, p, "id")
	if err != nil {
		return nil, err
	}
	ar := lib.artists[id]
	if ar == nil {
		return nil, notFound("artist", id)
	}
	return &response{Artist: &artistWithAlbums{artistRef: s.artistRef(ar), Albums: s.albums(ar.albums)}}, nil
}

func (s *Service) getAlbum(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	id, lib, err := s.libraryParam(ctx, p, "id")
	if err != nil {
		return nil, err
	}
	al := lib.albums[id]
	if al == nil {
		return nil, notFound("album", id)
	}
	return &response{Album: &albumWithSongs{album: s.album(al), Songs: s.children(al.songs)}}, nil
}

func (s *Service) getSong(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	_, so, err := s.songParam(ctx, p)
	if err != nil {
		return nil, err
	}
	c := s.child(so)
	return &response{Song: &c}, nil
}

// getMusicDirectory browses by folder: an artist's directory holds its
// albums, an album's its songs.
func (s *Service) getMusicDirectory(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	id, lib, err := s.libraryParam(ctx, p, "id")
	if err != nil {
		return nil, err
	}
	if ar := lib.artists[id]; ar != nil {
		d := &directory{ID: ar.id, Name: ar.name, Starred: stamp(s.store.starred(ar.id)), Children: []child{}}
		for _, al := range ar.albums {
			a := s.album(al)
			d.Children = append(d.Children, child{ID: a.ID, Parent: ar.id, IsDir: true, Title: a.Name, Album: a.Name,
				Artist: a.Artist, Year: a.Year, CoverArt: a.CoverArt, Created: a.Created, Starred: a.Starred,
				UserRating: a.UserRating, PlayCount: a.PlayCount, Played: a.Played, AlbumID: a.ID, ArtistID: ar.id})
		}
		return &response{Directory: d}, nil
	}
	if al := lib.albums[id]; al != nil {
		return &response{Directory: &directory{ID: al.id, Parent: al.artistID, Name: al.name,
			Starred: stamp(s.store.starred(al.id)), Children: s.children(al.songs)}}, nil
	}
	return nil, notFound("directory", id)
}

// Album list sizes: the API's default and largest.
const (
	defaultListSize = 10
	maxListSize     = 500
)

func (s *Service) getAlbumList2(ctx context.Context, w http.ResponseWriter, r *http.Request, p params) (*response, error) {
	as, err := s.albumList(ctx, p)
	if err != nil {
		return nil, err
	}
	return &response{AlbumList2: &albumList2{Albums: s.albums(as)}}, nil
}

// getAlbumList is getAlbumList2 in folder form.
func (s *Service) getAlbumList(ctx context.Context, w http.ResponseWriter, r *http.Request, p params) (*response, error) {
	as, err := s.albumList(ctx, p)
	if err != nil {
		return nil, err
	}
	out := s.albums(as)
	for i := range out {
		out[i].IsDir, out[i].Title, out[i].Album, out[i].Parent = true, out[i].Name, out[i].Name, out[i].ArtistID
	}
	return &response{AlbumList: &albumList{Albums: out}}, nil
}

// albumList picks the albums of getAlbumList2 (all its types).
func (s *Service) albumList(ctx context.Context, p params) ([]*libAlbum, error) {
	typ, e := p.required("type")
	if e != nil {
		return nil, e
	}
	size, offset, e := p.page("size", "offset", defaultListSize, maxListSize)
	if e != nil {
		return nil, e
	}
	if err := checkFolder(p); err != nil {
		return nil, err
	}
	lib, err := s.library(ctx)
	if err != nil {
		return nil, err
	}
	var as []*libAlbum
	switch typ {
	case "random":
		return sample(lib.albumList, size), nil
	case "alphabeticalByName":
		as = lib.albumList
	case "alphabeticalByArtist":
		for _, ar := range lib.artistList {
			as = append(as, ar.albums...)
		}
	case "newest":
		as = slices.Clone(lib.albumList)
		slices.SortStableFunc(as, func(a, b *libAlbum) int { return b.created.Compare(a.created) })
	case "starred":
		for _, al := range lib.albumList {
			if !s.store.starred(al.id).IsZero() {
				as = append(as, al)
			}
		}
	case "highest":
		for _, al := range lib.albumList {
			if s.store.rating(al.id) > 0 {
				as = append(as, al)
			}
		}
		slices.SortStableFunc(as, func(a, b *libAlbum) int { return cmp.Compare(s.store.rating(b.id), s.store.rating(a.id)) })
	case "frequent", "recent":
		pl := make(map[*libAlbum]plays)
		for _, al := range lib.albumList {
			if x := s.albumPlays(al); x.Count > 0 {
				pl[al] = x
				as = append(as, al)
			}
		}
		slices.SortStableFunc(as, func(a, b *libAlbum) int {
			if typ == "frequent" {
				return cmp.Compare(pl[b].Count, pl[a].Count)
			}
			return pl[b].Last.Compare(pl[a].Last)
		})
	case "byYear":
		from, e := p.integer("fromYear", 0, 0, 1<<31)
		if e != nil {
			return nil, e
		}
		to, e := p.integer("toYear", 0, 0, 1<<31)
		if e != nil {
			return nil, e
		}
		if !p.has("fromYear") {
			return nil, missing("fromYear")
		}
		if !p.has("toYear") {
			return nil, missing("toYear")
		}
		lo, hi := min(from, to), max(from, to)
		for _, al := range lib.albumList {
			if y := int64(al.year); y >= lo && y <= hi {
				as = append(as, al)
			}
		}
		slices.SortStableFunc(as, func(a, b *libAlbum) int {
			if from > to {
				return cmp.Compare(b.year, a.year)
			}
			return cmp.Compare(a.year, b.year)
		})
	case "byGenre":
		if _, e := p.required("genre"); e != nil {
			return nil, e
		}
		// The library has no genres.
	default:
		return nil, errorf(codeGeneric, "unknown album list type %.40q: want random, newest, highest, frequent, recent, alphabeticalByName, alphabeticalByArtist, starred, byYear or byGenre", typ)
	}
	return window(as, offset, size), nil
}

// window is the page of xs at offset of at most size.
func window[T any](xs []T, offset, size int) []T {
	if offset >= len(xs) {
		return nil
	}
	return xs[offset:min(len(xs), offset+size)]
}

// sample picks n of xs at random, without repeats.
func sample[T any](xs []T, n int) []T {
	n = min(n, len(xs))
	out := make([]T, 0, n)
	for _, i := range rand.Perm(len(xs))[:n] {
		out = append(out, xs[i])
	}
	return out
}

func (s *Service) getRandomSongs(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	size, e := p.integer("size", defaultListSize, 0, maxListSize)
	if e != nil {
		return nil, e
	}
	from, e := p.integer("fromYear", 0, 0, 1<<31)
	if e != nil {
		return nil, e
	}
	to, e := p.integer("toYear", 1<<31, 0, 1<<31)
	if e != nil {
		return nil, e
	}
	if err := checkFolder(p); err != nil {
		return nil, err
	}
	lib, err := s.library(ctx)
	if err != nil {
		return nil, err
	}
	pool := lib.songList
	if p.has("fromYear") || p.has("toYear") {
		pool = nil
		for _, so := range lib.songList {
			if y := int64(so.Year); y >= from && y <= to {
				pool = append(pool, so)
			}
		}
	}
	if p.str("genre") != "" {
		pool = nil // no genres
	}
	return &response{RandomSongs: &songs{Songs: s.children(sample(pool, int(size)))}}, nil
}

func (s *Service) getSongsByGenre(_ context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	if _, e := p.required("genre"); e != nil {
		return nil, e
	}
	return &response{SongsByGenre: &songs{Songs: []child{}}}, nil
}

// Search sizes: the default and the largest of each kind. Apps that keep
// a copy of the library page through it with an empty query.
const (
	defaultSearchSize = 20
	maxSearchSize     = 5000
)

// searchTerms splits a query into lower-case terms; apps send "" or a
// lone * for everything, and some end a term with *.
func searchTerms(q string) []string {
	q = strings.TrimSpace(q)
	if len(q) >= 2 && q[0] == '"' && q[len(q)-1] == '"' {
		q = q[1 : len(q)-1]
	}
	var out []string
	for _, t := range strings.Fields(strings.ToLower(q)) {
		if t = strings.Trim(t, "*"); t != "" {
			out = append(out, t)
		}
	}
	return out
}

func matches(text string, terms []string) bool {
	for _, t := range terms {
		if !strings.Contains(text, t) {
			return false
		}
	}
	return true
}

// find pages through the items of xs that match terms.
func find[T any](xs []T, text func(T) string, terms []string, offset, size int) []T {
	var out []T
	skip := offset
	for _, x := range xs {
		if len(out) >= size {
			break
		}
		if matches(text(x), terms) {
			if skip > 0 {
				skip--
				continue
			}
			out = append(out, x)
		}
	}
	return out
}

func (s *Service) search(ctx context.Context, p params) (*searchResult3, error) {
	if !p.has("query") {
		return nil, missing("query")
	}
	terms := searchTerms(p.str("query"))
	arN, arOff, e := p.page("artistCount", "artistOffset", defaultSearchSize, maxSearchSize)
	if e != nil {
		return nil, e
	}
	alN, alOff, e := p.page("albumCount", "albumOffset", defaultSearchSize, maxSearchSize)
	if e != nil {
		return nil, e
	}
	soN, soOff, e := p.page("songCount", "songOffset", defaultSearchSize, maxSearchSize)
	if e != nil {
		return nil, e
	}
	if err := checkFolder(p); err != nil {
		return nil, err
	}
	lib, err := s.library(ctx)
	if err != nil {
		return nil, err
	}
	return &searchResult3{
		Artists: s.artistRefs(find(lib.artistList, func(a *libArtist) string { return a.search }, terms, arOff, arN)),
		Albums:  s.albums(find(lib.albumList, func(a *libAlbum) string { return a.search }, terms, alOff, alN)),
		Songs:   s.children(find(lib.songList, func(so *libSong) string { return so.search }, terms, soOff, soN)),
	}, nil
}

func (s *Service) search3(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	res, err := s.search(ctx, p)
	if err != nil {
		return nil, err
	}
	return &response{SearchResult3: res}, nil
}

func (s *Service) search2(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	res, err := s.search(ctx, p)
	if err != nil {
		return nil, err
	}
	return &response{SearchResult2: res}, nil
}

// starredOf lists the starred artists, albums and songs of the library.
func (s *Service) starredOf(ctx context.Context) (*starred2, error) {
	lib, err := s.library(ctx)
	if err != nil {
		return nil, err
	}
	stars := s.store.allStars()
	var ars []*libArtist
	var als []*libAlbum
	var sos []*libSong
	for id := range stars {
		if ar := lib.artists[id]; ar != nil {
			ars = append(ars, ar)
		} else if al := lib.albums[id]; al != nil {
			als = append(als, al)
		} else if so := lib.songs[id]; so != nil {
			sos = append(sos, so)
		}
	}
	newest := func(a, b string) int { return cmp.Or(stars[b].Compare(stars[a]), cmp.Compare(a, b)) }
	slices.SortFunc(ars, func(a, b *libArtist) int { return newest(a.id, b.id) })
	slices.SortFunc(als, func(a, b *libAlbum) int { return newest(a.id, b.id) })
	slices.SortFunc(sos, func(a, b *libSong) int { return newest(a.id, b.id) })
	return &starred2{Artists: s.artistRefs(ars), Albums: s.albums(als), Songs: s.children(sos)}, nil
}

func (s *Service) getStarred2(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	st, err := s.starredOf(ctx)
	if err != nil {
		return nil, err
	}
	return &response{Starred2: st}, nil
}

func (s *Service) getStarred(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	st, err := s.starredOf(ctx)
	if err != nil {
		return nil, err
	}
	return &response{Starred: st}, nil
}

// annotationIDs collects the ids of star and unstar (id, albumId,
// artistId); with known, each must be in the library.
func (s *Service) annotationIDs(ctx context.Context, p params, known bool) ([]string, error) {
	var ids []string
	for _, name := range []string{"id", "albumId", "artistId"} {
		vs, e := p.all(name)
		if e != nil {
			return nil, e
		}
		ids = append(ids, vs...)
	}
	if len(ids) == 0 {
		return nil, missing("id, albumId or artistId")
	}
	if len(ids) > maxValues {
		return nil, errorf(codeGeneric, "too many ids: at most %d", maxValues)
	}
	lib, err := s.library(ctx)
	if err != nil {
		return nil, err
	}
	for i, id := range ids {
		if so := lib.songs[strings.ToLower(id)]; so != nil {
			ids[i] = so.id
		}
		if known && lib.songs[ids[i]] == nil && lib.albums[id] == nil && lib.artists[id] == nil {
			return nil, notFound("song, album or artist", id)
		}
	}
	return ids, nil
}

func (s *Service) star(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	ids, err := s.annotationIDs(ctx, p, true)
	if err != nil {
		return nil, err
	}
	if err := s.store.setStars(ids, true); err != nil {
		return nil, err
	}
	return &response{}, nil
}

func (s *Service) unstar(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	// Unstarring works for what left the library too.
	ids, err := s.annotationIDs(ctx, p, false)
	if err != nil {
		return nil, err
	}
	if err := s.store.setStars(ids, false); err != nil {
		return nil, err
	}
	return &response{}, nil
}

func (s *Service) setRating(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	id, e := p.required("id")
	if e != nil {
		return nil, e
	}
	if !p.has("rating") {
		return nil, missing("rating")
	}
	n, e := p.integer("rating", 0, -1, 6)
	if e != nil {
		return nil, e
	}
	if n < 0 || n > 5 {
		return nil, errorf(codeGeneric, "rating %s: want 0 to 5", p.str("rating"))
	}
	lib, err := s.library(ctx)
	if err != nil {
		return nil, err
	}
	if so := lib.songs[strings.ToLower(id)]; so != nil {
		id = so.id
	} else if lib.albums[id] == nil && lib.artists[id] == nil {
		return nil, notFound("song, album or artist", id)
	}
	if err := s.store.setRating(id, int(n)); err != nil {
		return nil, err
	}
	return &response{}, nil
}

// scrobble counts plays (submission=true, the default) or records what
// an app plays now (submission=false), which the web UI shows.
func (s *Service) scrobble(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	ids, e := p.all("id")
	if e != nil {
		return nil, e
	}
	if len(ids) == 0 {
		return nil, missing("id")
	}
	times, e := p.all("time")
	if e != nil {
		return nil, e
	}
	submission, e := p.boolean("submission", true)
	if e != nil {
		return nil, e
	}
	lib, err := s.library(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	at := make([]time.Time, len(ids))
	sos := make([]*libSong, len(ids))
	for i, id := range ids {
		if sos[i], e = lib.song(id); e != nil {
			return nil, e
		}
		ids[i] = sos[i].id
		var v string
		if i < len(times) {
			v = times[i]
		}
		if at[i], e = p.millis(v, now); e != nil {
			return nil, e
		}
		// Not later than now: a now-playing entry from the future
		// would show for ever, and a play would stay the most recent.
		if at[i].After(now) {
			at[i] = now
		}
	}
	if submission {
		if err := s.store.played(ids, at); err != nil {
			return nil, err
		}
		return &response{}, nil
	}
	user, _ := s.store.credentials()
	so := sos[len(sos)-1]
	n := NowPlaying{User: user, Player: p.str("c"), ID: so.id, Title: so.Title, Artist: so.Artist, Album: so.Album,
		Since: at[len(at)-1], Duration: so.Duration}
	if len(n.Player) > maxNameLen {
		n.Player = n.Player[:maxNameLen]
	}
	if err := s.store.setNowPlaying(n); err != nil {
		return nil, err
	}
	s.events.Publish(s.store.nowPlaying(time.Now()))
	return &response{}, nil
}

func (s *Service) getNowPlaying(ctx context.Context, _ http.ResponseWriter, _ *http.Request, _ params) (*response, error) {
	lib, err := s.library(ctx)
	if err != nil {
		return nil, err
	}
	out := &nowPlaying{Entries: []child{}}
	now := time.Now()
	for _, n := range s.store.nowPlaying(now) {
		so := lib.songs[n.ID]
		if so == nil {
			continue // banned or gone since
		}
		c := s.child(so)
		mins, player := int(now.Sub(n.Since).Minutes()), 0
		c.Username, c.MinutesAgo, c.PlayerID, c.PlayerName = n.User, &mins, &player, n.Player
		out.Entries = append(out.Entries, c)
	}
	return &response{NowPlaying: out}, nil
}
