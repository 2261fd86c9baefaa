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
	// ChannelID -> encoded Usage: kept up to date with every change, so
	// that enforcing a range or the quota does not scan the channel.
	bucketUsage = []byte("chat/usage")
	// Scratch data written over free pages (see Scrub). It is created,
	// empty, in the transaction that deletes a burnt history and deleted
	// when a scrub has finished: while it exists, free pages may still
	// hold deleted messages, and a scrub is due (after a crash too).
	bucketScrub = []byte("chat/scrub")
)

const (
	timeKeyLen = 8
	msgKeyLen  = timeKeyLen + len(ID{})
	indexLen   = len(ChannelID{}) + timeKeyLen
	// maxList bounds a List page.
	maxList = 1000
	// defaultList is the page size for limit <= 0.
	defaultList = 100
	// dayMs is a day in unix milliseconds.
	dayMs = int64(24 * time.Hour / time.Millisecond)
	// usageLen is the length of an encoded Usage.
	usageLen = 3 * 8
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

	// quota applies to every channel (see SetQuota).
	quota atomic.Pointer[Quota]
	// now is the clock of the day ranges; tests set it.
	now func() time.Time
	// scrubMu lets one scrub run at a time.
	scrubMu sync.Mutex
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
		// A scrub that did not finish left its scratch data: free it,
		// and keep the bucket, empty, as the sign that a scrub is due.
		if tx.Bucket(bucketScrub) != nil {
			if err := tx.DeleteBucket(bucketScrub); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(bucketScrub); err != nil {
				return err
			}
		}
		if tx.Bucket(bucketUsage) != nil {
			return nil
		}
		// A database from before usage was counted: count it once.
		if _, err := tx.CreateBucket(bucketUsage); err != nil {
			return err
		}
		return countUsage(tx)
	})
	if err != nil {
		return nil, fmt.Errorf("chatlog: open store: %w", err)
	}
	s := &Store{db: db, now: time.Now}
	s.quota.Store(&Quota{})
	return s, nil
}

// SetQuota sets the quota of every channel; the zero Quota (the default)
// sets none. It applies from the next message stored and to PruneAll.
func (s *Store) SetQuota(q Quota) { s.quota.Store(&q) }

func (s *Store) getQuota() Quota { return *s.quota.Load() }

// PutChannel stores c, replacing what was stored under c.ID, and applies
// c.Range (and the quota) to the channel's messages. It does not verify c;
// callers do that for channels from peers.
//
// With c.Burn set, the messages of the channel already stored are deleted
// in the same transaction (the owner's settings stay, so that the channel
// can still prove it burns), and then scrubbed from the database file
// (see Scrub): switching burn-after-read on leaves no earlier message on
// disk.
func (s *Store) PutChannel(c Channel) error {
	forgot, err := s.putChannel(c)
	if err != nil {
		return err
	}
	if forgot > 0 {
		if err := s.Scrub(context.Background()); err != nil {
			return fmt.Errorf("chatlog: put channel: %w", err)
		}
	}
	return nil
}

