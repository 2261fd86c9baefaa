package shards

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/pubsub"
	"github.com/catnest/catnest/internal/reslist"
	"github.com/catnest/catnest/mesh"
)

// resourceName is the service's entry in the node's directory record:
// {"count": N, "version": V} of its catalog.
const resourceName = "files"

// Config configures a Service.
type Config struct {
	// Node is the mesh node the service serves on and fetches through.
	Node Node
	// DB is the node's database; the service owns the buckets whose names
	// start with "shards/".
	DB *bbolt.DB
	// Dir is the node's data dir; downloads keep their pieces under
	// Dir/shards.
	Dir string
	// Folders are shared whole: every regular file under each is shared in
	// place and the tree is watched, so that added, changed, renamed and
	// deleted files update the catalog within about WatchDelay.
	Folders []string
	// Rendezvous is the host:port of the rendezvous server this node
	// uses, written into the links it makes; empty for none.
	Rendezvous string
	// UploadRate caps the bytes per second this node serves to peers
	// (blocks and pushed pieces together); 0 is no cap.
	UploadRate int64
	// WatchDelay is how long a changed path under a shared folder stays
	// quiet before it is hashed again: an editor that writes a file in
	// several steps is hashed once, after the last.
	WatchDelay time.Duration
	// ScanLogInterval is how often the first scan of Folders logs how far
	// it has got; it logs what it shared when it is done.
	ScanLogInterval time.Duration
	// RequestTimeout bounds one request to a peer (a catalog page), so a
	// peer that never answers cannot hold a listing up.
	RequestTimeout time.Duration
	// CatalogTimeout bounds the listing of one remote catalog, all its
	// pages: a node that answers each page just inside RequestTimeout,
	// and never ends, would otherwise hold Files up for hours.
	CatalogTimeout time.Duration
	// CatalogCache is how many remote catalogs are kept (each cached by
	// its node and version, so an unchanged catalog is never fetched
	// twice); the least recently used goes first.
	CatalogCache int
	// MaxRemoteEntries bounds the entries taken from one remote catalog,
	// so a hostile node cannot make this one hold an endless list.
	MaxRemoteEntries int
	// MaxRemoteBytes bounds the memory all remote catalogs take together,
	// cached and being fetched (names, types and entries counted): one
	// hostile node, or many, cannot make this node hold more. To make
	// room the least recently used catalogs go; a catalog that still does
	// not fit is not taken (its node is left out of Files).
	MaxRemoteBytes int64
	// PieceCache bounds the bytes of verified pieces kept to serve the
	// blocks of recently read pieces (see shares.readBlock).
	PieceCache int64
	// Downloads tunes the downloads; its Dir is Dir and its Rendezvous
	// Rendezvous. Zero values take
	// the defaults (finished files go to Dir/downloads).
	Downloads DownloadsConfig
	// Push says whose pushes this node takes and how it sends its own.
	// Its Accept is nil by default: no push is taken unless the caller
	// says from whom.
	Push PushConfig
	// Logger; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns the settings for a real node; Node, DB and Dir
// are the caller's to set.
func DefaultConfig() Config {
	return Config{
		UploadRate:       0,
		WatchDelay:       500 * time.Millisecond,
		ScanLogInterval:  5 * time.Second,
		RequestTimeout:   20 * time.Second,
		CatalogTimeout:   time.Minute,
		CatalogCache:     256,
		MaxRemoteEntries: 1_000_000,
		MaxRemoteBytes:   256 << 20,
		PieceCache:       32 << 20,
	}
}

// Service shares this node's files with the mesh and finds what other nodes
// share. It answers the four request protocols (wire.go) from its sources
// of pieces, the shares first.
type Service struct {
	cfg  Config
	node Node
	db   *bbolt.DB
	log  *slog.Logger

	shares    *shares
	downloads *downloads
	pushes    *pushes
	catalog   *catalog
	remote    *reslist.Remote[Entry]
	// sources are asked in turn for a resource's manifest, bitfield and
	// blocks: the shares first, then the downloads.
	sources []pieceSource
	// upload caps what this node serves; nil when there is no cap.
	upload *rate.Limiter

	events pubsub.Topic[Event]
	scanState
	// kick wakes Serve for work queued from handlers and calls (a re-hash,
	// a new advertisement).
	kick chan struct{}

	// advertMu orders advertisements, so that a stale summary is never
	// put over a newer one; advertised is the catalog version put last.
	advertMu   sync.Mutex
	advertised uint64
	advertOnce bool

	mu     sync.Mutex
	served bool // Serve has been called
	closed bool // Serve has ended: handlers refuse

	// life ends when Serve's context does: work Serve waits for that
	// has no context of its own (a download's catalog lookup) stops then.
	life    context.Context
	endLife context.CancelFunc
}

// New makes a service from cfg. Serve makes it answer peers.
func New(cfg Config) (*Service, error) {
	if cfg.Node == nil || cfg.DB == nil || cfg.Dir == "" {
		return nil, errors.New("shards: New needs a Node, a DB and a Dir")
	}
	d := DefaultConfig()
	if cfg.WatchDelay <= 0 {
		cfg.WatchDelay = d.WatchDelay
	}
	if cfg.ScanLogInterval <= 0 {
		cfg.ScanLogInterval = d.ScanLogInterval
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = d.RequestTimeout
	}
	if cfg.CatalogTimeout <= 0 {
		cfg.CatalogTimeout = d.CatalogTimeout
	}
	if cfg.CatalogCache <= 0 {
		cfg.CatalogCache = d.CatalogCache
	}
	if cfg.MaxRemoteEntries <= 0 {
		cfg.MaxRemoteEntries = d.MaxRemoteEntries
	}
	if cfg.MaxRemoteBytes <= 0 {
		cfg.MaxRemoteBytes = d.MaxRemoteBytes
	}
	if cfg.PieceCache <= 0 {
		cfg.PieceCache = d.PieceCache
	}
	if cfg.UploadRate < 0 {
		return nil, fmt.Errorf("shards: UploadRate %d is negative", cfg.UploadRate)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		cfg:  cfg,
		node: cfg.Node,
		db:   cfg.DB,
		log:  log.With("svc", "shards"),
		kick: make(chan struct{}, 1),
	}
	s.life, s.endLife = context.WithCancel(context.Background())
	if cfg.UploadRate > 0 {
		// A burst of one block: a cap that lets a whole second through
		// at once would not cap the benchmarks' short transfers.
		s.upload = rate.NewLimiter(rate.Limit(cfg.UploadRate), BlockSize)
	}
	s.catalog = newCatalog()
	s.remote = s.newRemoteCatalogs()
	sh, err := openShares(s)
	if err != nil {
		return nil, err
	}
	s.shares = sh
	dcfg := cfg.Downloads
	dcfg.Dir = cfg.Dir
	dcfg.Rendezvous = cfg.Rendezvous
	dl, err := newDownloads(dcfg, cfg.Node, cfg.DB, s.downloadHolders, &s.events, s.log)
	if err != nil {
		return nil, err
	}
	s.downloads = dl
	dl.cached = s.holders
	dl.onDone = s.downloadDone
	dl.onRemoved = func(id MD5) {
		s.catalog.remove(ownDownloads, id)
		s.changed()
	}
	for _, t := range dl.transfers() {
		if t.State == StateDone {
			s.catalog.put(ownDownloads, doneEntry(t))
		}
	}
	s.sources = []pieceSource{sh, dl}
	s.pushes = newPushes(cfg.Node, s.log, cfg.Push, s.sources, dl.pushSink)
	s.pushes.waitUpload = s.waitUpload
	s.pushes.publish = s.events.Publish
	return s, nil
}

// Serve answers peers' requests, watches the shared folders and keeps
// the node's advertisement current until ctx ends.
func (s *Service) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.served {
		s.mu.Unlock()
		return errors.New("shards: Serve called twice")
	}
	s.served = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
	}()

	s.node.Handle(ProtoManifest, mesh.HandlerFunc(s.handleManifest))
	s.node.Handle(ProtoHave, mesh.HandlerFunc(s.handleHave))
	s.node.Handle(ProtoBlock, mesh.HandlerFunc(s.handleBlock))
	s.node.Handle(ProtoSpan, mesh.HandlerFunc(s.handleSpan))
	s.node.Handle(ProtoList, mesh.HandlerFunc(s.handleList))

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	context.AfterFunc(ctx, s.endLife)

	s.advertise()
	wg.Go(func() { s.shares.serve(ctx) })
	wg.Go(func() { s.downloads.serve(ctx) })
	wg.Go(func() { s.pushes.serve(ctx) })
	if len(s.cfg.Folders) > 0 {
		f, err := newFolders(s, s.cfg.Folders)
		if err != nil {
			return err
		}
		wg.Go(func() { f.serve(ctx) })
	}
	dir, stop := s.node.SubscribeDirectory()
	defer stop()
	var online uint64
	for {
		select {
		case <-ctx.Done():
			if err := s.shares.flush(); err != nil {
				s.log.Warn("write shares", "err", err)
			}
			return nil
		case <-s.kick:
			s.advertise()
		case <-dir:
			recs := s.node.Directory()
			s.remote.ForgetOffline(recs)
			// The web UI re-reads Files when the online catalogs change,
			// not on every directory refresh.
			if f := reslist.Fingerprint(recs, resourceName); f != online {
				online = f
				s.events.Publish(Event{Files: true})
			}
		}
	}
}

