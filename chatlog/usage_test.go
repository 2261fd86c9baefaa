package chatlog

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// checkIndex fails t if an index entry, mark or retraction record of the
// store points at nothing, or a stored message is not indexed.
func checkIndex(t testing.TB, s *Store) {
	t.Helper()
	err := s.db.View(func(tx *bbolt.Tx) error {
		stored := 0
		msgs := tx.Bucket(bucketMessages)
		err := msgs.ForEachBucket(func(ch []byte) error {
			return msgs.Bucket(ch).ForEach(func(k, _ []byte) error {
				stored++
				if _, ok, err := storedValueOf(tx, ID(k[timeKeyLen:])); !ok || err != nil {
					return fmt.Errorf("message %x is not indexed: %v", k[timeKeyLen:], err)
				}
				return nil
			})
		})
		if err != nil {
			return err
		}
		if n := tx.Bucket(bucketIndex).Stats().KeyN; n != stored {
			return fmt.Errorf("%d index entries for %d messages", n, stored)
		}
		return tx.Bucket(bucketMarks).ForEach(func(k, _ []byte) error {
			if tx.Bucket(bucketIndex).Get(k) == nil {
				return fmt.Errorf("mark of %x, which is not stored", k)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func storedValueOf(tx *bbolt.Tx, id ID) ([]byte, bool, error) {
	_, v, ok, err := storedValue(tx, id)
	return v, ok, err
}

// TestStoreUsageUnderEveryPath runs 400 random operations of every kind
// that changes a channel (put, retract, settings, mark and unmark, prune,
// a new range, the quota, time passing, forget, reopen) on two channels
// of up to a few thousand messages, and checks after each that the usage
// the store keeps is what a count of the channel finds.
func TestStoreUsageUnderEveryPath(t *testing.T) {
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("USAGE_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(7, seed))
	alice, bob := newIdent(t), newIdent(t)
	path := filepath.Join(t.TempDir(), "catnest.db")
	db := openDB(t, path)
	defer func() { db.Close() }()
	s, err := OpenStore(db)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s.now = func() time.Time { return now }
	var chans []Channel
	for _, name := range []string{"one", "two"} {
		c := NewChannel(alice.ID, name)
		c.Joined = true
		if err := s.PutChannel(c); err != nil {
			t.Fatal(err)
		}
		chans = append(chans, c)
	}
	var sent []*Message // every message ever put, for retracts, marks and puts again
	for op := range 400 {
		c := &chans[rng.IntN(len(chans))]
		what := rng.IntN(100)
		// The channels that the quota holds for after the operation: it
		// applies as messages are stored, not when it is set.
		bounded := []ChannelID{c.ID}
		switch {
		case what < 45: // a batch, as live messages or a sync bring it
			var batch []*Message
			for range 1 + rng.IntN(60) {
				at := now.Add(-time.Duration(rng.Int64N(int64(10 * 24 * time.Hour)))).UnixMilli()
				who := alice
				if rng.IntN(2) == 0 {
					who = bob
				}
				var m *Message
				switch k := rng.IntN(20); {
				case k == 0 && len(sent) > 0:
					m = sent[rng.IntN(len(sent))] // again, perhaps pruned since
				case k <= 2 && len(sent) > 0:
					m = msgAt(t, who, c.ID, KindRetract, "", sent[rng.IntN(len(sent))].ID, at)
				case k == 3:
					m = msgAt(t, alice, c.ID, KindSetting, `{"burn":false}`, ID{}, at)
				default:
					m = msgAt(t, who, c.ID, KindText, fmt.Sprintf("%d %s", op, strings.Repeat("w", rng.IntN(2000))), ID{}, at)
				}
				batch = append(batch, m)
			}
			if _, err := s.Put(ctx, batch...); err != nil {
				t.Fatalf("op %d: put: %v", op, err)
			}
			sent = append(sent, batch...)
		case what < 65:
			bounded = nil
			if len(sent) == 0 {
				break
			}
			m := sent[rng.IntN(len(sent))]
			if has, _ := s.Has(m.ID); !has {
				if err := s.SetMark(m.ID, false); err != nil {
					t.Fatalf("op %d: unmark of a message not stored: %v", op, err)
				}
				break
			}
			on := rng.IntN(3) > 0
			was, err := s.Marked(m.ID)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.SetMark(m.ID, on); err != nil {
				t.Fatalf("op %d: mark: %v", op, err)
			}
			// Unmarking a marked message stores it in the quota again; an
			// unmark that changes nothing stores nothing, and the quota
			// applies as messages are stored.
			if was && !on {
				bounded = []ChannelID{m.Channel}
			}
		case what < 72:
			r := Range{Days: rng.IntN(12), Count: rng.IntN(3000)}
			if _, err := s.Prune(c.ID, r, now); err != nil {
				t.Fatalf("op %d: prune: %v", op, err)
			}
		case what < 80:
			c.Range = Range{Days: rng.IntN(15), Count: rng.IntN(4000)}
			if rng.IntN(3) == 0 {
				c.Range = Range{}
			}
			if err := s.PutChannel(*c); err != nil {
				t.Fatalf("op %d: range: %v", op, err)
			}
		case what < 86:
			q := Quota{Bytes: rng.Int64N(4 << 20), Count: rng.IntN(3000)}
			if rng.IntN(3) == 0 {
				q = Quota{}
			}
			s.SetQuota(q)
			bounded = nil
		case what < 94:
			now = now.Add(time.Duration(rng.Int64N(int64(12 * time.Hour))))
			if _, err := s.PruneAll(now); err != nil {
				t.Fatalf("op %d: prune all: %v", op, err)
			}
		case what < 96:
			if err := s.Forget(c.ID); err != nil {
				t.Fatalf("op %d: forget: %v", op, err)
			}
		default:
			bounded = nil
			q := s.getQuota()
			db.Close()
			db = openDB(t, path)
			if s, err = OpenStore(db); err != nil {
				t.Fatal(err)
			}
			s.now = func() time.Time { return now }
			s.SetQuota(q)
		}
		if what >= 86 && what < 94 {
			bounded = []ChannelID{chans[0].ID, chans[1].ID}
		}
		for _, ch := range chans {
			u := checkUsage(t, s, ch.ID)
			if q := s.getQuota(); q.over(u) && slices.Contains(bounded, ch.ID) {
				t.Fatalf("op %d (%d): usage %+v over the quota %+v", op, what, u, q)
			}
		}
		checkIndex(t, s)
	}
}
