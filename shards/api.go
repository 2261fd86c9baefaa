package shards

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/catnest/catnest/mesh"
)

// The Service's API, as the web UI and cmd/catnest call it (webui.Files).

// holdersTimeout bounds the catalog lookups a download makes for holders
// (a variable for a test).
var holdersTimeout = 10 * time.Second

// downloadHolders is the downloads' view of the catalog: the online nodes
// that list id, after bringing the changed catalogs up to date. The
// lookup ends with Serve, which waits for the downloads: a node that does
// not answer would hold a stop up for holdersTimeout.
func (s *Service) downloadHolders(id MD5) []mesh.ID {
	ctx, cancel := context.WithTimeout(s.life, holdersTimeout)
	defer cancel()
	ids, err := s.lookupHolders(ctx, id)
	if err != nil {
		s.log.Debug("holders lookup", "id", id, "err", err)
		return s.holders(id)
	}
	return ids
}

// downloadDone lists a finished download in the catalog: this node serves
// it from then on.
func (s *Service) downloadDone(t Transfer) {
	s.catalog.put(ownDownloads, doneEntry(t))
	s.changed()
}

// doneEntry is a finished download as the catalog lists it: internal
// while it is a service's (a cover music fetched), as its share is on the
// node it came from.
func doneEntry(t Transfer) Entry {
	return Entry{ID: t.ID, Manifest: t.Manifest, Size: t.Size, Name: t.Name, Type: typeFor(t.Name), Internal: t.For != ""}
}

// Fetch starts downloading the resource a link names (or, for a Link with
// only an ID, whatever the catalogs say holds it) and returns the transfer;
// a resource this node already shares or downloads returns that one, and
// a paused (unless l.KeepPaused) or failed download of it starts again. A fetch without l.For (the user's) of a download a service started (its
// Link.For) makes that download the user's: the service's RemoveFor
// leaves it alone from then on.
func (s *Service) Fetch(ctx context.Context, l Link) (Transfer, error) {
	if l.ID.IsZero() {
		return Transfer{}, fmt.Errorf("%w: no resource id", ErrBadLink)
	}
	if t, ok := s.shares.transfer(l.ID); ok {
		return t, nil
	}
	if l.Manifest.IsZero() && s.downloads.get(l.ID) == nil {
		// A link without a manifest hash (an id, a link typed by hand):
		// take the one the catalogs agree on, so that every piece is
		// checked against it from the first, not only the whole file at
		// the end. Without one, the download takes the first manifest a
		// holder serves.
		// The catalogs cached first, if they list it (the Files view the
		// gallery opens it from has them): bringing every changed one up
		// to date waited for the slowest node, however unrelated, up to
		// holdersTimeout. The download's own lookups bring them up to date.
		f, err := s.lookupCached(l.ID)
		if err != nil {
			lctx, cancel := context.WithTimeout(ctx, holdersTimeout)
			f, err = s.lookup(lctx, l.ID)
			cancel()
			if err != nil {
				// Cut short by a node that does not send its changed
				// catalog: those that came are cached. It dropped them,
				// and the file was saved named by its MD5.
				f, err = s.lookupCached(l.ID)
			}
		}
		if err == nil {
			l.Manifest = f.Manifest
			// And the name the catalogs give it: the Files view fetches
			// by id, and its downloads were named by their MD5, without
			// an extension, typed application/octet-stream (checked
			// again before use, like a link's name).
			if l.Name == "" {
				l.Name = f.Name
			}
		}
	}
	return s.downloads.fetch(ctx, l)
}

// Pause stops a download and keeps what it has.
func (s *Service) Pause(ctx context.Context, id MD5) error { return s.downloads.pause(ctx, id) }

// Resume starts a paused (or failed) download again.
func (s *Service) Resume(ctx context.Context, id MD5) error { return s.downloads.resume(ctx, id) }

// Remove cancels a download and deletes its partial data, or stops sharing
// a file. A user's own file, or a finished download's, is never deleted.
func (s *Service) Remove(ctx context.Context, id MD5) error {
	shared := s.shares.get(id) != nil
	if shared {
		if err := s.shares.unshare(id); err != nil {
			return err
		}
	}
	if s.downloads.get(id) != nil {
		return s.downloads.remove(ctx, id)
	}
	if !shared {
		return fmt.Errorf("%w: %s", ErrUnknown, id)
	}
	return nil
}

