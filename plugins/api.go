package plugins

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// Installed is an installed plugin as GET /api/plugins lists it.
type Installed struct {
	ID            shards.MD5 `json:"id"`
	Name          string     `json:"name"`
	Description   string     `json:"description"`
	Version       string     `json:"version"`
	Author        string     `json:"author,omitempty"`
	Publisher     mesh.ID    `json:"publisher"`
	PublisherName string     `json:"publisher_name"`
	// Permissions are those the plugin asks for, Granted those the user
	// gave it.
	Permissions []string  `json:"permissions"`
	Granted     []string  `json:"granted"`
	Enabled     bool      `json:"enabled"`
	InstalledAt time.Time `json:"installed_at"`
}

func (p installed) api() Installed {
	e := p.Entry
	return Installed{ID: e.ID, Name: e.Name, Description: e.Description, Version: e.Version, Author: e.Author,
		Publisher: e.Publisher, PublisherName: p.PublisherName, Permissions: e.Perms(), Granted: slices.Clone(p.Granted),
		Enabled: p.Enabled, InstalledAt: p.At}
}

// Listing is a plugin of the market as GET /api/plugins/market lists it:
// the newest version of each (publisher, name) that an online node
// offers, or, when none does, the newest seen before (Online false).
type Listing struct {
	ID            shards.MD5 `json:"id"`
	Name          string     `json:"name"`
	Description   string     `json:"description"`
	Version       string     `json:"version"`
	Author        string     `json:"author,omitempty"`
	Permissions   []string   `json:"permissions"`
	Publisher     mesh.ID    `json:"publisher"`
	PublisherName string     `json:"publisher_name"`
	Size          int64      `json:"size"`
	Published     time.Time  `json:"published"`
	Online        bool       `json:"online"`
	// Mine: this node published it.
	Mine bool `json:"mine"`
	// Installed is the version installed here from the same publisher,
	// if any; an update is offered when it is older than Version.
	Installed string `json:"installed,omitempty"`
}

// Market lists the market: the union of the online nodes' published
// lists (each fetched from its node when its version changed), and the
// plugins seen before whose nodes are offline. query, if not empty,
// keeps the plugins whose name, description, author, publisher or
// permissions contain it (any case). Sorted by name, then publisher.
func (s *Service) Market(ctx context.Context, query string) ([]Listing, error) {
	self := s.node.ID()
	own, _ := s.own.Entries()
	dir := s.node.Directory()
	lists, err := s.remote.Lists(ctx, dir, self, own)
	if err != nil {
		return nil, err
	}
	names := make(map[mesh.ID]string, len(dir))
	for _, r := range dir {
		names[r.ID] = r.Name
	}
	names[self] = s.node.Name()
	type key struct {
		pub  mesh.ID
		name string
	}
	best := map[key]Listing{}
	take := func(e Entry, pubName string, online bool) {
		k := key{e.Publisher, e.Name}
		if b, ok := best[k]; ok && (b.Online && !online || b.Online == online && CompareVersions(b.Version, e.Version) >= 0) {
			return
		}
		best[k] = Listing{ID: e.ID, Name: e.Name, Description: e.Description, Version: e.Version, Author: e.Author,
			Permissions: e.Perms(), Publisher: e.Publisher, PublisherName: pubName, Size: e.Size,
			Published: time.UnixMilli(e.At).UTC(), Online: online, Mine: e.Publisher == self}
	}
	now := time.Now().UnixMilli()
	var fresh []seen
	s.seenMu.Lock()
	for _, l := range lists {
		for _, e := range l {
			pn := cmp.Or(names[e.Publisher], e.Publisher.Short())
			take(e, pn, true)
			if e.Publisher == self {
				continue
			}
			old, ok := s.seen[e.ID]
			if !ok || old.PublisherName != pn || now-old.At > int64(time.Hour/time.Millisecond) {
				sn := seen{Entry: e, PublisherName: pn, At: now}
				s.seen[e.ID] = sn
				fresh = append(fresh, sn)
			}
		}
	}
	for _, e := range s.seen {
		take(e.Entry, e.PublisherName, false)
	}
	dropped := s.pruneSeenLocked()
	s.seenMu.Unlock()
	if len(fresh) > 0 || len(dropped) > 0 {
		if err := s.db.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketSeen)
			for _, e := range fresh {
				if err := putJSON(tx, bucketSeen, e.Entry.ID[:], e); err != nil {
					return err
				}
			}
			for _, id := range dropped {
				if err := b.Delete(id[:]); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			s.log.Warn("keep market entries", "err", err)
		}
	}
	inst, err := s.installedList()
	if err != nil {
		return nil, err
	}
	out := make([]Listing, 0, len(best))
	q := strings.ToLower(strings.TrimSpace(query))
	for k, l := range best {
		for _, p := range inst {
			if p.Entry.Publisher == k.pub && p.Entry.Name == k.name {
				l.Installed = p.Entry.Version
			}
		}
		if q != "" && !strings.Contains(strings.ToLower(strings.Join([]string{l.Name, l.Description, l.Author,
			l.PublisherName, string(l.Publisher), strings.Join(l.Permissions, " ")}, "\n")), q) {
			continue
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Listing) int {
		return cmp.Or(cmp.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)), cmp.Compare(a.PublisherName, b.PublisherName), cmp.Compare(a.Publisher, b.Publisher))
	})
	return out, nil
}

