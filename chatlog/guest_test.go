package chatlog

import (
	"errors"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
)

// TestGuestMessage: a guest message carries its marker and name in signed
// fields, so that it decodes as a guest's everywhere, and bodies that are
// not a guest's name and text are refused.
func TestGuestMessage(t *testing.T) {
	ident, err := mesh.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	var ch ChannelID
	now := time.Now()
	m, err := NewMessage(ident, ch, KindGuest, []byte(`{"guest":"ann","text":"hello"}`), ID{}, now)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(m.Encode())
	if err != nil {
		t.Fatal(err)
	}
	e := entry(got, false, false, false)
	if e.Guest != "ann" || e.Text != "hello" || e.Author != ident.ID {
		t.Fatalf("entry %+v", e)
	}
	// Changing the kind to a member's text breaks the signature.
	b := m.Encode()
	b[1] = byte(KindText)
	if _, err := Decode(b); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("re-kinded guest message: %v", err)
	}
	for _, body := range []string{`hello`, `{"text":"hi"}`, `{"guest":"ann"}`, `{"guest":"a\u0007","text":"x"}`,
		`{"guest":"ann\u202e","text":"x"}`, `{"guest":"\u2067ann","text":"x"}`, `{"guest":"a\u200bnn","text":"x"}`,
		`{"guest":"ann\u2028bob","text":"x"}`, `{"guest":"\ue000","text":"x"}`,
		`{"guest":"` + string(make([]byte, MaxGuestName+1)) + `","text":"x"}`} {
		if _, err := NewMessage(ident, ch, KindGuest, []byte(body), ID{}, now); !errors.Is(err, ErrBadMessage) {
			t.Errorf("guest body %q: %v", body, err)
		}
	}
	for _, name := range []string{"ann", "Zoë Ω", "访客 一号", "ann 🐱", "o'brien (x)"} {
		if err := CheckGuestName(name); err != nil {
			t.Errorf("name %q refused: %v", name, err)
		}
	}
}
