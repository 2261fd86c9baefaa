package signal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Message types of the PeerServer protocol.
const (
	// TypeOpen is sent by the server when a new client is registered.
	TypeOpen = "OPEN"
	// TypeOffer, TypeAnswer and TypeCandidate carry WebRTC signaling between
	// two clients; the server relays them.
	TypeOffer     = "OFFER"
	TypeAnswer    = "ANSWER"
	TypeCandidate = "CANDIDATE"
	// TypeLeave says that a peer went away; the server relays it, and also
	// sends one itself when it cannot deliver to a peer.
	TypeLeave = "LEAVE"
	// TypeExpire tells a sender that its messages to an offline peer were
	// not picked up in time.
	TypeExpire = "EXPIRE"
	// TypeHeartbeat is sent by clients to stay registered.
	TypeHeartbeat = "HEARTBEAT"
	// TypeIDTaken is sent by the server when another client holds the id.
	TypeIDTaken = "ID-TAKEN"
	// TypeError is sent by the server before it closes a socket it refuses;
	// the payload is {"msg": reason}.
	TypeError = "ERROR"
)

// MaxMessageSize is the largest encoded message DecodeMessage accepts and
// the largest the server reads or relays.
const MaxMessageSize = 64 << 10

// MaxIDLength is the longest id ValidID accepts.
const MaxIDLength = 256

// Message is one PeerServer protocol message: {type, src, dst, payload}.
type Message struct {
	Type    string          `json:"type"`
	Src     string          `json:"src,omitempty"`
	Dst     string          `json:"dst,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// relayed reports whether the server forwards messages of type t between
// clients.
func relayed(t string) bool {
	switch t {
	case TypeOffer, TypeAnswer, TypeCandidate, TypeLeave, TypeExpire:
		return true
	}
	return false
}

// ValidID reports whether id is a valid PeerJS id: words of ASCII letters
// and digits joined by single spaces, underscores or hyphens
// (^[A-Za-z0-9]+(?:[ _-][A-Za-z0-9]+)*$), at most MaxIDLength bytes.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLength {
		return false
	}
	afterSep := true // the id must not start with a separator
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			afterSep = false
		case c == ' ' || c == '_' || c == '-':
			if afterSep {
				return false
			}
			afterSep = true
		default:
			return false
		}
	}
	return !afterSep
}

// DecodeMessage parses one message. It accepts a single JSON object of at
// most MaxMessageSize bytes of valid UTF-8 with a non-empty string "type",
// optional string (or null) "src" and "dst", and any JSON "payload"; other
// members are ignored, as the reference server ignores them. Member names
// are matched exactly and may not repeat. The returned Message does not
// alias b. Errors wrap ErrBadMessage.
func DecodeMessage(b []byte) (Message, error) {
	var m Message
	if len(b) > MaxMessageSize {
		return m, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrBadMessage, len(b), MaxMessageSize)
	}
	if !utf8.Valid(b) {
		return m, fmt.Errorf("%w: not valid UTF-8", ErrBadMessage)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return m, badJSON(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return m, fmt.Errorf("%w: not a JSON object", ErrBadMessage)
	}
	var seen struct{ typ, src, dst, payload bool }
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return m, badJSON(err)
		}
		key, ok := tok.(string)
		if !ok { // cannot happen: the decoder only yields strings as keys
			return m, fmt.Errorf("%w: object key is not a string", ErrBadMessage)
		}
		var dup bool
		switch key {
		case "type":
			dup, seen.typ = seen.typ, true
			err = decodeString(dec, &m.Type)
		case "src":
			dup, seen.src = seen.src, true
			err = decodeString(dec, &m.Src)
		case "dst":
			dup, seen.dst = seen.dst, true
			err = decodeString(dec, &m.Dst)
		case "payload":
			dup, seen.payload = seen.payload, true
			var raw json.RawMessage
			err = dec.Decode(&raw)
			if string(raw) != "null" {
				m.Payload = raw
			}
		default:
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			return Message{}, fmt.Errorf("%w: member %q: %v", ErrBadMessage, key, err)
		}
		if dup {
			return Message{}, fmt.Errorf("%w: member %q repeated", ErrBadMessage, key)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return Message{}, badJSON(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Message{}, fmt.Errorf("%w: data after the JSON object", ErrBadMessage)
	}
	if m.Type == "" {
		return Message{}, fmt.Errorf("%w: no type", ErrBadMessage)
	}
	return m, nil
}

// decodeString decodes a JSON string or null (left as "") into s.
func decodeString(dec *json.Decoder, s *string) error {
	var p *string
	if err := dec.Decode(&p); err != nil {
		return err
	}
	if p != nil {
		*s = *p
	}
	return nil
}

func badJSON(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: %v", ErrBadMessage, err)
}

// encodeMessage encodes m as the reference server does: members in the
// order type, src, dst, payload, empty ones left out. The payload must be
// valid JSON; it is copied as it is.
func encodeMessage(m Message) ([]byte, error) {
	if len(m.Payload) > 0 && !json.Valid(m.Payload) {
		return nil, fmt.Errorf("%w: payload is not valid JSON", ErrBadMessage)
	}
	return appendMessage(make([]byte, 0, 64+len(m.Src)+len(m.Dst)+len(m.Payload)), m), nil
}

// appendMessage appends the encoding of m to b; m.Payload must be valid
// JSON (as it is after DecodeMessage), which saves the server a pass over
// every relayed payload.
func appendMessage(b []byte, m Message) []byte {
	b = append(b, `{"type":`...)
	b = appendString(b, m.Type)
	if m.Src != "" {
		b = append(b, `,"src":`...)
		b = appendString(b, m.Src)
	}
	if m.Dst != "" {
		b = append(b, `,"dst":`...)
		b = appendString(b, m.Dst)
	}
	if len(m.Payload) > 0 {
		b = append(b, `,"payload":`...)
		b = append(b, m.Payload...)
	}
	return append(b, '}')
}

func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always encodes
	return append(b, q...)
}

// errorMessage builds the ERROR message the server sends before closing.
func errorMessage(reason string) []byte {
	payload, _ := json.Marshal(struct {
		Msg string `json:"msg"`
	}{reason})
	b, _ := encodeMessage(Message{Type: TypeError, Payload: payload})
	return b
}
