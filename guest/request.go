package guest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/catnest/catnest/chatlog"
)

// Request is a guest's request: {op, id?, channel?, before?, limit?,
// name?, text?}.
type Request struct {
	// Op is channels, history, post, subscribe or unsubscribe.
	Op string `json:"op"`
	// ID is the page's own tag, echoed in the answer; a string or number.
	ID any `json:"id,omitempty"`
	// Channel is a channel id or, when unambiguous, its name.
	Channel string `json:"channel,omitempty"`
	// Before (unix ms) pages history back: messages older than it.
	Before int64 `json:"before,omitempty"`
	// Limit is how many messages a history page holds, 1..MaxLimit.
	Limit int `json:"limit,omitempty"`
	// Name is the guest's chosen name, for post.
	Name string `json:"name,omitempty"`
	// Text is the message, for post.
	Text string `json:"text,omitempty"`
}

// MaxLimit bounds a history page.
const MaxLimit = 200

// maxRequest bounds a request's JSON text.
const maxRequest = 32 << 10

// DecodeRequest parses and checks a request's JSON text (as the peerjs
// Decoder gives it, whatever the page's serialization).
func DecodeRequest(b []byte) (Request, error) {
	var r Request
	if len(b) > maxRequest {
		return r, fmt.Errorf("request of %d bytes, limit %d", len(b), maxRequest)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return r, errors.New("a request is a JSON object {op, ...}")
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Request{}, fmt.Errorf("bad request: %w", err)
	}
	switch id := r.ID.(type) {
	case nil, float64:
	case string:
		if len(id) > 64 {
			return Request{}, errors.New("bad request: id over 64 bytes")
		}
	default:
		return Request{}, errors.New("bad request: id must be a string or a number")
	}
	switch r.Op {
	case "channels":
	case "history":
		if r.Limit < 0 || r.Limit > MaxLimit || r.Before < 0 {
			return Request{}, fmt.Errorf("bad request: limit must be 1..%d and before a unix time in ms", MaxLimit)
		}
		fallthrough
	case "subscribe", "unsubscribe":
		if r.Channel == "" || len(r.Channel) > 128 {
			return Request{}, errors.New("bad request: channel is required")
		}
	case "post":
		if r.Channel == "" || len(r.Channel) > 128 {
			return Request{}, errors.New("bad request: channel is required")
		}
		if err := chatlog.CheckGuestName(r.Name); err != nil {
			return Request{}, fmt.Errorf("bad request: name must be 1..%d bytes of printable text", chatlog.MaxGuestName)
		}
		if len(r.Text) == 0 || len(r.Text) > chatlog.MaxBody-chatlog.MaxGuestName-64 {
			return Request{}, fmt.Errorf("bad request: text must be 1..%d bytes", chatlog.MaxBody-chatlog.MaxGuestName-64)
		}
	case "":
		return Request{}, errors.New("bad request: no op")
	default:
		return Request{}, fmt.Errorf("bad request: unknown op %q", truncate(r.Op, 32))
	}
	return r, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
