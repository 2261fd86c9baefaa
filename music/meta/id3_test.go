package meta

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"unicode/utf16"
)

func ss(n int) []byte { // syncsafe
	return []byte{byte(n >> 21 & 127), byte(n >> 14 & 127), byte(n >> 7 & 127), byte(n & 127)}
}

// frame23 and frame24 make ID3v2.3/2.4 frames; frame22 a 2.2 one.
func frame23(id string, flags uint16, data []byte) []byte {
	b := append([]byte(id), 0, 0, 0, 0, byte(flags>>8), byte(flags))
	binary.BigEndian.PutUint32(b[4:], uint32(len(data)))
	return append(b, data...)
}

func frame24(id string, flags uint16, data []byte) []byte {
	b := append([]byte(id), ss(len(data))...)
	return append(append(b, byte(flags>>8), byte(flags)), data...)
}

func frame22(id string, data []byte) []byte {
	n := len(data)
	return append(append([]byte(id), byte(n>>16), byte(n>>8), byte(n)), data...)
}

func tag(version, flags byte, body []byte) []byte {
	return append(append([]byte{'I', 'D', '3', version, 0, flags}, ss(len(body))...), body...)
}

func latin(s string) []byte { return append([]byte{0}, s...) }

func utf16be(s string) []byte {
	b := []byte{2}
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u>>8), byte(u))
	}
	return b
}

func utf16le(s string) []byte {
	b := []byte{1, 0xff, 0xfe}
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u), byte(u>>8))
	}
	return b
}

// unsync applies ID3 unsynchronisation: a 0x00 after every 0xFF.
func unsync(b []byte) []byte {
	var out []byte
	for _, c := range b {
		out = append(out, c)
		if c == 0xff {
			out = append(out, 0)
		}
	}
	return out
}

// audio is the audio of a fixture without its tags: MPEG frames to follow
// a made-up tag.
func audio(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, "cbr_plain.mp3"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestID3v2Variants(t *testing.T) {
	cover := []byte("\xff\xd8\xff\xe0 not really a jpeg \xff\x00\xff")
	compressed := func(b []byte) []byte {
		var z bytes.Buffer
		w := zlib.NewWriter(&z)
		w.Write(b)
		w.Close()
		return z.Bytes()
	}
	apic := append(append(latin("image/jpeg"), 0, 3), append([]byte("desc\x00"), cover...)...)
	tests := []struct {
		name string
		tag  []byte
	}{
		{"v2.2", tag(2, 0, bytes.Join([][]byte{
			frame22("TT2", utf16le("Ťitle")), frame22("TP1", latin("Artist")), frame22("TAL", latin("Album")),
			frame22("TRK", latin("9")), frame22("TYE", latin("1999")),
			frame22("PIC", append([]byte{0, 'J', 'P', 'G', 3, 0}, cover...)),
			frame22("ULT", append([]byte{0, 'e', 'n', 'g', 0}, "la la"...)),
		}, nil))},
		{"v2.3 unsynchronised with extended header", tag(3, id3Unsync|id3Extended, unsync(bytes.Join([][]byte{
			{0, 0, 0, 6, 0, 0, 0, 0, 0, 0}, // extended header: size 6, flags, padding size
			frame23("TIT2", 0, utf16le("Ťitle")), frame23("TPE1", 0, utf16be("Artist")), frame23("TALB", 0, latin("Album")),
			frame23("TRCK", 0, latin("9/10")), frame23("TYER", 0, latin("1999")),
			frame23("APIC", 0, apic), frame23("USLT", 0, append([]byte{3, 'e', 'n', 'g', 0}, "la la"...)),
			make([]byte, 64), // padding
		}, nil)))},
		{"v2.3 compressed frame", tag(3, 0, bytes.Join([][]byte{
			frame23("TIT2", 0x80, append([]byte{0, 0, 0, 7}, compressed(utf16le("Ťitle"))...)),
			frame23("TPE1", 0, latin("Artist")), frame23("TALB", 0, latin("Album")), frame23("TRCK", 0, latin("9")),
			frame23("TYER", 0, latin("1999")), frame23("APIC", 0, apic),
			frame23("USLT", 0, append([]byte{0, 'e', 'n', 'g', 0}, "la la"...)),
			frame23("PRIV", 0x40, []byte("encrypted, dropped")),
		}, nil))},
		{"v2.4 extended header, frame unsync and data length", tag(4, id3Extended, bytes.Join([][]byte{
			append(ss(6), 1, 0), // extended header: size 6 (itself), one flag byte, none set
			frame24("TIT2", 0, append([]byte{3}, "Ťitle\x00Second value"...)),
			frame24("TPE1", 0x0003, append([]byte{0, 0, 0, 7}, unsync(latin("Artist"))...)),
			frame24("TALB", 0, latin("Album")), frame24("TRCK", 0, latin("9")), frame24("TDRC", 0, latin("1999-12-31")),
			frame24("APIC", 0x0002, unsync(apic)),
			frame24("APIC", 0, append(append(latin("image/png"), 0, 4), append([]byte{0}, "back cover"...)...)),
			frame24("USLT", 0x0008|0x0001, append([]byte{0, 0, 0, 10}, compressed(append([]byte{0, 'e', 'n', 'g', 0}, "la la"...))...)),
		}, nil))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := append(tt.tag, audio(t)...)
			got, err := Read(bytes.NewReader(file), int64(len(file)), "x.mp3")
			if err != nil {
				t.Fatal(err)
			}
			if got.Title != "Ťitle" || got.Artist != "Artist" || got.Album != "Album" || got.Track != 9 || got.Year != 1999 {
				t.Errorf("tags %q %q %q %d %d", got.Title, got.Artist, got.Album, got.Track, got.Year)
			}
			if got.CoverType != "image/jpeg" || !bytes.Equal(got.Cover, cover) {
				t.Errorf("cover %s %q, want %q", got.CoverType, got.Cover, cover)
			}
			if got.Lyrics != "la la" {
				t.Errorf("lyrics %q", got.Lyrics)
			}
			if math.Abs(got.Duration-12) > 0.12 || got.SampleRate != 44100 {
				t.Errorf("duration %.3f s at %d Hz, want 12 s at 44100", got.Duration, got.SampleRate)
			}
		})
	}
}

