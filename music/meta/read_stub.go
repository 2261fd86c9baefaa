package meta

// TEMPORARY STUB of branch mlib, for package music to build on until the
// TAGS branch (mtags) lands: the lead deletes this file when merging. It
// tells the format by the first bytes and reads nothing else.

import (
	"bytes"
	"errors"
	"image"
	"image/jpeg"
	_ "image/png"
	"io"
)

// Read (stub) tells MP3, FLAC and WAV apart by their first bytes.
func Read(r io.ReaderAt, size int64, name string) (Info, error) {
	head := make([]byte, 12)
	n, _ := r.ReadAt(head, 0)
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte("ID3")), len(head) >= 2 && head[0] == 0xff && head[1]&0xe0 == 0xe0:
		return Info{Format: "mp3"}, nil
	case bytes.HasPrefix(head, []byte("fLaC")):
		return Info{Format: "flac"}, nil
	case len(head) == 12 && string(head[:4]) == "RIFF" && string(head[8:]) == "WAVE":
		return Info{Format: "wav"}, nil
	}
	return Info{}, errors.New("meta: not an audio file")
}

// Thumbnail (stub) decodes a JPEG or PNG of at most 40 megapixels and
// encodes it as a JPEG of at most px pixels a side (nearest neighbour).
func Thumbnail(data []byte, px int) ([]byte, error) {
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if cfg.Width*cfg.Height > 40<<20 {
		return nil, errors.New("meta: image too large")
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w > px || h > px {
		if w >= h {
			w, h = px, max(1, h*px/w)
		} else {
			w, h = max(1, w*px/h), px
		}
	}
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			out.Set(x, y, img.At(b.Min.X+x*b.Dx()/w, b.Min.Y+y*b.Dy()/h))
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, out, &jpeg.Options{Quality: 85}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
