package chatlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/mesh"
)

func openDB(t testing.TB, path string) *bbolt.DB {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func newStore(t testing.TB) *Store {
	t.Helper()
	db := openDB(t, filepath.Join(t.TempDir(), "catnest.db"))
	t.Cleanup(func() { db.Close() })
	s, err := OpenStore(db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// msgAt makes a signed message stamped ms (unix milliseconds).
func msgAt(t testing.TB, ident *mesh.Identity, ch ChannelID, kind Kind, body string, ref ID, ms int64) *Message {
	t.Helper()
	m, err := NewMessage(ident, ch, kind, []byte(body), ref, time.UnixMilli(ms))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustPut(t testing.TB, s *Store, ms ...*Message) int {
	t.Helper()
	n, err := s.Put(context.Background(), ms...)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func sameMessage(a, b *Message) bool {
	return a.ID == b.ID && a.Author == b.Author && bytes.Equal(a.Encode(), b.Encode())
}

func ids(ms []*Message) []ID {
	out := make([]ID, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func itemIDs(items []Item) []ID {
	out := make([]ID, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

func TestStorePutGet(t *testing.T) {
	s := newStore(t)
	alice := newIdent(t)
	a := msgAt(t, alice, testChannel, KindText, "one", ID{}, 1000)
	b := msgAt(t, alice, testChannel, KindText, "two", ID{}, 2000)
	if n := mustPut(t, s, a, b, a); n != 2 {
		t.Errorf("added %d, want 2 (duplicate in one call)", n)
	}
	if n := mustPut(t, s, b); n != 0 {
		t.Errorf("added %d of a stored message", n)
	}
	for _, m := range []*Message{a, b} {
		got, ok, err := s.Get(m.ID)
		if err != nil || !ok || !sameMessage(got, m) {
			t.Errorf("Get(%v) = %+v, %v, %v", m.ID, got, ok, err)
		}
		if has, err := s.Has(m.ID); !has || err != nil {
			t.Errorf("Has(%v) = %v, %v", m.ID, has, err)
		}
	}
	if _, ok, err := s.Get(ID{42}); ok || err != nil {
		t.Errorf("Get(absent) = %v, %v", ok, err)
	}
	if has, _ := s.Has(ID{42}); has {
		t.Error("Has(absent) = true")
	}
	// A message changed after signing is refused.
	c := msgAt(t, alice, testChannel, KindText, "three", ID{}, 3000)
	c.Body = []byte("changed")
	if _, err := s.Put(context.Background(), c); !errors.Is(err, ErrBadMessage) {
		t.Errorf("Put(changed message) = %v, want ErrBadMessage", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(ctx, msgAt(t, alice, testChannel, KindText, "x", ID{}, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Put(cancelled ctx) = %v", err)
	}
}

func TestStoreList(t *testing.T) {
	s := newStore(t)
	alice := newIdent(t)
	var all []*Message
	// 30 messages; 5 of them share one millisecond, and two are from
	// before 1970 to check the ordering of negative times.
	times := []int64{-2000, -1000}
	for i := range 23 {
		times = append(times, int64(1000*(i+1)))
	}
	for range 5 {
		times = append(times, 12_000)
	}
	for _, tm := range times {
		kind, body := KindText, fmt.Sprint(tm, len(all))
		if len(all) == 7 {
			kind, body = KindSetting, `{"burn":false}`
		}
		all = append(all, msgAt(t, alice, testChannel, kind, body, ID{}, tm))
	}
	mustPut(t, s, all...)
	msgs := msgAt(t, alice, ChannelID{99}, KindText, "elsewhere", ID{}, 5)
	mustPut(t, s, msgs)
	slices.SortFunc(all, func(a, b *Message) int {
		if a.Time != b.Time {
			return int(a.Time - b.Time)
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})

	for _, limit := range []int{1, 4, 7, 10, 100} {
		var got []*Message
		before := int64(0)
		for pages := 0; ; pages++ {
			page, err := s.List(testChannel, before, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			if pages > len(all) {
				t.Fatal("paging does not end")
			}
			if len(page) > limit && page[0].Time != page[len(page)-1-limit].Time {
				t.Errorf("limit %d: page of %d goes beyond one shared millisecond", limit, len(page))
			}
			got = append(slices.Clone(page), got...)
			before = page[0].Time
		}
		if !slices.Equal(ids(got), ids(all)) {
			t.Errorf("limit %d: paged %d messages, want all %d in (time, id) order", limit, len(got), len(all))
		}
	}
	page, err := s.List(testChannel, 3000, 2)
	if err != nil || len(page) != 2 || page[0].Time != 1000 || page[1].Time != 2000 {
		t.Errorf("List(before 3000, 2) = %v, %v", page, err)
	}
	if page, _ := s.List(ChannelID{5}, 0, 10); len(page) != 0 {
		t.Errorf("List of an unknown channel = %v", page)
	}
}

func TestStoreRetraction(t *testing.T) {
	s := newStore(t)
	alice, bob := newIdent(t), newIdent(t)
	a1 := msgAt(t, alice, testChannel, KindText, "a1", ID{}, 1000)
	a2 := msgAt(t, alice, testChannel, KindText, "a2", ID{}, 2000)
	b1 := msgAt(t, bob, testChannel, KindText, "b1", ID{}, 3000)
	set := msgAt(t, alice, testChannel, KindSetting, `{"burn":false}`, ID{}, 3500)
	mustPut(t, s, a1, a2, b1, set)

	r1 := msgAt(t, alice, testChannel, KindRetract, "", a1.ID, 4000)     // by the author: applies
	forged := msgAt(t, alice, testChannel, KindRetract, "", b1.ID, 4100) // not the author: stored, no effect
	mustPut(t, s, r1, forged)

	// Retracts that arrive before their message.
	a3 := msgAt(t, alice, testChannel, KindText, "a3", ID{}, 5000)
	b2 := msgAt(t, bob, testChannel, KindText, "b2", ID{}, 5100)
	r3 := msgAt(t, alice, testChannel, KindRetract, "", a3.ID, 6000)
	forged2 := msgAt(t, alice, testChannel, KindRetract, "", b2.ID, 6100)
	mustPut(t, s, r3, forged2)
	if ok, _ := s.Retracted(a3.ID); ok {
		t.Error("a message not stored yet reads as retracted")
	}
	mustPut(t, s, a3)
	mustPut(t, s, b2)

	for _, tc := range []struct {
		m    *Message
		want bool
	}{{a1, true}, {a2, false}, {b1, false}, {a3, true}, {b2, false}, {r1, false}, {set, false}} {
		if got, err := s.Retracted(tc.m.ID); got != tc.want || err != nil {
			t.Errorf("Retracted(%s) = %v, %v; want %v", tc.m.Body, got, err, tc.want)
		}
	}
	items, err := s.Items(testChannel, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []ID{a2.ID, b1.ID, set.ID, r1.ID, forged.ID, b2.ID, r3.ID, forged2.ID}
	if !slices.Equal(itemIDs(items), want) {
		t.Errorf("Items = %v, want a2 b1 set r1 forged b2 r3 forged2", itemIDs(items))
	}
	if items, _ := s.Items(testChannel, 4100); !slices.Equal(itemIDs(items), want[4:]) {
		t.Errorf("Items since 4100 = %v", itemIDs(items))
	}
	// Retracted messages are still stored and listed.
	if page, _ := s.List(testChannel, 0, 100); len(page) != 10 {
		t.Errorf("List has %d messages, want all 10", len(page))
	}
}

func TestStoreMarkPrune(t *testing.T) {
	day := int64(24 * time.Hour / time.Millisecond)
	now := time.UnixMilli(100 * day)
	at := func(daysAgo float64) int64 { return now.UnixMilli() - int64(daysAgo*float64(day)) }
	alice := newIdent(t)

	setup := func(t *testing.T) (*Store, map[string]*Message) {
		s := newStore(t)
		ms := map[string]*Message{
			"10d":     msgAt(t, alice, testChannel, KindText, "10d", ID{}, at(10)),
			"9d mark": msgAt(t, alice, testChannel, KindText, "9d", ID{}, at(9)),
			"8d set":  msgAt(t, alice, testChannel, KindSetting, `{"burn":false}`, ID{}, at(8)),
			"5d":      msgAt(t, alice, testChannel, KindText, "5d", ID{}, at(5)),
			"2d":      msgAt(t, alice, testChannel, KindText, "2d", ID{}, at(2)),
			"1d":      msgAt(t, alice, testChannel, KindText, "1d", ID{}, at(1)),
			"now":     msgAt(t, alice, testChannel, KindText, "now", ID{}, at(0)),
		}
		ms["7d retract 10d"] = msgAt(t, alice, testChannel, KindRetract, "", ms["10d"].ID, at(7))
		for _, m := range ms {
			mustPut(t, s, m)
		}
		other := msgAt(t, alice, ChannelID{8}, KindText, "other channel", ID{}, at(20))
		mustPut(t, s, other)
		ms["other"] = other
		if err := s.SetMark(ms["9d mark"].ID, true); err != nil {
			t.Fatal(err)
		}
		return s, ms
	}
	kept := func(t *testing.T, s *Store, ms map[string]*Message) []string {
		t.Helper()
		var out []string
		for name, m := range ms {
			if ok, _ := s.Has(m.ID); ok {
				out = append(out, name)
			}
		}
		slices.Sort(out)
		return out
	}

	cases := []struct {
		name    string
		r       Range
		lower   int64
		removed int
		kept    []string
	}{
		{"everything", Range{}, 0, 0, []string{"10d", "1d", "2d", "5d", "7d retract 10d", "8d set", "9d mark", "now", "other"}},
		{"3 days", Range{Days: 3}, at(3), 3, []string{"1d", "2d", "8d set", "9d mark", "now", "other"}},
		{"2 messages", Range{Count: 2}, at(1), 4, []string{"1d", "8d set", "9d mark", "now", "other"}},
		{"20 messages", Range{Count: 20}, 0, 0, []string{"10d", "1d", "2d", "5d", "7d retract 10d", "8d set", "9d mark", "now", "other"}},
		{"6 days or 4 messages", Range{Days: 6, Count: 4}, at(5), 2, []string{"1d", "2d", "5d", "8d set", "9d mark", "now", "other"}},
		{"8 days or 2 messages", Range{Days: 8, Count: 2}, at(1), 4, []string{"1d", "8d set", "9d mark", "now", "other"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, ms := setup(t)
			lower, err := s.Lower(testChannel, tc.r, now)
			if err != nil || lower != tc.lower {
				t.Errorf("Lower = %d, %v; want %d", lower, err, tc.lower)
			}
			removed, err := s.Prune(testChannel, tc.r, now)
			if err != nil || removed != tc.removed {
				t.Errorf("Prune removed %d, %v; want %d", removed, err, tc.removed)
			}
			if got := kept(t, s, ms); !slices.Equal(got, tc.kept) {
				t.Errorf("kept %q, want %q", got, tc.kept)
			}
			if ok, _ := s.Marked(ms["9d mark"].ID); !ok {
				t.Error("mark lost")
			}
			// Pruning again removes nothing.
			if again, _ := s.Prune(testChannel, tc.r, now); again != 0 {
				t.Errorf("second Prune removed %d", again)
			}
		})
	}

	t.Run("unmark", func(t *testing.T) {
		s, ms := setup(t)
		if err := s.SetMark(ms["9d mark"].ID, false); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.Marked(ms["9d mark"].ID); ok {
			t.Error("still marked")
		}
		if removed, _ := s.Prune(testChannel, Range{Days: 3}, now); removed != 4 {
			t.Errorf("removed %d, want 4", removed)
		}
		if err := s.SetMark(ID{1}, true); err == nil {
			t.Error("marked a message that is not stored")
		}
	})

	t.Run("retraction survives pruning of one side", func(t *testing.T) {
		s := newStore(t)
		old := msgAt(t, alice, testChannel, KindText, "old", ID{}, at(10))
		r := msgAt(t, alice, testChannel, KindRetract, "", old.ID, at(1))
		mustPut(t, s, old, r)
		if _, err := s.Prune(testChannel, Range{Days: 3}, now); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.Retracted(old.ID); !ok {
			t.Fatal("retraction forgotten while the retract is stored")
		}
		mustPut(t, s, old) // comes again from a peer
		if items, _ := s.Items(testChannel, 0); !slices.Equal(itemIDs(items), []ID{r.ID}) {
			t.Errorf("Items = %v, want only the retract", itemIDs(items))
		}
		// Once both are gone, so is the record.
		if _, err := s.Prune(testChannel, Range{Days: 3}, now.Add(5*24*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.Retracted(old.ID); ok {
			t.Error("retraction record outlives both messages")
		}
	})
}

func TestStoreBurnForget(t *testing.T) {
	s := newStore(t)
	alice := newIdent(t)
	c := NewChannel(alice.ID, "burn")
	if err := s.PutChannel(c); err != nil {
		t.Fatal(err)
	}
	var ms []*Message
	for i := range 5 {
		ms = append(ms, msgAt(t, alice, c.ID, KindText, fmt.Sprint(i), ID{}, int64(1000+i)))
	}
	ms = append(ms, msgAt(t, alice, c.ID, KindRetract, "", ms[0].ID, 2000), msgAt(t, alice, c.ID, KindRetract, "", ID{7}, 2001))
	mustPut(t, s, ms...)
	if err := s.SetMark(ms[1].ID, true); err != nil {
		t.Fatal(err)
	}
	keep := msgAt(t, alice, testChannel, KindText, "other channel", ID{}, 1000)
	mustPut(t, s, keep)

	c.Burn = true
	if err := s.PutChannel(c); err != nil {
		t.Fatal(err)
	}
	if err := s.Forget(c.ID); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if ok, _ := s.Has(m.ID); ok {
			t.Errorf("message %s still stored", m.Body)
		}
		if ok, _ := s.Marked(m.ID); ok {
			t.Error("mark still stored")
		}
		if ok, _ := s.Retracted(m.ID); ok {
			t.Error("retraction still stored")
		}
	}
	if items, _ := s.Items(c.ID, 0); len(items) != 0 {
		t.Errorf("Items after Forget = %v", items)
	}
	err := s.db.View(func(tx *bbolt.Tx) error {
		if k, _ := tx.Bucket(bucketPending).Cursor().First(); k != nil {
			return fmt.Errorf("pending retract left: %x", k)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if ok, _ := s.Has(keep.ID); !ok {
		t.Error("Forget deleted another channel's message")
	}

	// A burn channel is never written, not even together with others.
	fresh := msgAt(t, alice, c.ID, KindText, "new", ID{}, 3000)
	other := msgAt(t, alice, testChannel, KindText, "other", ID{}, 3000)
	if n, err := s.Put(context.Background(), other, fresh); !errors.Is(err, ErrBurn) || n != 0 {
		t.Errorf("Put into a burn channel = %d, %v; want ErrBurn", n, err)
	}
	for _, m := range []*Message{fresh, other} {
		if ok, _ := s.Has(m.ID); ok {
			t.Errorf("%s stored by a refused Put", m.Body)
		}
	}
	if got, ok, err := s.Channel(c.ID); err != nil || !ok || !got.Burn || got.Name != "burn" || got.ID != c.ID {
		t.Errorf("Channel = %+v, %v, %v", got, ok, err)
	}
}

func TestStorePersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catnest.db")
	alice := newIdent(t)
	c := NewChannel(alice.ID, "kept")
	c.Joined, c.Range = true, Range{Days: 7}
	// Inside the range: Put applies it.
	now := time.Now().UnixMilli()
	m := msgAt(t, alice, c.ID, KindText, "still here", ID{}, now-2000)
	r := msgAt(t, alice, c.ID, KindRetract, "", m.ID, now-1000)

	db := openDB(t, path)
	s, err := OpenStore(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutChannel(c); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, m, r)
	if err := s.SetMark(m.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openDB(t, path)
	defer db.Close()
	s, err = OpenStore(db)
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Get(m.ID)
	if err != nil || !ok || !sameMessage(got, m) {
		t.Errorf("after reopen Get = %+v, %v, %v", got, ok, err)
	}
	if ok, _ := s.Retracted(m.ID); !ok {
		t.Error("retraction lost")
	}
	if ok, _ := s.Marked(m.ID); !ok {
		t.Error("mark lost")
	}
	chs, err := s.Channels()
	if err != nil || len(chs) != 1 || chs[0].ID != c.ID || chs[0].Range != c.Range || !chs[0].Joined || chs[0].Verify() != nil {
		t.Errorf("Channels = %+v, %v", chs, err)
	}
}

// TestStoreConcurrentPut runs writers at once, some of whose Puts fail,
// through both commit paths.
func TestStoreConcurrentPut(t *testing.T) {
	for _, viaBatch := range []bool{false, true} {
		t.Run(fmt.Sprint("batch=", viaBatch), func(t *testing.T) {
			s := newStore(t)
			put := s.putVia(viaBatch)
			alice := newIdent(t)
			burn := NewChannel(alice.ID, "burn")
			burn.Burn = true
			if err := s.PutChannel(burn); err != nil {
				t.Fatal(err)
			}
			const writers, each = 8, 40
			msgs := make([][]*Message, writers)
			for w := range writers {
				for i := range each {
					msgs[w] = append(msgs[w], msgAt(t, alice, testChannel, KindText, fmt.Sprint(w, i), ID{}, int64(w*each+i)))
				}
			}
			dup := msgs[0][0] // every writer also puts this one
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			added := make([]int, writers)
			errs := make(chan error, writers*each*3)
			for w := range writers {
				wg.Go(func() {
					for i, m := range msgs[w] {
						n, err := put(ctx, m)
						if err != nil {
							errs <- err
						}
						added[w] += n
						if i%10 == 0 {
							if _, err := put(ctx, msgAt(t, alice, burn.ID, KindText, "x", ID{}, 1)); !errors.Is(err, ErrBurn) {
								errs <- fmt.Errorf("burn Put = %v", err)
							}
							n, err := put(ctx, dup)
							if err != nil {
								errs <- err
							}
							added[w] += n
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			total := 0
			for _, n := range added {
				total += n
			}
			if total != writers*each {
				t.Errorf("added %d in all, want %d", total, writers*each)
			}
			items, err := s.Items(testChannel, 0)
			if err != nil || len(items) != writers*each {
				t.Errorf("%d items stored, want %d (%v)", len(items), writers*each, err)
			}
		})
	}
}
