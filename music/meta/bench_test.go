package meta

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkRead reads each fixture's tags and headers from memory; MB/s is
// of the whole file, to set beside MD5's speed over the same bytes (a scan
// hashes every byte, so tag parsing must cost far less than hashing).
func BenchmarkRead(b *testing.B) {
	for _, name := range []string{"cbr_v23.mp3", "vbr_xing_v24.mp3", "vbr_noxing_v1.mp3", "tagged.flac", "info.wav"} {
		data, err := os.ReadFile(filepath.Join(fixtures, name))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Read(bytes.NewReader(data), int64(len(data)), name); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWalkLarge measures a 10 MB VBR MP3 without a Xing header: every
// frame header is read (MB/s of the file).
func BenchmarkWalkLarge(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(fixtures, "vbr_noxing_v1.mp3"))
	if err != nil {
		b.Fatal(err)
	}
	frames := data[:len(data)-128] // without its ID3v1 tag
	big := bytes.Repeat(frames, 10<<20/len(frames))
	b.SetBytes(int64(len(big)))
	for b.Loop() {
		info, err := Read(bytes.NewReader(big), int64(len(big)), "big.mp3")
		if err != nil || info.Duration < 100 {
			b.Fatal(info.Duration, err)
		}
	}
}
