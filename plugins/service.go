package plugins

import (
	"cmp"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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

// Shards is what plugins needs of the shards service (*shards.Service
// has it all): published files are shared in place, installed ones read
// from whoever holds them.
type Shards interface {
	// ShareFor shares a file of the service's own (an attachment, a
	// published plugin) for other nodes' services to fetch by id; it
	// stays out of the users' Files lists.
	ShareFor(ctx context.Context, path, owner string) (shards.Transfer, error)
	Open(ctx context.Context, id shards.MD5) (shards.Content, error)
	// Fetch starts a download from the node that listed the plugin (and
	// any other holder), under the plugin's name.
	Fetch(ctx context.Context, l shards.Link) (shards.Transfer, error)
	Remove(ctx context.Context, id shards.MD5) error
}

var _ Shards = (*shards.Service)(nil)

// Node is what plugins needs of the mesh (*mesh.Node has it all).
type Node interface {
	ID() mesh.ID
	Name() string
	Handle(proto string, h mesh.Handler)
	Request(ctx context.Context, to mesh.ID, proto string, payload []byte, opts ...mesh.SendOption) ([]byte, error)
	Directory() []mesh.Record
	Lookup(id mesh.ID) (mesh.Record, bool)
	SubscribeDirectory() (<-chan struct{}, func())
	SetResource(service string, summary any) error
	Expand(ctx context.Context, ids ...mesh.ID) error
	Penalize(id mesh.ID, reason string)
}

var _ Node = (*mesh.Node)(nil)

// Config configures a Service.
type Config struct {
	Node   Node
	Shards Shards
	// Identity is the node's key, which signs what it publishes.
	Identity *mesh.Identity
	// DB is the node's database; plugins owns the buckets "plugins/...".
	DB *bbolt.DB
	// Dir is the node's data dir: published files are kept (and shared)
	// in Dir/plugins.
	Dir string
	// RequestTimeout bounds one page request; ListTimeout one node's
	// whole list; FetchTimeout the fetch of a plugin file at install.
	RequestTimeout time.Duration
	ListTimeout    time.Duration
	FetchTimeout   time.Duration
	// ListCache is how many remote published lists are kept.
	ListCache int
	// MaxRemoteEntries bounds the entries taken from one node's list,
	// MaxRemoteBytes the memory of all remote lists together.
	MaxRemoteEntries int
	MaxRemoteBytes   int64
	// MaxSeen bounds the market entries kept of nodes now offline; the
	// least recently seen go first.
	MaxSeen int
	Logger  *slog.Logger
}

// DefaultConfig returns the settings for a real node; Node, Shards,
// Identity, DB and Dir are the caller's.
func DefaultConfig() Config {
	return Config{
		RequestTimeout:   20 * time.Second,
		ListTimeout:      time.Minute,
		FetchTimeout:     time.Minute,
		ListCache:        256,
		MaxRemoteEntries: 10_000,
		MaxRemoteBytes:   32 << 20,
		MaxSeen:          2000,
	}
}

// Service is a node's plugins: what it publishes, what it installed, and
// the market. It implements webui.Plugins.
type Service struct {
	cfg    Config
	node   Node
	shards Shards
	db     *bbolt.DB
	log    *slog.Logger

	own    *reslist.Local[Entry]
	remote *reslist.Remote[Entry]
	events pubsub.Topic[Event]

	// mu serializes publishing and installing (read, check, write).
	mu     sync.Mutex
	seenMu sync.Mutex
	seen   map[shards.MD5]seen
	served bool
}

// Event is published when the market or the installed plugins change:
// the web UI's "plugins" events.
type Event struct {
	Market    bool `json:"market,omitempty"`
	Installed bool `json:"installed,omitempty"`
}

// New makes a service from cfg and loads what it keeps in the DB. Serve
// makes it answer peers.
func New(cfg Config) (*Service, error) {
	if cfg.Node == nil || cfg.Shards == nil || cfg.DB == nil || cfg.Dir == "" || cfg.Identity == nil {
		return nil, errors.New("plugins: New needs a Node, Shards, an Identity, a DB and a Dir")
	}
	d := DefaultConfig()
	cfg.RequestTimeout = cmp.Or(cfg.RequestTimeout, d.RequestTimeout)
	cfg.ListTimeout = cmp.Or(cfg.ListTimeout, d.ListTimeout)
	cfg.FetchTimeout = cmp.Or(cfg.FetchTimeout, d.FetchTimeout)
	cfg.ListCache = cmp.Or(cfg.ListCache, d.ListCache)
	cfg.MaxRemoteEntries = cmp.Or(cfg.MaxRemoteEntries, d.MaxRemoteEntries)
	cfg.MaxRemoteBytes = cmp.Or(cfg.MaxRemoteBytes, d.MaxRemoteBytes)
	cfg.MaxSeen = cmp.Or(cfg.MaxSeen, d.MaxSeen)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, node: cfg.Node, shards: cfg.Shards, db: cfg.DB, log: log.With("svc", "plugins"),
		own: reslist.NewLocal(entryKey, entryHash)}
	s.remote = pages.Remote(reslist.RemoteConfig[Entry]{
		Name:       resourceName,
		What:       "plugins: published list",
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

// request asks node for a page, linking to it first if it is not a
// neighbour.
func (s *Service) request(ctx context.Context, node mesh.ID, payload []byte) ([]byte, error) {
	b, err := reslist.Request(ctx, s.node, node, ProtoList, payload, s.cfg.RequestTimeout)
	if err != nil {
		return nil, fmt.Errorf("plugins: list of %s: %w", node.Short(), err)
	}
	return b, nil
}

// Serve answers peers' list requests, shares the published files and
// follows the directory until ctx ends.
func (s *Service) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.served {
		s.mu.Unlock()
		return errors.New("plugins: Serve called twice")
	}
	s.served = true
	s.mu.Unlock()
	s.node.Handle(ProtoList, mesh.HandlerFunc(s.handleList))
	own, _ := s.own.Entries()
	for _, e := range own {
		if _, err := s.share(ctx, e.ID); err != nil {
			s.log.Warn("published plugin not shared", "name", e.Name, "err", err)
		}
	}
	s.advertise()
	dir, stop := s.node.SubscribeDirectory()
	defer stop()
	var online uint64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-dir:
			recs := s.node.Directory()
			s.remote.ForgetOffline(recs)
			if f := reslist.Fingerprint(recs, resourceName); f != online {
				online = f
				s.events.Publish(Event{Market: true})
			}
		}
	}
}