// RemoveFor is Remove for a service (owner, its Link.For): it cancels the
// download the service fetched for its own use and deletes its partial
// data, unless the user has fetched it since (ErrNotOwned: it is the
// user's). It never stops a share. It returns the download as it was
// removed: StateDone with the Path of its file if it had finished, even if
// it finished while the removal began; shards leaves that file where it
// is, for the service to delete if it is its own.
func (s *Service) RemoveFor(ctx context.Context, id MD5, owner string) (Transfer, error) {
	return s.downloads.removeFor(ctx, id, owner)
}

// Shares lists this node's shared files and its downloads. A resource both
// shared and downloaded is listed once, as shared. Every share listed is
// in the catalog this node advertises by the time Shares returns: callers
// tell other nodes of what it lists (music lists the tracks), and those
// look for holders in the advertised catalogs. Serve otherwise advertises
// a scan's changes only at its checkpoints and the end of its bursts.
func (s *Service) Shares(ctx context.Context) ([]Transfer, error) {
	out := s.shares.list()
	for _, t := range s.downloads.transfers() {
		if !slices.ContainsFunc(out, func(o Transfer) bool { return o.ID == t.ID }) {
			out = append(out, t)
		}
	}
	// The catalog took each share before the shares listed it.
	s.advertise()
	return out, nil
}

// SharesPage lists the user's shares and downloads from offset, at most
// limit of them (limit < 0: all the rest), newest first and then by id, and
// how many there are in all. A service's (For set: music's covers, a
// track the player caches) are left out of both, as the web UI leaves
// them out: a page short of limit is the last one. A resource both shared
// and downloaded is listed once, as the user's share, else as the user's
// download. Only the page's entries are built: a node with 100,000 shares
// answers a page without making 100,000 links.
func (s *Service) SharesPage(ctx context.Context, offset, limit int) ([]Transfer, int, error) {
	if offset < 0 {
		return nil, 0, fmt.Errorf("shards: offset %d is negative", offset)
	}
	keys := s.shares.pageKeys(nil)
	shared := len(keys)
	keys = s.downloads.pageKeys(keys)
	// A download also shared by the user is listed as the share: its
	// key goes. One a service shares (music's cover of the same bytes)
	// stays: the user's download was listed nowhere.
	kept := keys[:shared]
	for _, k := range keys[shared:] {
		if !s.shares.usersShare(k.id()) {
			kept = append(kept, k)
		}
	}
	keys = kept
	slices.SortFunc(keys, pageKey.compare)
	total := len(keys)
	keys = keys[min(offset, total):]
	if limit >= 0 && limit < len(keys) {
		keys = keys[:limit]
	}
	out := make([]Transfer, 0, len(keys))
	for _, k := range keys {
		// One that went away (or became a service's) since the keys were
		// taken is left out.
		if t, ok := s.userTransfer(k.id()); ok {
			out = append(out, t)
		}
	}
	return out, total, nil
}

// pageKey orders the entries of SharesPage: newest first, then by id. It
// is integers only, so that sorting 100,000 of them takes milliseconds.
type pageKey struct {
	added  int64 // Unix nanoseconds
	hi, lo uint64
}

func newPageKey(id MD5, added time.Time) pageKey {
	return pageKey{added: added.UnixNano(), hi: binary.BigEndian.Uint64(id[:8]), lo: binary.BigEndian.Uint64(id[8:])}
}

func (k pageKey) id() MD5 {
	var id MD5
	binary.BigEndian.PutUint64(id[:8], k.hi)
	binary.BigEndian.PutUint64(id[8:], k.lo)
	return id
}

func (k pageKey) compare(o pageKey) int {
	switch {
	case k.added != o.added:
		return cmp.Compare(o.added, k.added)
	case k.hi != o.hi:
		return cmp.Compare(k.hi, o.hi)
	}
	return cmp.Compare(k.lo, o.lo)
}

// pageKeys appends the key of every share of the user's to dst.
func (s *shares) pageKeys(dst []pageKey) []pageKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	dst = slices.Grow(dst, len(s.byID))
	for id, sh := range s.byID {
		if sh.owner() == "" {
			dst = append(dst, newPageKey(id, sh.added))
		}
	}
	return dst
}

