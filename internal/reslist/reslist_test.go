package reslist

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
)

type tentry struct {
	K Key
	S string
}

func key(e tentry) Key { return e.K }

func hash(e tentry) uint64 {
	h := fnv.New64a()
	h.Write(e.K[:])
	h.Write([]byte(e.S))
	return h.Sum64()
}

func mk(i int, s string) tentry {
	var k Key
	binary.BigEndian.PutUint64(k[8:], uint64(i+1)*2654435761%1_000_003) // never the zero key, which pages start after
	return tentry{K: k, S: s}
}

func TestLocal(t *testing.T) {
	a, b := NewLocal(key, hash), NewLocal(key, hash)
	const n = 1000
	for i := range n {
		a.Put(1, mk(i, "x"))
		b.Put(2, mk(n-1-i, "x"))
	}
	if sa, sb := a.Summary(), b.Summary(); sa != sb || sa.Count != n {
		t.Fatalf("the same entries in another order: %+v and %+v", sa, sb)
	}
	v := a.Summary().Version
	a.Put(1, mk(5, "x"))
	if a.Summary().Version != v {
		t.Fatal("putting an unchanged entry moved the version")
	}
	a.Put(1, mk(5, "y"))
	if a.Summary().Version == v {
		t.Fatal("a changed entry kept the version")
	}
	a.Put(1, mk(5, "x"))
	if a.Summary().Version != v {
		t.Fatal("changing an entry back did not give the version back")
	}
	// Two owners: the entry goes when the last lets go.
	a.Put(2, mk(7, "x"))
	a.Remove(1, mk(7, "x").K)
	if _, ok := a.Get(mk(7, "x").K); !ok {
		t.Fatal("an entry went while another owner held it")
	}
	a.Remove(2, mk(7, "x").K)
	if _, ok := a.Get(mk(7, "x").K); ok || a.Summary().Count != n-1 {
		t.Fatal("an entry stayed when its owners let go")
	}
	// Pages of 33 give every entry once, in key order.
	var after Key
	var got []tentry
	for {
		p := a.Page(after, 33)
		if len(p.Entries) > 33 || p.Version != a.Summary().Version {
			t.Fatalf("page of %d entries, version %x", len(p.Entries), p.Version)
		}
		got = append(got, p.Entries...)
		if !p.More {
			break
		}
		after = p.Entries[len(p.Entries)-1].K
	}
	all, _ := a.Entries()
	if len(got) != n-1 || len(all) != n-1 {
		t.Fatalf("%d entries paged, %d listed, want %d", len(got), len(all), n-1)
	}
	for i := range got {
		if got[i] != all[i] || i > 0 && CompareKey(got[i-1].K, got[i].K) >= 0 {
			t.Fatalf("entry %d out of order", i)
		}
		if e, ok := Find(all, key, got[i].K); !ok || e != got[i] {
			t.Fatalf("Find of entry %d", i)
		}
	}
}

// peer serves a list to a Remote, honestly or as a hostile node would.
type peer struct {
	l *Local[tentry]
	// serve may replace the page; nil serves l honestly.
	serve     func(p Page[tentry], call int64) Page[tentry]
	calls     atomic.Int64
	mu        sync.Mutex
	penalties []string
}

var errBad = errors.New("bad frame")

func newRemote(t *testing.T, p *peer, tweak func(*RemoteConfig[tentry])) *Remote[tentry] {
	t.Helper()
	cfg := RemoteConfig[tentry]{
		Name: "test", What: "test list", Key: key,
		Cost: func(e tentry) int64 { return int64(len(e.S)) },
		Request: func(ctx context.Context, node mesh.ID, after Key) ([]byte, error) {
			c := p.calls.Add(1)
			pg := p.l.Page(after, 50)
			if p.serve != nil {
				pg = p.serve(pg, c)
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return json.Marshal(pg)
		},
		Decode: func(b []byte) (Page[tentry], error) {
			var pg Page[tentry]
			err := json.Unmarshal(b, &pg)
			return pg, err
		},
		Penalize: func(node mesh.ID, reason string) {
			p.mu.Lock()
			p.penalties = append(p.penalties, reason)
			p.mu.Unlock()
		},
		BadFrame: errBad, Cache: 4, MaxEntries: 10_000, MaxBytes: 4 << 20, Timeout: 30 * time.Second,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	return NewRemote(cfg)
}

func filled(n int) *Local[tentry] {
	l := NewLocal(key, hash)
	for i := range n {
		l.Put(1, mk(i, fmt.Sprint("entry ", i)))
	}
	return l
}

func TestRemoteHonest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := &peer{l: filled(5000)}
	rc := newRemote(t, p, nil)
	v := p.l.Summary().Version
	// Callers at once share one fetch.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if got, err := rc.Get(ctx, "n1", v); err != nil || len(got) != 5000 {
				t.Errorf("%d entries, %v", len(got), err)
			}
		})
	}
	wg.Wait()
	if c := p.calls.Load(); c != 100 {
		t.Fatalf("%d pages asked, want 100 (one fetch of 5,000 by 50)", c)
	}
	if _, err := rc.Get(ctx, "n1", v); err != nil || p.calls.Load() != 100 {
		t.Fatalf("an unchanged list was fetched again (%d pages), %v", p.calls.Load(), err)
	}
	if rc.Used() <= 0 {
		t.Fatal("a cached list holds no bytes")
	}
	rc.ForgetOffline(nil)
	if rc.Used() != 0 || len(rc.All()) != 0 {
		t.Fatalf("after its node left: %d bytes, %d lists", rc.Used(), len(rc.All()))
	}
}

