package shards

import (
	"cmp"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"mime"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/catnest/catnest/internal/pubsub"
	"github.com/catnest/catnest/mesh"
)

// DownloadsConfig tunes the downloads (Config.Downloads).
type DownloadsConfig struct {
	// Dir is the data dir: partial downloads are kept in Dir/shards.
	Dir string
	// Rendezvous is this node's rendezvous (host:port), written into the
	// links of its downloads: they name this node, which serves them.
	Rendezvous string
	// OutDir is where finished files go; default Dir/downloads.
	OutDir string
	// Readahead is how many bytes from a reader's position on are fetched
	// before anything else (at least one piece); default 4 MiB, a few
	// seconds of video.
	Readahead int64
	// MaxBadPieces: a peer that sent this many corrupt pieces of a resource
	// is banned for that resource (each one also scores it down in the
	// mesh); default 3, so a bit flipped on the wire once is forgiven.
	MaxBadPieces int
	// HaveInterval is how often the holders' bitfields and the set of
	// holders are asked again: holders that are downloading too gain pieces;
	// default 2 s.
	HaveInterval time.Duration
	// PeerWindow bounds the bytes requested from one peer and not yet
	// answered; within it, the window follows the peer's measured rate
	// (pipeline). Default 8 MiB: a fast link on loopback needs several
	// MiB outstanding to stay busy (BenchmarkDownloadGoodput).
	PeerWindow int64
	// MaxBuffered bounds the bytes of piece buffers all downloads hold at
	// once, node-wide (budget): memory stays bounded whatever the number
	// of downloads and peers; default 32 MiB. One peer holds at most a
	// quarter of it while other peers' loops wait, and a peer far slower
	// than another of the same download gives its pieces up to it then
	// (budget, download.yield).
	MaxBuffered int64
	// ProgressInterval: a transfer's progress events are published at most
	// this often (state changes at once); default 250 ms.
	ProgressInterval time.Duration
	// RequestTimeout bounds a manifest or have request to a peer, and how
	// long a peer with block requests in flight may go without answering
	// any before it is given up on (its pieces go to others); default 20 s.
	// Without it one peer that takes requests and never answers holds a
	// download, or the pieces a reader waits on, for good. Blocks are
	// sized to take about RequestTimeout/16 at the peer's measured rate,
	// so a slow peer (a few KiB/s) answers well within it.
	RequestTimeout time.Duration
	// CheckInterval is how often the finished downloads' files are
	// stat'ed: one the user deleted, moved or changed is no longer listed
	// nor served (checkFiles); default 5 s. A read that finds one changed
	// has it checked at once.
	CheckInterval time.Duration
	// PushHold: a download fed by a push does not pull until this long
	// after the last new piece the push brought (pulling the same pieces
	// would double the traffic); default 10 s.
	PushHold time.Duration
}

func (c *DownloadsConfig) fillDefaults() {
	if c.OutDir == "" {
		c.OutDir = filepath.Join(c.Dir, "downloads")
	}
	if c.Readahead <= 0 {
		c.Readahead = 4 << 20
	}
	if c.MaxBadPieces <= 0 {
		c.MaxBadPieces = 3
	}
	if c.HaveInterval <= 0 {
		c.HaveInterval = 2 * time.Second
	}
	if c.PeerWindow <= 0 {
		c.PeerWindow = 8 << 20
	}
	if c.MaxBuffered <= 0 {
		c.MaxBuffered = 32 << 20
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = 250 * time.Millisecond
	}
	if c.PushHold <= 0 {
		c.PushHold = 10 * time.Second
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 20 * time.Second
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = 5 * time.Second
	}
}

// Errors of a download that a peer caused; they end one peer's part, not
// the download.
var (
	errBanned   = errors.New("shards: peer banned for this resource")
	errNoPieces = errors.New("shards: peer holds none of the pieces")
	// errOtherManifest: the peer serves another manifest than the one in
	// use, taken without a hash to check it by; either may be the true
	// one, so the peer is left alone rather than scored down.
	errOtherManifest = errors.New("shards: peer serves another manifest")
	// errRefetch: the finished file failed its MD5; what was wrong has
	// been dropped and the download goes on.
	errRefetch = errors.New("shards: the finished file is not the resource")
	// errStalled: the peer answered none of its block requests for
	// RequestTimeout.
	errStalled = errors.New("shards: peer stopped answering block requests")
)

// maxRefetch bounds how many times one run starts over after a finished
// file failed its MD5 (each time dropping a lying manifest and banning
// its senders, or re-fetching pieces that went bad on disk).
const maxRefetch = 4

// downloads are this node's downloads: it fetches them (download.run), keeps
// their state (partial.go), opens readers over them (reader.go) and serves
// the pieces they have to others (pieceSource).
type downloads struct {
	cfg     DownloadsConfig
	node    Node
	db      *bolt.DB
	log     *slog.Logger
	holders func(MD5) []mesh.ID // online holders from the catalog; may be nil
	// cached lists the online holders in the catalogs cached now, without
	// fetching any (Service.holders); may be nil.
	cached func(MD5) []mesh.ID
	// refreshes are the holders lookups under way (download.candidates);
	// serve waits for them.
	refreshes sync.WaitGroup
	events    *pubsub.Topic[Event]
	// budget bounds the piece buffers of all downloads together.
	budget *budget
	// lanes checks the pieces of a span in SIMD lanes while serve runs
	// (nil otherwise): see spanLanes.
	lanes atomic.Pointer[lanes]
	// lanePieces counts the pieces checked in the lanes, lanePaired those
	// of them checked 2*spanLanes or more at once, at about half the CPU a
	// byte (sumSpans, holdSpans); the benchmarks report them.
	lanePieces, lanePaired atomic.Int64
	// hashReads counts the pieces the whole-file MD5 read back from part
	// files (verified ahead of it: hashAhead); hedges the requests sent
	// again because they were late (hedgeAfter). The benchmarks report them.
	hashReads, hedges atomic.Int64
	// noLanes (tests) keeps serve from starting the lanes: md5-simd pools
	// its result channels package-wide, and channels made inside a
	// synctest bubble then break hashing outside it.
	noLanes bool
	// placeMu is held while a finished file picks its name in OutDir and
	// moves there (download.finish).
	placeMu sync.Mutex

	mu     sync.Mutex
	all    map[MD5]*download
	queued []*download // to start once serve runs
	wake   chan struct{}
	// checkNow asks checkFiles to look at the finished files soon: a
	// read found one that is not as it was.
	checkNow chan struct{}
	// lookEnd is closed as a look at the finished files ends (looked)
	// with none of them waiting for its piece-by-piece check.
	lookMu  sync.Mutex
	lookEnd chan struct{}
	// touched lists the finished files whose metadata changed, for
	// verifyFiles to check piece by piece (under lookMu); verifyNow wakes it.
	touched   []*download
	verifyNow chan struct{}
	// beforeVerify, if set (tests), is called as a touched file's check
	// begins.
	beforeVerify atomic.Pointer[func(MD5)]
	// afterDone, if set (tests), is called as a run has made its download
	// done, before it stores it and ends.
	afterDone atomic.Pointer[func(MD5)]

	// onDone, if set, is told of each download whose whole file checked
	// out, before it is reported done: the Service lists it in the
	// catalog (and onRemoved takes it out if it does not end done). onRemoved
	// is told of each download removed.
	onDone    func(Transfer)
	onRemoved func(MD5)

	// afterWrite, if set (tests), is called with each piece just written
	// to the part file, before its bit is set.
	afterWrite func(id MD5, piece int, data []byte)
	// trace, if set (BenchmarkDownloadGoodput -shards.trace), counts
	// what the loops do.
	trace *dlTrace
}

var _ pieceSource = (*downloads)(nil)

// newDownloads loads the stored downloads; those that were running start
// again when serve runs. holders lists the online nodes that hold a
// resource (the catalog's); events receives progress.
func newDownloads(cfg DownloadsConfig, node Node, db *bolt.DB, holders func(MD5) []mesh.ID, events *pubsub.Topic[Event], log *slog.Logger) (*downloads, error) {
	if cfg.Dir == "" {
		return nil, errors.New("shards: downloads need a data dir")
	}
	cfg.fillDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if events == nil {
		events = new(pubsub.Topic[Event])
	}
	d := &downloads{cfg: cfg, node: node, db: db, log: log, holders: holders, events: events,
		budget: newBudget(cfg.MaxBuffered, cfg.RequestTimeout), all: make(map[MD5]*download), wake: make(chan struct{}, 1),
		checkNow: make(chan struct{}, 1), verifyNow: make(chan struct{}, 1)}
	recs, haves, errs, err := loadDownloads(db)
	if err != nil {
		return nil, err
	}
	for _, err := range errs {
		log.Warn("skipping a stored download", "err", err)
	}
	for _, r := range recs {
		dl := d.newDownload(r.Link)
		if r.Link.Dir != "" && r.Part != "" && filepath.Base(r.Part) == r.Part && ownTemp(r.Part) {
			dl.part = filepath.Join(r.Link.Dir, r.Part)
		}
		dl.added, dl.name, dl.state, dl.err = r.Added, r.Name, r.State, r.Error
		dl.path, dl.modTime, dl.uploaded = r.Path, r.ModTime, r.Uploaded
		dl.stamp = r.Stamp
		dl.manHash = r.ManifestHash
		maps.Copy(dl.sources, r.Sources)
		if r.Manifest != nil {
			m, err := DecodeManifest(r.Manifest)
			if err != nil || m.Hash() != r.ManifestHash {
				log.Warn("stored manifest does not match; fetching it again", "id", r.ID, "err", err)
			} else {
				dl.setManifest(m, r.ManifestHash)
				// Bits without their part file (lost, or of another size)
				// name nothing: they are dropped before anyone reads them.
				fi, err := os.Stat(dl.part)
				partOK := err == nil && fi.Size() == m.Size
				if h := haves[r.ID]; h.Valid(m.NumPieces()) && (partOK || dl.state == StateDone) {
					copy(dl.have, h)
					dl.countHave()
				} else if h.Count() > 0 {
					// Else a crash after the new part file is made would
					// bring the stale bits back over its holes.
					if err := putHave(db, r.ID, dl.have); err != nil {
						return nil, err
					}
				}
				// Pieces written after the last commit of the bitfield
				// are on disk unrecorded: find them before fetching.
				dl.recheck = dl.state != StateDone
			}
		}
		if dl.stamp == (stamp{}) && dl.man != nil && !r.ModTime.IsZero() {
			// A record from before stamps were kept: its size and mtime
			// are checked, and the first check stamps it whole.
			dl.stamp = stamp{Size: dl.man.Size, Mtime: r.ModTime.UnixNano()}
		}
		d.all[r.ID] = dl
		if dl.state == StateDownloading {
			d.queued = append(d.queued, dl)
		}
	}
	return d, nil
}

func (d *downloads) newDownload(l Link) *download {
	part := partPath(d.cfg.Dir, l.ID)
	if l.Dir != "" {
		// Beside where it ends, so that finishing is a rename in one
		// folder, never a copy across filesystems.
		part = filepath.Join(l.Dir, dirPartName(l.ID))
	}
	return &download{d: d, id: l.ID, link: l, part: part, added: time.Now(),
		sources: make(map[mesh.ID]int64), bad: make(map[mesh.ID]int), banned: make(map[mesh.ID]bool),
		peers: make(map[mesh.ID]*peer), readers: make(map[*reader]int), changed: make(chan struct{}),
		rejected: make(map[Hash]bool), manPeers: make(map[mesh.ID]bool), tieSeed: rand.Uint64() | 1}
}

// serve runs the downloads until ctx ends; it returns once every one has
// stopped. Stopping writes nothing more: the state on disk is the same as
// after a crash, which recheck recovers from, so the path a crash takes is
// the one every restart exercises.
func (d *downloads) serve(ctx context.Context) error {
	if !d.noLanes {
		l := newLanes()
		d.lanes.Store(l)
		defer func() { // after the downloads have stopped (defers run last first)
			d.lanes.Store(nil)
			l.close()
		}()
	}
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		d.refreshes.Wait() // they end with the Service's life
		d.mu.Lock()
		for _, dl := range d.all {
			dl.closeFile()
		}
		d.mu.Unlock()
	}()
	wg.Go(func() { d.checkFiles(ctx) })
	wg.Go(func() { d.verifyFiles(ctx) })
	for {
		d.mu.Lock()
		q := d.queued
		d.queued = nil
		d.mu.Unlock()
		for _, dl := range q {
			dl.start(ctx, &wg)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
		}
	}
}

// enqueue has serve start dl.
func (d *downloads) enqueue(dl *download) {
	d.mu.Lock()
	d.queued = append(d.queued, dl)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *downloads) get(id MD5) *download {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.all[id]
}

