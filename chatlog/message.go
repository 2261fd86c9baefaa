package chatlog

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/catnest/catnest/mesh"
)

// Wire format, version 1. Fixed-size fields first, then three
// length-prefixed ones; lengths are minimal unsigned varints
// (encoding/binary), so every message has exactly one encoding.
//
//	offset  size  field
//	0       1     version (1)
//	1       1     kind
//	2       8     time: unix milliseconds, int64 big endian
//	10      16    channel
//	26      32    ref (all zero when none)
//	58      var   key:  uvarint length, SubjectPublicKeyInfo (DER, P-256)
//	        var   body: uvarint length, bytes (at most MaxBody)
//	        var   sig:  uvarint length, ASN.1 ECDSA signature
//
// The ID is SHA-256 over everything before sig. The signature is over
// SHA-256(sigContext ‖ ID), so that a signature made by the node key for
// another purpose can never pass for a chat message.
const (
	wireVersion = 1
	fixedLen    = 1 + 1 + 8 + 16 + 32
	// maxKey bounds the key field; a P-256 SubjectPublicKeyInfo is 91 bytes.
	maxKey = 128
	// maxSig bounds the signature; an ASN.1 P-256 signature is at most 72.
	maxSig = 80
	// MaxEncoded bounds an encoded message; Decode refuses anything longer.
	MaxEncoded = MaxBody + 1024
	// MaxSkew is how far ahead of the receiver's clock a message may be
	// stamped (see Check).
	MaxSkew = 5 * time.Minute
)

// sigContext separates chat signatures from everything else the node key
// signs.
const sigContext = "catnest chat message v1\x00"

// NewMessage makes a message of ident in channel ch, stamped t, and signs
// it. ref is the retracted message for KindRetract and zero otherwise. The
// result passes Check(t).
func NewMessage(ident *mesh.Identity, ch ChannelID, kind Kind, body []byte, ref ID, t time.Time) (*Message, error) {
	if ident == nil || ident.Key == nil {
		return nil, fmt.Errorf("chatlog: new message: no identity")
	}
	if ident.Key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("chatlog: new message: key is not on P-256")
	}
	key, err := x509.MarshalPKIXPublicKey(&ident.Key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("chatlog: new message: %w", err)
	}
	author, err := mesh.IDFromPublicKey(&ident.Key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("chatlog: new message: %w", err)
	}
	m := &Message{
		Channel: ch,
		Author:  author,
		Key:     key,
		Time:    t.UnixMilli(),
		Kind:    kind,
		Body:    bytes.Clone(body),
		Ref:     ref,
	}
	if err := m.Check(t); err != nil {
		return nil, err
	}
	m.ID = sha256.Sum256(m.appendSigned(nil))
	d := sigDigest(m.ID)
	m.Sig, err = ecdsa.SignASN1(rand.Reader, ident.Key, d[:])
	if err != nil {
		return nil, fmt.Errorf("chatlog: sign message: %w", err)
	}
	return m, nil
}

