package mesh

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh/signal"
)

// FuzzSignalPayload feeds arbitrary payloads to the decoders of relayed
// OFFER, ANSWER and CANDIDATE messages: they must fail cleanly or return
// a payload with a bounded connection id.
func FuzzSignalPayload(f *testing.F) {
	f.Add([]byte(`{"sdp":{"type":"offer","sdp":"v=0\r\n"},"type":"data","connectionId":"dc_1","reliable":true}`))
	f.Add([]byte(`{"sdp":{"type":"answer","sdp":"v=0\r\n"},"type":"data","connectionId":"dc_1"}`))
	f.Add([]byte(`{"candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0"},"type":"data","connectionId":"dc_1"}`))
	f.Add([]byte(`{"sdp":{"type":"bogus"}}`))
	f.Add([]byte(`{"sdp":{"type":"offer","sdp":"v=0\r\na=fingerprint:sha-256 AB:CD\r\n"},"connectionId":"dc_1","metadata":{"catnest":1,"cert":"MIIB"}}`))
	src, err := NewIdentity()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		src := src.ID
		if p, err := decodeOffer(b); err == nil {
			if len(p.ConnectionID) == 0 || len(p.ConnectionID) > maxConnectionID || p.SDP.SDP == "" {
				t.Fatalf("accepted offer %+v", p)
			}
			// An offer's certificate cannot be src's: fuzz input holds no
			// key whose hash is an id chosen here.
			if err := checkOfferCert(src, p); err == nil {
				t.Fatalf("accepted the certificate of offer %+v", p)
			}
		}
		if p, err := decodeAnswer(b); err == nil && (len(p.ConnectionID) == 0 || len(p.ConnectionID) > maxConnectionID) {
			t.Fatalf("accepted answer %+v", p)
		}
		if p, err := decodeCandidate(b); err == nil && (len(p.ConnectionID) == 0 || len(p.ConnectionID) > maxConnectionID) {
			t.Fatalf("accepted candidate %+v", p)
		}
	})
}

// nopTransport lets a Node be built without a network.
type nopTransport struct{}

func (nopTransport) Dial(context.Context, ID) (Conn, error) { return nil, ErrNotConnected }
func (nopTransport) Serve(ctx context.Context, _ func(Conn)) error {
	<-ctx.Done()
	return nil
}
func (nopTransport) Candidates(context.Context) ([]ID, error) { return nil, nil }

// sinkConn is a Conn whose sends vanish.
type sinkConn struct {
	remote ID
	mu     sync.Mutex
	sent   int
	done   chan struct{}
	once   sync.Once
}

func (c *sinkConn) Remote() ID                  { return c.remote }
func (c *sinkConn) Outbound() bool              { return false }
func (c *sinkConn) Start(func(Channel, []byte)) {}
func (c *sinkConn) Send(ctx context.Context, ch Channel, b []byte) error {
	c.mu.Lock()
	c.sent++
	c.mu.Unlock()
	return nil
}
func (c *sinkConn) Close() error          { c.once.Do(func() { close(c.done) }); return nil }
func (c *sinkConn) Done() <-chan struct{} { return c.done }

