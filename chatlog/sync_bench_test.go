package chatlog_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/chatlog/recon"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// countingMesh counts the chat sync traffic of one node: the payloads of
// the requests it makes and answers, and of their answers, both ways.
type countingMesh struct {
	*mesh.Node
	bytes, requests atomic.Int64
}

func isSync(proto string) bool { return strings.HasPrefix(proto, "chat/sync/") }

func (c *countingMesh) Request(ctx context.Context, to mesh.ID, proto string, payload []byte, opts ...mesh.SendOption) ([]byte, error) {
	ans, err := c.Node.Request(ctx, to, proto, payload, opts...)
	if isSync(proto) {
		c.bytes.Add(int64(len(payload) + len(ans)))
		c.requests.Add(1)
	}
	return ans, err
}

func (c *countingMesh) Handle(proto string, h mesh.Handler) {
	if !isSync(proto) {
		c.Node.Handle(proto, h)
		return
	}
	c.Node.Handle(proto, mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		ans, err := h.ServeMesh(ctx, m)
		c.bytes.Add(int64(len(m.Payload) + len(ans)))
		c.requests.Add(1)
		return ans, err
	}))
}

// benchNode is a node for the sync benchmark; prepare, if set, fills its
// store before the chat service starts (and advertises what it holds).
func benchNode(b *testing.B, nw *meshtest.Network, name string, prepare func(*chatlog.Store)) (*chatlog.Service, *chatlog.Store, *countingMesh) {
	b.Helper()
	ident, err := mesh.NewIdentity()
	if err != nil {
		b.Fatal(err)
	}
	db, err := bbolt.Open(filepath.Join(b.TempDir(), "catnest.db"), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	n := nw.NewNode(b, name, meshtest.Options{Configure: func(c *mesh.Config) {
		c.Identity = ident
		c.MaintainInterval = 100 * time.Millisecond
		c.RecordRefresh = time.Second
		c.RecordDebounce = 30 * time.Millisecond
	}})
	store, err := chatlog.OpenStore(db)
	if err != nil {
		b.Fatal(err)
	}
	if prepare != nil {
		prepare(store)
	}
	cfg := chatlog.DefaultServiceConfig()
	cfg.Identity = ident
	cfg.SyncInterval = time.Hour // only the newcomer's join syncs
	cm := &countingMesh{Node: n}
	svc, err := chatlog.NewService(cfg, cm, store)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Serve(ctx); close(done) }()
	b.Cleanup(func() {
		cancel()
		<-done
	})
	return svc, store, cm
}

// BenchmarkNewcomerSync measures how long a newcomer takes to get a
// channel's whole history: from Join until its store holds every message,
// from one holder and from three. Messages have bodies of 20 to 420 bytes.
// Metrics: msgs/s, wire-bytes (the payloads of every sync request and
// answer of the newcomer, both ways), wire-bytes/msg, and round-trips (sync
// requests the newcomer made or answered), and cpu-s/sync (the CPU time of
// the whole process, every node, during the sync). Run it with -benchtime 1x: one
// op is one whole sync.
func BenchmarkNewcomerSync(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		var history []*chatlog.Message
		var owner *mesh.Identity
		var c chatlog.Channel
		for _, holders := range []int{1, 3} {
			b.Run(fmt.Sprintf("msgs=%d/holders=%d", n, holders), func(b *testing.B) {
				if history == nil {
					var err error
					if owner, err = mesh.NewIdentity(); err != nil {
						b.Fatal(err)
					}
					c = chatlog.NewChannel(owner.ID, "bench")
					c.Joined, c.Range = true, chatlog.Range{Days: 30}
					rng := rand.New(rand.NewPCG(uint64(n), 1))
					sizes := make([]int, n)
					for i := range sizes {
						sizes[i] = 20 + rng.IntN(401)
					}
					history = signHistory(b, owner, c.ID, n, func(i int) int { return sizes[i] })
				}
				var elapsed, cpu time.Duration
				var wire, trips int64
				for range b.N {
					b.StopTimer()
					el, cp, w, r := newcomerSync(b, c, history, holders)
					elapsed += el
					cpu += cp
					wire += w
					trips += r
				}
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "msgs/s")
				b.ReportMetric(elapsed.Seconds()/float64(b.N), "s/sync")
				b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/sync")
				b.ReportMetric(float64(wire)/float64(b.N), "wire-bytes")
				b.ReportMetric(float64(wire)/float64(n*b.N), "wire-bytes/msg")
				b.ReportMetric(float64(trips)/float64(b.N), "round-trips")
			})
		}
	}
}