// putChannel is PutChannel but for the scrub, which is due when it forgot
// messages (see Scrub).
func (s *Store) putChannel(c Channel) (forgot int, err error) {
	v, err := json.Marshal(c)
	if err != nil {
		return 0, fmt.Errorf("chatlog: put channel: %w", err)
	}
	q, now := s.getQuota(), s.now()
	err = s.db.Update(func(tx *bbolt.Tx) error {
		forgot = 0
		if err := tx.Bucket(bucketChannels).Put(c.ID[:], v); err != nil {
			return err
		}
		if c.Burn {
			var err error
			forgot, err = forgetTx(tx, c.ID)
			return err
		}
		_, err := trimTx(tx, c.ID, c.Range, q, now)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("chatlog: put channel: %w", err)
	}
	return forgot, nil
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
//
// In the same transaction, Put applies the stored range of each channel it
// wrote to and the quota (see Prune), from the oldest end of the channel:
// a message that falls outside them is not kept, and added does not count
// it.
func (s *Store) Put(ctx context.Context, ms ...*Message) (added int, err error) {
	return s.put(ctx, s.update, ms)
}

// put is Put with the way of committing given: the group commit (update),
// or, for the benchmark that compares them, bbolt's db.Batch.
func (s *Store) put(ctx context.Context, commit func(func(*bbolt.Tx) error) error, ms []*Message) (added int, err error) {
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
	q, now := s.getQuota(), s.now()
	apply := func(tx *bbolt.Tx) error {
		added = 0 // apply may run more than once
		return putTx(tx, ms, vals, q, now, &added)
	}
	if err := commit(apply); err != nil {
		return 0, fmt.Errorf("chatlog: put: %w", err)
	}
	return added, nil
}

func putTx(tx *bbolt.Tx, ms []*Message, vals [][]byte, q Quota, now time.Time, added *int) error {
	msgs := tx.Bucket(bucketMessages)
	index := tx.Bucket(bucketIndex)
	// The channels written to, with their stored record (zero if none).
	chans := make(map[ChannelID]Channel, 1)
	var order []ChannelID
	for _, m := range ms {
		c, seen := chans[m.Channel]
		if !seen {
			var err error
			if c, _, err = getChannel(tx, m.Channel); err != nil {
				return err
			}
			chans[m.Channel] = c
			order = append(order, m.Channel)
		}
		if c.Burn {
			return fmt.Errorf("%w: channel %v", ErrBurn, m.Channel)
		}
	}
	fresh := make(map[ID]bool, len(ms))
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
		u, err := getUsage(tx, m.Channel)
		if err != nil {
			return err
		}
		u.add(m.Kind, len(vals[i]), 1)
		if err := putUsage(tx, m.Channel, u); err != nil {
			return err
		}
		fresh[m.ID] = true
		*added++
		switch m.Kind {
		case KindRetract:
			if err := indexRetract(tx, m); err != nil {
				return err
			}
		case KindText, KindGuest:
			if err := applyPending(tx, m); err != nil {
				return err
			}
		}
	}
	for _, ch := range order {
		gone, err := trimTx(tx, ch, chans[ch].Range, q, now)
		if err != nil {
			return err
		}
		for _, m := range gone {
			if fresh[m.ID] {
				*added--
			}
		}
	}
	return nil
}

// retractApplies reports whether retract r takes effect on target t.
func retractApplies(r, t *Message) bool {
	return t.Kind.text() && t.Author == r.Author && t.Channel == r.Channel
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
			if storedKind(v).text() && ret.Get(id[:]) != nil {
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
// Prune whatever the range, and does not count against the quota. The
// message must be stored to be marked. Unmarking applies the channel's
// range and the quota again, so a message outside them goes at once.
func (s *Store) SetMark(id ID, on bool) error {
	q, now := s.getQuota(), s.now()
	return s.db.Update(func(tx *bbolt.Tx) error {
		marks := tx.Bucket(bucketMarks)
		marked := marks.Get(id[:]) != nil
		ch, v, ok, err := storedValue(tx, id)
		if err != nil {
			return err
		}
		if !ok {
			if on {
				return fmt.Errorf("chatlog: mark %v: message not stored", id)
			}
			return marks.Delete(id[:])
		}
		if on == marked {
			return nil
		}
		u, err := getUsage(tx, ch)
		if err != nil {
			return err
		}
		kind := storedKind(v)
		if on {
			u.uncount(kind, len(v))
			if err := marks.Put(id[:], nil); err != nil {
				return err
			}
		} else {
			u.recount(kind, len(v))
			if err := marks.Delete(id[:]); err != nil {
				return err
			}
		}
		if err := putUsage(tx, ch, u); err != nil {
			return err
		}
		if on {
			return nil
		}
		c, _, err := getChannel(tx, ch)
		if err != nil {
			return err
		}
		_, err = trimTx(tx, ch, c.Range, q, now)
		return err
	})
}

// storedValue finds the stored value of message id and its channel.
func storedValue(tx *bbolt.Tx, id ID) (ch ChannelID, v []byte, ok bool, err error) {
	loc := tx.Bucket(bucketIndex).Get(id[:])
	if loc == nil {
		return ch, nil, false, nil
	}
	if len(loc) != indexLen {
		return ch, nil, false, fmt.Errorf("chatlog: index entry of %v is corrupt", id)
	}
	ch = ChannelID(loc[:len(ChannelID{})])
	cb := tx.Bucket(bucketMessages).Bucket(ch[:])
	if cb == nil {
		return ch, nil, false, fmt.Errorf("chatlog: message %v: channel bucket missing", id)
	}
	v = cb.Get(msgKey(keyTime(loc[len(ChannelID{}):]), id))
	if v == nil {
		return ch, nil, false, fmt.Errorf("chatlog: message %v: indexed but missing", id)
	}
	return ch, v, true, nil
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
// under r and the quota: the latest of now minus r.Days days, the time of
// the r.Count-th newest stored text message, and, once the channel's quota
// is full, the time of its oldest message that the quota counts. It is 0
// when none of them limits. A message older than Lower would not be kept,
// so sync neither asks for nor serves one.
func (s *Store) Lower(ch ChannelID, r Range, now time.Time) (lower int64, err error) {
	q := s.getQuota()
	err = s.db.View(func(tx *bbolt.Tx) error {
		cb := tx.Bucket(bucketMessages).Bucket(ch[:])
		if cb == nil {
			lower, _ = daysLower(r.Days, now)
			return nil
		}
		u, err := getUsage(tx, ch)
		if err != nil {
			return err
		}
		l, ok := rangeLower(cb, u, r, now)
		if q.full(u) {
			if ql, found := oldestCounted(tx, cb); found && (!ok || ql > l) {
				l, ok = ql, true
			}
		}
		if ok {
			lower = l
		}
		return nil
	})
	return lower, err
}

// daysLower is the oldest time that a range of days keeps at now, and
// whether it limits at all. It counts in milliseconds: as a time.Duration,
// days*24h overflows from 106,752 days up and puts the cutoff in the
// future, which would drop everything. Days that reach back before 1970
// keep messages of any age.
func daysLower(days int, now time.Time) (int64, bool) {
	n := now.UnixMilli()
	if days <= 0 || n <= 0 || int64(days) > n/dayMs {
		return 0, false
	}
	return n - int64(days)*dayMs, true
}

// rangeLower is the oldest time that r keeps of a channel with usage u,
// and whether r limits at all. For a count it walks from the oldest end
// past the text messages in excess of r.Count, which after enforcement
// are only the marked ones, so it does not read the channel.
func rangeLower(cb *bbolt.Bucket, u Usage, r Range, now time.Time) (int64, bool) {
	lower, ok := daysLower(r.Days, now)
	if r.Count <= 0 || u.Texts <= r.Count {
		return lower, ok
	}
	excess := u.Texts - r.Count
	seen := 0
	c := cb.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if !storedKind(v).text() {
			continue
		}
		if seen == excess {
			// The r.Count-th newest text message.
			if t := keyTime(k); !ok || t > lower {
				lower, ok = t, true
			}
			break
		}
		seen++
	}
	return lower, ok
}

// oldestCounted is the time of the oldest message of a channel that the
// quota counts.
func oldestCounted(tx *bbolt.Tx, cb *bbolt.Bucket) (int64, bool) {
	marks := tx.Bucket(bucketMarks)
	c := cb.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if storedKind(v) != KindSetting && marks.Get(k[timeKeyLen:]) == nil {
			return keyTime(k), true
		}
	}
	return 0, false
}

// Prune drops the messages of ch that r and the quota do not keep: those
// with Time before the range's lower bound (see Lower), then, while the
// channel is over the quota, the oldest of those the quota counts. Marked
// messages and setting messages are kept. It returns how many it dropped.
// Put and PutChannel apply the channel's stored range this way already;
// Prune is for another range, PruneAll for the passing of time.
func (s *Store) Prune(ch ChannelID, r Range, now time.Time) (removed int, err error) {
	q := s.getQuota()
	err = s.db.Update(func(tx *bbolt.Tx) error {
		gone, err := trimTx(tx, ch, r, q, now)
		removed = len(gone)
		return err
	})
	return removed, err
}

// PruneAll applies every channel's stored range and the quota as Prune
// does. Day ranges move with the clock, so a node calls it periodically.
func (s *Store) PruneAll(now time.Time) (removed int, err error) {
	var chs []ChannelID
	err = s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMessages).ForEachBucket(func(k []byte) error {
			chs = append(chs, ChannelID(k))
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("chatlog: prune: %w", err)
	}
	q := s.getQuota()
	for _, ch := range chs {
		// One transaction per channel, so that writers wait for one
		// channel at most.
		err := s.db.Update(func(tx *bbolt.Tx) error {
			c, _, err := getChannel(tx, ch)
			if err != nil || c.Burn {
				return err
			}
			gone, err := trimTx(tx, ch, c.Range, q, now)
			removed += len(gone)
			return err
		})
		if err != nil {
			return removed, fmt.Errorf("chatlog: prune: %w", err)
		}
	}
	return removed, nil
}

// trimTx drops the messages of ch that r and q do not keep (see Prune),
// walking from the oldest end: it reads what it drops, plus the marked and
// setting messages it passes, never the whole channel.
func trimTx(tx *bbolt.Tx, ch ChannelID, r Range, q Quota, now time.Time) ([]*Message, error) {
	cb := tx.Bucket(bucketMessages).Bucket(ch[:])
	if cb == nil {
		return nil, nil
	}
	u, err := getUsage(tx, ch)
	if err != nil {
		return nil, err
	}
	lower, limited := rangeLower(cb, u, r, now)
	if !limited && !q.over(u) {
		return nil, nil
	}
	marks := tx.Bucket(bucketMarks)
	var gone []*Message
	var keys [][]byte
	c := cb.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if !(limited && keyTime(k) < lower) && !q.over(u) {
			break
		}
		id := ID(k[timeKeyLen:])
		kind := storedKind(v)
		if kind == KindSetting || marks.Get(id[:]) != nil {
			continue
		}
		m, err := decodeStored(id, v)
		if err != nil {
			return nil, err
		}
		gone = append(gone, m)
		keys = append(keys, bytes.Clone(k))
		u.add(kind, len(v), -1)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	for _, k := range keys {
		if err := cb.Delete(k); err != nil {
			return nil, err
		}
	}
	if err := putUsage(tx, ch, u); err != nil {
		return nil, err
	}
	return gone, dropAll(tx, gone)
}

// add counts n messages of a kind and stored size (n = -1 for a message
// that goes); a new or deleted message is never marked.
func (u *Usage) add(kind Kind, size, n int) {
	if kind.text() {
		u.Texts += n
	}
	if kind != KindSetting {
		u.Count += n
		u.Bytes += int64(n * size)
	}
}

// uncount takes a message that is being marked out of the quota.
func (u *Usage) uncount(kind Kind, size int) {
	if kind != KindSetting {
		u.Count--
		u.Bytes -= int64(size)
	}
}

// recount puts a message that is being unmarked back into the quota.
func (u *Usage) recount(kind Kind, size int) {
	if kind != KindSetting {
		u.Count++
		u.Bytes += int64(size)
	}
}

func getUsage(tx *bbolt.Tx, ch ChannelID) (Usage, error) {
	v := tx.Bucket(bucketUsage).Get(ch[:])
	if v == nil {
		return Usage{}, nil
	}
	if len(v) != usageLen {
		return Usage{}, fmt.Errorf("chatlog: usage of channel %v is corrupt", ch)
	}
	return Usage{
		Texts: int(binary.BigEndian.Uint64(v)),
		Count: int(binary.BigEndian.Uint64(v[8:])),
		Bytes: int64(binary.BigEndian.Uint64(v[16:])),
	}, nil
}

func putUsage(tx *bbolt.Tx, ch ChannelID, u Usage) error {
	if u.Texts < 0 || u.Count < 0 || u.Bytes < 0 {
		return fmt.Errorf("chatlog: usage of channel %v went negative: %+v", ch, u)
	}
	if u == (Usage{}) {
		return tx.Bucket(bucketUsage).Delete(ch[:])
	}
	v := make([]byte, usageLen)
	binary.BigEndian.PutUint64(v, uint64(u.Texts))
	binary.BigEndian.PutUint64(v[8:], uint64(u.Count))
	binary.BigEndian.PutUint64(v[16:], uint64(u.Bytes))
	return tx.Bucket(bucketUsage).Put(ch[:], v)
}

// countUsage counts the usage of every channel from its messages.
func countUsage(tx *bbolt.Tx) error {
	msgs := tx.Bucket(bucketMessages)
	marks := tx.Bucket(bucketMarks)
	return msgs.ForEachBucket(func(ch []byte) error {
		var u Usage
		err := msgs.Bucket(ch).ForEach(func(k, v []byte) error {
			kind := storedKind(v)
			u.add(kind, len(v), 1)
			if marks.Get(k[timeKeyLen:]) != nil {
				u.uncount(kind, len(v))
			}
			return nil
		})
		if err != nil {
			return err
		}
		return putUsage(tx, ChannelID(ch), u)
	})
}

// Usage returns what channel ch holds, as its range and the quota count it.
func (s *Store) Usage(ch ChannelID) (u Usage, err error) {
	err = s.db.View(func(tx *bbolt.Tx) error {
		u, err = getUsage(tx, ch)
		return err
	})
	return u, err
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
		case KindText, KindGuest:
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

// Forget deletes every message of ch but the owner's settings, with their
// marks and retraction records, and scrubs them from the database file
// (see Scrub); the channel itself stays. PutChannel does it when
// burn-after-read is switched on.
func (s *Store) Forget(ch ChannelID) error {
	forgot := 0
	err := s.db.Update(func(tx *bbolt.Tx) error {
		var err error
		forgot, err = forgetTx(tx, ch)
		return err
	})
	if err != nil {
		return fmt.Errorf("chatlog: forget: %w", err)
	}
	if forgot > 0 {
		if err := s.Scrub(context.Background()); err != nil {
			return fmt.Errorf("chatlog: forget: %w", err)
		}
	}
	return nil
}

// forgetTx deletes the messages of ch but settings, and returns how many.
func forgetTx(tx *bbolt.Tx, ch ChannelID) (int, error) {
	cb := tx.Bucket(bucketMessages).Bucket(ch[:])
	if cb == nil {
		return 0, nil
	}
	var gone []*Message
	var keys [][]byte
	err := cb.ForEach(func(k, v []byte) error {
		if storedKind(v) == KindSetting {
			return nil
		}
		m, err := decodeStored(ID(k[timeKeyLen:]), v)
		if err != nil {
			return err
		}
		gone = append(gone, m)
		keys = append(keys, bytes.Clone(k))
		return nil
	})
	if err != nil || len(gone) == 0 {
		return 0, err
	}
	for _, k := range keys {
		if err := cb.Delete(k); err != nil {
			return 0, err
		}
	}
	if err := putUsage(tx, ch, Usage{}); err != nil {
		return 0, err
	}
	// A scrub is due, even if this process ends before it runs.
	if _, err := tx.CreateBucketIfNotExists(bucketScrub); err != nil {
		return 0, err
	}
	return len(gone), dropAll(tx, gone)
}

// Scrubbing free pages (see Scrub).
const (
	// scrubValue is the size of one scratch value: eight fit in a 4 KiB
	// page, so that every leaf takes one page, which bbolt can take from
	// anywhere in its freelist.
	scrubValue = 480
	// scrubPass bounds the scratch bytes written in one transaction.
	scrubPass = 8 << 20
	// scrubSlack is how many pending pages a pass may leave: the old
	// copies of the pages it changed itself (root, branches, freelist),
	// which hold nothing deleted.
	scrubSlack = 32
	// scrubSettle and scrubNap: once no page is free, how many times Scrub
	// waits for readers that hold pending pages, and how long each time.
	scrubSettle = 100
	scrubNap    = 20 * time.Millisecond
	// scrubWait bounds a scrub, in case other writers keep freeing pages
	// as fast as it writes them.
	scrubWait = 30 * time.Second
)

// errScrub is returned when a scrub did not finish: it is still due.
var errScrub = errors.New("chatlog: scrub of free pages did not finish")

// Scrub overwrites the free pages of the database file with zeros if a
// deletion of burnt messages left them (see PutChannel), so that deleted
// messages are gone from the file and not only unreachable: bbolt copies a
// page on every write and puts the old copy on its freelist as it is, so
// the bytes of a deleted message stay in the file until the page is used
// again. (Overwriting a value before deleting it would not help, for the
// same reason; compacting into a new file would, but the file is shared
// with other services that hold it open.) Otherwise it does nothing.
//
// Scrub writes a scratch bucket of one-page leaves of zeros, which bbolt
// allocates from its freelist before it grows the file, until no free page
// is left unwritten, then deletes the bucket: its pages, all zeros, are
// free again for later writes. The file grows by a few pages at most. It
// writes as many bytes as the file has free, in transactions of at most
// scrubPass bytes, so it can take seconds: run it off the paths that
// messages come in by. Pages that a read transaction still holds are freed
// when it ends; Scrub waits a little for that (scrubSettle × scrubNap).
// If it cannot finish (those readers, writers that keep freeing pages,
// ctx), it returns an error and the scrub stays due, also across restarts,
// for the next call.
func (s *Store) Scrub(ctx context.Context) error {
	s.scrubMu.Lock()
	defer s.scrubMu.Unlock()
	due := false
	if err := s.db.View(func(tx *bbolt.Tx) error {
		due = tx.Bucket(bucketScrub) != nil
		return nil
	}); err != nil || !due {
		return err
	}
	pageSize := s.db.Info().PageSize
	perPage := max(1, (pageSize-16)/(16+8+scrubValue))
	zeros := make([]byte, scrubValue)
	var seq uint64
	deadline := time.Now().Add(scrubWait)
	settled := 0
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%w: %w", errScrub, err)
		}
		st := s.db.Stats()
		if st.FreePageN == 0 {
			if st.PendingPageN <= scrubSlack {
				break
			}
			if settled == scrubSettle {
				return fmt.Errorf("%w: %d pages still held by readers", errScrub, st.PendingPageN)
			}
			settled++
			select {
			case <-time.After(scrubNap):
			case <-ctx.Done():
				return fmt.Errorf("%w: %w", errScrub, ctx.Err())
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w in %v", errScrub, scrubWait)
		}
		// Pending pages become free when a write transaction starts, if
		// no reader holds them: then the next pass writes them.
		n := min(max(1, st.FreePageN*perPage), scrubPass/scrubValue)
		err := s.db.Update(func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucketScrub)
			if err != nil {
				return err
			}
			b.FillPercent = 1 // full leaves: one page each
			if seq == 0 {
				seq = b.Sequence() // what a scrub cut short wrote stays
			}
			var k [8]byte
			for range n {
				seq++
				binary.BigEndian.PutUint64(k[:], seq)
				if err := b.Put(k[:], zeros); err != nil {
					return err
				}
			}
			return b.SetSequence(seq)
		})
		if err != nil {
			return fmt.Errorf("chatlog: scrub: %w", err)
		}
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketScrub) == nil {
			return nil
		}
		return tx.DeleteBucket(bucketScrub)
	})
	if err != nil {
		return fmt.Errorf("chatlog: scrub: %w", err)
	}
	return nil
}
