package music

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/internal/pubsub"
	"github.com/catnest/catnest/internal/reslist"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// Shards is what music needs of the shards service (*shards.Service has
// it all): the files it shares, hashed once there, and readers over any
// resource of the mesh.
type Shards interface {
	// ShareFor shares a file of the service's own (an attachment, a
	// published plugin) for other nodes' services to fetch by id; it
	// stays out of the users' Files lists.
	ShareFor(ctx context.Context, path, owner string) (shards.Transfer, error)
	Shares(ctx context.Context) ([]shards.Transfer, error)
	Open(ctx context.Context, id shards.MD5) (shards.Content, error)
	// Fetch starts a download under the track's file name, so the cached
	// copy is named (and typed) after it, not after its MD5.
	Fetch(ctx context.Context, l shards.Link) (shards.Transfer, error)
	Remove(ctx context.Context, id shards.MD5) error
	// RemoveFor removes a download music fetched (Link.For), unless the
	// user has fetched it since (shards.ErrNotOwned), and returns it as
	// it was removed: a file that finished meanwhile is music's to delete.
	RemoveFor(ctx context.Context, id shards.MD5, owner string) (shards.Transfer, error)
	// Transfer is the share or download of id (shards.ErrUnknown: none).
	Transfer(ctx context.Context, id shards.MD5) (shards.Transfer, error)
	Scan() shards.ScanStatus
	SubscribeShards() *pubsub.Subscription[shards.Event]
}

var _ Shards = (*shards.Service)(nil)

// Node is what music needs of the mesh (*mesh.Node has it all).
type Node interface {
	ID() mesh.ID
	Handle(proto string, h mesh.Handler)
	Request(ctx context.Context, to mesh.ID, proto string, payload []byte, opts ...mesh.SendOption) ([]byte, error)
	Directory() []mesh.Record
	SubscribeDirectory() (<-chan struct{}, func())
	SetResource(service string, summary any) error
	Expand(ctx context.Context, ids ...mesh.ID) error
	Penalize(id mesh.ID, reason string)
}

var _ Node = (*mesh.Node)(nil)

// Config configures a Service.
type Config struct {
	// Shards shares the music folders and reads tracks. The Folders must
	// be among its own Config.Folders: shards walks, watches and hashes
	// them (each file once); music takes path -> MD5 from its shares and
	// reads the tags of each MD5 once.
	Shards Shards
	Node   Node
	// DB is the node's database; music owns the buckets "music/...".
	DB *bbolt.DB
	// Dir is the node's data dir: attachments (covers and lyrics the user
	// attached, and those embedded in files) are kept in Dir/music.
	Dir string
	// Folders are the music folders (catnest serve --music DIR).
	Folders []string
	// RescanDelay is how long after a change of the shares, while shards
	// is still hashing, the library is brought up to date with them
	// (later, when rescans take long): a folder being copied in, or
	// scanned, is read in a pass per RescanDelay, not one per file, and
	// while it is hashed. A change once shards is done is taken at once.
	RescanDelay time.Duration
	// RequestTimeout bounds one page request; ListTimeout one node's
	// whole list.
	RequestTimeout time.Duration
	ListTimeout    time.Duration
	// ListCache is how many remote track lists are kept.
	ListCache int
	// MaxRemoteEntries bounds the tracks taken from one node's list, and
	// MaxRemoteBytes the memory of all remote lists together.
	MaxRemoteEntries int
	MaxRemoteBytes   int64
	// ThumbSize is the side in pixels of cover thumbnails.
	ThumbSize int
	// CacheLimit bounds the bytes of the tracks this node fetched from
	// peers to play them (whole or partial downloads): past it, the least
	// recently played go, never one that is playing, never a file of the
	// music folders or a download the user started. Negative keeps none
	// but those playing.
	CacheLimit int64
	// PlayingGrace is how long, beyond its duration, a track counts as
	// playing after the player last read it: a browser buffers ahead and
	// plays from its buffer without asking.
	PlayingGrace time.Duration
	Logger       *slog.Logger

	// now, if set, is the clock of the cache's last plays (tests).
	now func() time.Time
}

// DefaultConfig returns the settings for a real node; Shards, Node, DB,
// Dir and Folders are the caller's.
func DefaultConfig() Config {
	return Config{
		RescanDelay:      300 * time.Millisecond,
		RequestTimeout:   20 * time.Second,
		ListTimeout:      time.Minute,
		ListCache:        256,
		MaxRemoteEntries: 200_000,
		MaxRemoteBytes:   128 << 20,
		ThumbSize:        256,
		CacheLimit:       2 << 30,
		PlayingGrace:     10 * time.Minute,
	}
}