// TestVBRI puts a Fraunhofer VBRI header in place of the first frame of a
// headerless file: its frame count is believed, so a count that is made
// twice the real one doubles the duration.
func TestVBRI(t *testing.T) {
	a := audio(t)
	h, ok := parseFrameHeader(a)
	if !ok {
		t.Fatal("fixture does not start with a frame")
	}
	var frames int
	for off := 0; off+4 <= len(a); frames++ {
		fh, ok := parseFrameHeader(a[off:])
		if !ok {
			break
		}
		off += fh.size
	}
	first := bytes.Clone(a[:h.size])
	clear(first[4:])
	copy(first[36:], "VBRI")
	binary.BigEndian.PutUint32(first[36+10:], uint32(len(a)))
	binary.BigEndian.PutUint32(first[36+14:], uint32(2*frames))
	file := append(first, a[h.size:]...)
	got, err := Read(bytes.NewReader(file), int64(len(file)), "vbri.mp3")
	if err != nil {
		t.Fatal(err)
	}
	want := float64(2*frames*1152) / 44100
	if math.Abs(got.Duration-want) > 0.001 {
		t.Fatalf("duration %.3f, want the VBRI header's %.3f", got.Duration, want)
	}
}

// bigFile is a file of size bytes that exists only as its start and its
// end: reading the middle gives zeros without allocating it.
type bigFile struct {
	size       int64
	head, tail []byte
}

func (f bigFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= f.size {
		return 0, io.EOF
	}
	n := len(p)
	if int64(n) > f.size-off {
		n = int(f.size - off)
	}
	clear(p[:n])
	if off < int64(len(f.head)) {
		copy(p[:n], f.head[off:])
	}
	if ts := f.size - int64(len(f.tail)); off+int64(n) > ts {
		s := max(ts-off, 0)
		copy(p[s:n], f.tail[max(off-ts, 0):])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// TestHugeFrameNotAllocated reads a file whose ID3v2 tag holds a real APIC
// frame of 255 MiB (a tag holds at most 256 MiB) before the title and the
// audio: the frame is skipped unread, the rest is read, and the read
// allocates little. Then a 1 GiB frame (ID3v2.3 frame sizes are 32-bit)
// that can only overrun its tag.
func TestHugeFrameNotAllocated(t *testing.T) {
	const huge = 255 << 20
	a := audio(t)
	apicHead := frame24("APIC", 0, nil)
	copy(apicHead[4:8], ss(huge))
	title := frame24("TIT2", 0, latin("After the giant"))
	tagSize := len(apicHead) + huge + len(title)
	head := append(append([]byte{'I', 'D', '3', 4, 0, 0}, ss(tagSize)...), apicHead...)
	tail := append(title, a...)
	f := bigFile{size: int64(10 + tagSize + len(a)), head: head, tail: tail}

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got, err := Read(f, f.size, "giant.mp3")
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if got.Title != "After the giant" || got.Cover != nil || math.Abs(got.Duration-12) > 0.12 {
		t.Errorf("got title %q, cover of %d bytes, %.3f s", got.Title, len(got.Cover), got.Duration)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("allocated %d bytes reading past a 255 MiB frame", alloc)
	}

	// The same frame declared in a small file overruns it: corrupt, and
	// not allocated either.
	small := append(append([]byte{'I', 'D', '3', 3, 0, 0}, ss(len(apicHead)+len(title))...), apicHead...)
	binary.BigEndian.PutUint32(small[10+4:], 1<<30)
	small = append(append(small, title...), a...)
	runtime.ReadMemStats(&before)
	_, err = Read(bytes.NewReader(small), int64(len(small)), "liar.mp3")
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("err %v, want ErrCorrupt", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("allocated %d bytes for a declared 1 GiB frame", alloc)
	}
}

// TestHeaderlessVBRMeasured: the VBR file without a Xing header is
// measured, not guessed from its first frame's bitrate and the file size
// (which is what a guess gives, and is far off: the test means something).
func TestHeaderlessVBRMeasured(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(fixtures, "vbr_noxing_v1.mp3"))
	if err != nil {
		t.Fatal(err)
	}
	first, h, ok := findFrame(bytes.NewReader(b), 0, int64(len(b)))
	if !ok {
		t.Fatal("no frame")
	}
	guess := float64(int64(len(b))-first-128) * 8 / float64(h.bitrate)
	if math.Abs(guess-12) < 0.12 {
		t.Fatalf("the fixture's first frame's bitrate gives %.2f s: a guess would pass", guess)
	}
	got, err := Read(bytes.NewReader(b), int64(len(b)), "vbr_noxing_v1.mp3")
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got.Duration-12) > 0.12 {
		t.Fatalf("duration %.3f, want 12 within 1%%", got.Duration)
	}
}
