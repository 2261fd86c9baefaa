package webui

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/catnest/catnest/internal/pubsub"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/music"
	"github.com/catnest/catnest/shards"
)

// Music is what the web UI needs of the music service (*music.Service):
// the mesh-wide library, a track's bytes, covers, lyrics and the ban list.
// Its methods are called from request goroutines, several at a time.
type Music interface {
	// Tracks lists the library; with banned, the banned tracks too,
	// marked Banned.
	Tracks(ctx context.Context, banned bool) ([]music.Track, error)
	// Stream returns a seekable reader over a track, local or remote:
	// music.ErrUnknown for a track no online node holds, music.ErrBanned
	// for a banned one.
	Stream(ctx context.Context, id shards.MD5) (shards.Content, error)
	// StreamAhead is Stream for the player's prefetch of the next track:
	// a download of it the user paused stays paused (music.ErrPaused).
	StreamAhead(ctx context.Context, id shards.MD5) (shards.Content, error)
	// Cover returns a track's cover, or its list thumbnail when thumb;
	// music.ErrNoCover when it has none.
	Cover(ctx context.Context, id shards.MD5, thumb bool) (mimeType string, data []byte, err error)
	// SetCover attaches a cover image to a track (music.ErrBadInput when
	// it is not one).
	SetCover(ctx context.Context, id shards.MD5, mimeType string, data []byte) error
	// Lyrics returns a track's lyrics; music.ErrNoLyrics when it has none.
	Lyrics(ctx context.Context, id shards.MD5) (music.Lyrics, error)
	// SetLyrics attaches lyrics (LRC or plain text) to a track.
	SetLyrics(ctx context.Context, id shards.MD5, raw string) error
	Bans(ctx context.Context) ([]string, error)
	// SetBans replaces the ban list; music.ErrBadPattern (with the reason)
	// for an invalid pattern, and then nothing changes.
	SetBans(ctx context.Context, patterns []string) error
	// RemoveCache deletes the cached copy of a fetched track.
	RemoveCache(ctx context.Context, id shards.MD5) error
	// Scan reports the progress of the scan of the music folders.
	Scan(ctx context.Context) (music.ScanStatus, error)
	// SubscribeMusic returns a subscription to library changes and scan
	// progress. Events may be dropped when the reader is slow; Missed
	// counts them.
	SubscribeMusic() *pubsub.Subscription[music.Event]
}

// Limits of the music API: the service's own, checked here too so that
// a body over them is refused before it is read whole.
const (
	maxCoverBody  = music.MaxCover
	maxLyricsBody = music.MaxLyrics
	maxBans       = music.MaxBans
	maxBanPattern = music.MaxBanPattern
)

// coverTypes are the image types a cover may be served or attached as:
// raster formats a browser shows in an <img>. An SVG (scripts) or
// anything else a peer calls a cover is served as bytes, not as a page.
var coverTypes = map[string]bool{
	"image/jpeg": true,
	"image/png":  true,
	"image/gif":  true,
	"image/webp": true,
}

// BansJSON is the body of GET and PUT /api/music/bans.
type BansJSON struct {
	Patterns []string `json:"patterns"`
}

// LyricsJSON is the JSON body of PUT /api/music/tracks/{md5}/lyrics; a
// body of another type is the lyrics themselves.
type LyricsJSON struct {
	Raw string `json:"raw"`
}

func (s *Server) musicRoutes() []route {
	const (
		tracks = "/api/music/tracks"
		one    = tracks + "/{id}"
	)
	routes := []route{
		{http.MethodGet, tracks, s.handleTracks},
		{http.MethodGet, one + "/stream", s.handleStream},
		{http.MethodGet, one + "/cover", s.handleCover},
		{http.MethodPut, one + "/cover", s.handleSetCover},
		{http.MethodGet, one + "/lyrics", s.handleLyrics},
		{http.MethodPut, one + "/lyrics", s.handleSetLyrics},
		{http.MethodDelete, one + "/cache", s.handleRemoveCache},
		{http.MethodGet, "/api/music/bans", s.handleBans},
		{http.MethodPut, "/api/music/bans", s.handleSetBans},
		{http.MethodGet, "/api/music/scan", s.handleScan},
	}
	if s.cfg.Music == nil {
		// Same paths, so that a client learns "no music here"; the UI
		// hides its Music view on this 404.
		for i := range routes {
			routes[i].handle = func(w http.ResponseWriter, r *http.Request) {
				writeError(w, http.StatusNotFound, "music is not enabled on this node")
			}
		}
	}
	return routes
}