func (s *Service) handleList(ctx context.Context, m *mesh.Message) ([]byte, error) {
	after, limit, err := decodeListReq(m.Payload)
	if err != nil {
		s.node.Penalize(m.From, "plugins: bad list request")
		return nil, err
	}
	return encodePage(s.own.Page(after, limit))
}

func (s *Service) advertise() {
	if err := s.node.SetResource(resourceName, s.own.Summary()); err != nil {
		s.log.Warn("advertise published plugins", "err", err)
	}
}

// SubscribePlugins returns a subscription to the "plugins" events. Close
// it when done.
func (s *Service) SubscribePlugins() *pubsub.Subscription[Event] { return s.events.Subscribe(16) }

// path is where a published file is kept and shared from.
func (s *Service) path(id shards.MD5) string {
	return filepath.Join(s.cfg.Dir, "plugins", id.String()+".js")
}

// share writes a published plugin's file to Dir/plugins (from the DB,
// if it is missing) and shares it for plugins (ShareFor): the market
// lists it, the Files lists do not.
func (s *Service) share(ctx context.Context, id shards.MD5) (shards.Transfer, error) {
	p := s.path(id)
	if _, err := os.Stat(p); err != nil {
		data, ok := s.file(id)
		if !ok {
			return shards.Transfer{}, fmt.Errorf("%w: no file of %s", ErrUnknown, id)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return shards.Transfer{}, fmt.Errorf("plugins: %w", err)
		}
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return shards.Transfer{}, fmt.Errorf("plugins: %w", err)
		}
		if err := os.Rename(tmp, p); err != nil {
			return shards.Transfer{}, fmt.Errorf("plugins: %w", err)
		}
	}
	t, err := s.shards.ShareFor(ctx, p, resourceName)
	if err != nil {
		return t, fmt.Errorf("plugins: share %s: %w", id, err)
	}
	if t.ID != id {
		return t, fmt.Errorf("%w: %s on disk hashes to %s", ErrTampered, p, t.ID)
	}
	return t, nil
}