// FuzzLinkRecv feeds a sequence of arbitrary frames, as a hostile peer
// could send them, to a link's receive path with handlers registered: the
// node must neither panic nor hold on to anything after the link closes.
// The input is a list of (channel byte, uint16 length, frame) records.
func FuzzLinkRecv(f *testing.F) {
	rec := func(ch Channel, fr frame) []byte {
		b := appendFrame(nil, fr)
		out := []byte{byte(ch), 0, 0}
		binary.BigEndian.PutUint16(out[1:], uint16(len(b)))
		return append(out, b...)
	}
	f.Add(rec(Ctl, frame{kind: kindHello, payload: []byte(`{"name":"x","v":1}`)}))
	f.Add(append(rec(Ctl, frame{kind: kindReq, id: 1, proto: "echo/1", payload: []byte("hi")}),
		rec(Bulk, frame{kind: kindMsg, proto: "note/1", payload: []byte("yo")})...))
	f.Add(rec(Ctl, frame{kind: kindResp, id: 7, payload: []byte("stray answer")}))
	f.Add(rec(Ctl, frame{kind: kindPing, payload: make([]byte, 8)}))
	f.Add([]byte{0, 0, 3, 99, 1, 2})
	ident, err := NewIdentity()
	if err != nil {
		f.Fatal(err)
	}
	peer, err := NewIdentity()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		n, err := NewNode(Config{Identity: ident, Transport: nopTransport{}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		n.Handle("echo/1", HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) { return m.Payload, nil }))
		n.Handle("note/1", HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) { return nil, nil }))
		c := &sinkConn{remote: peer.ID, done: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		l := newLink(n, c)
		l.wg.Go(func() { l.dispatch(ctx) })
		frames := 0
		for len(in) >= 3 {
			ch := Channel(in[0] & 1)
			size := int(binary.BigEndian.Uint16(in[1:3]))
			in = in[3:]
			size = min(size, len(in))
			l.recv(ctx, ch, append([]byte(nil), in[:size]...))
			in = in[size:]
			frames++
		}
		if bad := int(l.bad.Load()); bad > frames {
			t.Fatalf("%d violations from %d frames", bad, frames)
		}
		c.Close()
		cancel()
		done := make(chan struct{})
		go func() { l.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("link goroutines did not end after close")
		}
		if len(l.pend) != 0 {
			t.Fatalf("%d pending calls left", len(l.pend))
		}
	})
}

// FuzzBroadcastFrame checks the broadcast decoder: any input fails cleanly
// or decodes to a frame within the limits that encodes back to itself.
func FuzzBroadcastFrame(f *testing.F) {
	ident, _ := NewIdentity()
	f.Add(encodeGossip(&bcMsg{origin: ident.ID, topic: "chat/1", payload: []byte("hi"), sent: 1700000000000, hops: 2}))
	f.Add(encodeIHave([]MsgID{{1}, {2}}))
	f.Add(encodeGraft(MsgID{3}))
	f.Add([]byte{byte(bcPrune)})
	f.Add([]byte{byte(bcIHave), 1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, m, ids, err := decodeBcast(b)
		if err != nil {
			return
		}
		switch kind {
		case bcGossip:
			if len(m.payload) > MaxBroadcast || checkProtocol(m.topic) != nil {
				t.Fatalf("accepted %+v", m)
			}
			if _, err := ParseID(string(m.origin)); err != nil {
				t.Fatal(err)
			}
			m2 := m
			if _, again, _, err := decodeBcast(encodeGossip(m2)); err != nil || again.id != m.id || string(again.payload) != string(m.payload) {
				t.Fatalf("round trip: %v", err)
			}
		case bcIHave:
			if len(ids) == 0 || len(ids) > maxIHave {
				t.Fatalf("IHAVE with %d ids", len(ids))
			}
		case bcGraft:
			if len(ids) != 1 {
				t.Fatal("GRAFT without one id")
			}
		}
	})
}

// FuzzRecord checks the signed-record decoder: it must reject anything
// whose key does not match its id or whose signature does not verify.
func FuzzRecord(f *testing.F) {
	ident, _ := NewIdentity()
	env, _ := signRecord(ident, wireRecord{ID: ident.ID, Name: "n", Seq: 5, Neighbors: []ID{ident.ID}})
	f.Add(env)
	f.Add(env[:len(env)/2])
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := openRecord(b)
		if err != nil {
			return
		}
		if len(b) > MaxRecordSize || len(w.Neighbors) > maxNeighbors || w.Neighbors == nil || w.Resources == nil {
			t.Fatalf("accepted %+v", w)
		}
		// The signature covers the body: changing its last byte must
		// break it.
		c := append([]byte(nil), b...)
		c[len(c)-1] ^= 1
		if _, err := openRecord(c); err == nil {
			t.Fatalf("a record still verified after its body changed")
		}
	})
}

