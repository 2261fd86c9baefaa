package main

import (
	"embed"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"strings"
	"unicode"
)

// demoMusic holds a few small tagged tracks made by
// testdata/music/make.sh (copies of its fixtures, 400 KB in all): MP3s
// with ID3v2.3 (a JPEG cover, lyrics), ID3v2.4 (a PNG cover) and ID3v1
// only, a FLAC with a picture and lyrics, a WAV with RIFF LIST INFO, LRC
// lyrics and a cover image. The demo needs no encoder at run time.
//
//go:embed demomusic
var demoMusic embed.FS

// demoFixtures are the embedded tracks, in the order the demo nodes take
// them, with the names they get and their sidecar lyrics.
var demoFixtures = []struct{ src, name, lrc string }{
	{"cbr_v23.mp3", "cat-song.mp3", ""},
	{"vbr_xing_v24.mp3", "warm-nest.mp3", "song.lrc"},
	{"tagged.flac", "flac-song.flac", ""},
	{"info.wav", "wave-tone.wav", "plain.lrc"},
	{"vbr_noxing_v1.mp3", "no-header.mp3", ""},
}

// demoProgressions are the chord albums' tracks: a title and the scale
// degrees of their chords.
var demoProgressions = []struct {
	title   string
	degrees []int
	secs    float64
}{
	{"Four Chords", []int{1, 5, 6, 4}, 24},
	{"Doo-Wop Evening", []int{1, 6, 4, 5}, 18},
	{"Turnaround", []int{2, 5, 1, 6}, 30},
}

