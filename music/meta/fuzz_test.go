package meta

import (
	"bytes"
	"image/jpeg"
	"math"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// FuzzRead feeds Read anything: it must not panic, and what it returns
// stays within its limits. Seeds: testdata/fuzz/FuzzRead (heads of the
// fixtures, made tags) and the fixtures' first 16 KiB.
func FuzzRead(f *testing.F) {
	for _, name := range []string{"cbr_v23.mp3", "vbr_xing_v24.mp3", "vbr_noxing_v1.mp3", "tagged.flac", "info.wav", "broken_hugeframe.mp3"} {
		b, err := os.ReadFile(filepath.Join(fixtures, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 16<<10)])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := Read(bytes.NewReader(b), int64(len(b)), "fuzz.mp3")
		if err != nil {
			return
		}
		if info.Format == "" || info.Duration < 0 || math.IsNaN(info.Duration) || math.IsInf(info.Duration, 0) {
			t.Fatalf("bad info %+v", info)
		}
		if len(info.Cover) > MaxCover || len(info.Lyrics) > 4*MaxText {
			t.Fatalf("cover %d, lyrics %d bytes", len(info.Cover), len(info.Lyrics))
		}
		for _, s := range []string{info.Title, info.Artist, info.Album, info.Lyrics} {
			if !utf8.ValidString(s) {
				t.Fatalf("invalid UTF-8 %q", s)
			}
		}
	})
}

// FuzzThumbnail: no panic, and a thumbnail is a JPEG within the box.
func FuzzThumbnail(f *testing.F) {
	for _, name := range []string{"cover.jpg", "folder.png"} {
		b, err := os.ReadFile(filepath.Join(fixtures, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := Thumbnail(b, 64)
		if err != nil {
			return
		}
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(out))
		if err != nil || cfg.Width > 64 || cfg.Height > 64 {
			t.Fatalf("thumbnail %dx%d, %v", cfg.Width, cfg.Height, err)
		}
	})
}