// fetch starts downloading the resource l names, or returns the transfer
// already under way. A link with only an id takes its holders from the
// catalog. The user's fetch (l.For empty) of a service's download takes it
// over: it is the user's from then on, and the service no longer removes
// it (removeFor).
func (d *downloads) fetch(ctx context.Context, l Link) (Transfer, error) {
	if l.ID.IsZero() {
		return Transfer{}, fmt.Errorf("%w: no resource id", ErrBadLink)
	}
	if dl := d.get(l.ID); dl != nil {
		return d.fetchExisting(ctx, dl, l)
	}
	keep := l.KeepPaused
	l.KeepPaused = false // this fetch's, not the download's
	// The cached catalogs first (see Service.Fetch): they are the
	// download's first holders too, so that its first pieces do not wait
	// for every changed catalog to come (the gallery's open waited).
	var cached []mesh.ID
	if d.cached != nil {
		cached = d.cached(l.ID)
	}
	if l.Node == "" && len(cached) == 0 && len(d.holdersOf(l.ID)) == 0 {
		return Transfer{}, fmt.Errorf("%w: %s", ErrNoHolders, l.ID)
	}
	if l.Channel == "" {
		l.Channel = FilesChannel
	}
	if l.Dir != "" {
		dir, err := checkDir(l.Dir)
		if err != nil {
			return Transfer{}, err
		}
		l.Dir = dir
	}
	dl := d.newDownload(l)
	if len(cached) > 0 {
		dl.holderIDs, dl.holdersAt = cached, time.Now()
	}
	dl.name = l.Name
	if _, err := CleanName(dl.name); err != nil {
		dl.name = l.ID.String()
	}
	dl.manHash = l.Manifest
	dl.state = StateDownloading
	d.mu.Lock()
	if old := d.all[l.ID]; old != nil { // a fetch of the same id raced this one
		d.mu.Unlock()
		l.KeepPaused = keep
		return d.fetchExisting(ctx, old, l)
	}
	d.all[l.ID] = dl
	d.mu.Unlock()
	if err := dl.saveRecord(); err != nil {
		d.mu.Lock()
		delete(d.all, l.ID)
		d.mu.Unlock()
		return Transfer{}, err
	}
	d.enqueue(dl)
	dl.publish(true)
	return dl.transfer(), nil
}

// fetchExisting is fetch of a download already listed, asked for by the
// service owner (Link.For; empty for the user): a failed or paused one
// starts again, and the user's fetch makes a service's download the
// user's. A fetch is a wish to have the file now (music fetches a track
// as it plays it, and reads it through the download): a paused download
// left paused would keep that reader waiting with no end. Resuming does
// not change whose download it is. A fetch that only reads ahead
// (Link.KeepPaused) leaves a paused one as the user left it.
// A fetch of a download being removed waits for the removal to end and
// fetches again: resumed, the removed download ran on unlisted, its run
// could move a file into place that nothing points to, and the caller
// was handed a transfer that was gone.
func (d *downloads) fetchExisting(ctx context.Context, dl *download, l Link) (Transfer, error) {
	owner, keepPaused := l.For, l.KeepPaused
	dl.mu.Lock()
	if removal := dl.removal; removal != nil {
		dl.mu.Unlock()
		if err := waitDone(ctx, removal); err != nil {
			return Transfer{}, fmt.Errorf("shards: fetch %s while it is being removed: %w", l.ID, err)
		}
		return d.fetch(ctx, l)
	}
	st := dl.state
	again := st == StateFailed || (st == StatePaused && !keepPaused)
	if again {
		dl.state, dl.err = StateDownloading, ""
	}
	took := owner == "" && dl.link.For != ""
	if took {
		dl.link.For = ""
		if st == StateDone && d.onDone != nil {
			// The user's now: the catalog lists it as such. Under dl.mu,
			// which a removal takes to begin: listed after the removal's
			// onRemoved, a removed download stayed in the catalog.
			d.onDone(dl.transferLocked(time.Now()))
		}
	}
	dl.mu.Unlock()
	if again || took {
		if err := dl.saveRecord(); err != nil {
			return Transfer{}, err
		}
	}
	if again {
		d.enqueue(dl)
	}
	if again || took {
		// A resumed one says so at once: the Files view showed it paused
		// (or failed) until its first progress event otherwise, for good
		// when no holder answers. One the user took over was left out of
		// the Files view while it was a service's: it learns of it now.
		dl.publish(true)
	}
	return dl.transfer(), nil
}

// holdersOf lists the nodes the catalog says hold id.
func (d *downloads) holdersOf(id MD5) []mesh.ID {
	if d.holders == nil {
		return nil
	}
	return d.holders(id)
}

// pause stops a download and keeps what it has.
func (d *downloads) pause(ctx context.Context, id MD5) error {
	dl := d.get(id)
	if dl == nil {
		return fmt.Errorf("%w: %s", ErrUnknown, id)
	}
	dl.mu.Lock()
	if dl.state != StateDownloading {
		dl.mu.Unlock()
		return nil
	}
	dl.state = StatePaused
	done := dl.stop()
	dl.mu.Unlock()
	if err := waitDone(ctx, done); err != nil {
		return err
	}
	dl.publish(true)
	return dl.saveRecord()
}

// resume restarts a paused or failed download.
func (d *downloads) resume(ctx context.Context, id MD5) error {
	dl := d.get(id)
	if dl == nil {
		return fmt.Errorf("%w: %s", ErrUnknown, id)
	}
	dl.mu.Lock()
	if dl.removal != nil {
		// Its state says failed ("removed"); started again it would
		// outlive the removal (see fetchExisting).
		dl.mu.Unlock()
		return fmt.Errorf("%w: %s is being removed", ErrUnknown, id)
	}
	if dl.state != StatePaused && dl.state != StateFailed {
		dl.mu.Unlock()
		return nil
	}
	dl.state, dl.err = StateDownloading, ""
	dl.mu.Unlock()
	if err := dl.saveRecord(); err != nil {
		return err
	}
	d.enqueue(dl)
	dl.publish(true)
	return nil
}

// remove cancels a download and deletes its partial data. A finished
// file is left where it is: it is the user's now.
func (d *downloads) remove(ctx context.Context, id MD5) error {
	_, err := d.removeIf(ctx, id, func(string) bool { return true })
	return err
}

// removeFor is remove of a download that is still the service owner's
// (Link.For): one the user has fetched since is theirs, and is left alone
// with ErrNotOwned. The owner is checked under the download's lock as
// the removal begins, so a user's fetch that came first always wins. It
// returns the download as it was removed (see removeIf), so the service
// can delete a finished file it no longer wants.
func (d *downloads) removeFor(ctx context.Context, id MD5, owner string) (Transfer, error) {
	if owner == "" {
		return Transfer{}, fmt.Errorf("shards: remove %s for no service", id)
	}
	return d.removeIf(ctx, id, func(f string) bool { return f == owner })
}

// removeIf is remove of a download whose owner (Link.For) owned accepts.
// It returns the download as it stood once its run had stopped: a run
// that was finishing as the removal began may have moved the file into
// place meanwhile, so the Transfer is then StateDone with that file's
// Path (left where it is), else the state the download was in. A state
// taken before the call can say "downloading" of a file that finished.
//
// One removal of a download goes on at a time. Another (the user's and a
// service's at once) waits for it, then finds the download gone
// (ErrUnknown): only one is handed the finished file, which a service
// deletes. A removal whose ctx ends before the run stopped gives up and
// leaves the download as it was, running again if it ran; one waiting
// behind it then goes on. The download stays listed until its part file
// and record are deleted: a fetch meanwhile waits for the removal
// (fetchExisting) rather than start a download of the same id whose part
// file and record this removal would then delete.
func (d *downloads) removeIf(ctx context.Context, id MD5, owned func(string) bool) (Transfer, error) {
	dl := d.get(id)
	if dl == nil {
		return Transfer{}, fmt.Errorf("%w: %s", ErrUnknown, id)
	}
	dl.mu.Lock()
	if other := dl.removal; other != nil {
		dl.mu.Unlock()
		if err := waitDone(ctx, other); err != nil {
			return Transfer{}, fmt.Errorf("shards: remove %s while another removal of it goes on: %w", id, err)
		}
		return d.removeIf(ctx, id, owned)
	}
	if !owned(dl.link.For) {
		dl.mu.Unlock()
		return Transfer{}, fmt.Errorf("%w: %s", ErrNotOwned, id)
	}
	removal := make(chan struct{})
	dl.removal = removal
	was, wasErr := dl.state, dl.err
	dl.state = StateFailed
	dl.err = "removed"
	done := dl.stop()
	dl.mu.Unlock()
	if err := waitDone(ctx, done); err != nil {
		// Given up: left failed ("removed") it looked removed but
		// stayed, and its run had stopped. finish may have moved the
		// file into place meanwhile (StateDone): that stands.
		dl.mu.Lock()
		dl.removal = nil
		restart := false
		if dl.state == StateFailed && dl.err == "removed" {
			dl.state, dl.err = was, wasErr
			restart = was == StateDownloading
		}
		dl.mu.Unlock()
		close(removal)
		if restart {
			d.enqueue(dl) // its run starts once the stopping one has stopped
		}
		return Transfer{}, err
	}
	// Marked removed as the file closes, in one step: in between, a
	// reader's or a peer's read would make a new part file (its holes
	// read as the verified pieces they had checked) and keep it open.
	dl.mu.Lock()
	dl.removed = true
	if dl.file != nil {
		dl.file.Close()
		dl.file = nil
	}
	dl.signal()
	// finish sets path and StateDone together, after the state above.
	if dl.path != "" {
		was = StateDone
	}
	dl.state, dl.err = was, ""
	gone := dl.transferLocked(time.Now())
	dl.state, dl.err = StateFailed, "removed"
	dl.mu.Unlock()
	var errs []error
	if partHeldElsewhere(dl.part) {
		// Another node's on this machine (the download never had it
		// open): its pieces are not this download's to delete.
		d.log.Info("a removed download's part file is another node's; left alone", "id", id, "path", dl.part)
	} else if err := os.Remove(dl.part); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("shards: %w", err))
	}
	// After a save that found it not yet removed (saveRecord holds
	// recMu from its check to its write): that record would come back
	// as the download at the next start.
	dl.recMu.Lock()
	err := deleteDownload(d.db, id)
	dl.recMu.Unlock()
	if err != nil {
		errs = append(errs, err)
	}
	d.mu.Lock()
	if d.all[id] == dl {
		delete(d.all, id)
	}
	d.mu.Unlock()
	close(removal)
	d.events.Publish(Event{Removed: &id})
	if d.onRemoved != nil {
		d.onRemoved(id)
	}
	return gone, errors.Join(errs...)
}

func waitDone(ctx context.Context, done <-chan struct{}) error {
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// transfers lists the downloads.
func (d *downloads) transfers() []Transfer {
	d.mu.Lock()
	dls := slices.Collect(maps.Values(d.all))
	d.mu.Unlock()
	out := make([]Transfer, 0, len(dls))
	for _, dl := range dls {
		out = append(out, dl.transfer())
	}
	slices.SortFunc(out, func(a, b Transfer) int { return a.Added.Compare(b.Added) })
	return out
}

// pageKeys appends the key of every download of the user's to dst
// (Service.SharesPage).
func (d *downloads) pageKeys(dst []pageKey) []pageKey {
	d.mu.Lock()
	dls := slices.Collect(maps.Values(d.all))
	d.mu.Unlock()
	for _, dl := range dls {
		dl.mu.Lock()
		added, owner := dl.added, dl.link.For
		dl.mu.Unlock()
		if owner == "" {
			dst = append(dst, newPageKey(dl.id, added))
		}
	}
	return dst
}

// manifestOf implements pieceSource.
func (d *downloads) manifestOf(id MD5) (*Manifest, bool) {
	dl := d.get(id)
	if dl == nil {
		return nil, false
	}
	dl.mu.Lock()
	defer dl.mu.Unlock()
	return dl.man, dl.man != nil
}

// haveOf implements pieceSource: a downloader serves the pieces it has.
func (d *downloads) haveOf(id MD5) Bitfield {
	dl := d.get(id)
	if dl == nil {
		return nil
	}
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if dl.man == nil || dl.haveBytes == 0 {
		return nil
	}
	return slices.Clone(dl.have)
}

// readBlock implements pieceSource, from verified pieces only; a finished
// file that changed on disk since is not served.
func (d *downloads) readBlock(ctx context.Context, r blockReq, p []byte) error {
	dl := d.get(r.ID)
	if dl == nil {
		return fmt.Errorf("%w: %s", ErrUnknown, r.ID)
	}
	dl.mu.Lock()
	ok := dl.man != nil && blockInPiece(dl.man, r) && dl.have.Has(int(r.Piece)) && len(p) == int(r.Len)
	off := int64(0)
	if ok {
		off = dl.man.PieceOffset(int(r.Piece)) + int64(r.Off)
	}
	dl.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: piece %d of %s is not held", ErrUnknown, r.Piece, r.ID)
	}
	return dl.readAt(p, off)
}

// readSpanBlock implements spanSource: readBlock of a block that may run
// on into the pieces after r.Piece, every one of them verified, in one
// read.
func (d *downloads) readSpanBlock(ctx context.Context, r blockReq, p []byte) error {
	dl := d.get(r.ID)
	if dl == nil {
		return fmt.Errorf("%w: %s", ErrUnknown, r.ID)
	}
	dl.mu.Lock()
	ok := dl.man != nil && len(p) == int(r.Len)
	var last int
	if ok {
		last, ok = blockSpan(dl.man, r)
		ok = ok && dl.have.HasRange(int(r.Piece), last)
	}
	off := int64(0)
	if ok {
		off = dl.man.PieceOffset(int(r.Piece)) + int64(r.Off)
	}
	dl.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: pieces %d-%d of %s are not all held", ErrUnknown, r.Piece, last, r.ID)
	}
	return dl.readAt(p, off)
}

// sentBlock implements pieceSource.
func (d *downloads) sentBlock(id MD5, to mesh.ID, n int) {
	if dl := d.get(id); dl != nil {
		dl.mu.Lock()
		dl.uploaded += int64(n)
		dl.fetching(to)
		dl.mu.Unlock()
	}
}

