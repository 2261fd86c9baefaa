package meta

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
)

// id3Header is the 10-byte ID3v2 tag header.
type id3Header struct {
	version byte  // 2, 3 or 4
	flags   byte  //
	size    int64 // of the tag after the header, footer excluded
}

const (
	id3Unsync   = 0x80
	id3Extended = 0x40 // in 2.2: compression
	id3Footer   = 0x10
)

func syncsafe(b []byte) (int64, bool) {
	var v int64
	for _, c := range b {
		if c&0x80 != 0 {
			return 0, false
		}
		v = v<<7 | int64(c)
	}
	return v, true
}

// parseID3Header reads the ID3v2 header at 0; ok is false when there is none.
func parseID3Header(r io.ReaderAt) (id3Header, bool, error) {
	var b [10]byte
	if n, _ := r.ReadAt(b[:], 0); n < 10 || string(b[:3]) != "ID3" {
		return id3Header{}, false, nil
	}
	h := id3Header{version: b[3], flags: b[5]}
	size, ok := syncsafe(b[6:10])
	if !ok || b[3] < 2 || b[3] > 4 || b[4] == 0xff {
		return id3Header{}, true, fmt.Errorf("%w: bad ID3v2 header % x", ErrCorrupt, b[:])
	}
	h.size = size
	return h, true, nil
}

// id3v2End is the offset of the first byte after the ID3v2 tag at 0 (0 if
// none); a tag larger than the file is corrupt.
func id3v2End(r io.ReaderAt, fileSize int64) (int64, error) {
	h, ok, err := parseID3Header(r)
	if !ok || err != nil {
		return 0, err
	}
	end := 10 + h.size
	if h.version == 4 && h.flags&id3Footer != 0 {
		end += 10
	}
	if end > fileSize {
		return 0, fmt.Errorf("%w: ID3v2 tag of %d bytes in a file of %d", ErrCorrupt, end, fileSize)
	}
	return end, nil
}

// readID3v2 reads the ID3v2 tag at the start of r into info and returns the
// offset after it (0 without a tag). Frames over their limit are skipped
// unread; a frame overrunning the tag makes the tag, and so the file, corrupt.
func readID3v2(r io.ReaderAt, fileSize int64, info *Info) (int64, error) {
	h, ok, err := parseID3Header(r)
	if !ok || err != nil {
		return 0, err
	}
	end, err := id3v2End(r, fileSize)
	if err != nil {
		return 0, err
	}
	if h.version == 2 && h.flags&id3Extended != 0 {
		return end, nil // 2.2 compression has no defined scheme: ignore the tag
	}
	var body io.ReaderAt = io.NewSectionReader(r, 10, h.size)
	bodyLen := h.size
	if h.flags&id3Unsync != 0 && h.version < 4 {
		b, err := readFull(r, 10, h.size, MaxUnsyncTag)
		if err != nil {
			return 0, fmt.Errorf("unsynchronised ID3v2 tag: %w", err)
		}
		b = resync(b)
		body, bodyLen = bytes.NewReader(b), int64(len(b))
	}
	var off int64
	if h.flags&id3Extended != 0 && h.version >= 3 {
		var b [4]byte
		if _, err := body.ReadAt(b[:], 0); err != nil {
			return 0, fmt.Errorf("%w: ID3v2 extended header: %w", ErrCorrupt, err)
		}
		if h.version == 3 {
			off = 4 + int64(binary.BigEndian.Uint32(b[:]))
		} else {
			n, ok := syncsafe(b[:])
			if !ok {
				return 0, fmt.Errorf("%w: ID3v2.4 extended header size % x", ErrCorrupt, b)
			}
			off = n
		}
		if off > bodyLen {
			return 0, fmt.Errorf("%w: ID3v2 extended header of %d bytes overruns the tag of %d", ErrCorrupt, off, bodyLen)
		}
	}
	t := id3Tag{version: h.version, tagUnsync: h.flags&id3Unsync != 0}
	if err := t.frames(body, off, bodyLen); err != nil {
		return 0, err
	}
	t.apply(info)
	return end, nil
}

// id3Tag collects the frames Read uses.
type id3Tag struct {
	version   byte
	tagUnsync bool
	text      map[string]string // frame id (2.3/2.4 names) → first value
	lyrics    string
	coverType string
	cover     []byte
	coverKind byte // picture type of cover; 3 is the front cover
}

