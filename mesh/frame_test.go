package mesh

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		f    frame
	}{
		{"message", frame{kind: kindMsg, proto: "chat/1", payload: []byte("hi")}},
		{"request", frame{kind: kindReq, id: 1 << 40, proto: "echo", payload: bytes.Repeat([]byte{7}, 1000)}},
		{"response", frame{kind: kindResp, id: 3, payload: []byte("ok")}},
		{"empty response", frame{kind: kindResp, id: 4}},
		{"error", frame{kind: kindErr, id: 5, payload: []byte("boom")}},
		{"busy", frame{kind: kindBusy, id: 1 << 20}},
		{"ping", frame{kind: kindPing, payload: []byte{1, 2, 3, 4, 5, 6, 7, 8}}},
		{"hello", frame{kind: kindHello, payload: []byte(`{"name":"a"}`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := appendFrame(nil, tt.f)
			got, err := parseFrame(b, MaxCtlFrame)
			if err != nil {
				t.Fatal(err)
			}
			if got.kind != tt.f.kind || got.id != tt.f.id || got.proto != tt.f.proto || !bytes.Equal(got.payload, tt.f.payload) {
				t.Fatalf("got %+v, want %+v", got, tt.f)
			}
		})
	}
}

func TestParseFrameRejects(t *testing.T) {
	long := appendFrame(nil, frame{kind: kindMsg, proto: "p", payload: make([]byte, MaxCtlFrame)})
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown kind", []byte{99, 1, 2}},
		{"kind zero", []byte{0}},
		{"truncated id", []byte{byte(kindReq), 0x80}},
		{"missing proto", []byte{byte(kindMsg)}},
		{"zero proto len", []byte{byte(kindMsg), 0}},
		{"proto past end", []byte{byte(kindMsg), 10, 'a'}},
		{"proto too long", append([]byte{byte(kindMsg), MaxProtocolLen + 1}, bytes.Repeat([]byte{'a'}, MaxProtocolLen+1)...)},
		{"proto with space", []byte{byte(kindMsg), 3, 'a', ' ', 'b'}},
		{"proto with NUL", []byte{byte(kindMsg), 2, 'a', 0}},
		{"over the limit", long},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseFrame(tt.b, MaxCtlFrame); !errors.Is(err, errBadFrame) {
				t.Fatalf("parseFrame = %v, want errBadFrame", err)
			}
		})
	}
}

func TestMaxPayloadFits(t *testing.T) {
	for _, ch := range []Channel{Ctl, Bulk} {
		proto := strings.Repeat("p", MaxProtocolLen)
		b := appendFrame(nil, frame{kind: kindReq, id: ^uint64(0), proto: proto, payload: make([]byte, MaxPayload(ch))})
		if len(b) > maxFrame(ch) {
			t.Fatalf("%s: a frame with the largest payload is %d bytes, over %d", ch, len(b), maxFrame(ch))
		}
		if _, err := parseFrame(b, maxFrame(ch)); err != nil {
			t.Fatalf("%s: %v", ch, err)
		}
	}
}

// FuzzParseFrame checks that any input either fails cleanly or decodes to
// a frame that encodes back to the same bytes.
func FuzzParseFrame(f *testing.F) {
	f.Add(appendFrame(nil, frame{kind: kindMsg, proto: "chat/1", payload: []byte("hi")}))
	f.Add(appendFrame(nil, frame{kind: kindReq, id: 300, proto: "x", payload: []byte{0, 1}}))
	f.Add(appendFrame(nil, frame{kind: kindErr, id: 1, payload: []byte("no")}))
	f.Add([]byte{byte(kindPing), 1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := parseFrame(b, MaxCtlFrame)
		if err != nil {
			return
		}
		again := appendFrame(nil, fr)
		if !bytes.Equal(again, b) {
			// Uvarints have non-minimal encodings; compare decoded values.
			fr2, err := parseFrame(again, MaxCtlFrame)
			if err != nil || fr2.kind != fr.kind || fr2.id != fr.id || fr2.proto != fr.proto || !bytes.Equal(fr2.payload, fr.payload) {
				t.Fatalf("re-encoding %x gave %x", b, again)
			}
		}
	})
}
