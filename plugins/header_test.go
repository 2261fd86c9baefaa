package plugins

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// plugin builds a plugin file with the given header lines.
func plugin(lines ...string) string {
	return "// ==CatnestPlugin==\n" + strings.Join(lines, "\n") + "\n// ==/CatnestPlugin==\nexport default class P {}\n"
}

func TestParseHeader(t *testing.T) {
	ok := plugin("// @name  Now playing", "// @description Posts the track.", "// @version 1.2.0-beta.1", "// @permissions chat-write, player-read chat-read", "// a comment", "// @author Ann")
	h, err := ParseHeader([]byte("\n\n" + ok))
	if err != nil {
		t.Fatal(err)
	}
	want := Header{Name: "Now playing", Description: "Posts the track.", Version: "1.2.0-beta.1", Author: "Ann", Permissions: []string{"chat-read", "chat-write", "player-read"}}
	if h.Name != want.Name || h.Description != want.Description || h.Version != want.Version || h.Author != want.Author || !slices.Equal(h.Permissions, want.Permissions) {
		t.Fatalf("got %+v, want %+v", h, want)
	}
	for _, tt := range []struct{ name, src, want string }{
		{"no header", "export default class P {}", "no header"},
		{"code before", "let x = 1;\n" + ok, "no header"},
		{"no end", "// ==CatnestPlugin==\n// @name x\n// @version 1.0.0\n", "no end"},
		{"no name", plugin("// @version 1.0.0"), "no @name"},
		{"empty name", plugin("// @name", "// @version 1.0.0"), "@name is empty"},
		{"no version", plugin("// @name x"), "no @version"},
		{"bad version", plugin("// @name x", "// @version 1.0"), "not a semantic version"},
		{"v prefix", plugin("// @name x", "// @version v1.0.0"), "not a semantic version"},
		{"build metadata", plugin("// @name x", "// @version 1.0.0+abc"), "not a semantic version"},
		{"unknown permission", plugin("// @name x", "// @version 1.0.0", "// @permissions chat-read root"), `unknown permission "root"`},
		{"permission twice", plugin("// @name x", "// @version 1.0.0", "// @permissions storage storage"), "twice"},
		{"key twice", plugin("// @name x", "// @name y", "// @version 1.0.0"), "@name given twice"},
		{"unknown key", plugin("// @name x", "// @version 1.0.0", "// @grant all"), "unknown header key @grant"},
		{"not a comment", plugin("// @name x", "name = 1", "// @version 1.0.0"), "not a // comment"},
		{"long name", plugin("// @name "+strings.Repeat("n", MaxName+1), "// @version 1.0.0"), "over 64"},
		{"control", plugin("// @name a\x1bb", "// @version 1.0.0"), "control"},
		{"no export", strings.TrimSuffix(plugin("// @name x", "// @version 1.0.0"), "export default class P {}\n"), "no default export"},
		{"not utf-8", plugin("// @name \xff", "// @version 1.0.0"), "not UTF-8"},
		{"nul", plugin("// @name x", "// @version 1.0.0") + "\x00", "not UTF-8"},
		{"too big", plugin("// @name x", "// @version 1.0.0") + strings.Repeat(" ", MaxFile), "at most 524288"},
		{"endless header", "// ==CatnestPlugin==\n" + strings.Repeat("// filler\n", 100) + "// ==/CatnestPlugin==\nexport default 1", "does not end within"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseHeader([]byte(tt.src))
			if !errors.Is(err, ErrBadPlugin) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%v, want ErrBadPlugin saying %q", err, tt.want)
			}
		})
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"1.0.0", "1.0.1", -1}, {"1.10.0", "1.9.9", 1}, {"2.0.0-rc.1", "2.0.0", -1}, {"1.2.3", "1.2.3", 0},
	} {
		if got := CompareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareVersions(%s, %s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// FuzzParseHeader: any input either parses into a header within the
// limits, or fails with ErrBadPlugin; never a panic.
func FuzzParseHeader(f *testing.F) {
	f.Add([]byte(plugin("// @name x", "// @version 1.0.0", "// @permissions chat-read storage")))
	f.Add([]byte(plugin("// @name   spaced  ", "//@version 0.0.1-alpha", "// @description d", "// @author a")))
	f.Add([]byte("// ==CatnestPlugin==\n// @name x\n"))
	f.Add([]byte("\uFEFF" + plugin("// @name x", "// @version 1.0.0")))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			if !errors.Is(err, ErrBadPlugin) {
				t.Fatalf("error %v does not wrap ErrBadPlugin", err)
			}
			return
		}
		if h.Name == "" || len([]rune(h.Name)) > MaxName || len([]rune(h.Description)) > MaxDescription || CheckVersion(h.Version) != nil || len(b) > MaxFile {
			t.Fatalf("accepted %+v", h)
		}
		if _, err := ParsePermissions(strings.Join(h.Permissions, " ")); err != nil {
			t.Fatalf("accepted permissions %q: %v", h.Permissions, err)
		}
	})
}