// changed is called when the catalog changes: Serve advertises the new
// version. It never blocks.
func (s *Service) changed() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// advertise puts the catalog's summary in the node's record, unless that
// version is there already (each new summary re-issues the record).
func (s *Service) advertise() {
	s.advertMu.Lock()
	defer s.advertMu.Unlock()
	count, version := s.catalog.summary()
	if s.advertOnce && version == s.advertised {
		return
	}
	if err := s.node.SetResource(resourceName, summary{Count: count, Version: version}); err != nil {
		s.log.Warn("advertise catalog", "err", err)
		return
	}
	s.advertised, s.advertOnce = version, true
}

// open reports whether handlers may answer.
func (s *Service) open() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served && !s.closed
}

// SubscribeShards returns a subscription to the service's events: shares
// and transfers that start, progress or end. Close it when done.
func (s *Service) SubscribeShards() *pubsub.Subscription[Event] {
	return s.events.Subscribe(64)
}

// Share shares the file at path in place (it is never copied) and returns
// it as a transfer. The file is hashed first, which takes as long as
// reading it.
func (s *Service) Share(ctx context.Context, path string) (Transfer, error) {
	return s.shares.share(ctx, path, "", "")
}

// ShareFor is Share for a service (owner, as Link.For names it) that
// shares a file only so that its peers on other nodes can fetch it: music's
// covers and lyrics, plugins' sources. The catalog marks it internal
// (Entry.Internal): other nodes find it by id (Fetch, Open, holders) but
// leave it out of Files, unless a holder shares the same bytes as the
// user's; its transfer says For. Share of the same path makes it the
// user's again, and ShareFor makes a user's file the service's: the last
// call says whose it is.
func (s *Service) ShareFor(ctx context.Context, path, owner string) (Transfer, error) {
	if owner == "" {
		return Transfer{}, errors.New("shards: ShareFor needs the service it shares for")
	}
	return s.shares.share(ctx, path, "", owner)
}

