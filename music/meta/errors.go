package meta

import "errors"

var (
	// ErrNotAudio is returned for a file whose content is none of the
	// formats read here, whatever its extension says.
	ErrNotAudio = errors.New("meta: not an MP3, FLAC or WAV file")
	// ErrCorrupt is returned (wrapped with the reason) for a file of a known
	// format whose structure is broken: truncated, or a tag or chunk whose
	// declared size overruns the file.
	ErrCorrupt = errors.New("meta: corrupt file")
	// ErrImageTooBig is returned by Thumbnail for an image whose declared
	// dimensions exceed MaxImagePixels: it is refused before decoding.
	ErrImageTooBig = errors.New("meta: image too big")
)
