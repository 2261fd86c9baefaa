package music

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/shards"
)

// The cache is the tracks this node fetched from peers to play them: the
// downloads Stream started (not the user's own downloads, not the files
// of the music folders). It is kept under Config.CacheLimit bytes by
// removing the least recently played first; a track that is playing is
// never removed.

// savePlayedEvery bounds how often a track's last play is written to the
// DB: the player reads a track with a request per seek and buffer refill.
const savePlayedEvery = time.Minute

// cacheEntry is a track of the cache: when it was last played (read by
// the player), when that was last written to the DB, and when the
// download Stream started was added (shards.Transfer.Added; zero in an
// entry written before it was kept). A transfer of the track added at
// another time is not the cache's: the user removed the cached one and
// downloaded the track again, and that copy is theirs.
type cacheEntry struct {
	played, saved, added time.Time
}

func (s *Service) now() time.Time {
	if s.cfg.now != nil {
		return s.cfg.now()
	}
	return time.Now()
}

// loadCache reads the cache's last plays. tx is load's.
func (s *Service) loadCache(tx *bbolt.Tx) error {
	return tx.Bucket(bucketCache).ForEach(func(k, v []byte) error {
		if len(k) == 16 && (len(v) == 8 || len(v) == 16) {
			at := time.UnixMilli(int64(binary.BigEndian.Uint64(v)))
			e := &cacheEntry{played: at, saved: at}
			if len(v) == 16 {
				e.added = time.Unix(0, int64(binary.BigEndian.Uint64(v[8:])))
			}
			s.fetched[shards.MD5(k)] = e
		}
		return nil
	})
}

// played notes that the player read track id now; a non-zero started is
// when the download this node's Stream started was added, which makes it
// part of the cache.
func (s *Service) played(id shards.MD5, started time.Time) {
	now := s.now()
	s.mu.Lock()
	e := s.fetched[id]
	if e == nil && started.IsZero() {
		s.mu.Unlock()
		return
	}
	if e == nil {
		e = &cacheEntry{}
		s.fetched[id] = e
	}
	e.played = now
	save := now.Sub(e.saved) >= savePlayedEvery || e.saved.IsZero() || !started.IsZero()
	if !started.IsZero() {
		e.added = started
	}
	if save {
		e.saved = now
	}
	added := e.added
	s.mu.Unlock()
	if save {
		var v [16]byte
		binary.BigEndian.PutUint64(v[:], uint64(now.UnixMilli()))
		binary.BigEndian.PutUint64(v[8:], uint64(added.UnixNano()))
		if err := s.putBytes(bucketCache, id[:], v[:]); err != nil {
			s.log.Warn("note a play", "id", id, "err", err)
		}
	}
}

// forgetStale is forget of an entry still added at added: a Stream that
// started a new download of the track since (played) keeps it.
func (s *Service) forgetStale(id shards.MD5, added time.Time) {
	s.forgetIf(id, func(e *cacheEntry) bool { return e.added.Equal(added) })
}

// forgetCopy is forget of the entry of t, a download of the cache that
// was removed: a Stream that started a new download of the track since
// (played) keeps its entry, or the cache neither counted nor pruned the
// new download.
func (s *Service) forgetCopy(t shards.Transfer) {
	s.forgetIf(t.ID, func(e *cacheEntry) bool { return e.added.IsZero() || e.added.Equal(t.Added) })
}

// forget takes a track out of the cache's bookkeeping.
func (s *Service) forget(id shards.MD5) {
	s.forgetIf(id, func(*cacheEntry) bool { return true })
}

// forgetIf takes a track out of the cache's bookkeeping if ok accepts its
// entry. The check and both deletes are one step under the DB's lock (s.mu
// is taken inside it, never the other way round): a play noted meanwhile
// is never deleted from the DB while it stays in memory, and once it
// returns the DB holds no record of the entry it took out, nor of one a
// concurrent forget took out.
func (s *Service) forgetIf(id shards.MD5, ok func(*cacheEntry) bool) {
	err := s.db.Update(func(tx *bbolt.Tx) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		e := s.fetched[id]
		if e != nil && !ok(e) {
			return nil
		}
		delete(s.fetched, id)
		return tx.Bucket(bucketCache).Delete(id[:])
	})
	if err != nil {
		s.log.Warn("forget a cached track", "id", id, "err", err)
	}
}

// playingLocked reports whether a track is playing: a stream of it is
// open, or it was read within its duration and Config.PlayingGrace (the
// player reads ahead, then plays from its buffer). s.mu is held.
func (s *Service) playingLocked(id shards.MD5, now time.Time) bool {
	if s.streams[id] > 0 {
		return true
	}
	e := s.fetched[id]
	if e == nil {
		return false
	}
	d := s.cfg.PlayingGrace
	if k, ok := s.known[id]; ok {
		d += time.Duration(k.Duration * float64(time.Second))
	}
	return now.Sub(e.played) < d
}

