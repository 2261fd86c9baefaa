package main

import (
	"bytes"
	"crypto/md5"
	"image/png"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/catnest/catnest/music/lrc"
	"github.com/catnest/catnest/music/meta"
)

// TestDemoMusic writes the music of four demo nodes and reads it back as
// the library will: every audio file parses with its tags and length,
// MP3, FLAC and WAV are all there, each node's part is its own (one
// track excepted, held by the first and last nodes), the chord tracks
// have synced lyrics that name their chords and a cover beside them, and
// what is embedded stays well under 2 MB.
func TestDemoMusic(t *testing.T) {
	dir := t.TempDir()
	names := []string{"alice", "bob", "carol", "dave"}
	owners := map[[16]byte][]string{}
	formats := map[string]int{}
	for i, name := range names {
		root := filepath.Join(dir, name)
		paths, err := writeDemoMusic(root, name, i, len(names))
		if err != nil {
			t.Fatal(err)
		}
		if len(paths) < len(demoProgressions)+1 {
			t.Errorf("%s: %d tracks, want its chords and at least one embedded track", name, len(paths))
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			owners[md5.Sum(b)] = append(owners[md5.Sum(b)], name)
			info, err := meta.Read(bytes.NewReader(b), int64(len(b)), filepath.Base(p))
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			formats[info.Format]++
			if info.Title == "" || info.Artist == "" || info.Album == "" || info.Duration < 4 {
				t.Errorf("%s: %+v, want tags and a length", p, info)
			}
			if !strings.Contains(p, "Chords") {
				continue
			}
			want := strings.TrimSuffix(filepath.Base(p), ".wav")[3:]
			if info.Title != want || info.Artist != capitalize(name) || info.Format != "wav" || info.Year != 2024 {
				t.Errorf("%s: %+v, want the title %q by %s", p, info, want, capitalize(name))
			}
			raw, err := os.ReadFile(strings.TrimSuffix(p, ".wav") + ".lrc")
			if err != nil {
				t.Fatal(err)
			}
			l := lrc.Parse(string(raw))
			if !l.Synced || len(l.Lines) != int(math.Ceil(info.Duration/3)) || !strings.HasPrefix(l.Lines[1].Text, capitalize(name)+" plays ") || l.Lines[1].T != 3 {
				t.Errorf("%s lyrics: %+v", p, l)
			}
		}
		img, err := os.ReadFile(filepath.Join(root, capitalize(name)+" Chords", "cover.png"))
		if err != nil {
			t.Fatal(err)
		}
		// Shards lists one path for each MD5: a cover with the bytes of
		// an image in the node's files folder could be listed there,
		// outside the album, and the album would have no cover.
		files, err := writeDemoFiles(filepath.Join(dir, name+"-files"), name)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if b, _ := os.ReadFile(f); bytes.Equal(b, img) {
				t.Errorf("%s's album cover is the same file as %s", name, f)
			}
		}
		if _, err := png.Decode(bytes.NewReader(img)); err != nil {
			t.Errorf("%s's cover: %v", name, err)
		}
	}
	for _, f := range []string{"mp3", "flac", "wav"} {
		if formats[f] == 0 {
			t.Errorf("no %s among the demo tracks: %v", f, formats)
		}
	}
	shared := 0
	for _, who := range owners {
		if len(who) > 1 {
			shared++
			if len(who) != 2 || who[0] != "alice" || who[1] != "dave" {
				t.Errorf("a track held by %v, want only the first fixture held twice, by alice and dave", who)
			}
		}
	}
	if shared != 1 {
		t.Errorf("%d tracks held by several nodes, want 1", shared)
	}
	var total int64
	fs.WalkDir(demoMusic, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, _ := d.Info()
			total += fi.Size()
		}
		return err
	})
	if total == 0 || total > 1<<20 {
		t.Errorf("%d bytes of music embedded, want some and well under 2 MB", total)
	}
}

// TestChordNames: the chords of a progression in C major are named as a
// musician would.
func TestChordNames(t *testing.T) {
	c := chordTrack{Root: 3} // C
	var got []string
	for d := 1; d <= 7; d++ {
		got = append(got, chordName(c.chord(d)))
	}
	if want := "C Dm Em F G Am Bdim"; strings.Join(got, " ") != want {
		t.Errorf("the chords of C major: %q, want %q", strings.Join(got, " "), want)
	}
}

// TestChordWAVSamples checks the rendered chords against the sum of sines
// they stand for, computed sample by sample with math.Sin and math.Exp:
// WAV turns phases and multiplies a decay instead, and a drift in either
// would put the tracks out of tune or out of time.
func TestChordWAVSamples(t *testing.T) {
	c := chordTrack{Title: "Turnaround", Artist: "Ann", Album: "Tests", Track: 1, Year: 2025,
		Root: 7, Degrees: []int{2, 5, 1, 6}, Beat: 3, Secs: 30, Rate: 16000}
	wav := c.WAV()
	i := bytes.Index(wav, []byte("data"))
	if i < 0 {
		t.Fatal("no data chunk")
	}
	pcm := wav[i+8:]
	if len(pcm) != 2*int(c.Secs)*c.Rate {
		t.Fatalf("%d bytes of samples, want %d", len(pcm), 2*int(c.Secs)*c.Rate)
	}
	beat := int(c.Beat * float64(c.Rate))
	worst := 0
	for s := range len(pcm) / 2 {
		b, k := s/beat, s%beat
		notes := c.chord(c.Degrees[b%len(c.Degrees)])
		freqs := []float64{110 * math.Pow(2, float64(notes[0]%12)/12)}
		for _, n := range notes {
			freqs = append(freqs, 220*math.Pow(2, float64(n)/12))
		}
		tt := float64(k) / float64(c.Rate)
		var v float64
		for _, f := range freqs {
			w := 2 * math.Pi * f * tt
			v += math.Sin(w) + 0.3*math.Sin(2*w) + 0.1*math.Sin(3*w)
		}
		want := int(int16(v * math.Min(1, tt/0.02) * math.Exp(-tt*1.2) * 4000))
		got := int(int16(uint16(pcm[2*s]) | uint16(pcm[2*s+1])<<8))
		if d := max(got-want, want-got); d > worst {
			worst = d
		}
	}
	if worst > 1 {
		t.Errorf("a sample is %d off the sum of sines, want at most 1", worst)
	}
}
