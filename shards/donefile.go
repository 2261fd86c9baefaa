package shards

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"syscall"
	"time"
)

// A finished download's file is the user's: they may delete, move or edit
// it. Listed and "done" after that, the node claimed a file it did not
// have: peers were sent to it for pieces it refused, and push and the
// Files view counted it as a holder. checkFiles looks at every finished
// file now and then (a stat each) and drops the downloads whose file is
// gone or is no longer the resource (lose); one whose metadata only
// changed (a chmod, a touch, a copy back in place) is checked piece by
// piece and kept if it still is the resource.
//
// Only the node's own look at its own disk drops a download: a peer's
// request can at most make a read fail and the check run sooner.

// minCheckGap is the least time between two looks at the finished files
// that reads asked for (checkSoon), however many peers' reads fail.
const minCheckGap = time.Second

// matches reports whether a file stamped got is the one stamped want. A
// stamp from before they were kept whole (no ctime, no inode) checks the
// size and mtime only.
func (want stamp) matches(got stamp) bool {
	if want.Ctime == 0 && want.Ino == 0 {
		return got.Size == want.Size && got.Mtime == want.Mtime
	}
	return got == want
}

// errStale is a finished file's read refused because its metadata changed
// (its size did not): checkFile soon finds whether it still is the
// resource, and the node's own reader waits for that.
var errStale = errors.New("changed on disk")

// sameFile reports whether a finished file stat'ed (fi, err) still is the
// one stamped want; dl.mu is not held. A file that is not asks for a look.
func (dl *download) sameFile(want stamp, fi os.FileInfo, err error) error {
	switch {
	case err == nil && want.matches(stampOf(fi)):
		return nil
	case err == nil && fi.Mode().IsRegular() && fi.Size() == want.Size:
		dl.d.checkSoon()
		return errStale
	default:
		dl.d.checkSoon()
		return errors.New("changed on disk")
	}
}

// looked returns a channel closed when the look at the finished files
// under way, or the next, has ended.
func (d *downloads) looked() <-chan struct{} {
	d.lookMu.Lock()
	defer d.lookMu.Unlock()
	if d.lookEnd == nil {
		d.lookEnd = make(chan struct{})
	}
	return d.lookEnd
}

// checkSoon asks checkFiles for a look at the finished files; it never
// blocks.
func (d *downloads) checkSoon() {
	select {
	case d.checkNow <- struct{}{}:
	default:
	}
}

// checkFiles looks at the finished downloads' files at once, then every
// CheckInterval and when a read asks (at most every minCheckGap), until
// ctx ends. A look is a stat of each; the files only touched are checked
// piece by piece by verifyFiles meanwhile, so that a backup that changed
// the ctime of a thousand large files does not keep a deleted one listed
// while they are hashed.
func (d *downloads) checkFiles(ctx context.Context) {
	t := time.NewTicker(d.cfg.CheckInterval)
	defer t.Stop()
	for {
		last := time.Now()
		d.checkDone(ctx)
		d.lookEnded()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.checkNow:
			if wait := minCheckGap - time.Since(last); wait > 0 {
				gap := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					gap.Stop()
					return
				case <-gap.C:
				}
			}
		}
	}
}

// lookEnded closes lookEnd if no touched file waits for its check: a
// reader waiting for one is told by its download's changed channel.
func (d *downloads) lookEnded() {
	d.lookMu.Lock()
	defer d.lookMu.Unlock()
	if d.lookEnd != nil && len(d.touched) == 0 {
		close(d.lookEnd)
		d.lookEnd = nil
	}
}

// checkDone stats the file of every finished download, and hands those
// only touched to verifyFiles (once each while they wait).
func (d *downloads) checkDone(ctx context.Context) {
	d.mu.Lock()
	var done []*download
	for _, dl := range d.all {
		dl.mu.Lock()
		if dl.state == StateDone {
			done = append(done, dl)
		}
		dl.mu.Unlock()
	}
	d.mu.Unlock()
	for _, dl := range done {
		if ctx.Err() != nil {
			return
		}
		if !dl.checkFile() {
			continue
		}
		d.lookMu.Lock()
		if !slices.Contains(d.touched, dl) {
			d.touched = append(d.touched, dl)
		}
		d.lookMu.Unlock()
		select {
		case d.verifyNow <- struct{}{}:
		default:
		}
	}
}

// verifyFiles checks the touched finished files piece by piece, one at a
// time, until ctx ends.
func (d *downloads) verifyFiles(ctx context.Context) {
	for {
		d.lookMu.Lock()
		var dl *download
		if len(d.touched) > 0 {
			dl = d.touched[0]
		}
		d.lookMu.Unlock()
		if dl == nil {
			d.lookEnded()
			select {
			case <-ctx.Done():
				return
			case <-d.verifyNow:
				continue
			}
		}
		dl.verifyTouched(ctx)
		if ctx.Err() != nil {
			return
		}
		d.lookMu.Lock()
		d.touched = slices.DeleteFunc(d.touched, func(x *download) bool { return x == dl })
		d.lookMu.Unlock()
	}
}