// download is one resource being (or having been) downloaded.
type download struct {
	d    *downloads
	id   MD5
	link Link
	part string

	mu    sync.Mutex
	added time.Time
	name  string
	state State
	err   string
	// removal is closed when the removal under way ends (removeIf); nil
	// when none is. removed: it was removed.
	removal chan struct{}
	removed bool
	// recMu is held by saveRecord from its look at removed to its write,
	// and by removeIf as it deletes the record.
	recMu     sync.Mutex
	man       *Manifest
	manHash   Hash
	have      Bitfield
	haveBytes int64
	tries     []int   // attempts under way per piece
	avail     []int32 // usable peers holding each piece
	partial   int     // usable peers that lack some piece (downloaders too)
	sawSwarm  bool    // a peer answered that it holds none yet (it downloads too)
	recheck   bool    // look for unrecorded pieces at the next start
	// partUnsaved: part changed to one of the download's own
	// (ownPartName) and the record does not say so yet.
	partUnsaved bool
	// checking is the saved file reuse checks (Transfer.Checking), checked
	// the bytes of it checked so far; empty while none is.
	checking string
	checked  int64
	// tieSeed orders equally rare pieces for this download (pickFor.seed).
	tieSeed uint64
	// pushUntil: pieces are being pushed to this download (pushsink.go);
	// until then it does not pull, which would fetch the same pieces twice.
	pushUntil time.Time
	path      string // the finished file
	modTime   time.Time
	// stamp is the finished file as it was checked (see stamp): one that
	// differs is not served until it checks out again (checkFile).
	stamp    stamp
	file     *os.File // open for reads and writes; nil when closed
	peers    map[mesh.ID]*peer
	readers  map[*reader]int // the piece each open reader is at
	sources  map[mesh.ID]int64
	uploaded int64
	bad      map[mesh.ID]int
	banned   map[mesh.ID]bool
	// rejected are manifests whose pieces all verified while the file
	// was another one; manPeers are the peers that served the manifest in
	// use: when it is rejected they are banned.
	rejected map[Hash]bool
	manPeers map[mesh.ID]bool
	// waiting says why a download waits (Transfer.Waiting): for its
	// manifest (fetchManifest), or, with it, for a holder of a piece it
	// lacks (pieceWait); empty while pieces may come.
	waiting Wait
	// holderIDs is the last catalog lookup of the holders, made at
	// holdersAt: the run loop wakes at every verified piece, and a lookup
	// merges every online catalog.
	holderIDs []mesh.ID
	holdersAt time.Time
	// refreshing: a lookup of the holders is under way (candidates).
	refreshing bool
	// idle are the peers asked (for the manifest, or fetched from) while
	// a run is under way (nil otherwise), and when each is asked again
	// (runOnce, duePeers, idlePeer).
	// Only candidates have entries: runOnce drops the others.
	idle map[mesh.ID]*idlePeer
	// changed is closed and replaced whenever a piece is verified, a
	// reader moves, a peer leaves or the state changes: readers and peer
	// loops wait on it.
	changed   chan struct{}
	dirty     chan struct{} // the bitfield has changes to commit; of the running persister
	cancel    context.CancelFunc
	done      chan struct{} // closed when the running fetch has stopped
	rate      rateMeter
	lastEvent time.Time
	bufs      sync.Pool // piece buffers

	// hashMu guards the whole-file MD5 of the pieces 0..hashed-1, fed as
	// they are verified (hashAhead).
	hashMu sync.Mutex
	whole  hash.Hash
	hashed int

	// unstarted counts the bytes written to the part file since its
	// writeback was last started (startWriteback, every writebackBytes).
	unstarted atomic.Int64
}

// signal wakes everyone waiting on changed; dl.mu is held.
func (dl *download) signal() {
	close(dl.changed)
	dl.changed = make(chan struct{})
}

// trusted reports whether the manifest in use was checked against a hash
// the user's link carries (and not since rejected); dl.mu is held.
// Otherwise it is one peer's word, and peers are fetched from only if
// they serve the same manifest.
func (dl *download) trusted() bool {
	return !dl.link.Manifest.IsZero() && !dl.rejected[dl.link.Manifest]
}

// setManifest installs m; dl.mu is held or dl is not yet shared.
func (dl *download) setManifest(m *Manifest, h Hash) {
	dl.man, dl.manHash = m, h
	dl.have = NewBitfield(m.NumPieces())
	dl.tries = make([]int, m.NumPieces())
	dl.avail = make([]int32, m.NumPieces())
	size := int(m.PieceSize)
	dl.bufs.New = func() any { b := make([]byte, size); return &b }
}

// countHave recomputes haveBytes; dl.mu is held.
func (dl *download) countHave() {
	dl.haveBytes = 0
	for i := range dl.man.NumPieces() {
		if dl.have.Has(i) {
			dl.haveBytes += dl.man.PieceLen(i)
		}
	}
}

func (dl *download) complete() bool {
	return dl.man != nil && dl.haveBytes == dl.man.Size && dl.have.Count() == dl.man.NumPieces()
}

// pieceStates, for the picker; dl.mu is held.
func (dl *download) numPieces() int         { return dl.man.NumPieces() }
func (dl *download) verified(i int) bool    { return dl.have.Has(i) }
func (dl *download) attempts(i int) int     { return dl.tries[i] }
func (dl *download) availability(i int) int { return int(dl.avail[i]) }

// start runs the download on a goroutine of wg once its previous run has
// stopped.
func (dl *download) start(ctx context.Context, wg *sync.WaitGroup) {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if dl.state != StateDownloading || dl.cancel != nil {
		return
	}
	prev := dl.done
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	dl.cancel, dl.done = cancel, done
	wg.Go(func() {
		defer close(done)
		defer cancel()
		if prev != nil {
			<-prev
		}
		err := dl.run(rctx)
		dl.mu.Lock()
		again := false
		if dl.done == done {
			dl.cancel = nil
			// A run that ended done, its file then lost (lose) and the
			// download resumed before this: that resume's start found
			// this run going and left it to it. Not started again here,
			// it said "downloading" with nothing running, for ever.
			again = err == nil && rctx.Err() == nil && dl.state == StateDownloading
		}
		failed := err != nil && rctx.Err() == nil
		if failed {
			dl.state, dl.err = StateFailed, err.Error()
		}
		dl.signal()
		dl.mu.Unlock()
		if again {
			dl.d.enqueue(dl)
		}
		if failed {
			dl.d.log.Warn("download failed", "id", dl.id, "err", err)
			dl.saveRecord()
			dl.publish(true)
		}
	})
}

// stop cancels the running fetch and returns a channel closed when it has
// stopped (nil if none ever ran); dl.mu is held. A run another stop
// cancelled (a pause) may still be stopping: its channel is returned
// too, or a removal would go on while that run moved the file into place.
func (dl *download) stop() <-chan struct{} {
	if dl.cancel != nil {
		dl.cancel()
		dl.cancel = nil
		dl.signal()
	}
	return dl.done
}

// run fetches the manifest if need be, then the pieces from every holder at
// once, then checks the whole file and moves it into place.
func (dl *download) run(ctx context.Context) error {
	for n := 0; ; n++ {
		err := dl.runOnce(ctx)
		if !errors.Is(err, errRefetch) || n >= maxRefetch {
			return err
		}
		dl.d.log.Warn("download starts over", "id", dl.id, "err", err)
	}
}

