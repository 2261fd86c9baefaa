package recon

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// fuzzSet is the set FuzzNext's sessions hold: 300 items over an hour,
// a quarter of them at one instant, so that bounds with ID prefixes occur.
func fuzzSet() *Set {
	a, _ := pair(11, 225, 0, 0, 3600_000)
	b, _ := pair(12, 75, 0, 0, 1)
	return NewSet(append(a, b...))
}

// FuzzNext feeds arbitrary bytes to Next: it must not panic, must reply
// within MaxMessage, and must fail only with ErrBadMessage.
func FuzzNext(f *testing.F) {
	set := fuzzSet()
	opts := Options{MaxMessage: 8 << 10, LeafSize: 16}
	f.Fuzz(func(t *testing.T, msg []byte) {
		s := NewSession(set, opts)
		for range 2 {
			reply, err := s.Next(msg)
			if err != nil {
				if !errors.Is(err, ErrBadMessage) {
					t.Fatalf("error %v does not wrap ErrBadMessage", err)
				}
				return
			}
			if len(reply) > opts.MaxMessage {
				t.Fatalf("reply of %d bytes", len(reply))
			}
		}
		if n := len(s.Need()); n > len(msg)/32*2 {
			t.Fatalf("%d needed IDs from %d bytes", n, len(msg))
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzNext from the messages
// of real reconciliations against fuzzSet. Run with RECON_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("RECON_WRITE_CORPUS") == "" {
		t.Skip("set RECON_WRITE_CORPUS=1 to rewrite the seed corpus")
	}
	set := fuzzSet()
	peers := map[string]*Set{
		"empty":    NewSet(nil),
		"subset":   NewSet(set.items[:250]),
		"superset": NewSet(append(append([]Item{}, set.items[10:]...), func() []Item { a, _ := pair(13, 40, 0, 0, 3600_000); return a }()...)),
		"other":    NewSet(func() []Item { a, _ := pair(14, 100, 0, 0, 3600_000); return a }()),
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzNext")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, peer := range peers {
		for _, p := range []int{1, 4, 32} {
			// The peer is the initiator so that every message it sends is
			// one FuzzNext's session could receive.
			o := Options{MaxMessage: 8 << 10, LeafSize: 16, PrefixLen: p}
			a, b := NewSession(peer, o), NewSession(set, o)
			msg, _ := a.Start()
			cur, other := b, a
			for k := 0; msg != nil; k++ {
				if cur == b {
					file := filepath.Join(dir, name+"-p"+strconv.Itoa(p)+"-"+strconv.Itoa(k))
					data := "go test fuzz v1\n[]byte(" + strconv.Quote(string(msg)) + ")\n"
					if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				var err error
				if msg, err = cur.Next(msg); err != nil {
					t.Fatal(err)
				}
				cur, other = other, cur
			}
		}
	}
}
