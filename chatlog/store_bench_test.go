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
// msgs/commit is the number of messages per transaction of the group
// commit. Signing is done before the timer starts.
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
				s.useBatch = viaBatch
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
				b.ResetTimer()
				for range mode.writers {
					wg.Go(func() {
						for {
							end := int(next.Add(int64(mode.perPut)))
							start := end - mode.perPut
							if start >= b.N {
								return
							}
							if _, err := s.Put(ctx, msgs[start:min(end, b.N)]...); err != nil {
								panic(err)
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
				if !viaBatch {
					b.ReportMetric(float64(b.N)/float64(s.commits.Load()), "msgs/commit")
				}
				if items, _ := s.Items(testChannel, 0); len(items) != b.N {
					b.Fatalf("%d messages stored, want %d", len(items), b.N)
				}
			})
		}
	}
}
