package mesh

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ID names a node: lowercase unpadded base32 of the first 20 bytes of
// SHA-256 over the node key's SubjectPublicKeyInfo. It is 32 characters of
// [a-z2-7], so it is also a valid PeerJS id.
type ID string

// idEncoding is RFC 4648 base32, lowercase, without padding.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// idLen is the length of an encoded ID: 20 bytes in base32.
const idLen = 32

// IDFromPublicKey derives the node ID of a public key.
func IDFromPublicKey(pub *ecdsa.PublicKey) (ID, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("mesh: encode public key: %w", err)
	}
	return idFromSPKI(spki), nil
}

func idFromSPKI(spki []byte) ID {
	sum := sha256.Sum256(spki)
	return ID(idEncoding.EncodeToString(sum[:20]))
}

// ParseID checks that s has the form of a node ID.
func ParseID(s string) (ID, error) {
	if len(s) != idLen {
		return "", fmt.Errorf("%w: %q has length %d, want %d", ErrBadID, s, len(s), idLen)
	}
	if _, err := idEncoding.DecodeString(s); err != nil || strings.ToLower(s) != s {
		return "", fmt.Errorf("%w: %q is not lowercase base32", ErrBadID, s)
	}
	return ID(s), nil
}

// Short is the first 8 characters of the ID, for logs and the UI.
func (id ID) Short() string {
	if len(id) > 8 {
		return string(id[:8])
	}
	return string(id)
}

// Identity is a node's key pair and the ID derived from it.
type Identity struct {
	Key *ecdsa.PrivateKey
	ID  ID
}

// NewIdentity creates a fresh random identity.
func NewIdentity() (*Identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("mesh: generate key: %w", err)
	}
	return identityFromKey(key)
}

func identityFromKey(key *ecdsa.PrivateKey) (*Identity, error) {
	id, err := IDFromPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	return &Identity{Key: key, ID: id}, nil
}

// KeyFile is the name of the node key inside the data dir.
const KeyFile = "node.key"

// LoadOrCreateIdentity reads the node key from dir/node.key, creating the
// dir and a new key (mode 0600) on first start.
func LoadOrCreateIdentity(dir string) (*Identity, error) {
	path := filepath.Join(dir, KeyFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		return parseKeyPEM(path, b)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("mesh: read node key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mesh: create data dir: %w", err)
	}
	ident, err := NewIdentity()
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(ident.Key)
	if err != nil {
		return nil, fmt.Errorf("mesh: encode node key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	// Write to a temp file and rename, so a crash never leaves half a key.
	tmp, err := os.CreateTemp(dir, KeyFile+".*")
	if err != nil {
		return nil, fmt.Errorf("mesh: write node key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("mesh: write node key: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("mesh: write node key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("mesh: write node key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("mesh: write node key: %w", err)
	}
	// Link rather than rename: if another process created the key meanwhile,
	// keep theirs and use it.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadOrCreateIdentity(dir)
		}
		return nil, fmt.Errorf("mesh: write node key: %w", err)
	}
	return ident, nil
}

func parseKeyPEM(path string, b []byte) (*Identity, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "EC PRIVATE KEY" {
		return nil, fmt.Errorf("mesh: %s: not a PEM EC private key", path)
	}
	key, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("mesh: %s: %w", path, err)
	}
	if key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("mesh: %s: key is not on P-256", path)
	}
	return identityFromKey(key)
}

// idFromCertificate derives the node ID from a DER certificate, as received
// from the remote end of a DTLS handshake.
func idFromCertificate(der []byte) (ID, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "", fmt.Errorf("mesh: parse remote certificate: %w", err)
	}
	return idFromSPKI(cert.RawSubjectPublicKeyInfo), nil
}
