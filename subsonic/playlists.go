package subsonic

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// visible are the songs of a playlist that are in the library now, and
// their places in the stored list: songs offline or banned are kept but
// not shown, so the indexes an app sends back are of what it was shown.
func visible(lib *library, p storedPlaylist) (songs []*libSong, at []int) {
	for i, id := range p.Songs {
		if so := lib.songs[id]; so != nil {
			songs = append(songs, so)
			at = append(at, i)
		}
	}
	return songs, at
}

func (s *Service) playlistHead(lib *library, p storedPlaylist) playlist {
	sos, _ := visible(lib, p)
	out := playlist{ID: p.ID, Name: p.Name, Comment: p.Comment, Owner: p.Owner, Public: p.Public,
		SongCount: len(sos), Created: stamp(p.Created), Changed: stamp(p.Changed)}
	for _, so := range sos {
		out.Duration += int(so.Duration + 0.5)
		if out.CoverArt == "" {
			out.CoverArt = s.child(so).CoverArt
		}
	}
	return out
}

func (s *Service) getPlaylists(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	lib, err := s.library(ctx)
	if err != nil {
		return nil, err
	}
	u, _ := s.store.credentials()
	if name := p.str("username"); name != "" && name != u {
		return nil, notFound("user", name)
	}
	out := &playlists{Playlists: []playlist{}}
	for _, pl := range s.store.allPlaylists() {
		out.Playlists = append(out.Playlists, s.playlistHead(lib, pl))
	}
	return &response{Playlists: out}, nil
}

func (s *Service) playlistResponse(lib *library, id string) (*response, error) {
	pl, ok := s.store.playlist(id)
	if !ok {
		return nil, notFound("playlist", id)
	}
	sos, _ := visible(lib, pl)
	return &response{Playlist: &playlistWithSongs{playlist: s.playlistHead(lib, pl), Entries: s.children(sos)}}, nil
}

func (s *Service) getPlaylist(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	id, lib, err := s.libraryParam(ctx, p, "id")
	if err != nil {
		return nil, err
	}
	return s.playlistResponse(lib, id)
}

// checkText bounds a name or comment.
func checkText(what, v string, limit int) *apiError {
	if len(v) > limit {
		return errorf(codeGeneric, "%s too long: %d bytes, at most %d", what, len(v), limit)
	}
	if strings.IndexFunc(v, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) >= 0 {
		return errorf(codeGeneric, "%s holds control characters", what)
	}
	return nil
}

// songIDs reads a list of song ids that must be in the library.
func songIDs(lib *library, p params, name string) ([]string, *apiError) {
	vs, e := p.all(name)
	if e != nil {
		return nil, e
	}
	for i, v := range vs {
		so, e := lib.song(v)
		if e != nil {
			return nil, e
		}
		vs[i] = so.id
	}
	return vs, nil
}

// createPlaylist makes a playlist (name), or with playlistId replaces
// the songs of one, and answers it.
func (s *Service) createPlaylist(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	lib, err := s.library(ctx)
	if err != nil {
		return nil, err
	}
	ids, e := songIDs(lib, p, "songId")
	if e != nil {
		return nil, e
	}
	if len(ids) > maxPlaylistSongs {
		return nil, errorf(codeGeneric, "at most %d songs in a playlist", maxPlaylistSongs)
	}
	name := p.str("name")
	if e := checkText("name", name, maxNameLen); e != nil {
		return nil, e
	}
	if id := p.str("playlistId"); id != "" {
		err := s.store.editPlaylist(id, func(pl *storedPlaylist) error {
			if name != "" {
				pl.Name = name
			}
			pl.Songs = ids
			return nil
		})
		if err != nil {
			return nil, err
		}
		return s.playlistResponse(lib, id)
	}
	if strings.TrimSpace(name) == "" {
		return nil, missing("name or playlistId")
	}
	owner, _ := s.store.credentials()
	now := time.Now().UTC().Truncate(time.Millisecond)
	id, err := s.store.createPlaylist(storedPlaylist{Name: name, Owner: owner, Songs: ids, Created: now, Changed: now})
	if err != nil {
		return nil, err
	}
	return s.playlistResponse(lib, id)
}

// updatePlaylist renames, comments, adds songs and removes songs by
// their index in the list as shown.
func (s *Service) updatePlaylist(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	id, lib, err := s.libraryParam(ctx, p, "playlistId")
	if err != nil {
		return nil, err
	}
	add, e := songIDs(lib, p, "songIdToAdd")
	if e != nil {
		return nil, e
	}
	rmv, e := p.all("songIndexToRemove")
	if e != nil {
		return nil, e
	}
	public, e := p.boolean("public", false)
	if e != nil {
		return nil, e
	}
	for _, f := range []struct {
		name  string
		limit int
	}{{"name", maxNameLen}, {"comment", maxCommentLen}} {
		if e := checkText(f.name, p.str(f.name), f.limit); e != nil {
			return nil, e
		}
	}
	err = s.store.editPlaylist(id, func(pl *storedPlaylist) error {
		if v := p.str("name"); v != "" {
			pl.Name = v
		}
		if p.has("comment") {
			pl.Comment = p.str("comment")
		}
		if p.has("public") {
			pl.Public = public
		}
		_, at := visible(lib, *pl)
		drop := make(map[int]bool)
		for _, v := range rmv {
			i, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || i < 0 || i >= len(at) {
				return errorf(codeGeneric, "songIndexToRemove %.20q: the playlist shows %d songs", v, len(at))
			}
			drop[at[i]] = true
		}
		kept := pl.Songs[:0]
		for i, sid := range pl.Songs {
			if !drop[i] {
				kept = append(kept, sid)
			}
		}
		pl.Songs = append(kept, add...)
		if len(pl.Songs) > maxPlaylistSongs {
			return errorf(codeGeneric, "at most %d songs in a playlist", maxPlaylistSongs)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &response{}, nil
}

func (s *Service) deletePlaylist(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	id, e := p.required("id")
	if e != nil {
		return nil, e
	}
	if err := s.store.deletePlaylist(id); err != nil {
		return nil, err
	}
	return &response{}, nil
}
