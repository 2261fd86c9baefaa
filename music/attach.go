package music

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // covers: JPEG and PNG
	_ "image/png"
	"io"
	"net/http"
	"slices"
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

// Cover returns a track's cover (ErrBanned for a banned track, whose
// cover is fetched no more than its audio): the user's attachment (the
// newest of any node's), else the embedded or sidecar one; with thumb, a JPEG of at
// most Config.ThumbSize pixels a side, kept once made.
func (s *Service) Cover(ctx context.Context, id shards.MD5, thumb bool) (string, []byte, error) {
	t, err := s.playable(ctx, id)
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
		return "", nil, fmt.Errorf("%w: %s: %w", ErrNoCover, id, err)
	}
	if !thumb {
		// Any node can name any resource as a track's cover: what is
		// not an image it could be attached as is no cover.
		if err := checkImage(data); err != nil {
			return "", nil, fmt.Errorf("%w: %s: %w", ErrNoCover, id, err)
		}
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

// Lyrics returns a track's lyrics (ErrBanned for a banned track),
// parsed: synced lines when they have
// time tags, else the plain text.
func (s *Service) Lyrics(ctx context.Context, id shards.MD5) (Lyrics, error) {
	t, err := s.playable(ctx, id)
	if err != nil {
		return Lyrics{}, err
	}
	if t.lyrics.IsZero() {
		return Lyrics{}, fmt.Errorf("%w: %s", ErrNoLyrics, id)
	}
	data, err := s.readResource(ctx, t.lyrics, MaxLyrics)
	if err != nil {
		return Lyrics{}, fmt.Errorf("%w: %s: %w", ErrNoLyrics, id, err)
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
// is an error, and the download that opening it started is removed: a
// peer may name a film as a track's lyrics, and opening a resource
// fetches all of it.
func (s *Service) readResource(ctx context.Context, id shards.MD5, max int64) ([]byte, error) {
	start := time.Now()
	// A peer's attachment is fetched for music, not for the user: its
	// download stays out of the Files view. (One held here, shared or
	// downloaded, is read as it is.) A failure is Open's to report.
	if _, err := s.shards.Fetch(ctx, shards.Link{ID: id, For: resourceName}); err != nil {
		s.log.Debug("fetch of an attachment", "id", id, "err", err)
	}
	c, err := s.shards.Open(ctx, id)
	if err != nil {
		return nil, err
	}
	if size := c.Size(); size > max {
		c.Close()
		s.dropStarted(ctx, id, start)
		return nil, fmt.Errorf("attachment of %d bytes (at most %d)", size, max)
	}
	defer c.Close()
	return io.ReadAll(io.LimitReader(c, max))
}

// dropStarted removes the download of id if it began at start or later
// (by this node's reads, not one the user started before).
func (s *Service) dropStarted(ctx context.Context, id shards.MD5, start time.Time) {
	all, err := s.shards.Shares(ctx)
	if err != nil {
		return
	}
	i := slices.IndexFunc(all, func(t shards.Transfer) bool { return t.ID == id })
	if i < 0 || all[i].State == shards.StateSeeding || all[i].Added.Before(start) {
		return
	}
	// Only music's: a download of it the user started meanwhile stays.
	gone, err := s.shards.RemoveFor(ctx, id, resourceName)
	if err != nil && !errors.Is(err, shards.ErrNotOwned) {
		s.log.Warn("oversized attachment not removed", "id", id, "err", err)
	}
	if err == nil {
		// One that finished has a file no one wants.
		if err := s.dropFile(ctx, gone); err != nil {
			s.log.Warn("oversized attachment's file not removed", "id", id, "err", err)
		}
	}
}

// checkImage reports whether data is a JPEG or PNG image within
// MaxCoverPixels, as SetCover takes.
func checkImage(data []byte) error {
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not a JPEG or PNG image: %w", err)
	}
	if int64(cfg.Width)*int64(cfg.Height) > MaxCoverPixels {
		return fmt.Errorf("image of %dx%d pixels", cfg.Width, cfg.Height)
	}
	return nil
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
