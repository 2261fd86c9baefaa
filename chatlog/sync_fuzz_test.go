package chatlog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/catnest/catnest/chatlog/recon"
	"github.com/catnest/catnest/mesh"
)

// encodeRequest encodes a decoded request with the builders the initiator
// uses.
func encodeRequest(r syncReq) []byte {
	switch r.op {
	case opOpen:
		return openRequest(r.channel, r.lower)
	case opGet:
		return getRequest(r.session, r.ids)
	}
	b := appendSyncHeader(nil, r.op, r.session)
	b = append(b, r.msg...)
	for _, m := range r.msgs {
		b, _ = appendEntry(b, maxSyncFrame, m)
	}
	return b
}

// FuzzSyncRequest checks the decoder of a peer's sync requests: anything
// it accepts is within the frame limit, has a known op, ids and messages
// of bounded count and size, and encodes back to the same bytes.
func FuzzSyncRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeSyncRequest(b)
		if err != nil {
			return
		}
		if len(b) > maxSyncFrame || len(req.ids) > maxGetIDs || len(req.msg) > maxReconMessage {
			t.Fatalf("accepted %d bytes with %d ids, recon message of %d", len(b), len(req.ids), len(req.msg))
		}
		if req.op < opOpen || req.op > opClose {
			t.Fatalf("accepted %v", req.op)
		}
		for _, m := range req.msgs {
			if len(m) == 0 || len(m) > MaxEncoded {
				t.Fatalf("accepted a message of %d bytes", len(m))
			}
		}
		if again := encodeRequest(req); !bytes.Equal(again, b) {
			t.Fatalf("%v request encodes back to %x, not %x", req.op, again, b)
		}
	})
}

// FuzzSyncAnswer checks the decoders of a responder's answers.
func FuzzSyncAnswer(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, _, err := decodeOpenAnswer(b); err == nil && len(b) > len(sessionID{})+10 {
			t.Fatalf("accepted an open answer of %d bytes", len(b))
		}
		const asked = 100
		n, msgs, err := decodeGetAnswer(b, asked)
		if err != nil {
			return
		}
		if n > asked || len(msgs) > n || len(b) > maxSyncFrame || n < asked && len(b)+maxEntry <= maxSyncFrame {
			t.Fatalf("accepted %d messages for %d of %d ids in %d bytes", len(msgs), n, asked, len(b))
		}
		for _, m := range msgs {
			if len(m) == 0 || len(m) > MaxEncoded {
				t.Fatalf("accepted a message of %d bytes", len(m))
			}
		}
	})
}

// TestWriteSyncFuzzCorpus regenerates the seed corpora of FuzzSyncRequest
// and FuzzSyncAnswer from real requests and answers. Run with
// CHATLOG_WRITE_CORPUS=1.
func TestWriteSyncFuzzCorpus(t *testing.T) {
	if os.Getenv("CHATLOG_WRITE_CORPUS") == "" {
		t.Skip("set CHATLOG_WRITE_CORPUS=1 to rewrite the seed corpus")
	}
	ident, err := mesh.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	var ms [][]byte
	var items []recon.Item
	for i := range 40 {
		m, err := NewMessage(ident, testChannel, KindText, []byte(fmt.Sprint("seed ", i)), ID{}, time.UnixMilli(int64(1e12+i)))
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m.Encode())
		items = append(items, recon.Item{Time: m.Time, ID: m.ID})
	}
	var sid sessionID
	copy(sid[:], "session-0001")
	start, _ := recon.NewSession(recon.NewSet(items), reconOptions()).Start()
	reply, err := recon.NewSession(recon.NewSet(items[:30]), reconOptions()).Next(start)
	if err != nil {
		t.Fatal(err)
	}
	ids := []ID{ID(bytes.Repeat([]byte{1}, 32)), ID(bytes.Repeat([]byte{2}, 32))}
	put := appendSyncHeader(nil, opPut, sid)
	for _, m := range ms[:3] {
		put, _ = appendEntry(put, maxSyncFrame, m)
	}
	get := []byte{100} // went through all FuzzSyncAnswer asks for
	for _, m := range ms[:2] {
		get, _ = appendEntry(get, maxSyncFrame, m)
	}
	corpora := map[string][][]byte{
		"FuzzSyncRequest": {
			openRequest(testChannel, 1e12),
			openRequest(testChannel, -5),
			append(appendSyncHeader(nil, opRecon, sid), start...),
			append(appendSyncHeader(nil, opRecon, sid), reply...),
			getRequest(sid, ids),
			put,
			appendSyncHeader(nil, opClose, sid),
			{9},
		},
		"FuzzSyncAnswer": {
			binary64(sid, 1e12),
			get,
			{0},
			{1, 0},
		},
	}
	for name, seeds := range corpora {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, b := range seeds {
			data := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// binary64 is an open answer.
func binary64(sid sessionID, lower int64) []byte {
	return binary.AppendVarint(append([]byte(nil), sid[:]...), lower)
}
