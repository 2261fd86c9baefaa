package lrc

import (
	"sort"
	"testing"
)

// FuzzParse: no panic; synced lines are sorted and not before 0; the
// number of lines is bounded by the text. Seeds: testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add("[ti:x]\n[offset:-100]\n[00:01.00][00:03.5]a <00:01.20>b\n[1:02:03.4]c")
	f.Fuzz(func(t *testing.T, s string) {
		l := Parse(s)
		if len(l.Lines) > len(s)+1 {
			t.Fatalf("%d lines from %d bytes", len(l.Lines), len(s))
		}
		if !l.Synced {
			return
		}
		if !sort.SliceIsSorted(l.Lines, func(i, j int) bool { return l.Lines[i].T < l.Lines[j].T }) {
			t.Fatal("lines not sorted")
		}
		for _, x := range l.Lines {
			if x.T < 0 {
				t.Fatalf("line at %v", x.T)
			}
		}
	})
}
