// Package examples holds the example plugins that ship with catnest, and
// that `catnest demo` nodes publish: a karaoke view of the current lyrics
// line, a "now playing" announcer that posts to the chat, and a word
// filter that hides chat messages. They are also the plugin authors'
// models (see plugins/README.md).
package examples

import (
	"embed"
	"io/fs"
	"slices"
)

//go:embed *.js
var files embed.FS

// Files returns the example plugins' files by name, in name order.
func Files() ([]string, map[string][]byte) {
	out := map[string][]byte{}
	names, _ := fs.Glob(files, "*.js")
	for _, n := range names {
		b, err := files.ReadFile(n)
		if err == nil {
			out[n] = b
		}
	}
	slices.Sort(names)
	return names, out
}