func (dl *download) runOnce(ctx context.Context) error {
	// The peers' idle records (backoffs) span the manifest's fetch and
	// the pieces': a peer that does not have the manifest holds no piece.
	dl.mu.Lock()
	dl.idle = make(map[mesh.ID]*idlePeer)
	dl.mu.Unlock()
	defer func() {
		dl.mu.Lock()
		dl.idle = nil
		dl.mu.Unlock()
	}()
	if err := dl.fetchManifest(ctx); err != nil {
		return err
	}
	dl.mu.Lock()
	m := dl.man
	recheckNow := dl.recheck
	dl.mu.Unlock()
	if done, err := dl.reuse(ctx, m); done || err != nil {
		return err
	}
	f, err := dl.openFile()
	if errors.Is(err, errPartLost) {
		f, err = dl.openFile() // it made a new one, to fetch them again into
	}
	if err != nil {
		return err
	}
	dl.mu.Lock()
	unsaved := dl.partUnsaved
	dl.mu.Unlock()
	if unsaved {
		// A part file of its own: the next start must find it.
		if err := dl.saveRecord(); err != nil {
			return err
		}
	}
	if recheckNow {
		have := NewBitfield(m.NumPieces())
		dl.mu.Lock()
		copy(have, dl.have)
		dl.mu.Unlock()
		found, err := recheck(ctx, f, m, have)
		if err != nil {
			return err
		}
		dl.mu.Lock()
		for i := range m.NumPieces() {
			if have.Has(i) && !dl.have.Has(i) {
				dl.have.Set(i)
				dl.haveBytes += m.PieceLen(i)
			}
		}
		dl.recheck = false
		dl.signal()
		dl.mu.Unlock()
		if found > 0 {
			dl.d.log.Info("found pieces written before a restart", "id", dl.id, "pieces", found)
			if err := putHave(dl.d.db, dl.id, have); err != nil {
				return err
			}
		}
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	dirty := make(chan struct{}, 1)
	dl.mu.Lock()
	dl.dirty = dirty
	dl.mu.Unlock()
	wg.Go(func() { dl.persist(wctx, f, dirty) })

	type ended struct {
		id  mesh.ID
		err error
	}
	endedC := make(chan ended)
	running := make(map[mesh.ID]bool)
	tick := time.NewTicker(dl.d.cfg.HaveInterval)
	defer tick.Stop()
	for {
		dl.mu.Lock()
		doneNow := dl.complete()
		changed := dl.changed
		dl.mu.Unlock()
		if doneNow {
			cancel()
			wg.Wait()
			return dl.finish(ctx, f)
		}
		now := time.Now()
		dl.mu.Lock()
		pushed := now.Before(dl.pushUntil)
		dl.mu.Unlock()
		cands, holders := dl.candidates()
		dl.mu.Lock()
		due := dl.duePeers(now, cands, holders, running)
		dl.mu.Unlock()
		if pushed {
			due = nil
		}
		for _, id := range due {
			running[id] = true
			wg.Go(func() {
				err := dl.fetchFrom(wctx, id)
				select {
				case endedC <- ended{id, err}:
				case <-wctx.Done():
				}
			})
		}
		dl.mu.Lock()
		wait, decided := dl.pieceWait(running, pushed)
		dl.mu.Unlock()
		if decided {
			dl.setWaiting(wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-endedC:
			delete(running, e.id)
			quiet := errors.Is(e.err, errNoPieces) || errors.Is(e.err, errOtherManifest)
			if !quiet && !errors.Is(e.err, errBanned) {
				dl.d.log.Debug("download: a peer's part ended", "id", dl.id, "peer", e.id.Short(), "err", e.err)
			}
			dl.mu.Lock()
			dl.idleEnded(e.id, time.Now(), e.err, false)
			dl.mu.Unlock()
		case <-tick.C:
		case <-changed:
		}
	}
}

// candidates lists the peers to fetch from: the link's node while it is
// online (linked, or in the directory) and the catalog's holders (the
// first holders of out), then every linked peer (a linked peer that is
// downloading too may have pieces) and the link's node if offline (it is
// asked with backoff, as a peer that holds nothing), less those banned
// for this resource.
func (dl *download) candidates() (out []mesh.ID, holders int) {
	seen := make(map[mesh.ID]bool)
	known := true
	add := func(id mesh.ID) {
		if id == "" || id == dl.d.node.ID() || seen[id] {
			return
		}
		seen[id] = true
		out = append(out, id)
		if known {
			holders++
		}
	}
	peers := dl.d.node.Peers()
	if l := dl.link.Node; l != "" {
		_, online := dl.d.node.Lookup(l)
		if online || slices.ContainsFunc(peers, func(p mesh.PeerInfo) bool { return p.ID == l }) {
			add(l)
		}
	}
	dl.mu.Lock()
	listed, first := dl.holderIDs, dl.holdersAt.IsZero()
	refresh := !first && !dl.refreshing && time.Since(dl.holdersAt) >= dl.d.cfg.HaveInterval
	dl.refreshing = dl.refreshing || refresh
	dl.mu.Unlock()
	if first {
		// Nothing to go on yet: the start waits for the lookup.
		listed = dl.d.holdersOf(dl.id)
		dl.mu.Lock()
		dl.holderIDs, dl.holdersAt = listed, time.Now()
		dl.mu.Unlock()
	} else if refresh {
		// Later ones go on beside the download, which uses the last
		// list meanwhile: a lookup waits up to holdersTimeout for a node
		// that does not send its changed catalog, and this loop both
		// starts the peers and finishes the file. Run here, it held a
		// download whose every piece had come, every HaveInterval.
		dl.d.refreshes.Go(func() {
			ids := dl.d.holdersOf(dl.id)
			dl.mu.Lock()
			changed := !slices.Equal(ids, dl.holderIDs)
			dl.holderIDs, dl.holdersAt, dl.refreshing = ids, time.Now(), false
			if changed {
				dl.signal() // a new holder is started at once
			}
			dl.mu.Unlock()
		})
	}
	for _, id := range listed {
		add(id)
	}
	known = false
	for _, p := range peers {
		add(p.ID)
	}
	add(dl.link.Node)
	dl.mu.Lock()
	defer dl.mu.Unlock()
	for _, id := range out[:holders] {
		if dl.banned[id] {
			holders--
		}
	}
	return slices.DeleteFunc(out, func(id mesh.ID) bool { return dl.banned[id] }), holders
}

// anyKey reports whether f holds for a key of m.
func anyKey[K comparable, V any](m map[K]V, f func(K) bool) bool {
	for k := range m {
		if f(k) {
			return true
		}
	}
	return false
}

// manifestAsks bounds the manifest requests one download has out at once.
// Asked one at a time, a holder that took the request and never answered
// held the others back for RequestTimeout; every due peer at once would
// ask dozens of linked peers together, nearly all of which hold nothing.
const manifestAsks = 3

// setWaiting sets what the download waits for, and tells the listeners
// if that changed.
func (dl *download) setWaiting(w Wait) {
	dl.mu.Lock()
	news := dl.waiting != w
	dl.waiting = w
	dl.mu.Unlock()
	if news {
		dl.publish(true)
	}
}

// fetchManifest gets the manifest from a holder and checks it against the
// hash the link carries. Without a hash (a link typed by hand, an id from
// the catalog) the first manifest that decodes, fits the size and was not
// rejected before is used; only peers that serve that same manifest are
// fetched from, and the whole-file MD5 at the end decides: a manifest that
// fails it is rejected, its senders banned, and the download goes on with
// another (finish).
//
// Up to manifestAsks peers are asked at once, those never asked first
// (known holders before the rest), then those asked longest ago; the
// first manifest that passes those checks is used and the other asks are
// cancelled. Without a hash, peers that are not known holders are asked
// only while no known holder is: the first manifest in wins then, and a
// liar answers first. Peers are asked as the have polling asks them (duePeers): a
// peer that does not have the manifest ever more rarely, up to
// haveBackoffMax HaveIntervals, a known holder so too once it failed to
// serve it (the link's node that dropped the file), and one that turns
// into a holder at once. Every download asked every linked peer every half
// minute before: a link whose holders are offline, times dozens of
// downloads and peers, was a steady flood of asks answered "unknown".
func (dl *download) fetchManifest(ctx context.Context) error {
	dl.mu.Lock()
	have, want := dl.man != nil, dl.manHash
	if dl.rejected[want] {
		want = Hash{}
	}
	dl.mu.Unlock()
	if have {
		return nil
	}
	type answer struct {
		id       mesh.ID
		m        *Manifest
		err      error
		asHolder bool
	}
	actx, cancel := context.WithCancel(ctx)
	// Room for every ask: one never waits to hand its answer in.
	answers := make(chan answer, manifestAsks)
	running := make(map[mesh.ID]bool)
	defer func() {
		// The asks still out are cancelled (another answered, or the
		// run stops): that says nothing of their peers, whatever error
		// they end with (a busy peer's is ErrBusy, not Canceled).
		cancel()
		for range len(running) {
			<-answers
		}
	}()
	tick := time.NewTicker(dl.d.cfg.HaveInterval)
	defer tick.Stop()
	failed := false
	for {
		cands, holders := dl.candidates()
		dl.mu.Lock()
		due := dl.duePeers(time.Now(), cands, holders, running)
		changed := dl.changed
		dl.mu.Unlock()
		known := func(id mesh.ID) bool { return slices.Contains(cands[:holders], id) }
		if want.IsZero() && (slices.ContainsFunc(due, known) || anyKey(running, known)) {
			// Without a hash the first manifest in is taken, and only
			// the whole file's MD5 tells a lie: a linked peer answering
			// at once must not beat the link's node. The others are
			// asked only while no known holder is, as when the asks
			// went one at a time.
			due = slices.DeleteFunc(due, func(id mesh.ID) bool { return !known(id) })
		}
		for _, id := range due[:min(len(due), manifestAsks-len(running))] {
			running[id] = true
			asHolder := known(id)
			go func() {
				m, err := dl.askManifest(actx, id, want, true)
				answers <- answer{id, m, err, asHolder}
			}()
		}
		// Waiting once an ask failed or none is out: a manifest that
		// comes at once shows no wait.
		if failed || len(running) == 0 {
			wait := WaitManifest
			if holders == 0 {
				wait = WaitNoHolder
			}
			dl.setWaiting(wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case a := <-answers:
			delete(running, a.id)
			if a.err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				failed = true
				dl.d.log.Debug("no manifest from a peer", "id", dl.id, "peer", a.id.Short(), "err", a.err)
				dl.mu.Lock()
				dl.idleEnded(a.id, time.Now(), a.err, a.asHolder)
				dl.mu.Unlock()
				continue
			}
			dl.mu.Lock()
			dl.setManifest(a.m, a.m.Hash())
			dl.waiting = ""
			clear(dl.manPeers)
			dl.manPeers[a.id] = true
			dl.mu.Unlock()
			dl.publish(true)
			return dl.saveRecord()
		case <-tick.C:
		case <-changed:
		}
	}
}

// askManifest asks peer id for the manifest. With want set, another one
// is refused, and the peer scored down when strict (want is the link's:
// the peer serves a manifest that is not the resource's). Without, one
// rejected before or of another size than the link's is refused.
func (dl *download) askManifest(ctx context.Context, id mesh.ID, want Hash, strict bool) (*Manifest, error) {
	ctx, cancel := context.WithTimeout(ctx, dl.d.cfg.RequestTimeout)
	defer cancel()
	if err := dl.d.node.Expand(ctx, id); err != nil {
		return nil, err
	}
	b, err := requestPatient(ctx, dl.d.node, id, ProtoManifest, dl.id[:], mesh.OverBulk())
	if err != nil {
		return nil, err
	}
	m, err := DecodeManifest(b)
	if err != nil {
		dl.d.node.Penalize(id, "bad manifest")
		return nil, err
	}
	h := m.Hash()
	if !want.IsZero() && h != want {
		if !strict {
			return nil, fmt.Errorf("%w: %s, not %s", errOtherManifest, h, want)
		}
		dl.d.node.Penalize(id, "manifest does not match its hash")
		return nil, fmt.Errorf("%w: hash %s, want %s", ErrBadManifest, h, want)
	}
	dl.mu.Lock()
	rejected := dl.rejected[h]
	dl.mu.Unlock()
	if rejected {
		return nil, fmt.Errorf("%w: %s was rejected: it describes another file", ErrBadManifest, h)
	}
	if want.IsZero() && dl.link.Size > 0 && m.Size != dl.link.Size {
		return nil, fmt.Errorf("%w: size %d, the link says %d", ErrBadManifest, m.Size, dl.link.Size)
	}
	return m, nil
}

// persistInterval is the least time between two commits of a download's
// bitfield. Each commit syncs the part file and the store (two fsyncs);
// back to back, they cost about 1 CPU-s per GB downloaded and held the
// disk busy under the writes. A crash loses at most this much of the
// bitfield, which recheck finds again on disk.
const persistInterval = time.Second

// persist commits the bitfield whenever it has changed, at most every
// persistInterval, after syncing the part file so a committed bit never
// names bytes still in the page cache only. Pieces verified during one
// commit, or before the interval is up, go in the next. It writes nothing
// when ctx ends (see serve).
func (dl *download) persist(ctx context.Context, f *os.File, dirty <-chan struct{}) {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-dirty:
		}
		if wait := persistInterval - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		last = time.Now()
		if ctx.Err() != nil {
			return
		}
		// The bits are taken before the sync, so that each names a piece
		// written before it; a piece verified during the sync waits for
		// the next commit.
		dl.mu.Lock()
		have := slices.Clone(dl.have)
		sources := maps.Clone(dl.sources)
		dl.mu.Unlock()
		if err := f.Sync(); err != nil {
			dl.d.log.Warn("sync of a partial download", "id", dl.id, "err", err)
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if err := putProgress(dl.d.db, dl.id, have, sources); err != nil {
			dl.d.log.Warn("commit of a bitfield", "id", dl.id, "err", err)
		}
	}
}

// finish checks the whole file against the resource id and moves it into
// the output folder.
func (dl *download) finish(ctx context.Context, f *os.File) (err error) {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("shards: %w", err)
	}
	if err := dl.hashAhead(f, -1, nil); err != nil {
		return err
	}
	dl.hashMu.Lock()
	got := MD5(dl.whole.Sum(nil))
	dl.whole = nil
	dl.hashMu.Unlock()
	if got != dl.id {
		return dl.wrongFile(ctx, f, got)
	}
	// Listed before it is reported done, so that whoever sees "done" and
	// asks what the node holds finds it (its verified pieces were served
	// all along). A removal waits for the run, finish included, before
	// its onRemoved; a finish that does not end done (no free name, a
	// failed rename) takes the entry out again: the node does not hold it
	// as a finished file.
	listed := dl.d.onDone != nil
	if listed {
		defer func() {
			if err != nil && dl.d.onRemoved != nil {
				dl.d.onRemoved(dl.id)
			}
		}()
		dl.d.onDone(dl.transfer())
	}
	// A name is picked as free and renamed onto in one step: two
	// downloads of one name that finish together took the same, and the
	// second rename replaced the first one's file.
	// The rename never replaces a file: in a user's folder (Link.Dir)
	// one can appear between the check and the rename, and it is theirs.
	dl.d.placeMu.Lock()
	var dst string
	for range 10 {
		if dst, err = dl.finalPath(); err != nil {
			dl.d.placeMu.Unlock()
			return err
		}
		if err = renameNoReplace(dl.part, dst); !errors.Is(err, os.ErrExist) {
			break
		}
	}
	dl.mu.Lock()
	dl.d.placeMu.Unlock()
	if err == nil && dl.link.Dir != "" {
		// The part file was the node's own (0600); in the user's folder
		// the file is the user's, with the mode of a file they saved.
		if err := f.Chmod(newFileMode(filepath.Dir(dst))); err != nil {
			dl.d.log.Warn("chmod of a finished download", "path", dst, "err", err)
		}
	}
	if err == nil {
		dl.path = dst
		if fi, err := f.Stat(); err == nil {
			dl.modTime, dl.stamp = fi.ModTime(), stampOf(fi)
		}
		dl.state = StateDone
		dl.signal()
	}
	// Taken under dl.mu: lose may drop the bits as soon as it is done.
	have := slices.Clone(dl.have)
	dl.mu.Unlock()
	if err != nil {
		return fmt.Errorf("shards: %w", err)
	}
	if f := dl.d.afterDone.Load(); f != nil {
		(*f)(dl.id)
	}
	if err := putHave(dl.d.db, dl.id, have); err != nil {
		return err
	}
	dl.d.log.Info("download done", "id", dl.id, "path", dst)
	dl.publish(true)
	return dl.saveRecord()
}

// wrongFile handles a finished file whose MD5 is not the resource id. If
// some pieces on disk no longer verify (the part file changed under the
// download) those are dropped and fetched again. If all do, the manifest
// describes another file: a manifest taken without a hash from a lying
// peer (or a link made to lie). It is rejected for good, the peers that
// served it are banned for this resource, and the download starts over
// with another manifest, keeping the pieces on disk that fit it (recheck).
// Either way it returns errRefetch.
func (dl *download) wrongFile(ctx context.Context, f *os.File, got MD5) error {
	dl.mu.Lock()
	m := dl.man
	have := slices.Clone(dl.have)
	dl.mu.Unlock()
	ok := NewBitfield(m.NumPieces()) // the pieces that verify on disk
	if _, err := recheck(ctx, f, m, ok); err != nil {
		return err
	}
	dl.mu.Lock()
	defer dl.mu.Unlock()
	lost := 0
	for i := range m.NumPieces() {
		if have.Has(i) && !ok.Has(i) {
			lost++
		}
	}
	if lost > 0 {
		for i := range m.NumPieces() {
			if have.Has(i) && !ok.Has(i) {
				dl.have.Clear(i)
				dl.haveBytes -= m.PieceLen(i)
			}
		}
		dl.signal()
		if err := putHave(dl.d.db, dl.id, dl.have); err != nil {
			return err
		}
		return fmt.Errorf("%w: %d pieces changed on disk", errRefetch, lost)
	}
	h := dl.manHash
	dl.rejected[h] = true
	liars := slices.Collect(maps.Keys(dl.manPeers))
	for _, id := range liars {
		dl.banned[id] = true
		dl.d.node.Penalize(id, "manifest of another file")
	}
	clear(dl.manPeers)
	dl.man, dl.manHash, dl.have, dl.haveBytes = nil, Hash{}, nil, 0
	if dl.trusted() {
		dl.manHash = dl.link.Manifest
	}
	dl.recheck = true
	dl.signal()
	if err := putHave(dl.d.db, dl.id, nil); err != nil {
		return err
	}
	return fmt.Errorf("%w: its md5 is %s under manifest %s from %v", errRefetch, got, h, liars)
}

// finalPath picks a free name for the finished file in OutDir: the
// resource's name, or "name (2).ext" and so on when it is taken.
func (dl *download) finalPath() (string, error) {
	dl.mu.Lock()
	name, out := dl.name, dl.link.Dir
	dl.mu.Unlock()
	if out == "" {
		out = dl.d.cfg.OutDir
		if err := os.MkdirAll(out, 0o755); err != nil {
			return "", fmt.Errorf("shards: %w", err)
		}
	}
	ext := filepath.Ext(name)
	base := strings.TrimSuffix(name, ext)
	for i := 1; i < 1000; i++ {
		p := filepath.Join(out, name)
		if i > 1 {
			p = filepath.Join(out, fmt.Sprintf("%s (%d)%s", base, i, ext))
		}
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			return p, nil
		}
	}
	return "", fmt.Errorf("shards: no free name for %q in %s", name, out)
}

// checkDir checks a Link.Dir: an absolute path to a folder this node can
// create files in (the node may run as another user than the one who
// asked), and returns it cleaned. The check writes and removes an empty
// file there.
func checkDir(dir string) (string, error) {
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("%w: %q is not an absolute path", ErrBadDir, dir)
	}
	dir = filepath.Clean(dir)
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadDir, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%w: %s is not a folder", ErrBadDir, dir)
	}
	f, err := os.CreateTemp(dir, ".catnest-probe-*")
	if err != nil {
		return "", fmt.Errorf("%w: the node cannot write to it: %w", ErrBadDir, err)
	}
	f.Close()
	os.Remove(f.Name())
	return dir, nil
}

// openFile opens the part file (or the finished file) for the download's
// reads and writes.
func (dl *download) openFile() (*os.File, error) {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	return dl.openFileLocked()
}

