package chatlog

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
)

func newIdent(t testing.TB) *mesh.Identity {
	t.Helper()
	id, err := mesh.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// signRaw signs m as it is, without NewMessage's checks, so that tests can
// make messages that break the rules of Check.
func signRaw(t testing.TB, ident *mesh.Identity, m *Message) *Message {
	t.Helper()
	key, err := x509.MarshalPKIXPublicKey(&ident.Key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	m.Key, m.Author = key, ident.ID
	m.ID = sha256.Sum256(m.appendSigned(nil))
	d := sigDigest(m.ID)
	if m.Sig, err = ecdsa.SignASN1(rand.Reader, ident.Key, d[:]); err != nil {
		t.Fatal(err)
	}
	return m
}

var testChannel = ChannelID{1, 2, 3}

func TestMessageRoundTrip(t *testing.T) {
	ident := newIdent(t)
	now := time.UnixMilli(1_700_000_000_123)
	ref := ID{9, 9, 9}
	cases := []struct {
		name string
		kind Kind
		body []byte
		ref  ID
	}{
		{"text", KindText, []byte("héllo, 世界"), ID{}},
		{"empty text", KindText, nil, ID{}},
		{"max text", KindText, bytes.Repeat([]byte("x"), MaxBody), ID{}},
		{"retract", KindRetract, nil, ref},
		{"setting", KindSetting, []byte(`{"burn":true}`), ID{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewMessage(ident, testChannel, tc.kind, tc.body, tc.ref, now)
			if err != nil {
				t.Fatal(err)
			}
			if m.Author != ident.ID {
				t.Errorf("author %s, want %s", m.Author, ident.ID)
			}
			enc := m.Encode()
			if len(enc) > MaxEncoded {
				t.Fatalf("encoding of %d bytes over MaxEncoded", len(enc))
			}
			got, err := Decode(enc)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != m.ID || got.Author != m.Author || got.Channel != m.Channel ||
				got.Time != now.UnixMilli() || got.Kind != tc.kind || !bytes.Equal(got.Body, tc.body) ||
				got.Ref != tc.ref || !bytes.Equal(got.Key, m.Key) || !bytes.Equal(got.Sig, m.Sig) {
				t.Errorf("decoded %+v, want %+v", got, m)
			}
			if !bytes.Equal(got.Encode(), enc) {
				t.Error("re-encoding differs")
			}
			if err := got.Check(now); err != nil {
				t.Errorf("Check: %v", err)
			}
			// Decode must not alias its input.
			for i := range enc {
				enc[i] = 0
			}
			if !bytes.Equal(got.Body, tc.body) || got.Encode()[0] != wireVersion {
				t.Error("decoded message aliases its input")
			}
		})
	}
}

func TestMessageIDDependsOnEveryField(t *testing.T) {
	ident := newIdent(t)
	now := time.UnixMilli(1_700_000_000_000)
	base, err := NewMessage(ident, testChannel, KindText, []byte("a"), ID{}, now)
	if err != nil {
		t.Fatal(err)
	}
	variants := map[string]func() (*Message, error){
		"channel": func() (*Message, error) { return NewMessage(ident, ChannelID{7}, KindText, []byte("a"), ID{}, now) },
		"body":    func() (*Message, error) { return NewMessage(ident, testChannel, KindText, []byte("b"), ID{}, now) },
		"time": func() (*Message, error) {
			return NewMessage(ident, testChannel, KindText, []byte("a"), ID{}, now.Add(time.Millisecond))
		},
		"ref": func() (*Message, error) { return NewMessage(ident, testChannel, KindText, []byte("a"), ID{1}, now) },
		"author": func() (*Message, error) {
			return NewMessage(newIdent(t), testChannel, KindText, []byte("a"), ID{}, now)
		},
	}
	for name, f := range variants {
		m, err := f()
		if err != nil {
			t.Fatal(err)
		}
		if m.ID == base.ID {
			t.Errorf("changing %s does not change the ID", name)
		}
	}
}

// rawEncoding assembles an encoding field by field, with the given length
// prefixes, so that tests can build malformed input.
func rawEncoding(head []byte, fields ...[]byte) []byte {
	b := bytes.Clone(head)
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

func TestDecodeRejects(t *testing.T) {
	ident := newIdent(t)
	other := newIdent(t)
	now := time.UnixMilli(1_700_000_000_000)
	m, err := NewMessage(ident, testChannel, KindText, []byte("hello"), ID{}, now)
	if err != nil {
		t.Fatal(err)
	}
	good := m.Encode()
	head := good[:fixedLen]
	otherKey, _ := x509.MarshalPKIXPublicKey(&other.Key.PublicKey)

	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 1
		return b
	}
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrBadMessage},
		{"short", good[:fixedLen-1], ErrBadMessage},
		{"truncated", good[:len(good)-1], ErrBadMessage},
		{"trailing byte", append(bytes.Clone(good), 0), ErrBadMessage},
		{"version", flip(0), ErrBadMessage},
		{"bit in signature", flip(len(good) - 3), ErrBadSignature},
		{"bit in body", flip(len(good) - len(m.Sig) - 2), ErrBadSignature},
		{"bit in time", flip(9), ErrBadSignature},
		{"bit in channel", flip(12), ErrBadSignature},
		{"bit in kind", flip(1), ErrBadSignature},
		{"other key, same signature", rawEncoding(head, otherKey, m.Body, m.Sig), ErrBadSignature},
		{"bit in key", rawEncoding(head, flipByte(m.Key, len(m.Key)-1), m.Body, m.Sig), ErrBadMessage},
		{"key not a key", rawEncoding(head, []byte("not a key"), m.Body, m.Sig), ErrBadMessage},
		{"oversize input", make([]byte, MaxEncoded+1), ErrTooLarge},
		{"oversize body", rawEncoding(head, m.Key, make([]byte, MaxBody+1), m.Sig), ErrTooLarge},
		{"oversize sig", rawEncoding(head, m.Key, m.Body, make([]byte, maxSig+1)), ErrTooLarge},
		{"non-minimal length", append(append(bytes.Clone(head), 0x80|byte(len(m.Key)), 0x00), good[fixedLen+1:]...), ErrBadMessage},
		{"length overflow", append(bytes.Clone(head), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), ErrBadMessage},
	}
	// A non-minimal length, validly signed: without the rule, one message
	// would have two encodings and two IDs.
	nonMinimal := append(append(bytes.Clone(head), 0x80|byte(len(m.Key)), 0x00), good[fixedLen+1:len(good)-len(m.Sig)-1]...)
	nmID := ID(sha256.Sum256(nonMinimal))
	d := sigDigest(nmID)
	nmSig, err := ecdsa.SignASN1(rand.Reader, ident.Key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	cases = append(cases, struct {
		name string
		in   []byte
		want error
	}{"non-minimal length, signed", rawEncoding(nonMinimal, nmSig), ErrBadMessage})

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.in)
			if err == nil {
				t.Fatalf("decoded %+v, want error", got)
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrBadMessage) ||
				tc.want != ErrBadSignature && errors.Is(err, ErrBadSignature) {
				t.Errorf("error %v, want %v (and ErrBadMessage)", err, tc.want)
			}
		})
	}
}

