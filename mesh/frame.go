package mesh

import (
	"encoding/binary"
	"fmt"
)

// Channel selects one of a link's two data channels.
type Channel uint8

const (
	// Ctl is the reliable, ordered channel for control, gossip and requests.
	Ctl Channel = 0
	// Bulk is the channel for large transfers, so that they never delay Ctl.
	Bulk Channel = 1
)

func (c Channel) String() string {
	if c == Bulk {
		return "bulk"
	}
	return "ctl"
}

// Frame size limits. A data-channel message is one frame; a frame over its
// channel's limit is a protocol violation.
const (
	// MaxCtlFrame bounds a frame on the Ctl channel.
	MaxCtlFrame = 256 << 10
	// MaxBulkFrame bounds a frame on the Bulk channel: a 256 KiB block plus
	// header room.
	MaxBulkFrame = 256<<10 + 1<<10
	// MaxProtocolLen bounds a protocol name.
	MaxProtocolLen = 64
	// maxFrameHeader is the most header bytes a frame can have:
	// kind, request id as uvarint, protocol length, protocol.
	maxFrameHeader = 1 + binary.MaxVarintLen64 + 1 + MaxProtocolLen
)

func maxFrame(ch Channel) int {
	if ch == Bulk {
		return MaxBulkFrame
	}
	return MaxCtlFrame
}

// MaxPayload is the largest payload Send or Request accepts on ch.
func MaxPayload(ch Channel) int { return maxFrame(ch) - maxFrameHeader }

type frameKind uint8

const (
	kindMsg      frameKind = 1 // one-way message: proto, payload
	kindReq      frameKind = 2 // request: id, proto, payload
	kindResp     frameKind = 3 // response: id, payload
	kindErr      frameKind = 4 // error response: id, payload is the message
	kindPing     frameKind = 5 // payload echoed in the pong
	kindPong     frameKind = 6
	kindHello    frameKind = 7 // payload is the sender's hello (JSON)
	kindNoHandle frameKind = 8 // error response: id, no handler for proto
	// kindBusy answers a request that found the peer's handler slots and
	// their queue full (Config.RequestQueue): id; the caller gets ErrBusy.
	kindBusy frameKind = 9
)

// frame is a decoded frame. Payload aliases the buffer it was parsed from.
type frame struct {
	kind    frameKind
	id      uint64
	proto   string
	payload []byte
}

func (k frameKind) hasID() bool {
	return k == kindReq || k == kindResp || k == kindErr || k == kindNoHandle || k == kindBusy
}

func (k frameKind) hasProto() bool { return k == kindMsg || k == kindReq }

// appendFrame encodes f after dst.
func appendFrame(dst []byte, f frame) []byte {
	dst = append(dst, byte(f.kind))
	if f.kind.hasID() {
		dst = binary.AppendUvarint(dst, f.id)
	}
	if f.kind.hasProto() {
		dst = append(dst, byte(len(f.proto)))
		dst = append(dst, f.proto...)
	}
	return append(dst, f.payload...)
}

// parseFrame decodes b, which must be at most limit bytes.
func parseFrame(b []byte, limit int) (frame, error) {
	var f frame
	if len(b) > limit {
		return f, fmt.Errorf("%w: %d bytes over the limit of %d", errBadFrame, len(b), limit)
	}
	if len(b) == 0 {
		return f, fmt.Errorf("%w: empty", errBadFrame)
	}
	f.kind = frameKind(b[0])
	if f.kind < kindMsg || f.kind > kindBusy {
		return f, fmt.Errorf("%w: unknown kind %d", errBadFrame, b[0])
	}
	b = b[1:]
	if f.kind.hasID() {
		id, n := binary.Uvarint(b)
		if n <= 0 {
			return f, fmt.Errorf("%w: bad request id", errBadFrame)
		}
		f.id, b = id, b[n:]
	}
	if f.kind.hasProto() {
		if len(b) == 0 {
			return f, fmt.Errorf("%w: missing protocol", errBadFrame)
		}
		n := int(b[0])
		if n == 0 || n > MaxProtocolLen || len(b) < 1+n {
			return f, fmt.Errorf("%w: bad protocol length %d", errBadFrame, n)
		}
		f.proto, b = string(b[1:1+n]), b[1+n:]
		if err := checkProtocol(f.proto); err != nil {
			return f, fmt.Errorf("%w: %v", errBadFrame, err)
		}
	}
	f.payload = b
	return f, nil
}

// checkProtocol allows printable ASCII names such as "chat/1".
func checkProtocol(p string) error {
	if len(p) == 0 || len(p) > MaxProtocolLen {
		return fmt.Errorf("protocol name length %d not in 1..%d", len(p), MaxProtocolLen)
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] > '~' {
			return fmt.Errorf("protocol name %q has a byte outside printable ASCII", p)
		}
	}
	return nil
}
