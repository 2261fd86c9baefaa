package shards

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/mesh"
)

// The shares' buckets: resource id -> shareRecord (JSON), and the paths
// under shared folders that the user unshared (path -> nothing), which a
// rescan leaves alone.
var (
	bucketShares   = []byte("shards/shares")
	bucketUnshared = []byte("shards/unshared")
)

// flushInterval is how often changed share records and upload counters
// are written: a folder scan of thousands of files writes them in a few
// transactions, not one each. A file shared by Share is written at once.
const flushInterval = time.Second

// maxHashRetries bounds how often a file that changes while it is hashed is
// hashed again before it is left for its next change.
const maxHashRetries = 3

// hashWorkers is how many queued paths serve looks at (hashes) at once:
// one per core on a machine of two, every core but one on a bigger one.
// A file's whole MD5 is one stream on one core, so a scan on fewer
// workers than cores leaves cores idle: with one worker on the 2-core
// machine a 1 GB music scan kept 1.06 cores busy and ran at 0.65-0.74x
// md5sum's speed; with two, 1.5 cores and 1.04-1.14x when the host gave
// the process the CPU (load 2-5, BENCHMARKS.md). Each worker yields
// after every chunk (hashYield), so goroutines waiting for a P get one
// within a chunk's MD5. The cost: with every P hashing, a goroutine
// woken by the network waits for the runtime's background network poll
// (up to 10 ms, sysmon's) instead of an idle P's. With three cores or
// more, two workers already outrun md5sum, and one P is left idle to
// answer the network at once.
//
// At load 15-20 two workers scanned slower than one (as an earlier
// measurement found): the process got 0.3-0.9 cores from run to run,
// and with two busy threads often less than with one, its CPU per byte
// the same. Such figures measure the host's scheduler more than the scan.
func hashWorkers() int {
	n := runtime.GOMAXPROCS(0)
	if n >= 3 {
		return n - 1
	}
	return n
}

// errChanged is returned inside the shares when a file no longer matches
// its stamp or its manifest.
var errChanged = errors.New("shards: shared file changed on disk")

// shareFile is one user's file that holds a shared resource's bytes.
type shareFile struct {
	Path string `json:"path"`
	// Folder is the shared folder the file was found under; empty for a
	// file shared by itself.
	Folder string `json:"folder,omitempty"`
	Stamp  stamp  `json:"stamp"`
	// Racy is set when the file changed so shortly before it was hashed
	// that a later edit could leave Stamp as it is: every piece served
	// from it is checked against its MD5 first.
	Racy bool `json:"racy,omitempty"`
	// For is the service that shares the file for its peers (ShareFor:
	// music's covers); empty for the user's. Records from before it was
	// kept read as the user's.
	For string `json:"for,omitempty"`
}

// shareRecord is a share as the bucket keeps it.
type shareRecord struct {
	Name     string      `json:"name"`
	Manifest []byte      `json:"manifest"`
	Added    time.Time   `json:"added"`
	Uploaded int64       `json:"uploaded"`
	Files    []shareFile `json:"files"`
}

// share is one shared resource. Several of the user's files may hold the
// same bytes (a copy in two folders): they are one resource, served from
// the first file that is still as it was.
type share struct {
	id    MD5
	name  string
	man   *Manifest
	hash  Hash
	added time.Time
	files []shareFile // guarded by shares.mu; never changed in place

	uploaded atomic.Int64
	rate     rateMeter
}

// shares is the index of this node's shared files. It serves their pieces
// in place, from the user's files, after checking each file is as it was
// hashed; a file that changed is hashed again in the background, and never
// served stale meanwhile.
type shares struct {
	svc   *Service
	cache *pieceCache
	// reads bounds the whole pieces read at once to check them.
	reads chan struct{}

	mu       sync.Mutex
	byID     map[MD5]*share
	byPath   map[string]MD5
	unshared map[string]bool
	// dirty holds the records to write at the next flush (a nil share
	// deletes), and unsharedDirty the unshared paths to write or delete.
	dirty         map[MD5]*share
	unsharedDirty map[string]bool
	// queue holds the paths to look at again and when; wake tells serve.
	queue map[string]queued
	wake  chan struct{}
	// busy are the queued paths serve's workers are looking at now: taken
	// out of queue, not yet done. A path queued again meanwhile waits
	// until it is no longer busy.
	busy map[string]bool
	// hashing counts the hashes of each path under way, for Scan.
	hashing map[string]int
	// gone holds the files found missing since the queue was last empty,
	// by inode, so that a rename whose new name is looked at after its old
	// one is still known as a rename.
	gone map[fileKey]goneFile
	// byIno finds a shared file by inode, for renames.
	byIno map[fileKey]string

	// hashed counts the files hashed, for Scan and tests.
	hashed atomic.Int64
	// lanes hashes pieces in SIMD lanes while serve runs (nil before).
	lanes atomic.Pointer[lanes]
	// hashStarted, if set (by tests, before serve), is called on the
	// worker's goroutine as the hash of a path starts; it may block.
	hashStarted func(path string)
}

