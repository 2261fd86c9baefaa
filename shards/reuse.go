package shards

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// maxReuseNames bounds the names reuse looks at: the download's own name
// and its numbered forms ("name (2).ext", …), as finalPath gives them.
const maxReuseNames = 100

// reuse looks, before a new download fetches any piece, for the resource
// already whole in the folder the download would be saved in: a finished
// download that was removed (DELETE keeps the user's file, and stops
// sharing it), or fetched again. Without it the same id fetched again
// downloaded every byte again and wrote a second copy beside the first.
// A file is taken only if every piece verifies against the manifest and
// the whole file's MD5 is the resource id: its name alone proves nothing.
// It reports whether the download is done with that file.
func (dl *download) reuse(ctx context.Context, m *Manifest) (bool, error) {
	dl.mu.Lock()
	name, out, fresh, owner := dl.name, dl.link.Dir, dl.have.Count() == 0, dl.link.For
	dl.mu.Unlock()
	if out == "" {
		out = dl.d.cfg.OutDir
	}
	if !fresh || owner != "" {
		// A service's download is not handed a file the user kept: the
		// service deletes its finished files when done with them
		// (RemoveFor), and that one is the user's.
		return false, nil
	}
	if _, err := os.Stat(dl.part); !errors.Is(err, os.ErrNotExist) {
		return false, nil // pieces on disk already: the download goes on
	}
	ext := filepath.Ext(name)
	base := strings.TrimSuffix(name, ext)
	for i := 1; i <= maxReuseNames; i++ {
		p := filepath.Join(out, name)
		if i > 1 {
			p = filepath.Join(out, fmt.Sprintf("%s (%d)%s", base, i, ext))
		}
		fi, err := os.Lstat(p)
		if errors.Is(err, os.ErrNotExist) {
			return false, nil // finalPath stops at the first free name too
		}
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != m.Size {
			continue
		}
		ok, err := dl.adopt(ctx, m, p, fi)
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// adopt checks the file at path against m and the resource id and, if it
// is the resource, makes it the download's finished file.
func (dl *download) adopt(ctx context.Context, m *Manifest, path string, before os.FileInfo) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, nil
	}
	defer f.Close()
	dl.d.log.Info("checking a file already saved", "id", dl.id, "path", path)
	// Shown as it goes (Transfer.Checking): a GiB's check showed
	// "downloading 0 %" for seconds.
	dl.setChecking(path, 0, true)
	defer dl.setChecking("", 0, false)
	whole := md5.New()
	buf := make([]byte, m.PieceSize)
	var checked int64
	for i := range m.NumPieces() {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		p := buf[:m.PieceLen(i)]
		if _, err := f.ReadAt(p, m.PieceOffset(i)); err != nil && !errors.Is(err, io.EOF) {
			return false, nil
		}
		if !m.Verify(i, p) {
			return false, nil
		}
		whole.Write(p)
		checked += int64(len(p))
		dl.setChecking(path, checked, false)
	}
	if MD5(whole.Sum(nil)) != dl.id {
		return false, nil
	}
	// Changed while it was read: what was checked is not what is there.
	fi, err := f.Stat()
	if err != nil || !os.SameFile(fi, before) || fi.Size() != before.Size() || !fi.ModTime().Equal(before.ModTime()) {
		return false, nil
	}
	// As finish does: listed before it is reported done.
	if dl.d.onDone != nil {
		dl.d.onDone(dl.transfer())
	}
	dl.mu.Lock()
	if ctx.Err() != nil {
		dl.mu.Unlock()
		if dl.d.onRemoved != nil {
			dl.d.onRemoved(dl.id)
		}
		return false, ctx.Err()
	}
	for i := range m.NumPieces() {
		dl.have.Set(i)
	}
	dl.countHave()
	dl.path, dl.modTime, dl.stamp, dl.state = path, fi.ModTime(), stampOf(fi), StateDone
	dl.checking, dl.checked = "", 0
	have := slices.Clone(dl.have)
	dl.signal()
	dl.mu.Unlock()
	if err := putHave(dl.d.db, dl.id, have); err != nil {
		return true, err
	}
	dl.d.log.Info("download done: the file was already saved", "id", dl.id, "path", path)
	dl.publish(true)
	return true, dl.saveRecord()
}

// setChecking sets the saved file being checked and the bytes of it
// checked, and tells the listeners: at once when force, else at most every
// ProgressInterval. An empty path ends the check; it is told at once
// unless the download ended (adopt's done says it).
func (dl *download) setChecking(path string, checked int64, force bool) {
	dl.mu.Lock()
	was := dl.checking
	dl.checking, dl.checked = path, checked
	if path == "" {
		force = was != ""
	}
	dl.mu.Unlock()
	dl.publish(force)
}