// Unshare stops sharing a resource. The user's file is left alone.
func (s *Service) Unshare(id MD5) error { return s.shares.unshare(id) }

// waitUpload waits until the upload cap lets n more bytes go out; every
// byte this node serves or pushes passes it.
func (s *Service) waitUpload(ctx context.Context, n int) error {
	if s.upload == nil {
		return nil
	}
	for n > 0 {
		c := min(n, s.upload.Burst())
		if err := s.upload.WaitN(ctx, c); err != nil {
			return fmt.Errorf("shards: upload cap: %w", err)
		}
		n -= c
	}
	return nil
}

// errClosed answers requests that come before Serve or after it ended.
var errClosed = errors.New("shards: not serving")

// source finds the first source that holds id.
func (s *Service) source(id MD5) (pieceSource, *Manifest) {
	for _, src := range s.sources {
		if m, ok := src.manifestOf(id); ok {
			return src, m
		}
	}
	return nil, nil
}

// request decodes the resource id a manifest or have request carries.
func (s *Service) requestID(m *mesh.Message) (MD5, error) {
	var id MD5
	if len(m.Payload) != len(id) {
		s.node.Penalize(m.From, "shards: bad resource id request")
		return id, fmt.Errorf("%w: resource id of %d bytes", ErrBadFrame, len(m.Payload))
	}
	copy(id[:], m.Payload)
	return id, nil
}

func (s *Service) handleManifest(ctx context.Context, m *mesh.Message) ([]byte, error) {
	if !s.open() {
		return nil, errClosed
	}
	id, err := s.requestID(m)
	if err != nil {
		return nil, err
	}
	_, man := s.source(id)
	if man == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknown, id)
	}
	return man.Encode(), nil
}