// Publish signs a plugin file with the node's key and offers it in the
// market. A new version of a plugin this node published (the same name)
// replaces the old one, which must be older; publishing the same file
// again changes nothing. A file that is not a plugin is refused
// (ErrBadPlugin, saying why) and nothing is stored.
func (s *Service) Publish(ctx context.Context, src []byte) (Entry, error) {
	h, err := ParseHeader(src)
	if err != nil {
		return Entry{}, err
	}
	id := shards.MD5(md5.Sum(src))
	s.mu.Lock()
	defer s.mu.Unlock()
	var old Entry
	var had bool
	own, _ := s.own.Entries()
	for _, e := range own {
		if e.Name == h.Name {
			old, had = e, true
		}
	}
	if had && old.ID == id {
		return old, nil
	}
	if had && CompareVersions(h.Version, old.Version) <= 0 {
		return Entry{}, fmt.Errorf("%w: version %s is not newer than the published %s", ErrBadPlugin, h.Version, old.Version)
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketFiles).Put(id[:], src) }); err != nil {
		return Entry{}, fmt.Errorf("plugins: store: %w", err)
	}
	t, err := s.share(ctx, id)
	if err != nil {
		s.dropFile(id)
		return Entry{}, err
	}
	sig, err := Sign(s.cfg.Identity, h.Name, h.Version, id)
	if err != nil {
		s.dropFile(id)
		return Entry{}, err
	}
	e := Entry{ID: id, Manifest: t.Manifest, Size: int64(len(src)), Name: h.Name, Description: h.Description,
		Version: h.Version, Author: h.Author, Permissions: strings.Join(h.Permissions, " "), Signature: sig, At: time.Now().UnixMilli()}
	if err := s.db.Update(func(tx *bbolt.Tx) error { return putJSON(tx, bucketPublished, []byte(h.Name), e) }); err != nil {
		return Entry{}, fmt.Errorf("plugins: store: %w", err)
	}
	s.own.Put(1, e)
	if had {
		s.own.Remove(1, old.ID)
		s.retire(ctx, old.ID)
	}
	s.advertise()
	s.events.Publish(Event{Market: true})
	return e, nil
}

// retire stops sharing an old published version and drops its bytes
// unless an installed plugin is that version.
func (s *Service) retire(ctx context.Context, id shards.MD5) {
	if err := s.shards.Remove(ctx, id); err != nil {
		s.log.Debug("old version not unshared", "id", id, "err", err)
	}
	os.Remove(s.path(id))
	s.dropFile(id)
}

// dropFile deletes a file's bytes from the DB unless a published or
// installed plugin is it.
func (s *Service) dropFile(id shards.MD5) {
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if fileUsed(tx, id) {
			return nil
		}
		return tx.Bucket(bucketFiles).Delete(id[:])
	})
	if err != nil {
		s.log.Warn("drop plugin file", "id", id, "err", err)
	}
}

// Published lists this node's published plugins.
func (s *Service) Published(ctx context.Context) ([]Entry, error) {
	own, _ := s.own.Entries()
	return slices.Clone(own), nil
}