// v22 maps ID3v2.2's three-letter frame ids to 2.3's.
var v22 = map[string]string{
	"TT2": "TIT2", "TP1": "TPE1", "TP2": "TPE2", "TAL": "TALB", "TRK": "TRCK",
	"TYE": "TYER", "ULT": "USLT", "PIC": "APIC",
}

func (t *id3Tag) frames(body io.ReaderAt, off, bodyLen int64) error {
	hdrLen := int64(10)
	if t.version == 2 {
		hdrLen = 6
	}
	for off+hdrLen <= bodyLen {
		var hb [10]byte
		if _, err := body.ReadAt(hb[:hdrLen], off); err != nil {
			return fmt.Errorf("%w: ID3v2 frame header at %d: %w", ErrCorrupt, off, err)
		}
		var id string
		var size int64
		var flags uint16
		if t.version == 2 {
			id = string(hb[:3])
			size = int64(hb[3])<<16 | int64(hb[4])<<8 | int64(hb[5])
		} else {
			id = string(hb[:4])
			flags = binary.BigEndian.Uint16(hb[8:10])
			size = int64(binary.BigEndian.Uint32(hb[4:8]))
			if t.version == 4 {
				// 2.4 sizes are syncsafe; some taggers wrote plain ones.
				if s, ok := syncsafe(hb[4:8]); ok {
					size = s
				}
			}
		}
		if !validFrameID(id) {
			return nil // padding, or junk after the last frame
		}
		off += hdrLen
		if size > bodyLen-off {
			return fmt.Errorf("%w: ID3v2 frame %s of %d bytes overruns the tag (%d left)", ErrCorrupt, id, size, bodyLen-off)
		}
		if t.version == 2 {
			if m, ok := v22[id]; ok {
				id = m
			} else {
				id = ""
			}
		}
		limit := int64(MaxText)
		switch {
		case id == "APIC":
			limit = MaxCover + 1024
		case id == "USLT" || strings.HasPrefix(id, "T") && id != "TXXX":
		default:
			limit = -1 // not used
		}
		if limit >= 0 && size <= limit {
			data, err := readFull(body, off, size, limit)
			if err != nil {
				return err
			}
			if data, ok := t.unwrap(data, flags); ok {
				t.frame(id, data)
			}
		}
		off += size
	}
	return nil
}

func validFrameID(id string) bool {
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// unwrap undoes a frame's format flags (2.3 and 2.4): grouping, data length
// indicator, per-frame unsynchronisation, zlib compression. Encrypted
// frames are dropped.
func (t *id3Tag) unwrap(data []byte, flags uint16) ([]byte, bool) {
	var group, compressed, encrypted, unsync, dli bool
	switch t.version {
	case 3:
		compressed, encrypted, group = flags&0x80 != 0, flags&0x40 != 0, flags&0x20 != 0
	case 4:
		group, compressed, encrypted = flags&0x40 != 0, flags&0x08 != 0, flags&0x04 != 0
		unsync, dli = flags&0x02 != 0 || t.tagUnsync, flags&0x01 != 0
	}
	if encrypted {
		return nil, false
	}
	if t.version == 3 && compressed {
		if len(data) < 4 {
			return nil, false
		}
		data = data[4:] // the decompressed size
	}
	if group {
		if len(data) < 1 {
			return nil, false
		}
		data = data[1:]
	}
	if dli {
		if len(data) < 4 {
			return nil, false
		}
		data = data[4:]
	}
	if unsync {
		data = resync(data)
	}
	if compressed {
		zr, err := zlib.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, false
		}
		out, err := io.ReadAll(io.LimitReader(zr, MaxCover+1))
		if err != nil || len(out) > MaxCover {
			return nil, false
		}
		data = out
	}
	return data, true
}

// resync undoes unsynchronisation: every 0xFF 0x00 becomes 0xFF.
func resync(b []byte) []byte {
	out := b[:0]
	for i := 0; i < len(b); i++ {
		out = append(out, b[i])
		if b[i] == 0xff && i+1 < len(b) && b[i+1] == 0 {
			i++
		}
	}
	return out
}

func (t *id3Tag) frame(id string, data []byte) {
	if len(data) == 0 {
		return
	}
	switch {
	case id == "APIC":
		t.picture(data)
	case id == "USLT":
		// encoding, language (3), descriptor, text
		if len(data) < 4 || t.lyrics != "" {
			return
		}
		enc := data[0]
		_, rest := splitText(enc, data[4:])
		t.lyrics = decodeText(enc, rest)
	case strings.HasPrefix(id, "T"):
		if t.text == nil {
			t.text = make(map[string]string)
		}
		if _, ok := t.text[id]; ok {
			return
		}
		v, _ := splitText(data[0], data[1:]) // the first of 2.4's values
		t.text[id] = decodeText(data[0], v)
	}
}

