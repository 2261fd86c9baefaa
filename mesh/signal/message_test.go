package signal

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"a", true},
		{"Alice42", true},
		{"a b_c-d", true},
		{"0f1e2d3c-aaaa-4bbb-8ccc-0123456789ab", true},
		{strings.Repeat("a", MaxIDLength), true},
		{"", false},
		{strings.Repeat("a", MaxIDLength+1), false},
		{" a", false},
		{"a ", false},
		{"-a", false},
		{"a_", false},
		{"a--b", false},
		{"a _b", false},
		{"a.b", false},
		{"a/b", false},
		{"ä", false},
		{"a\x00", false},
	}
	for _, tc := range tests {
		if got := ValidID(tc.id); got != tc.want {
			t.Errorf("ValidID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}

func TestDecodeMessage(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Message // Type "" means an error is expected
	}{
		{"heartbeat", `{"type":"HEARTBEAT"}`, Message{Type: TypeHeartbeat}},
		{"full", ` {"type":"OFFER","src":"a","dst":"b","payload":{"x":[1,2]}} `,
			Message{Type: TypeOffer, Src: "a", Dst: "b", Payload: json.RawMessage(`{"x":[1,2]}`)}},
		{"nulls", `{"type":"LEAVE","src":null,"dst":null,"payload":null}`, Message{Type: TypeLeave}},
		{"unknown members ignored", `{"type":"OPEN","x":{"y":[]}}`, Message{Type: TypeOpen}},
		{"empty", ``, Message{}},
		{"null", `null`, Message{}},
		{"array", `[]`, Message{}},
		{"string", `"OPEN"`, Message{}},
		{"no type", `{"src":"a"}`, Message{}},
		{"empty type", `{"type":""}`, Message{}},
		{"type number", `{"type":7}`, Message{}},
		{"dst object", `{"type":"OFFER","dst":{}}`, Message{}},
		{"repeated type", `{"type":"OFFER","type":"ANSWER"}`, Message{}},
		{"case differs", `{"TYPE":"OFFER"}`, Message{}},
		{"trailing object", `{"type":"OFFER"}{}`, Message{}},
		{"trailing garbage", `{"type":"OFFER"} x`, Message{}},
		{"truncated", `{"type":"OFFER"`, Message{}},
		{"bad payload", `{"type":"OFFER","payload":{]}`, Message{}},
		{"invalid UTF-8", "{\"type\":\"OFFER\",\"payload\":\"\xc3\"}", Message{}},
		{"too large", `{"type":"OFFER","payload":"` + strings.Repeat("x", MaxMessageSize) + `"}`, Message{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeMessage([]byte(tc.in))
			if tc.want.Type == "" {
				if err == nil || !errors.Is(err, ErrBadMessage) {
					t.Fatalf("DecodeMessage = %s, %v; want an ErrBadMessage", show(got), err)
				}
				return
			}
			if err != nil || !sameMessage(got, tc.want) {
				t.Fatalf("DecodeMessage = %s, %v; want %s", show(got), err, show(tc.want))
			}
		})
	}
}

func TestDecodeMessageDoesNotAlias(t *testing.T) {
	b := []byte(`{"type":"OFFER","payload":{"a":1}}`)
	m, err := DecodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = ' '
	}
	if string(m.Payload) != `{"a":1}` {
		t.Fatalf("payload changed with the input buffer: %q", m.Payload)
	}
}

func TestEncodeMessage(t *testing.T) {
	b, err := encodeMessage(Message{Type: TypeExpire, Src: "b", Dst: "a"})
	if err != nil || string(b) != `{"type":"EXPIRE","src":"b","dst":"a"}` {
		t.Fatalf("encodeMessage = %s, %v", b, err)
	}
	if _, err := encodeMessage(Message{Type: TypeOffer, Payload: json.RawMessage(`{`)}); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("encodeMessage with a bad payload: %v", err)
	}
	if got := string(errorMessage(reasonBadKey)); got != `{"type":"ERROR","payload":{"msg":"Invalid key provided"}}` {
		t.Fatalf("errorMessage = %s", got)
	}
}
