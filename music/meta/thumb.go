package meta

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"sync"

	// Cover formats: ID3 and FLAC pictures are JPEG or PNG, sometimes GIF;
	// sidecar files may be WebP.
	_ "image/gif"
	_ "image/png"

	"golang.org/x/image/draw"
	_ "golang.org/x/image/webp"
)

// MaxImagePixels bounds the images Thumbnail decodes: a 100-byte PNG may
// declare 60000×60000 pixels (14 GB decoded), so the declared size is
// checked before decoding.
const MaxImagePixels = 50_000_000

// Decoding memory: what one image may take, and all of those decoding at
// once together (a list of covers asks for many thumbnails at a time).
// A 3000×3000 progressive colour JPEG takes about 70 MB; a 16-bit RGBA PNG
// within MaxImagePixels could take 400 MB, and is refused.
const (
	maxDecodeBytes = 192 << 20
	decodeBudget   = 256 << 20
)

// maxJPEGScans bounds a progressive JPEG's scans: each scan walks every
// block of the image again, so a 13 KB file of 1,000 empty scans over a
// 2-Mpixel image takes seconds to decode, and a megabyte of them minutes.
// Encoders write about 10.
const maxJPEGScans = 32

// Thumbnail decodes a cover image (JPEG, PNG, GIF, WebP) and returns it
// scaled to fit within px×px as a JPEG, for the library's list. An image
// already that small is re-encoded all the same (the list wants JPEG).
// Images over MaxImagePixels are refused with ErrImageTooBig before any
// pixel is decoded.
//
// Memory and work are bounded before decoding too: the decoded size is
// estimated from the declared size and colour model (and at most
// maxDecodeBytes), decodes wait while others hold decodeBudget, a JPEG has
// at most maxJPEGScans scans, and a WebP's frame must be the size its
// header declares.
func Thumbnail(data []byte, px int) ([]byte, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("meta: cover: %w", err)
	}
	pixels := int64(cfg.Width) * int64(cfg.Height)
	if cfg.Width <= 0 || cfg.Height <= 0 || pixels > MaxImagePixels {
		return nil, fmt.Errorf("%w: %d×%d pixels", ErrImageTooBig, cfg.Width, cfg.Height)
	}
	perPixel := bytesPerPixel(cfg.ColorModel)
	switch format {
	case "jpeg":
		j := jpegMarkers(data)
		if j.scans > maxJPEGScans {
			return nil, fmt.Errorf("%w: a JPEG of %d scans", ErrImageTooBig, j.scans)
		}
		if j.progressive {
			// The decoder keeps every coefficient (an int32 a sample)
			// between scans.
			perPixel += 4 * j.samples
		}
	case "webp":
		// DecodeConfig reports the VP8X canvas, but Decode allocates the
		// VP8/VP8L frame, which may say 16383×16383 in a 1×1 canvas.
		w, h, ok := webpFrame(data)
		if !ok || w != cfg.Width || h != cfg.Height {
			return nil, fmt.Errorf("%w: a WebP frame of %d×%d in a canvas of %d×%d", ErrImageTooBig, w, h, cfg.Width, cfg.Height)
		}
	}
	need := int64(float64(pixels) * perPixel)
	if need > maxDecodeBytes {
		return nil, fmt.Errorf("%w: %d×%d pixels of %s would take %d MB to decode", ErrImageTooBig, cfg.Width, cfg.Height, format, need>>20)
	}
	decodeMem.acquire(need)
	defer decodeMem.release(need)
	src, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("meta: cover: %w", err)
	}
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	if w > px || h > px {
		if w >= h {
			w, h = px, max(1, h*px/w)
		} else {
			w, h = max(1, w*px/h), px
		}
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	// Fill first: a transparent PNG would otherwise turn black in JPEG.
	draw.Draw(dst, dst.Bounds(), image.White, image.Point{}, draw.Src)
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, b, draw.Over, nil)
	var out bytes.Buffer
	if err := jpeg.Encode(&out, dst, &jpeg.Options{Quality: 85}); err != nil {
		return nil, fmt.Errorf("meta: cover: %w", err)
	}
	return out.Bytes(), nil
}

// decodeMem holds the estimated bytes of the decodes under way.
var decodeMem = newMemBudget(decodeBudget)

// memBudget lets decodes run while their estimated memory fits a budget;
// one alone may always run.
type memBudget struct {
	mu    sync.Mutex
	freed *sync.Cond
	used  int64
	limit int64
}

func newMemBudget(limit int64) *memBudget {
	m := &memBudget{limit: limit}
	m.freed = sync.NewCond(&m.mu)
	return m
}