func (dl *download) openFileLocked() (*os.File, error) {
	if dl.file != nil {
		return dl.file, nil
	}
	if dl.removed || dl.man == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknown, dl.id)
	}
	if dl.state == StateDone {
		f, err := os.Open(dl.path)
		if err != nil {
			return nil, fmt.Errorf("shards: %w", err)
		}
		dl.file = f
		return f, nil
	}
	// The bits name bytes in the part file; if it is gone or of another
	// size, a new one would serve its holes as verified pieces.
	lost := false
	if fi, err := os.Stat(dl.part); (err != nil || fi.Size() != dl.man.Size) && dl.have.Count() > 0 {
		if err := dl.dropHaveLocked(); err != nil {
			return nil, err
		}
		lost = true
	}
	f, err := createPart(dl.part, dl.man.Size)
	if errors.Is(err, errPartBusy) && dl.link.Dir != "" {
		// Another node on this machine saves the same file into the same
		// folder and has the part file: this download takes one of its
		// own, and its bits, if any, named bytes in a file it no longer
		// holds.
		dl.d.log.Info("the part file is another node's; this download keeps its own", "id", dl.id, "path", dl.part)
		dl.part = filepath.Join(dl.link.Dir, ownPartName(dl.id))
		dl.partUnsaved = true
		if dl.have.Count() > 0 {
			if err := dl.dropHaveLocked(); err != nil {
				return nil, err
			}
			lost = true
		}
		f, err = createPart(dl.part, dl.man.Size)
	}
	if err != nil {
		return nil, err // createPart says "shards: "
	}
	dl.file = f
	if lost {
		// The caller checked a bit that is no more.
		dl.d.log.Warn("the part file was lost; its pieces are fetched again", "id", dl.id, "path", dl.part)
		return nil, fmt.Errorf("%w: %s: %w", ErrUnknown, dl.id, errPartLost)
	}
	return f, nil
}

// dropHaveLocked forgets every verified piece, stored too: they named
// bytes in a part file the download no longer has. dl.mu is held.
func (dl *download) dropHaveLocked() error {
	dl.have = NewBitfield(dl.man.NumPieces())
	dl.haveBytes = 0
	dl.signal()
	return putHave(dl.d.db, dl.id, dl.have)
}

func (dl *download) closeFile() {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if dl.file != nil {
		dl.file.Close()
		dl.file = nil
	}
}

// readAt reads verified bytes for a reader or a peer. A finished file that
// changed on disk since it was checked (its stamp) is refused; one whose
// metadata only changed with errStale, until checkFile vouches for it.
func (dl *download) readAt(p []byte, off int64) error {
	dl.mu.Lock()
	// The callers checked the bits, then let go of dl.mu: a finished file
	// dropped since (lose) would be opened as a new part file, its holes
	// read as the pieces they had checked.
	if dl.man == nil || len(p) == 0 || !dl.have.HasRange(int(off/dl.man.PieceSize), int((off+int64(len(p))-1)/dl.man.PieceSize)) {
		dl.mu.Unlock()
		return fmt.Errorf("%w: bytes %d-%d of %s are not held", ErrUnknown, off, off+int64(len(p)), dl.id)
	}
	f, err := dl.openFileLocked()
	if err != nil {
		dl.mu.Unlock()
		return err
	}
	done, path, want := dl.state == StateDone, dl.path, dl.stamp
	dl.mu.Unlock()
	if done {
		// The path first: deleted, moved or replaced, the open file still
		// reads what it was. Then the open file, after the read, for an
		// edit made during it.
		fi, err := os.Stat(path)
		if err := dl.sameFile(want, fi, err); err != nil {
			return fmt.Errorf("%w: %s %w since it was downloaded", ErrUnknown, path, err)
		}
	}
	if _, err := f.ReadAt(p, off); err != nil {
		return fmt.Errorf("shards: read %s: %w", dl.id, err)
	}
	if done {
		fi, err := f.Stat()
		if err := dl.sameFile(want, fi, err); err != nil {
			return fmt.Errorf("%w: %s %w since it was downloaded", ErrUnknown, path, err)
		}
	}
	return nil
}

// saveRecord stores the download's record.
func (dl *download) saveRecord() error {
	dl.recMu.Lock()
	defer dl.recMu.Unlock()
	dl.mu.Lock()
	if dl.removed {
		dl.mu.Unlock()
		return nil
	}
	r := downloadRecord{ID: dl.id, ManifestHash: dl.manHash, Link: dl.link, Name: dl.name, State: dl.state,
		Error: dl.err, Path: dl.path, ModTime: dl.modTime, Stamp: dl.stamp, Added: dl.added, Uploaded: dl.uploaded,
		Sources: boundSources(maps.Clone(dl.sources))}
	if dl.link.Dir != "" && filepath.Base(dl.part) != dirPartName(dl.id) {
		r.Part = filepath.Base(dl.part)
	}
	dl.partUnsaved = false
	if dl.man != nil {
		r.Manifest = dl.man.Encode()
	}
	dl.mu.Unlock()
	return putRecord(dl.d.db, &r)
}

// transfer is the download as the API shows it.
func (dl *download) transfer() Transfer {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	return dl.transferLocked(time.Now())
}

func (dl *download) transferLocked(now time.Time) Transfer {
	t := Transfer{ID: dl.id, Name: dl.name, Size: dl.link.Size, Type: mime.TypeByExtension(filepath.Ext(dl.name)),
		Manifest: dl.manHash, Have: dl.haveBytes, State: dl.state, Error: dl.err, Path: dl.part,
		Uploaded: dl.uploaded, Sources: maps.Clone(dl.sources), Added: dl.added, For: dl.link.For}
	if dl.man != nil {
		t.Size = dl.man.Size
	}
	if dl.state == StateDone {
		t.Path = dl.path
	}
	if dl.state == StateDownloading {
		t.Rate = dl.rate.rate(now)
		t.Waiting = dl.waiting
		t.Checking, t.Checked = dl.checking, dl.checked
	}
	l := dl.link
	l.Node, l.Rendezvous, l.Manifest, l.Name, l.Size = dl.d.node.ID(), dl.d.cfg.Rendezvous, dl.manHash, dl.name, t.Size
	t.Link = l.String()
	return t
}

// publish sends a progress event: at once when force (a state change),
// else at most every ProgressInterval.
func (dl *download) publish(force bool) {
	dl.mu.Lock()
	now := time.Now()
	if !force && now.Sub(dl.lastEvent) < dl.d.cfg.ProgressInterval {
		dl.mu.Unlock()
		return
	}
	if dl.removed {
		// Its Removed event is out or on its way: a later one would
		// list it again.
		dl.mu.Unlock()
		return
	}
	dl.lastEvent = now
	t := dl.transferLocked(now)
	// Under dl.mu (Publish never blocks): one that found it not removed
	// goes out before the Removed event.
	dl.d.events.Publish(Event{Transfer: &t})
	dl.mu.Unlock()
}

// peer is one holder a download fetches from.
type peer struct {
	id       mesh.ID
	has      Bitfield
	attempts map[int]*attempt // the pieces it is fetching
	wait     budgetWaiter     // its place in the budget's line
	rate     float64          // its pipeline's rate, bytes/s; 0 until measured
	// gaveUp are pieces it gave up as far slower than another peer
	// (yield), not to be taken again before the next have refresh.
	gaveUp map[int]bool
	// noSpan: the peer does not serve ProtoSpan (an older node); it is
	// asked for a block of one piece at a time.
	noSpan bool
}

// attempt is one peer's fetch of one piece: its blocks are requested in
// order and assembled in buf, which is checked before anything is written.
// A piece fetched whole in one block, alone or in a span, is checked in the
// answer itself and has no buf.
type attempt struct {
	piece   int
	buf     *[]byte // taken at its first block of several (onBlock); nil for a piece fetched whole in one block
	charged int64   // the buffer's bytes taken from the budget; 0 once given back
	next    int64   // offset of the next block to request
	got     int64   // bytes received
	ctx     context.Context
	cancel  context.CancelFunc
	peer    mesh.ID   // whom the bytes are charged to
	start   time.Time // when the buffer was taken
	// recv counts the bytes received and last is when the last of them
	// came (UnixNano; 0 before the first), for the budget (overdue,
	// stalled), which reads them without dl.mu; evicted is set when the
	// budget took the attempt back (evict) and cancelled it: its loop
	// drops it, not counting a failure.
	recv    atomic.Int64
	last    atomic.Int64
	evicted atomic.Bool

	gap time.Duration // the longest wait for a block of it, from start (budget.pieceDone); dl.mu
}

// blockResult is the answer to one block request.
type blockResult struct {
	// as are the attempts the block is for: one, or (a span, ProtoSpan)
	// one per piece it covers, in piece order, each piece whole.
	as   []*attempt
	req  blockReq
	data []byte
	err  error
	took time.Duration
}

// span reports whether r answers a ProtoSpan request.
func (r *blockResult) span() bool { return len(r.as) > 1 }