// checkFile drops the finished download if its stat says its file is gone
// or no longer the resource, and reports whether its metadata only
// changed (for verifyTouched). A file that cannot be looked at for another
// reason (a folder made unreadable for a while) is left listed: its reads
// fail, and the next look decides.
func (dl *download) checkFile() (touched bool) {
	dl.mu.Lock()
	if dl.state != StateDone || dl.removed || dl.removal != nil || dl.path == "" || dl.man == nil {
		dl.mu.Unlock()
		return false
	}
	path, want, m := dl.path, dl.stamp, dl.man
	dl.mu.Unlock()
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		dl.lose(path, want, "was deleted or moved")
	case err != nil:
		dl.d.log.Debug("cannot look at a finished download's file", "id", dl.id, "path", path, "err", err)
	case !fi.Mode().IsRegular() || fi.Size() != m.Size:
		dl.lose(path, want, "changed on disk")
	case want.matches(stampOf(fi)):
		if want != stampOf(fi) {
			dl.restamp(path, want, stampOf(fi)) // an old record's: stamped whole now
		}
	default:
		return true
	}
	return false
}

// verifyTouched checks a finished file whose metadata changed piece by
// piece, and keeps it if it still is the resource.
func (dl *download) verifyTouched(ctx context.Context) {
	dl.mu.Lock()
	if dl.state != StateDone || dl.removed || dl.removal != nil || dl.path == "" || dl.man == nil {
		dl.mu.Unlock()
		return
	}
	path, want, m := dl.path, dl.stamp, dl.man
	dl.mu.Unlock()
	if f := dl.d.beforeVerify.Load(); f != nil {
		(*f)(dl.id)
	}
	st, ok, err := verifyFile(ctx, m, dl.id, path)
	switch {
	case err != nil:
		dl.d.log.Debug("cannot check a finished download's file", "id", dl.id, "path", path, "err", err)
	case ok:
		dl.d.log.Info("a finished download's file was touched, and still is the resource", "id", dl.id, "path", path)
		dl.restamp(path, want, st)
	default:
		dl.lose(path, want, "changed on disk")
	}
}

// lose drops a finished download whose file at path (stamped want) is
// gone or changed, unless it changed meanwhile (removed, fetched again):
// it is failed, with why in its Error, holds no piece, and the catalog no
// longer lists it. Its path is forgotten, so a service's RemoveFor is
// never handed a file that is no longer the one it fetched. Resumed, it
// is downloaded again (or the file found again by reuse).
func (dl *download) lose(path string, want stamp, why string) {
	dl.mu.Lock()
	if dl.state != StateDone || dl.removed || dl.removal != nil || dl.path != path || dl.stamp != want {
		dl.mu.Unlock()
		return
	}
	dl.state, dl.err = StateFailed, fmt.Sprintf("the downloaded file %s %s", path, why)
	dl.path, dl.modTime, dl.stamp = "", time.Time{}, stamp{}
	dl.have = NewBitfield(dl.man.NumPieces())
	dl.haveBytes = 0
	if dl.file != nil {
		// Open, a deleted file's space stays taken.
		dl.file.Close()
		dl.file = nil
	}
	dl.signal()
	if dl.d.onRemoved != nil {
		// Under dl.mu, as fetchExisting's onDone is: a resume that
		// finished at once (reuse) is listed after this.
		dl.d.onRemoved(dl.id)
	}
	have := slices.Clone(dl.have)
	dl.mu.Unlock()
	dl.d.log.Warn("a finished download's file is gone; no longer listed", "id", dl.id, "path", path, "why", why)
	if err := putHave(dl.d.db, dl.id, have); err != nil {
		dl.d.log.Warn("store of a lost download", "id", dl.id, "err", err)
	}
	if err := dl.saveRecord(); err != nil {
		dl.d.log.Warn("store of a lost download", "id", dl.id, "err", err)
	}
	dl.publish(true)
}

// restamp takes st as the finished file's stamp, if it still is the file
// stamped want, and closes the open file: it may be an inode the path no
// longer names.
func (dl *download) restamp(path string, want, st stamp) {
	dl.mu.Lock()
	if dl.state != StateDone || dl.removed || dl.path != path || dl.stamp != want {
		dl.mu.Unlock()
		return
	}
	dl.stamp, dl.modTime = st, time.Unix(0, st.Mtime)
	if dl.file != nil {
		dl.file.Close()
		dl.file = nil
	}
	dl.signal() // a reader waits for this (errStale)
	dl.mu.Unlock()
	if err := dl.saveRecord(); err != nil {
		dl.d.log.Warn("store of a finished download", "id", dl.id, "err", err)
	}
}

// verifyFile checks every piece of the file at path against m and its
// whole MD5 against id, and returns its stamp; ok is false if it is not
// the resource or changed while it was read.
func verifyFile(ctx context.Context, m *Manifest, id MD5, path string) (st stamp, ok bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return stamp{}, false, err
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return stamp{}, false, err
	}
	if !before.Mode().IsRegular() || before.Size() != m.Size {
		return stamp{}, false, nil
	}
	whole := md5.New()
	buf := make([]byte, m.PieceSize)
	for i := range m.NumPieces() {
		if err := ctx.Err(); err != nil {
			return stamp{}, false, err
		}
		p := buf[:m.PieceLen(i)]
		if _, err := f.ReadAt(p, m.PieceOffset(i)); err != nil {
			return stamp{}, false, err // cut short as it was read: the next look sees its size
		}
		if !m.Verify(i, p) {
			return stamp{}, false, nil
		}
		whole.Write(p)
	}
	after, err := f.Stat()
	if err != nil {
		return stamp{}, false, err
	}
	st = stampOf(after)
	if st != stampOf(before) {
		// Written to as it was read: the next look checks it again.
		return stamp{}, false, fmt.Errorf("%s changed as it was checked", path)
	}
	return st, MD5(whole.Sum(nil)) == id, nil
}
