package meta

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"

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

// Thumbnail decodes a cover image (JPEG, PNG, GIF, WebP) and returns it
// scaled to fit within px×px as a JPEG, for the library's list. An image
// already that small is re-encoded all the same (the list wants JPEG).
// Images over MaxImagePixels are refused with ErrImageTooBig before any
// pixel is decoded.
func Thumbnail(data []byte, px int) ([]byte, error) {
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("meta: cover: %w", err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > MaxImagePixels {
		return nil, fmt.Errorf("%w: %d×%d pixels", ErrImageTooBig, cfg.Width, cfg.Height)
	}
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
