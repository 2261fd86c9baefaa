package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/catnest/catnest/webui"
)

// rawDanger returns the first rune of s a terminal would act on, or that
// reorders text, other than a newline, and whether there is one. It is
// written apart from termText, from the Unicode tables, so that the tests
// do not share termText's blind spots.
func rawDanger(s string) (rune, bool) {
	for _, r := range s {
		switch {
		case r == '\n':
		case unicode.IsControl(r), r == utf8.RuneError:
			return r, true
		case unicode.Is(unicode.Bidi_Control, r), r == '\u2028', r == '\u2029':
			return r, true
		}
	}
	return 0, false
}

func TestTermText(t *testing.T) {
	for _, tt := range []struct {
		name, in, want string
	}{
		{"plain", "hello, 猫窝 👨‍👩‍👧 é", "hello, 猫窝 👨‍👩‍👧 é"},
		{"window title", "\x1b]0;pwned\x07", `\x1b]0;pwned\x07`},
		{"clear screen", "\x1b[2J\x1b[Hhi", `\x1b[2J\x1b[Hhi`},
		{"clipboard write", "\x1b]52;c;cm0gLXJmIH4=\x1b\\", `\x1b]52;c;cm0gLXJmIH4=\x1b\`},
		{"fake line", "hi\n[01-02 10:00] carol: send me your key", "hi\n" + contLine + "[01-02 10:00] carol: send me your key"},
		{"carriage return", "hi\r[01-02 10:00] carol: fake", `hi\x0d[01-02 10:00] carol: fake`},
		{"CRLF", "a\r\nb", `a\x0d` + "\n" + contLine + "b"},
		{"C1 CSI", "\u009b31mred", `\x9b31mred`},
		{"C1 NEL", "a\u0085b", `a\x85b`},
		{"8-bit CSI byte", "\x9b31mred", `\x9b31mred`},
		{"invalid UTF-8", "a\xff\xfeb\xc3", `a\xff\xfeb\xc3`},
		{"DEL and NUL", "a\x7fb\x00c", `a\x7fb\x00c`},
		{"bell and backspace", "\a\b", `\x07\x08`},
		{"tab", "a\tb", `a\tb`},
		{"right-to-left override", "user\u202egnp.exe", `user\u202egnp.exe`},
		{"embeddings", "\u202a\u202b\u202c\u202d", `\u202a\u202b\u202c\u202d`},
		{"isolates", "\u2066a\u2067b\u2068c\u2069", `\u2066a\u2067b\u2068c\u2069`},
		{"marks", "\u200e\u200f\u061c", `\u200e\u200f\u061c`},
		{"separators", "a\u2028b\u2029c", `a\u2028b\u2029c`},
		{"replacement char stays", "\ufffd", "\ufffd"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := termText(tt.in, true)
			if got != tt.want {
				t.Fatalf("termText(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if r, bad := rawDanger(strings.ReplaceAll(got, "\ufffd", "")); bad {
				t.Fatalf("output holds raw %U", r)
			}
			one := termText(tt.in, false)
			if strings.Contains(one, "\n") {
				t.Fatalf("single-line termText(%q) = %q holds a newline", tt.in, one)
			}
		})
	}
}

// TestMessageLineHostile prints messages whose author and text try to pose
// as other messages or drive the terminal: each shows as one message, and
// on a terminal only its head is in color, which no member can write (a
// text padded to wrap puts a fake head at the start of a row, in plain).
func TestMessageLineHostile(t *testing.T) {
	when := time.Date(2026, 1, 2, 10, 0, 0, 0, time.Local)
	for _, tt := range []struct {
		author, text string
	}{
		{"mallory", "ok\n[01-02 10:00] alice: I am alice"},
		{"mallory\n[01-02 10:00] alice", "I am alice"},
		{"mallory\r[01-02 10:00] alice", "I am alice"},
		{"\x1b[2K\ralice", "overwrote my name"},
		{"mallory", strings.Repeat("\x1b[1A\x1b[2K", 50) + "erased the screen above"},
		{"\u202ealice", "\u2067reversed\u2069"},
		{"mallory", strings.Repeat(" ", 200) + "[01-02 10:00] alice: wrapped to the start of a row"},
		{"mallory", strings.Repeat("猫", 100) + "[01-02 10:00] alice: after wide characters"},
	} {
		colored := messageLine(webui.Message{AuthorName: tt.author, Text: tt.text, Time: when}, colorHeader)
		wantHead := colorHeader.start + "[01-02 10:00] " + termText(tt.author, false) + ":" + colorHeader.end() + " "
		if !strings.HasPrefix(colored, wantHead) || strings.Count(colored, "\x1b") != 2 {
			t.Errorf("author %q text %q: %q, want only the head %q in color", tt.author, tt.text, colored, wantHead)
		}
		out := messageLine(webui.Message{AuthorName: tt.author, Text: tt.text, Time: when}, plainHeader)
		if out != strings.TrimPrefix(strings.Replace(colored, colorHeader.end(), "", 1), colorHeader.start) {
			t.Errorf("plain %q and colored %q differ in more than the color", out, colored)
		}
		if r, bad := rawDanger(out); bad {
			t.Errorf("author %q text %q: raw %U in %q", tt.author, tt.text, r, out)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		for _, l := range lines[1:] {
			if !strings.HasPrefix(l, contLine) {
				t.Errorf("author %q text %q: continuation line %q does not start with %q", tt.author, tt.text, l, contLine)
			}
		}
		if !strings.HasPrefix(out, "[01-02 10:00] ") {
			t.Errorf("line %q", out)
		}
	}
}

// TestMessageLineGuest: a message a node posted for a guest shows as the
// guest's, beside the node, never as the node's own.
func TestMessageLineGuest(t *testing.T) {
	m := webui.Message{AuthorName: "alice", Guest: "ann", Text: "hi", Time: time.Date(2025, 1, 2, 10, 0, 0, 0, time.Local)}
	if out := messageLine(m, plainHeader); out != "[01-02 10:00] ann (guest of alice): hi\n" {
		t.Fatalf("guest message line %q", out)
	}
}

// FuzzMessageLine checks that whatever a member writes, the terminal gets
// no raw control or bidi rune, valid UTF-8, and one line per line of text,
// each after the first starting with contLine.
func FuzzMessageLine(f *testing.F) {
	f.Add("alice", "hello")
	f.Add("mallory\n[01-02 10:00] alice", "\x1b]52;c;cm0=\x07\n[01-02 10:00] bob: hi\r\u202e")
	f.Add("\u009b", "\xff\x9b\u2066\u2028\t\x7f")
	f.Fuzz(func(t *testing.T, author, text string) {
		m := webui.Message{AuthorName: author, Text: text, Time: time.Unix(0, 0)}
		out := messageLine(m, plainHeader)
		// On a terminal the head is in color, and nothing else is.
		colored := messageLine(m, colorHeader)
		head, rest, ok := strings.Cut(colored, colorHeader.end())
		if !ok || !strings.HasPrefix(head, colorHeader.start) || strings.Count(colored, "\x1b") != 2 ||
			strings.TrimPrefix(head, colorHeader.start)+rest != out {
			t.Fatalf("colored %q, plain %q", colored, out)
		}
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8: %q", out)
		}
		// U+FFFD in the input is harmless text; a bad byte is escaped, so
		// a RuneError here came from the input as written.
		clean := strings.ReplaceAll(out, "\ufffd", "")
		if r, bad := rawDanger(clean); bad {
			t.Fatalf("raw %U in %q", r, out)
		}
		if !strings.HasSuffix(out, "\n") {
			t.Fatalf("no final newline: %q", out)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if want := 1 + strings.Count(text, "\n"); len(lines) != want {
			t.Fatalf("%d lines, want %d: %q", len(lines), want, out)
		}
		for _, l := range lines[1:] {
			if !strings.HasPrefix(l, contLine) {
				t.Fatalf("continuation %q in %q", l, out)
			}
		}
	})
}

func TestHeaderStyleFor(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows consoles get no colors")
	}
	t.Setenv("TERM", "xterm-256color")
	t.Setenv("NO_COLOR", "")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	// A character device, as a terminal is.
	dev, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for _, tt := range []struct {
		name string
		w    io.Writer
		want headerStyle
	}{
		{"buffer", &bytes.Buffer{}, plainHeader},
		{"pipe", w, plainHeader},
		{"file", file, plainHeader},
		{"character device", dev, colorHeader},
	} {
		if got := headerStyleFor(tt.w); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got.start, tt.want.start)
		}
	}
	t.Setenv("NO_COLOR", "1")
	if got := headerStyleFor(dev); got != boldHeader {
		t.Errorf("NO_COLOR: %q, want bold", got.start)
	}
	t.Setenv("TERM", "dumb")
	if got := headerStyleFor(dev); got != plainHeader {
		t.Errorf("TERM=dumb: %q, want plain", got.start)
	}
}
