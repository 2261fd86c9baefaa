package music

import "errors"

var (
	// ErrUnknown is returned for a track no online node holds.
	ErrUnknown = errors.New("music: unknown track")
	// ErrBanned is returned when a banned track is asked to play.
	ErrBanned = errors.New("music: track is banned")
	// ErrBadPattern is returned for a ban pattern that is not a valid
	// regular expression (wrapped with the reason).
	ErrBadPattern = errors.New("music: bad ban pattern")
	// ErrBadInput is returned for a bad attachment: a cover that is not
	// an image, lyrics over the size limit.
	ErrBadInput = errors.New("music: bad input")
	// ErrNoCover and ErrNoLyrics are returned for a track without them.
	ErrNoCover  = errors.New("music: no cover")
	ErrNoLyrics = errors.New("music: no lyrics")
)

// ErrBadPage is returned for a track list page from a peer that breaks
// the rules; the peer is scored down.
var ErrBadPage = errors.New("music: bad track list page")
