package shards

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/catnest/catnest/mesh"
)

// A partial download keeps its pieces in <Dir>/shards/<md5>.part, each
// written at its offset once verified (the file is sparse until then), and
// its record and bitfield in the bbolt bucket "shards/downloads": the record
// under the resource id, the bitfield under the id followed by 'h', so that
// the bitfield, written often, does not rewrite the manifest each time.
//
// The bitfield is committed behind the writes (see download.persist), so a
// crash can lose the last few bits of pieces that are on disk; recheck finds
// those again on the next start, and no verified piece is fetched twice.

var bucketDownloads = []byte("shards/downloads")

// maxRecordSize bounds a stored record; it holds a manifest of at most
// MaxManifestSize bytes (base64 in JSON) and a few small fields.
const maxRecordSize = 2*MaxManifestSize + 64<<10

// downloadRecord is what the store keeps of one download, besides its
// bitfield.
type downloadRecord struct {
	ID           MD5    `json:"id"`
	ManifestHash Hash   `json:"manifestHash"`
	Manifest     []byte `json:"manifest,omitempty"` // encoded; nil until fetched
	Link         Link   `json:"link"`
	Name         string `json:"name"`
	State        State  `json:"state"`
	Error        string `json:"error,omitempty"`
	Path         string `json:"path,omitempty"` // the finished file
	// Part is the base name of the part file in Link.Dir when it is one
	// of the download's own (ownPartName), not dirPartName: the other
	// was in use by another node when it began.
	Part    string    `json:"part,omitempty"`
	ModTime time.Time `json:"modTime,omitzero"`
	// Stamp is the finished file as it was checked (download.stamp).
	Stamp    stamp             `json:"stamp,omitzero"`
	Added    time.Time         `json:"added"`
	Uploaded int64             `json:"uploaded"`
	Sources  map[mesh.ID]int64 `json:"sources,omitempty"`
}

func haveKey(id MD5) []byte { return append(id[:len(id):len(id)], 'h') }

// sourcesKey is where the bytes received from each peer are committed
// with the bitfield (download.persist): the record, written only when the
// state changes, held none of a download's until it ended, and a restart
// half-way showed "sources": {}.
func sourcesKey(id MD5) []byte { return append(id[:len(id):len(id)], 's') }

// maxStoredSources bounds the peers whose bytes are kept: those that sent
// the most. A download fed by thousands of peers keeps a store entry of a
// few KiB, as it shows a contribution bar of a few dozen at most.
const maxStoredSources = 64

// maxSourcesSize bounds a stored sources value (64 ids of 32 characters
// and their counts take about 3.5 KiB).
const maxSourcesSize = 64 << 10

// boundSources returns src, or a copy of its maxStoredSources largest.
func boundSources(src map[mesh.ID]int64) map[mesh.ID]int64 {
	if len(src) <= maxStoredSources {
		return src
	}
	ids := slices.Collect(maps.Keys(src))
	slices.SortFunc(ids, func(a, b mesh.ID) int {
		if c := cmp.Compare(src[b], src[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	out := make(map[mesh.ID]int64, maxStoredSources)
	for _, id := range ids[:maxStoredSources] {
		out[id] = src[id]
	}
	return out
}

// mergeSources adds from to into: each peer's count is the larger of the
// two (counts only grow while a download is listed).
func mergeSources(into, from map[mesh.ID]int64) map[mesh.ID]int64 {
	if len(from) == 0 {
		return into
	}
	if into == nil {
		into = make(map[mesh.ID]int64, len(from))
	}
	for id, n := range from {
		if n > into[id] {
			into[id] = n
		}
	}
	return boundSources(into)
}

// partPath is where the pieces of id are kept until it is done.
func partPath(dir string, id MD5) string {
	return filepath.Join(dir, "shards", id.String()+".part")
}

// dirPartName is the name of a download's part file in a user's folder
// (Link.Dir), beside where the file ends.
func dirPartName(id MD5) string { return ".catnest-" + id.String() + ".part" }

// ownPartName is a part file name of this download's own, for when
// dirPartName is in use by another node on this machine (errPartBusy).
func ownPartName(id MD5) string {
	return ".catnest-" + id.String() + "-" + strings.ToLower(rand.Text()[:8]) + ".part"
}

// errPartBusy: another process (another node on this machine saving the
// same file into the same folder) has the part file open (lockPart).
var errPartBusy = errors.New("shards: the part file is in use by another process")

// errPartLost: the bits of a download named bytes in a part file that is
// gone or not its own; they were dropped (openFileLocked).
var errPartLost = errors.New("the part file was lost")

// loadDownloads reads every stored download. A record that does not decode
// (a store written by a later version, a damaged one) is skipped with an
// error in errs, so one bad record does not lose the others.
func loadDownloads(db *bolt.DB) (recs []downloadRecord, haves map[MD5]Bitfield, errs []error, err error) {
	haves = make(map[MD5]Bitfield)
	var sources map[MD5]map[mesh.ID]int64
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketDownloads)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			switch {
			case len(k) == len(MD5{})+1 && k[len(MD5{})] == 's':
				var src map[mesh.ID]int64
				if len(v) > maxSourcesSize || json.Unmarshal(v, &src) != nil {
					errs = append(errs, fmt.Errorf("shards: sources of download %x: %d bytes that do not decode", k[:len(MD5{})], len(v)))
					return nil
				}
				if sources == nil {
					sources = make(map[MD5]map[mesh.ID]int64)
				}
				sources[MD5(k[:len(MD5{})])] = boundSources(src)
				return nil
			}
			switch len(k) {
			case len(MD5{}):
				var r downloadRecord
				if len(v) > maxRecordSize {
					errs = append(errs, fmt.Errorf("shards: download record %x: %d bytes", k, len(v)))
					return nil
				}
				if err := json.Unmarshal(v, &r); err != nil || MD5(k) != r.ID {
					errs = append(errs, fmt.Errorf("shards: download record %x: %v", k, err))
					return nil
				}
				recs = append(recs, r)
			case len(MD5{}) + 1:
				haves[MD5(k[:len(MD5{})])] = bytes.Clone(v)
			}
			return nil
		})
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("shards: load downloads: %w", err)
	}
	for i := range recs {
		recs[i].Sources = mergeSources(boundSources(recs[i].Sources), sources[recs[i].ID])
	}
	return recs, haves, errs, nil
}

