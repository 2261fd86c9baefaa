package signal

import (
	"errors"
	"testing"
	"time"
)

var fuzzSeeds = []string{
	`{"type":"HEARTBEAT"}`,
	`{"type":"OPEN"}`,
	`{"type":"OFFER","src":"a","dst":"b","payload":{"sdp":{"type":"offer","sdp":"v=0\r\n"},"type":"data","connectionId":"dc_1","label":"dc_1","reliable":false,"serialization":"binary"}}`,
	`{"type":"CANDIDATE","dst":"b","payload":{"candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0},"type":"data","connectionId":"dc_1"}}`,
	`{"type":"ERROR","payload":{"msg":"Invalid key provided"}}`,
	`{"type":"LEAVE"}`,
	`{"type":"EXPIRE","dst":"b c_d-e"}`,
	`{"type":"ANSWER","dst":"b","payload":null,"src":null}`,
	`{"type":"OFFER","dst":"b","extra":[1,{"x":"y"}]}`,
	`{"type":"OFFER","dst":"b","dst":"c"}`,
	`{"Type":"OFFER"}`,
	`{"type":1}`,
	`["OFFER"]`,
	`{"type":"OFFER"} {}`,
	`{"type":"OFFER"`,
	"{\"type\":\"OFFER\",\"payload\":\"\xff\"}",
	`{"type":"OFFER","payload":"\ud800"}`,
	``,
	`null`,
}

// FuzzDecodeMessage checks that DecodeMessage never panics, that its
// errors wrap ErrBadMessage, and that what it accepts survives an encode
// and decode unchanged.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			if !errors.Is(err, ErrBadMessage) {
				t.Fatalf("error %v does not wrap ErrBadMessage", err)
			}
			return
		}
		if m.Type == "" {
			t.Fatal("accepted a message without a type")
		}
		enc, err := encodeMessage(m)
		if err != nil {
			t.Fatalf("cannot encode accepted message %q: %v", b, err)
		}
		m2, err := DecodeMessage(enc)
		if err != nil && len(enc) <= MaxMessageSize {
			t.Fatalf("cannot decode re-encoded %q: %v", enc, err)
		}
		if err == nil && !sameMessage(m, m2) {
			t.Fatalf("round trip changed %s into %s", show(m), show(m2))
		}
	})
}

// FuzzServerInbound feeds one message from a registered client to the
// server's handling, with a peer online and one offline, and checks that
// it never panics, that what is relayed carries the sender's id, and that
// the queue accounting stays right.
func FuzzServerInbound(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := NewServer(ServerConfig{})
		sa, sb := newSocket(nil, nil), newSocket(nil, nil)
		a := &client{id: "a", token: "t", sock: sa, lastPing: time.Now()}
		s.clients["a"] = a
		s.clients["b"] = &client{id: "b", token: "t", sock: sb, lastPing: time.Now()}

		keep := s.handle(a, sa, b)

		select {
		case <-sa.stop:
			if keep {
				t.Fatal("handle closed the socket but asked for more")
			}
		default:
			if !keep {
				t.Fatal("handle stopped reading without closing the socket")
			}
		}
		for len(sb.out) > 0 {
			out := (<-sb.out).b
			m, err := DecodeMessage(out)
			if err != nil {
				t.Fatalf("relayed an undecodable %q: %v", out, err)
			}
			if m.Src != "a" || m.Dst != "b" || !relayed(m.Type) {
				t.Fatalf("relayed %s for %q", show(m), b)
			}
		}
		n, size := 0, 0
		for _, q := range s.queues {
			for _, m := range q.msgs {
				n++
				size += len(m.b)
			}
		}
		if n != s.queued || size != s.queuedBytes {
			t.Fatalf("queues hold %d messages, %d bytes; counted %d, %d", n, size, s.queued, s.queuedBytes)
		}
	})
}
