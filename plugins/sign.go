package plugins

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"fmt"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// sigContext separates plugin signatures from everything else the node
// key signs (chat messages, directory records, relayed signals).
const sigContext = "catnest plugin v1\x00"

// Bounds of the key and signature an entry carries: a P-256
// SubjectPublicKeyInfo is 91 bytes, an ASN.1 signature at most 72.
const (
	maxKey = 128
	maxSig = 80
)

// Signature is a publisher's signature of a plugin: its node key (as a
// SubjectPublicKeyInfo, whose hash is the publisher's node ID) and an
// ECDSA signature of (name, version, MD5), both base64.
type Signature struct {
	Publisher mesh.ID `json:"publisher"`
	Key       string  `json:"key"`
	Sig       string  `json:"sig"`
}

// signedDigest is what a publisher signs: the context, then name and
// version each with its length, then the file's MD5.
func signedDigest(name, version string, id shards.MD5) []byte {
	h := sha256.New()
	b := []byte(sigContext)
	b = binary.AppendUvarint(b, uint64(len(name)))
	b = append(b, name...)
	b = binary.AppendUvarint(b, uint64(len(version)))
	b = append(b, version...)
	b = append(b, id[:]...)
	h.Write(b)
	return h.Sum(nil)
}

// Sign signs (name, version, id) with the node's key: the publisher of
// the plugin is the node.
func Sign(ident *mesh.Identity, name, version string, id shards.MD5) (Signature, error) {
	if ident == nil || ident.Key == nil {
		return Signature{}, fmt.Errorf("plugins: sign: no identity")
	}
	spki, err := x509.MarshalPKIXPublicKey(&ident.Key.PublicKey)
	if err != nil {
		return Signature{}, fmt.Errorf("plugins: sign: %w", err)
	}
	sig, err := ecdsa.SignASN1(rand.Reader, ident.Key, signedDigest(name, version, id))
	if err != nil {
		return Signature{}, fmt.Errorf("plugins: sign: %w", err)
	}
	return Signature{Publisher: ident.ID, Key: base64.StdEncoding.EncodeToString(spki), Sig: base64.StdEncoding.EncodeToString(sig)}, nil
}

// Verify checks that s is its publisher's signature of (name, version,
// id): the key hashes to the publisher's node ID and signs them. Errors
// wrap ErrBadSignature.
func (s Signature) Verify(name, version string, id shards.MD5) error {
	if len(s.Key) > base64.StdEncoding.EncodedLen(maxKey) || len(s.Sig) > base64.StdEncoding.EncodedLen(maxSig) {
		return fmt.Errorf("%w: key or signature too long", ErrBadSignature)
	}
	spki, err := base64.StdEncoding.DecodeString(s.Key)
	if err != nil {
		return fmt.Errorf("%w: key is not base64", ErrBadSignature)
	}
	sig, err := base64.StdEncoding.DecodeString(s.Sig)
	if err != nil {
		return fmt.Errorf("%w: signature is not base64", ErrBadSignature)
	}
	pub, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		return fmt.Errorf("%w: key: %v", ErrBadSignature, err)
	}
	ek, ok := pub.(*ecdsa.PublicKey)
	if !ok || ek.Curve != elliptic.P256() {
		return fmt.Errorf("%w: key is not ECDSA P-256", ErrBadSignature)
	}
	// One encoding per key, so that the ID derived is the one hashed.
	if again, err := x509.MarshalPKIXPublicKey(ek); err != nil || !bytes.Equal(again, spki) {
		return fmt.Errorf("%w: key is not in canonical form", ErrBadSignature)
	}
	pid, err := mesh.IDFromPublicKey(ek)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if pid != s.Publisher {
		return fmt.Errorf("%w: the key is %s's, not the claimed publisher %s's", ErrBadSignature, pid.Short(), s.Publisher.Short())
	}
	if !ecdsa.VerifyASN1(ek, signedDigest(name, version, id), sig) {
		return fmt.Errorf("%w: %s did not sign %s %s (%s)", ErrBadSignature, s.Publisher.Short(), name, version, id)
	}
	return nil
}
