package guest

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDecodeRequest(t *testing.T) {
	ok := []string{
		`{"op":"channels"}`,
		`{"op":"channels","id":7}`,
		`{"op":"history","channel":"lobby","limit":200,"before":1700000000000}`,
		`{"op":"post","channel":"lobby","name":"ann","text":"hi","id":"r1"}`,
		`{"op":"subscribe","channel":"lobby","extra":true}`,
	}
	for _, s := range ok {
		if _, err := DecodeRequest([]byte(s)); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	bad := []string{
		``, `"channels"`, `[]`, `{"op":1}`, `{}`, `{"op":"drop"}`,
		`{"op":"history"}`, `{"op":"history","channel":"x","limit":201}`, `{"op":"history","channel":"x","before":-1}`,
		`{"op":"post","channel":"x","text":"hi"}`, `{"op":"post","channel":"x","name":"a\u0000b","text":"hi"}`,
		`{"op":"post","channel":"x","name":"ann","text":""}`,
		`{"op":"post","channel":"x","name":"ann","text":"` + strings.Repeat("a", 17000) + `"}`,
		`{"op":"channels","id":{"a":1}}`, `{"op":"channels","id":"` + strings.Repeat("i", 65) + `"}`,
		`{"op":"channels","pad":"` + strings.Repeat("a", maxRequest) + `"}`,
	}
	for _, s := range bad {
		if _, err := DecodeRequest([]byte(s)); err == nil {
			t.Errorf("%.80s: accepted", s)
		}
	}
}

// FuzzDecodeRequest: any bytes give a valid request or an error, and a
// valid request survives a round trip through JSON.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"op":"history","channel":"lobby","limit":50}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			return
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeRequest(again); err != nil {
			t.Fatalf("re-encoded request %s refused: %v", again, err)
		}
	})
}
