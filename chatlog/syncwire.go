package chatlog

import (
	"encoding/binary"
	"fmt"

	"github.com/catnest/catnest/mesh"
)

// Sync wire format (protocol chat/sync/2). Every request and answer is one
// frame on the link's bulk channel, so that a large sync never delays live
// chat on ctl. Integers are varints (encoding/binary); a request is an op
// byte and its fields:
//
//	open   1  channel [16], lower: varint (this side's oldest kept time)
//	recon  2  session [12], a recon message (the rest of the frame)
//	get    3  session [12], count: uvarint, count × ID [32]
//	put    4  session [12], messages
//	close  5  session [12]
//
//	messages = { length: uvarint, encoded message }, each 1..MaxEncoded bytes
//
// Answers:
//
//	open   session [12], lower: varint
//	recon  a recon message; empty when the responder has nothing to say
//	get    consumed: uvarint, messages: of the first `consumed` IDs asked
//	       for, those the responder serves, in the order asked. It goes
//	       through every ID asked unless the next message to serve does
//	       not fit: an answer that stops short with room left for any
//	       message (maxEntry) is refused, so that a holder cannot make a
//	       sync crawl one ID a round trip.
//	put, close: empty
//
// Every frame fits mesh.MaxPayload(mesh.Bulk) by construction: the recon
// messages are limited to what is left after the request header, and the
// senders of messages add one only while the frame still has room for it
// whole. A single message (at most MaxEncoded) always fits, so every
// answer to a get makes progress.

type syncOp byte

const (
	opOpen syncOp = 1 + iota
	opRecon
	opGet
	opPut
	opClose
)

func (op syncOp) String() string {
	switch op {
	case opOpen:
		return "open"
	case opRecon:
		return "recon"
	case opGet:
		return "get"
	case opPut:
		return "put"
	case opClose:
		return "close"
	}
	return fmt.Sprintf("op %d", byte(op))
}

// sessionID names a responder's sync session.
type sessionID [12]byte

const (
	// syncHeader is the size of a request's op and session.
	syncHeader = 1 + len(sessionID{})
	// maxGetIDs bounds the IDs of one get; such a request is far below the
	// frame limit (see TestSyncFrameLimits).
	maxGetIDs = 4096
)

var (
	// maxSyncFrame bounds every sync request and answer: the payload of
	// one bulk frame.
	maxSyncFrame = mesh.MaxPayload(mesh.Bulk)
	// maxReconMessage bounds a recon message, sent or received, so that a
	// recon request (header + message) fits a frame. Both sides derive it
	// from the same frame limit, as recon requires.
	maxReconMessage = maxSyncFrame - syncHeader
	// maxEntry is the most bytes one message takes in a frame.
	maxEntry = uvarintLen(MaxEncoded) + MaxEncoded
)

// syncReq is a decoded sync request.
type syncReq struct {
	op      syncOp
	channel ChannelID // open
	lower   int64     // open
	session sessionID // all but open
	msg     []byte    // recon
	ids     []ID      // get
	msgs    [][]byte  // put; they alias the frame
}

// appendSyncHeader starts a request other than open.
func appendSyncHeader(b []byte, op syncOp, sid sessionID) []byte {
	b = append(b, byte(op))
	return append(b, sid[:]...)
}

func openRequest(ch ChannelID, lower int64) []byte {
	b := append(make([]byte, 0, 1+len(ch)+binary.MaxVarintLen64), byte(opOpen))
	b = append(b, ch[:]...)
	return binary.AppendVarint(b, lower)
}

func getRequest(sid sessionID, ids []ID) []byte {
	b := appendSyncHeader(make([]byte, 0, syncHeader+binary.MaxVarintLen32+len(ids)*len(ID{})), opGet, sid)
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b
}

// appendEntry adds one length-prefixed message to b if the result stays
// within limit.
func appendEntry(b []byte, limit int, enc []byte) ([]byte, bool) {
	if len(b)+uvarintLen(uint64(len(enc)))+len(enc) > limit {
		return b, false
	}
	b = binary.AppendUvarint(b, uint64(len(enc)))
	return append(b, enc...), true
}

func varintLen(v int64) int {
	var tmp [binary.MaxVarintLen64]byte
	return binary.PutVarint(tmp[:], v)
}

func badSync(format string, args ...any) error {
	return fmt.Errorf("%w: sync: "+format, append([]any{ErrInvalidInput}, args...)...)
}

