package peerjs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ChunkMTU is the most bytes a PeerJS client puts in one data-channel
// message: a larger BinaryPack message is chunked, and a larger JSON one
// is refused by the client ("Message too big for JSON channel").
const ChunkMTU = 16300

// maxPartial bounds the chunked messages a Decoder holds unfinished: the
// stock client sends one message's chunks back to back, so a few cover
// any honest page.
const maxPartial = 4

// Serializations a Decoder and an Encoder speak.
const (
	JSON       = "json"
	Binary     = "binary"
	BinaryUTF8 = "binary-utf8"
)

// checkSerialization maps a DataConnection's serialization to the one
// this package uses for it. PeerJS sends "binary" by default, and treats
// "binary-utf8" like it.
func checkSerialization(s string) (string, error) {
	switch strings.ToLower(s) {
	case JSON:
		return JSON, nil
	case Binary, BinaryUTF8, "":
		return Binary, nil
	}
	return "", fmt.Errorf("%w: %q (use json or binary)", ErrSerialization, s)
}

// Decoder turns the data-channel messages of one DataConnection into JSON
// values, putting chunked BinaryPack messages back together.
type Decoder struct {
	ser     string
	max     int
	partial map[string]*partial
}

type partial struct {
	total int
	got   int
	size  int
	parts [][]byte
}

// NewDecoder returns a Decoder for a connection of the given
// serialization whose messages, once put together, are at most max bytes.
func NewDecoder(serialization string, max int) (*Decoder, error) {
	ser, err := checkSerialization(serialization)
	if err != nil {
		return nil, err
	}
	return &Decoder{ser: ser, max: max, partial: map[string]*partial{}}, nil
}

// Decode takes one data-channel message. It returns the JSON text of the
// value it completes, or nil when it was a chunk of a message not yet
// complete. A close request from the page is ErrClosed; any other error
// means the connection should be closed, since the page's stream is no
// longer in step.
func (d *Decoder) Decode(msg []byte) ([]byte, error) {
	if len(msg) > d.max {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(msg), d.max)
	}
	if d.ser == JSON {
		if !utf8.Valid(msg) {
			return nil, fmt.Errorf("%w: not UTF-8", ErrMalformed)
		}
		var probe struct {
			PeerData *struct {
				Type string `json:"type"`
			} `json:"__peerData"`
		}
		if !json.Valid(msg) {
			return nil, fmt.Errorf("%w: not JSON", ErrMalformed)
		}
		if bytes.Contains(msg, []byte(`"__peerData"`)) && json.Unmarshal(msg, &probe) == nil &&
			probe.PeerData != nil && probe.PeerData.Type == "close" {
			return nil, ErrClosed
		}
		return bytes.Clone(msg), nil
	}
	v, err := Unpack(msg)
	if err != nil {
		return nil, err
	}
	if m, ok := v.(map[string]any); ok {
		if pd, ok := m["__peerData"]; ok && pd != nil {
			if pm, ok := pd.(map[string]any); ok {
				if pm["type"] == "close" {
					return nil, ErrClosed
				}
				return nil, fmt.Errorf("%w: unknown __peerData message", ErrMalformed)
			}
			whole, err := d.chunk(keyString(pd), m)
			if whole == nil || err != nil {
				return nil, err
			}
			return d.Decode(whole)
		}
	}
	return toJSON(v)
}

// chunk adds a chunk {__peerData: id, n, total, data} and returns the
// whole message once every chunk has come.
func (d *Decoder) chunk(id string, m map[string]any) ([]byte, error) {
	n, ok1 := m["n"].(int64)
	total, ok2 := m["total"].(int64)
	data, ok3 := m["data"].([]byte)
	maxTotal := int64((d.max + ChunkMTU - 1) / ChunkMTU)
	switch {
	case !ok1 || !ok2 || !ok3:
		return nil, fmt.Errorf("%w: chunk without n, total or data", ErrMalformed)
	case total < 1 || n < 0 || n >= total:
		return nil, fmt.Errorf("%w: chunk %d of %d", ErrMalformed, n, total)
	case total > maxTotal:
		return nil, fmt.Errorf("%w: %d chunks, limit %d", ErrTooLarge, total, maxTotal)
	case len(data) > ChunkMTU:
		return nil, fmt.Errorf("%w: chunk of %d bytes, limit %d", ErrTooLarge, len(data), ChunkMTU)
	}
	p := d.partial[id]
	if p == nil {
		if len(d.partial) >= maxPartial {
			return nil, fmt.Errorf("%w: more than %d chunked messages at once", ErrTooLarge, maxPartial)
		}
		p = &partial{total: int(total), parts: make([][]byte, total)}
		d.partial[id] = p
	}
	switch {
	case int(total) != p.total:
		return nil, fmt.Errorf("%w: chunk says %d chunks, an earlier one %d", ErrMalformed, total, p.total)
	case p.parts[n] != nil:
		return nil, fmt.Errorf("%w: chunk %d twice", ErrMalformed, n)
	case p.size+len(data) > d.max:
		return nil, fmt.Errorf("%w: chunked message over %d bytes", ErrTooLarge, d.max)
	}
	if data == nil {
		data = []byte{}
	}
	p.parts[n] = data
	p.got++
	p.size += len(data)
	if p.got < p.total {
		return nil, nil
	}
	delete(d.partial, id)
	return bytes.Join(p.parts, nil), nil
}

// toJSON writes a value Unpack returned as JSON text.
func toJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err) // NaN or infinity
	}
	return b, nil
}

// Encoder turns JSON values into data-channel messages for one
// DataConnection.
type Encoder struct {
	ser  string
	next int64 // chunked message id
}

// NewEncoder returns an Encoder for a connection of the given
// serialization.
func NewEncoder(serialization string) (*Encoder, error) {
	ser, err := checkSerialization(serialization)
	if err != nil {
		return nil, err
	}
	return &Encoder{ser: ser, next: 1}, nil
}

// Encode returns the data-channel messages that carry the JSON value v:
// one, or for a BinaryPack message over ChunkMTU bytes its chunks. A JSON
// message of ChunkMTU bytes or more is an error wrapping ErrTooLarge: the
// client would not take it.
func (e *Encoder) Encode(v []byte) ([][]byte, error) {
	if e.ser == JSON {
		var c bytes.Buffer
		if err := json.Compact(&c, v); err != nil {
			return nil, fmt.Errorf("peerjs: encode: %w", err)
		}
		if c.Len() >= ChunkMTU {
			return nil, fmt.Errorf("%w: %d bytes of JSON, limit %d", ErrTooLarge, c.Len(), ChunkMTU-1)
		}
		return [][]byte{c.Bytes()}, nil
	}
	val, err := fromJSON(v)
	if err != nil {
		return nil, err
	}
	b, err := Pack(val)
	if err != nil {
		return nil, err
	}
	if len(b) <= ChunkMTU {
		return [][]byte{b}, nil
	}
	id := e.next
	e.next++
	total := (len(b) + ChunkMTU - 1) / ChunkMTU
	out := make([][]byte, 0, total)
	for n := range total {
		part := b[n*ChunkMTU : min(len(b), (n+1)*ChunkMTU)]
		c, err := Pack(map[string]any{"__peerData": id, "n": n, "total": total, "data": part})
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// fromJSON parses JSON text into the values Pack takes, keeping integers
// integers.
func fromJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("peerjs: encode: %w", err)
	}
	return numbers(v), nil
}

func numbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case []any:
		for i := range v {
			v[i] = numbers(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = numbers(v[k])
		}
	}
	return v
}
