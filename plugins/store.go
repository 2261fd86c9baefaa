package plugins

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// The service's buckets in the node's database.
var (
	// bucketFiles: MD5 -> file bytes, of the published and installed
	// plugins, so that they run with their publisher offline.
	bucketFiles = []byte("plugins/files")
	// bucketPublished: name -> Entry, this node's latest of each name.
	bucketPublished = []byte("plugins/published")
	// bucketInstalled: publisher/name -> installed.
	bucketInstalled = []byte("plugins/installed")
	// bucketData: publisher/name -> a bucket of the plugin's data.
	bucketData = []byte("plugins/data")
	// bucketSeen: MD5 -> seen, market entries of any node.
	bucketSeen = []byte("plugins/seen")
)

// Limits of a plugin's data.
const (
	// MaxData bounds the bytes (keys and values) one plugin keeps.
	MaxData = 64 << 10
	// maxDataKeys bounds its keys, maxDataKey a key's bytes.
	maxDataKeys = 256
	maxDataKey  = 128
)

// installed is an installed plugin as the DB keeps it.
type installed struct {
	Entry         Entry     `json:"entry"`
	PublisherName string    `json:"publisher_name"`
	Granted       []string  `json:"granted"`
	Enabled       bool      `json:"enabled"`
	At            time.Time `json:"at"`
}

// seen is a market entry as the DB keeps it, for the market to show when
// its publisher is offline.
type seen struct {
	Entry         Entry  `json:"entry"`
	PublisherName string `json:"publisher_name"`
	At            int64  `json:"at"` // Unix ms, last seen online
}

// identity is the key of a plugin's identity: publisher and name.
func identity(publisher mesh.ID, name string) []byte {
	return []byte(string(publisher) + "/" + name)
}

func (s *Service) load() error {
	s.seen = make(map[shards.MD5]seen)
	return s.db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketFiles, bucketPublished, bucketInstalled, bucketData, bucketSeen} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("plugins: %w", err)
			}
		}
		if err := tx.Bucket(bucketPublished).ForEach(func(k, v []byte) error {
			var e Entry
			if json.Unmarshal(v, &e) == nil {
				s.own.Put(1, e)
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketSeen).ForEach(func(k, v []byte) error {
			var e seen
			if len(k) == 16 && json.Unmarshal(v, &e) == nil {
				s.seen[shards.MD5(k)] = e
			}
			return nil
		})
	})
}

// installedList reads the installed plugins.
func (s *Service) installedList() ([]installed, error) {
	var out []installed
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketInstalled).ForEach(func(k, v []byte) error {
			var p installed
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("plugins: installed %q: %w", k, err)
			}
			out = append(out, p)
			return nil
		})
	})
	return out, err
}

// findInstalled returns the installed plugin whose current version is id.
func (s *Service) findInstalled(id shards.MD5) (installed, error) {
	all, err := s.installedList()
	if err != nil {
		return installed{}, err
	}
	i := slices.IndexFunc(all, func(p installed) bool { return p.Entry.ID == id })
	if i < 0 {
		return installed{}, fmt.Errorf("%w: %s is not installed", ErrUnknown, id)
	}
	return all[i], nil
}

func putJSON(tx *bbolt.Tx, bucket, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put(key, b)
}

// fileUsed reports whether a published or installed plugin is id: its
// bytes stay.
func fileUsed(tx *bbolt.Tx, id shards.MD5) bool {
	used := false
	check := func(e Entry) {
		if e.ID == id {
			used = true
		}
	}
	tx.Bucket(bucketPublished).ForEach(func(k, v []byte) error {
		var e Entry
		if json.Unmarshal(v, &e) == nil {
			check(e)
		}
		return nil
	})
	tx.Bucket(bucketInstalled).ForEach(func(k, v []byte) error {
		var p installed
		if json.Unmarshal(v, &p) == nil {
			check(p.Entry)
		}
		return nil
	})
	return used
}

// file returns the bytes of a published or installed plugin.
func (s *Service) file(id shards.MD5) ([]byte, bool) {
	var out []byte
	s.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketFiles).Get(id[:]); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, out != nil
}