// fetchFrom fetches pieces from one peer until the download is complete, the
// peer has nothing more to give, or it misbehaves. Block requests are
// pipelined, as many in flight as the peer's rate and round trip call for.
func (dl *download) fetchFrom(ctx context.Context, id mesh.ID) error {
	node := dl.d.node
	if err := node.Expand(ctx, id); err != nil {
		return err
	}
	dl.mu.Lock()
	trusted, want := dl.trusted(), dl.manHash
	dl.mu.Unlock()
	if !trusted {
		if _, err := dl.askManifest(ctx, id, want, false); err != nil {
			return err
		}
		dl.mu.Lock()
		dl.manPeers[id] = true
		dl.mu.Unlock()
	}
	has, err := dl.askHave(ctx, id)
	if err != nil {
		return err
	}
	p := &peer{id: id, attempts: make(map[int]*attempt), wait: budgetWaiter{peer: id}, gaveUp: make(map[int]bool)}
	dl.mu.Lock()
	dl.setPeerHave(p, has)
	dl.peers[id] = p
	dl.mu.Unlock()
	results := make(chan blockResult, maxRequests)
	inflight := 0       // requests
	var inflightB int64 // and their bytes
	defer func() {
		dl.mu.Lock()
		for _, a := range p.attempts {
			a.cancel()
		}
		dl.mu.Unlock()
		for ; inflight > 0; inflight-- {
			<-results
		}
		dl.mu.Lock()
		for _, a := range p.attempts {
			dl.dropAttempt(p, a, true)
		}
		dl.setPeerHave(p, nil)
		delete(dl.peers, id)
		dl.d.budget.leave(&p.wait)
		dl.signal()
		dl.mu.Unlock()
	}()
	pipe := newPipeline(dl.d.cfg.PeerWindow, dl.d.cfg.RequestTimeout)
	refresh := time.NewTicker(dl.d.cfg.HaveInterval)
	defer refresh.Stop()
	// stall fires when blocks are in flight and none has come back for
	// RequestTimeout: a slow peer still answers some, a dead or hostile
	// one none, and its pieces would wait for endgame.
	stall := time.NewTimer(dl.d.cfg.RequestTimeout)
	defer stall.Stop()
	failures := 0
	// Short of budget, the loop also wakes when buffers are given back
	// (budgetC); otherwise it does not listen, or every release would wake
	// every loop of every download.
	var budgetC <-chan struct{}
	// A block answered busy (mesh.ErrBusy) holds the next requests back
	// for busyWait, doubling while the peer stays busy: it is slow for
	// now, not failing.
	busyT := time.NewTimer(time.Hour)
	busyT.Stop()
	defer busyT.Stop()
	var busyC <-chan time.Time
	var busyWait time.Duration
	// batch are answers checked together (sumSpans); held are span
	// answers kept back, for at most holdMax, to be checked with the next
	// answer (holdSpans).
	var batch, held []blockResult
	holdT := time.NewTimer(time.Hour)
	holdT.Stop()
	defer holdT.Stop()
	var holdC <-chan time.Time
	// check checks and writes the answers of batch; an error ends the
	// peer's part.
	check := func(batch []blockResult) error {
		if t := dl.d.trace; t != nil {
			defer func(t0 time.Time) { t.checkNs.Add(int64(time.Since(t0))) }(time.Now())
		}
		sums := dl.sumSpans(p, batch)
		for i, r := range batch {
			var rs []MD5
			if sums != nil {
				rs = sums[i]
			}
			err := dl.onBlock(p, r, &pipe, rs)
			switch {
			case err == nil:
				if r.err == nil {
					failures = 0
					busyWait = 0
				}
			case errors.Is(err, mesh.ErrBusy):
				if busyC == nil { // the answers to one burst count once
					busyWait = min(max(2*busyWait, busyFirstWait), busyMaxWait)
					busyT.Reset(busyWait)
					busyC = busyT.C
				}
			case errors.Is(err, errBanned) || errors.Is(err, mesh.ErrNotConnected) || errors.Is(err, mesh.ErrClosed):
				return err
			default:
				if failures++; failures >= 3 {
					return err
				}
			}
		}
		return nil
	}
	// sent are the requests in flight for whole pieces (a span, or a
	// block of a whole piece), by attempt: the one that holds the first
	// missing piece may be asked again (hedge). front is where the look
	// for the first missing piece starts.
	sent := make(map[*attempt]*sentRequest)
	front := 0
	hedgeT := time.NewTimer(time.Hour)
	hedgeT.Stop()
	defer hedgeT.Stop()
	var hedgeC <-chan time.Time
	// send asks for the block req of the attempts as.
	send := func(as []*attempt, req blockReq) {
		inflight++
		inflightB += int64(req.Len)
		proto := ProtoBlock
		if len(as) > 1 {
			proto = ProtoSpan
		}
		if t := dl.d.trace; t != nil {
			t.firstSent.CompareAndSwap(0, time.Now().UnixNano())
			t.sent.Add(1)
			t.sentB.Add(int64(req.Len))
		}
		go func() {
			start := time.Now()
			data, err := node.Request(as[0].ctx, id, proto, encodeBlockReq(req), mesh.OverBulk())
			results <- blockResult{as: as, req: req, data: data, err: err, took: time.Since(start)}
		}()
	}
	// fill requests blocks while the window has room; dl.mu is held.
	fill := func() {
		for busyC == nil && inflight < maxRequests && (inflight == 0 || inflightB < pipe.window) {
			as, req, ok, short := dl.nextBlock(ctx, p, &pipe, false)
			if short != nil {
				budgetC = short
				if t := dl.d.trace; t != nil {
					t.short.Add(1)
				}
			}
			if !ok {
				break
			}
			send(as, req)
			if req.Off == 0 && (len(as) > 1 || int64(req.Len) == dl.man.PieceLen(as[0].piece)) {
				sr := &sentRequest{as: as, req: req, at: time.Now()}
				for _, a := range as {
					sent[a] = sr
				}
			}
		}
		if p.wait.queued && inflight > 0 && (inflight >= maxRequests || inflightB >= pipe.window) {
			// The window filled (with blocks of a piece it had) while
			// this loop waits in the budget's line. It still asks at
			// each release and takes the piece when its turn comes, the
			// blocks going out as the window opens: otherwise it would
			// ask only when an answer comes, seconds apart from a slow
			// or hostile peer, and the line, every download's, would
			// wait on it.
			if _, _, _, short := dl.nextBlock(ctx, p, &pipe, true); short != nil {
				budgetC = short
			}
		}
	}
	// hedge asks again for the first missing piece when this peer's
	// request for it is late (hedgeAfter), once, and sets hedgeC for when
	// it will be; dl.mu is held.
	hedge := func() {
		hedgeT.Stop()
		hedgeC = nil
		for front < dl.man.NumPieces() && dl.have.Has(front) {
			front++
		}
		a := p.attempts[front]
		sr := sent[a]
		after := hedgeAfter(&pipe)
		if a == nil || sr == nil || sr.hedged || busyC != nil {
			return
		}
		if wait := time.Until(sr.at.Add(after)); wait > 0 {
			hedgeT.Reset(wait)
			hedgeC = hedgeT.C
			return
		}
		sr.hedged = true
		dl.d.hedges.Add(1)
		send(sr.as, sr.req)
	}
	for {
		dl.mu.Lock()
		budgetC = nil
		dl.yield(p)
		fill()
		hedge()
		changed, complete := dl.changed, dl.complete()
		reading := len(dl.readers) > 0
		dl.mu.Unlock()
		if complete && inflight == 0 {
			return nil
		}
		var idle time.Time
		if t := dl.d.trace; t != nil {
			t.loops.Add(1)
			t.inflight.Store(int64(inflight))
			t.infB.Store(inflightB)
			t.window.Store(pipe.window)
			t.rate.Store(int64(pipe.rate))
			t.block.Store(pipe.block)
			t.held.Store(int64(len(held)))
			if inflight == 0 {
				idle = time.Now()
			}
		}
		if reading && len(held) > 0 {
			// A reader (a seek, playback, the gallery) may wait on a
			// held piece: it is checked now, not after holdMax. No
			// span is asked for while a reader reads (nextBlock), so
			// none is held after this one.
			holdT.Stop()
			holdC = nil
			batch, held = held, nil
			if err := check(batch); err != nil {
				return err
			}
			clear(batch)
			batch = batch[:0]
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-stall.C:
			if inflight > 0 {
				return fmt.Errorf("%w: %s, %d in flight", errStalled, id.Short(), inflight)
			}
			stall.Reset(dl.d.cfg.RequestTimeout)
		case r := <-results:
			if t := dl.d.trace; t != nil {
				if !idle.IsZero() {
					t.idleNs.Add(int64(time.Since(idle)))
				}
			}
			// The answers in already are taken with it, so that their
			// pieces are checked in the SIMD lanes together (sumSpans).
			fresh := append(batch[:0], r)
		more:
			for len(fresh) < maxSpanBatch {
				select {
				case r := <-results:
					fresh = append(fresh, r)
				default:
					break more
				}
			}
			answered := false
			for _, r := range fresh {
				inflight--
				inflightB -= int64(r.req.Len)
				if t := dl.d.trace; t != nil {
					t.got.Add(1)
					t.gotB.Add(int64(len(r.data)))
					t.took(r.took)
					if r.err != nil {
						t.errs.Add(1)
					}
				}
				answered = answered || r.err == nil
				for _, a := range r.as {
					delete(sent, a)
				}
			}
			stall.Reset(dl.d.cfg.RequestTimeout)
			if answered {
				// The next requests go out before these blocks are
				// checked and written (two MD5s and a write of a
				// piece), so the link does not wait on them.
				dl.mu.Lock()
				fill()
				dl.mu.Unlock()
			}
			batch = append(held, fresh...)
			held = nil
			if holdSpans(batch, inflight, &pipe) {
				held, batch = batch, nil
				if holdC == nil {
					holdT.Reset(holdMax)
					holdC = holdT.C
				}
				continue
			}
			holdT.Stop()
			holdC = nil
			if err := check(batch); err != nil {
				return err
			}
			clear(batch) // the answers' bytes are not kept past their turn
			batch = batch[:0]
		case <-holdC: // the next answer is late: the held ones go alone
			holdC = nil
			batch, held = held, nil
			if err := check(batch); err != nil {
				return err
			}
			clear(batch)
			batch = batch[:0]
		case <-busyC:
			busyC = nil
		case <-hedgeC: // hedge, at the loop's top
			hedgeC = nil
		case <-refresh.C:
			dl.mu.Lock()
			clear(p.gaveUp) // the faster peer may have gone
			dl.mu.Unlock()
			if dl.peerComplete(p) {
				continue
			}
			// The peer may take RequestTimeout to answer: not in the
			// budget's line meanwhile, where no one behind would be served.
			dl.d.budget.leave(&p.wait)
			if has, err = dl.askHave(ctx, id); errors.Is(err, mesh.ErrBusy) {
				continue // busy all along: what it held it still holds
			} else if err != nil {
				return err
			}
			dl.mu.Lock()
			dl.setPeerHave(p, has)
			dl.mu.Unlock()
		case <-changed:
		case <-budgetC:
		}
	}
}

// peerComplete reports whether p holds every piece.
func (dl *download) peerComplete(p *peer) bool {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	return p.has.Count() == dl.man.NumPieces()
}

// askHave asks a peer what it holds of the resource.
func (dl *download) askHave(ctx context.Context, id mesh.ID) (Bitfield, error) {
	ctx, cancel := context.WithTimeout(ctx, dl.d.cfg.RequestTimeout)
	defer cancel()
	start := time.Now()
	b, err := requestPatient(ctx, dl.d.node, id, ProtoHave, dl.id[:])
	if err == nil {
		dl.d.budget.observe(time.Since(start), time.Now())
	}
	if err != nil {
		var re *mesh.RemoteError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("%w: %w", errNoPieces, err)
		}
		return nil, err
	}
	dl.mu.Lock()
	n := dl.man.NumPieces()
	dl.mu.Unlock()
	has, err := decodeHave(b, n)
	if err != nil {
		dl.d.node.Penalize(id, "bad have")
		return nil, err
	}
	if has.Count() == 0 {
		// It knows the manifest and holds nothing: it downloads too.
		dl.mu.Lock()
		dl.sawSwarm = true
		dl.mu.Unlock()
		return nil, errNoPieces
	}
	return has, nil
}

// setPeerHave replaces what p holds in the availability counts; dl.mu is
// held.
func (dl *download) setPeerHave(p *peer, has Bitfield) {
	n := dl.man.NumPieces()
	if p.has != nil && p.has.Count() < n {
		dl.partial--
	}
	if has != nil && has.Count() < n {
		dl.partial++
	}
	for i := range dl.avail {
		if p.has.Has(i) {
			dl.avail[i]--
		}
		if has.Has(i) {
			dl.avail[i]++
		}
	}
	p.has = has
	dl.signal()
}

// nextBlock returns the next block p should request, of the size its
// pipeline says: the next block of a piece p is fetching, else the first of
// a piece the picker chooses. A piece a reader needs (critical) goes before
// the rest of one it does not: on a slow peer the rest of a large piece
// would otherwise hold a seek up for as long as it takes to send. wait is
// set when a new piece did not fit the budget; the caller waits on it.
// claimOnly takes a new piece's bytes, if one is wanted, and requests
// nothing; a piece taken so and not yet requested is enough. A block the
// pipeline wants larger than a whole new piece runs on into the pieces
// after it (span). dl.mu is held.
func (dl *download) nextBlock(ctx context.Context, p *peer, pipe *pipeline, claimOnly bool) (as []*attempt, req blockReq, ok bool, wait <-chan struct{}) {
	var a *attempt
	if dl.state != StateDownloading {
		dl.d.budget.leave(&p.wait)
		return nil, blockReq{}, false, nil
	}
	if claimOnly {
		for _, x := range p.attempts {
			if x.next == 0 {
				dl.d.budget.leave(&p.wait)
				return nil, blockReq{}, false, nil
			}
		}
	}
	var readers []int
	critical := 0
	if len(dl.readers) > 0 {
		readers = slices.Collect(maps.Values(dl.readers))
		critical = int((dl.d.cfg.Readahead + dl.man.PieceSize - 1) / dl.man.PieceSize)
	}
	isCritical := func(i int) bool {
		_, ok := criticalDistance(i, readers, critical)
		return ok
	}
	aCritical := false
	for _, x := range p.attempts {
		if x.next >= dl.man.PieceLen(x.piece) {
			continue
		}
		c := isCritical(x.piece)
		if a == nil || c && !aCritical || c == aCritical && x.piece < a.piece {
			a, aCritical = x, c
		}
	}
	if a != nil && (len(readers) == 0 || aCritical) {
		// No new piece is asked for (a reader that wanted one has gone):
		// out of the budget's line, which would wait on this loop.
		dl.d.budget.leave(&p.wait)
	} else {
		pf := pickFor{has: p.has, busy: func(i int) bool { return p.attempts[i] != nil || p.gaveUp[i] },
			readers: readers, critical: critical, seed: dl.tieSeed, swarm: dl.partial > 0 || dl.sawSwarm,
			noEndgame: dl.d.budget.isSlow(p.id)}
		i, _, picked := pick(dl, pf)
		if !picked && dl.takeCrowded(p) {
			i, _, picked = pick(dl, pf)
		}

		if !picked || a != nil && !isCritical(i) {
			dl.d.budget.leave(&p.wait) // nothing to wait for
		} else if wait = dl.d.budget.wait(); len(dl.peers) > 1 && dl.d.budget.yields(p.id) {
			// A peer found far slower than another (yield): while the
			// download has another peer, other peers' loops go first, or
			// the bytes its pieces gave back would come back to it.
			dl.d.budget.leave(&p.wait)
		} else {
			// wait was taken before trying, so that a release in between
			// is not missed.
			if size := dl.man.PieceSize; dl.d.budget.tryAcquire(&p.wait, size) {
				wait = nil
				a = &attempt{piece: i, charged: size, peer: p.id, start: time.Now()}
				a.ctx, a.cancel = context.WithCancel(ctx)
				p.attempts[i] = a
				dl.tries[i]++
				dl.d.budget.track(a, dl.man.PieceLen(i), false)
			}
		}
		if a == nil || claimOnly {
			return nil, blockReq{}, false, wait
		}
	}
	if claimOnly {
		return nil, blockReq{}, false, nil
	}
	n := min(pipe.block, dl.man.PieceLen(a.piece)-a.next)
	req = blockReq{ID: dl.id, Piece: uint32(a.piece), Off: uint32(a.next), Len: uint32(n)}
	as = []*attempt{a}
	if a.next == 0 && n < pipe.block && !p.noSpan && len(readers) == 0 {
		as = dl.span(ctx, p, a, pipe.block)
		for _, x := range as[1:] {
			n += dl.man.PieceLen(x.piece)
		}
		req.Len = uint32(n)
	}
	if len(as) == 1 {
		a.next += n
	} else {
		a.next = dl.man.PieceLen(a.piece)
	}
	return as, req, true, wait
}

// span returns a, a new piece to be fetched whole in one block, and the
// pieces after it that the same block can fetch too (ProtoSpan): whole
// pieces, up to size bytes in all, that p holds and no one fetches, as long
// as the budget has their bytes without waiting (they are worth taking, not
// worth waiting for). The pieces of a span share one request: it is
// cancelled once all of them are dropped. dl.mu is held.
func (dl *download) span(ctx context.Context, p *peer, a *attempt, size int64) []*attempt {
	as := []*attempt{a}
	total := dl.man.PieceLen(a.piece)
	for i := a.piece + 1; i < dl.man.NumPieces() && total+dl.man.PieceLen(i) <= size; i++ {
		if dl.have.Has(i) || !p.has.Has(i) || dl.tries[i] > 0 || p.attempts[i] != nil || p.gaveUp[i] {
			break
		}
		if !dl.d.budget.tryMore(&p.wait, dl.man.PieceSize) {
			break
		}
		x := &attempt{piece: i, charged: dl.man.PieceSize, next: dl.man.PieceLen(i), peer: p.id, start: a.start}
		p.attempts[i] = x
		dl.tries[i]++
		dl.d.budget.track(x, dl.man.PieceLen(i), true)
		as = append(as, x)
		total += dl.man.PieceLen(i)
	}
	if len(as) == 1 {
		return as
	}
	dl.d.budget.spanned(a)
	a.cancel()
	sr := &spanRequest{}
	var sctx context.Context
	sctx, sr.cancel = context.WithCancel(ctx)
	sr.left.Store(int32(len(as)))
	for _, x := range as {
		var once sync.Once
		x.ctx, x.cancel = sctx, func() { once.Do(sr.drop) }
	}
	return as
}

// spanRequest is the request of a span: its attempts' cancel each drop
// one, and the last one dropped cancels it.
type spanRequest struct {
	cancel context.CancelFunc
	left   atomic.Int32
}

func (sr *spanRequest) drop() {
	if sr.left.Add(-1) == 0 {
		sr.cancel()
	}
}

// slowFactor: a piece is given up when its peer would take more than
// slowFactor times as long to finish it as another peer of the download
// that has it takes for a whole piece.
const slowFactor = 8