// musicError answers a failed call of the music service, mapping its
// errors to statuses.
func (s *Server) musicError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, music.ErrBadInput), errors.Is(err, music.ErrBadPattern), errors.Is(err, shards.ErrBadID):
		status = http.StatusBadRequest
	case errors.Is(err, music.ErrBanned):
		status = http.StatusForbidden
	case errors.Is(err, music.ErrUsersCopy), errors.Is(err, music.ErrPaused):
		status = http.StatusConflict // a copy there is, but not the cache's to remove
	case errors.Is(err, music.ErrUnknown), errors.Is(err, music.ErrNoCover), errors.Is(err, music.ErrNoLyrics),
		errors.Is(err, shards.ErrUnknown), errors.Is(err, shards.ErrNoHolders):
		status = http.StatusNotFound
	case r.Context().Err() != nil:
		return // the client is gone
	}
	if status == http.StatusInternalServerError {
		s.log.Warn("web UI: music request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, status, err.Error())
}

func (s *Server) musicDone(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		s.musicError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// handleTracks is GET /api/music/tracks[?banned=1].
func (s *Server) handleTracks(w http.ResponseWriter, r *http.Request) {
	banned := false
	switch v := r.URL.Query().Get("banned"); v {
	case "", "0", "false":
	case "1", "true":
		banned = true
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("banned=%.20q: want 1 or 0", v))
		return
	}
	ts, err := s.cfg.Music.Tracks(r.Context(), banned)
	if err != nil {
		s.musicError(w, r, err)
		return
	}
	out := make([]music.Track, 0, len(ts))
	for _, t := range ts {
		if t.Banned && !banned {
			continue
		}
		if t.Sources == nil {
			t.Sources = []mesh.ID{}
		}
		out = append(out, t)
	}
	// A stable order, so that a client can tell what changed; the UI
	// sorts as the user asks.
	slices.SortFunc(out, func(a, b music.Track) int {
		return cmp.Or(strings.Compare(a.Artist, b.Artist), strings.Compare(a.Album, b.Album),
			cmp.Compare(a.Track, b.Track), strings.Compare(a.Title, b.Title), bytes.Compare(a.MD5[:], b.MD5[:]))
	})
	writeJSON(w, http.StatusOK, out)
}

// fromOurPage refuses (403) a request that a browser says comes from
// another site: playing a remote track or showing its cover fetches it,
// so a page elsewhere must not make the node do that with an <audio> or
// an <img>. It reports whether the request may go on.
func fromOurPage(w http.ResponseWriter, r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return true
	}
	writeError(w, http.StatusForbidden, "cross-site request for a track's bytes, cover or lyrics refused")
	return false
}

// handleStream serves a track's bytes through the seekable reader, with
// Range requests: the <audio> element seeks with them, and a remote
// track's reader fetches the pieces at the read position first. With
// ahead=1 (the player's prefetch of the next track) a download the user
// paused stays paused: 409, as the user did not ask for that track yet.
func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	if !fromOurPage(w, r) {
		return
	}
	id, ok := resourceID(w, r)
	if !ok {
		return
	}
	stream := s.cfg.Music.Stream
	switch v := r.URL.Query().Get("ahead"); v {
	case "", "0":
	case "1":
		stream = s.cfg.Music.StreamAhead
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("ahead=%.20q: want 1 or 0", v))
		return
	}
	c, err := stream(r.Context(), id)
	if err != nil {
		s.musicError(w, r, err)
		return
	}
	defer c.Close()
	h := w.Header()
	typ := contentType(c.Name())
	if !strings.HasPrefix(typ, "audio/") {
		// A track is audio whatever its file is called; the scan
		// found it by its content.
		typ = "audio/mpeg"
	}
	h.Set("Content-Type", typ)
	h.Set("Content-Security-Policy", contentPolicy)
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	// The MD5 names the bytes, but the browser must ask each time: a
	// track banned since it was cached must not play from its cache.
	h.Set("ETag", `"`+id.String()+`"`)
	h.Set("Cache-Control", "private, no-cache")
	http.ServeContent(&jsonErrors{ResponseWriter: w}, r, "", c.ModTime(), c)
}

