package chatlog

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// checkUsage fails t if the usage the store keeps for ch differs from a
// count of its messages.
func checkUsage(t testing.TB, s *Store, ch ChannelID) Usage {
	t.Helper()
	var want Usage
	err := s.db.View(func(tx *bbolt.Tx) error {
		cb := tx.Bucket(bucketMessages).Bucket(ch[:])
		if cb == nil {
			return nil
		}
		marks := tx.Bucket(bucketMarks)
		return cb.ForEach(func(k, v []byte) error {
			kind := storedKind(v)
			if kind == KindText {
				want.Texts++
			}
			if kind != KindSetting && marks.Get(k[timeKeyLen:]) == nil {
				want.Count++
				want.Bytes += int64(len(v))
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Usage(ch)
	if err != nil || got != want {
		t.Fatalf("stored usage %+v, %v; counted %+v", got, err, want)
	}
	return got
}

// textsOf returns the bodies of the text messages of ch, oldest first.
func textsOf(t testing.TB, s *Store, ch ChannelID) []string {
	t.Helper()
	items, err := s.Items(ch, math.MinInt64)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, it := range items {
		m, ok, err := s.Get(it.ID)
		if err != nil || !ok {
			t.Fatalf("item %v: %v, %v", it.ID, ok, err)
		}
		if m.Kind == KindText {
			out = append(out, string(m.Body))
		}
	}
	return out
}

// TestStoreRangeOnPut checks that Put keeps a channel inside its stored
// range, for thousands of messages in many commits: the newest Count text
// messages stay, with the marked ones and the settings, and nothing else.
func TestStoreRangeOnPut(t *testing.T) {
	alice, bob := newIdent(t), newIdent(t)
	const total, keep = 5000, 1000
	start := time.Now().Add(-time.Hour).UnixMilli()

	t.Run("count", func(t *testing.T) {
		s := newStore(t)
		c := NewChannel(alice.ID, "count")
		c.Joined, c.Range = true, Range{Count: keep}
		if err := s.PutChannel(c); err != nil {
			t.Fatal(err)
		}
		setting := msgAt(t, alice, c.ID, KindSetting, `{"burn":false}`, ID{}, start)
		mustPut(t, s, setting)
		var all []*Message
		var marked []string
		for i := range total {
			who := alice
			if i%3 == 0 {
				who = bob
			}
			all = append(all, msgAt(t, who, c.ID, KindText, fmt.Sprint("m", i), ID{}, start+int64(i)))
		}
		for i := 0; i < total; i += 100 {
			mustPut(t, s, all[i:i+100]...)
			if i == 0 {
				// Marked while stored, long before they leave the range.
				for _, j := range []int{5, 50} {
					if err := s.SetMark(all[j].ID, true); err != nil {
						t.Fatal(err)
					}
					marked = append(marked, string(all[j].Body))
				}
			}
			if i == 3000 {
				// A retract of a message about to leave the range.
				r := msgAt(t, bob, c.ID, KindRetract, "", all[2400].ID, start+int64(i)+50)
				mustPut(t, s, r)
			}
			u := checkUsage(t, s, c.ID)
			if u.Texts > keep+len(marked) {
				t.Fatalf("after %d messages the store holds %d texts, range %d", i+100, u.Texts, keep)
			}
		}
		want := append([]string(nil), marked...)
		for i := total - keep; i < total; i++ {
			want = append(want, string(all[i].Body))
		}
		if got := textsOf(t, s, c.ID); !slices.Equal(got, want) {
			t.Fatalf("kept %d texts (%q…), want the %d marked and the newest %d", len(got), got[:min(len(got), 4)], len(marked), keep)
		}
		if ok, _ := s.Has(setting.ID); !ok {
			t.Error("the setting was pruned")
		}
		// A message older than the range is not kept, and Put says so.
		if n := mustPut(t, s, msgAt(t, alice, c.ID, KindText, "late", ID{}, start+10)); n != 0 {
			t.Errorf("Put of a message older than the range added %d", n)
		}
		// Unmarking lets a message go at once.
		if err := s.SetMark(all[5].ID, false); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.Has(all[5].ID); ok {
			t.Error("an unmarked message outside the range is still stored")
		}
		checkUsage(t, s, c.ID)
	})

	t.Run("days", func(t *testing.T) {
		s := newStore(t)
		now := time.Now()
		s.now = func() time.Time { return now }
		c := NewChannel(alice.ID, "days")
		c.Joined, c.Range = true, Range{Days: 2}
		if err := s.PutChannel(c); err != nil {
			t.Fatal(err)
		}
		// 2,000 messages over four days, an hour apart at most.
		var want []string
		from := now.Add(-4 * 24 * time.Hour).UnixMilli()
		for i := 0; i < 2000; i += 200 {
			var batch []*Message
			for j := i; j < i+200; j++ {
				at := from + int64(j)*(4*dayMs/2000)
				m := msgAt(t, alice, c.ID, KindText, fmt.Sprint("d", j), ID{}, at)
				batch = append(batch, m)
				if at >= now.UnixMilli()-2*dayMs {
					want = append(want, string(m.Body))
				}
			}
			mustPut(t, s, batch...)
		}
		if got := textsOf(t, s, c.ID); !slices.Equal(got, want) {
			t.Fatalf("kept %d texts, want the %d of the last two days", len(got), len(want))
		}
		checkUsage(t, s, c.ID)
	})
}

// TestStoreFileStopsGrowing posts thousands of messages into a channel
// that keeps the last 300: once the channel is full, the pages freed by
// pruning are reused and the database file stops growing.
func TestStoreFileStopsGrowing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catnest.db")
	// Without fsync, for speed: page allocation is the same.
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := OpenStore(db)
	if err != nil {
		t.Fatal(err)
	}
	alice := newIdent(t)
	c := NewChannel(alice.ID, "busy")
	c.Joined, c.Range = true, Range{Count: 300}
	if err := s.PutChannel(c); err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("a kilobyte of chat ", 54)
	start := time.Now().Add(-time.Hour).UnixMilli()
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	var settled int64
	for i := range 6000 {
		mustPut(t, s, msgAt(t, alice, c.ID, KindText, fmt.Sprint(i, body), ID{}, start+int64(i)))
		if i == 1999 {
			settled = size()
		}
	}
	if u := checkUsage(t, s, c.ID); u.Texts != 300 {
		t.Fatalf("%d texts stored, want 300", u.Texts)
	}
	if final := size(); final > settled {
		t.Fatalf("the file grew from %d bytes after 2,000 posts to %d after 6,000, with 300 kept", settled, final)
	}
	t.Logf("file %d bytes for 300 messages of %d bytes", size(), len(body))
}

func TestDaysLower(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	n := now.UnixMilli()
	cases := []struct {
		days  int
		lower int64
		ok    bool
	}{
		{0, 0, false},
		{-1, 0, false},
		{1, n - dayMs, true},
		{30, n - 30*dayMs, true},
		{20000, n - 20000*dayMs, true},
		// Further back than 1970: every age.
		{int(n/dayMs) + 1, 0, false},
		{106_751, 0, false},
		{106_752, 0, false}, // days*24h overflows a time.Duration from here
		{1_000_000, 0, false},
		{math.MaxInt32, 0, false},
		{math.MaxInt, 0, false},
	}
	for _, tc := range cases {
		lower, ok := daysLower(tc.days, now)
		if lower != tc.lower || ok != tc.ok {
			t.Errorf("daysLower(%d) = %d, %v; want %d, %v", tc.days, lower, ok, tc.lower, tc.ok)
		}
	}
}

// TestStoreHugeDays checks that a range of very many days keeps every
// message, where the cutoff used to overflow into the future and drop them
// all.
func TestStoreHugeDays(t *testing.T) {
	alice := newIdent(t)
	now := time.Now()
	for _, days := range []int{1_000_000, 106_752, math.MaxInt32, math.MaxInt, 20_000} {
		t.Run(fmt.Sprint(days), func(t *testing.T) {
			s := newStore(t)
			c := NewChannel(alice.ID, "forever")
			c.Joined = true
			if err := s.PutChannel(c); err != nil {
				t.Fatal(err)
			}
			var batch []*Message
			for i := range 1000 {
				// From ten years ago to now.
				at := now.Add(-time.Duration(1000-i) * 87 * time.Hour)
				batch = append(batch, msgAt(t, alice, c.ID, KindText, fmt.Sprint(i), ID{}, at.UnixMilli()))
			}
			mustPut(t, s, batch...)
			c.Range = Range{Days: days}
			if err := s.PutChannel(c); err != nil {
				t.Fatal(err)
			}
			if removed, err := s.Prune(c.ID, c.Range, now); err != nil || removed != 0 {
				t.Errorf("Prune removed %d, %v", removed, err)
			}
			if lower, err := s.Lower(c.ID, c.Range, now); err != nil || lower > batch[0].Time {
				t.Errorf("Lower = %v, %v; want at most the oldest message's time", time.UnixMilli(lower), err)
			}
			if u := checkUsage(t, s, c.ID); u.Texts != 1000 {
				t.Errorf("%d of 1000 messages kept", u.Texts)
			}
		})
	}
}

// fileHas reports whether the file at path contains b.
func fileHas(t testing.TB, path string, b []byte) bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(data, b)
}

// TestStoreBurnScrubs switches burn-after-read on for a channel of 3,000
// messages, some marked or retracted: every message but the owner's
// settings is deleted, and the bytes of what was deleted are in no page of
// the file, free pages included. Another channel keeps its messages.
func TestStoreBurnScrubs(t *testing.T) {
	alice, bob := newIdent(t), newIdent(t)
	for _, how := range []string{"PutChannel", "Forget"} {
		t.Run(how, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "catnest.db")
			db := openDB(t, path)
			defer db.Close()
			s, err := OpenStore(db)
			if err != nil {
				t.Fatal(err)
			}
			c := NewChannel(alice.ID, "secret")
			c.Joined = true
			other := NewChannel(bob.ID, "open")
			other.Joined = true
			for _, ch := range []Channel{c, other} {
				if err := s.PutChannel(ch); err != nil {
					t.Fatal(err)
				}
			}
			marker := fmt.Sprintf("burn-marker-%x", time.Now().UnixNano())
			keepMarker := fmt.Sprintf("kept-marker-%x", time.Now().UnixNano())
			start := time.Now().Add(-time.Hour).UnixMilli()
			setting := msgAt(t, alice, c.ID, KindSetting, `{"burn":false}`, ID{}, start)
			mustPut(t, s, setting)
			var ms []*Message
			for i := range 3000 {
				body := fmt.Sprintf("message %d %s", i, strings.Repeat("x", i%200))
				if i%500 == 7 {
					body = fmt.Sprintf("%s %d", marker, i)
				}
				who := alice
				if i%2 == 1 {
					who = bob
				}
				ms = append(ms, msgAt(t, who, c.ID, KindText, body, ID{}, start+1+int64(i)))
				if len(ms)%300 == 0 {
					mustPut(t, s, ms[len(ms)-300:]...)
				}
			}
			// Old copies of pages go to the freelist as other messages
			// arrive: the marker is in free pages too.
			for i := range 100 {
				mustPut(t, s, msgAt(t, bob, other.ID, KindText, fmt.Sprint(keepMarker, i), ID{}, start+int64(i)))
			}
			if err := s.SetMark(ms[7].ID, true); err != nil {
				t.Fatal(err)
			}
			mustPut(t, s, msgAt(t, bob, c.ID, KindRetract, "", ms[507].ID, start+5000), msgAt(t, alice, c.ID, KindRetract, "", ID{9}, start+5001))
			if !fileHas(t, path, []byte(marker)) {
				t.Fatal("the marker is not in the file before burn: the check is broken")
			}

			before, _ := os.Stat(path)
			began := time.Now()
			if how == "PutChannel" {
				c.Burn = true
				err = s.PutChannel(c)
			} else {
				err = s.Forget(c.ID)
			}
			if err != nil {
				t.Fatal(err)
			}
			after, _ := os.Stat(path)
			t.Logf("burn of 3,000 messages with the scrub took %v; file %d -> %d bytes", time.Since(began), before.Size(), after.Size())
			for _, m := range ms {
				if ok, _ := s.Has(m.ID); ok {
					t.Fatalf("message %q still stored", m.Body)
				}
			}
			items, err := s.Items(c.ID, math.MinInt64)
			if err != nil || len(items) != 1 || items[0].ID != setting.ID {
				t.Fatalf("Items after burn = %v, %v; want only the setting", items, err)
			}
			if ok, _ := s.Marked(ms[7].ID); ok {
				t.Error("mark still stored")
			}
			if ok, _ := s.Retracted(ms[507].ID); ok {
				t.Error("retraction still stored")
			}
			if u := checkUsage(t, s, c.ID); u != (Usage{}) {
				t.Errorf("usage after burn %+v", u)
			}
			if fileHas(t, path, []byte(marker)) {
				t.Fatal("the bytes of a burnt message are still in the database file")
			}
			if !fileHas(t, path, []byte(keepMarker)) {
				t.Fatal("the other channel's messages are gone from the file")
			}
			if got := len(textsOf(t, s, other.ID)); got != 100 {
				t.Fatalf("the other channel holds %d of 100 messages", got)
			}
			// The file is consistent, and usable.
			if err := db.View(func(tx *bbolt.Tx) error {
				for err := range tx.Check() {
					return err
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			mustPut(t, s, msgAt(t, bob, other.ID, KindText, "after", ID{}, start+9999))
		})
	}
}

// TestStoreUsageCountedOnUpgrade opens a database written before usage was
// counted: OpenStore counts it once, and the range applies from there.
func TestStoreUsageCountedOnUpgrade(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catnest.db")
	alice := newIdent(t)
	db := openDB(t, path)
	s, err := OpenStore(db)
	if err != nil {
		t.Fatal(err)
	}
	c := NewChannel(alice.ID, "old")
	c.Joined = true
	if err := s.PutChannel(c); err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Hour).UnixMilli()
	var ms []*Message
	for i := range 2000 {
		ms = append(ms, msgAt(t, alice, c.ID, KindText, fmt.Sprint("m", i), ID{}, start+int64(i)))
	}
	ms = append(ms, msgAt(t, alice, c.ID, KindSetting, `{"burn":false}`, ID{}, start), msgAt(t, alice, c.ID, KindRetract, "", ms[3].ID, start+3000))
	mustPut(t, s, ms...)
	if err := s.SetMark(ms[10].ID, true); err != nil {
		t.Fatal(err)
	}
	// As an older version left it: no usage, and a scrub cut short.
	err = db.Update(func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket(bucketUsage); err != nil {
			return err
		}
		_, err := tx.CreateBucket(bucketScrub)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	db = openDB(t, path)
	defer db.Close()
	if s, err = OpenStore(db); err != nil {
		t.Fatal(err)
	}
	if u := checkUsage(t, s, c.ID); u.Texts != 2000 || u.Count != 2000 {
		t.Fatalf("usage after upgrade %+v, want 2,000 texts and 2,000 counted (one marked, one retract)", u)
	}
	// The scrub cut short is still due: its scratch data is freed, and
	// the next Scrub runs it.
	if err := db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketScrub)
		if b == nil {
			return fmt.Errorf("the scrub cut short is no longer due")
		}
		if k, _ := b.Cursor().First(); k != nil {
			return fmt.Errorf("scratch data left")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Scrub(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketScrub) != nil {
			return fmt.Errorf("scratch bucket left after the scrub")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	c.Range = Range{Count: 100}
	if err := s.PutChannel(c); err != nil {
		t.Fatal(err)
	}
	if got := len(textsOf(t, s, c.ID)); got != 101 {
		t.Errorf("%d texts after a count of 100, want 100 and the marked one", got)
	}
	checkUsage(t, s, c.ID)
}