// cpuTime is the process's CPU time, user and system: every node of the
// benchmark runs in it.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// newcomerSync runs one sync of history to a newcomer from holders nodes
// and returns its time, the CPU time of all nodes, wire bytes and round
// trips.
func newcomerSync(b *testing.B, c chatlog.Channel, history []*chatlog.Message, holders int) (time.Duration, time.Duration, int64, int64) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	for h := range holders {
		benchNode(b, nw, fmt.Sprint("holder", h), func(s *chatlog.Store) {
			if err := s.PutChannel(c); err != nil {
				b.Fatal(err)
			}
			for rest := history; len(rest) > 0; {
				k := min(len(rest), 2000)
				if _, err := s.Put(ctx, rest[:k]...); err != nil {
					b.Fatal(err)
				}
				rest = rest[k:]
			}
		})
	}
	svc, store, cm := benchNode(b, nw, "newcomer", nil)
	deadline := time.Now().Add(time.Minute)
	for {
		chs, err := svc.Channels(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(chs) == 1 && chs[0].Members == holders && len(cm.Peers()) >= holders {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the newcomer does not see the holders")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A holder starts its own sync with a new link a second after it; let
	// that pass (with nothing to sync yet) so that only the join is timed.
	time.Sleep(1500 * time.Millisecond)
	cm.bytes.Store(0)
	cm.requests.Store(0)

	oldest := history[0].ID
	b.StartTimer()
	start, cpu := time.Now(), cpuTime(b)
	if err := svc.Join(ctx, c.ID.String()); err != nil {
		b.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Minute)
	for {
		if ok, _ := store.Has(oldest); ok {
			items, err := store.Items(c.ID, 0)
			if err != nil {
				b.Fatal(err)
			}
			if len(items) == len(history) {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("the newcomer did not get the history in 10 minutes")
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed, cpu := time.Since(start), cpuTime(b)-cpu
	b.StopTimer()
	return elapsed, cpu, cm.bytes.Load(), cm.requests.Load()
}

// BenchmarkSyncItems measures what a side of a sync does first with a
// channel of 100,000 messages: load its items from the store and build the
// reconciliation set.
func BenchmarkSyncItems(b *testing.B) {
	const n = 100_000
	ident, err := mesh.NewIdentity()
	if err != nil {
		b.Fatal(err)
	}
	c := chatlog.NewChannel(ident.ID, "items")
	history := signHistory(b, ident, c.ID, n, func(int) int { return 100 })
	db, err := bbolt.Open(filepath.Join(b.TempDir(), "catnest.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	store, err := chatlog.OpenStore(db)
	if err != nil {
		b.Fatal(err)
	}
	for rest := history; len(rest) > 0; {
		k := min(len(rest), 5000)
		if _, err := store.Put(context.Background(), rest[:k]...); err != nil {
			b.Fatal(err)
		}
		rest = rest[k:]
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		items, err := store.Items(c.ID, 0)
		if err != nil {
			b.Fatal(err)
		}
		ri := make([]recon.Item, len(items))
		for i, it := range items {
			ri[i] = recon.Item{Time: it.Time, ID: it.ID}
		}
		if set := recon.NewSet(ri); set.Len() != n {
			b.Fatalf("%d items", set.Len())
		}
	}
}
