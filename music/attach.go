package music

import (
	"bytes"
	"context"
	"fmt"
	"image"
	_ "image/jpeg" // covers: JPEG and PNG
	_ "image/png"
	"io"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/catnest/catnest/music/lrc"
	"github.com/catnest/catnest/music/meta"
	"github.com/catnest/catnest/shards"
)

// Attachment limits.
const (
	// MaxCover bounds a cover's bytes, attached or fetched.
	MaxCover = 8 << 20
	// MaxCoverPixels bounds a cover's pixels, checked before decoding.
	MaxCoverPixels = 40 << 20
	// MaxLyrics bounds lyrics' bytes.
	MaxLyrics = 256 << 10
)

// Cover returns a track's cover: the user's attachment (the newest of any
// node's), else the embedded or sidecar one; with thumb, a JPEG of at
// most Config.ThumbSize pixels a side, kept once made.
func (s *Service) Cover(ctx context.Context, id shards.MD5, thumb bool) (string, []byte, error) {
	t, err := s.lookup(ctx, id)
	if err != nil {
		return "", nil, err
	}
	if t.cover.IsZero() {
		return "", nil, fmt.Errorf("%w: %s", ErrNoCover, id)
	}
	if thumb {
		if b := s.getBytes(bucketThumbs, t.cover[:]); b != nil {
			return "image/jpeg", b, nil
		}
	}
	data, err := s.readResource(ctx, t.cover, MaxCover)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %s: %v", ErrNoCover, id, err)
	}
	if !thumb {
		return http.DetectContentType(data), data, nil
	}
	small, err := meta.Thumbnail(data, s.cfg.ThumbSize)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %s: %v", ErrNoCover, id, err)
	}
	if err := s.putBytes(bucketThumbs, t.cover[:], small); err != nil {
		s.log.Warn("keep thumbnail", "err", err)
	}
	return "image/jpeg", small, nil
}

// Lyrics returns a track's lyrics, parsed: synced lines when they have
// time tags, else the plain text.
func (s *Service) Lyrics(ctx context.Context, id shards.MD5) (Lyrics, error) {
	t, err := s.lookup(ctx, id)
	if err != nil {
		return Lyrics{}, err
	}
	if t.lyrics.IsZero() {
		return Lyrics{}, fmt.Errorf("%w: %s", ErrNoLyrics, id)
	}
	data, err := s.readResource(ctx, t.lyrics, MaxLyrics)
	if err != nil {
		return Lyrics{}, fmt.Errorf("%w: %s: %v", ErrNoLyrics, id, err)
	}
	return parseLyrics(string(data)), nil
}

// parseLyrics converts lrc's lyrics to the API's.
func parseLyrics(raw string) Lyrics {
	l := lrc.Parse(raw)
	out := Lyrics{Synced: l.Synced, Raw: raw, Lines: make([]Line, 0, len(l.Lines))}
	for _, x := range l.Lines {
		out.Lines = append(out.Lines, Line{T: x.T, Text: x.Text})
	}
	return out
}

// readResource reads a small resource whole (an attachment): in place if
// this node holds it, else fetched from its holders. More than max bytes
// is an error.
func (s *Service) readResource(ctx context.Context, id shards.MD5, max int64) ([]byte, error) {
	c, err := s.shards.Open(ctx, id)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if c.Size() > max {
		return nil, fmt.Errorf("%d bytes (at most %d)", c.Size(), max)
	}
	return io.ReadAll(io.LimitReader(c, max))
}

// SetCover attaches a cover (JPEG or PNG) to a track; it travels with
// the track's entry in this node's list.
func (s *Service) SetCover(ctx context.Context, id shards.MD5, mime string, data []byte) error {
	if len(data) > MaxCover {
		return fmt.Errorf("%w: cover of %d bytes (at most %d)", ErrBadInput, len(data), MaxCover)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%w: cover is not a JPEG or PNG image: %v", ErrBadInput, err)
	}
	if int64(cfg.Width)*int64(cfg.Height) > MaxCoverPixels {
		return fmt.Errorf("%w: cover of %dx%d pixels", ErrBadInput, cfg.Width, cfg.Height)
	}
	ext := ".jpg"
	if format == "png" {
		ext = ".png"
	}
	return s.attach(ctx, id, data, ext, func(a *attachment, res shards.MD5) { a.Cover = res })
}

// SetLyrics attaches lyrics (LRC or plain text) to a track.
func (s *Service) SetLyrics(ctx context.Context, id shards.MD5, raw string) error {
	if len(raw) > MaxLyrics {
		return fmt.Errorf("%w: lyrics of %d bytes (at most %d)", ErrBadInput, len(raw), MaxLyrics)
	}
	if !utf8.ValidString(raw) || raw == "" {
		return fmt.Errorf("%w: lyrics are empty or not UTF-8 text", ErrBadInput)
	}
	return s.attach(ctx, id, []byte(raw), ".lrc", func(a *attachment, res shards.MD5) { a.Lyrics = res })
}

// attach keeps data as a shared resource and records it as set says.
func (s *Service) attach(ctx context.Context, id shards.MD5, data []byte, ext string, set func(*attachment, shards.MD5)) error {
	t, err := s.lookup(ctx, id)
	if err != nil {
		return err
	}
	res, err := s.storeAttachment(ctx, data, ext)
	if err != nil {
		return err
	}
	if !t.Local {
		if err := s.remember(t); err != nil {
			return err
		}
	}
	s.mu.Lock()
	a := s.atts[id]
	set(&a, res)
	a.At = max(time.Now().UnixMilli(), a.At+1)
	s.atts[id] = a
	s.mu.Unlock()
	if err := s.putJSON(bucketAtts, id[:], a); err != nil {
		return err
	}
	if s.syncOwn() {
		s.changed()
	}
	return nil
}