type fileKey struct{ dev, ino uint64 }

type goneFile struct {
	man  *Manifest
	id   MD5
	file shareFile
}

// queued is a path waiting to be looked at again.
type queued struct {
	folder string
	owner  string // the service it is shared for (shareFile.For)
	due    time.Time
}

func openShares(svc *Service) (*shares, error) {
	s := &shares{
		svc:           svc,
		cache:         newPieceCache(svc.cfg.PieceCache),
		reads:         make(chan struct{}, 4),
		byID:          make(map[MD5]*share),
		byPath:        make(map[string]MD5),
		unshared:      make(map[string]bool),
		dirty:         make(map[MD5]*share),
		unsharedDirty: make(map[string]bool),
		queue:         make(map[string]queued),
		busy:          make(map[string]bool),
		hashing:       make(map[string]int),
		gone:          make(map[fileKey]goneFile),
		byIno:         make(map[fileKey]string),
		wake:          make(chan struct{}, 1),
	}
	var bad [][]byte
	err := svc.db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketShares)
		if err != nil {
			return err
		}
		u, err := tx.CreateBucketIfNotExists(bucketUnshared)
		if err != nil {
			return err
		}
		if err := u.ForEach(func(k, _ []byte) error {
			s.unshared[string(k)] = true
			return nil
		}); err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			sh, err := decodeShare(k, v)
			if err != nil {
				svc.log.Warn("dropping a share record that does not decode", "id", fmt.Sprintf("%x", k), "err", err)
				bad = append(bad, slices.Clone(k))
				return nil
			}
			s.byID[sh.id] = sh
			for _, f := range sh.files {
				s.byPath[f.Path] = sh.id
				if f.Stamp.Ino != 0 {
					s.byIno[fileKey{f.Stamp.Dev, f.Stamp.Ino}] = f.Path
				}
			}
			return nil
		})
	})
	if err == nil && len(bad) > 0 {
		err = svc.db.Update(func(tx *bbolt.Tx) error {
			for _, k := range bad {
				if err := tx.Bucket(bucketShares).Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("shards: open shares: %w", err)
	}
	// Files that changed while the node was down are hashed again
	// before they are served.
	now := time.Now()
	for _, sh := range s.byID {
		for _, f := range sh.files {
			if fi, err := os.Stat(f.Path); err != nil || stampOf(fi) != f.Stamp {
				s.detachLocked(f.Path)
				s.queue[f.Path] = queued{folder: f.Folder, owner: f.For, due: now}
			}
		}
	}
	s.putEntries()
	return s, nil
}

// putEntries puts every share in the catalog.
func (s *shares) putEntries() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sh := range s.byID {
		s.svc.catalog.put(ownShares, sh.entry())
	}
}

func decodeShare(k, v []byte) (*share, error) {
	var id MD5
	if len(k) != len(id) {
		return nil, fmt.Errorf("key of %d bytes", len(k))
	}
	copy(id[:], k)
	var rec shareRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, err
	}
	man, err := DecodeManifest(rec.Manifest)
	if err != nil {
		return nil, err
	}
	if len(rec.Files) == 0 {
		return nil, errors.New("no files")
	}
	sh := &share{id: id, name: rec.Name, man: man, hash: man.Hash(), added: rec.Added, files: rec.Files}
	sh.uploaded.Store(rec.Uploaded)
	return sh, nil
}

func (sh *share) record() shareRecord {
	return shareRecord{
		Name:     sh.name,
		Manifest: sh.man.Encode(),
		Added:    sh.added,
		Uploaded: sh.uploaded.Load(),
		Files:    sh.files,
	}
}

// entry is the share as the catalog lists it: Internal when every file
// that holds it is a service's. Named by the user's own file when a
// service's file came first (a cover named by its MD5, and the user's
// copy of the same bytes): the user shared it under that name.
func (sh *share) entry() Entry {
	name := sh.name
	owner := sh.owner()
	if owner == "" && sh.files[0].For != "" {
		for _, f := range sh.files {
			if f.For == "" {
				name = nameFor(f.Path)
				break
			}
		}
	}
	return Entry{ID: sh.id, Manifest: sh.hash, Size: sh.man.Size, Name: name, Type: typeFor(name), Internal: owner != ""}
}

