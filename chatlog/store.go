package chatlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/mesh"
)

// Top-level buckets of the store in the node's bbolt file. Nobody else
// reads them.
var (
	// ChannelID -> JSON Channel.
	bucketChannels = []byte("chat/channels")
	// ChannelID -> bucket of timeKey(Time) ‖ ID -> stored message
	// (see storedValue). Keys sort by (Time, ID).
	bucketMessages = []byte("chat/messages")
	// ID -> ChannelID ‖ timeKey(Time): where a message is.
	bucketIndex = []byte("chat/index")
	// ID of a retracted text message -> ID of the retract that applies.
	bucketRetracted = []byte("chat/retracted")
	// Ref ‖ retract ID -> empty: retracts whose target is not stored yet.
	bucketPending = []byte("chat/pending")
	// ID -> empty: messages the user marked to keep.
	bucketMarks = []byte("chat/marks")
)

const (
	timeKeyLen = 8
	msgKeyLen  = timeKeyLen + len(ID{})
	indexLen   = len(ChannelID{}) + timeKeyLen
	// maxList bounds a List page.
	maxList = 1000
	// defaultList is the page size for limit <= 0.
	defaultList = 100
)

// timeKey encodes t so that big-endian byte order is numeric order,
// negative times included.
func timeKey(t int64) [timeKeyLen]byte {
	var k [timeKeyLen]byte
	binary.BigEndian.PutUint64(k[:], uint64(t)^(1<<63))
	return k
}

func keyTime(k []byte) int64 { return int64(binary.BigEndian.Uint64(k) ^ (1 << 63)) }

func msgKey(t int64, id ID) []byte {
	k := make([]byte, 0, msgKeyLen)
	tk := timeKey(t)
	k = append(k, tk[:]...)
	return append(k, id[:]...)
}

// Store keeps chat channels and their messages in buckets of a bbolt
// database that it shares with other services. All methods are safe for
// concurrent use. Messages returned are copies; callers may keep them.
type Store struct {
	db *bbolt.DB

	// Group commit of Put (see update).
	mu      sync.Mutex
	queue   []*commitReq
	leading bool

	// useBatch makes Put go through db.Batch instead, for the benchmark
	// that compares the two.
	useBatch bool
	// commits counts the transactions of the group commit, for the
	// benchmark.
	commits atomic.Int64
}

// OpenStore creates the store's buckets in db if they are missing. The
// caller owns db and closes it after the last use of the store.
func OpenStore(db *bbolt.DB) (*Store, error) {
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketChannels, bucketMessages, bucketIndex, bucketRetracted, bucketPending, bucketMarks} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("chatlog: open store: %w", err)
	}
	return &Store{db: db}, nil
}

// PutChannel stores c, replacing what was stored under c.ID. It does not
// verify c; callers do that for channels from peers.
func (s *Store) PutChannel(c Channel) error {
	v, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("chatlog: put channel: %w", err)
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketChannels).Put(c.ID[:], v)
	})
	if err != nil {
		return fmt.Errorf("chatlog: put channel: %w", err)
	}
	return nil
}

// Channel returns the stored channel id.
func (s *Store) Channel(id ChannelID) (c Channel, ok bool, err error) {
	err = s.db.View(func(tx *bbolt.Tx) error {
		c, ok, err = getChannel(tx, id)
		return err
	})
	return c, ok, err
}

func getChannel(tx *bbolt.Tx, id ChannelID) (Channel, bool, error) {
	v := tx.Bucket(bucketChannels).Get(id[:])
	if v == nil {
		return Channel{}, false, nil
	}
	var c Channel
	if err := json.Unmarshal(v, &c); err != nil {
		return Channel{}, false, fmt.Errorf("chatlog: channel %v: %w", id, err)
	}
	c.ID = id
	return c, true, nil
}

// Channels returns every stored channel, ordered by ID.
func (s *Store) Channels() ([]Channel, error) {
	var out []Channel
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketChannels).ForEach(func(k, v []byte) error {
			var c Channel
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("chatlog: channel %x: %w", k, err)
			}
			copy(c.ID[:], k)
			out = append(out, c)
			return nil
		})
	})
	return out, err
}

