package music

import (
	"encoding/json"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/shards"
)

// The buckets music keeps in the node's DB.
var (
	// bucketTags: track MD5 -> tagRecord, so a file is parsed once
	// whatever its name or path, and a rescan of unchanged files parses
	// none.
	bucketTags = []byte("music/tags")
	// bucketAtts: track MD5 -> attachment.
	bucketAtts = []byte("music/atts")
	// bucketKnown: track MD5 -> entry, for tracks of peers streamed or
	// attached to here.
	bucketKnown = []byte("music/known")
	// bucketBans: "patterns" -> JSON list of regular expressions.
	bucketBans = []byte("music/bans")
	// bucketThumbs: cover MD5 -> JPEG thumbnail.
	bucketThumbs = []byte("music/thumbs")
	// bucketCache: track MD5 -> when it was last played (Unix ms, 8
	// bytes big-endian), for the tracks this node fetched to play them.
	bucketCache = []byte("music/cache")
)

// tagRecord is what a file says of itself (meta.Info without the bytes
// of its cover and lyrics, which are attachments), or why it was skipped.
type tagRecord struct {
	Title      string     `json:"title,omitempty"`
	Artist     string     `json:"artist,omitempty"`
	Album      string     `json:"album,omitempty"`
	Track      int        `json:"track,omitempty"`
	Year       int        `json:"year,omitempty"`
	Duration   float64    `json:"duration,omitempty"`
	Format     string     `json:"format,omitempty"`
	Bitrate    int        `json:"bitrate,omitempty"`
	SampleRate int        `json:"sample_rate,omitempty"`
	Channels   int        `json:"channels,omitempty"`
	Cover      shards.MD5 `json:"cover"`  // the embedded cover, as an attachment resource
	Lyrics     shards.MD5 `json:"lyrics"` // the embedded lyrics, likewise
	Err        string     `json:"err,omitempty"`
}

// attachment is what a user attached to a track on this node.
type attachment struct {
	Cover  shards.MD5 `json:"cover"`
	Lyrics shards.MD5 `json:"lyrics"`
	At     int64      `json:"at"` // Unix ms of the last change
}

// load reads the attachments, the known tracks and the bans.
func (s *Service) load() error {
	s.atts = make(map[shards.MD5]attachment)
	s.known = make(map[shards.MD5]entry)
	var bans []string
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketTags, bucketAtts, bucketKnown, bucketBans, bucketThumbs, bucketCache} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketAtts).ForEach(func(k, v []byte) error {
			var a attachment
			if len(k) == 16 && json.Unmarshal(v, &a) == nil {
				s.atts[shards.MD5(k)] = a
			}
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketKnown).ForEach(func(k, v []byte) error {
			var e entry
			if len(k) == 16 && json.Unmarshal(v, &e) == nil {
				s.known[shards.MD5(k)] = e
			}
			return nil
		}); err != nil {
			return err
		}
		if err := s.loadCache(tx); err != nil {
			return err
		}
		if v := tx.Bucket(bucketBans).Get([]byte("patterns")); v != nil {
			if err := json.Unmarshal(v, &bans); err != nil {
				return fmt.Errorf("ban list: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("music: load: %w", err)
	}
	res, err := compileBans(bans)
	if err != nil {
		return fmt.Errorf("music: stored %w", err)
	}
	s.bans, s.banSrc = res, bans
	return nil
}

// putJSON stores v under key in bucket.
func (s *Service) putJSON(bucket []byte, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucket).Put(key, b) }); err != nil {
		return fmt.Errorf("music: store: %w", err)
	}
	return nil
}

// cachedTags returns the tag records the DB holds of ids.
func (s *Service) cachedTags(ids []shards.MD5) (map[shards.MD5]tagRecord, error) {
	out := make(map[shards.MD5]tagRecord, len(ids))
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketTags)
		for _, id := range ids {
			v := b.Get(id[:])
			if v == nil {
				continue
			}
			var r tagRecord
			if json.Unmarshal(v, &r) == nil {
				out[id] = r
			}
		}
		return nil
	})
	return out, err
}

func (s *Service) getBytes(bucket []byte, key []byte) []byte {
	var out []byte
	s.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucket).Get(key); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out
}

func (s *Service) putBytes(bucket []byte, key, v []byte) error {
	return s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucket).Put(key, v) })
}
