package music

import (
	"fmt"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/catnest/catnest/internal/reslist"
	"github.com/catnest/catnest/shards"
)

// A node's track list is a resource list (internal/reslist) named
// "music": its summary {count, version} rides in the node's directory
// record, and others page it with ProtoList from the node alone.
const (
	resourceName = "music"
	// ProtoList: request = After (16 bytes) + Limit (uint16); answer = a
	// page of the node's track list (encodePage), in MD5 order.
	ProtoList = "music/list/1"
)

// Wire limits.
const (
	// MaxPage bounds the entries of one page; with MaxText a page stays
	// under MaxPageSize, inside one bulk frame.
	MaxPage = 100
	// MaxText bounds an entry's title, artist, album and name in bytes.
	MaxText = 200
	// MaxPageSize bounds an encoded page.
	MaxPageSize = 200 << 10
	maxFormat   = 8
)

// entry is one track of a node's list: what the node says of it, and the
// resources (shards MD5s) that hold its cover and lyrics, so that they
// travel with it. An entry with NoAudio only carries attachments the node
// made for a track it does not hold.
type entry struct {
	ID         shards.MD5 `json:"id"`
	Size       int64      `json:"s"`
	Name       string     `json:"n"`
	Title      string     `json:"ti,omitempty"`
	Artist     string     `json:"ar,omitempty"`
	Album      string     `json:"al,omitempty"`
	Track      int        `json:"tr,omitempty"`
	Year       int        `json:"y,omitempty"`
	Duration   float64    `json:"d,omitempty"`
	Format     string     `json:"f"`
	Bitrate    int        `json:"br,omitempty"`
	SampleRate int        `json:"sr,omitempty"`
	Channels   int        `json:"ch,omitempty"`
	Cover      shards.MD5 `json:"co"`
	Lyrics     shards.MD5 `json:"ly"`
	// AttAt is when a user attached the cover or lyrics (Unix ms); the
	// newest attachment wins across nodes. 0: from the file.
	AttAt   int64 `json:"at,omitempty"`
	NoAudio bool  `json:"na,omitempty"`
}

func entryKey(e entry) reslist.Key { return e.ID }

// entryHash hashes an entry for the list's version.
func entryHash(e entry) uint64 { return reslist.JSONHash(e) }

func entryCost(e entry) int64 {
	return int64(len(e.Name) + len(e.Title) + len(e.Artist) + len(e.Album) + len(e.Format))
}

// cleanText makes s fit an entry: valid UTF-8, no control characters, at
// most MaxText bytes (cut at a rune).
func cleanText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > MaxText {
		s = s[:MaxText]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

// checkText reports whether s is what cleanText makes of a string.
func checkText(s string) bool { return len(s) <= MaxText && cleanText(s) == s }

// check reports what is wrong with an entry from a peer.
func (e entry) check() error {
	for _, s := range []string{e.Name, e.Title, e.Artist, e.Album} {
		if !checkText(s) {
			return fmt.Errorf("%w: text %.40q", ErrBadPage, s)
		}
	}
	if len(e.Format) > maxFormat || !checkText(e.Format) {
		return fmt.Errorf("%w: format %.20q", ErrBadPage, e.Format)
	}
	if e.Size < 0 || e.Size > shards.MaxFileSize || e.Track < 0 || e.Year < 0 || e.Bitrate < 0 || e.SampleRate < 0 || e.Channels < 0 ||
		e.Track > 1e6 || e.Year > 1e5 || e.Bitrate > 1e9 || e.SampleRate > 1e7 || e.Channels > 1e3 {
		return fmt.Errorf("%w: numbers out of range in %s", ErrBadPage, e.ID)
	}
	if math.IsNaN(e.Duration) || e.Duration < 0 || e.Duration > 1e7 {
		return fmt.Errorf("%w: duration %v", ErrBadPage, e.Duration)
	}
	return nil
}

// pages encodes and decodes the list's pages and the requests for them.
var pages = reslist.JSONPages[entry]{
	MaxEntries: MaxPage,
	MaxBytes:   MaxPageSize,
	Err:        ErrBadPage,
	Key:        entryKey,
	Check:      func(e entry) error { return e.check() },
}

func encodePage(p reslist.Page[entry]) ([]byte, error) { return pages.EncodePage(p) }

// decodePage decodes a page from a peer: bounded in bytes and entries,
// every entry checked, in strictly increasing MD5 order.
func decodePage(b []byte) (reslist.Page[entry], error) { return pages.DecodePage(b) }

func encodeListReq(after reslist.Key, limit int) []byte { return pages.EncodeRequest(after, limit) }

func decodeListReq(p []byte) (reslist.Key, int, error) { return pages.DecodeRequest(p) }