// owner is the service the share is for, when every file that holds it
// is a service's (the first file's); empty when one is the user's.
func (sh *share) owner() string {
	for _, f := range sh.files {
		if f.For == "" {
			return ""
		}
	}
	if len(sh.files) == 0 {
		return ""
	}
	return sh.files[0].For
}

// transfer is the share as the API lists it. s.mu is held.
func (s *shares) transferLocked(sh *share) Transfer {
	return s.transferAsLocked(sh, sh.name, sh.files[0].Path)
}

// transferAsLocked is the share as the file at path, named name, shares
// it: one resource shared from several files (the same bytes under two
// names) is listed under its first name, but whoever shares a file gets
// a link that carries that file's name. s.mu is held.
func (s *shares) transferAsLocked(sh *share, name, path string) Transfer {
	l := Link{
		Node:       s.svc.node.ID(),
		Rendezvous: s.svc.cfg.Rendezvous,
		Channel:    FilesChannel,
		ID:         sh.id,
		Manifest:   sh.hash,
		Name:       name,
		Size:       sh.man.Size,
	}
	return Transfer{
		ID:       sh.id,
		Name:     name,
		Size:     sh.man.Size,
		Type:     typeFor(name),
		Manifest: sh.hash,
		Link:     l.String(),
		Have:     sh.man.Size,
		State:    StateSeeding,
		Path:     path,
		Uploaded: sh.uploaded.Load(),
		Sources:  map[mesh.ID]int64{},
		Rate:     sh.rate.rate(time.Now()),
		Added:    sh.added,
		For:      sh.owner(),
	}
}

// share hashes the file at path and shares it. folder is the shared folder
// it lies under, or empty for a file shared by itself (followed if it is a
// symlink, and written to the database before share returns). owner is the
// service that shares it (ShareFor), empty for the user; the last call for
// a path says whose it is.
//
// Sharing again a file already shared and unchanged costs a stat: music
// shares the same embedded cover once per track of an album, and hashing
// it and syncing the database each time made a library scan crawl. A racy
// file is hashed again (its stamp cannot vouch for its bytes), but when it
// proves the same the database already holds it and is not synced.
func (s *shares) share(ctx context.Context, path, folder, owner string) (Transfer, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Transfer{}, fmt.Errorf("%w: %s: %v", ErrNotFile, path, err)
	}
	prevID, prev, had := s.sharedAs(abs, folder)
	if had && (!prev.Racy || prev.For != owner) {
		// A racy file only changing hands is not hashed again: its
		// record keeps Racy, so what it serves is still checked. Music
		// writes a cover and shares it at once, so nearly every one it
		// claims at its start is racy.
		if fi, err := os.Stat(abs); err == nil && stampOf(fi) == prev.Stamp {
			if prev.For != owner {
				if t, ok := s.reown(prevID, prev, owner); ok {
					return t, nil
				}
			} else if t, ok := s.transferAs(prevID, abs); ok {
				return t, nil
			}
		}
	}
	st, racy, man, id, err := s.hashPath(ctx, abs, folder != "")
	if err != nil {
		return Transfer{}, err
	}
	f := shareFile{Path: abs, Folder: folder, Stamp: st, Racy: racy, For: owner}
	if had && prevID == id && prev == f {
		if t, ok := s.transferAs(id, abs); ok {
			return t, nil
		}
	}
	s.add(id, man, f)
	if folder == "" && !(had && prevID == id && prev.Stamp == st && prev.For == owner) {
		if err := s.flush(); err != nil {
			return Transfer{}, err
		}
	}
	if t, ok := s.transferAs(id, abs); ok {
		return t, nil
	}
	return Transfer{}, fmt.Errorf("%w: %s went while it was shared", ErrNotFile, abs)
}

// reown makes f, shared as id and unchanged, owner's (shareFile.For)
// without hashing it again: music claims thousands of covers and lyrics
// at its start on a node that shared them before ShareFor. A service's
// claim is written at the next checkpoint, not synced at once (one sync
// each made 22,000 take 90 s): lost to a crash, the file is still shared
// and the service claims it again at its next start. The user's claim is
// synced, as a new share is.
func (s *shares) reown(id MD5, f shareFile, owner string) (Transfer, bool) {
	s.mu.Lock()
	sh := s.byID[id]
	s.mu.Unlock()
	if sh == nil {
		return Transfer{}, false
	}
	f.For = owner
	s.add(id, sh.man, f)
	if owner == "" && f.Folder == "" {
		if err := s.flush(); err != nil {
			return Transfer{}, false
		}
	}
	return s.transferAs(id, f.Path)
}

