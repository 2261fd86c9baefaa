package reslist

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/catnest/catnest/mesh"
)

// JSONPages encodes and decodes a list's pages whose entries travel as
// JSON, and the requests for them, with the bounds every decoder of peer
// input needs. Music's catalog and the plugin market share it.
type JSONPages[E any] struct {
	// MaxEntries bounds the entries of a page and a request's limit.
	MaxEntries int
	// MaxBytes bounds an encoded page.
	MaxBytes int
	// Err is wrapped by every error, so callers can tell a bad page.
	Err error
	// Key is an entry's key; a page's keys strictly increase.
	Key func(E) Key
	// Check checks one entry of a page from a peer; its error is
	// returned as it is.
	Check func(E) error
}

// wirePage is a page as it travels.
type wirePage[E any] struct {
	Version uint64 `json:"v"`
	Entries []E    `json:"e"`
	More    bool   `json:"m,omitempty"`
}

// EncodePage encodes p, refusing a page a peer would refuse.
func (c JSONPages[E]) EncodePage(p Page[E]) ([]byte, error) {
	if len(p.Entries) > c.MaxEntries {
		return nil, fmt.Errorf("%w: %d entries in a page", c.Err, len(p.Entries))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(wirePage[E]{Version: p.Version, Entries: p.Entries, More: p.More}); err != nil {
		return nil, err
	}
	if buf.Len() > c.MaxBytes {
		return nil, fmt.Errorf("%w: page of %d bytes", c.Err, buf.Len())
	}
	return buf.Bytes(), nil
}

// DecodePage decodes a page from a peer: bounded in bytes and entries,
// every entry checked, in strictly increasing key order. One bad entry
// refuses the page: its node breaks the rules.
func (c JSONPages[E]) DecodePage(b []byte) (Page[E], error) {
	if len(b) > c.MaxBytes {
		return Page[E]{}, fmt.Errorf("%w: page of %d bytes", c.Err, len(b))
	}
	var w wirePage[E]
	if err := json.Unmarshal(b, &w); err != nil {
		return Page[E]{}, fmt.Errorf("%w: %v", c.Err, err)
	}
	if len(w.Entries) > c.MaxEntries {
		return Page[E]{}, fmt.Errorf("%w: %d entries in a page", c.Err, len(w.Entries))
	}
	for i, e := range w.Entries {
		if err := c.Check(e); err != nil {
			return Page[E]{}, err
		}
		if i > 0 && CompareKey(c.Key(w.Entries[i-1]), c.Key(e)) >= 0 {
			return Page[E]{}, fmt.Errorf("%w: entries out of order", c.Err)
		}
	}
	return Page[E]{Version: w.Version, Entries: w.Entries, More: w.More}, nil
}

// requestSize is a request's length: the key to start after and a
// 16-bit limit.
const requestSize = 16 + 2

// EncodeRequest asks for up to limit entries after the key after.
func (c JSONPages[E]) EncodeRequest(after Key, limit int) []byte {
	b := make([]byte, requestSize)
	copy(b, after[:])
	binary.BigEndian.PutUint16(b[16:], uint16(limit))
	return b
}

// DecodeRequest decodes a request from a peer.
func (c JSONPages[E]) DecodeRequest(p []byte) (after Key, limit int, err error) {
	if len(p) != requestSize {
		return after, 0, fmt.Errorf("%w: list request of %d bytes", c.Err, len(p))
	}
	copy(after[:], p)
	limit = int(binary.BigEndian.Uint16(p[16:]))
	if limit == 0 || limit > c.MaxEntries {
		return after, 0, fmt.Errorf("%w: list limit %d (1 to %d)", c.Err, limit, c.MaxEntries)
	}
	return after, limit, nil
}

// Remote makes the cache of other nodes' lists of these pages: cfg with
// what the encoding decides set (Key, Decode, BadFrame), and Request
// asking through ask for MaxEntries entries at a time.
func (c JSONPages[E]) Remote(cfg RemoteConfig[E], ask func(ctx context.Context, node mesh.ID, req []byte) ([]byte, error)) *Remote[E] {
	cfg.Key, cfg.Decode, cfg.BadFrame = c.Key, c.DecodePage, c.Err
	cfg.Request = func(ctx context.Context, node mesh.ID, after Key) ([]byte, error) {
		return ask(ctx, node, c.EncodeRequest(after, c.MaxEntries))
	}
	return NewRemote(cfg)
}
