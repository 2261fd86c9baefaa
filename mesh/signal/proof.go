package signal

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// A proof of id is the token a catnest node registers with: it shows
// that the client holds the private key whose node ID it registers, so
// that nobody else can hold a node's id on our server. To a PeerJS server
// (npm peer) it is just an opaque token.
//
// It is "cn1." followed by unpadded base64url of
//
//	point  65 bytes  the key's public point, SEC 1 uncompressed (P-256)
//	time   8 bytes   Unix milliseconds when the proof was made, big endian
//	nonce  16 bytes  random
//	sig    the rest  ASN.1 ECDSA signature over proofDigest
//
// The signature covers the server's connection key and the id as well,
// so a proof made for one id or one deployment is worth nothing for
// another. A proof is accepted for a new registration only while its time
// is within proofWindow of the server's clock; a client re-attaching with
// the token the server already holds for it needs no fresh one, as in
// PeerJS. Among proofs for one id, the newer takes over the id (a
// restarted node), the older is told ID-TAKEN (a replayed old token).
const (
	proofPrefix   = "cn1."
	proofPointLen = 65
	proofNonceLen = 16
	// proofMaxSigLen is the longest ASN.1 encoding of a P-256 signature.
	proofMaxSigLen = 72
	proofFixedLen  = proofPointLen + 8 + proofNonceLen
	// maxProofLength bounds the token the proof decoder looks at; the
	// longest valid proof is 220 characters, under maxTokenLength.
	maxProofLength = len(proofPrefix) + (proofFixedLen+proofMaxSigLen+2)/3*4
	// proofWindow is how far a proof's time may be from the server's clock
	// for a new registration: nodes need a clock within this of the
	// server's.
	proofWindow = 5 * time.Minute
	// proofDomain separates these signatures from every other use of the
	// node key (chat messages, advertisements, DTLS).
	proofDomain = "catnest signal: proof of node id v1\x00"
)

// nodeIDLen is the length of a catnest node ID: 20 bytes in base32.
const nodeIDLen = 32

// nodeIDEncoding is RFC 4648 base32, lowercase, without padding, as in
// mesh.ID; this package cannot import mesh, which imports it.
var nodeIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// isNodeID reports whether id has the shape of a catnest node ID (32
// characters of [a-z2-7]). Ids of that shape must be proven with the
// node key; PeerJS's own ids (UUIDs, or what pages choose) never have it
// unless chosen to.
func isNodeID(id string) bool {
	if len(id) != nodeIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

// nodeIDOf returns the catnest node ID of pub: base32 of the first 20
// bytes of SHA-256 over its SubjectPublicKeyInfo, as mesh.IDFromPublicKey.
func nodeIDOf(pub *ecdsa.PublicKey) (string, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("signal: encode public key: %w", err)
	}
	sum := sha256.Sum256(spki)
	return nodeIDEncoding.EncodeToString(sum[:20]), nil
}

// signerID checks that signer holds a P-256 ECDSA key and returns its
// node ID.
func signerID(signer crypto.Signer) (string, error) {
	pub, ok := signer.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return "", fmt.Errorf("signal: the signer's key is %T, not an ECDSA P-256 key", signer.Public())
	}
	return nodeIDOf(pub)
}

// proof is a decoded proof of id; it is checked with verify and fresh.
type proof struct {
	point []byte // uncompressed public point
	pub   *ecdsa.PublicKey
	at    int64 // Unix milliseconds
	nonce []byte
	sig   []byte
}

// errBadProof is wrapped by every error about a proof token.
var errBadProof = errors.New("signal: bad proof of id")

// makeProof returns a token proving that signer's holder owns id (its
// node ID) on a server whose connection key is serverKey, made at now.
func makeProof(signer crypto.Signer, serverKey, id string, now time.Time) (string, error) {
	pub, ok := signer.Public().(*ecdsa.PublicKey)
	if !ok {
		return "", fmt.Errorf("%w: the signer's key is not ECDSA", errBadProof)
	}
	point, err := pub.Bytes()
	if err != nil {
		return "", fmt.Errorf("signal: proof: %w", err)
	}
	p := proof{point: point, at: now.UnixMilli(), nonce: make([]byte, proofNonceLen)}
	rand.Read(p.nonce)
	digest := proofDigest(serverKey, id, p.at, p.nonce)
	p.sig, err = signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("signal: sign proof of id: %w", err)
	}
	if len(p.point) != proofPointLen || len(p.sig) > proofMaxSigLen {
		return "", fmt.Errorf("%w: the signer made a key or signature of an unexpected size", errBadProof)
	}
	b := make([]byte, 0, proofFixedLen+len(p.sig))
	b = append(b, p.point...)
	b = binary.BigEndian.AppendUint64(b, uint64(p.at))
	b = append(b, p.nonce...)
	b = append(b, p.sig...)
	return proofPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// proofDigest is what a proof signs: the domain, then the server's key,
// the id, the time and the nonce, each length-prefixed where it varies.
func proofDigest(serverKey, id string, at int64, nonce []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(proofDomain))
	var n [8]byte
	binary.BigEndian.PutUint16(n[:2], uint16(len(serverKey)))
	h.Write(n[:2])
	h.Write([]byte(serverKey))
	binary.BigEndian.PutUint16(n[:2], uint16(len(id)))
	h.Write(n[:2])
	h.Write([]byte(id))
	binary.BigEndian.PutUint64(n[:], uint64(at))
	h.Write(n[:])
	h.Write(nonce)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// parseProof decodes a proof token, which comes from anyone: it checks
// sizes and that the point is on P-256, not the signature (verify does).
// The result does not alias token.
func parseProof(token string) (proof, error) {
	var p proof
	if len(token) > maxProofLength {
		return p, fmt.Errorf("%w: %d characters, over the limit of %d", errBadProof, len(token), maxProofLength)
	}
	rest, ok := strings.CutPrefix(token, proofPrefix)
	if !ok {
		return p, fmt.Errorf("%w: not a %q token", errBadProof, proofPrefix)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(rest)
	if err != nil {
		return p, fmt.Errorf("%w: %v", errBadProof, err)
	}
	if len(b) <= proofFixedLen || len(b) > proofFixedLen+proofMaxSigLen {
		return p, fmt.Errorf("%w: %d bytes", errBadProof, len(b))
	}
	p.point = b[:proofPointLen]
	p.pub, err = ecdsa.ParseUncompressedPublicKey(elliptic.P256(), p.point)
	if err != nil {
		return proof{}, fmt.Errorf("%w: %v", errBadProof, err)
	}
	p.at = int64(binary.BigEndian.Uint64(b[proofPointLen:]))
	p.nonce = b[proofPointLen+8 : proofFixedLen]
	p.sig = b[proofFixedLen:]
	return p, nil
}

// verify checks that p's key is the one id names and that p's signature
// is valid for serverKey and id. It does not look at p's time.
func (p proof) verify(serverKey, id string) error {
	got, err := nodeIDOf(p.pub)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadProof, err)
	}
	if got != id {
		return fmt.Errorf("%w: the key is that of %s, not %s", errBadProof, got, id)
	}
	digest := proofDigest(serverKey, id, p.at, p.nonce)
	if !ecdsa.VerifyASN1(p.pub, digest[:], p.sig) {
		return fmt.Errorf("%w: invalid signature", errBadProof)
	}
	return nil
}

// fresh reports whether p was made within proofWindow of now.
func (p proof) fresh(now time.Time) bool {
	return now.Add(-proofWindow).UnixMilli() <= p.at && p.at <= now.Add(proofWindow).UnixMilli()
}
