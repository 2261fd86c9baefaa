package subsonic

import (
	"bytes"
	"container/list"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"image"
	"mime"
	"net/http"
	"strings"
	"sync"

	"github.com/catnest/catnest/music"
	"github.com/catnest/catnest/music/meta"
)

// stream serves a song's bytes with Range requests: a remote track is
// read through the shards reader, which fetches the pieces at the read
// position first, as for the web player. maxBitRate and format are
// ignored: the bytes are the track's own.
func (s *Service) stream(ctx context.Context, w http.ResponseWriter, r *http.Request, p params) (*response, error) {
	return s.serveSong(ctx, w, r, p, false)
}

// download is stream with the file's name, as a download.
func (s *Service) download(ctx context.Context, w http.ResponseWriter, r *http.Request, p params) (*response, error) {
	return s.serveSong(ctx, w, r, p, true)
}

func (s *Service) serveSong(ctx context.Context, w http.ResponseWriter, r *http.Request, p params, attach bool) (*response, error) {
	id, so, err := s.songParam(ctx, p)
	if err != nil {
		return nil, err
	}
	c, err := s.music.Stream(ctx, so.MD5)
	if err != nil {
		return nil, musicErr(err, id)
	}
	defer c.Close()
	h := w.Header()
	h.Set("Content-Type", contentType(so.Format))
	h.Set("ETag", `"`+so.id+`"`)
	h.Set("Cache-Control", "private, no-cache")
	if attach {
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": safeSegment(so.Name)}))
	}
	http.ServeContent(w, r, "", c.ModTime(), c)
	return nil, nil
}

// Cover sizes: a size asked for is at least 1 and at most maxCoverSize.
const maxCoverSize = 4096

// getCoverArt serves the cover of a song, album or artist; with size,
// scaled to fit size×size (never up).
func (s *Service) getCoverArt(ctx context.Context, w http.ResponseWriter, r *http.Request, p params) (*response, error) {
	id, e := p.required("id")
	if e != nil {
		return nil, e
	}
	size, e := p.integer("size", 0, 0, maxCoverSize)
	if e != nil {
		return nil, e
	}
	lib, err := s.library(ctx)
	if err != nil {
		return nil, err
	}
	track, ok := lib.coverTrack(id)
	if !ok {
		return nil, notFound("cover art", id)
	}
	_, data, err := s.music.Cover(ctx, track, false)
	if err != nil {
		return nil, musicErr(err, id)
	}
	if size > 0 {
		if data, err = s.covers.scaled(ctx, data, int(size)); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, errorf(codeNotFound, "cover art %.80q: %v", id, err)
		}
	}
	typ, _, _ := mime.ParseMediaType(http.DetectContentType(data))
	if !strings.HasPrefix(typ, "image/") || typ == "image/svg+xml" {
		typ = "application/octet-stream"
	}
	h := w.Header()
	h.Set("Content-Type", typ)
	sum := md5.Sum(data)
	h.Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
	h.Set("Cache-Control", "private, max-age=3600")
	http.ServeContent(w, r, "", lib.built, bytes.NewReader(data))
	return nil, nil
}

// coverCache keeps the last scaled covers, so that an app showing a
// grid of albums does not have each one decoded and scaled again.
type coverCache struct {
	// scale is meta.Thumbnail, and sem bounds how many run at once: a
	// decode may take up to 192 MB (a cover any peer names), and an app
	// asks for a grid's covers several at a time.
	scale func(data []byte, size int) ([]byte, error)
	sem   chan struct{}

	mu    sync.Mutex
	limit int
	order *list.List // of *coverEntry, most recent first
	byKey map[coverKey]*list.Element
}

// maxScaling is how many covers are scaled at once.
const maxScaling = 2

type coverKey struct {
	sum  [md5.Size]byte
	size int
}

type coverEntry struct {
	key  coverKey
	data []byte
}

func newCoverCache(limit int) *coverCache {
	return &coverCache{scale: meta.Thumbnail, sem: make(chan struct{}, maxScaling),
		limit: limit, order: list.New(), byKey: map[coverKey]*list.Element{}}
}

// scaled returns data scaled to fit size×size as a JPEG, or data itself
// when it fits already.
func (c *coverCache) scaled(ctx context.Context, data []byte, size int) ([]byte, error) {
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, errors.New("not an image")
	}
	if cfg.Width <= size && cfg.Height <= size {
		return data, nil
	}
	key := coverKey{md5.Sum(data), size}
	c.mu.Lock()
	if e, ok := c.byKey[key]; ok {
		c.order.MoveToFront(e)
		out := e.Value.(*coverEntry).data
		c.mu.Unlock()
		return out, nil
	}
	c.mu.Unlock()
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// meta.Thumbnail bounds the memory of a decode before it starts.
	out, err := c.scale(data, size)
	<-c.sem
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byKey[key]; !ok {
		c.byKey[key] = c.order.PushFront(&coverEntry{key, out})
		for c.order.Len() > c.limit {
			old := c.order.Remove(c.order.Back()).(*coverEntry)
			delete(c.byKey, old.key)
		}
	}
	return out, nil
}

// getLyrics finds lyrics by artist and title (what older apps ask):
// the first song of the library with both, its lyrics as plain text.
// None found is an empty answer, not an error.
func (s *Service) getLyrics(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	ar, ti := normalise(p.str("artist")), normalise(p.str("title"))
	lib, err := s.library(ctx)
	if err != nil {
		return nil, err
	}
	out := &lyrics{}
	if ti == "" {
		return &response{Lyrics: out}, nil
	}
	for _, so := range lib.songList {
		if !so.HasLyrics || normalise(so.Title) != ti || (ar != "" && normalise(so.Artist) != ar) {
			continue
		}
		l, err := s.music.Lyrics(ctx, so.MD5)
		if errors.Is(err, music.ErrNoLyrics) {
			continue
		}
		if err != nil {
			return nil, musicErr(err, so.id)
		}
		texts := make([]string, 0, len(l.Lines))
		for _, ln := range l.Lines {
			texts = append(texts, ln.Text)
		}
		out.Artist, out.Title, out.Value = so.Artist, so.Title, strings.Join(texts, "\n")
		break
	}
	return &response{Lyrics: out}, nil
}

// getLyricsBySongID answers OpenSubsonic's structured lyrics: synced
// lines with their start in milliseconds, or the plain lines.
func (s *Service) getLyricsBySongID(ctx context.Context, _ http.ResponseWriter, _ *http.Request, p params) (*response, error) {
	id, so, err := s.songParam(ctx, p)
	if err != nil {
		return nil, err
	}
	out := &lyricsList{StructuredLyrics: []structuredLyrics{}}
	if !so.HasLyrics {
		return &response{LyricsList: out}, nil
	}
	l, err := s.music.Lyrics(ctx, so.MD5)
	if errors.Is(err, music.ErrNoLyrics) {
		return &response{LyricsList: out}, nil
	}
	if err != nil {
		return nil, musicErr(err, id)
	}
	sl := structuredLyrics{DisplayArtist: so.Artist, DisplayTitle: so.Title, Lang: "xxx", Synced: l.Synced, Lines: []lyricLine{}}
	for _, ln := range l.Lines {
		line := lyricLine{Value: ln.Text}
		if l.Synced {
			ms := int64(ln.T*1000 + 0.5)
			line.Start = &ms
		}
		sl.Lines = append(sl.Lines, line)
	}
	out.StructuredLyrics = append(out.StructuredLyrics, sl)
	return &response{LyricsList: out}, nil
}