// Service is a node's music: its own track list, served to peers, and
// the mesh-wide library. It implements webui.Music.
type Service struct {
	cfg     Config
	node    Node
	shards  Shards
	db      *bbolt.DB
	log     *slog.Logger
	folders []string // absolute

	own    *reslist.Local[entry]
	remote *reslist.Remote[entry]
	events pubsub.Topic[Event]
	kick   chan struct{} // a rescan is due

	mu sync.Mutex
	// local maps the tracks of the music folders to their path.
	local map[shards.MD5]string
	sizes map[shards.MD5]int64
	// tags of the local tracks, by MD5 (the bbolt cache's, in memory).
	tags map[shards.MD5]tagRecord
	// sidecar cover and lyrics resources of the local tracks.
	sideCover, sideLyrics map[shards.MD5]shards.MD5
	// cached are the downloads of tracks (known) this node finished.
	cached map[shards.MD5]bool
	// ownedCopies are the finished downloads that are the cache's (see
	// cacheOwned) as of the last rescan: when one becomes the user's,
	// the library's CacheRemovable changes with no change to the list.
	ownedCopies map[shards.MD5]bool
	// known are tracks of peers this node streamed or attached to: their
	// entry, so that a cached copy keeps its tags when its holders leave.
	known  map[shards.MD5]entry
	atts   map[shards.MD5]attachment
	bans   []*regexp.Regexp
	banSrc []string
	scan   ScanStatus

	// fetched are the tracks of the cache (cache.go): downloads Stream
	// started, with their last plays; streams counts the open streams
	// of each remote track.
	fetched map[shards.MD5]*cacheEntry
	streams map[shards.MD5]int

	// lib is the last merged library, valid while libGen == gen; gen
	// moves with this node's list and the online lists' summaries.
	lib         map[shards.MD5]*libTrack
	libGen, gen uint64
	// libSeq counts the merges (s.lib replaced), bansSeq the ban list
	// changes: view, what Tracks lists, is made of the library and the
	// bans they name, so a request costs a copy, not a sort and a
	// match of every pattern against every track.
	libSeq, bansSeq uint64
	view            *tracksView
	served          bool
}

// tracksView is the library as Tracks lists it: sorted, banned tracks
// marked. Its slice is shared: callers copy it.
type tracksView struct {
	libSeq, bansSeq uint64
	all             []Track
}

// libTrack is a track of the merged library and the resources of its
// cover and lyrics.
type libTrack struct {
	Track
	cover, lyrics shards.MD5
	e             entry // the entry its tags came from
	// alts are the other names its holders list it by.
	alts []names
}

// names are what a ban matches: a track's title, artist, album and file
// name.
type names struct{ title, artist, album, file string }

// New makes a service from cfg and loads what it keeps in the DB. Serve
// makes it answer peers and follow the shares.
func New(cfg Config) (*Service, error) {
	if cfg.Shards == nil || cfg.Node == nil || cfg.DB == nil || cfg.Dir == "" {
		return nil, errors.New("music: New needs Shards, a Node, a DB and a Dir")
	}
	d := DefaultConfig()
	if cfg.RescanDelay <= 0 {
		cfg.RescanDelay = d.RescanDelay
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = d.RequestTimeout
	}
	if cfg.ListTimeout <= 0 {
		cfg.ListTimeout = d.ListTimeout
	}
	if cfg.ListCache <= 0 {
		cfg.ListCache = d.ListCache
	}
	if cfg.MaxRemoteEntries <= 0 {
		cfg.MaxRemoteEntries = d.MaxRemoteEntries
	}
	if cfg.MaxRemoteBytes <= 0 {
		cfg.MaxRemoteBytes = d.MaxRemoteBytes
	}
	if cfg.ThumbSize <= 0 {
		cfg.ThumbSize = d.ThumbSize
	}
	if cfg.CacheLimit == 0 {
		cfg.CacheLimit = d.CacheLimit
	}
	if cfg.PlayingGrace <= 0 {
		cfg.PlayingGrace = d.PlayingGrace
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		cfg: cfg, node: cfg.Node, shards: cfg.Shards, db: cfg.DB, log: log.With("svc", "music"),
		own:        reslist.NewLocal(entryKey, entryHash),
		kick:       make(chan struct{}, 1),
		local:      make(map[shards.MD5]string),
		tags:       make(map[shards.MD5]tagRecord),
		sideCover:  make(map[shards.MD5]shards.MD5),
		sideLyrics: make(map[shards.MD5]shards.MD5),
		cached:     make(map[shards.MD5]bool),
		fetched:    make(map[shards.MD5]*cacheEntry),
		streams:    make(map[shards.MD5]int),
		scan:       ScanStatus{State: "idle", Errors: []ScanError{}},
	}
	for _, f := range cfg.Folders {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, fmt.Errorf("music: folder %s: %w", f, err)
		}
		s.folders = append(s.folders, abs)
	}
	s.remote = pages.Remote(reslist.RemoteConfig[entry]{
		Name:       resourceName,
		What:       "music: track list",
		Cost:       entryCost,
		Penalize:   s.node.Penalize,
		Cache:      cfg.ListCache,
		MaxEntries: cfg.MaxRemoteEntries,
		MaxBytes:   cfg.MaxRemoteBytes,
		Timeout:    cfg.ListTimeout,
		Logger:     s.log,
	}, s.request)
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// request asks node for a page over the bulk channel, linking to it
// first if it is not a neighbour.
func (s *Service) request(ctx context.Context, node mesh.ID, payload []byte) ([]byte, error) {
	b, err := reslist.Request(ctx, s.node, node, ProtoList, payload, s.cfg.RequestTimeout, mesh.OverBulk())
	if err != nil {
		return nil, fmt.Errorf("music: list of %s: %w", node.Short(), err)
	}
	return b, nil
}

