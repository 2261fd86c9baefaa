// Package lrc parses LRC lyrics.
//
// TEMPORARY STUB of branch mlib, for package music to build on until the
// TAGS branch (mtags) lands: the lead deletes this file when merging.
package lrc

import (
	"strconv"
	"strings"
)

// Lyrics are parsed lyrics; Synced when any line had a time tag.
type Lyrics struct {
	Synced bool
	Lines  []Line
}

// Line is shown from T seconds.
type Line struct {
	T    float64
	Text string
}

// Parse (stub) takes one [mm:ss.xx] tag at the start of a line.
func Parse(text string) Lyrics {
	var l Lyrics
	for _, s := range strings.Split(text, "\n") {
		s = strings.TrimRight(s, "\r")
		if len(s) > 10 && s[0] == '[' && s[3] == ':' && s[9] == ']' {
			m, e1 := strconv.Atoi(s[1:3])
			sec, e2 := strconv.ParseFloat(s[4:9], 64)
			if e1 == nil && e2 == nil {
				l.Synced = true
				l.Lines = append(l.Lines, Line{T: float64(m)*60 + sec, Text: s[10:]})
				continue
			}
		}
		l.Lines = append(l.Lines, Line{Text: s})
	}
	return l
}