// transferAs is the share of id as the file at path shares it (see
// transferAsLocked).
func (s *shares) transferAs(id MD5, path string) (Transfer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.byID[id]
	if sh == nil {
		return Transfer{}, false
	}
	return s.transferAsLocked(sh, nameFor(path), path), true
}

// sharedAs finds path among the shared files with the same folder, and
// the resource it holds.
func (s *shares) sharedAs(path, folder string) (MD5, shareFile, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.byPath[path]
	if !ok || s.byID[id] == nil {
		return MD5{}, shareFile{}, false
	}
	for _, f := range s.byID[id].files {
		if f.Path == path && f.Folder == folder {
			return id, f, true
		}
	}
	return MD5{}, shareFile{}, false
}

// hashPath hashes a file and returns the stamp it had throughout. A file
// that changes while it is read is read again. lstat refuses symlinks (a
// link in a shared folder must not share what it points to outside).
func (s *shares) hashPath(ctx context.Context, path string, lstat bool) (stamp, bool, *Manifest, MD5, error) {
	if lstat {
		fi, err := os.Lstat(path)
		if err != nil {
			return stamp{}, false, nil, MD5{}, fmt.Errorf("%w: %v", ErrNotFile, err)
		}
		if !fi.Mode().IsRegular() {
			return stamp{}, false, nil, MD5{}, fmt.Errorf("%w: %s is a %s", ErrNotFile, path, fi.Mode().Type())
		}
	}
	for range maxHashRetries {
		start := time.Now()
		f, err := openShared(path, lstat)
		if err != nil {
			return stamp{}, false, nil, MD5{}, fmt.Errorf("%w: %v", ErrNotFile, err)
		}
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			f.Close()
			return stamp{}, false, nil, MD5{}, fmt.Errorf("%w: %s", ErrNotFile, path)
		}
		if fi.Size() > MaxFileSize {
			f.Close()
			return stamp{}, false, nil, MD5{}, fmt.Errorf("%w: %s is %d bytes (the most is %d)", ErrTooLarge, path, fi.Size(), MaxFileSize)
		}
		if fi.Size() == 0 {
			// /proc and /sys files say 0 bytes and read as more: shared,
			// they were an empty file under a name that promised content.
			var b [1]byte
			if n, _ := f.Read(b[:]); n > 0 {
				f.Close()
				return stamp{}, false, nil, MD5{}, fmt.Errorf("%w: %s says it is 0 bytes but reads as more (a /proc or /sys file?); copy it to a file to share it", ErrNotFile, path)
			}
		}
		before := stampOf(fi)
		s.mu.Lock()
		if s.hashing == nil {
			s.hashing = make(map[string]int) // a bare shares, as benchmarks make
		}
		s.hashing[path]++
		s.mu.Unlock()
		if s.hashStarted != nil {
			s.hashStarted(path)
		}
		s.hashed.Add(1)
		man, id, err := hashLanes(ctx, f, before.Size, hashChunk, s.lanes.Load(), nil)
		var after stamp
		if err == nil {
			if fi, err = f.Stat(); err == nil {
				after = stampOf(fi)
			}
		}
		f.Close()
		s.mu.Lock()
		if s.hashing[path]--; s.hashing[path] <= 0 {
			delete(s.hashing, path)
		}
		s.mu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				return stamp{}, false, nil, MD5{}, ctx.Err()
			}
			return stamp{}, false, nil, MD5{}, fmt.Errorf("shards: hash %s: %w", path, err)
		}
		if after == before {
			return before, before.racy(start), man, id, nil
		}
	}
	return stamp{}, false, nil, MD5{}, fmt.Errorf("shards: %s kept changing while it was hashed", path)
}

// add shares file f as resource id and returns the share's transfer.
func (s *shares) add(id MD5, man *Manifest, f shareFile) Transfer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.byPath[f.Path]; ok && old != id {
		s.detachLocked(f.Path)
	}
	if s.unshared[f.Path] {
		delete(s.unshared, f.Path)
		s.unsharedDirty[f.Path] = false
	}
	sh := s.byID[id]
	if sh == nil {
		sh = &share{id: id, name: nameFor(f.Path), man: man, hash: man.Hash(), added: time.Now().UTC()}
		s.byID[id] = sh
	}
	files := slices.DeleteFunc(slices.Clone(sh.files), func(g shareFile) bool { return g.Path == f.Path })
	sh.files = append(files, f)
	s.byPath[f.Path] = id
	if f.Stamp.Ino != 0 {
		s.byIno[fileKey{f.Stamp.Dev, f.Stamp.Ino}] = f.Path
	}
	s.dirty[id] = sh
	s.svc.catalog.put(ownShares, sh.entry())
	t := s.transferLocked(sh)
	s.svc.events.Publish(Event{Transfer: &t})
	return t
}

