package chatlog

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/catnest/catnest/mesh"
)

// Limits on a channel's name and nonce.
const (
	MaxChannelName = 64 // runes
	maxNonce       = 64 // bytes
	nonceLen       = 8  // what NewChannel uses
)

// channelContext separates channel IDs from other hashes.
const channelContext = "catnest channel v1\x00"

// NewChannelID derives a channel's ID: the first 16 bytes of SHA-256 over
// a context string and the length-prefixed owner, name and nonce.
func NewChannelID(owner mesh.ID, name string, nonce []byte) ChannelID {
	h := sha256.New()
	h.Write([]byte(channelContext))
	var n [binary.MaxVarintLen64]byte
	for _, f := range [][]byte{[]byte(owner), []byte(name), nonce} {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(f)))])
		h.Write(f)
	}
	var id ChannelID
	copy(id[:], h.Sum(nil))
	return id
}

// NewChannel makes a new channel of owner with a random nonce, created now.
// It does not check the name; Verify does.
func NewChannel(owner mesh.ID, name string) Channel {
	nonce := make([]byte, nonceLen)
	rand.Read(nonce) // never fails (crypto/rand)
	return Channel{
		ID:      NewChannelID(owner, name, nonce),
		Name:    name,
		Owner:   owner,
		Nonce:   nonce,
		Created: time.Now().UnixMilli(),
	}
}

// Verify checks that c.ID is derived from c's owner, name and nonce, that
// the owner is a node ID, and that the name is 1 to MaxChannelName
// printable runes. Errors wrap ErrBadChannel.
func (c Channel) Verify() error {
	if _, err := mesh.ParseID(string(c.Owner)); err != nil {
		return fmt.Errorf("%w: owner: %w", ErrBadChannel, err)
	}
	if len(c.Nonce) > maxNonce {
		return fmt.Errorf("%w: nonce of %d bytes, limit %d", ErrBadChannel, len(c.Nonce), maxNonce)
	}
	if !utf8.ValidString(c.Name) {
		return fmt.Errorf("%w: name is not UTF-8", ErrBadChannel)
	}
	if n := utf8.RuneCountInString(c.Name); n < 1 || n > MaxChannelName {
		return fmt.Errorf("%w: name has %d runes, want 1 to %d", ErrBadChannel, n, MaxChannelName)
	}
	for _, r := range c.Name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: name has unprintable %U", ErrBadChannel, r)
		}
	}
	if NewChannelID(c.Owner, c.Name, c.Nonce) != c.ID {
		return fmt.Errorf("%w: id %v does not match owner, name and nonce", ErrBadChannel, c.ID)
	}
	return nil
}

// ParseChannelID parses the hex form of a channel ID (ChannelID.String).
func ParseChannelID(s string) (ChannelID, error) {
	var id ChannelID
	if err := parseHex(id[:], s); err != nil {
		return id, fmt.Errorf("%w: %w", ErrBadChannel, err)
	}
	return id, nil
}

// ParseID parses the hex form of a message ID (ID.String). Errors wrap
// ErrBadMessage.
func ParseID(s string) (ID, error) {
	var id ID
	if err := parseHex(id[:], s); err != nil {
		return id, fmt.Errorf("%w: id: %w", ErrBadMessage, err)
	}
	return id, nil
}

func parseHex(dst []byte, s string) error {
	if len(s) != 2*len(dst) {
		return fmt.Errorf("%q has length %d, want %d hex digits", s, len(s), 2*len(dst))
	}
	if _, err := hex.Decode(dst, []byte(s)); err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	return nil
}
