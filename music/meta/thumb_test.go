package meta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestThumbnail(t *testing.T) {
	wide := image.NewNRGBA(image.Rect(0, 0, 1000, 500))
	for x := 0; x < 1000; x++ {
		for y := 0; y < 500; y++ {
			wide.Set(x, y, color.NRGBA{uint8(x), uint8(y), 0, 255})
		}
	}
	var widePNG bytes.Buffer
	if err := png.Encode(&widePNG, wide); err != nil {
		t.Fatal(err)
	}
	jpg, err := os.ReadFile(filepath.Join(fixtures, "cover.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	small, err := os.ReadFile(filepath.Join(fixtures, "folder.png"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
		w, h int
	}{
		{"wide png scaled", widePNG.Bytes(), 256, 128},
		{"jpeg scaled", jpg, 256, 256},
		{"small png kept in size", small, 64, 48},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Thumbnail(tt.data, 256)
			if err != nil {
				t.Fatal(err)
			}
			img, err := jpeg.Decode(bytes.NewReader(out))
			if err != nil {
				t.Fatalf("not a JPEG: %v", err)
			}
			if b := img.Bounds(); b.Dx() != tt.w || b.Dy() != tt.h {
				t.Errorf("%dx%d, want %dx%d", b.Dx(), b.Dy(), tt.w, tt.h)
			}
		})
	}
}

// TestThumbnailRefusesHugeImage: a PNG of a few bytes declaring 8000×8000 (64 Mpixels)
// pixels is refused before decoding (decoding would allocate 256 MB first).
func TestThumbnailRefusesHugeImage(t *testing.T) {
	chunk := func(typ string, data []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
		b = append(append(b, typ...), data...)
		return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[4:]))
	}
	ihdr := binary.BigEndian.AppendUint32(nil, 8000)
	ihdr = binary.BigEndian.AppendUint32(ihdr, 8000)
	ihdr = append(ihdr, 8, 6, 0, 0, 0)
	bomb := append([]byte("\x89PNG\r\n\x1a\n"), chunk("IHDR", ihdr)...)
	bomb = append(bomb, chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Thumbnail(bomb, 256)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrImageTooBig) {
		t.Fatalf("err %v, want ErrImageTooBig", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("allocated %d bytes refusing it", alloc)
	}
	if _, err := Thumbnail([]byte("not an image"), 256); err == nil {
		t.Error("text made a thumbnail")
	}
}