// detachLocked takes path out of its share; a share left with no file
// goes. s.mu is held.
func (s *shares) detachLocked(path string) {
	id, ok := s.byPath[path]
	if !ok {
		return
	}
	delete(s.byPath, path)
	sh := s.byID[id]
	if sh == nil {
		return
	}
	for _, f := range sh.files {
		k := fileKey{f.Stamp.Dev, f.Stamp.Ino}
		if f.Path == path && s.byIno[k] == path {
			delete(s.byIno, k)
		}
	}
	sh.files = slices.DeleteFunc(slices.Clone(sh.files), func(f shareFile) bool { return f.Path == path })
	if len(sh.files) > 0 {
		s.dirty[id] = sh
		// The file that went may have been the user's (or the one
		// that named it): the entry is the files' left.
		s.svc.catalog.put(ownShares, sh.entry())
		return
	}
	s.dropLocked(sh)
}

// dropLocked forgets a share. s.mu is held.
func (s *shares) dropLocked(sh *share) {
	delete(s.byID, sh.id)
	for _, f := range sh.files {
		delete(s.byPath, f.Path)
		k := fileKey{f.Stamp.Dev, f.Stamp.Ino}
		if s.byIno[k] == f.Path {
			delete(s.byIno, k)
		}
	}
	s.dirty[sh.id] = nil
	s.cache.drop(sh.id)
	s.svc.catalog.remove(ownShares, sh.id)
	id := sh.id
	s.svc.events.Publish(Event{Removed: &id})
}

// unshare stops sharing id; files under a shared folder stay unshared
// until they are deleted. The files themselves are left alone.
func (s *shares) unshare(id MD5) error {
	s.mu.Lock()
	sh := s.byID[id]
	if sh == nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnknown, id)
	}
	for _, f := range sh.files {
		if f.Folder != "" {
			s.unshared[f.Path] = true
			s.unsharedDirty[f.Path] = true
		}
	}
	s.dropLocked(sh)
	s.mu.Unlock()
	return s.flush()
}

// list is the shares as transfers, newest first.
func (s *shares) list() []Transfer {
	s.mu.Lock()
	out := make([]Transfer, 0, len(s.byID))
	for _, sh := range s.byID {
		out = append(out, s.transferLocked(sh))
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Transfer) int {
		if c := b.Added.Compare(a.Added); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out
}

// flush writes the changed records.
func (s *shares) flush() error {
	s.mu.Lock()
	if len(s.dirty) == 0 && len(s.unsharedDirty) == 0 {
		s.mu.Unlock()
		return nil
	}
	recs := make(map[MD5][]byte, len(s.dirty))
	for id, sh := range s.dirty {
		if sh == nil {
			recs[id] = nil
			continue
		}
		b, err := json.Marshal(sh.record())
		if err != nil {
			s.mu.Unlock()
			return fmt.Errorf("shards: encode share: %w", err)
		}
		recs[id] = b
	}
	unshared := s.unsharedDirty
	s.dirty = make(map[MD5]*share)
	s.unsharedDirty = make(map[string]bool)
	s.mu.Unlock()
	err := s.svc.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketShares)
		for id, v := range recs {
			var err error
			if v == nil {
				err = b.Delete(id[:])
			} else {
				err = b.Put(id[:], v)
			}
			if err != nil {
				return err
			}
		}
		u := tx.Bucket(bucketUnshared)
		for p, on := range unshared {
			var err error
			if on {
				err = u.Put([]byte(p), nil)
			} else {
				err = u.Delete([]byte(p))
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("shards: write shares: %w", err)
	}
	return nil
}

// queuePath asks serve to look at path again once it has been quiet for
// delay: hash it if it is new or changed, drop it if it is gone.
func (s *shares) queuePath(path, folder string, delay time.Duration) {
	s.queueOwned(path, folder, "", delay)
}

// queueOwned is queuePath of a file a service shares (shareFile.For), so
// that hashed again it stays the service's.
func (s *shares) queueOwned(path, folder, owner string, delay time.Duration) {
	s.mu.Lock()
	s.queue[path] = queued{folder: folder, owner: owner, due: time.Now().Add(delay)}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// serve hashes queued paths and writes changes until ctx ends. During a
// long scan it still writes and advertises every flushInterval, so what
// was hashed is neither lost to a crash nor hidden until the scan ends.
// It looks at up to hashWorkers() paths at once, never one path twice
// at once.
func (s *shares) serve(ctx context.Context) {
	flush := time.NewTicker(flushInterval)
	defer flush.Stop()
	timer := time.NewTimer(0)
	defer timer.Stop()
	checkpoint := func() {
		s.markUploads()
		if err := s.flush(); err != nil {
			s.svc.log.Warn("write shares", "err", err)
		}
		s.svc.changed()
	}
	l := newLanes()
	s.lanes.Store(l)
	defer func() {
		s.lanes.Store(nil)
		l.close()
	}()
	// Workers never block on finished: there are at most workers.
	workers := hashWorkers()
	finished := make(chan string, workers)
	running := 0
	var wg sync.WaitGroup
	defer wg.Wait()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-flush.C:
			checkpoint()
			last = time.Now()
			continue
		case p := <-finished:
			running--
			if running == 0 {
				// The burst is over. It is advertised before its last
				// path stops counting as pending, so that Scan says
				// scanning until shards lists what it hashed: music,
				// which lists a track once shards is done, must not
				// list one that shards does not serve yet.
				s.svc.changed()
			}
			s.mu.Lock()
			delete(s.busy, p)
			if running == 0 && len(s.queue) == 0 {
				clear(s.gone)
			}
			s.mu.Unlock()
		case <-s.wake:
		case <-timer.C:
		}
		for running < workers {
			path, q, next, ok := s.nextDue(time.Now())
			if !ok {
				if !next.IsZero() {
					timer.Reset(time.Until(next))
				}
				break
			}
			running++
			wg.Go(func() {
				s.update(ctx, path, q.folder, q.owner)
				finished <- path
			})
		}
		if time.Since(last) > flushInterval {
			checkpoint()
			last = time.Now()
		}
	}
}

