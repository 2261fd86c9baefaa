// Package lrc parses lyrics: LRC files (several time tags on a line,
// [offset:], metadata tags such as [ti:] and [ar:], enhanced word tags
// <mm:ss.xx> dropped) and plain text, which comes back unsynced.
//
// It does not import package music (which imports it): Line has the same
// fields as music.Line, so music converts with music.Line(l).
package lrc

import (
	"sort"
	"strconv"
	"strings"
)

// MaxSize bounds what Parse reads: text past it is ignored. A song's LRC
// is a few KiB.
const MaxSize = 1 << 20

// Lyrics are parsed lyrics: synced lines sorted by time when the text had
// time tags, else every line of the text with T = 0.
type Lyrics struct {
	Synced bool
	Lines  []Line
	// Meta holds the metadata tags by lower-case key (ti, ar, al, by,
	// length, …), offset included as written.
	Meta map[string]string
	// Offset is the [offset:] in milliseconds, already applied to Lines
	// (positive shows lines sooner).
	Offset int
}

// Line is one line shown from T seconds into the track.
type Line struct {
	T    float64 `json:"t"`
	Text string  `json:"text"`
}

// Parse parses LRC or plain text. It never fails: what is not a tag is
// text.
func Parse(text string) Lyrics {
	if len(text) > MaxSize {
		text = text[:MaxSize]
	}
	text = strings.TrimPrefix(text, "\uFEFF")
	var l Lyrics
	var plain []string
	for _, raw := range splitLines(text) {
		line := strings.TrimSpace(raw)
		var times []float64
		for strings.HasPrefix(line, "[") {
			end := strings.IndexByte(line, ']')
			if end < 0 {
				break
			}
			inner := line[1:end]
			if t, ok := parseTime(inner); ok {
				times = append(times, t)
			} else if k, v, ok := metaTag(inner); ok && len(times) == 0 {
				if l.Meta == nil {
					l.Meta = make(map[string]string)
				}
				l.Meta[k] = v
				if k == "offset" {
					if ms, err := strconv.Atoi(strings.TrimPrefix(v, "+")); err == nil {
						l.Offset = ms
					}
				}
			} else {
				break
			}
			line = strings.TrimLeft(line[end+1:], " \t")
		}
		if len(times) > 0 {
			text := dropWordTags(line)
			for _, t := range times {
				l.Lines = append(l.Lines, Line{T: t, Text: text})
			}
			continue
		}
		if line == "" && raw != "" && strings.HasPrefix(strings.TrimSpace(raw), "[") {
			continue // a line of metadata tags only
		}
		plain = append(plain, strings.TrimRight(raw, " \t"))
	}
	if len(l.Lines) > 0 {
		l.Synced = true
		for i := range l.Lines {
			l.Lines[i].T = max(0, l.Lines[i].T-float64(l.Offset)/1000)
		}
		sort.SliceStable(l.Lines, func(i, j int) bool { return l.Lines[i].T < l.Lines[j].T })
		return l
	}
	// Unsynced: the text's lines, without the blank ones around them.
	for len(plain) > 0 && plain[0] == "" {
		plain = plain[1:]
	}
	for len(plain) > 0 && plain[len(plain)-1] == "" {
		plain = plain[:len(plain)-1]
	}
	for _, p := range plain {
		l.Lines = append(l.Lines, Line{Text: p})
	}
	return l
}

func splitLines(s string) []string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.Split(s, "\n")
}

// parseTime parses mm:ss, mm:ss.f…, mm:ss:ff and hh:mm:ss.f… into seconds.
func parseTime(s string) (float64, bool) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, false
	}
	var nums []float64
	for i, p := range parts {
		if p == "" || len(p) > 9 {
			return 0, false
		}
		for _, c := range p {
			if (c < '0' || c > '9') && !(c == '.' && i == len(parts)-1) {
				return 0, false
			}
		}
		v, err := strconv.ParseFloat(p, 64)
		if err != nil {
			return 0, false
		}
		nums = append(nums, v)
	}
	if len(nums) == 2 {
		return nums[0]*60 + nums[1], true
	}
	if nums[1] >= 60 {
		return 0, false
	}
	if strings.Contains(parts[2], ".") || len(parts[2]) > 2 {
		return nums[0]*3600 + nums[1]*60 + nums[2], true // hh:mm:ss.f
	}
	return nums[0]*60 + nums[1] + nums[2]/100, true // mm:ss:ff (hundredths)
}

// metaTag parses [key:value] with a key of letters.
func metaTag(s string) (key, value string, ok bool) {
	i := strings.IndexByte(s, ':')
	if i <= 0 || i > 16 {
		return "", "", false
	}
	for _, c := range s[:i] {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && c != '_' {
			return "", "", false
		}
	}
	return strings.ToLower(s[:i]), strings.TrimSpace(s[i+1:]), true
}

// dropWordTags removes the word timings <mm:ss.xx> of enhanced LRC.
func dropWordTags(s string) string {
	if !strings.Contains(s, "<") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			break
		}
		if _, ok := parseTime(s[i+1 : i+j]); !ok {
			b.WriteString(s[:i+j+1])
			s = s[i+j+1:]
			continue
		}
		b.WriteString(s[:i])
		s = s[i+j+1:]
	}
	b.WriteString(s)
	return strings.Join(strings.Fields(b.String()), " ")
}
