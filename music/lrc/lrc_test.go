package lrc

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name   string
		text   string
		synced bool
		lines  []Line
		meta   map[string]string
	}{
		{"several tags on a line, sorted", "[00:10.00][00:02.50]chorus\n[00:05.00]verse\n", true,
			[]Line{{2.5, "chorus"}, {5, "verse"}, {10, "chorus"}}, nil},
		{"offset shows lines sooner, clamped at 0", "[offset:+1500]\n[00:01.00]a\n[00:03.25]b", true,
			[]Line{{0, "a"}, {1.75, "b"}}, map[string]string{"offset": "+1500"}},
		{"negative offset", "[offset:-250]\n[00:01.00]a", true, []Line{{1.25, "a"}}, map[string]string{"offset": "-250"}},
		{"metadata", "[ti:Song]\n[ar:Singer]\n[al:Album]\n[length: 03:12]\n[00:00.00]x", true,
			[]Line{{0, "x"}}, map[string]string{"ti": "Song", "ar": "Singer", "al": "Album", "length": "03:12"}},
		{"time formats", "[01:02]a\n[01:02.5]b\n[01:02.345]c\n[01:02:50]d\n[1:00:02.5]e", true,
			[]Line{{62, "a"}, {62.345, "c"}, {62.5, "b"}, {62.5, "d"}, {3602.5, "e"}}, nil},
		{"enhanced word tags dropped, blank line kept", "[00:01.00]<00:01.00>one <00:01.50>two\r\n[00:02.00]\r\n[00:03.00]a <b> c", true,
			[]Line{{1, "one two"}, {2, ""}, {3, "a <b> c"}}, nil},
		{"untimed lines in a synced file ignored", "[Chorus]\n[00:01.00]a\nstray", true, []Line{{1, "a"}}, nil},
		{"plain text is unsynced", "\n\nfirst line\n\n[Chorus]\nlast line  \n\n", false,
			[]Line{{0, "first line"}, {0, ""}, {0, "[Chorus]"}, {0, "last line"}}, nil},
		{"bad tags are text", "[00:xx]a\n[99]b", false, []Line{{0, "[00:xx]a"}, {0, "[99]b"}}, nil},
		{"empty", "", false, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Parse(tt.text)
			if got.Synced != tt.synced || !reflect.DeepEqual(got.Lines, tt.lines) || !reflect.DeepEqual(got.Meta, tt.meta) {
				t.Errorf("got synced=%v %v %v\nwant synced=%v %v %v", got.Synced, got.Lines, got.Meta, tt.synced, tt.lines, tt.meta)
			}
		})
	}
}

func TestParseFixtures(t *testing.T) {
	b, err := os.ReadFile("../../testdata/music/song.lrc")
	if err != nil {
		t.Fatal(err)
	}
	got := Parse(string(b))
	want := []Line{{0.5, "The cat sleeps"}, {4, "The nest is warm"}, {6.75, "Music for every node"}, {8.5, "The cat sleeps"}}
	if !got.Synced || !reflect.DeepEqual(got.Lines, want) || got.Meta["ar"] != "Zoë" || got.Offset != 500 {
		t.Errorf("song.lrc: %+v", got)
	}
	b, err = os.ReadFile("../../testdata/music/plain.lrc")
	if err != nil {
		t.Fatal(err)
	}
	got = Parse(string(b))
	if got.Synced || !reflect.DeepEqual(got.Lines, []Line{{0, "The cat sleeps"}, {0, "The nest is warm"}}) {
		t.Errorf("plain.lrc: %+v", got)
	}
}

// TestParseBounded: text past MaxSize is not parsed, and many tags on one
// line cost lines in proportion to the bytes read.
func TestParseBounded(t *testing.T) {
	huge := strings.Repeat("[00:01.00]", MaxSize/10*3)
	got := Parse(huge + "x")
	if len(got.Lines) != MaxSize/10 {
		t.Errorf("%d lines from %d bytes", len(got.Lines), len(huge))
	}
}