// nextDue takes the first path due by now that no worker is looking at,
// and marks it busy; otherwise it returns when the next one is due (zero
// if none is queued, or only busy ones: their worker's end wakes serve).
func (s *shares) nextDue(now time.Time) (string, queued, time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next time.Time
	for p, q := range s.queue {
		if s.busy[p] {
			continue
		}
		if !q.due.After(now) {
			delete(s.queue, p)
			s.busy[p] = true
			return p, q, time.Time{}, true
		}
		if next.IsZero() || q.due.Before(next) {
			next = q.due
		}
	}
	return "", queued{}, next, false
}

// folderTotals is the files shared from the shared folders and their
// bytes (a file's bytes counted once per path it is shared under).
func (s *shares) folderTotals() (files int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for path, id := range s.byPath {
		sh := s.byID[id]
		for _, f := range sh.files {
			if f.Path == path && f.Folder != "" {
				files++
				bytes += sh.man.Size
			}
		}
	}
	return files, bytes
}

// isShared reports whether path is one of the shared files.
func (s *shares) isShared(path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.byPath[path]
	return ok
}

// pending is the number of queued paths, those being looked at included.
func (s *shares) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.queue)
	for p := range s.busy {
		if _, ok := s.queue[p]; !ok {
			n++
		}
	}
	return n
}

// hashingNow is a path being hashed, if any (the first in order, so that
// Scan reports one path while several are hashed).
func (s *shares) hashingNow() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := ""
	for p := range s.hashing {
		if first == "" || p < first {
			first = p
		}
	}
	return first
}

// markUploads queues the records whose upload counters moved.
func (s *shares) markUploads() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, sh := range s.byID {
		if sh.rate.takeMoved() {
			s.dirty[id] = sh
		}
	}
}

// update looks at path again: shares it (for owner, as shareFile.For) if it
// is a new or changed regular file, takes it out if it is gone, unreadable
// or no longer a file.
func (s *shares) update(ctx context.Context, path, folder, owner string) {
	var fi fs.FileInfo
	var err error
	if folder != "" {
		fi, err = os.Lstat(path)
	} else {
		fi, err = os.Stat(path)
	}
	if err != nil || !fi.Mode().IsRegular() {
		s.mu.Lock()
		if id, ok := s.byPath[path]; ok && errors.Is(err, fs.ErrNotExist) {
			sh := s.byID[id]
			for _, f := range sh.files {
				if f.Path == path && f.Stamp.Ino != 0 {
					s.gone[fileKey{f.Stamp.Dev, f.Stamp.Ino}] = goneFile{man: sh.man, id: id, file: f}
				}
			}
		}
		s.detachLocked(path)
		if folder != "" && s.unshared[path] && errors.Is(err, fs.ErrNotExist) {
			delete(s.unshared, path)
			s.unsharedDirty[path] = false
		}
		s.mu.Unlock()
		return
	}
	st := stampOf(fi)
	s.mu.Lock()
	if folder != "" && s.unshared[path] {
		s.mu.Unlock()
		return
	}
	if id, ok := s.byPath[path]; ok {
		for _, f := range s.byID[id].files {
			if f.Path == path && f.Stamp == st {
				s.mu.Unlock()
				return
			}
		}
	}
	if g, ok := s.movedLocked(st); ok {
		// A rename keeps the inode, size and mtime: the bytes are the
		// ones hashed under the old name.
		s.detachLocked(g.file.Path)
		s.mu.Unlock()
		s.add(g.id, g.man, shareFile{Path: path, Folder: folder, Stamp: st, Racy: g.file.Racy, For: g.file.For})
		return
	}
	s.mu.Unlock()
	st, racy, man, id, err := s.hashPath(ctx, path, folder != "")
	if err != nil {
		if ctx.Err() == nil {
			s.svc.log.Debug("not sharing", "path", path, "err", err)
			s.mu.Lock()
			s.detachLocked(path)
			s.mu.Unlock()
		}
		return
	}
	s.add(id, man, shareFile{Path: path, Folder: folder, Stamp: st, Racy: racy, For: owner})
}

