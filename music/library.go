package music

import (
	"cmp"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/catnest/catnest/internal/reslist"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// Tracks lists the mesh-wide library: every track an online node lists
// (this one's, cached copies included), each MD5 once with the nodes that
// hold it. Banned tracks are left out unless banned is true, then marked.
// Remote lists come from the cache when their version is unchanged, else
// from their own node; a node that cannot be listed is left out.
func (s *Service) Tracks(ctx context.Context, banned bool) ([]Track, error) {
	lib, seq, err := s.libraryAt(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	bans, bansSeq, v := s.bans, s.bansSeq, s.view
	s.mu.Unlock()
	if v == nil || v.libSeq != seq || v.bansSeq != bansSeq {
		v = &tracksView{libSeq: seq, bansSeq: bansSeq, all: make([]Track, 0, len(lib))}
		for _, t := range lib {
			tr := t.Track
			tr.Banned = t.banned(bans)
			v.all = append(v.all, tr)
		}
		slices.SortFunc(v.all, func(a, b Track) int {
			return cmp.Or(cmp.Compare(a.Artist, b.Artist), cmp.Compare(a.Album, b.Album), cmp.Compare(a.Track, b.Track),
				cmp.Compare(a.Title, b.Title), reslist.CompareKey(a.MD5, b.MD5))
		})
		s.mu.Lock()
		s.view = v
		s.mu.Unlock()
	}
	out := make([]Track, 0, len(v.all))
	for _, tr := range v.all {
		if tr.Banned && !banned {
			continue
		}
		out = append(out, tr)
	}
	return out, nil
}

// library returns the merged library, merging again when this node's
// list or an online node's summary changed since the last merge.
func (s *Service) library(ctx context.Context) (map[shards.MD5]*libTrack, error) {
	lib, _, err := s.libraryAt(ctx)
	return lib, err
}

// libraryAt is library and the merge it comes from (libSeq).
func (s *Service) libraryAt(ctx context.Context) (map[shards.MD5]*libTrack, uint64, error) {
	s.mu.Lock()
	if s.lib != nil && s.libGen == s.gen {
		lib, seq := s.lib, s.libSeq
		s.mu.Unlock()
		return lib, seq, nil
	}
	gen := s.gen
	s.mu.Unlock()
	own, _ := s.own.Entries()
	lists, err := s.remote.Lists(ctx, mesh.Reachable(s.node.ID(), s.node.Directory()), s.node.ID(), own)
	if err != nil {
		return nil, 0, err
	}
	all, err := s.shards.Shares(ctx)
	if err != nil {
		return nil, 0, err
	}
	// Cached is a whole copy, checked against its MD5 (StateDone): a
	// download still running, paused or failed holds only part of the
	// track, which cannot play once its holders leave.
	cached := make(map[shards.MD5]bool)
	mine := cacheOwned(all)
	for _, t := range all {
		if t.State == shards.StateDone {
			cached[t.ID] = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	lib := merge(s.node.ID(), lists)
	for id, t := range lib {
		_, t.Local = s.local[id]
		t.Cached = !t.Local && cached[id]
		t.CacheRemovable = t.Cached && mine[id]
		if len(t.Sources) == 0 && !t.Cached {
			delete(lib, id)
		}
	}
	// A list fetched while the directory moved on stays valid for its
	// versions; the next call merges again if gen moved meanwhile.
	s.libSeq++
	s.lib, s.libGen = lib, gen
	return lib, s.libSeq, nil
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
				t.addAlt(t.e)
				t.Track, t.e = trackOf(e), e
				t.Sources = src
			} else {
				t.addAlt(e)
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

// addAlt keeps what e names the track by when it differs from the tags
// shown, so that a ban matches a track by any holder's names: a node
// cannot unban a track by listing it under other tags.
func (t *libTrack) addAlt(e entry) {
	n := names{e.Title, e.Artist, e.Album, e.Name}
	if n != (names{t.Title, t.Artist, t.Album, t.Name}) && !slices.Contains(t.alts, n) {
		t.alts = append(t.alts, n)
	}
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
// another tab, shares its download). Reads end with ctx. Playing is the
// user's wish to hear the track now: a download of it they paused starts
// again (whoever's it is).
func (s *Service) Stream(ctx context.Context, id shards.MD5) (shards.Content, error) {
	return s.stream(ctx, id, false)
}

// StreamAhead is Stream for reading ahead of the player (its prefetch of
// the next track in the queue): the user did not ask for that track yet,
// so a download of it they paused stays paused, and StreamAhead returns
// ErrPaused at once rather than a reader that waits for it.
func (s *Service) StreamAhead(ctx context.Context, id shards.MD5) (shards.Content, error) {
	return s.stream(ctx, id, true)
}

func (s *Service) stream(ctx context.Context, id shards.MD5, ahead bool) (shards.Content, error) {
	t, err := s.playable(ctx, id)
	if err != nil {
		return nil, err
	}
	if !t.Local {
		if err := s.remember(t); err != nil {
			return nil, err
		}
		// Start the download under the track's name; Open then reads
		// through it. A failure here is Open's to report. A download
		// that starts now is the cache's (its For is music's until the
		// user fetches it too), which may go over its limit.
		start := time.Now()
		tr, err := s.shards.Fetch(ctx, shards.Link{ID: id, Name: t.e.Name, Size: t.e.Size, For: resourceName, KeepPaused: ahead})
		if err != nil {
			s.log.Debug("fetch of a streamed track", "id", id, "err", err)
		}
		if err == nil && tr.State == shards.StatePaused {
			return nil, fmt.Errorf("%w: %s", ErrPaused, id)
		}
		var started time.Time
		if err == nil && tr.For == resourceName && !tr.Added.Before(start) {
			started = tr.Added
		}
		s.played(id, started)
		if !started.IsZero() {
			s.rescanSoon()
		}
	}
	c, err := s.shards.Open(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("music: stream %s: %w", id, err)
	}
	if t.Local {
		return c, nil
	}
	s.mu.Lock()
	s.streams[id]++
	s.mu.Unlock()
	return &playing{Content: c, s: s, id: id}, nil
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
// so that it starts at once when its turn comes (StreamAhead: a download
// of it the user paused stays paused, ErrPaused).
func (s *Service) Prefetch(ctx context.Context, id shards.MD5, n int64) error {
	c, err := s.StreamAhead(ctx, id)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = io.Copy(io.Discard, io.LimitReader(c, n))
	return err
}

// RemoveCache removes this node's cached copy of a track fetched from
// peers: its download goes (shards.RemoveFor) and the finished file with
// it. Only a download that is still music's is a cached copy: one the
// user fetched in the Files view, before or after playing it, is theirs
// and stays (ErrUsersCopy). The track stays in the library while online
// nodes hold it.
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
	if t.For != resourceName {
		return fmt.Errorf("%w: %s (remove it in the Files view)", ErrUsersCopy, id)
	}
	gone, err := s.shards.RemoveFor(ctx, id, resourceName)
	if errors.Is(err, shards.ErrNotOwned) {
		return fmt.Errorf("%w: %s (remove it in the Files view)", ErrUsersCopy, id)
	} else if err != nil && !errors.Is(err, shards.ErrUnknown) {
		return fmt.Errorf("music: remove cached %s: %w", id, err)
	}
	// shards keeps a finished download's file (a user's download); a
	// track cached by playing it goes, unless it is in a music folder.
	// Which file is RemoveFor's word (it may have finished since all was
	// listed); a download already gone leaves it alone, as removeCopy
	// does: the user's removal in the Files view took it and left them
	// the file, or another removal of the cache's deleted it.
	s.mu.Lock()
	_, played := s.known[id]
	s.mu.Unlock()
	if played && err == nil {
		if err := s.dropFile(ctx, gone); err != nil {
			return fmt.Errorf("music: remove cached %s: %w", id, err)
		}
	}
	s.forgetCopy(t)
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

// cacheOwned is the finished downloads among all that are the cache's
// (fetched by Stream, Link.For music): those RemoveCache removes. One the
// user fetched in the Files view is theirs.
func cacheOwned(all []shards.Transfer) map[shards.MD5]bool {
	mine := make(map[shards.MD5]bool)
	for _, t := range all {
		if t.State == shards.StateDone && t.For == resourceName {
			mine[t.ID] = true
		}
	}
	return mine
}

// unchanged reports whether a finished download's file still holds what
// it downloaded (a regular file of its size and MD5): a file the user
// edited since, or put in its place, is theirs.
func unchanged(ctx context.Context, t shards.Transfer) bool {
	f, err := os.Open(t.Path)
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != t.Size {
		return false
	}
	h := md5.New()
	if _, err := io.Copy(h, ctxReader{ctx, f}); err != nil {
		return false
	}
	return shards.MD5(h.Sum(nil)) == t.ID
}

// ctxReader stops reading when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