// yield gives back the pieces p should not keep. Once a loop of another
// peer has waited in the budget's line for a quarter of RequestTimeout:
// those past p's share of the budget (budget.shed), least advanced first,
// and those p fetches far slower than another peer of this download would
// (slower). In endgame, a piece that has maxAttempts attempts already, one
// of them p's, when p is far slower than a peer that is not fetching it:
// that peer could not take it otherwise. The bytes go to the line and the
// pieces back to the picker, for another peer to take (p leaves them be
// until its next have refresh). Otherwise a holder that answers just
// inside RequestTimeout keeps its pieces' buffers for as long as it likes,
// a few such holders starve every download on the node, and three of them
// hold a download's last piece. dl.mu is held.
func (dl *download) yield(p *peer) {
	if len(p.attempts) == 0 {
		return
	}
	b, patience := dl.d.budget, dl.d.cfg.RequestTimeout/4
	starved := b.starved(p.id, patience)
	crowded := false // a piece of p's has maxAttempts attempts
	evicted := false // the budget took one back (budget.evictLocked)
	for i, a := range p.attempts {
		crowded = crowded || dl.tries[i] >= maxAttempts
		evicted = evicted || a.evicted.Load()
	}
	if !starved && !crowded && !evicted {
		return
	}
	now := time.Now()
	as := slices.SortedFunc(maps.Values(p.attempts), func(x, y *attempt) int { return cmp.Compare(x.got, y.got) })
	dropped := false
	for _, a := range as {
		switch {
		case a.evicted.Load(): // the budget took it back (evict)
		case starved && b.shed(a, patience):
			a.charged = 0 // given back by shed
		case (starved || dl.tries[a.piece] >= maxAttempts) && dl.slower(p, a, now):
			p.gaveUp[a.piece] = true
			b.markSlow(p.id)
		default:
			continue
		}
		dl.dropAttempt(p, a, true)
		dropped = true
	}
	if dropped {
		dl.signal()
	}
}

// takeCrowded makes room for p in endgame: a piece p holds and is not
// fetching, that has maxAttempts attempts already, loses one of a peer
// far slower than p (slower) or overdue by the budget's measure, which
// gives it up until its next have refresh and is marked slow (and so
// takes no endgame pieces: pickFor.noEndgame). It reports whether it
// dropped one. Otherwise
// slow peers keep a download's last pieces: in endgame every loop of the
// download takes one, and thirty trickling holders, each giving up its
// attempt only when its own loop next runs (a trickled block, seconds
// apart), held the last piece from an honest holder for 40 s. dl.mu is
// held.
func (dl *download) takeCrowded(p *peer) bool {
	now := time.Now()
	for k := range dl.man.NumPieces() {
		if dl.tries[k] < maxAttempts || dl.have.Has(k) || !p.has.Has(k) || p.attempts[k] != nil || p.gaveUp[k] {
			continue
		}
		for _, q := range dl.peers {
			if o := q.attempts[k]; q != p && o != nil && (dl.slower(q, o, now) || dl.d.budget.isOverdue(o, now)) {
				dl.dropAttempt(q, o, false)
				q.gaveUp[k] = true
				dl.d.budget.markSlow(q.id)
				dl.signal()
				return true
			}
		}
	}
	return false
}

// slower reports whether p would take far longer to finish a (at the rate
// it has gone so far) than another peer of the download that has the piece
// and is not fetching it takes for a whole one (at its pipeline's rate); a
// peer not yet measured is taken to need RequestTimeout, so that it gets
// its turn. dl.mu is held.
func (dl *download) slower(p *peer, a *attempt, now time.Time) bool {
	n := float64(dl.man.PieceLen(a.piece))
	elapsed := now.Sub(a.start).Seconds()
	left := math.Inf(1)
	if a.got > 0 {
		left = elapsed * (n - float64(a.got)) / float64(a.got)
	}
	for _, q := range dl.peers {
		if q == p || !q.has.Has(a.piece) || q.attempts[a.piece] != nil {
			continue
		}
		ref := dl.d.cfg.RequestTimeout.Seconds()
		if q.rate > 0 {
			ref = slowFactor * n / q.rate
		}
		if elapsed > ref && left > ref {
			return true
		}
	}
	return false
}

// endAttempt takes an attempt off its peer and cancels its requests; its
// buffer is the caller's to give back. dl.mu is held.
func (dl *download) endAttempt(p *peer, a *attempt) bool {
	if p.attempts[a.piece] != a {
		return false
	}
	delete(p.attempts, a.piece)
	dl.tries[a.piece]--
	a.cancel()
	return true
}

// dropAttempt ends an attempt and gives its buffer's bytes back to the
// budget. When the peer's own loop drops it (owner), the buffer is reused;
// another peer's loop (an endgame winner) leaves the buffer to the garbage
// collector, since the owner may be copying a block into it. dl.mu is held.
func (dl *download) dropAttempt(p *peer, a *attempt, owner bool) {
	if !dl.endAttempt(p, a) {
		return
	}
	if owner && a.buf != nil {
		dl.bufs.Put(a.buf)
	}
	dl.giveBack(a)
}

// giveBack returns an attempt's buffer bytes to the budget, once.
func (dl *download) giveBack(a *attempt) {
	dl.d.budget.release(a)
	a.charged = 0
}

// onBlock takes one block answer from p. A piece whose blocks are all in is
// checked: a good one is written, a bad one scores the peer down and is
// fetched again, from others once the peer is banned. A span's pieces are
// each checked in the answer itself (against sums, their MD5s from the
// SIMD lanes, if not nil: see sumSpans) and written (onSpan).
func (dl *download) onBlock(p *peer, r blockResult, pipe *pipeline, sums []MD5) error {
	dl.mu.Lock()
	live := slices.ContainsFunc(r.as, func(a *attempt) bool { return p.attempts[a.piece] == a })
	m := dl.man
	dl.mu.Unlock()
	if !live { // another peer finished the pieces first, or the attempt failed
		return nil
	}
	if r.err != nil {
		noSpan := r.span() && errors.Is(r.err, mesh.ErrNoHandler)
		dl.mu.Lock()
		dl.dropAll(p, r.as)
		p.noSpan = p.noSpan || noSpan
		dl.signal()
		dl.mu.Unlock()
		if noSpan || r.as[0].evicted.Load() {
			// A node that predates ProtoSpan: asked piece by piece from
			// now on, and not counted a failure. Or the budget took the
			// piece back for others (evict): slow, not failing.
			return nil
		}
		return r.err
	}
	if len(r.data) != int(r.req.Len) {
		dl.d.node.Penalize(p.id, "block of the wrong size")
		dl.mu.Lock()
		dl.dropAll(p, r.as)
		dl.signal()
		dl.mu.Unlock()
		return dl.offence(p, fmt.Errorf("%w: block of %d bytes, asked for %d", ErrBadFrame, len(r.data), r.req.Len))
	}
	now := time.Now()
	pipe.observe(len(r.data), r.took, now)
	dl.mu.Lock()
	dl.rate.add(len(r.data), now)
	p.rate = pipe.rate
	dl.mu.Unlock()
	dl.publish(false)
	if r.span() {
		return dl.onSpan(p, r, m, sums)
	}
	a := r.as[0]
	n := m.PieceLen(a.piece)
	data := r.data
	if r.req.Off != 0 || int64(len(data)) != n {
		// One block of several: assembled in the attempt's buffer,
		// taken at its first block, so that an attempt that brought
		// nothing (a trickler's, evicted) holds none. Only p's loop
		// touches a.buf.
		if a.buf == nil {
			a.buf = dl.bufs.Get().(*[]byte)
		}
		buf := *a.buf
		copy(buf[r.req.Off:], r.data)
		data = buf[:n]
	}
	dl.mu.Lock()
	a.got += int64(len(r.data))
	prev := a.start
	if l := a.last.Load(); l != 0 {
		prev = time.Unix(0, l)
	}
	a.gap = max(a.gap, now.Sub(prev))
	a.recv.Add(int64(len(r.data)))
	a.last.Store(now.UnixNano())
	whole := a.got == n
	dl.mu.Unlock()
	if !whole {
		return nil
	}
	return dl.checkPiece(p, a, m, data, m.Verify(a.piece, data))
}

// onSpan checks each piece of a span answer (ProtoSpan) in the answer
// itself, against sums when not nil, and writes the good ones: a run of
// consecutive good pieces in one write (commitRun), not a write a piece.
// A bad piece scores p down and is fetched again.
func (dl *download) onSpan(p *peer, r blockResult, m *Manifest, sums []MD5) error {
	var err error
	var run []*attempt // good pieces, consecutive, not yet written
	var runData []byte // their bytes: a slice of r.data
	flush := func() {
		if len(run) == 0 {
			return
		}
		if e := dl.commitRun(p, run, runData); e != nil {
			err = e
		}
		run, runData = nil, nil
	}
	pos := int64(0)
	for k, a := range r.as {
		n := m.PieceLen(a.piece)
		data := r.data[pos : pos+n]
		pos += n
		dl.mu.Lock()
		live := p.attempts[a.piece] == a
		if live {
			a.got = n
		}
		dl.mu.Unlock()
		if !live {
			flush()
			continue
		}
		if sums != nil && sums[k] == m.Pieces[a.piece] || sums == nil && m.Verify(a.piece, data) {
			if run == nil {
				runData = data
			} else {
				runData = runData[:int64(len(runData))+n] // data follows it in r.data
			}
			run = append(run, a)
			continue
		}
		flush()
		if e := dl.checkPiece(p, a, m, data, false); e != nil {
			err = e
			if errors.Is(e, errBanned) {
				dl.mu.Lock()
				dl.dropAll(p, r.as)
				dl.mu.Unlock()
				return e
			}
		}
	}
	flush()
	return err
}

// spanLanes is the fewest pieces of span answers (ProtoSpan) that are
// checked in SIMD lanes (sumSpans) rather than one after the other with
// crypto/md5: a span holds at most BlockSize/MinPieceSize = 4, and four
// 64 KiB pieces took 232 µs in lanes against 333 µs (AVX-512, the
// machine of BENCHMARKS.md's figures). The piece MD5 and the whole
// file's were most of what a downloaded byte cost above the link's.
const spanLanes = 4

// sentRequest is a request for whole pieces in flight (fetchFrom): what
// to send again if it is late, when it went out, and whether it was sent
// again (hedged) already.
type sentRequest struct {
	as     []*attempt
	req    blockReq
	at     time.Time
	hedged bool
}

// hedgeAfter is how long a request for the first missing piece may be in
// flight before it is sent again: hedgeFactor times the time the peer
// takes to send a full window at its rate, the longest an answer waits
// behind the others, and at least hedgeMin; until a rate is known,
// hedgeFactor times the time a block is sized to take (blockTime). The
// answer that comes first is taken, the other dropped (its attempts have
// ended).
//
// An answer lost on the link is resent by SCTP, by fast retransmit or, if
// that is lost too, on the retransmission timer: at least 1 s in
// pion/sctp, doubling. Over WebRTC on loopback one 256 KiB answer of a few
// hundred took 4.5-5.7 s (the bulk channel is ordered by default, so the
// answers behind it waited too); the whole-file MD5 waited at that piece and then
// hashed up to 1,500 pieces (400 ms on one core) at once, and when the
// piece was among the last, the download waited for it: with one holder
// endgame has no other peer to ask (BENCHMARKS.md, good5). Only the first
// missing piece is asked again, so at most one request a peer is
// duplicated at a time.
//
// Only a request for whole pieces is sent again: a block of a piece
// fetched in several is not, since its second answer would be counted
// again in the attempt's bytes (onBlock: a.got) and the piece checked
// before all of it came. So a file over TargetPieces*BlockSize (512 MiB:
// its pieces are larger than a block) and a peer slow enough that its
// blocks are smaller than a piece (pipeline.block) are not hedged: a lost
// answer there still waits for SCTP's retransmission.
func hedgeAfter(pipe *pipeline) time.Duration {
	if pipe.rate == 0 {
		return hedgeFactor * pipe.blockTime
	}
	return max(hedgeMin, hedgeFactor*pipe.sendTime(pipe.window))
}

const (
	hedgeFactor = 4
	hedgeMin    = 250 * time.Millisecond
)

// maxSpanBatch bounds the answers sumSpans checks in one go: four spans
// of four pieces fill the 16 lanes of AVX-512.
const maxSpanBatch = 4

// holdMax bounds how long span answers are held back (holdSpans) for the
// next one to be checked with: a span of 256 KiB takes 25 ms at 10 MB/s.
// Never while a reader reads (fetchFrom). A var for tests only.
var holdMax = 25 * time.Millisecond

// holdSpans reports whether the answers of batch should wait for the next
// answer of the peer, to be checked in the SIMD lanes with it (sumSpans):
// they are all whole spans, too few pieces to fill the lanes' rounds
// (2*spanLanes, which cost as much as spanLanes), more answers are on
// their way (inflight), and at the peer's rate (if known) the next comes
// within half of holdMax. Over a WebRTC link the answers come one by one, a span every
// few milliseconds, and each checked alone cost twice the CPU a byte in
// the lanes (BenchmarkDownloadGoodput: 554 of 572 batches were of one
// answer). Only the check waits: the next requests went out already.
func holdSpans(batch []blockResult, inflight int, pipe *pipeline) bool {
	if inflight == 0 {
		return false
	}
	pieces := 0
	for _, r := range batch {
		if r.err != nil || !r.span() || len(r.data) != int(r.req.Len) || r.req.Off != 0 {
			return false
		}
		pieces += len(r.as)
	}
	// Until the rate is known (slow start, the first quarter second)
	// a span is held too: blocks span pieces only once the window has
	// grown to several, and holdMax bounds the wait.
	return pieces < 2*spanLanes && 2*pipe.sendTime(BlockSize) <= holdMax
}

