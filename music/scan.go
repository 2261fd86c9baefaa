package music

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/music/meta"
	"github.com/catnest/catnest/shards"
)

// audioExt are the files the library takes.
var audioExt = map[string]bool{".mp3": true, ".flac": true, ".wav": true}

// sidecarCover ranks the names of sidecar covers: cover.* before
// folder.* before front.*.
var sidecarCover = map[string]int{"cover": 3, "folder": 2, "front": 1}

var imageExt = map[string]bool{".jpg": true, ".jpeg": true, ".png": true}

// maxScanErrors bounds the skipped files ScanStatus lists.
const maxScanErrors = 1000

// tagBatch is how many parsed files wake the tag cache's writer (more
// gather while it writes).
const tagBatch = 256

// rescan brings the library up to date with the shares: shards has
// walked and hashed the music folders; music reads the tags of MD5s it
// has not read before (an unchanged, renamed or moved file costs a map
// lookup), finds sidecar covers and lyrics, and publishes its list.
func (s *Service) rescan(ctx context.Context) {
	all, err := s.shards.Shares(ctx)
	if err != nil {
		s.log.Warn("rescan: shares", "err", err)
		return
	}
	local := make(map[shards.MD5]string)
	sizes := make(map[shards.MD5]int64)
	lrcs := make(map[string]shards.MD5)   // path without extension -> .lrc
	covers := make(map[string]shards.MD5) // dir -> best sidecar cover
	coverRank := make(map[string]int)
	done := make(map[shards.MD5]bool)
	for _, t := range all {
		if t.State == shards.StateDone {
			done[t.ID] = true
			continue
		}
		if t.State != shards.StateSeeding || !s.inFolders(t.Path) {
			continue
		}
		ext := strings.ToLower(filepath.Ext(t.Path))
		switch {
		case audioExt[ext]:
			if p, ok := local[t.ID]; !ok || t.Path < p {
				local[t.ID] = t.Path
				sizes[t.ID] = t.Size
			}
		case ext == ".lrc":
			lrcs[strings.TrimSuffix(t.Path, filepath.Ext(t.Path))] = t.ID
		case imageExt[ext]:
			base := strings.ToLower(strings.TrimSuffix(filepath.Base(t.Path), filepath.Ext(t.Path)))
			dir := filepath.Dir(t.Path)
			if r := sidecarCover[base]; r > coverRank[dir] {
				covers[dir], coverRank[dir] = t.ID, r
			}
		}
	}

	// Tags: from memory, else the DB, else the file.
	s.mu.Lock()
	tags := make(map[shards.MD5]tagRecord, len(local))
	var need []shards.MD5
	for id := range local {
		if r, ok := s.tags[id]; ok {
			tags[id] = r
		} else {
			need = append(need, id)
		}
	}
	s.mu.Unlock()
	fromDB, err := s.cachedTags(need)
	if err != nil {
		s.log.Warn("rescan: tag cache", "err", err)
	}
	var parse []shards.MD5
	for _, id := range need {
		if r, ok := fromDB[id]; ok {
			tags[id] = r
		} else {
			parse = append(parse, id)
		}
	}
	s.setScan(func(st *ScanStatus) {
		st.State = "scanning"
		st.Files = len(local)
		st.Done = len(local) - len(parse)
		st.Bytes = 0
	})
	stored := s.parseAll(ctx, parse, local, sizes, tags)
	defer stored()
	evicted := s.prune(ctx, all, local)

	s.mu.Lock()
	s.local, s.tags, s.sizes = local, tags, sizes
	s.sideCover = make(map[shards.MD5]shards.MD5)
	s.sideLyrics = make(map[shards.MD5]shards.MD5)
	var errs []ScanError
	for id, p := range local {
		if c, ok := covers[filepath.Dir(p)]; ok {
			s.sideCover[id] = c
		}
		if l, ok := lrcs[strings.TrimSuffix(p, filepath.Ext(p))]; ok {
			s.sideLyrics[id] = l
		}
		if r := tags[id]; r.Err != "" && len(errs) < maxScanErrors {
			errs = append(errs, ScanError{Path: p, Reason: r.Err})
		}
	}
	s.cached = make(map[shards.MD5]bool)
	for id := range done {
		if _, ok := s.known[id]; ok && !evicted[id] {
			s.cached[id] = true
		}
	}
	owned := cacheOwned(all)
	for id := range evicted {
		delete(owned, id)
	}
	ownerMoved := !maps.Equal(owned, s.ownedCopies)
	s.ownedCopies = owned
	s.scan.State, s.scan.Errors = "idle", errs
	if s.scan.Errors == nil {
		s.scan.Errors = []ScanError{}
	}
	st := s.scan
	s.mu.Unlock()
	s.events.Publish(Event{Scan: &st})
	if s.syncOwn() {
		s.changed()
	} else if ownerMoved {
		// The user took a cached copy (or it left): the list is the
		// same, but what the library says of it is not.
		s.mu.Lock()
		s.gen++
		s.mu.Unlock()
		s.events.Publish(Event{Library: true})
	}
}

