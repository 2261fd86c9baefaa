package main

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// writeDemoFiles writes a few sample files for the demo node called name
// into dir (made if need be), so that the Files view has something to show
// out of the box: two PNG images drawn for the node (a gradient with
// rings and one with stripes, in colours of its own, with its name) and a
// text file. Each node's files differ, so each is a resource of its own.
// It returns the paths written.
func writeDemoFiles(dir, name string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	hue := float64(h.Sum32() % 360)
	files := []struct {
		name string
		make func() ([]byte, error)
	}{
		{name + "-rings.png", func() ([]byte, error) { return demoImage(name, hue, rings) }},
		{name + "-stripes.png", func() ([]byte, error) { return demoImage(name, hue+150, stripes) }},
		{name + "-readme.txt", func() ([]byte, error) { return []byte(demoText(name)), nil }},
	}
	var paths []string
	for _, f := range files {
		b, err := f.make()
		if err != nil {
			return nil, fmt.Errorf("demo file %s: %w", f.name, err)
		}
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

func demoText(name string) string {
	return strings.Join([]string{
		"Hello from " + name + "!",
		"",
		"This file was shared by the catnest demo node " + name + ".",
		"Every node in the demo shares a few files like this one: open the Files",
		"view of any node's web UI to see them all, with the images in a gallery.",
		"Download one and watch its pieces come from every node that has it.",
		"",
	}, "\n")
}

// Demo image size: big enough to look at full size, small to send.
const demoW, demoH = 480, 320

// pattern is the brightness (0..1) of a demo image at x, y in 0..1.
type pattern func(x, y float64) float64

func rings(x, y float64) float64 {
	d := math.Hypot(x-0.7, y-0.35)
	return 0.5 + 0.5*math.Cos(d*40)*math.Exp(-d*2.5)
}

func stripes(x, y float64) float64 {
	return 0.5 + 0.5*math.Sin((x+y*0.6)*28)*(0.4+0.6*y)
}

// demoImage draws a diagonal gradient from hue to hue+60 shaded by p,
// with name written large on a band.
func demoImage(name string, hue float64, p pattern) ([]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, demoW, demoH))
	for py := range demoH {
		for px := range demoW {
			x, y := float64(px)/demoW, float64(py)/demoH
			t := (x + y) / 2
			img.SetRGBA(px, py, hsl(hue+60*t, 0.65, 0.35+0.3*p(x, y)))
		}
	}
	// The name, drawn with the 7×13 font and scaled 4× (whole pixels,
	// so it stays crisp), on a translucent band.
	const scale = 4
	face := basicfont.Face7x13
	text := strings.ToUpper(name)
	adv := font.MeasureString(face, text).Ceil()
	small := image.NewAlpha(image.Rect(0, 0, adv, 13))
	d := font.Drawer{Dst: small, Src: image.Opaque, Face: face, Dot: fixed.P(0, 11)}
	d.DrawString(text)
	w := min(adv*scale, demoW-40)
	x0, y0 := (demoW-w)/2, demoH-13*scale-40
	band := image.Rect(0, y0-14, demoW, y0+13*scale+14)
	draw.Draw(img, band, image.NewUniform(color.RGBA{0, 0, 0, 90}), image.Point{}, draw.Over)
	for sy := range 13 * scale {
		for sx := range w {
			if a := small.AlphaAt(sx/scale, sy/scale).A; a > 0 {
				img.SetRGBA(x0+sx, y0+sy, color.RGBA{255, 255, 255, 255})
			}
		}
	}
	var buf bytes.Buffer
	// The fastest compression: the default one took most of a demo
	// node's start for a few kilobytes less.
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// hsl converts a colour from hue (degrees), saturation and lightness.
func hsl(h, s, l float64) color.RGBA {
	h = math.Mod(h, 360) / 60
	c := (1 - math.Abs(2*l-1)) * s
	x := c * (1 - math.Abs(math.Mod(h, 2)-1))
	var r, g, b float64
	switch int(h) {
	case 0:
		r, g = c, x
	case 1:
		r, g = x, c
	case 2:
		g, b = c, x
	case 3:
		g, b = x, c
	case 4:
		r, b = x, c
	default:
		r, b = c, x
	}
	m := l - c/2
	to := func(v float64) uint8 { return uint8(math.Round(255 * math.Max(0, math.Min(1, v+m)))) }
	return color.RGBA{to(r), to(g), to(b), 255}
}