// putRecord stores r.
func putRecord(db *bolt.DB, r *downloadRecord) error {
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("shards: encode download record: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketDownloads)
		if err != nil {
			return err
		}
		return b.Put(r.ID[:], v)
	})
	if err != nil {
		return fmt.Errorf("shards: store download %s: %w", r.ID, err)
	}
	return nil
}

// putHave stores the bitfield of id.
func putHave(db *bolt.DB, id MD5, have Bitfield) error {
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketDownloads)
		if err != nil {
			return err
		}
		return b.Put(haveKey(id), have)
	})
	if err != nil {
		return fmt.Errorf("shards: store bitfield of %s: %w", id, err)
	}
	return nil
}

// putProgress stores the bitfield of id and the bytes each peer sent
// (bounded: boundSources) in one transaction.
func putProgress(db *bolt.DB, id MD5, have Bitfield, sources map[mesh.ID]int64) error {
	src, err := json.Marshal(boundSources(sources))
	if err != nil {
		return fmt.Errorf("shards: encode sources of %s: %w", id, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketDownloads)
		if err != nil {
			return err
		}
		if err := b.Put(haveKey(id), have); err != nil {
			return err
		}
		return b.Put(sourcesKey(id), src)
	})
	if err != nil {
		return fmt.Errorf("shards: store progress of %s: %w", id, err)
	}
	return nil
}

// deleteDownload drops the record and bitfield of id.
func deleteDownload(db *bolt.DB, id MD5) error {
	err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDownloads)
		if b == nil {
			return nil
		}
		if err := b.Delete(id[:]); err != nil {
			return err
		}
		if err := b.Delete(sourcesKey(id)); err != nil {
			return err
		}
		return b.Delete(haveKey(id))
	})
	if err != nil {
		return fmt.Errorf("shards: delete download %s: %w", id, err)
	}
	return nil
}

// recheck looks at the pieces of f that have lacks and sets those whose
// bytes verify: pieces written before a crash whose bits were not yet
// committed. A region that is all zeros (a hole of the sparse file) is not
// hashed unless the piece's MD5 is that of zeros. It reads one piece at a
// time into one buffer.
func recheck(ctx context.Context, f io.ReaderAt, m *Manifest, have Bitfield) (found int, err error) {
	buf := make([]byte, m.PieceSize)
	var zeroSum MD5
	zeroLen := int64(-1)
	for i := range m.NumPieces() {
		if have.Has(i) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return found, err
		}
		n := m.PieceLen(i)
		p := buf[:n]
		if _, err := f.ReadAt(p, m.PieceOffset(i)); err != nil && !errors.Is(err, io.EOF) {
			return found, fmt.Errorf("shards: recheck piece %d: %w", i, err)
		}
		if allZero(p) {
			if zeroLen != n {
				zeroSum, zeroLen = md5.Sum(p), n
			}
			if zeroSum != m.Pieces[i] {
				continue
			}
		}
		if m.Verify(i, p) {
			have.Set(i)
			found++
		}
	}
	return found, nil
}

func allZero(p []byte) bool {
	for len(p) >= 8 {
		if p[0]|p[1]|p[2]|p[3]|p[4]|p[5]|p[6]|p[7] != 0 {
			return false
		}
		p = p[8:]
	}
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

// partHeldElsewhere reports whether another process holds the part file
// at path open (lockPart).
func partHeldElsewhere(path string) bool {
	f, err := os.OpenFile(path, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	return errors.Is(lockPart(f), errPartBusy)
}

// createPart opens (creating) the part file of a download of size bytes.
func createPart(path string, size int64) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("shards: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|noFollow, 0o600)
	if err != nil {
		return nil, fmt.Errorf("shards: %w", err)
	}
	if li, err := os.Lstat(path); err != nil || li.Mode()&os.ModeSymlink != 0 {
		// Where O_NOFOLLOW is not: a symlink's target is not sized.
		f.Close()
		return nil, fmt.Errorf("shards: the part file %s is a symlink or went", path)
	}
	// Before it is sized: the other holder's writes are under way.
	if err := lockPart(f); err != nil {
		f.Close()
		if errors.Is(err, errPartBusy) {
			return nil, fmt.Errorf("%w: %s", errPartBusy, path)
		}
		return nil, fmt.Errorf("shards: lock the part file: %w", err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != size {
		if fi != nil && fi.Size() == 0 {
			// A new part file.
			if ok, err := preallocate(f, size); err != nil {
				f.Close()
				os.Remove(path)
				return nil, fmt.Errorf("shards: allocate %d bytes for the part file: %w", size, err)
			} else if ok {
				return f, nil
			}
		}
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, fmt.Errorf("shards: size the part file: %w", err)
		}
	}
	return f, nil
}