// relayFuzzKeys are fixed node keys, so that the seed corpus of
// FuzzRelayFrame holds frames that these nodes signed. Test keys only.
var relayFuzzKeys = [3]string{
	"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBSRh41CgV0a6zCFLa8249AU70RE31bff6fBCtYkc+wroAoGCCqGSM49\nAwEHoUQDQgAEgM8Vg9LhYyFSVk6GUfE3+19cXf2ixldQ8o8hqGPjoWWDAWaJdA1k\nBycDu9LDrjmw63Bv0PtohQRIW0ovWOaa/g==\n-----END EC PRIVATE KEY-----\n",
	"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEILswbFcOSxhQPgGr30z+pXhsGv9WEnKpUuPsEpVX9EGSoAoGCCqGSM49\nAwEHoUQDQgAEuOsy2XngOf1jtTqm64FDjAFChrzoamSDm4FWCfsNkuCxNh0I3kGe\njUPfqqKx0ycY/FEPi/t/tmlq+MKvRPbefw==\n-----END EC PRIVATE KEY-----\n",
	"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIMlAHSpu8kFwVzRYdBgDAx6aidSo/JLB+fN0GLjCBlL3oAoGCCqGSM49\nAwEHoUQDQgAE9cL260cs0EkjYo13M6M5IhIJxV6rDhddUOffWB7BaPoivtfiNRlW\nuyj4Ry4lnygG3po4MTTc3uP06Kj84G+nUw==\n-----END EC PRIVATE KEY-----\n",
}

// relayFuzzNow is the clock of FuzzRelayFrame; its seeds were signed then.
var relayFuzzNow = time.UnixMilli(1_700_000_000_000)

func relayFuzzIdents(tb testing.TB) (a, b, c *Identity) {
	var ids [3]*Identity
	for i, k := range relayFuzzKeys {
		id, err := parseKeyPEM("test key", []byte(k))
		if err != nil {
			tb.Fatal(err)
		}
		ids[i] = id
	}
	return ids[0], ids[1], ids[2]
}

// FuzzRelayFrame checks the decoder of signals relayed through the mesh:
// anything it accepts has a sound path and is signed by the path's first
// node, at a time near the receiver's clock. Node b receives from node a.
func FuzzRelayFrame(f *testing.F) {
	a, b, c := relayFuzzIdents(f)
	msg := []byte(`{"type":"OFFER","src":"` + string(a.ID) + `","dst":"` + string(c.ID) + `","payload":{}}`)
	fr, err := signRelay(a, []ID{a.ID, b.ID, c.ID}, msg, relayFuzzNow)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := json.Marshal(fr)
	f.Add(good)
	fr.Sig[len(fr.Sig)/2] ^= 1
	bad, _ := json.Marshal(fr)
	f.Add(bad)
	f.Add([]byte(`{"p":[],"h":0}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		fr, err := decodeRelay(in, b.ID, a.ID, relayFuzzNow)
		if err != nil {
			return
		}
		if len(fr.Path) < 2 || len(fr.Path) > maxPath || fr.Path[fr.Hop] != b.ID || fr.Path[fr.Hop-1] != a.ID {
			t.Fatalf("accepted path %v at hop %d", fr.Path, fr.Hop)
		}
		if idFromSPKI(fr.Key) != fr.Path[0] || len(fr.Nonce) != relayNonceLen || len(fr.Msg) > signal.MaxMessageSize {
			t.Fatalf("accepted %+v", fr)
		}
		if d := relayFuzzNow.Sub(time.UnixMilli(fr.Time)); d > relayMaxAge || d < -relayMaxAge {
			t.Fatalf("accepted a signal signed %v from now", d)
		}
		if _, err := signal.DecodeMessage(fr.Msg); err != nil {
			t.Fatalf("passed on a message its destination refuses: %v", err)
		}
		// The signature covers the message: changing it must break it.
		fr.Msg = append(fr.Msg, ' ')
		again, _ := json.Marshal(fr)
		if _, err := decodeRelay(again, b.ID, a.ID, relayFuzzNow); err == nil {
			t.Fatal("a relayed signal still verified after its message changed")
		}
	})
}
