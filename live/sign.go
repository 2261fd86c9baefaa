package live

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"

	"github.com/catnest/catnest/mesh"
)

// signed is the wire form of every record and tree request the service
// sends: a JSON body, the sender's public key and its signature over the
// body under a context string, so that a signature for one kind of message
// is never valid for another.
type signed struct {
	Body json.RawMessage `json:"b"`
	Key  []byte          `json:"k"`
	Sig  []byte          `json:"s"`
}

// Limits of the envelope's fields (a P-256 SPKI is 91 bytes, a signature at
// most 72).
const (
	maxKey = 256
	maxSig = 128
)

func digest(context string, body []byte) []byte {
	h := sha256.New()
	h.Write([]byte(context))
	h.Write([]byte{0})
	h.Write(body)
	return h.Sum(nil)
}

// seal encodes v and signs it as ident.
func seal(ident *mesh.Identity, context string, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("live: encode %s: %w", context, err)
	}
	key, err := x509.MarshalPKIXPublicKey(&ident.Key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("live: encode key: %w", err)
	}
	sig, err := ecdsa.SignASN1(rand.Reader, ident.Key, digest(context, body))
	if err != nil {
		return nil, fmt.Errorf("live: sign %s: %w", context, err)
	}
	return json.Marshal(signed{Body: body, Key: key, Sig: sig})
}

// open checks an envelope of at most limit bytes and decodes its body into
// v; it returns the signer. Every error wraps errBadRecord.
func open(b []byte, limit int, context string, v any) (mesh.ID, error) {
	if len(b) > limit {
		return "", fmt.Errorf("%w: %d bytes, limit %d", errBadRecord, len(b), limit)
	}
	var env signed
	if err := json.Unmarshal(b, &env); err != nil {
		return "", fmt.Errorf("%w: %w", errBadRecord, err)
	}
	if len(env.Key) > maxKey || len(env.Sig) > maxSig {
		return "", fmt.Errorf("%w: key or signature too long", errBadRecord)
	}
	pk, err := x509.ParsePKIXPublicKey(env.Key)
	if err != nil {
		return "", fmt.Errorf("%w: key: %w", errBadRecord, err)
	}
	pub, ok := pk.(*ecdsa.PublicKey)
	if !ok {
		return "", fmt.Errorf("%w: not an ECDSA key", errBadRecord)
	}
	id, err := mesh.IDFromPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errBadRecord, err)
	}
	if !ecdsa.VerifyASN1(pub, digest(context, env.Body), env.Sig) {
		return "", fmt.Errorf("%w: bad signature", errBadRecord)
	}
	if err := json.Unmarshal(env.Body, v); err != nil {
		return "", fmt.Errorf("%w: body: %w", errBadRecord, err)
	}
	return id, nil
}