// setScan changes the scan status under the lock.
func (s *Service) setScan(f func(*ScanStatus)) {
	s.mu.Lock()
	f(&s.scan)
	s.mu.Unlock()
}

// parseAll reads the tags of the files of ids and reports progress at
// most every 250 ms. The records go to the DB's tag cache in batches,
// written by a goroutine of their own so that reading tags never waits
// for the disk to sync (a commit took up to a second on a busy disk, each
// 256 files); the returned func waits for the last batch.
func (s *Service) parseAll(ctx context.Context, ids []shards.MD5, paths map[shards.MD5]string, sizes map[shards.MD5]int64, out map[shards.MD5]tagRecord) (wait func()) {
	type record struct {
		id shards.MD5
		v  []byte
	}
	var (
		mu      sync.Mutex
		pending []record
	)
	wake := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			_, more := <-wake
			mu.Lock()
			batch := pending
			pending = nil
			mu.Unlock()
			if len(batch) > 0 {
				err := s.db.Update(func(tx *bbolt.Tx) error {
					b := tx.Bucket(bucketTags)
					for _, r := range batch {
						if err := b.Put(r.id[:], r.v); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					s.log.Warn("store tags", "err", err)
				}
			}
			if !more {
				return
			}
		}
	}()
	wait = func() {
		close(wake)
		<-done
	}

	last := time.Now()
	for _, id := range ids {
		if ctx.Err() != nil {
			return wait
		}
		out[id] = s.parse(ctx, paths[id])
		if v, err := jsonBytes(out[id]); err == nil {
			mu.Lock()
			pending = append(pending, record{id, v})
			n := len(pending)
			mu.Unlock()
			if n >= tagBatch {
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		} else {
			s.log.Warn("store tags", "err", err)
		}
		s.setScan(func(st *ScanStatus) {
			st.Done++
			st.Bytes += sizes[id]
		})
		if time.Since(last) > 250*time.Millisecond {
			last = time.Now()
			s.mu.Lock()
			st := s.scan
			st.Errors = nil
			s.mu.Unlock()
			s.events.Publish(Event{Scan: &st})
		}
	}
	return wait
}

// parse reads one file's tags; a file that is not what its name says, or
// cannot be read, gets a record with the reason.
func (s *Service) parse(ctx context.Context, path string) tagRecord {
	f, err := os.Open(path)
	if err != nil {
		return tagRecord{Err: err.Error()}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return tagRecord{Err: err.Error()}
	}
	info, err := meta.Read(f, fi.Size(), filepath.Base(path))
	if err != nil {
		s.log.Info("music file skipped", "path", path, "err", err)
		return tagRecord{Err: err.Error()}
	}
	r := tagRecord{
		Title: info.Title, Artist: info.Artist, Album: info.Album, Track: info.Track, Year: info.Year,
		Duration: info.Duration, Format: info.Format, Bitrate: info.Bitrate, SampleRate: info.SampleRate, Channels: info.Channels,
	}
	if len(info.Cover) > 0 {
		if id, err := s.storeAttachment(ctx, info.Cover, coverExt(info.CoverType, info.Cover)); err == nil {
			r.Cover = id
		} else {
			s.log.Info("embedded cover not kept", "path", path, "err", err)
		}
	}
	if info.Lyrics != "" && len(info.Lyrics) <= MaxLyrics {
		if id, err := s.storeAttachment(ctx, []byte(info.Lyrics), ".lrc"); err == nil {
			r.Lyrics = id
		} else {
			s.log.Info("embedded lyrics not kept", "path", path, "err", err)
		}
	}
	return r
}

// storeAttachment keeps data as Dir/music/<md5>.<ext> and shares it, so
// that peers can fetch it as they fetch any resource; its MD5 goes in the
// track's list entry. It is shared for music (ShareFor): the user never
// shared it, so it stays out of the Files lists.
func (s *Service) storeAttachment(ctx context.Context, data []byte, ext string) (shards.MD5, error) {
	sum := md5.Sum(data)
	dir := filepath.Join(s.cfg.Dir, "music")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return shards.MD5{}, fmt.Errorf("music: %w", err)
	}
	path := filepath.Join(dir, hex.EncodeToString(sum[:])+ext)
	if _, err := os.Stat(path); err != nil {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return shards.MD5{}, fmt.Errorf("music: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return shards.MD5{}, fmt.Errorf("music: %w", err)
		}
	}
	t, err := s.shards.ShareFor(ctx, path, resourceName)
	if err != nil {
		return shards.MD5{}, fmt.Errorf("music: share attachment: %w", err)
	}
	return t.ID, nil
}

