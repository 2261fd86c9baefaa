package chatlog

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"time"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/mesh"
)

// SignUnchecked signs a message without the rules of Check, as a hostile
// peer could.
func SignUnchecked(ident *mesh.Identity, ch ChannelID, kind Kind, body []byte, ref ID, t time.Time) *Message {
	m, err := NewMessage(ident, ch, KindText, []byte("x"), ID{}, t)
	if err != nil {
		panic(err)
	}
	m.Kind, m.Body, m.Ref = kind, body, ref
	m.ID = sha256.Sum256(m.appendSigned(nil))
	d := sigDigest(m.ID)
	m.Sig, err = ecdsa.SignASN1(rand.Reader, ident.Key, d[:])
	if err != nil {
		panic(err)
	}
	return m
}

// putVia returns Put through the group commit (batch false) or through
// bbolt's db.Batch, for the test and the benchmark that compare the two.
func (s *Store) putVia(batch bool) func(ctx context.Context, ms ...*Message) (int, error) {
	if !batch {
		return s.Put
	}
	return func(ctx context.Context, ms ...*Message) (int, error) { return s.put(ctx, s.db.Batch, ms) }
}

// commits returns the id of the database's newest write transaction: each
// commit adds one, so the difference of two readings counts the commits
// between them.
func (s *Store) commits() int {
	var id int
	s.db.View(func(tx *bbolt.Tx) error { id = tx.ID(); return nil })
	return id
}
