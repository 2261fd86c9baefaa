package meta

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/mewkiz/flac"
	flacmeta "github.com/mewkiz/flac/meta"
)

// readFLAC reads the metadata blocks of the FLAC stream at off with
// mewkiz/flac, which bounds each block by its 24-bit length (16 MiB) and
// checks declared string and picture lengths against it before allocating.
// Audio frames are not read.
func readFLAC(r io.ReaderAt, off, size int64) (info Info, err error) {
	defer func() {
		// The library is fuzzed upstream, but a panic on a hostile file
		// must not take a scan down.
		if p := recover(); p != nil {
			info, err = Info{}, fmt.Errorf("%w: FLAC parser: %v", ErrCorrupt, p)
		}
	}()
	if err := checkFLACBlocks(r, off, size); err != nil {
		return Info{}, err
	}
	stream, err := flac.Parse(io.NewSectionReader(r, off, size-off))
	if err != nil {
		return Info{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	si := stream.Info
	if si == nil || si.SampleRate == 0 {
		return Info{}, fmt.Errorf("%w: FLAC without a sample rate", ErrCorrupt)
	}
	info = Info{Format: "flac", SampleRate: int(si.SampleRate), Channels: int(si.NChannels)}
	info.Duration = float64(si.NSamples) / float64(si.SampleRate)
	metaBytes := int64(4 + 4 + 34) // "fLaC", STREAMINFO
	var coverKind uint32
	for _, b := range stream.Blocks {
		metaBytes += 4 + b.Header.Length
		switch body := b.Body.(type) {
		case *flacmeta.VorbisComment:
			vorbis(body.Tags, &info)
		case *flacmeta.Picture:
			if len(body.Data) == 0 || len(body.Data) > MaxCover {
				continue
			}
			if info.Cover != nil && (coverKind == 3 || body.Type != 3) {
				continue
			}
			info.CoverType, info.Cover, coverKind = strings.ToLower(body.MIME), body.Data, body.Type
		}
	}
	if info.Duration > 0 && size-off > metaBytes {
		info.Bitrate = int(float64((size-off-metaBytes)*8) / info.Duration)
	}
	return info, nil
}

// checkFLACBlocks walks the metadata block headers before mewkiz/flac
// parses them: every block must fit in the file, and a PICTURE's declared
// data length in its block. mewkiz/flac bounds strings by the block but
// allocates a picture of any declared length up to 128 MB first, so a
// 100-byte file could cost 128 MB.
func checkFLACBlocks(r io.ReaderAt, off, size int64) error {
	p := off + 4
	for {
		var h [4]byte
		if _, err := r.ReadAt(h[:], p); err != nil {
			return fmt.Errorf("%w: FLAC metadata block header at %d: %w", ErrCorrupt, p, err)
		}
		n := int64(h[1])<<16 | int64(h[2])<<8 | int64(h[3])
		p += 4
		if n > size-p {
			return fmt.Errorf("%w: FLAC metadata block of %d bytes overruns the file (%d left)", ErrCorrupt, n, size-p)
		}
		if h[0]&0x7f == 6 { // PICTURE: type, MIME, description, 4 numbers, data
			q := p + 4
			for i := 0; i < 2; i++ {
				l, err := flacUint32(r, q)
				if err != nil || l > p+n-q-4 {
					return fmt.Errorf("%w: FLAC picture string overruns its block", ErrCorrupt)
				}
				q += 4 + l
			}
			q += 16
			l, err := flacUint32(r, q)
			if err != nil || l > p+n-q-4 {
				return fmt.Errorf("%w: FLAC picture data of %d bytes overruns its block of %d", ErrCorrupt, l, n)
			}
		}
		p += n
		if h[0]&0x80 != 0 {
			return nil
		}
	}
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
