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
	"time"
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

// progressiveJPEG is a grey 1208×1736 progressive JPEG (32767 blocks) of
// the given number of AC scans, each one empty-block run over the image:
// 13 bytes a scan, each making the decoder walk every block.
func progressiveJPEG(scans int) []byte {
	var b bytes.Buffer
	seg := func(m byte, p []byte) {
		b.Write([]byte{0xff, m, byte((len(p) + 2) >> 8), byte(len(p) + 2)})
		b.Write(p)
	}
	b.Write([]byte{0xff, 0xd8})
	seg(0xdb, append([]byte{0}, bytes.Repeat([]byte{1}, 64)...))
	w, h := 8*151, 8*217
	seg(0xc2, []byte{8, byte(h >> 8), byte(h), byte(w >> 8), byte(w), 1, 1, 0x11, 0})
	seg(0xc4, append([]byte{0x00, 1}, append(make([]byte, 15), 0)...))    // DC: one 1-bit code
	seg(0xc4, append([]byte{0x10, 1}, append(make([]byte, 15), 0xe0)...)) // AC: EOB run of 2^14+
	for i := 0; i < scans; i++ {
		seg(0xda, []byte{1, 1, 0x00, 1, 63, 0})
		b.Write([]byte{0x7f, 0xff, 0x00}) // code 0, 14 bits of ones: a run of 32767 blocks
	}
	b.Write([]byte{0xff, 0xd9})
	return b.Bytes()
}

// webpChunk is a RIFF chunk, padded.
func webpChunk(id string, b []byte) []byte {
	out := binary.LittleEndian.AppendUint32([]byte(id), uint32(len(b)))
	out = append(out, b...)
	if len(b)&1 == 1 {
		out = append(out, 0)
	}
	return out
}

// TestThumbnailBombs: images whose header passes the pixel limit but whose
// decoding would take gigabytes or minutes are refused before decoding,
// and a normal progressive JPEG is still made small.
func TestThumbnailBombs(t *testing.T) {
	// A WebP with a 1×1 VP8X canvas and a lossless frame of 16383×16383
	// whose prefix codes have one symbol each (no bits a pixel): decoding
	// allocates 1 GiB and loops 268 million times.
	vp8l := binary.LittleEndian.AppendUint32([]byte{0x2f}, 16382|16382<<14)
	vp8l = append(vp8l, 0x88, 0x88, 0x08, 0)
	body := append([]byte("WEBP"), webpChunk("VP8X", make([]byte, 10))...)
	body = append(body, webpChunk("VP8L", vp8l)...)
	webp := append(binary.LittleEndian.AppendUint32([]byte("RIFF"), uint32(len(body))), body...)

	// A 16-bit RGBA PNG of 6000×6000: 36 Mpixels, under MaxImagePixels,
	// but 288 MB decoded.
	chunk := func(typ string, data []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
		b = append(append(b, typ...), data...)
		return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[4:]))
	}
	ihdr := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 6000), 6000)
	png16 := append([]byte("\x89PNG\r\n\x1a\n"), chunk("IHDR", append(ihdr, 16, 6, 0, 0, 0))...)

	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"webp frame larger than its canvas", webp},
		{"jpeg of 1000 scans", progressiveJPEG(1000)},
		{"16-bit png", png16},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := Thumbnail(tt.data, 256)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrImageTooBig) {
				t.Errorf("err %v, want ErrImageTooBig", err)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
				t.Errorf("allocated %d bytes refusing it", alloc)
			}
		})
	}
	out, err := Thumbnail(progressiveJPEG(10), 256)
	if err != nil {
		t.Fatalf("progressive JPEG of 10 scans: %v", err)
	}
	if cfg, err := jpeg.DecodeConfig(bytes.NewReader(out)); err != nil || cfg.Width != 178 || cfg.Height != 256 {
		t.Errorf("thumbnail %dx%d, %v", cfg.Width, cfg.Height, err)
	}
}

// TestMemBudget: a decode waits while others hold the budget, and one
// alone always runs.
func TestMemBudget(t *testing.T) {
	m := newMemBudget(100)
	m.acquire(150) // over the budget, but alone
	done := make(chan struct{})
	go func() {
		m.acquire(10)
		m.release(10)
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("a second decode ran beside one over the budget")
	case <-time.After(50 * time.Millisecond): // time for it to run, were it let
	}
	m.release(150)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the second decode did not run when the budget was freed")
	}
}