// handleCover is GET /api/music/tracks/{md5}/cover[?thumb=1].
func (s *Server) handleCover(w http.ResponseWriter, r *http.Request) {
	if !fromOurPage(w, r) {
		return
	}
	id, ok := resourceID(w, r)
	if !ok {
		return
	}
	thumb := false
	switch v := r.URL.Query().Get("thumb"); v {
	case "", "0":
	case "1":
		thumb = true
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("thumb=%.20q: want 1 or 0", v))
		return
	}
	typ, data, err := s.cfg.Music.Cover(r.Context(), id, thumb)
	if err != nil {
		s.musicError(w, r, err)
		return
	}
	if base, _, _ := mime.ParseMediaType(typ); coverTypes[base] {
		typ = base
	} else {
		typ = "application/octet-stream"
	}
	h := w.Header()
	h.Set("Content-Type", typ)
	h.Set("Content-Security-Policy", contentPolicy)
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	// A cover can be replaced, so its ETag is its bytes' and the browser
	// asks again each time (a 304 when unchanged).
	sum := md5.Sum(data)
	h.Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
	h.Set("Cache-Control", "private, no-cache")
	http.ServeContent(&jsonErrors{ResponseWriter: w}, r, "", time.Time{}, bytes.NewReader(data))
}

// readBody reads a request body of at most limit bytes; on failure it
// answers (413 or 400) and returns false.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body too large: at most %d bytes", tooBig.Limit))
		return nil, false
	case err != nil:
		writeError(w, http.StatusBadRequest, "reading the request body: "+err.Error())
		return nil, false
	}
	return b, true
}

// handleSetCover is PUT /api/music/tracks/{md5}/cover: the body is the
// image (JPEG, PNG, GIF or WebP), as a file input's File is sent.
func (s *Server) handleSetCover(w http.ResponseWriter, r *http.Request) {
	id, ok := resourceID(w, r)
	if !ok {
		return
	}
	data, ok := readBody(w, r, maxCoverBody)
	if !ok {
		return
	}
	if len(data) == 0 {
		writeError(w, http.StatusBadRequest, "empty body: send the image (JPEG, PNG, GIF or WebP)")
		return
	}
	// Trust the bytes, not the label: a browser labels by extension.
	typ, _, _ := mime.ParseMediaType(http.DetectContentType(data))
	if !coverTypes[typ] {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("the cover is %s, not a JPEG, PNG, GIF or WebP image", typ))
		return
	}
	s.musicDone(w, r, s.cfg.Music.SetCover(r.Context(), id, typ, data))
}

// handleLyrics is GET /api/music/tracks/{md5}/lyrics. A remote track's
// lyrics are fetched from its holders, as its cover is: not for a page
// elsewhere.
func (s *Server) handleLyrics(w http.ResponseWriter, r *http.Request) {
	if !fromOurPage(w, r) {
		return
	}
	id, ok := resourceID(w, r)
	if !ok {
		return
	}
	l, err := s.cfg.Music.Lyrics(r.Context(), id)
	if err != nil {
		s.musicError(w, r, err)
		return
	}
	if l.Lines == nil {
		l.Lines = []music.Line{}
	}
	writeJSON(w, http.StatusOK, l)
}