// movedLocked finds a shared file that was renamed to a file stamped st:
// the same inode, size and mtime, and its old path no longer that inode.
// s.mu is held.
func (s *shares) movedLocked(st stamp) (goneFile, bool) {
	if st.Ino == 0 {
		return goneFile{}, false
	}
	same := func(f shareFile) bool {
		return f.Stamp.Ino == st.Ino && f.Stamp.Dev == st.Dev && f.Stamp.Mtime == st.Mtime && f.Stamp.Size == st.Size
	}
	if g, ok := s.gone[fileKey{st.Dev, st.Ino}]; ok && same(g.file) {
		delete(s.gone, fileKey{st.Dev, st.Ino})
		return g, true
	}
	old, ok := s.byIno[fileKey{st.Dev, st.Ino}]
	if !ok {
		return goneFile{}, false
	}
	if fi, err := os.Lstat(old); err == nil && stampOf(fi).Ino == st.Ino {
		return goneFile{}, false // a hard link, still there: not a rename
	}
	sh := s.byID[s.byPath[old]]
	if sh == nil {
		return goneFile{}, false
	}
	for _, f := range sh.files {
		if f.Path == old && same(f) {
			return goneFile{man: sh.man, id: sh.id, file: f}, true
		}
	}
	return goneFile{}, false
}

// changedFile takes a file that no longer matches its stamp out of its
// share and queues it to be hashed again.
func (s *shares) changedFile(f shareFile) {
	s.svc.log.Info("shared file changed on disk; hashing it again", "path", f.Path)
	s.mu.Lock()
	s.detachLocked(f.Path)
	s.mu.Unlock()
	s.queueOwned(f.Path, f.Folder, f.For, 0)
	s.svc.changed()
}

// transfer is the share of id as the API lists it.
func (s *shares) transfer(id MD5) (Transfer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.byID[id]
	if sh == nil {
		return Transfer{}, false
	}
	return s.transferLocked(sh), true
}

// The pieceSource of the shares.

func (s *shares) get(id MD5) *share {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byID[id]
}

func (s *shares) manifestOf(id MD5) (*Manifest, bool) {
	if sh := s.get(id); sh != nil {
		return sh.man, true
	}
	return nil, false
}

func (s *shares) haveOf(id MD5) Bitfield {
	sh := s.get(id)
	if sh == nil {
		return nil
	}
	n := sh.man.NumPieces()
	b := NewBitfield(n)
	for i := range n {
		b.Set(i)
	}
	return b
}

// readBlock reads a block from the first of the resource's files that is
// still as it was hashed. A file that is not is taken out of the share
// and hashed again; if none is left, the block is refused.
func (s *shares) readBlock(ctx context.Context, r blockReq, p []byte) error {
	return s.readSpanBlock(ctx, r, p)
}

// readSpanBlock implements spanSource: readBlock of a block that may run
// on into the pieces after r.Piece (the caller checked that it stays in
// the file). The file is opened, and its stamp checked before and after,
// once for the whole block: one read of up to BlockSize, not one a piece.
func (s *shares) readSpanBlock(ctx context.Context, r blockReq, p []byte) error {
	s.mu.Lock()
	sh := s.byID[r.ID]
	var files []shareFile
	if sh != nil {
		files = sh.files
	}
	s.mu.Unlock()
	if sh == nil {
		return fmt.Errorf("%w: %s", ErrUnknown, r.ID)
	}
	for _, f := range files {
		err := s.readFrom(ctx, sh, f, r, p)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errChanged) {
			return err
		}
		s.changedFile(f)
	}
	return fmt.Errorf("%w: %s changed on disk and is being hashed again", ErrUnknown, r.ID)
}