// Source returns the file of a plugin this node published or installed.
func (s *Service) Source(ctx context.Context, id shards.MD5) ([]byte, error) {
	if b, ok := s.file(id); ok {
		return b, nil
	}
	return nil, fmt.Errorf("%w: %s is neither published nor installed here", ErrUnknown, id)
}

// readFile reads a plugin file over shards, at most MaxFile bytes, from
// the node that listed it (lister, if known) and any other holder.
func (s *Service) readFile(ctx context.Context, e Entry, lister mesh.ID) ([]byte, error) {
	if b, ok := s.file(e.ID); ok {
		return b, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.FetchTimeout)
	defer cancel()
	name, err := shards.CleanName(e.Name + "-" + e.Version + ".js")
	if err != nil {
		name = e.ID.String() + ".js"
	}
	// Fetched for plugins, not the user: the download, and this node's
	// listing of it once done, stay out of the Files lists.
	if _, err := s.shards.Fetch(ctx, shards.Link{Node: lister, ID: e.ID, Manifest: e.Manifest, Name: name, Size: e.Size, For: resourceName}); err != nil {
		return nil, fmt.Errorf("plugins: fetch %s: %w", e.ID, err)
	}
	c, err := s.shards.Open(ctx, e.ID)
	if err != nil {
		return nil, fmt.Errorf("plugins: fetch %s: %w", e.ID, err)
	}
	defer c.Close()
	if c.Size() > MaxFile {
		if err := s.shards.Remove(ctx, e.ID); err != nil {
			s.log.Debug("oversized plugin download not removed", "id", e.ID, "err", err)
		}
		return nil, fmt.Errorf("%w: file of %d bytes (at most %d)", ErrBadPlugin, c.Size(), MaxFile)
	}
	b, err := io.ReadAll(io.LimitReader(c, MaxFile+1))
	if err != nil {
		return nil, fmt.Errorf("plugins: fetch %s: %w", e.ID, err)
	}
	return b, nil
}

// Verify checks a plugin file against the market entry it was installed
// from: its bytes hash to the entry's id (else ErrTampered), it is a
// plugin whose header names the entry's name and version, and the
// publisher signed them (else ErrBadSignature). It returns the header.
func Verify(e Entry, data []byte) (Header, error) {
	if got := shards.MD5(md5.Sum(data)); got != e.ID {
		return Header{}, fmt.Errorf("%w: the file hashes to %s, not %s", ErrTampered, got, e.ID)
	}
	h, err := ParseHeader(data)
	if err != nil {
		return Header{}, err
	}
	if h.Name != e.Name || h.Version != e.Version {
		return Header{}, fmt.Errorf("%w: the file is %s %s, the market says %s %s", ErrTampered, h.Name, h.Version, e.Name, e.Version)
	}
	if err := e.Verify(h.Name, h.Version, e.ID); err != nil {
		return Header{}, err
	}
	return h, nil
}

// Install fetches a market plugin over shards, checks it (Verify) and
// installs it with the permissions of grant that it asks for; those it
// asks for and grant lacks are refused. A plugin from the same publisher
// with the same name is updated (a version older than the installed one
// is refused with ErrOlder), keeping its data and enabled state.
func (s *Service) Install(ctx context.Context, id shards.MD5, grant []string) (Installed, error) {
	e, lister, ok := s.entry(id)
	if !ok {
		return Installed{}, fmt.Errorf("%w: %s is not in the market", ErrUnknown, id)
	}
	if e.Size > MaxFile {
		return Installed{}, fmt.Errorf("%w: file of %d bytes (at most %d)", ErrBadPlugin, e.Size, MaxFile)
	}
	data, err := s.readFile(ctx, e, lister)
	if err != nil {
		return Installed{}, err
	}
	h, err := Verify(e, data)
	if err != nil {
		s.log.Warn("plugin refused", "id", id, "publisher", e.Publisher.Short(), "err", err)
		return Installed{}, err
	}
	granted := []string{}
	for _, p := range h.Permissions {
		if slices.Contains(grant, p) {
			granted = append(granted, p)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := identity(e.Publisher, e.Name)
	p := installed{Entry: e, PublisherName: s.publisherName(e.Publisher), Granted: granted, Enabled: true, At: time.Now().UTC()}
	var old *installed
	err = s.db.Update(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketInstalled).Get(key); v != nil {
			var o installed
			if err := jsonUnmarshal(v, &o); err == nil {
				if CompareVersions(e.Version, o.Entry.Version) < 0 {
					return fmt.Errorf("%w: %s %s is installed, %s is older", ErrOlder, e.Name, o.Entry.Version, e.Version)
				}
				p.Enabled = o.Enabled
				old = &o
			}
		}
		if err := tx.Bucket(bucketFiles).Put(id[:], data); err != nil {
			return err
		}
		if err := putJSON(tx, bucketInstalled, key, p); err != nil {
			return err
		}
		if old != nil && old.Entry.ID != id && !fileUsed(tx, old.Entry.ID) {
			return tx.Bucket(bucketFiles).Delete(old.Entry.ID[:])
		}
		return nil
	})
	if err != nil {
		return Installed{}, err
	}
	s.events.Publish(Event{Installed: true, Market: true})
	return p.api(), nil
}

