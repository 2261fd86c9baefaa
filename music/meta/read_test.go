package meta

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// fixtures is testdata/music at the repository root, made by its make.sh,
// which knows the lengths it made.
const fixtures = "../../testdata/music"

func readFixture(t testing.TB, name string) (Info, error) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	return Read(bytes.NewReader(b), int64(len(b)), name)
}

func TestReadFixtures(t *testing.T) {
	jpeg, err := os.ReadFile(filepath.Join(fixtures, "cover.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	png, err := os.ReadFile(filepath.Join(fixtures, "folder.png"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file     string
		want     Info // Duration is the true length; Bitrate 0 is not checked
		cover    []byte
		lyricsIn string
		exact    bool
	}{
		{"cbr_v23.mp3", Info{Format: "mp3", Title: "猫窝之歌", Artist: "The Nest Cats", Album: "Mesh Tunes", Track: 3, Year: 2019,
			Duration: 12, SampleRate: 22050, Channels: 1, Bitrate: 64000, CoverType: "image/jpeg"}, jpeg, "[00:04.50]The nest is warm", true},
		{"vbr_xing_v24.mp3", Info{Format: "mp3", Title: "Warm Nest", Artist: "Zoë", Album: "Mesh Tunes", Track: 7, Year: 2021,
			Duration: 12, SampleRate: 22050, Channels: 1, CoverType: "image/png"}, png, "", true},
		{"vbr_noxing_v1.mp3", Info{Format: "mp3", Title: "No Header", Artist: "Walker", Album: "Frames", Track: 5, Year: 2001,
			Duration: 12, SampleRate: 22050, Channels: 1}, nil, "", false},
		{"cbr_plain.mp3", Info{Format: "mp3", Duration: 12, SampleRate: 44100, Channels: 2, Bitrate: 32000}, nil, "", false},
		{"tagged.flac", Info{Format: "flac", Title: "Flac Song", Artist: "Lossless Cat", Album: "Mesh Tunes", Track: 2, Year: 2020,
			Duration: 12, SampleRate: 11025, Channels: 1, CoverType: "image/jpeg"}, jpeg, "[00:03.00]Flac line two", true},
		{"info.wav", Info{Format: "wav", Title: "Wave Tone", Artist: "Riff Cat", Album: "Chunks", Track: 4, Year: 2018,
			Duration: 5, SampleRate: 8000, Channels: 1, Bitrate: 128000}, nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := readFixture(t, tt.file)
			if err != nil {
				t.Fatal(err)
			}
			// Within 1%, and exact where a header (Xing with a LAME tag,
			// STREAMINFO, a WAV's data size) says the length.
			tol := tt.want.Duration / 100
			if tt.exact {
				tol = 0.001
			}
			if math.Abs(got.Duration-tt.want.Duration) > tol {
				t.Errorf("duration %.4f s, want %.3f within %.3f", got.Duration, tt.want.Duration, tol)
			}
			if tt.want.Bitrate != 0 && math.Abs(float64(got.Bitrate-tt.want.Bitrate)) > float64(tt.want.Bitrate)/50 {
				t.Errorf("bitrate %d, want %d within 2%%", got.Bitrate, tt.want.Bitrate)
			}
			if got.Bitrate <= 0 {
				t.Errorf("bitrate %d", got.Bitrate)
			}
			if !bytes.Equal(got.Cover, tt.cover) {
				t.Errorf("cover of %d bytes, want %d", len(got.Cover), len(tt.cover))
			}
			if !bytes.Contains([]byte(got.Lyrics), []byte(tt.lyricsIn)) || (tt.lyricsIn == "") != (got.Lyrics == "") {
				t.Errorf("lyrics %q, want them to hold %q", got.Lyrics, tt.lyricsIn)
			}
			got.Duration, got.Bitrate, got.Cover, got.Lyrics = tt.want.Duration, tt.want.Bitrate, nil, ""
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestReadBroken(t *testing.T) {
	tests := []struct {
		file string
		want error
	}{
		{"broken_text.mp3", ErrNotAudio},
		{"broken_hugeframe.mp3", ErrCorrupt},
		{"broken_truncated.mp3", ErrCorrupt},
		{"broken_truncated.flac", ErrCorrupt},
		{"song.lrc", ErrNotAudio},
		{"cover.jpg", ErrNotAudio},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			info, err := readFixture(t, tt.file)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v (info %+v), want %v", err, info, tt.want)
			}
		})
	}
}