// Put stores messages, skipping those already stored, and returns how many
// it added. The messages must come from Decode or NewMessage (Put checks
// only that each ID matches its fields, not the signature) and should have
// passed Check and the caller's authorship rules.
//
// When Put returns nil, the messages are on disk (fsync). Concurrent calls
// share one transaction and one fsync: while a commit runs, the calls that
// arrive wait and are committed together right after it. ctx is checked
// before the write starts; a started write is waited for (one or two
// fsyncs).
//
// If any message's channel is stored with Burn set, Put stores none of ms
// and returns an error wrapping ErrBurn. Messages of a channel that is not
// stored are accepted.
//
// A KindRetract is indexed (see Retracted) when its Ref is a stored text
// message of the same channel and author. If the Ref is not stored yet,
// the retract is stored and kept pending: when the referenced message
// arrives, the same rule is applied then, so the message is hidden from
// Items from the moment it is stored. A retract by someone else than the
// author is stored (it is a message of the channel) but never takes effect.
func (s *Store) Put(ctx context.Context, ms ...*Message) (added int, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if len(ms) == 0 {
		return 0, nil
	}
	vals := make([][]byte, len(ms))
	for i, m := range ms {
		if m == nil {
			return 0, fmt.Errorf("chatlog: put: nil message")
		}
		enc := m.Encode()
		if ID(sha256.Sum256(enc[:len(enc)-len(m.Sig)-uvarintLen(uint64(len(m.Sig)))])) != m.ID {
			return 0, fmt.Errorf("%w: put: message %v does not match its fields", ErrBadMessage, m.ID)
		}
		v := make([]byte, 0, 1+len(m.Author)+len(enc))
		v = append(v, byte(len(m.Author)))
		v = append(v, m.Author...)
		vals[i] = append(v, enc...)
	}
	apply := func(tx *bbolt.Tx) error {
		added = 0 // apply may run more than once
		return putTx(tx, ms, vals, &added)
	}
	if s.useBatch {
		err = s.db.Batch(apply)
	} else {
		err = s.update(apply)
	}
	if err != nil {
		return 0, fmt.Errorf("chatlog: put: %w", err)
	}
	return added, nil
}

func putTx(tx *bbolt.Tx, ms []*Message, vals [][]byte, added *int) error {
	msgs := tx.Bucket(bucketMessages)
	index := tx.Bucket(bucketIndex)
	burn := make(map[ChannelID]bool, 1)
	for _, m := range ms {
		b, seen := burn[m.Channel]
		if !seen {
			c, ok, err := getChannel(tx, m.Channel)
			if err != nil {
				return err
			}
			b = ok && c.Burn
			burn[m.Channel] = b
		}
		if b {
			return fmt.Errorf("%w: channel %v", ErrBurn, m.Channel)
		}
	}
	for i, m := range ms {
		if index.Get(m.ID[:]) != nil {
			continue
		}
		cb, err := msgs.CreateBucketIfNotExists(m.Channel[:])
		if err != nil {
			return err
		}
		tk := timeKey(m.Time)
		if err := cb.Put(msgKey(m.Time, m.ID), vals[i]); err != nil {
			return err
		}
		loc := make([]byte, 0, indexLen)
		loc = append(append(loc, m.Channel[:]...), tk[:]...)
		if err := index.Put(m.ID[:], loc); err != nil {
			return err
		}
		*added++
		switch m.Kind {
		case KindRetract:
			if err := indexRetract(tx, m); err != nil {
				return err
			}
		case KindText:
			if err := applyPending(tx, m); err != nil {
				return err
			}
		}
	}
	return nil
}

// retractApplies reports whether retract r takes effect on target t.
func retractApplies(r, t *Message) bool {
	return t.Kind == KindText && t.Author == r.Author && t.Channel == r.Channel
}

// indexRetract records a newly stored retract r.
func indexRetract(tx *bbolt.Tx, r *Message) error {
	t, ok, err := getTx(tx, r.Ref)
	if err != nil {
		return err
	}
	if !ok {
		return tx.Bucket(bucketPending).Put(append(r.Ref[:len(r.Ref):len(r.Ref)], r.ID[:]...), nil)
	}
	ret := tx.Bucket(bucketRetracted)
	if !retractApplies(r, t) || ret.Get(r.Ref[:]) != nil {
		return nil
	}
	return ret.Put(r.Ref[:], r.ID[:])
}