// sumSpans returns the MD5s of the pieces of each span answer in batch
// (nil for the others, and for all when they are too few to fill the
// lanes), every piece written to the lanes before any is summed: the
// lanes cost about as much a round with four pieces in as with eight
// (md5-simd fills 8 lanes, or 16 with AVX-512), so the answers that came
// in together are checked together, at half the CPU a byte or less of
// checking each span on its own (BenchmarkDownloadPath).
func (dl *download) sumSpans(p *peer, batch []blockResult) [][]MD5 {
	// The span answers still wanted, whole, from the first byte of
	// their first piece: their pieces are consecutive, all PieceSize but
	// the file's last.
	runs := make([][]byte, len(batch))
	pieces := 0
	dl.mu.Lock()
	m := dl.man
	for i, r := range batch {
		if r.err == nil && r.span() && len(r.data) == int(r.req.Len) && r.req.Off == 0 &&
			slices.ContainsFunc(r.as, func(a *attempt) bool { return p.attempts[a.piece] == a }) {
			runs[i] = r.data
			pieces += len(r.as)
		}
	}
	dl.mu.Unlock()
	if pieces < spanLanes {
		return nil
	}
	l := dl.d.lanes.Load()
	if !l.acquire() {
		return nil
	}
	defer l.release()
	dl.d.lanePieces.Add(int64(pieces))
	if pieces >= 2*spanLanes {
		dl.d.lanePaired.Add(int64(pieces))
	}
	return l.sumRuns(runs, m.PieceSize)
}

// checkPiece takes the whole piece of a, good if it matched the manifest:
// a good one is written, a bad one drops a and counts an offence of p's.
func (dl *download) checkPiece(p *peer, a *attempt, m *Manifest, data []byte, good bool) error {
	if !good {
		dl.d.node.Penalize(p.id, "corrupt piece")
		dl.mu.Lock()
		dl.dropAttempt(p, a, true)
		dl.signal()
		dl.mu.Unlock()
		return dl.offence(p, fmt.Errorf("%w: piece %d from %s", ErrCorrupt, a.piece, p.id.Short()))
	}
	return dl.commit(p, a, data)
}

// dropAll drops those of as that are still p's; dl.mu is held.
func (dl *download) dropAll(p *peer, as []*attempt) {
	for _, a := range as {
		dl.dropAttempt(p, a, true)
	}
}

// offence counts a bad piece from p and bans p for this resource after
// MaxBadPieces of them.
func (dl *download) offence(p *peer, err error) error {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	dl.bad[p.id]++
	dl.d.log.Warn("bad piece from a peer", "id", dl.id, "peer", p.id.Short(), "err", err)
	if dl.bad[p.id] >= dl.d.cfg.MaxBadPieces {
		dl.banned[p.id] = true
		return fmt.Errorf("%w: %v", errBanned, err)
	}
	return err
}

// commit writes a verified piece at its offset and records it.
func (dl *download) commit(p *peer, a *attempt, data []byte) error {
	return dl.commitRun(p, []*attempt{a}, data)
}

// commitRun writes verified pieces of p's, consecutive (as in piece order,
// data their bytes end to end), at their offset and records them. The
// pieces not held yet go out in one write for each run of them: one
// system call for a span, not one a piece.
func (dl *download) commitRun(p *peer, as []*attempt, data []byte) error {
	f, err := dl.openFile()
	if err != nil {
		return err
	}
	dl.mu.Lock()
	m := dl.man
	dl.mu.Unlock()
	base := m.PieceOffset(as[0].piece)
	for i := 0; i < len(as); {
		dl.mu.Lock()
		for i < len(as) && dl.have.Has(as[i].piece) {
			i++
		}
		j := i
		for j < len(as) && !dl.have.Has(as[j].piece) {
			j++
		}
		dl.mu.Unlock()
		if i == j {
			break
		}
		from := m.PieceOffset(as[i].piece) - base
		to := m.PieceOffset(as[j-1].piece) + m.PieceLen(as[j-1].piece) - base
		if _, err := f.WriteAt(data[from:to], base+from); err != nil {
			dl.mu.Lock()
			dl.dropAll(p, as)
			dl.mu.Unlock()
			return fmt.Errorf("shards: write pieces %d-%d: %w", as[i].piece, as[j-1].piece, err)
		}
		if dl.unstarted.Add(to-from) >= writebackBytes {
			dl.unstarted.Store(0)
			if err := startWriteback(f); err != nil {
				dl.d.log.Warn("writeback of a partial download", "id", dl.id, "err", err)
			}
		}
		if h := dl.d.afterWrite; h != nil {
			for _, a := range as[i:j] {
				off := m.PieceOffset(a.piece) - base
				h(dl.id, a.piece, data[off:off+m.PieceLen(a.piece)])
			}
		}
		i = j
	}
	dl.mu.Lock()
	// The buffers go back to the pool only after hashAhead has read them.
	for _, a := range as {
		dl.endAttempt(p, a)
		if dl.have.Has(a.piece) {
			continue
		}
		n := m.PieceLen(a.piece)
		dl.have.Set(a.piece)
		dl.haveBytes += n
		dl.sources[p.id] += n
		took := time.Since(a.start)
		dl.d.budget.pieceDone(p.id, took, cmp.Or(a.gap, took)) // a span's piece came in one block
		// Endgame: the other peers fetching this piece stop.
		for _, q := range dl.peers {
			if o := q.attempts[a.piece]; o != nil {
				dl.dropAttempt(q, o, false)
			}
		}
		select {
		case dl.dirty <- struct{}{}:
		default:
		}
	}
	dl.signal()
	dl.mu.Unlock()
	err = dl.hashAhead(f, as[0].piece, data)
	for _, a := range as {
		if a.buf != nil {
			dl.bufs.Put(a.buf)
		}
		dl.giveBack(a)
	}
	dl.publish(false)
	return err
}

// writebackBytes is how many bytes a download writes to its part file
// before it starts their writeback (startWriteback): the sync before done
// then waits for at most about this much. A 64 MiB download on loopback
// took 20-50 ms from its last piece to done, most of it that sync and the
// commit's before it, 3-6 % of the download (BenchmarkDownloadGoodput).
const writebackBytes = 4 << 20

// hashAhead feeds the whole-file MD5 with the verified pieces that follow
// what it has hashed so far, in order: the piece just verified from memory,
// others (out of order, or found by recheck) read back from f. Pieces mostly
// arrive in order, so the check of the finished file costs almost nothing
// at the end, and a large file is not read back whole. data holds the
// pieces from piece on, end to end (one, or a run of a span's).
func (dl *download) hashAhead(f *os.File, piece int, data []byte) error {
	dl.hashMu.Lock()
	defer dl.hashMu.Unlock()
	if dl.whole == nil {
		dl.whole, dl.hashed = md5.New(), 0
	}
	var buf []byte
	for {
		dl.mu.Lock()
		next := dl.hashed
		ok := dl.man != nil && next < dl.man.NumPieces() && dl.have.Has(next)
		var off, n, base int64
		if ok {
			off, n = dl.man.PieceOffset(next), dl.man.PieceLen(next)
			if piece >= 0 {
				base = dl.man.PieceOffset(piece)
			}
		}
		dl.mu.Unlock()
		if !ok {
			return nil
		}
		if piece >= 0 && next >= piece && off+n-base <= int64(len(data)) {
			dl.whole.Write(data[off-base : off+n-base])
		} else {
			if buf == nil {
				buf = make([]byte, n)
			}
			if _, err := f.ReadAt(buf[:n], off); err != nil {
				return fmt.Errorf("shards: hash piece %d: %w", next, err)
			}
			dl.d.hashReads.Add(1)
			dl.whole.Write(buf[:n])
		}
		dl.hashed++
	}
}

// pipeline paces one peer's block requests: how many bytes to keep
// requested and not yet answered (window), and how large each request is
// (block), from the rate of the peer's answers and the least time one took.
//
// The window covers the rate times a queue time of minQueueTime, or twice
// the least latency of a block when that is longer: a window of rate*T,
// with T above the round trip, keeps the link busy (it brings more than
// the link gives), and a faster link is found as the rate measured grows.
// On a fast link this reaches PeerWindow (or maxRequests blocks): SCTP
// needs several MiB outstanding on loopback. On a slow peer, where the
// least latency is about one block's sending time, it stays at two blocks,
// so a piece a reader seeks to waits behind about two blocks, not behind a
// queue of several hundred KiB (16 s at 32 KiB/s, when the depth was 8
// blocks whatever the rate). The least latency is taken over the
// pipeline's life, never from a window of answers only: with the queue
// full, every answer's latency is the queue's, and a window sized on that
// keeps the queue full and grows it.
//
// A block takes about blockTime at the measured rate (RequestTimeout/16, so
// 1.25 s by default), at most BlockSize: a peer that serves 8 KiB/s gets
// small blocks it answers well within RequestTimeout, where a 256 KiB block
// took 32 s and timed out every time. The block follows the lower of the
// last two rates, so one window that caught a burst does not queue large
// blocks.
//
// Until a rate is measured (the first firstRateWindow of answers) the
// pipeline starts small, firstBlock at a time, and grows the window by
// every byte answered, so it doubles each round trip (TCP's slow start),
// while the answers come within twice the least latency, or within
// slowStartJitter of it when that is more (HyStart's delay exit, with
// HyStart's floor: on loopback the least latency is a fraction of a
// millisecond, and the scheduling delays of a busy machine, which queue
// nothing, ended slow start at once; the window then stayed near 100 KiB
// until a rate was known, a second later, the whole of a 64 MiB download).
// The first rate is taken after firstRateWindow, sooner than the later
// ones, so that a window that slow start left short opens soon.
type pipeline struct {
	window, block int64
	maxWindow     int64
	blockTime     time.Duration
	baseLat       time.Duration // least latency of a block seen (see base)
	baseN         int64         // and the block's size
	winStart      time.Time     // the current rate window
	winBytes      int64
	rate          float64 // bytes/s over the last rate window; 0 until measured
	prevRate      float64 // and the one before
}

const (
	// maxRequests bounds the block requests in flight to one peer,
	// whatever the window: a node serves at most 32 requests of a link at
	// once (mesh.Config.MaxConcurrentRequests) and stops reading the link
	// beyond that, control messages too; 16 leaves room for a second
	// download and for the other protocols.
	maxRequests = 16
	// firstBlock is the block size before a peer's rate is known: at 1
	// KiB/s it still comes within the default RequestTimeout.
	firstBlock = 8 << 10
	// minBlock is the least block size: the frames around a block cost
	// about 100 bytes.
	minBlock = 4 << 10
	// minQueueTime is the least time the window covers at the peer's
	// rate.
	minQueueTime = 250 * time.Millisecond
	// rateWindow is how long answers are counted before a rate is taken.
	rateWindow = time.Second
	// firstRateWindow is how long the first rate is counted: slow start
	// until then.
	firstRateWindow = minQueueTime
	// slowStartJitter is the least rise of latency above the least one
	// that ends slow start: less is taken for scheduling delays.
	slowStartJitter = 20 * time.Millisecond
)

func newPipeline(maxWindow int64, timeout time.Duration) pipeline {
	return pipeline{window: 2 * firstBlock, block: firstBlock, maxWindow: max(maxWindow, 2*firstBlock),
		blockTime: timeout / 16}
}

// observe takes the answer to one block of n bytes, which took lat from
// request to answer.
func (p *pipeline) observe(n int, lat time.Duration, now time.Time) {
	if p.baseLat == 0 || p.latLess(lat, int64(n)) {
		p.baseLat, p.baseN = lat, int64(n)
	}
	// The answer that opens a rate window is not in it: its bytes came
	// over the time before.
	if p.winStart.IsZero() {
		p.winStart = now
	} else {
		p.winBytes += int64(n)
	}
	if d := now.Sub(p.winStart); d >= rateWindow || p.rate == 0 && d >= firstRateWindow {
		p.prevRate, p.rate = p.rate, float64(p.winBytes)/d.Seconds()
		p.winStart, p.winBytes = now, 0
	}
	if p.rate == 0 {
		// Slow start ends early once answers queue: on a slow peer the
		// window would otherwise grow for the whole first rate window.
		if lat < max(2*p.baseLat, p.baseLat+slowStartJitter) {
			p.window = min(p.maxWindow, p.window+int64(n))
			p.block = blockFor(p.window / 4)
		}
		return
	}
	slow := p.rate
	if p.prevRate > 0 {
		slow = min(slow, p.prevRate)
	}
	p.block = blockFor(int64(slow * p.blockTime.Seconds()))
	want := int64(p.rate * max(minQueueTime, 2*p.base()).Seconds())
	p.window = min(p.maxWindow, max(want, 2*p.block))
}

// sendTime is how long n bytes take at the measured rate; 0 until known.
func (p *pipeline) sendTime(n int64) time.Duration {
	if p.rate == 0 {
		return 0
	}
	return time.Duration(float64(n) / p.rate * float64(time.Second))
}

// base is the least latency seen less the block's own sending time at the
// rate now known: a slow peer's first blocks (8 s for 8 KiB at 1 KiB/s)
// would otherwise keep the least latency, and so the window, at that.
func (p *pipeline) base() time.Duration {
	return max(p.baseLat-p.sendTime(p.baseN), time.Microsecond)
}

// latLess reports whether an answer of n bytes after lat is quicker than
// the least one seen, each less its sending time.
func (p *pipeline) latLess(lat time.Duration, n int64) bool {
	return lat-p.sendTime(n) < p.baseLat-p.sendTime(p.baseN)
}

// blockFor is the block size nearest under n: a power of two from minBlock
// to BlockSize.
func blockFor(n int64) int64 {
	b := int64(minBlock)
	for b < BlockSize && 2*b <= n {
		b *= 2
	}
	return b
}