// decodeSyncRequest parses a peer's sync request and checks its form: size,
// op, the count and size of its IDs and messages, minimal varints, no
// trailing bytes, so that what it accepts has one encoding. It
// does not verify the messages (Decode does). Every error wraps
// ErrInvalidInput.
func decodeSyncRequest(b []byte) (syncReq, error) {
	var req syncReq
	if len(b) > maxSyncFrame {
		return req, badSync("request of %d bytes", len(b))
	}
	if len(b) == 0 {
		return req, badSync("empty request")
	}
	req.op, b = syncOp(b[0]), b[1:]
	if req.op == opOpen {
		if len(b) < len(ChannelID{}) {
			return req, badSync("open too short")
		}
		copy(req.channel[:], b)
		v, n := binary.Varint(b[len(ChannelID{}):])
		if n <= 0 || len(ChannelID{})+n != len(b) || n != varintLen(v) {
			return req, badSync("bad open")
		}
		req.lower = v
		return req, nil
	}
	if req.op < opOpen || req.op > opClose {
		return req, badSync("%v", req.op)
	}
	if len(b) < len(sessionID{}) {
		return req, badSync("%v without a session", req.op)
	}
	copy(req.session[:], b)
	b = b[len(sessionID{}):]
	switch req.op {
	case opRecon:
		if len(b) > maxReconMessage {
			return req, badSync("recon message of %d bytes", len(b))
		}
		req.msg = b
	case opGet:
		k, n := binary.Uvarint(b)
		if n <= 0 || n != uvarintLen(k) || k > maxGetIDs {
			return req, badSync("get of %d ids", k)
		}
		b = b[n:]
		if uint64(len(b)) != k*uint64(len(ID{})) {
			return req, badSync("get of %d ids in %d bytes", k, len(b))
		}
		req.ids = make([]ID, k)
		for i := range req.ids {
			req.ids[i] = ID(b[i*len(ID{}):])
		}
	case opPut:
		var err error
		if req.msgs, err = decodeEntries(b); err != nil {
			return req, err
		}
	case opClose:
		if len(b) != 0 {
			return req, badSync("close with %d more bytes", len(b))
		}
	}
	return req, nil
}

// decodeEntries splits length-prefixed messages; they alias b.
func decodeEntries(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		v, n := binary.Uvarint(b)
		if n <= 0 || n != uvarintLen(v) || v == 0 || v > MaxEncoded {
			return nil, badSync("message of bad length")
		}
		b = b[n:]
		if uint64(len(b)) < v {
			return nil, badSync("message truncated")
		}
		out = append(out, b[:v:v])
		b = b[v:]
	}
	return out, nil
}

// decodeOpenAnswer parses a responder's answer to open.
func decodeOpenAnswer(b []byte) (sessionID, int64, error) {
	var sid sessionID
	if len(b) < len(sid) || len(b) > len(sid)+binary.MaxVarintLen64 {
		return sid, 0, badSync("open answer of %d bytes", len(b))
	}
	copy(sid[:], b)
	v, n := binary.Varint(b[len(sid):])
	if n <= 0 || len(sid)+n != len(b) || n != varintLen(v) {
		return sid, 0, badSync("bad open answer")
	}
	return sid, v, nil
}

// decodeGetAnswer parses a responder's answer to a get of asked IDs: how
// many of them it went through, and the messages it served.
func decodeGetAnswer(b []byte, asked int) (int, [][]byte, error) {
	if len(b) > maxSyncFrame {
		return 0, nil, badSync("get answer of %d bytes", len(b))
	}
	k, n := binary.Uvarint(b)
	if n <= 0 || n != uvarintLen(k) || k > uint64(asked) {
		return 0, nil, badSync("get answer went through more ids than asked")
	}
	msgs, err := decodeEntries(b[n:])
	if err != nil {
		return 0, nil, err
	}
	if uint64(len(msgs)) > k {
		return 0, nil, badSync("%d messages for %d ids", len(msgs), k)
	}
	if int(k) < asked && len(b)-n <= getAnswerRoom(asked)-maxEntry {
		return 0, nil, badSync("get answer stopped after %d of %d ids with %d bytes free", k, asked, getAnswerRoom(asked)-(len(b)-n))
	}
	return int(k), msgs, nil
}

// getAnswerRoom is the room for messages in the answer to a get of asked
// IDs: the frame less the largest count it can start with.
func getAnswerRoom(asked int) int { return maxSyncFrame - uvarintLen(uint64(asked)) }