func flipByte(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 0x40
	return b
}

func TestCheck(t *testing.T) {
	ident := newIdent(t)
	now := time.UnixMilli(1_700_000_000_000)
	raw := func(kind Kind, body []byte, ref ID, at time.Time) *Message {
		return signRaw(t, ident, &Message{Channel: testChannel, Kind: kind, Body: body, Ref: ref, Time: at.UnixMilli()})
	}
	cases := []struct {
		name string
		m    *Message
		want error // nil: passes
	}{
		{"text", raw(KindText, []byte("hi"), ID{}, now), nil},
		{"4 min ahead", raw(KindText, []byte("hi"), ID{}, now.Add(4*time.Minute)), nil},
		{"long ago", raw(KindText, []byte("hi"), ID{}, time.UnixMilli(-5)), nil},
		{"6 min ahead", raw(KindText, []byte("hi"), ID{}, now.Add(6*time.Minute)), ErrFuture},
		{"unknown kind", raw(9, []byte("hi"), ID{}, now), ErrUnknownKind},
		{"kind zero", raw(0, nil, ID{}, now), ErrUnknownKind},
		{"bad UTF-8", raw(KindText, []byte{'a', 0xff, 'b'}, ID{}, now), ErrBadMessage},
		{"oversize body", &Message{Kind: KindText, Body: make([]byte, MaxBody+1), Time: now.UnixMilli()}, ErrTooLarge},
		{"retract", raw(KindRetract, nil, ID{1}, now), nil},
		{"retract without ref", raw(KindRetract, nil, ID{}, now), ErrBadMessage},
		{"retract with body", raw(KindRetract, []byte("x"), ID{1}, now), ErrBadMessage},
		{"setting", raw(KindSetting, []byte(` {"burn":false,"future":1}`), ID{}, now), nil},
		{"setting not JSON", raw(KindSetting, []byte(`burn`), ID{}, now), ErrBadMessage},
		{"setting null", raw(KindSetting, []byte(`null`), ID{}, now), ErrBadMessage},
		{"setting wrong type", raw(KindSetting, []byte(`{"burn":"yes"}`), ID{}, now), ErrBadMessage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// What was signed must decode; Check is a separate step.
			if tc.m.Sig != nil {
				if _, err := Decode(tc.m.Encode()); err != nil {
					t.Fatalf("Decode: %v", err)
				}
			}
			err := tc.m.Check(now)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Check = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestNewMessageChecks(t *testing.T) {
	ident := newIdent(t)
	now := time.Now()
	for _, tc := range []struct {
		name string
		kind Kind
		body []byte
		ref  ID
		want error
	}{
		{"unknown kind", 7, nil, ID{}, ErrUnknownKind},
		{"bad UTF-8", KindText, []byte{0xc3}, ID{}, ErrBadMessage},
		{"oversize", KindText, make([]byte, MaxBody+1), ID{}, ErrTooLarge},
		{"retract without ref", KindRetract, nil, ID{}, ErrBadMessage},
		{"bad setting", KindSetting, []byte("{"), ID{}, ErrBadMessage},
	} {
		if _, err := NewMessage(ident, testChannel, tc.kind, tc.body, tc.ref, now); !errors.Is(err, tc.want) {
			t.Errorf("%s: NewMessage error %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := NewMessage(nil, testChannel, KindText, nil, ID{}, now); err == nil {
		t.Error("NewMessage without identity succeeded")
	}
}

func TestSettings(t *testing.T) {
	ident := newIdent(t)
	m, err := NewMessage(ident, testChannel, KindSetting, []byte(`{"burn":true}`), ID{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.Settings()
	if err != nil || !s.Burn {
		t.Errorf("Settings = %+v, %v; want burn", s, err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrBadMessage) {
				t.Fatalf("error %v does not wrap ErrBadMessage", err)
			}
			if m != nil {
				t.Fatal("message with error")
			}
			return
		}
		if !bytes.Equal(m.Encode(), b) {
			t.Fatal("accepted input is not the encoding of what it decoded to")
		}
		pub, err := parseKey(m.Key)
		if err != nil {
			t.Fatal(err)
		}
		author, _ := mesh.IDFromPublicKey(pub)
		if m.Author != author {
			t.Fatal("author does not match key")
		}
		if m.ID != sha256.Sum256(m.appendSigned(nil)) {
			t.Fatal("id does not match fields")
		}
		d := sigDigest(m.ID)
		if !ecdsa.VerifyASN1(pub, d[:], m.Sig) {
			t.Fatal("accepted a bad signature")
		}
		_ = m.Check(now) // must not panic
	})
}

// fuzzSeeds are valid encodings of every kind plus some broken ones; the
// same inputs are in testdata/fuzz/FuzzDecode (see TestWriteFuzzSeeds).
func fuzzSeeds(t testing.TB) [][]byte {
	ident := newIdent(t)
	now := time.UnixMilli(1_700_000_000_000)
	var out [][]byte
	for _, x := range []struct {
		kind Kind
		body string
		ref  ID
	}{
		{KindText, "hello", ID{}},
		{KindText, "", ID{}},
		{KindRetract, "", ID{1, 2, 3}},
		{KindSetting, `{"burn":true}`, ID{}},
	} {
		m, err := NewMessage(ident, testChannel, x.kind, []byte(x.body), x.ref, now)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Encode())
	}
	out = append(out, signRaw(t, ident, &Message{Channel: testChannel, Kind: 9, Body: []byte{0xff}, Time: now.UnixMilli()}).Encode())
	out = append(out, nil, out[0][:fixedLen], append(bytes.Clone(out[0]), 0))
	return out
}

// TestWriteFuzzSeeds rewrites the seed corpus when CHATLOG_WRITE_SEEDS is
// set (after a change of the wire format).
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("CHATLOG_WRITE_SEEDS") == "" {
		t.Skip("set CHATLOG_WRITE_SEEDS=1 to rewrite testdata/fuzz/FuzzDecode")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range fuzzSeeds(t) {
		var b strings.Builder
		fmt.Fprintf(&b, "go test fuzz v1\n[]byte(%q)\n", s)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
