package meta

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	flacmeta "github.com/mewkiz/flac/meta"
)

// maxFLACBlocks bounds the metadata blocks walked: a file has a handful
// (STREAMINFO, SEEKTABLE, VORBIS_COMMENT, PICTURE, PADDING); a gigabyte of
// empty 4-byte blocks would otherwise cost 250 million reads.
const maxFLACBlocks = 4096

// readFLAC reads the metadata blocks of the FLAC stream at off. The block
// headers are walked here; mewkiz/flac parses the blocks Read uses
// (STREAMINFO, VORBIS_COMMENT, and a PICTURE when it is better than the
// cover already found) one at a time, so what stays in memory is one
// cover and the tags, whatever else the file holds. Audio frames are not
// read.
func readFLAC(r io.ReaderAt, off, size int64) (info Info, err error) {
	defer func() {
		// The library is fuzzed upstream, but a panic on a hostile file
		// must not take a scan down.
		if p := recover(); p != nil {
			info, err = Info{}, fmt.Errorf("%w: FLAC parser: %v", ErrCorrupt, p)
		}
	}()
	info = Info{Format: "flac"}
	var coverKind uint32
	var haveInfo bool
	p := off + 4
	for i := 0; ; i++ {
		if i == maxFLACBlocks {
			return Info{}, fmt.Errorf("%w: over %d FLAC metadata blocks", ErrCorrupt, maxFLACBlocks)
		}
		typ, last, n, picLen, err := flacBlock(r, p, size)
		if err != nil {
			return Info{}, err
		}
		parse := func() (any, error) {
			block, err := flacmeta.Parse(bufio.NewReader(io.NewSectionReader(r, p, 4+n)))
			if err != nil {
				return nil, fmt.Errorf("%w: FLAC metadata block of type %d: %w", ErrCorrupt, typ, err)
			}
			return block.Body, nil
		}
		switch {
		case i == 0:
			if typ != 0 {
				return Info{}, fmt.Errorf("%w: FLAC without STREAMINFO first", ErrCorrupt)
			}
			body, err := parse()
			if err != nil {
				return Info{}, err
			}
			si := body.(*flacmeta.StreamInfo)
			if si.SampleRate == 0 {
				return Info{}, fmt.Errorf("%w: FLAC without a sample rate", ErrCorrupt)
			}
			info.SampleRate, info.Channels = int(si.SampleRate), int(si.NChannels)
			info.Duration = float64(si.NSamples) / float64(si.SampleRate)
			haveInfo = true
		case typ == 4:
			body, err := parse()
			if err != nil {
				return Info{}, err
			}
			vorbis(body.(*flacmeta.VorbisComment).Tags, &info)
		case typ == 6 && picLen > 0 && picLen <= MaxCover:
			kind, err := flacUint32(r, p+4)
			if err != nil {
				return Info{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
			}
			if info.Cover != nil && (coverKind == 3 || kind != 3) {
				break // not better than the cover kept: not read
			}
			body, err := parse()
			if err != nil {
				return Info{}, err
			}
			pic := body.(*flacmeta.Picture)
			info.CoverType, info.Cover, coverKind = strings.ToLower(pic.MIME), pic.Data, pic.Type
		}
		p += 4 + n
		if last {
			break
		}
	}
	if !haveInfo {
		return Info{}, fmt.Errorf("%w: FLAC without STREAMINFO", ErrCorrupt)
	}
	if audio := size - p; info.Duration > 0 && audio > 0 {
		info.Bitrate = int(float64(audio*8) / info.Duration)
	}
	return info, nil
}

// flacBlock reads the metadata block header at p and checks, before
// mewkiz/flac parses anything, that the block fits in the file and a
// PICTURE's strings and data fit in the block: mewkiz/flac bounds strings
// by the block but allocates a picture of any declared length up to 128 MB
// first, so a 100-byte file could cost 128 MB. picLen is a PICTURE's data
// length.
func flacBlock(r io.ReaderAt, p, size int64) (typ byte, last bool, n, picLen int64, err error) {
	var h [4]byte
	if _, err := r.ReadAt(h[:], p); err != nil {
		return 0, false, 0, 0, fmt.Errorf("%w: FLAC metadata block header at %d: %w", ErrCorrupt, p, err)
	}
	typ, last = h[0]&0x7f, h[0]&0x80 != 0
	n = int64(h[1])<<16 | int64(h[2])<<8 | int64(h[3])
	body := p + 4
	if n > size-body {
		return 0, false, 0, 0, fmt.Errorf("%w: FLAC metadata block of %d bytes overruns the file (%d left)", ErrCorrupt, n, size-body)
	}
	if typ == 6 { // PICTURE: type, MIME, description, 4 numbers, data
		q := body + 4
		for i := 0; i < 2; i++ {
			l, err := flacUint32(r, q)
			if err != nil || l > body+n-q-4 {
				return 0, false, 0, 0, fmt.Errorf("%w: FLAC picture string overruns its block", ErrCorrupt)
			}
			q += 4 + l
		}
		q += 16
		l, err := flacUint32(r, q)
		if err != nil || l > body+n-q-4 {
			return 0, false, 0, 0, fmt.Errorf("%w: FLAC picture data of %d bytes overruns its block of %d", ErrCorrupt, l, n)
		}
		picLen = l
	}
	return typ, last, n, picLen, nil
}

func flacUint32(r io.ReaderAt, off int64) (int64, error) {
	var b [4]byte
	if _, err := r.ReadAt(b[:], off); err != nil {
		return 0, err
	}
	return int64(binary.BigEndian.Uint32(b[:])), nil
}

// vorbis applies Vorbis comments (FLAC's tags) to the fields still empty.
func vorbis(tags [][2]string, info *Info) {
	for _, kv := range tags {
		v := clean(kv[1])
		switch strings.ToUpper(kv[0]) {
		case "TITLE":
			setStr(&info.Title, v)
		case "ARTIST":
			setStr(&info.Artist, v)
		case "ALBUMARTIST", "ALBUM ARTIST":
			if info.Artist == "" {
				defer setStr(&info.Artist, v) // only if no ARTIST at all
			}
		case "ALBUM":
			setStr(&info.Album, v)
		case "TRACKNUMBER":
			if info.Track == 0 {
				info.Track = number(v)
			}
		case "DATE", "YEAR":
			if info.Year == 0 {
				info.Year = number(v)
			}
		case "LYRICS", "UNSYNCEDLYRICS":
			if len(v) <= MaxText {
				setStr(&info.Lyrics, v)
			}
		}
	}
}

func setStr(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}