// claimAttachments makes music's own (ShareFor) the attachments that are
// still the user's shares: nodes shared them so before ShareFor existed,
// and storeAttachment shares one only when it reads a track's tags, which
// the tag cache spares it from then on. Once done, a start costs one
// Shares; a file that is music's already is left alone, as is one the
// user has since unshared (it is not in Shares).
func (s *Service) claimAttachments(ctx context.Context) {
	all, err := s.shards.Shares(ctx)
	if err != nil {
		s.log.Warn("claim attachments: shares", "err", err)
		return
	}
	dir, err := filepath.Abs(filepath.Join(s.cfg.Dir, "music"))
	if err != nil {
		return
	}
	for _, t := range all {
		if t.State != shards.StateSeeding || t.For != "" || filepath.Dir(t.Path) != dir {
			continue
		}
		// Checked here: the claim of an unchanged share neither hashes
		// nor waits, so ShareFor succeeds after a stop, and at 20,000
		// tracks the loop held the stop for seconds. What is left is
		// claimed at the next start.
		if ctx.Err() != nil {
			return
		}
		if _, err := s.shards.ShareFor(ctx, t.Path, resourceName); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Info("claim attachment", "path", t.Path, "err", err)
		}
	}
}

// syncOwn makes this node's list what the folders, the cached downloads
// and the attachments say; it reports whether the list changed.
func (s *Service) syncOwn() bool {
	before := s.own.Summary()
	s.mu.Lock()
	want := make(map[shards.MD5]entry, len(s.local)+len(s.cached)+len(s.atts))
	for id := range s.local {
		if e, ok := s.ownEntryLocked(id); ok {
			want[id] = e
		}
	}
	for id := range s.cached {
		if e, ok := s.ownEntryLocked(id); ok {
			want[id] = e
		}
	}
	for id := range s.atts {
		if e, ok := s.ownEntryLocked(id); ok {
			want[id] = e
		}
	}
	s.mu.Unlock()
	have, _ := s.own.Entries()
	for _, e := range have {
		if _, ok := want[e.ID]; !ok {
			s.own.Remove(1, e.ID)
		}
	}
	for _, e := range want {
		s.own.Put(1, e)
	}
	return s.own.Summary() != before
}

// ownEntryLocked is this node's entry for a track: the tags of its file
// (or, for a peer's track, those it was listed with), its cover and
// lyrics, the user's attachments over them. s.mu is held.
func (s *Service) ownEntryLocked(id shards.MD5) (entry, bool) {
	var e entry
	path, isLocal := s.local[id]
	r, tagged := s.tags[id]
	switch {
	case isLocal && tagged && r.Err == "":
		name := filepath.Base(path)
		e = entry{
			ID: id, Name: cleanText(name), Title: cleanText(r.Title), Artist: cleanText(r.Artist), Album: cleanText(r.Album),
			Track: r.Track, Year: r.Year, Duration: r.Duration, Format: cleanText(r.Format), Bitrate: r.Bitrate,
			SampleRate: r.SampleRate, Channels: r.Channels, Cover: r.Cover, Lyrics: r.Lyrics,
		}
		e.Size = s.sizes[id]
		if e.Title == "" {
			e.Title = cleanText(strings.TrimSuffix(name, filepath.Ext(name)))
		}
		if e.Cover.IsZero() {
			e.Cover = s.sideCover[id]
		}
		if l, ok := s.sideLyrics[id]; ok {
			e.Lyrics = l
		}
	case isLocal:
		return entry{}, false // skipped: not audio, unreadable
	default:
		k, ok := s.known[id]
		if !ok {
			return entry{}, false
		}
		e = k
		e.NoAudio = !s.cached[id]
	}
	if a, ok := s.atts[id]; ok {
		if !a.Cover.IsZero() {
			e.Cover = a.Cover
		}
		if !a.Lyrics.IsZero() {
			e.Lyrics = a.Lyrics
		}
		e.AttAt = a.At
	}
	return e, true
}
