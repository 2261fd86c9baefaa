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
	// ErrUsersCopy is returned by RemoveCache for a track whose copy is a
	// download the user made (in the Files view, before or after playing
	// it), not the cache's: nothing is removed, and the API says why
	// rather than that there is no copy.
	ErrUsersCopy = errors.New("music: the copy is the user's download, not the cache's")
	// ErrPaused is returned by StreamAhead for a track whose download the
	// user paused: reading ahead leaves it paused, and a reader of it
	// would wait for pieces that do not come.
	ErrPaused = errors.New("music: the track's download is paused")
)

// ErrBadPage is returned for a track list page from a peer that breaks
// the rules; the peer is scored down.
var ErrBadPage = errors.New("music: bad track list page")
