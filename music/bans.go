package music

import (
	"context"
	"fmt"
	"regexp"
	"slices"
)

// Limits of the ban list.
const (
	MaxBans       = 1000
	MaxBanPattern = 1000
)

// Bans returns the ban list's patterns.
func (s *Service) Bans(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string{}, s.banSrc...), nil
}

// SetBans replaces the ban list: regular expressions (RE2 syntax) over
// each track's title, artist, album and file name. A banned track is
// left out of Tracks and never streamed. If any pattern is invalid,
// ErrBadPattern says which and why, and the list stays as it was.
func (s *Service) SetBans(ctx context.Context, patterns []string) error {
	res, err := compileBans(patterns)
	if err != nil {
		return err
	}
	patterns = slices.Clone(patterns)
	if patterns == nil {
		patterns = []string{}
	}
	if err := s.putJSON(bucketBans, []byte("patterns"), patterns); err != nil {
		return err
	}
	s.mu.Lock()
	s.bans, s.banSrc = res, patterns
	s.mu.Unlock()
	s.events.Publish(Event{Library: true})
	return nil
}

func compileBans(patterns []string) ([]*regexp.Regexp, error) {
	if len(patterns) > MaxBans {
		return nil, fmt.Errorf("%w: %d patterns (at most %d)", ErrBadPattern, len(patterns), MaxBans)
	}
	out := make([]*regexp.Regexp, 0, len(patterns))
	for i, p := range patterns {
		if len(p) > MaxBanPattern {
			return nil, fmt.Errorf("%w: pattern %d is %d bytes (at most %d)", ErrBadPattern, i+1, len(p), MaxBanPattern)
		}
		if p == "" {
			return nil, fmt.Errorf("%w: pattern %d is empty (it would ban everything)", ErrBadPattern, i+1)
		}
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("%w: pattern %d %q: %v", ErrBadPattern, i+1, p, err)
		}
		out = append(out, re)
	}
	return out, nil
}

// isBanned reports whether a pattern matches the track's title, artist,
// album or file name.
func isBanned(bans []*regexp.Regexp, t Track) bool {
	for _, re := range bans {
		if re.MatchString(t.Title) || re.MatchString(t.Artist) || re.MatchString(t.Album) || re.MatchString(t.Name) {
			return true
		}
	}
	return false
}
