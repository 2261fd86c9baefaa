package meta

import (
	"bytes"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"
)

// What reads what, and why:
//   - FLAC: mewkiz/flac parses the metadata blocks (STREAMINFO, Vorbis
//     comments, PICTURE); it bounds strings by their block, and the block
//     headers are checked here first (see checkFLACBlocks).
//   - MP3 audio: hand-written frame headers, Xing/Info (with the LAME tag's
//     delay and padding) and VBRI. go-mp3 keeps its frame header parser
//     internal and its NewDecoder decodes the first frame and reads every
//     frame's body into a new buffer to find the length; Read needs only the
//     4-byte headers, read in blocks.
//   - ID3v2/ID3v1: hand-written. dhowden/tag, the one maintained Go tag
//     reader, drops the whole tag on one bad frame, reads a frame's declared
//     length without bounding it by the tag (a 2.3 frame may declare 4 GB),
//     and treats 2.4's data length indicator as the stored length.
//   - WAV: RIFF chunks are a few lines; no library needed.
//
// Limits on what Read keeps from a file: anything larger is skipped without
// being read, so a file that declares a gigabyte of tag costs nothing.
const (
	// MaxCover is the largest embedded picture kept.
	MaxCover = 16 << 20
	// MaxText is the largest text frame or comment read (lyrics are text).
	MaxText = 1 << 20
	// MaxUnsyncTag is the largest ID3v2.2/2.3 tag read whole to undo its
	// unsynchronisation (those versions unsynchronise the frame headers too,
	// so the frames cannot be found without it).
	MaxUnsyncTag = 32 << 20
)

// Read reads the tags and audio properties of the file r of size bytes.
// The format is found from the content: the name (used only in errors and
// to try its extension's format first) does not make a text file an MP3.
// It reads the headers and tags only, never decoding audio; an MP3 without
// a Xing, Info or VBRI header is measured by walking its frame headers.
// A file of no known format gives ErrNotAudio, a broken one ErrCorrupt.
func Read(r io.ReaderAt, size int64, name string) (Info, error) {
	var head [12]byte
	n, err := r.ReadAt(head[:], 0)
	if n < len(head) && err != nil && err != io.EOF {
		return Info{}, fmt.Errorf("meta: %s: %w", name, err)
	}
	h := head[:n]
	var info Info
	switch {
	case bytes.HasPrefix(h, []byte("fLaC")):
		info, err = readFLAC(r, 0, size)
	case len(h) >= 12 && bytes.HasPrefix(h, []byte("RIFF")) && string(h[8:12]) == "WAVE":
		info, err = readWAV(r, size)
	case bytes.HasPrefix(h, []byte("ID3")):
		// An ID3v2 tag may stand before FLAC too.
		end, herr := id3v2End(r, size)
		if herr != nil {
			return Info{}, fmt.Errorf("meta: %s: %w", name, herr)
		}
		var sig [4]byte
		if _, err := r.ReadAt(sig[:], end); err == nil && string(sig[:]) == "fLaC" {
			info, err = readFLAC(r, end, size)
			break
		}
		info, err = readMP3(r, size)
	default:
		if strings.EqualFold(path.Ext(name), ".flac") || strings.EqualFold(path.Ext(name), ".wav") {
			// Their magic is at the start; without it this is not one.
			return Info{}, fmt.Errorf("meta: %s: %w", name, ErrNotAudio)
		}
		info, err = readMP3(r, size)
	}
	if err != nil {
		return Info{}, fmt.Errorf("meta: %s: %w", name, err)
	}
	return info, nil
}

// number parses the leading decimal number of s ("3/12" → 3,
// "2021-05-03" → 2021); 0 if none.
func number(s string) int {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && i < 9 && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	v, _ := strconv.Atoi(s[:i])
	return v
}

// clean trims what tags pad text with and makes it valid UTF-8.
func clean(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return strings.TrimRight(strings.TrimSpace(s), "\x00")
}

// latin1 decodes ISO-8859-1, the encoding of ID3v1, ID3v2 encoding 0 and
// RIFF INFO.
func latin1(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b))
	for _, c := range b {
		sb.WriteRune(rune(c))
	}
	return sb.String()
}

// readFull reads exactly n bytes at off, refusing more than limit before
// allocating.
func readFull(r io.ReaderAt, off, n, limit int64) ([]byte, error) {
	if n < 0 || n > limit {
		return nil, fmt.Errorf("%w: %d bytes over the limit of %d", ErrCorrupt, n, limit)
	}
	b := make([]byte, n)
	m, err := r.ReadAt(b, off)
	if m < len(b) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return b, nil
}

// isUTF8 tells whether b is valid UTF-8 with some non-ASCII byte: RIFF INFO
// says nothing of its encoding, and today's taggers write UTF-8.
func isUTF8(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return utf8.Valid(b)
		}
	}
	return false
}
