package shards

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/catnest/catnest/mesh"
)

// pushSink makes (or finds) the download an accepted push's pieces go into.
// It is the Service's openSink: the push checks each piece's MD5 before it
// reaches the sink.
func (d *downloads) pushSink(ctx context.Context, from mesh.ID, o offer) (pieceSink, error) {
	if o.Manifest == nil || o.Manifest.Size > 0 && o.Manifest.NumPieces() == 0 {
		return nil, fmt.Errorf("%w: push without a manifest", ErrBadManifest)
	}
	h := o.Manifest.Hash()
	name, err := CleanName(o.Name)
	if err != nil {
		name = o.ID.String()
	}
	d.mu.Lock()
	dl := d.all[o.ID]
	created := false
	if dl == nil {
		dl = d.newDownload(Link{Node: from, Channel: FilesChannel, ID: o.ID, Manifest: h, Name: name, Size: o.Manifest.Size})
		dl.name = name
		dl.setManifest(o.Manifest, h)
		dl.state = StateDownloading
		dl.pushUntil = time.Now().Add(d.cfg.PushHold)
		d.all[o.ID] = dl
		created = true
	}
	d.mu.Unlock()
	if created {
		if err := dl.saveRecord(); err != nil {
			d.mu.Lock()
			delete(d.all, o.ID)
			d.mu.Unlock()
			return nil, err
		}
		d.enqueue(dl)
		dl.publish(true)
		return &pushTarget{dl: dl, from: from}, nil
	}
	dl.mu.Lock()
	defer dl.mu.Unlock()
	switch {
	case dl.rejected[h]:
		return nil, fmt.Errorf("%w: the push's manifest for %s describes another file", ErrBadManifest, o.ID)
	case dl.man == nil && (dl.manHash.IsZero() || dl.manHash == h):
		dl.setManifest(o.Manifest, h)
	case dl.man == nil || dl.manHash != h:
		return nil, fmt.Errorf("%w: the push's manifest is not the one this node holds for %s", ErrBadManifest, o.ID)
	}
	dl.pushUntil = time.Now().Add(d.cfg.PushHold)
	return &pushTarget{dl: dl, from: from}, nil
}

// pushTarget is a download as a push's sink.
type pushTarget struct {
	dl   *download
	from mesh.ID // the push's source
}

// putPiece writes a pushed piece the push has verified, as commit does for
// a pulled one.
func (t *pushTarget) putPiece(ctx context.Context, from mesh.ID, i int, data []byte) error {
	dl := t.dl
	if from == "" {
		from = t.from
	}
	dl.mu.Lock()
	man := dl.man
	dl.mu.Unlock()
	// The push checked the piece against its manifest; this checks it
	// against the download's, which a push cannot change (outside the
	// lock: an MD5 of a large piece takes a while).
	if man == nil || !man.Verify(i, data) {
		return fmt.Errorf("%w: pushed piece %d of %s", ErrCorrupt, i, dl.id)
	}
	dl.mu.Lock()
	if dl.removed || dl.man != man {
		dl.mu.Unlock()
		return fmt.Errorf("%w: pushed piece %d of %s", ErrCorrupt, i, dl.id)
	}
	dup := dl.have.Has(i)
	if !dup {
		// Only a piece the download lacked holds its pulls off: a pusher
		// that repeats itself would hold them off for good.
		dl.pushUntil = time.Now().Add(dl.d.cfg.PushHold)
	}
	off := dl.man.PieceOffset(i)
	dl.mu.Unlock()
	if dup {
		return nil
	}
	f, err := dl.openFile()
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(data, off); err != nil {
		return fmt.Errorf("shards: write pushed piece %d: %w", i, err)
	}
	if h := dl.d.afterWrite; h != nil {
		h(dl.id, i, data)
	}
	dl.mu.Lock()
	if !dl.have.Has(i) {
		dl.have.Set(i)
		dl.haveBytes += int64(len(data))
		dl.sources[from] += int64(len(data))
		dl.rate.add(len(data), time.Now())
		select {
		case dl.dirty <- struct{}{}:
		default:
		}
	}
	dl.signal()
	dl.mu.Unlock()
	err = dl.hashAhead(f, i, data)
	dl.publish(false)
	return err
}

func (t *pushTarget) have() Bitfield {
	t.dl.mu.Lock()
	defer t.dl.mu.Unlock()
	return slices.Clone(t.dl.have)
}

func (t *pushTarget) readBlock(ctx context.Context, r blockReq, p []byte) error {
	return t.dl.d.readBlock(ctx, r, p)
}