// userTransfer is id as the user's Files page lists it: the share if it
// is the user's, else the download if that is.
func (s *Service) userTransfer(id MD5) (Transfer, bool) {
	if s.shares.usersShare(id) {
		return s.shares.transfer(id)
	}
	if dl := s.downloads.get(id); dl != nil {
		if t := dl.transfer(); t.For == "" {
			return t, true
		}
	}
	return Transfer{}, false
}

// usersShare reports whether id is shared from a file of the user's.
func (s *shares) usersShare(id MD5) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.byID[id]
	return sh != nil && sh.owner() == ""
}

// Transfer returns one of this node's shares or downloads, the shared one
// if it is both.
func (s *Service) Transfer(ctx context.Context, id MD5) (Transfer, error) {
	if t, ok := s.shares.transfer(id); ok {
		return t, nil
	}
	if dl := s.downloads.get(id); dl != nil {
		return dl.transfer(), nil
	}
	return Transfer{}, fmt.Errorf("%w: %s", ErrUnknown, id)
}

// Open returns a seekable reader over a resource: a shared file is read in
// place (checked as peers' reads are), a download's pieces as they arrive,
// and a resource this node does not have is fetched from its holders.
func (s *Service) Open(ctx context.Context, id MD5) (Content, error) {
	if sh := s.shares.get(id); sh != nil {
		return &sourceReader{ctx: ctx, src: s.shares, id: id, man: sh.man, name: sh.name}, nil
	}
	if s.downloads.get(id) == nil {
		// Through Fetch, for the manifest and the name the catalogs
		// give it: a file opened before it was fetched (a gallery
		// image, a track) was named by its MD5 and served as
		// application/octet-stream.
		if _, err := s.Fetch(ctx, Link{ID: id}); err != nil {
			return nil, err
		}
	}
	return s.downloads.open(ctx, id)
}

// Push sends a resource this node holds whole to a group with the given
// plan (matrix when empty) and returns the push's id for PushStatus.
func (s *Service) Push(ctx context.Context, id MD5, to []mesh.ID, plan Plan) (string, error) {
	name := id.String()
	if sh := s.shares.get(id); sh != nil {
		name = sh.name
	} else if dl := s.downloads.get(id); dl != nil {
		name = dl.transfer().Name
	} else {
		return "", fmt.Errorf("%w: %s", ErrUnknown, id)
	}
	return s.pushes.push(ctx, id, to, plan, name)
}

// PushStatus reports a push this node started (or receives).
func (s *Service) PushStatus(ctx context.Context, pid string) (PushStatus, error) {
	return s.pushes.status(pid)
}

// sourceReader is a Content over a resource a pieceSource holds whole: the
// shares. Every read goes through readBlock, so it gets only bytes that
// still match the manifest, as a peer would.
type sourceReader struct {
	ctx  context.Context // of the caller that opened it; Content has no ctx per call
	src  pieceSource
	id   MD5
	man  *Manifest
	name string
	pos  int64
}

var _ Content = (*sourceReader)(nil)

func (r *sourceReader) Read(p []byte) (int, error) {
	if r.pos >= r.man.Size {
		return 0, io.EOF
	}
	piece := int(r.pos / r.man.PieceSize)
	off := r.pos - r.man.PieceOffset(piece)
	n := min(int64(len(p)), BlockSize, r.man.PieceLen(piece)-off)
	if n <= 0 {
		return 0, nil
	}
	req := blockReq{ID: r.id, Piece: uint32(piece), Off: uint32(off), Len: uint32(n)}
	if err := r.src.readBlock(r.ctx, req, p[:n]); err != nil {
		return 0, err
	}
	r.pos += n
	return int(n), nil
}

func (r *sourceReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.pos
	case io.SeekEnd:
		offset += r.man.Size
	default:
		return 0, errors.New("shards: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("shards: seek before the start")
	}
	r.pos = offset
	return offset, nil
}

func (r *sourceReader) Close() error       { return nil }
func (r *sourceReader) Name() string       { return r.name }
func (r *sourceReader) Size() int64        { return r.man.Size }
func (r *sourceReader) ModTime() time.Time { return time.Time{} }
