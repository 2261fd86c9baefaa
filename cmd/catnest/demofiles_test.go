package main

import (
	"bytes"
	"crypto/md5"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoFiles checks that each demo node gets its own images and text:
// PNGs that decode, with the name drawn on them, and no two nodes' files
// alike (each is a resource of its own).
func TestDemoFiles(t *testing.T) {
	dir := t.TempDir()
	seen := map[[16]byte]string{}
	for _, name := range []string{"alice", "bob", "carol"} {
		paths, err := writeDemoFiles(filepath.Join(dir, name, "files"), name)
		if err != nil {
			t.Fatal(err)
		}
		var images, texts int
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if prev, ok := seen[md5.Sum(b)]; ok {
				t.Errorf("%s has the same bytes as %s", p, prev)
			}
			seen[md5.Sum(b)] = p
			switch filepath.Ext(p) {
			case ".png":
				images++
				img, err := png.Decode(bytes.NewReader(b))
				if err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				if r := img.Bounds(); r.Dx() != demoW || r.Dy() != demoH {
					t.Errorf("%s is %v", p, r)
				}
				white := 0
				for y := demoH - 100; y < demoH; y++ {
					for x := range demoW {
						if r, g, b, _ := img.At(x, y).RGBA(); r == 0xffff && g == 0xffff && b == 0xffff {
							white++
						}
					}
				}
				if white < 500 {
					t.Errorf("%s: %d white pixels where the name goes; is it drawn?", p, white)
				}
			case ".txt":
				texts++
				if !strings.Contains(string(b), name) {
					t.Errorf("%s does not name %s", p, name)
				}
			}
		}
		if images != 2 || texts != 1 {
			t.Errorf("%s: %d images, %d texts, want 2 and 1", name, images, texts)
		}
	}
}
