package mesh

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"
	"time"
)

// BenchmarkDirectoryJoin measures what the directory costs a node when a
// link comes up (the peer's snapshot of every record) and when a record
// it already holds comes again by broadcast (the first copy goes through
// the validator), with directories of 100 and 500 nodes.
//
//	go test -run '^$' -bench BenchmarkDirectoryJoin ./mesh/
func BenchmarkDirectoryJoin(b *testing.B) {
	for _, size := range []int{100, 500} {
		b.Run(fmt.Sprint("records=", size), func(b *testing.B) {
			var envs [][]byte
			for i := range size {
				ident, err := NewIdentity()
				if err != nil {
					b.Fatal(err)
				}
				nb := make([]ID, 4)
				for j := range nb {
					nb[j] = ident.ID
				}
				env, err := signRecord(ident, wireRecord{ID: ident.ID, Name: fmt.Sprint("n", i), Seq: uint64(time.Now().UnixNano()), Neighbors: nb})
				if err != nil {
					b.Fatal(err)
				}
				envs = append(envs, env)
			}
			ident, _ := NewIdentity()
			n, err := NewNode(Config{Identity: ident, Transport: nopTransport{}})
			if err != nil {
				b.Fatal(err)
			}
			var snap []byte
			for _, env := range envs {
				snap = appendUvarintPrefixed(snap, env)
			}
			check := n.bc.valid[dirTopic]
			n.dir.handleSnapshot(context.Background(), &Message{From: "x", Payload: snap})
			if len(n.dir.records) != size {
				b.Fatalf("%d records held, want %d", len(n.dir.records), size)
			}
			b.Run("snapshot-held", func(b *testing.B) {
				for b.Loop() {
					n.dir.handleSnapshot(context.Background(), &Message{From: "x", Payload: snap})
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(size), "µs/record")
			})
			b.Run("broadcast-held", func(b *testing.B) {
				for b.Loop() {
					for _, env := range envs {
						if err := check(BroadcastMsg{Topic: dirTopic, Payload: env}); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(size), "µs/record")
			})
		})
	}
}

func appendUvarintPrefixed(b, v []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
}

// A record held already passes the validator and the snapshot merge
// unchecked only byte for byte: a copy of it with another signature, or
// the same signature over another body, is checked and refused.
func TestHeldRecordSkipsOnlyIdenticalBytes(t *testing.T) {
	ident, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewIdentity()
	n, err := NewNode(Config{Identity: other, Transport: nopTransport{}})
	if err != nil {
		t.Fatal(err)
	}
	w := wireRecord{ID: ident.ID, Name: "held", Seq: 7, Neighbors: []ID{}}
	env, err := signRecord(ident, w)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.dir.merge(env, "x", false); err != nil {
		t.Fatal(err)
	}
	if err := n.dir.validate(BroadcastMsg{Payload: env}); err != nil {
		t.Fatalf("the held record itself: %v", err)
	}
	badSig := append([]byte(nil), env...)
	_, rest, _ := cutUvarintPrefixed(badSig, 256)
	sigAt := len(badSig) - len(rest) + 1 // after the signature's one-byte length
	badSig[sigAt+8] ^= 0x40
	sameSeq := append([]byte(nil), env...)
	i := bytes.Index(sameSeq, []byte(`"held"`))
	sameSeq[i+1] = 'H' // another name under the same signature and seq
	for name, forged := range map[string][]byte{"another signature": badSig, "another body": sameSeq} {
		if err := n.dir.validate(BroadcastMsg{Payload: forged}); err == nil {
			t.Errorf("%s: the validator passed a forged copy of a held record", name)
		}
		n.dir.merge(forged, "x", false) // as a snapshot brings it
	}
	if r, _ := n.Lookup(ident.ID); r.Name != "held" {
		t.Fatalf("the directory changed: %+v", r)
	}
}

// Nodes that share a SignatureCache check a record's signature once
// between them, but only for the very bytes that verified: a node that
// does not hold the record yet still refuses a copy with another
// signature or another body, and a cache filled past its size forgets
// the oldest records rather than growing.
func TestSharedSignatureCacheSkipsOnlyVerifiedBytes(t *testing.T) {
	cache := NewSignatureCache(64)
	var nodes []*Node
	for range 2 {
		ident, _ := NewIdentity()
		n, err := NewNode(Config{Identity: ident, Transport: nopTransport{}, SignatureCache: cache})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	a, b := nodes[0], nodes[1]
	ident, _ := NewIdentity()
	env, err := signRecord(ident, wireRecord{ID: ident.ID, Name: "shared", Seq: 7, Neighbors: []ID{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.dir.validate(BroadcastMsg{Payload: env}); err != nil {
		t.Fatalf("a genuine record: %v", err)
	}
	if !cache.verified(sha256.Sum256(env)) {
		t.Fatal("the record that verified is not in the shared cache")
	}
	badSig := append([]byte(nil), env...)
	_, rest, _ := cutUvarintPrefixed(badSig, 256)
	badSig[len(badSig)-len(rest)+9] ^= 0x40
	otherBody := append([]byte(nil), env...)
	i := bytes.Index(otherBody, []byte(`"shared"`))
	otherBody[i+1] = 'S'
	for name, forged := range map[string][]byte{"another signature": badSig, "another body": otherBody} {
		if err := b.dir.validate(BroadcastMsg{Payload: forged}); err == nil {
			t.Errorf("%s: passed on the strength of the genuine record's cached check", name)
		}
		if err := b.dir.merge(forged, "x", false); !offence(err) {
			t.Errorf("%s: a snapshot's forged record merged (err %v)", name, err)
		}
	}
	if _, ok := b.Lookup(ident.ID); ok {
		t.Fatal("a forged record reached the directory")
	}
	if err := b.dir.merge(env, "x", false); err != nil {
		t.Fatalf("the genuine record through the other node: %v", err)
	}
	for k := range 1000 {
		var sum [32]byte
		binary.BigEndian.PutUint64(sum[:], uint64(k))
		cache.add(sum)
	}
	if n := len(cache.cur) + len(cache.old); n > 2*64 {
		t.Fatalf("the cache holds %d sums, bound %d", n, 2*64)
	}
}