// Serve answers peers' list requests and keeps the library in step with
// the shares and the directory until ctx ends.
func (s *Service) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.served {
		s.mu.Unlock()
		return errors.New("music: Serve called twice")
	}
	s.served = true
	s.mu.Unlock()
	s.node.Handle(ProtoList, mesh.HandlerFunc(s.handleList))
	sub := s.shards.SubscribeShards()
	defer sub.Close()
	dir, stop := s.node.SubscribeDirectory()
	defer stop()

	// A change arms the timer, and changes while it is armed ride along:
	// during a long scan, shards reports a file every few milliseconds,
	// and a timer put back by each would hold the library back until the
	// last file is hashed, then read every tag in one go instead of while
	// shards hashes. Once shards has nothing left to hash the change is
	// the last of its burst, and the rescan runs at once (a scan's last
	// files, a cover attached, listed without RescanDelay's wait). Either
	// way rescans are apart by twice the time one takes at least, so that
	// rescanning a big library stays a third of the time at most.
	var last time.Time    // when the last rescan started
	var gap time.Duration // twice its length
	var dueAt time.Time   // when the armed timer fires; zero if none
	rescan := func() {
		last = time.Now()
		s.rescan(ctx)
		gap = 2 * time.Since(last)
	}
	s.claimAttachments(ctx)
	rescan()
	var online uint64
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	arm := func() {
		at := time.Now().Add(max(s.cfg.RescanDelay, gap))
		if !s.shards.Scan().Scanning {
			at = last.Add(gap)
		}
		if dueAt.IsZero() || at.Before(dueAt) {
			dueAt = at
			timer.Reset(max(time.Until(at), 0))
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-sub.C():
			if !ok {
				return nil
			}
			if touchesLibrary(ev) {
				arm()
			}
		case <-s.kick:
			arm()
		case <-timer.C:
			dueAt = time.Time{}
			rescan()
		case <-dir:
			// A node whose record has expired loses its cached list; one
			// that is only unreachable (stopped, died, cut off: its
			// neighbours' records no longer name it) keeps it, so that
			// it costs no paging when it comes back unchanged, but its
			// tracks leave the library now, not when its record expires.
			recs := s.node.Directory()
			s.remote.ForgetOffline(recs)
			if f := reslist.Fingerprint(mesh.Reachable(s.node.ID(), recs), resourceName); f != online {
				online = f
				s.mu.Lock()
				s.gen++
				s.mu.Unlock()
				s.events.Publish(Event{Library: true})
			}
		}
	}
}

// touchesLibrary reports whether a shards event may change the library:
// a share or a download that starts, ends or goes; not progress.
func touchesLibrary(ev shards.Event) bool {
	if ev.Removed != nil {
		return true
	}
	if t := ev.Transfer; t != nil {
		return t.State == shards.StateSeeding || t.State == shards.StateDone
	}
	return false
}

func (s *Service) handleList(ctx context.Context, m *mesh.Message) ([]byte, error) {
	after, limit, err := decodeListReq(m.Payload)
	if err != nil {
		s.node.Penalize(m.From, "music: bad list request")
		return nil, err
	}
	return encodePage(s.own.Page(after, limit))
}

// SubscribeMusic returns a subscription to the "music" events: the
// library changed, or a scan made progress. Close it when done.
func (s *Service) SubscribeMusic() *pubsub.Subscription[Event] { return s.events.Subscribe(64) }

// Scan reports the progress of the music folders' scan.
func (s *Service) Scan(ctx context.Context) (ScanStatus, error) {
	s.mu.Lock()
	st := s.scan
	st.Errors = slices.Clone(st.Errors)
	s.mu.Unlock()
	if sh := s.shards.Scan(); sh.Scanning && st.State == "idle" {
		// Shards is still walking or hashing: more files are coming.
		st.State = "scanning"
	}
	return st, nil
}

// inFolders reports whether path lies under a music folder.
func (s *Service) inFolders(path string) bool {
	for _, r := range s.folders {
		if path == r || strings.HasPrefix(path, r+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// changed republishes this node's list: a new summary in its record, and
// a library event.
func (s *Service) changed() {
	if err := s.node.SetResource(resourceName, s.own.Summary()); err != nil {
		s.log.Warn("advertise track list", "err", err)
	}
	s.mu.Lock()
	s.gen++
	s.mu.Unlock()
	s.events.Publish(Event{Library: true})
}

// rescanSoon has Serve bring the library up to date with the shares
// after RescanDelay. It never blocks.
func (s *Service) rescanSoon() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}
