package chatlog

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// BenchmarkIngest measures messages per second put into a store on disk
// with bbolt's default fsync on every commit. One op is one message.
//
//   - single: one writer, one message per Put
//   - writers-8: 8 writers, one message per Put each
//   - put-100: one writer, 100 messages per Put
//
// Each runs through the store's group commit (commit=group) and through
// db.Batch with its default MaxBatchDelay of 10 ms (commit=batch).
// msgs/commit is the number of messages per write transaction, counted
// by the database's transaction ids. Signing is done before the timer starts.
func BenchmarkIngest(b *testing.B) {
	ident := newIdent(b)
	body := []byte(strings.Repeat("chat message ", 8)) // ~100 bytes
	for _, viaBatch := range []bool{false, true} {
		commit := "group"
		if viaBatch {
			commit = "batch"
		}
		for _, mode := range []struct {
			name            string
			writers, perPut int
		}{{"single", 1, 1}, {"writers-8", 8, 1}, {"put-100", 1, 100}} {
			b.Run(fmt.Sprintf("commit=%s/%s", commit, mode.name), func(b *testing.B) {
				db := openDB(b, filepath.Join(b.TempDir(), "catnest.db"))
				defer db.Close()
				s, err := OpenStore(db)
				if err != nil {
					b.Fatal(err)
				}
				put := s.putVia(viaBatch)
				msgs := make([]*Message, b.N)
				var wg sync.WaitGroup
				for w := range 2 { // sign on both cores
					wg.Go(func() {
						for i := w; i < b.N; i += 2 {
							m, err := NewMessage(ident, testChannel, KindText, body, ID{}, time.UnixMilli(int64(i)))
							if err != nil {
								panic(err)
							}
							msgs[i] = m
						}
					})
				}
				wg.Wait()
				ctx := context.Background()
				var next atomic.Int64
				commits := s.commits()
				b.ResetTimer()
				for range mode.writers {
					wg.Go(func() {
						for {
							end := int(next.Add(int64(mode.perPut)))
							start := end - mode.perPut
							if start >= b.N {
								return
							}
							if _, err := put(ctx, msgs[start:min(end, b.N)]...); err != nil {
								panic(err)
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
				b.ReportMetric(float64(b.N)/float64(s.commits()-commits), "msgs/commit")
				if items, _ := s.Items(testChannel, 0); len(items) != b.N {
					b.Fatalf("%d messages stored, want %d", len(items), b.N)
				}
			})
		}
	}
}

// BenchmarkPutInRange measures what a message costs to take in as the
// service does (Lower, then Put) in a channel that is full up to its count
// range, so that every message pushes the oldest one out. One op is one
// message; the cost should not grow with the size of the channel. The
// database does not fsync, so the figure is the store's own work.
func BenchmarkPutInRange(b *testing.B) {
	ident := newIdent(b)
	body := []byte(strings.Repeat("chat message ", 8)) // ~100 bytes
	sign := func(n int, from int64) []*Message {
		out := make([]*Message, n)
		var wg sync.WaitGroup
		for w := range 2 { // sign on both cores
			wg.Go(func() {
				for i := w; i < n; i += 2 {
					m, err := NewMessage(ident, testChannel, KindText, body, ID{}, time.UnixMilli(from+int64(i)))
					if err != nil {
						panic(err)
					}
					out[i] = m
				}
			})
		}
		wg.Wait()
		return out
	}
	for _, size := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("channel=%d", size), func(b *testing.B) {
			db, err := bbolt.Open(filepath.Join(b.TempDir(), "catnest.db"), 0o600, &bbolt.Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			s, err := OpenStore(db)
			if err != nil {
				b.Fatal(err)
			}
			c := NewChannel(ident.ID, "full")
			c.ID = testChannel
			c.Joined, c.Range = true, Range{Count: size}
			if err := s.PutChannel(c); err != nil {
				b.Fatal(err)
			}
			start := time.Now().Add(-24 * time.Hour).UnixMilli()
			fill := sign(size, start)
			ctx := context.Background()
			for i := 0; i < size; i += 1000 {
				if _, err := s.Put(ctx, fill[i:min(i+1000, size)]...); err != nil {
					b.Fatal(err)
				}
			}
			msgs := sign(b.N, start+int64(size))
			now := time.Now()
			b.ResetTimer()
			for _, m := range msgs {
				if lower, err := s.Lower(testChannel, c.Range, now); err != nil || m.Time < lower {
					b.Fatalf("Lower = %d, %v", lower, err)
				}
				if _, err := s.Put(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if items, _ := s.Items(testChannel, 0); len(items) > size+b.N {
				b.Fatalf("%d messages stored", len(items))
			}
		})
	}
}
