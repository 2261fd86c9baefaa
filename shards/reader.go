package shards

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// reader is a Content over a download: a read waits until the piece under
// it is verified, and while it waits, the piece and the readahead after it
// are fetched before anything else; a seek moves that priority at once.
//
// It keeps the ctx it was opened with, against the usual rule, because the
// Content contract (io.ReadSeeker, for http.ServeContent) has no ctx per
// call: the ctx of the request that opened it bounds every read.
type reader struct {
	ctx context.Context
	dl  *download
	man *Manifest // dl's, as it was at open
	pos int64
}

var _ Content = (*reader)(nil)

// open returns a reader over resource id. A resource this node does not
// have yet is fetched (its holders from the catalog); open waits for its
// manifest, so that Size is known.
func (d *downloads) open(ctx context.Context, id MD5) (Content, error) {
	dl := d.get(id)
	if dl == nil {
		if _, err := d.fetch(ctx, Link{ID: id}); err != nil {
			return nil, err
		}
		if dl = d.get(id); dl == nil {
			return nil, fmt.Errorf("%w: %s", ErrUnknown, id)
		}
	}
	for {
		dl.mu.Lock()
		ready, changed, failed := dl.man != nil, dl.changed, dl.state == StateFailed
		msg := dl.err
		dl.mu.Unlock()
		if ready {
			break
		}
		if failed {
			return nil, fmt.Errorf("shards: open %s: %s", id, msg)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
		}
	}
	dl.mu.Lock()
	m := dl.man
	dl.mu.Unlock()
	r := &reader{ctx: ctx, dl: dl, man: m}
	r.moved()
	return r, nil
}

// moved tells the download where the reader is, so its pieces come first.
func (r *reader) moved() {
	dl := r.dl
	dl.mu.Lock()
	defer dl.mu.Unlock()
	i := int(min(r.pos, max(r.man.Size-1, 0)) / r.man.PieceSize)
	if old, ok := dl.readers[r]; !ok || old != i {
		dl.readers[r] = i
		dl.signal()
	}
}

// Read reads from the current position, waiting for its piece.
func (r *reader) Read(p []byte) (int, error) {
	dl := r.dl
	m := r.man
	size, psize := m.Size, m.PieceSize
	if r.pos >= size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	i := int(r.pos / psize)
	n := min(int64(len(p)), m.PieceOffset(i)+m.PieceLen(i)-r.pos)
	// A finished file whose metadata changed (errStale) is read once it
	// checked out again: a chmod or a backup tool's touch is no reason
	// for the user's player to fail. The check is waited for at most two
	// looks at the files (the first may have begun before the change).
	for looks := 0; ; {
		err := r.waitPiece(i)
		if err != nil {
			return 0, err
		}
		dl.mu.Lock()
		changed := dl.changed
		dl.mu.Unlock()
		looked := dl.d.looked()
		err = dl.readAt(p[:n], r.pos)
		if err == nil {
			break
		}
		if !errors.Is(err, errStale) || looks == 2 {
			return 0, err
		}
		select {
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		case <-changed: // checked: restamped, or dropped
		case <-looked:
			looks++
		}
	}
	r.pos += n
	r.moved()
	return int(n), nil
}

// waitPiece waits until piece i is verified.
func (r *reader) waitPiece(i int) error {
	dl, m := r.dl, r.man
	for {
		dl.mu.Lock()
		has, changed, removed := dl.have.Has(i), dl.changed, dl.removed
		_, open := dl.readers[r]
		st, msg, sameMan := dl.state, dl.err, dl.man == m
		dl.mu.Unlock()
		if !open {
			return errors.New("shards: read of a closed content")
		}
		if !sameMan {
			// The manifest it was opened with was rejected (wrongFile):
			// its pieces and offsets say nothing of the resource.
			return fmt.Errorf("%w: %s: its manifest was another file's", ErrCorrupt, dl.id)
		}
		if has {
			return nil
		}
		if removed || st == StateFailed {
			return fmt.Errorf("shards: read %s: %s", dl.id, msg)
		}
		select {
		case <-r.ctx.Done():
			return r.ctx.Err()
		case <-changed:
		}
	}
}

// Seek moves the position; the pieces at the new one are fetched next.
func (r *reader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.pos + offset
	case io.SeekEnd:
		abs = r.man.Size + offset
	default:
		return 0, fmt.Errorf("shards: seek whence %d", whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("shards: seek to %d, before the start", abs)
	}
	r.pos = abs
	r.moved()
	return abs, nil
}

// Close stops the reader's priority.
func (r *reader) Close() error {
	dl := r.dl
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if _, ok := dl.readers[r]; ok {
		delete(dl.readers, r)
		dl.signal()
	}
	return nil
}

// Name is the resource's name.
func (r *reader) Name() string {
	r.dl.mu.Lock()
	defer r.dl.mu.Unlock()
	return r.dl.name
}

// Size is the resource's size.
func (r *reader) Size() int64 { return r.man.Size }

// ModTime is the finished file's mtime, zero while downloading.
func (r *reader) ModTime() time.Time {
	r.dl.mu.Lock()
	defer r.dl.mu.Unlock()
	if r.dl.state == StateDone {
		return r.dl.modTime
	}
	return time.Time{}
}