// readFrom reads block r, which may run on into the pieces after r.Piece,
// from file f. The file is stat'ed through the open descriptor before the
// read and after it, so an edit before or during the read is caught; a
// racy file's pieces are read whole and checked against their MD5.
func (s *shares) readFrom(ctx context.Context, sh *share, f shareFile, r blockReq, p []byte) error {
	fd, err := openShared(f.Path, f.Folder != "")
	if err != nil {
		return fmt.Errorf("%w: %v", errChanged, err)
	}
	defer fd.Close()
	if err := sameStamp(fd, f.Stamp); err != nil {
		return err
	}
	if !f.Racy {
		if _, err := fd.ReadAt(p, sh.man.PieceOffset(int(r.Piece))+int64(r.Off)); err != nil {
			return fmt.Errorf("%w: read: %v", errChanged, err)
		}
		return sameStamp(fd, f.Stamp)
	}
	for len(p) > 0 {
		n := min(int64(len(p)), sh.man.PieceLen(int(r.Piece))-int64(r.Off))
		if n <= 0 {
			return fmt.Errorf("%w: block runs past the end of %s", ErrBadFrame, r.ID)
		}
		if err := s.readRacy(ctx, sh, fd, blockReq{ID: r.ID, Piece: r.Piece, Off: r.Off, Len: uint32(n)}, p[:n]); err != nil {
			return err
		}
		p = p[n:]
		r.Piece, r.Off = r.Piece+1, 0
	}
	return nil
}

// readRacy reads block r, inside its piece, from the open racy file fd:
// the piece is read whole and checked against its MD5 (or taken from the
// cache of pieces checked so).
func (s *shares) readRacy(ctx context.Context, sh *share, fd *os.File, r blockReq, p []byte) error {
	off := sh.man.PieceOffset(int(r.Piece))
	if piece := s.cache.get(sh.id, r.Piece); piece != nil {
		copy(p, piece[r.Off:])
		return nil
	}
	select {
	case s.reads <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.reads }()
	piece := make([]byte, sh.man.PieceLen(int(r.Piece)))
	if _, err := fd.ReadAt(piece, off); err != nil {
		return fmt.Errorf("%w: read: %v", errChanged, err)
	}
	if !sh.man.Verify(int(r.Piece), piece) {
		return fmt.Errorf("%w: piece %d no longer matches", errChanged, r.Piece)
	}
	s.cache.put(sh.id, r.Piece, piece)
	copy(p, piece[r.Off:])
	return nil
}

// sameStamp checks an open file against its stamp.
func sameStamp(fd *os.File, want stamp) error {
	fi, err := fd.Stat()
	if err != nil {
		return fmt.Errorf("%w: %v", errChanged, err)
	}
	if got := stampOf(fi); got != want {
		return fmt.Errorf("%w: %s", errChanged, fd.Name())
	}
	return nil
}

func (s *shares) sentBlock(id MD5, to mesh.ID, n int) {
	if sh := s.get(id); sh != nil {
		sh.uploaded.Add(int64(n))
		sh.rate.add(n, time.Now())
	}
}

// nameFor is the resource name of a file: its base name, made a plain
// CleanName-valid name if it is not one.
func nameFor(path string) string {
	base := filepath.Base(path)
	if n, err := CleanName(base); err == nil {
		return n
	}
	var b strings.Builder
	for _, r := range base {
		switch {
		case r == utf8.RuneError, r == '/', r == '\\', !unicode.IsPrint(r) && r != ' ':
			r = '_'
		}
		if b.Len()+utf8.RuneLen(r) > MaxNameLen {
			break
		}
		b.WriteRune(r)
	}
	n := strings.TrimSpace(b.String())
	if _, err := CleanName(n); err != nil {
		return "file"
	}
	return n
}

// extraTypes are types of extensions that Go's table lacks and the
// system's may too: music's lyrics (.lrc) were listed as
// application/octet-stream.
var extraTypes = map[string]string{
	".lrc": "text/plain; charset=utf-8",
}

// typeFor is the MIME type of a name, from its extension; it leaves room
// for internalParam in MaxTypeLen.
func typeFor(name string) string {
	ext := filepath.Ext(name)
	if t, ok := extraTypes[strings.ToLower(ext)]; ok {
		return t
	}
	t := mime.TypeByExtension(ext)
	if t == "" {
		return "application/octet-stream"
	}
	if len(t) > maxBaseType {
		if i := strings.IndexByte(t, ';'); i >= 0 && i <= maxBaseType {
			return t[:i]
		}
		return "application/octet-stream"
	}
	return t
}