func (m *memBudget) acquire(n int64) {
	m.mu.Lock()
	for m.used > 0 && m.used+n > m.limit {
		m.freed.Wait()
	}
	m.used += n
	m.mu.Unlock()
}

func (m *memBudget) release(n int64) {
	m.mu.Lock()
	m.used -= n
	m.mu.Unlock()
	m.freed.Broadcast()
}

// bytesPerPixel is what the standard decoders allocate a pixel of an
// image of colour model m (YCbCr counted as 4:4:4).
func bytesPerPixel(m color.Model) float64 {
	switch m {
	case color.GrayModel, color.AlphaModel:
		return 1
	case color.Gray16Model, color.Alpha16Model:
		return 2
	case color.YCbCrModel:
		return 3
	case color.RGBAModel, color.NRGBAModel, color.CMYKModel, color.NYCbCrAModel:
		return 4
	}
	if _, ok := m.(color.Palette); ok {
		return 1
	}
	return 8 // RGBA64, NRGBA64, or unknown: the most
}

// jpegInfo is what Thumbnail needs of a JPEG's markers.
type jpegInfo struct {
	scans       int
	progressive bool
	samples     float64 // per pixel: 3 for 4:4:4 colour, 1.5 for 4:2:0
}

// jpegMarkers walks a JPEG's markers, skipping segments by their length
// and scans' entropy-coded data to the next marker (in which 0xFF is
// always followed by 0x00 or a restart marker), as image/jpeg does.
func jpegMarkers(data []byte) jpegInfo {
	var j jpegInfo
	p := 2
	for p+1 < len(data) {
		if data[p] != 0xff {
			p++ // junk between segments, skipped by the decoder too
			continue
		}
		m := data[p+1]
		switch {
		case m == 0xff:
			p++ // fill
			continue
		case m == 0x00 || m == 0x01 || m == 0xd8 || m >= 0xd0 && m <= 0xd7:
			p += 2
			continue
		case m == 0xd9:
			return j
		}
		if p+4 > len(data) {
			return j
		}
		n := int(data[p+2])<<8 | int(data[p+3])
		seg := data[p+4 : min(len(data), p+2+max(n, 2))]
		switch {
		case m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc:
			j.progressive = m == 0xc2 || m == 0xc6 || m == 0xca || m == 0xce
			j.samples = sofSamples(seg)
		case m == 0xda:
			j.scans++
			p += 2 + n
			for p+1 < len(data) && (data[p] != 0xff || data[p+1] == 0 || data[p+1] >= 0xd0 && data[p+1] <= 0xd7) {
				p++
			}
			continue
		}
		p += 2 + n
	}
	return j
}

// sofSamples is the samples per pixel a SOF segment declares: each
// component's sampling factors over the largest.
func sofSamples(seg []byte) float64 {
	if len(seg) < 6 {
		return 4
	}
	nc := int(seg[5])
	comps := seg[6:]
	if nc == 0 || len(comps) < 3*nc {
		return 4
	}
	hmax, vmax := 1, 1
	for i := 0; i < nc; i++ {
		hmax, vmax = max(hmax, int(comps[3*i+1]>>4)), max(vmax, int(comps[3*i+1]&15))
	}
	var s float64
	for i := 0; i < nc; i++ {
		s += float64(int(comps[3*i+1]>>4)*int(comps[3*i+1]&15)) / float64(hmax*vmax)
	}
	return s
}

// webpFrame returns the size of the first VP8 or VP8L frame in a WebP.
func webpFrame(data []byte) (w, h int, ok bool) {
	for p := int64(12); p+8 <= int64(len(data)); {
		id, n := string(data[p:p+4]), int64(binary.LittleEndian.Uint32(data[p+4:]))
		body := data[p+8 : p+8+min(n, int64(len(data))-p-8)]
		switch id {
		case "VP8 ":
			// 3 bytes of frame tag, 3 of start code, then 14 bits each.
			if len(body) < 10 {
				return 0, 0, false
			}
			return int(binary.LittleEndian.Uint16(body[6:]) & 0x3fff), int(binary.LittleEndian.Uint16(body[8:]) & 0x3fff), true
		case "VP8L":
			// A signature byte, then 14 bits each of width-1 and height-1.
			if len(body) < 5 {
				return 0, 0, false
			}
			v := binary.LittleEndian.Uint32(body[1:])
			return int(v&0x3fff) + 1, int(v>>14&0x3fff) + 1, true
		}
		p += 8 + n + n&1
	}
	return 0, 0, false
}
