package webui

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// APIKeyFile is the file in a node's data dir that holds its API key.
const APIKeyFile = "api.key"

// Bounds of an API key: long enough that it cannot be guessed, short enough
// for a header; LoadOrCreateAPIKey makes 26 characters (128 random bits).
const (
	minAPIKey = 16
	maxAPIKey = 256
)

// APIKeyHeader is the header scripts may send the API key in, instead of
// "Authorization: Bearer KEY".
const APIKeyHeader = "X-API-Key"

// LoadOrCreateAPIKey returns the API key kept in dir/api.key, making a new
// random one (mode 0600, written atomically) when there is none, so that
// scripts have a key from a node's first start and the same one after every
// restart.
func LoadOrCreateAPIKey(dir string) (string, error) {
	key, err := ReadAPIKey(dir)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("webui: create data dir: %w", err)
	}
	key = rand.Text()
	path := filepath.Join(dir, APIKeyFile)
	// Write a temp file and link it into place, so that a crash never
	// leaves half a key and two nodes starting at once agree on one key.
	tmp, err := os.CreateTemp(dir, APIKeyFile+".*")
	if err != nil {
		return "", fmt.Errorf("webui: write API key: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = io.WriteString(tmp, key+"\n")
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("webui: write API key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return ReadAPIKey(dir) // another process made one first: use it
		}
		return "", fmt.Errorf("webui: write API key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // make the new name durable; a failure only risks a new key after a crash
		d.Close()
	}
	return key, nil
}

// ReadAPIKey returns the API key in dir/api.key without creating one; the
// error wraps fs.ErrNotExist when there is none. A key file that other users
// may read is refused: anyone who holds the key can drive the node.
func ReadAPIKey(dir string) (string, error) {
	path := filepath.Join(dir, APIKeyFile)
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("webui: read API key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("webui: read API key: %w", err)
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return "", fmt.Errorf("webui: %s can be read by other users (mode %#o): run chmod 600 %s", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxAPIKey+2))
	if err != nil {
		return "", fmt.Errorf("webui: read API key: %w", err)
	}
	key := strings.TrimSpace(string(b))
	if err := checkAPIKey(key); err != nil {
		return "", fmt.Errorf("webui: %s: %w (delete the file to make a new key)", path, err)
	}
	return key, nil
}

// checkAPIKey says what is wrong with a key, if anything: it must fit in a
// header and be hard to guess.
func checkAPIKey(key string) error {
	if len(key) < minAPIKey || len(key) > maxAPIKey {
		return fmt.Errorf("API key of %d characters: want %d to %d", len(key), minAPIKey, maxAPIKey)
	}
	for _, c := range []byte(key) {
		if c <= ' ' || c >= 0x7f {
			return errors.New("API key with a space, control or non-ASCII character")
		}
	}
	return nil
}

// secret compares presented strings with one secret in constant time.
type secret [sha256.Size]byte

func newSecret(s string) *secret {
	if s == "" {
		return nil
	}
	sum := secret(sha256.Sum256([]byte(s)))
	return &sum
}

// matches reports whether got is the secret. It compares hashes, so the
// time taken does not depend on where got differs nor on its length.
func (s *secret) matches(got string) bool {
	if s == nil || got == "" {
		return false
	}
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], s[:]) == 1
}

// presentedKey returns the key a request carries in X-API-Key or, failing
// that, as "Authorization: Bearer …" (where it may also be the token).
func presentedKey(r *http.Request) (key string, fromHeader, ok bool) {
	if v := r.Header.Get(APIKeyHeader); v != "" {
		return v, true, true
	}
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return v, false, true
	}
	return "", false, false
}

// scriptKey marks, in a request's context, a request that presented the API
// key: it skips the token and Origin checks.
type scriptKey struct{}

func byScript(r *http.Request) bool {
	v, _ := r.Context().Value(scriptKey{}).(bool)
	return v
}
