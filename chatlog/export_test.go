package chatlog

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"time"

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