// handleSetLyrics is PUT /api/music/tracks/{md5}/lyrics: a JSON body
// {"raw"}, or the LRC or text file itself (curl -T song.lrc).
func (s *Server) handleSetLyrics(w http.ResponseWriter, r *http.Request) {
	id, ok := resourceID(w, r)
	if !ok {
		return
	}
	var raw string
	if typ, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); typ == "application/json" {
		var req LyricsJSON
		if !readJSONMax(w, r, &req, maxLyricsBody*2) { // room for escapes
			return
		}
		raw = req.Raw
	} else {
		b, ok := readBody(w, r, maxLyricsBody)
		if !ok {
			return
		}
		raw = string(b)
	}
	switch {
	case len(raw) > maxLyricsBody:
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("lyrics too long: %d bytes, at most %d", len(raw), maxLyricsBody))
		return
	case strings.TrimSpace(raw) == "":
		writeError(w, http.StatusBadRequest, "empty lyrics: send an LRC or text file")
		return
	case !utf8.ValidString(raw):
		writeError(w, http.StatusBadRequest, "the lyrics are not UTF-8 text")
		return
	}
	s.musicDone(w, r, s.cfg.Music.SetLyrics(r.Context(), id, raw))
}

// handleRemoveCache is DELETE /api/music/tracks/{md5}/cache.
func (s *Server) handleRemoveCache(w http.ResponseWriter, r *http.Request) {
	id, ok := resourceID(w, r)
	if !ok {
		return
	}
	s.musicDone(w, r, s.cfg.Music.RemoveCache(r.Context(), id))
}

func (s *Server) handleBans(w http.ResponseWriter, r *http.Request) {
	p, err := s.cfg.Music.Bans(r.Context())
	if err != nil {
		s.musicError(w, r, err)
		return
	}
	if p == nil {
		p = []string{}
	}
	writeJSON(w, http.StatusOK, BansJSON{Patterns: p})
}

// handleSetBans is PUT /api/music/bans {"patterns"}: the whole list. It
// answers with the list as stored.
func (s *Server) handleSetBans(w http.ResponseWriter, r *http.Request) {
	var req BansJSON
	if !readJSON(w, r, &req) {
		return
	}
	if req.Patterns == nil {
		writeError(w, http.StatusBadRequest, `missing "patterns": the list of regular expressions ([] for none)`)
		return
	}
	if len(req.Patterns) > maxBans {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%d patterns, at most %d", len(req.Patterns), maxBans))
		return
	}
	for i, p := range req.Patterns {
		switch {
		case strings.TrimSpace(p) == "":
			writeError(w, http.StatusBadRequest, fmt.Sprintf("pattern %d is empty: it would ban every track", i+1))
			return
		case len(p) > maxBanPattern:
			writeError(w, http.StatusBadRequest, fmt.Sprintf("pattern %d is too long: %d bytes, at most %d", i+1, len(p), maxBanPattern))
			return
		}
	}
	if err := s.cfg.Music.SetBans(r.Context(), req.Patterns); err != nil {
		s.musicError(w, r, err)
		return
	}
	s.handleBans(w, r)
}

func (s *Server) handleScan(w http.ResponseWriter, r *http.Request) {
	st, err := s.cfg.Music.Scan(r.Context())
	if err != nil {
		s.musicError(w, r, err)
		return
	}
	if st.Errors == nil {
		st.Errors = []music.ScanError{}
	}
	writeJSON(w, http.StatusOK, st)
}

// musicRelays is the music service's part of the event stream: every
// music.Event as a "music" event. Events dropped for a slow client are
// replaced by one that says the library changed, so the UI reads it (and
// the scan status) again.
func (s *Server) musicRelays() []relay {
	if s.cfg.Music == nil {
		return nil
	}
	lost := music.Event{Library: true}
	return []relay{{
		event: "music",
		subscribe: func(push func(any)) func() {
			sub := s.cfg.Music.SubscribeMusic()
			var missed uint64
			return each(sub.C(), sub.Close)(func(ev music.Event) {
				if ev.Scan != nil && ev.Scan.Errors == nil {
					st := *ev.Scan
					st.Errors = []music.ScanError{}
					ev.Scan = &st
				}
				push(ev)
				if missed += sub.Missed(); missed > 0 && len(sub.C()) == 0 {
					push(lost)
					missed = 0
				}
			})
		},
		lost: lost,
	}}
}