// applyPending applies the pending retracts of a newly stored text
// message t and drops them from the pending bucket.
func applyPending(tx *bbolt.Tx, t *Message) error {
	pending := tx.Bucket(bucketPending)
	var rids []ID
	c := pending.Cursor()
	for k, _ := c.Seek(t.ID[:]); k != nil && bytes.HasPrefix(k, t.ID[:]); k, _ = c.Next() {
		rids = append(rids, ID(k[len(ID{}):]))
	}
	ret := tx.Bucket(bucketRetracted)
	for _, rid := range rids {
		if err := pending.Delete(append(t.ID[:len(t.ID):len(t.ID)], rid[:]...)); err != nil {
			return err
		}
		r, ok, err := getTx(tx, rid)
		if err != nil {
			return err
		}
		if ok && retractApplies(r, t) && ret.Get(t.ID[:]) == nil {
			if err := ret.Put(t.ID[:], rid[:]); err != nil {
				return err
			}
		}
	}
	return nil
}

// commitReq is one Put waiting for the group commit.
type commitReq struct {
	apply func(*bbolt.Tx) error
	err   error
	lead  bool          // set before wake is closed: commit the queue
	wake  chan struct{} // closed when done, or when this request is to lead
}

// update runs apply in a read-write transaction and returns once it is
// committed. One caller at a time commits (the leader), taking every
// request queued so far into one transaction; the calls that arrive
// meanwhile queue, and when the leader is done it hands the lead to the
// first of them. A lone writer so pays one fsync and no delay, and n
// concurrent writers share fsyncs. (db.Batch would make a lone writer wait
// MaxBatchDelay, 10 ms by default, on every call; see BENCHMARKS.md.)
func (s *Store) update(apply func(*bbolt.Tx) error) error {
	r := &commitReq{apply: apply, wake: make(chan struct{})}
	s.mu.Lock()
	s.queue = append(s.queue, r)
	if s.leading {
		s.mu.Unlock()
		<-r.wake
		if !r.lead {
			return r.err
		}
		s.mu.Lock()
	}
	s.leading = true
	batch := s.queue
	s.queue = nil
	s.mu.Unlock()

	s.commit(batch)
	for _, q := range batch {
		if q != r {
			close(q.wake)
		}
	}

	s.mu.Lock()
	if len(s.queue) > 0 {
		next := s.queue[0]
		next.lead = true
		close(next.wake)
	} else {
		s.leading = false
	}
	s.mu.Unlock()
	return r.err
}