func sigDigest(id ID) [32]byte {
	h := sha256.New()
	h.Write([]byte(sigContext))
	h.Write(id[:])
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// appendSigned appends the encoding of every field but the signature.
func (m *Message) appendSigned(b []byte) []byte {
	b = append(b, wireVersion, byte(m.Kind))
	b = binary.BigEndian.AppendUint64(b, uint64(m.Time))
	b = append(b, m.Channel[:]...)
	b = append(b, m.Ref[:]...)
	b = binary.AppendUvarint(b, uint64(len(m.Key)))
	b = append(b, m.Key...)
	b = binary.AppendUvarint(b, uint64(len(m.Body)))
	b = append(b, m.Body...)
	return b
}

// Encode returns the wire encoding of m, which Decode reverses.
func (m *Message) Encode() []byte {
	n := fixedLen + 3*binary.MaxVarintLen16 + len(m.Key) + len(m.Body) + len(m.Sig)
	b := m.appendSigned(make([]byte, 0, n))
	b = binary.AppendUvarint(b, uint64(len(m.Sig)))
	return append(b, m.Sig...)
}

// Decode parses and verifies an encoded message: its size, its form (no
// trailing bytes, minimal lengths), its key (P-256, canonical DER) and its
// signature, and derives ID and Author. It does not apply the rules of
// Check, which depend on the receiver's clock. The result does not alias b.
// Every error wraps ErrBadMessage.
func Decode(b []byte) (*Message, error) { return decode(b, true) }

// decode is Decode; verify=false skips only the signature check, for bytes
// that Decode has already accepted (the broadcast validator's).
func decode(b []byte, verify bool) (*Message, error) {
	m, signed, err := parse(b)
	if err != nil {
		return nil, err
	}
	pub, err := parseKey(m.Key)
	if err != nil {
		return nil, err
	}
	if m.Author, err = mesh.IDFromPublicKey(pub); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	m.ID = sha256.Sum256(signed)
	d := sigDigest(m.ID)
	if verify && !ecdsa.VerifyASN1(pub, d[:], m.Sig) {
		return nil, fmt.Errorf("%w: %w", ErrBadMessage, ErrBadSignature)
	}
	return m, nil
}

// parse splits an encoding into its fields without checking the key or the
// signature. It returns the signed prefix of b. Key, Body and Sig are
// copies.
func parse(b []byte) (m *Message, signed []byte, err error) {
	if len(b) > MaxEncoded {
		return nil, nil, fmt.Errorf("%w: %w: %d bytes, limit %d", ErrBadMessage, ErrTooLarge, len(b), MaxEncoded)
	}
	if len(b) < fixedLen {
		return nil, nil, fmt.Errorf("%w: %d bytes, too short", ErrBadMessage, len(b))
	}
	if b[0] != wireVersion {
		return nil, nil, fmt.Errorf("%w: version %d", ErrBadMessage, b[0])
	}
	m = &Message{
		Kind: Kind(b[1]),
		Time: int64(binary.BigEndian.Uint64(b[2:10])),
	}
	copy(m.Channel[:], b[10:26])
	copy(m.Ref[:], b[26:58])
	// One allocation for key, body and signature.
	rest := b[fixedLen:]
	buf := make([]byte, 0, len(rest))
	var fields [3][]byte
	for i, limit := range [3]int{maxKey, MaxBody, maxSig} {
		v, n := binary.Uvarint(rest)
		if n <= 0 || n != uvarintLen(v) {
			return nil, nil, fmt.Errorf("%w: bad length of field %d", ErrBadMessage, i)
		}
		if v > uint64(limit) {
			return nil, nil, fmt.Errorf("%w: %w: field %d has %d bytes, limit %d", ErrBadMessage, ErrTooLarge, i, v, limit)
		}
		rest = rest[n:]
		if uint64(len(rest)) < v {
			return nil, nil, fmt.Errorf("%w: field %d truncated", ErrBadMessage, i)
		}
		start := len(buf)
		buf = append(buf, rest[:v]...)
		fields[i] = buf[start:len(buf):len(buf)]
		rest = rest[v:]
		if i == 1 {
			signed = b[:len(b)-len(rest)]
		}
	}
	if len(rest) != 0 {
		return nil, nil, fmt.Errorf("%w: %d trailing bytes", ErrBadMessage, len(rest))
	}
	m.Key, m.Body, m.Sig = fields[0], fields[1], fields[2]
	if len(m.Body) == 0 {
		m.Body = nil
	}
	return m, signed, nil
}

func uvarintLen(v uint64) int {
	var tmp [binary.MaxVarintLen64]byte
	return binary.PutUvarint(tmp[:], v)
}

// parseKey parses a P-256 SubjectPublicKeyInfo and insists on its
// canonical encoding, so that the key bytes hash to the author's node ID.
func parseKey(der []byte) (*ecdsa.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: key: %w", ErrBadMessage, err)
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: key is not ECDSA P-256", ErrBadMessage)
	}
	canon, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil || !bytes.Equal(canon, der) {
		return nil, fmt.Errorf("%w: key is not in canonical form", ErrBadMessage)
	}
	return pub, nil
}