// prune removes cached tracks, least recently played first, until the
// cache is within Config.CacheLimit, and returns those it removed. all
// is the shards' transfers, local the tracks of the music folders. It
// also forgets the entries of tracks whose download is gone: removed by
// the user in the Files view, or by an older node that kept the record.
func (s *Service) prune(ctx context.Context, all []shards.Transfer, local map[shards.MD5]string) map[shards.MD5]bool {
	now := s.now()
	type cand struct {
		t      shards.Transfer
		played time.Time
	}
	var used int64
	var cands []cand
	stale := make(map[shards.MD5]time.Time)
	s.mu.Lock()
	// An entry of a track with no transfer in all: the user removed its
	// download (DELETE /api/shards), or a Stream began it after all was
	// listed; shards tells which below.
	missing := make(map[shards.MD5]time.Time)
	for id, e := range s.fetched {
		missing[id] = e.added
	}
	for _, t := range all {
		delete(missing, t.ID)
		e := s.fetched[t.ID]
		if e == nil || t.State == shards.StateSeeding {
			continue
		}
		if !e.added.IsZero() && e.added.After(t.Added) {
			// A Stream started a new download of it after all was
			// listed (its old one removed meanwhile): t is not it, and
			// taken for the user's, the new one was forgotten and stayed
			// on disk counted by nothing. The next look decides.
			continue
		}
		if t.For != resourceName || (!e.added.IsZero() && !e.added.Equal(t.Added)) {
			// Not the download Stream started, or the user fetched it
			// too: the user's own.
			stale[t.ID] = e.added
			continue
		}
		if _, ok := local[t.ID]; ok || (t.Path != "" && s.inFolders(t.Path)) {
			continue
		}
		used += t.Size
		if !s.playingLocked(t.ID, now) {
			cands = append(cands, cand{t, e.played})
		}
	}
	s.mu.Unlock()
	for id, added := range missing {
		if _, err := s.shards.Transfer(ctx, id); errors.Is(err, shards.ErrUnknown) {
			stale[id] = added
		}
	}
	for id, added := range stale {
		s.forgetStale(id, added) // unless started again meanwhile
	}
	if used <= s.cfg.CacheLimit {
		return nil
	}
	slices.SortFunc(cands, func(a, b cand) int {
		return cmp.Or(a.played.Compare(b.played), cmp.Compare(a.t.ID.String(), b.t.ID.String()))
	})
	gone := make(map[shards.MD5]bool)
	for _, c := range cands {
		if used <= s.cfg.CacheLimit {
			break
		}
		if err := s.removeCopy(ctx, c.t); err != nil {
			s.log.Warn("cache: remove a track", "id", c.t.ID, "err", err)
			continue
		}
		used -= c.t.Size
		gone[c.t.ID] = true
		s.log.Info("cache: removed the least recently played track", "id", c.t.ID, "name", c.t.Name, "size", c.t.Size)
	}
	return gone
}

// removeCopy removes the cached copy of a track this node fetched to play
// it: its download, and the file of a finished one unless it is in a
// music folder or was changed since (then it is the user's). A download
// the user fetched since t was listed is theirs, and stays (an error).
// Whether it finished is RemoveFor's word, not t's: t was listed before,
// and a download that finished in between would leave its file behind.
// A download already gone (ErrUnknown) leaves its file alone: another
// removal took it, the user's (DELETE /api/shards/{id} leaves a finished
// file to the user) or the cache's own, which deleted its copy itself.
func (s *Service) removeCopy(ctx context.Context, t shards.Transfer) error {
	gone, err := s.shards.RemoveFor(ctx, t.ID, resourceName)
	if err != nil && !errors.Is(err, shards.ErrUnknown) {
		return fmt.Errorf("music: remove cached %s: %w", t.ID, err)
	}
	if err == nil {
		if err := s.dropFile(ctx, gone); err != nil {
			return fmt.Errorf("music: remove cached %s: %w", t.ID, err)
		}
	}
	s.forgetCopy(t)
	return nil
}

// dropFile deletes the file of a finished download music removed (as
// RemoveFor returned it): shards leaves a finished file in place. One in
// a music folder, or changed since it downloaded, is the user's: it stays.
func (s *Service) dropFile(ctx context.Context, t shards.Transfer) error {
	if t.State != shards.StateDone || t.Path == "" || s.inFolders(t.Path) || !unchanged(ctx, t) {
		return nil
	}
	if err := os.Remove(t.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// playing is a stream of a remote track: while it is open the track is
// playing, and never leaves the cache.
type playing struct {
	shards.Content
	s      *Service
	id     shards.MD5
	closed bool
}

func (p *playing) Close() error {
	if !p.closed {
		p.closed = true
		p.s.mu.Lock()
		if p.s.streams[p.id]--; p.s.streams[p.id] <= 0 {
			delete(p.s.streams, p.id)
		}
		p.s.mu.Unlock()
		p.s.played(p.id, time.Time{})
	}
	return p.Content.Close()
}