// pruneSeenLocked drops the least recently seen entries over MaxSeen and
// returns their ids. seenMu is held.
func (s *Service) pruneSeenLocked() []shards.MD5 {
	over := len(s.seen) - s.cfg.MaxSeen
	if over <= 0 {
		return nil
	}
	all := make([]seen, 0, len(s.seen))
	for _, e := range s.seen {
		all = append(all, e)
	}
	slices.SortFunc(all, func(a, b seen) int { return cmp.Compare(a.At, b.At) })
	out := make([]shards.MD5, 0, over)
	for _, e := range all[:over] {
		delete(s.seen, e.Entry.ID)
		out = append(out, e.Entry.ID)
	}
	return out
}

// Data returns an installed plugin's data.
func (s *Service) Data(ctx context.Context, id shards.MD5) (map[string]string, error) {
	p, err := s.findInstalled(id)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	err = s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketData).Bucket(identity(p.Entry.Publisher, p.Entry.Name))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out[string(k)] = string(v)
			return nil
		})
	})
	return out, err
}

// SetData keeps value under key for an installed plugin; an empty value
// deletes the key. The plugin's data stays within MaxData bytes and
// maxDataKeys keys (ErrDataFull).
func (s *Service) SetData(ctx context.Context, id shards.MD5, key, value string) error {
	if key == "" || len(key) > maxDataKey || !utf8.ValidString(key) || !utf8.ValidString(value) {
		return fmt.Errorf("%w: key must be 1 to %d bytes of UTF-8, values UTF-8", ErrDataFull, maxDataKey)
	}
	if len(key)+len(value) > MaxData {
		return fmt.Errorf("%w: %d bytes (at most %d per plugin)", ErrDataFull, len(key)+len(value), MaxData)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.findInstalled(id)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.Bucket(bucketData).CreateBucketIfNotExists(identity(p.Entry.Publisher, p.Entry.Name))
		if err != nil {
			return err
		}
		if value == "" {
			return b.Delete([]byte(key))
		}
		size, keys := len(key)+len(value), 1
		b.ForEach(func(k, v []byte) error {
			if string(k) != key {
				size += len(k) + len(v)
				keys++
			}
			return nil
		})
		if size > MaxData || keys > maxDataKeys {
			return fmt.Errorf("%w: %d bytes in %d keys (at most %d bytes, %d keys)", ErrDataFull, size, keys, MaxData, maxDataKeys)
		}
		return b.Put([]byte(key), []byte(value))
	})
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
