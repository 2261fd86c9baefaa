package music

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// Tracks lists the mesh-wide library: every track an online node lists
// (this one's, cached copies included), each MD5 once with the nodes that
// hold it. Banned tracks are left out unless banned is true, then marked.
// Remote lists come from the cache when their version is unchanged, else
// from their own node; a node that cannot be listed is left out.
func (s *Service) Tracks(ctx context.Context, banned bool) ([]Track, error) {
	lib, err := s.library(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	bans := s.bans
	s.mu.Unlock()
	out := make([]Track, 0, len(lib))
	for _, t := range lib {
		tr := t.Track
		tr.Banned = isBanned(bans, tr)
		if tr.Banned && !banned {
			continue
		}
		out = append(out, tr)
	}
	slices.SortFunc(out, func(a, b Track) int {
		return cmp.Or(cmp.Compare(a.Artist, b.Artist), cmp.Compare(a.Album, b.Album), cmp.Compare(a.Track, b.Track),
			cmp.Compare(a.Title, b.Title), cmp.Compare(a.MD5.String(), b.MD5.String()))
	})
	return out, nil
}

// library returns the merged library, merging again when this node's
// list or an online node's summary changed since the last merge.
func (s *Service) library(ctx context.Context) (map[shards.MD5]*libTrack, error) {
	s.mu.Lock()
	if s.lib != nil && s.libGen == s.gen {
		lib := s.lib
		s.mu.Unlock()
		return lib, nil
	}
	gen := s.gen
	s.mu.Unlock()
	own, _ := s.own.Entries()
	lists, err := s.remote.Lists(ctx, s.node.Directory(), s.node.ID(), own)
	if err != nil {
		return nil, err
	}
	all, err := s.shards.Shares(ctx)
	if err != nil {
		return nil, err
	}
	downloads := make(map[shards.MD5]bool)
	for _, t := range all {
		if t.State != shards.StateSeeding {
			downloads[t.ID] = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	lib := merge(s.node.ID(), lists)
	for id, t := range lib {
		_, t.Local = s.local[id]
		t.Cached = !t.Local && downloads[id]
		if len(t.Sources) == 0 && !t.Cached {
			delete(lib, id)
		}
	}
	// A list fetched while the directory moved on stays valid for its
	// versions; the next call merges again if gen moved meanwhile.
	s.lib, s.libGen = lib, gen
	return lib, nil
}

// merge makes one library of the nodes' lists: each MD5 once, with the
// nodes whose entry holds the audio. Tags come from this node's entry,
// else from the first node's in id order; the cover and lyrics from the
// newest attachment, else from the first entry that has them.
func merge(self mesh.ID, lists map[mesh.ID][]entry) map[shards.MD5]*libTrack {
	nodes := make([]mesh.ID, 0, len(lists))
	for id := range lists {
		nodes = append(nodes, id)
	}
	slices.SortFunc(nodes, func(a, b mesh.ID) int {
		if a == self || b == self {
			return cmp.Compare(b2i(a != self), b2i(b != self))
		}
		return cmp.Compare(a, b)
	})
	n := 0
	for _, l := range lists {
		n = max(n, len(l))
	}
	lib := make(map[shards.MD5]*libTrack, n)
	coverAt := make(map[shards.MD5]int64)
	lyricsAt := make(map[shards.MD5]int64)
	for _, node := range nodes {
		for _, e := range lists[node] {
			t := lib[e.ID]
			if t == nil {
				t = &libTrack{e: e, Track: trackOf(e)}
				t.Sources = []mesh.ID{}
				lib[e.ID] = t
			} else if t.e.NoAudio && !e.NoAudio {
				// Tags of a node that holds the file over those of one
				// that only attached something.
				src := t.Sources
				t.Track, t.e = trackOf(e), e
				t.Sources = src
			}
			if !e.NoAudio {
				t.Sources = append(t.Sources, node)
			}
			if !e.Cover.IsZero() && (t.cover.IsZero() || e.AttAt > coverAt[e.ID]) {
				t.cover, coverAt[e.ID] = e.Cover, e.AttAt
			}
			if !e.Lyrics.IsZero() && (t.lyrics.IsZero() || e.AttAt > lyricsAt[e.ID]) {
				t.lyrics, lyricsAt[e.ID] = e.Lyrics, e.AttAt
			}
		}
	}
	for _, t := range lib {
		t.HasCover, t.HasLyrics = !t.cover.IsZero(), !t.lyrics.IsZero()
	}
	return lib
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func trackOf(e entry) Track {
	return Track{
		MD5: e.ID, Title: e.Title, Artist: e.Artist, Album: e.Album, Track: e.Track, Year: e.Year,
		Duration: e.Duration, Format: e.Format, Bitrate: e.Bitrate, SampleRate: e.SampleRate,
		Channels: e.Channels, Size: e.Size, Name: e.Name,
	}
}

// lookup finds a track of the library.
func (s *Service) lookup(ctx context.Context, id shards.MD5) (*libTrack, error) {
	lib, err := s.library(ctx)
	if err != nil {
		return nil, err
	}
	t, ok := lib[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknown, id)
	}
	return t, nil
}

// Stream opens a track for playing: the local file read in place, or a
// reader that fetches the pieces at the read position first from the
// nodes that hold it (shards.Open; a second Stream of the same track, from
// another tab, shares its download). Reads end with ctx.
func (s *Service) Stream(ctx context.Context, id shards.MD5) (shards.Content, error) {
	t, err := s.lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	banned := isBanned(s.bans, t.Track)
	s.mu.Unlock()
	if banned {
		return nil, fmt.Errorf("%w: %s", ErrBanned, id)
	}
	if !t.Local {
		if err := s.remember(t); err != nil {
			return nil, err
		}
	}
	c, err := s.shards.Open(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("music: stream %s: %w", id, err)
	}
	return c, nil
}

// remember keeps a peer's entry for a track this node streams or attaches
// to, so that its cached copy keeps its tags when the peers leave.
func (s *Service) remember(t *libTrack) error {
	e := t.e
	e.Cover, e.Lyrics, e.AttAt, e.NoAudio = t.cover, t.lyrics, 0, false
	s.mu.Lock()
	old, ok := s.known[e.ID]
	s.known[e.ID] = e
	s.mu.Unlock()
	if ok && old == e {
		return nil
	}
	return s.putJSON(bucketKnown, e.ID[:], e)
}

// Prefetch reads the first n bytes of a track (the next in the queue),
// so that it starts at once when its turn comes.
func (s *Service) Prefetch(ctx context.Context, id shards.MD5, n int64) error {
	c, err := s.Stream(ctx, id)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = io.Copy(io.Discard, io.LimitReader(c, n))
	return err
}

// RemoveCache removes this node's cached copy of a track fetched from
// peers: its download goes (shards.Remove) and the finished file with it.
// The track stays in the library while online nodes hold it.
func (s *Service) RemoveCache(ctx context.Context, id shards.MD5) error {
	all, err := s.shards.Shares(ctx)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(all, func(t shards.Transfer) bool { return t.ID == id && t.State != shards.StateSeeding })
	if i < 0 {
		return fmt.Errorf("%w: no cached copy of %s", ErrUnknown, id)
	}
	t := all[i]
	if err := s.shards.Remove(ctx, id); err != nil && !errors.Is(err, shards.ErrUnknown) {
		return fmt.Errorf("music: remove cached %s: %w", id, err)
	}
	// shards keeps a finished download's file (a user's download); a
	// track cached by playing it goes, unless it is in a music folder.
	s.mu.Lock()
	_, played := s.known[id]
	s.mu.Unlock()
	if t.State == shards.StateDone && played && t.Path != "" && !s.inFolders(t.Path) {
		if err := os.Remove(t.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("music: remove cached %s: %w", id, err)
		}
	}
	s.mu.Lock()
	delete(s.cached, id)
	s.mu.Unlock()
	if s.syncOwn() {
		s.changed()
	} else {
		s.mu.Lock()
		s.gen++
		s.mu.Unlock()
		s.events.Publish(Event{Library: true})
	}
	return nil
}