// writeDemoMusic writes the music of demo node i of n, called name, into
// dir: an album of chords synthesised for the node (WAVs with RIFF LIST
// INFO tags, an .lrc beside each and a sidecar cover.png), and its share
// of the embedded tracks ("Mesh Tunes", with a sidecar folder.png for
// those without a cover of their own): fixture k goes to node k mod n,
// and the first also to the last node, so that one track of the library
// has two sources. It returns the audio files written.
func writeDemoMusic(dir, name string, i, n int) ([]string, error) {
	h := fnv.New32a()
	h.Write([]byte(name))
	sum := h.Sum32()
	artist := capitalize(name)
	album := filepath.Join(dir, artist+" Chords")
	if err := os.MkdirAll(album, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for k, p := range demoProgressions {
		c := chordTrack{
			Title: p.title, Artist: artist, Album: artist + " Chords", Track: k + 1, Year: 2024,
			Root: int(sum % 12), Degrees: p.degrees, Beat: 3, Secs: p.secs, Rate: 16000,
		}
		base := filepath.Join(album, fmt.Sprintf("%02d %s", k+1, p.title))
		if err := os.WriteFile(base+".wav", c.WAV(), 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(base+".lrc", []byte(c.LRC()), 0o644); err != nil {
			return nil, err
		}
		paths = append(paths, base+".wav")
	}
	// Not the image the node shares in its files folder: shards lists
	// one path for each MD5, and it could be that one, outside the album.
	cover, err := demoImage(name, float64(sum%360)+90, rings)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(album, "cover.png"), cover, 0o644); err != nil {
		return nil, err
	}

	tunes := filepath.Join(dir, "Mesh Tunes")
	for k, f := range demoFixtures {
		if k%n != i && !(k == 0 && i == n-1) {
			continue
		}
		if err := os.MkdirAll(tunes, 0o755); err != nil {
			return nil, err
		}
		if err := copyDemoFile(f.src, filepath.Join(tunes, f.name)); err != nil {
			return nil, err
		}
		paths = append(paths, filepath.Join(tunes, f.name))
		if f.lrc != "" {
			lrc := strings.TrimSuffix(f.name, filepath.Ext(f.name)) + ".lrc"
			if err := copyDemoFile(f.lrc, filepath.Join(tunes, lrc)); err != nil {
				return nil, err
			}
		}
	}
	if _, err := os.Stat(tunes); err == nil {
		if err := copyDemoFile("folder.png", filepath.Join(tunes, "folder.png")); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

func copyDemoFile(src, dst string) error {
	b, err := demoMusic.ReadFile("demomusic/" + src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

func capitalize(s string) string {
	r := []rune(s)
	if len(r) == 0 {
		return s
	}
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}

// chordTrack is a track of chords synthesised for the demo and the
// tests: a progression in a major key, one chord a beat, as a 16-bit mono
// PCM WAV with RIFF LIST INFO tags, and LRC lyrics naming each chord as
// it sounds.
type chordTrack struct {
	Title, Artist, Album string
	Track, Year          int
	// Root is the key: semitones above A.
	Root int
	// Degrees are the chords' scale degrees (1..7), played in turn.
	Degrees []int
	// Beat is the seconds a chord lasts, Secs those of the track.
	Beat, Secs float64
	// Rate is the sample rate.
	Rate int
}

var majorScale = [7]int{0, 2, 4, 5, 7, 9, 11}

var noteNames = [12]string{"A", "B♭", "B", "C", "C♯", "D", "E♭", "E", "F", "F♯", "G", "A♭"}

// chord is the semitones above A3 of the three notes of the chord on
// scale degree d.
func (c chordTrack) chord(d int) [3]int {
	var n [3]int
	for j := range 3 {
		k := d - 1 + 2*j
		n[j] = c.Root + majorScale[k%7] + 12*(k/7)
	}
	return n
}

// chordName is a chord's name, such as "C", "Am" or "Bdim".
func chordName(n [3]int) string {
	name := noteNames[n[0]%12]
	switch third, fifth := n[1]-n[0], n[2]-n[0]; {
	case third == 3 && fifth == 6:
		return name + "dim"
	case third == 3:
		return name + "m"
	}
	return name
}

// beats is how many chords the track plays.
func (c chordTrack) beats() int { return int(math.Ceil(c.Secs / c.Beat)) }

// WAV renders the track.
func (c chordTrack) WAV() []byte {
	samples := int(c.Secs * float64(c.Rate))
	data := make([]byte, 2*samples)
	for b := range c.beats() {
		notes := c.chord(c.Degrees[b%len(c.Degrees)])
		var freqs []float64
		for _, s := range notes {
			freqs = append(freqs, 220*math.Pow(2, float64(s)/12))
		}
		freqs = append(freqs, 110*math.Pow(2, float64(notes[0]%12)/12)) // the bass
		start := int(float64(b) * c.Beat * float64(c.Rate))
		end := min(samples, int(float64(b+1)*c.Beat*float64(c.Rate)))
		// Each note is a sine turned by a fixed rotation every sample,
		// its overtones taken from it (sin 2w = 2 sin w cos w, sin 3w =
		// 3 sin w - 4 sin³ w), and the decay a fixed factor a sample: no
		// sin or exp a sample, which made the demo's start slow.
		var rot, osc [4][2]float64 // cos and sin of each note's step and phase
		for j, f := range freqs {
			d := 2 * math.Pi * f / float64(c.Rate)
			rot[j] = [2]float64{math.Cos(d), math.Sin(d)}
			osc[j] = [2]float64{1, 0}
		}
		decay, fall := 1.0, math.Exp(-1.2/float64(c.Rate))
		for s := start; s < end; s++ {
			t := float64(s-start) / float64(c.Rate)
			env := math.Min(1, t/0.02) * decay
			decay *= fall
			var v float64
			for j := range freqs {
				cw, sw := osc[j][0], osc[j][1]
				v += sw + 0.3*2*sw*cw + 0.1*sw*(3-4*sw*sw)
				osc[j] = [2]float64{cw*rot[j][0] - sw*rot[j][1], sw*rot[j][0] + cw*rot[j][1]}
			}
			binary.LittleEndian.PutUint16(data[2*s:], uint16(int16(v*env*4000)))
		}
	}
	info := []byte("INFO")
	for _, kv := range [][2]string{
		{"INAM", c.Title}, {"IART", c.Artist}, {"IPRD", c.Album},
		{"ITRK", fmt.Sprint(c.Track)}, {"ICRD", fmt.Sprint(c.Year)}, {"IGNR", "Demo"},
	} {
		info = riffChunk(info, kv[0], append([]byte(kv[1]), 0))
	}
	fmtChunk := make([]byte, 16)
	binary.LittleEndian.PutUint16(fmtChunk[0:], 1) // PCM
	binary.LittleEndian.PutUint16(fmtChunk[2:], 1) // mono
	binary.LittleEndian.PutUint32(fmtChunk[4:], uint32(c.Rate))
	binary.LittleEndian.PutUint32(fmtChunk[8:], uint32(2*c.Rate))
	binary.LittleEndian.PutUint16(fmtChunk[12:], 2)
	binary.LittleEndian.PutUint16(fmtChunk[14:], 16)
	body := []byte("WAVE")
	body = riffChunk(body, "fmt ", fmtChunk)
	body = riffChunk(body, "LIST", info)
	body = riffChunk(body, "data", data)
	return riffChunk(nil, "RIFF", body)
}

// riffChunk appends a RIFF chunk to b, padded to an even size.
func riffChunk(b []byte, id string, data []byte) []byte {
	b = append(b, id...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	b = append(b, data...)
	if len(data)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

// LRC is the track's lyrics: a line for each chord as it sounds.
func (c chordTrack) LRC() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "[ti:%s]\n[ar:%s]\n[al:%s]\n", c.Title, c.Artist, c.Album)
	for b := range c.beats() {
		t := float64(b) * c.Beat
		name := chordName(c.chord(c.Degrees[b%len(c.Degrees)]))
		fmt.Fprintf(&sb, "[%02d:%05.2f]%s plays %s (%d)\n", int(t)/60, math.Mod(t, 60), c.Artist, name, b+1)
	}
	return sb.String()
}