func (s *Service) handleHave(ctx context.Context, m *mesh.Message) ([]byte, error) {
	if !s.open() {
		return nil, errClosed
	}
	id, err := s.requestID(m)
	if err != nil {
		return nil, err
	}
	s.downloads.askedHave(id, m.From)
	src, man := s.source(id)
	if src == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknown, id)
	}
	b := src.haveOf(id)
	if b == nil {
		b = NewBitfield(man.NumPieces())
	}
	return encodeHave(b, man.NumPieces()), nil
}

func (s *Service) handleBlock(ctx context.Context, m *mesh.Message) ([]byte, error) {
	return s.serveBlock(ctx, m, false)
}

// handleSpan serves ProtoSpan: a block that may cover several pieces.
func (s *Service) handleSpan(ctx context.Context, m *mesh.Message) ([]byte, error) {
	return s.serveBlock(ctx, m, true)
}

// serveBlock answers a block request: of one piece, or of a run of pieces
// (span), each read through its source's readBlock as a block of its own.
func (s *Service) serveBlock(ctx context.Context, m *mesh.Message, span bool) ([]byte, error) {
	if !s.open() {
		return nil, errClosed
	}
	r, err := decodeBlockReq(m.Payload)
	if err != nil {
		s.node.Penalize(m.From, "shards: bad block request")
		return nil, err
	}
	if m.Channel != mesh.Bulk {
		// Blocks on ctl would hold chat and gossip up behind them.
		return nil, fmt.Errorf("%w: block requests go over the bulk channel", ErrBadFrame)
	}
	for _, src := range s.sources {
		man, ok := src.manifestOf(r.ID)
		if !ok {
			continue
		}
		last, ok := int(r.Piece), blockInPiece(man, r)
		if span {
			last, ok = blockSpan(man, r)
		}
		if !ok {
			s.node.Penalize(m.From, "shards: block request outside its piece")
			return nil, fmt.Errorf("%w: block %d+%d of piece %d is outside it", ErrBadFrame, r.Off, r.Len, r.Piece)
		}
		if !src.haveOf(r.ID).HasRange(int(r.Piece), last) {
			continue
		}
		if err := s.waitUpload(ctx, int(r.Len)); err != nil {
			return nil, err
		}
		p := make([]byte, r.Len)
		if err := readSpan(ctx, src, man, r, p); err != nil {
			return nil, err
		}
		src.sentBlock(r.ID, m.From, len(p))
		return p, nil
	}
	return nil, fmt.Errorf("%w: %s piece %d", ErrUnknown, r.ID, r.Piece)
}

// spanSource is a pieceSource that reads a block running on into the
// pieces after its own (ProtoSpan) in one go, every piece checked as
// readBlock checks one: a shared file is opened and its stamp checked once
// a span, not once a piece (shares.readSpanBlock).
type spanSource interface {
	readSpanBlock(ctx context.Context, r blockReq, p []byte) error
}

// readSpan reads the block r, which may run on into the pieces after
// r.Piece (ProtoSpan), into p: through src.readSpanBlock if it has one,
// else a block of each piece through src.readBlock, which checks that
// piece.
func readSpan(ctx context.Context, src pieceSource, man *Manifest, r blockReq, p []byte) error {
	if ss, ok := src.(spanSource); ok {
		if _, ok := blockSpan(man, r); !ok || len(p) != int(r.Len) {
			return fmt.Errorf("%w: block runs past the end of %s", ErrBadFrame, r.ID)
		}
		return ss.readSpanBlock(ctx, r, p)
	}
	for len(p) > 0 {
		n := min(int64(len(p)), man.PieceLen(int(r.Piece))-int64(r.Off))
		if n <= 0 {
			return fmt.Errorf("%w: block runs past the end of %s", ErrBadFrame, r.ID)
		}
		b := blockReq{ID: r.ID, Piece: r.Piece, Off: r.Off, Len: uint32(n)}
		if err := src.readBlock(ctx, b, p[:n]); err != nil {
			return err
		}
		p = p[n:]
		r.Piece, r.Off = r.Piece+1, 0
	}
	return nil
}

func (s *Service) handleList(ctx context.Context, m *mesh.Message) ([]byte, error) {
	if !s.open() {
		return nil, errClosed
	}
	r, err := decodeListReq(m.Payload)
	if err != nil {
		s.node.Penalize(m.From, "shards: bad list request")
		return nil, err
	}
	return encodeListPage(s.catalog.page(r.After, int(r.Limit)))
}