// publisherName is the name of a publisher: its directory record's, else
// the one last seen, else the start of its ID.
func (s *Service) publisherName(id mesh.ID) string {
	if id == s.node.ID() {
		return s.node.Name()
	}
	if r, ok := s.node.Lookup(id); ok && r.Name != "" {
		return r.Name
	}
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	for _, e := range s.seen {
		if e.Entry.Publisher == id && e.PublisherName != "" {
			return e.PublisherName
		}
	}
	return id.Short()
}

// entry finds a market entry by id and the node that lists it: this
// node's, the cached lists', or one seen before (lister unknown).
func (s *Service) entry(id shards.MD5) (Entry, mesh.ID, bool) {
	if e, ok := s.own.Get(id); ok {
		return e, s.node.ID(), true
	}
	for node, l := range s.remote.All() {
		if e, ok := reslist.Find(l, entryKey, id); ok {
			return e, node, true
		}
	}
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	e, ok := s.seen[id]
	return e.Entry, "", ok
}

// Installed lists the installed plugins, by name and publisher.
func (s *Service) Installed(ctx context.Context) ([]Installed, error) {
	all, err := s.installedList()
	if err != nil {
		return nil, err
	}
	out := make([]Installed, 0, len(all))
	for _, p := range all {
		out = append(out, p.api())
	}
	slices.SortFunc(out, func(a, b Installed) int {
		return cmp.Or(cmp.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)), cmp.Compare(a.Publisher, b.Publisher))
	})
	return out, nil
}

// SetEnabled enables or disables an installed plugin (id is its current
// version's).
func (s *Service) SetEnabled(ctx context.Context, id shards.MD5, on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.findInstalled(id)
	if err != nil {
		return err
	}
	p.Enabled = on
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		return putJSON(tx, bucketInstalled, identity(p.Entry.Publisher, p.Entry.Name), p)
	}); err != nil {
		return fmt.Errorf("plugins: store: %w", err)
	}
	s.events.Publish(Event{Installed: true})
	return nil
}

// Uninstall removes an installed plugin and its data.
func (s *Service) Uninstall(ctx context.Context, id shards.MD5) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.findInstalled(id)
	if err != nil {
		return err
	}
	key := identity(p.Entry.Publisher, p.Entry.Name)
	err = s.db.Update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketInstalled).Delete(key); err != nil {
			return err
		}
		if tx.Bucket(bucketData).Bucket(key) != nil {
			if err := tx.Bucket(bucketData).DeleteBucket(key); err != nil {
				return err
			}
		}
		if !fileUsed(tx, id) {
			return tx.Bucket(bucketFiles).Delete(id[:])
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("plugins: store: %w", err)
	}
	s.events.Publish(Event{Installed: true, Market: true})
	return nil
}