// Check applies the rules that do not need the store: the kind is known
// (ErrUnknownKind), the body fits (ErrTooLarge), the time is at most MaxSkew
// ahead of now (ErrFuture), a text body is UTF-8, a retract names the
// message it retracts and has no body, and a setting body is a JSON
// Settings object (all three ErrBadMessage). Who may retract or change
// settings depends on state and is the caller's to check.
func (m *Message) Check(now time.Time) error {
	if len(m.Body) > MaxBody {
		return fmt.Errorf("%w: body of %d bytes, limit %d", ErrTooLarge, len(m.Body), MaxBody)
	}
	if m.Time > now.Add(MaxSkew).UnixMilli() {
		return fmt.Errorf("%w: stamped %v, now %v", ErrFuture, m.When().UTC(), now.UTC())
	}
	switch m.Kind {
	case KindText:
		if !utf8.Valid(m.Body) {
			return fmt.Errorf("%w: text is not UTF-8", ErrBadMessage)
		}
	case KindRetract:
		if m.Ref.IsZero() {
			return fmt.Errorf("%w: retract without ref", ErrBadMessage)
		}
		if len(m.Body) != 0 {
			return fmt.Errorf("%w: retract with a body", ErrBadMessage)
		}
	case KindSetting:
		if _, err := m.Settings(); err != nil {
			return err
		}
	case KindGuest:
		if _, err := m.Guest(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: %d", ErrUnknownKind, m.Kind)
	}
	return nil
}

// Guest parses the body of a KindGuest message: a JSON GuestBody whose
// name is 1..MaxGuestName bytes of printable UTF-8 and whose text is not
// empty.
func (m *Message) Guest() (GuestBody, error) {
	var g GuestBody
	if m.Kind != KindGuest {
		return g, fmt.Errorf("%w: kind %d is not a guest message", ErrBadMessage, m.Kind)
	}
	if err := json.Unmarshal(m.Body, &g); err != nil {
		return g, fmt.Errorf("%w: guest message: %w", ErrBadMessage, err)
	}
	if err := CheckGuestName(g.Guest); err != nil {
		return g, err
	}
	if strings.TrimSpace(g.Text) == "" {
		return g, fmt.Errorf("%w: guest message without text", ErrBadMessage)
	}
	return g, nil
}

// CheckGuestName checks a guest's chosen name: 1..MaxGuestName bytes of
// UTF-8, not only spaces, of letters, marks, numbers, punctuation, symbols
// and spaces only. Control and format characters (bidi overrides and
// isolates, zero-width ones), line separators and private-use characters
// are refused: readers show the name beside the node that vouches for it,
// "ann (guest of alice)", and a bidi override in the name would turn that
// around or hide it.
func CheckGuestName(name string) error {
	if strings.TrimSpace(name) == "" || len(name) > MaxGuestName || !utf8.ValidString(name) ||
		strings.ContainsFunc(name, func(r rune) bool { return !unicode.IsGraphic(r) }) {
		return fmt.Errorf("%w: guest name must be 1..%d bytes of printable UTF-8", ErrBadMessage, MaxGuestName)
	}
	return nil
}

// Settings parses the body of a KindSetting message. Unknown fields are
// ignored, so that newer peers may add settings.
func (m *Message) Settings() (Settings, error) {
	var s Settings
	if m.Kind != KindSetting {
		return s, fmt.Errorf("%w: kind %d is not a setting", ErrBadMessage, m.Kind)
	}
	body := bytes.TrimLeft(m.Body, " \t\r\n")
	if len(body) == 0 || body[0] != '{' {
		return s, fmt.Errorf("%w: setting is not a JSON object", ErrBadMessage)
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return s, fmt.Errorf("%w: setting: %w", ErrBadMessage, err)
	}
	return s, nil
}