// commit runs batch in one transaction and sets each request's err. If one
// request fails, the transaction is rolled back, that request is run alone
// to get its own error, and the others are committed again without it.
func (s *Store) commit(batch []*commitReq) {
	for len(batch) > 0 {
		failed := -1
		err := s.db.Update(func(tx *bbolt.Tx) error {
			for i, q := range batch {
				if err := q.apply(tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		s.commits.Add(1)
		if err == nil || failed < 0 {
			for _, q := range batch {
				q.err = err
			}
			return
		}
		if len(batch) == 1 {
			batch[0].err = err
			return
		}
		q := batch[failed]
		q.err = s.db.Update(q.apply)
		batch = append(batch[:failed:failed], batch[failed+1:]...)
	}
}

// Get returns the stored message id.
func (s *Store) Get(id ID) (m *Message, ok bool, err error) {
	err = s.db.View(func(tx *bbolt.Tx) error {
		m, ok, err = getTx(tx, id)
		return err
	})
	return m, ok, err
}

func getTx(tx *bbolt.Tx, id ID) (*Message, bool, error) {
	loc := tx.Bucket(bucketIndex).Get(id[:])
	if loc == nil {
		return nil, false, nil
	}
	if len(loc) != indexLen {
		return nil, false, fmt.Errorf("chatlog: index entry of %v is corrupt", id)
	}
	cb := tx.Bucket(bucketMessages).Bucket(loc[:len(ChannelID{})])
	if cb == nil {
		return nil, false, fmt.Errorf("chatlog: message %v: channel bucket missing", id)
	}
	v := cb.Get(msgKey(keyTime(loc[len(ChannelID{}):]), id))
	if v == nil {
		return nil, false, fmt.Errorf("chatlog: message %v: indexed but missing", id)
	}
	m, err := decodeStored(id, v)
	return m, err == nil, err
}

// decodeStored decodes a stored value: author length, author, encoding.
// The signature was verified before the message was stored and is not
// checked again; the ID is, so that a damaged record is caught.
func decodeStored(id ID, v []byte) (*Message, error) {
	if len(v) == 0 || len(v) < 1+int(v[0]) {
		return nil, fmt.Errorf("chatlog: message %v: stored record is corrupt", id)
	}
	alen := int(v[0])
	m, signed, err := parse(v[1+alen:])
	if err != nil {
		return nil, fmt.Errorf("chatlog: message %v: stored record: %w", id, err)
	}
	m.ID = sha256.Sum256(signed)
	if m.ID != id {
		return nil, fmt.Errorf("chatlog: message %v: stored record does not match its id", id)
	}
	m.Author = mesh.ID(v[1 : 1+alen])
	return m, nil
}

// storedKind is the kind of a stored value, without decoding it.
func storedKind(v []byte) Kind {
	if len(v) == 0 || len(v) < 1+int(v[0])+2 {
		return 0
	}
	return Kind(v[1+int(v[0])+1])
}

// Has reports whether message id is stored.
func (s *Store) Has(id ID) (ok bool, err error) {
	err = s.db.View(func(tx *bbolt.Tx) error {
		ok = tx.Bucket(bucketIndex).Get(id[:]) != nil
		return nil
	})
	return ok, err
}

// List returns up to limit stored messages of ch, of every kind, with Time
// before before (0: the newest), oldest first. Pass the Time of the first
// message as before to get the page before it. A page never splits a
// millisecond: when several messages share the time of the oldest one, all
// of them are included, so a page may hold more than limit. limit <= 0
// means 100; at most 1000.
func (s *Store) List(ch ChannelID, before int64, limit int) ([]*Message, error) {
	if limit <= 0 {
		limit = defaultList
	}
	limit = min(limit, maxList)
	var out []*Message
	err := s.db.View(func(tx *bbolt.Tx) error {
		cb := tx.Bucket(bucketMessages).Bucket(ch[:])
		if cb == nil {
			return nil
		}
		c := cb.Cursor()
		var k, v []byte
		if before == 0 {
			k, v = c.Last()
		} else {
			tk := timeKey(before)
			if k, _ = c.Seek(tk[:]); k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		}
		for ; k != nil; k, v = c.Prev() {
			if len(out) >= limit && keyTime(k) != out[len(out)-1].Time {
				break
			}
			m, err := decodeStored(ID(k[timeKeyLen:]), v)
			if err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// Items returns the time and ID of every stored message of ch with Time >=
// since, sorted by (Time, ID), leaving out retracted messages (retracts
// and settings themselves are included). It is what range reconciliation
// compares.
func (s *Store) Items(ch ChannelID, since int64) ([]Item, error) {
	var out []Item
	err := s.db.View(func(tx *bbolt.Tx) error {
		cb := tx.Bucket(bucketMessages).Bucket(ch[:])
		if cb == nil {
			return nil
		}
		ret := tx.Bucket(bucketRetracted)
		c := cb.Cursor()
		tk := timeKey(since)
		for k, v := c.Seek(tk[:]); k != nil; k, v = c.Next() {
			id := ID(k[timeKeyLen:])
			if storedKind(v) == KindText && ret.Get(id[:]) != nil {
				continue
			}
			out = append(out, Item{Time: keyTime(k), ID: id})
		}
		return nil
	})
	return out, err
}

// Retracted reports whether a retract by its author applies to message id
// (see Put). It stays true after the message is pruned while the retract
// is still stored, so that the message stays hidden if it comes again.
func (s *Store) Retracted(id ID) (ok bool, err error) {
	err = s.db.View(func(tx *bbolt.Tx) error {
		ok = tx.Bucket(bucketRetracted).Get(id[:]) != nil
		return nil
	})
	return ok, err
}

// SetMark marks (on) or unmarks message id. A marked message is kept by
// Prune whatever the range. The message must be stored.
func (s *Store) SetMark(id ID, on bool) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		marks := tx.Bucket(bucketMarks)
		if !on {
			return marks.Delete(id[:])
		}
		if tx.Bucket(bucketIndex).Get(id[:]) == nil {
			return fmt.Errorf("chatlog: mark %v: message not stored", id)
		}
		return marks.Put(id[:], nil)
	})
}

// Marked reports whether message id is marked.
func (s *Store) Marked(id ID) (ok bool, err error) {
	err = s.db.View(func(tx *bbolt.Tx) error {
		ok = tx.Bucket(bucketMarks).Get(id[:]) != nil
		return nil
	})
	return ok, err
}

// Lower returns the oldest time (unix ms) that this device keeps of ch
// under r: the later of now minus r.Days days and the time of the
// r.Count-th newest stored text message; 0 when r sets no limit, or when
// fewer than r.Count text messages are stored and r.Days is 0.
func (s *Store) Lower(ch ChannelID, r Range, now time.Time) (lower int64, err error) {
	err = s.db.View(func(tx *bbolt.Tx) error {
		lower = lowerTx(tx, ch, r, now)
		return nil
	})
	return lower, err
}

func lowerTx(tx *bbolt.Tx, ch ChannelID, r Range, now time.Time) int64 {
	var lower int64
	if r.Days > 0 {
		lower = now.Add(-time.Duration(r.Days) * 24 * time.Hour).UnixMilli()
	}
	if r.Count <= 0 {
		return lower
	}
	cb := tx.Bucket(bucketMessages).Bucket(ch[:])
	if cb == nil {
		return lower
	}
	c := cb.Cursor()
	n := 0
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		if storedKind(v) != KindText {
			continue
		}
		if n++; n == r.Count {
			return max(lower, keyTime(k))
		}
	}
	return lower
}

// Prune drops the messages of ch that r does not keep: those with Time
// before Lower(ch, r, now). Marked messages and setting messages are kept.
// It returns how many it dropped.
func (s *Store) Prune(ch ChannelID, r Range, now time.Time) (removed int, err error) {
	err = s.db.Update(func(tx *bbolt.Tx) error {
		removed = 0
		lower := lowerTx(tx, ch, r, now)
		if lower == 0 && r.Days <= 0 {
			return nil // keeps everything
		}
		cb := tx.Bucket(bucketMessages).Bucket(ch[:])
		if cb == nil {
			return nil
		}
		marks := tx.Bucket(bucketMarks)
		var gone []*Message
		var keys [][]byte
		c := cb.Cursor()
		lk := timeKey(lower)
		for k, v := c.First(); k != nil && bytes.Compare(k, lk[:]) < 0; k, v = c.Next() {
			id := ID(k[timeKeyLen:])
			if storedKind(v) == KindSetting || marks.Get(id[:]) != nil {
				continue
			}
			m, err := decodeStored(id, v)
			if err != nil {
				return err
			}
			gone = append(gone, m)
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if err := cb.Delete(k); err != nil {
				return err
			}
		}
		removed = len(gone)
		return dropAll(tx, gone)
	})
	return removed, err
}

// dropAll removes the index entries of messages already deleted from their
// channel bucket, and the retraction records that no longer serve.
func dropAll(tx *bbolt.Tx, gone []*Message) error {
	index := tx.Bucket(bucketIndex)
	marks := tx.Bucket(bucketMarks)
	for _, m := range gone {
		if err := errors.Join(index.Delete(m.ID[:]), marks.Delete(m.ID[:])); err != nil {
			return err
		}
	}
	ret := tx.Bucket(bucketRetracted)
	pending := tx.Bucket(bucketPending)
	for _, m := range gone {
		switch m.Kind {
		case KindText:
			// Keep the record while its retract is stored.
			if rid := ret.Get(m.ID[:]); rid != nil && index.Get(rid) == nil {
				if err := ret.Delete(m.ID[:]); err != nil {
					return err
				}
			}
		case KindRetract:
			if err := pending.Delete(append(m.Ref[:len(m.Ref):len(m.Ref)], m.ID[:]...)); err != nil {
				return err
			}
			// Keep the record while the retracted message is stored.
			if rid := ret.Get(m.Ref[:]); bytes.Equal(rid, m.ID[:]) && index.Get(m.Ref[:]) == nil {
				if err := ret.Delete(m.Ref[:]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Forget deletes every message of ch, with their marks and retraction
// records; the channel itself stays. It is used when burn-after-read is
// switched on.
func (s *Store) Forget(ch ChannelID) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		msgs := tx.Bucket(bucketMessages)
		cb := msgs.Bucket(ch[:])
		if cb == nil {
			return nil
		}
		var gone []*Message
		err := cb.ForEach(func(k, v []byte) error {
			m, err := decodeStored(ID(k[timeKeyLen:]), v)
			if err != nil {
				return err
			}
			gone = append(gone, m)
			return nil
		})
		if err != nil {
			return err
		}
		if err := msgs.DeleteBucket(ch[:]); err != nil {
			return err
		}
		return dropAll(tx, gone)
	})
}