// picture reads APIC (2.3/2.4: encoding, MIME, type, description, data) or
// PIC (2.2: encoding, 3-letter format, type, description, data), keeping
// the front cover, else the first picture.
func (t *id3Tag) picture(data []byte) {
	if len(data) < 2 {
		return
	}
	enc := data[0]
	var mime string
	rest := data[1:]
	if t.version == 2 {
		if len(rest) < 3 {
			return
		}
		mime = "image/" + strings.ToLower(string(rest[:3]))
		if mime == "image/jpg" {
			mime = "image/jpeg"
		}
		rest = rest[3:]
	} else {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return
		}
		mime = strings.ToLower(latin1(rest[:i]))
		rest = rest[i+1:]
	}
	if len(rest) < 1 {
		return
	}
	kind := rest[0]
	_, img := splitText(enc, rest[1:])
	if len(img) == 0 || len(img) > MaxCover {
		return
	}
	if t.cover != nil && (t.coverKind == 3 || kind != 3) {
		return
	}
	if !strings.Contains(mime, "/") {
		mime = "image/" + mime
	}
	if mime == "image/jpg" {
		mime = "image/jpeg"
	}
	t.coverType, t.cover, t.coverKind = mime, bytes.Clone(img), kind
}

// splitText splits b at the first terminator of encoding enc (one NUL for
// Latin-1 and UTF-8, two aligned NULs for UTF-16).
func splitText(enc byte, b []byte) (text, rest []byte) {
	if enc == 1 || enc == 2 {
		for i := 0; i+1 < len(b); i += 2 {
			if b[i] == 0 && b[i+1] == 0 {
				return b[:i], b[i+2:]
			}
		}
		return b, nil
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}

// decodeText decodes ID3v2 text of encoding enc: 0 Latin-1, 1 UTF-16 with
// a byte order mark, 2 UTF-16BE, 3 UTF-8.
func decodeText(enc byte, b []byte) string {
	switch enc {
	case 1, 2:
		big := true
		if enc == 1 && len(b) >= 2 {
			switch {
			case b[0] == 0xff && b[1] == 0xfe:
				big, b = false, b[2:]
			case b[0] == 0xfe && b[1] == 0xff:
				b = b[2:]
			}
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			if big {
				u[i] = binary.BigEndian.Uint16(b[2*i:])
			} else {
				u[i] = binary.LittleEndian.Uint16(b[2*i:])
			}
		}
		return clean(string(utf16.Decode(u)))
	case 3:
		return clean(string(b))
	default:
		return clean(latin1(b))
	}
}

func (t *id3Tag) apply(info *Info) {
	info.Title = t.text["TIT2"]
	info.Artist = t.text["TPE1"]
	if info.Artist == "" {
		info.Artist = t.text["TPE2"]
	}
	info.Album = t.text["TALB"]
	info.Track = number(t.text["TRCK"])
	for _, id := range []string{"TDRC", "TYER", "TDOR", "TORY"} {
		if y := number(t.text[id]); y != 0 {
			info.Year = y
			break
		}
	}
	info.Lyrics = t.lyrics
	info.CoverType, info.Cover = t.coverType, t.cover
}

// readID3v1 reads an ID3v1(.1) tag from the last 128 bytes into the fields
// of info still empty; it returns whether there was one.
func readID3v1(r io.ReaderAt, size int64, info *Info) bool {
	if size < 128 {
		return false
	}
	var b [128]byte
	if n, _ := r.ReadAt(b[:], size-128); n < 128 || string(b[:3]) != "TAG" {
		return false
	}
	field := func(f []byte) string {
		if i := bytes.IndexByte(f, 0); i >= 0 {
			f = f[:i]
		}
		return clean(latin1(f))
	}
	set := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	set(&info.Title, field(b[3:33]))
	set(&info.Artist, field(b[33:63]))
	set(&info.Album, field(b[63:93]))
	if info.Year == 0 {
		info.Year = number(field(b[93:97]))
	}
	if info.Track == 0 && b[125] == 0 && b[126] != 0 {
		info.Track = int(b[126])
	}
	return true
}
