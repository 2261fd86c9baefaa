package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"unicode/utf8"
)

// Text from other members reaches a terminal, which obeys what it is sent:
// escape sequences set the window title, clear the screen or write the
// clipboard (OSC 52), a carriage return or a newline starts a line that can
// pose as someone else's message, and bidi overrides reorder what is shown.
// So everything from the mesh is printed through termText.

// contLine starts each continuation line of a message: a line of a message
// never starts like a message ("[time] author: ...").
const contLine = "    | "

// termText returns s with every rune a terminal would act on shown as an
// escape instead: C0 and C1 controls and DEL as \xNN, bidi controls and the
// line and paragraph separators as \uNNNN, and bytes that are not UTF-8 as
// \xNN (a lone 0x9b is CSI to some terminals). With multiline, a newline is
// kept and the next line starts with contLine; else it is shown as \n.
func termText(s string, multiline bool) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n' && multiline:
			b.WriteString("\n" + contLine)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			fmt.Fprintf(&b, `\x%02x`, r)
		case isBidiControl(r) || r == '\u2028' || r == '\u2029':
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// isBidiControl reports the runes that change the direction in which text
// is shown: the marks (LRM, RLM, ALM), embeddings and overrides (LRE to
// RLO) and isolates (LRI to PDI). A message could otherwise show its words
// in an order other than the one it was written in.
func isBidiControl(r rune) bool {
	switch {
	case r == '\u200e', r == '\u200f', r == '\u061c':
		return true
	case r >= '\u202a' && r <= '\u202e':
		return true
	case r >= '\u2066' && r <= '\u2069':
		return true
	}
	return false
}

// headerStyle is how the head of a message line, "[time] author:", is set
// apart on a terminal: start is an SGR sequence ("" for none), ended by a
// reset. Only catnest prints escape sequences (termText shows a member's
// as text), so a head in color is one no member wrote. Escaping newlines
// is not enough: a long message wraps, and a member can pad one so that
// "[01-02 10:00] alice: …" starts a screen row. Wrapping lines ourselves at
// the terminal's width would not hold either: terminals disagree on the
// width of emoji and ambiguous characters, and most reflow old lines when
// the window is resized.
type headerStyle struct{ start string }

func (h headerStyle) end() string {
	if h.start == "" {
		return ""
	}
	return "\x1b[0m"
}

var (
	plainHeader = headerStyle{}
	// colorHeader is bold cyan: neither can be written in plain text
	// (unlike bold alone, which Unicode's mathematical bold letters mimic).
	colorHeader = headerStyle{start: "\x1b[1;36m"}
	// boldHeader is for users who set NO_COLOR.
	boldHeader = headerStyle{start: "\x1b[1m"}
)

// headerStyleFor returns the header style for output to w: colorHeader
// on a terminal, plainHeader for a pipe or file (which is read without a
// terminal's wrapping, or by a program), and boldHeader on a terminal when
// NO_COLOR is set (https://no-color.org). Windows consoles are left plain:
// they show SGR sequences only once asked to.
func headerStyleFor(w io.Writer) headerStyle {
	f, ok := w.(*os.File)
	if !ok || runtime.GOOS == "windows" || os.Getenv("TERM") == "dumb" {
		return plainHeader
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return plainHeader
	}
	if os.Getenv("NO_COLOR") != "" {
		return boldHeader
	}
	return colorHeader
}