// TestRemoteHostile has a node break each rule: nothing is cached, the
// bytes reserved are given back, the pages asked are bounded, and the
// node is scored down where the page itself is wrong.
func TestRemoteHostile(t *testing.T) {
	for _, tc := range []struct {
		name     string
		serve    func(p Page[tentry], call int64) Page[tentry]
		tweak    func(*RemoteConfig[tentry])
		err      string
		penalty  bool
		maxCalls int64
	}{
		{name: "endless", err: "over 10000 entries", maxCalls: 10_000/50 + 2, serve: func(p Page[tentry], call int64) Page[tentry] {
			// Always more, each page further on.
			p.Entries = make([]tentry, 50)
			for i := range p.Entries {
				p.Entries[i] = mk(int(call)*50+i, "e")
				binary.BigEndian.PutUint64(p.Entries[i].K[:8], uint64(call))
				binary.BigEndian.PutUint64(p.Entries[i].K[8:], uint64(i))
			}
			p.More = true
			return p
		}},
		{name: "huge entries", err: "bytes kept", maxCalls: 10, tweak: func(c *RemoteConfig[tentry]) { c.MaxBytes = 200 << 10 },
			serve: func(p Page[tentry], call int64) Page[tentry] {
				for i := range p.Entries {
					p.Entries[i].S = strings.Repeat("x", 10<<10)
				}
				return p
			}},
		{name: "changing version", err: "kept changing", maxCalls: 2 * maxVersionRetries, serve: func(p Page[tentry], call int64) Page[tentry] {
			p.Version = uint64(call)
			return p
		}},
		{name: "goes back", err: "goes back", penalty: true, maxCalls: 2, serve: func(p Page[tentry], call int64) Page[tentry] {
			if call > 1 {
				p.Entries[0].K = Key{}
			}
			return p
		}},
		{name: "unsorted page", err: "not in order", penalty: true, maxCalls: 1, serve: func(p Page[tentry], call int64) Page[tentry] {
			p.Entries[0], p.Entries[1] = p.Entries[1], p.Entries[0]
			return p
		}},
		{name: "empty page with more", err: "says more follow", penalty: true, maxCalls: 1, serve: func(p Page[tentry], call int64) Page[tentry] {
			return Page[tentry]{Version: p.Version, More: true}
		}},
		{name: "slow", err: "not listed within", maxCalls: 20, tweak: func(c *RemoteConfig[tentry]) { c.Timeout = 300 * time.Millisecond },
			serve: func(p Page[tentry], call int64) Page[tentry] {
				time.Sleep(50 * time.Millisecond) // 20 pages: over a second
				return p
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			p := &peer{l: filled(1000), serve: tc.serve}
			rc := newRemote(t, p, tc.tweak)
			_, err := rc.Get(ctx, "liar", 1)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err %v, want %q", err, tc.err)
			}
			if tc.penalty != errors.Is(err, errBad) || tc.penalty != (len(p.penalties) > 0) {
				t.Fatalf("penalties %q, err %v", p.penalties, err)
			}
			if c := p.calls.Load(); c > tc.maxCalls {
				t.Fatalf("%d pages asked, at most %d", c, tc.maxCalls)
			}
			if rc.Used() != 0 || len(rc.All()) != 0 {
				t.Fatalf("after the refusal: %d bytes held, %d lists cached", rc.Used(), len(rc.All()))
			}
		})
	}
}
