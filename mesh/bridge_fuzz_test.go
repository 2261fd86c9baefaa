package mesh

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"testing"
	"time"
)

// validOpen returns a signed open from a through via to b.
func validOpen(t testing.TB, a *Identity, via, b ID) []byte {
	eph, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	o := bridgeOpen{ID: make([]byte, bridgeIDLen), From: a.ID, To: b, Via: via, Time: time.Now().UnixMilli(), EA: eph.PublicKey().Bytes()}
	if o.KeyA, o.SigA, err = signWith(a, o.signedA()); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(o)
	return raw
}

// FuzzBridgeOpen: any open request or answer decodes with its fields in
// bounds or fails cleanly, and only one signed with its sender's key
// passes the signature check.
func FuzzBridgeOpen(f *testing.F) {
	a, _ := NewIdentity()
	via, _ := NewIdentity()
	b, _ := NewIdentity()
	good := validOpen(f, a, via.ID, b.ID)
	f.Add(good)
	f.Add([]byte(`{"id":"AAAAAAAAAAAAAAAAAAAAAA==","from":"x","to":"y","via":"z","t":1}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[1,2,3]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		o, err := decodeBridgeOpen(in)
		if err != nil {
			return
		}
		if len(o.ID) != bridgeIDLen || len(o.EA) != 65 || len(o.KeyA) > maxRelayKey || len(o.SigA) > maxRelaySig {
			t.Fatalf("decoded an open with a field out of bounds: %+v", o)
		}
		if checkSig(o.From, o.KeyA, o.SigA, o.signedA()) == nil && idFromSPKI(o.KeyA) != o.From {
			t.Fatalf("an open signed with another node's key passed the check: %s", in)
		}
	})
}

// FuzzBridgeData feeds arbitrary bridge frames, as a hostile neighbour
// could send them, to a node that ends one bridge through that neighbour
// and relays another for it: nothing is delivered that the other end did
// not seal, no fragment buffer grows past a frame, nothing panics. The
// input is a list of (channel byte, uint16 length, payload) records.
func FuzzBridgeData(f *testing.F) {
	var bid, rid [bridgeIDLen]byte
	copy(bid[:], "end-of-a-bridge!")
	copy(rid[:], "relayed-bridge!!")
	rec := func(ch Channel, p []byte) []byte {
		out := []byte{byte(ch), 0, 0}
		binary.BigEndian.PutUint16(out[1:], uint16(len(p)))
		return append(out, p...)
	}
	data := func(id [bridgeIDLen]byte, flags byte, body []byte) []byte {
		return append(append(append([]byte{bridgeData}, id[:]...), flags), body...)
	}
	f.Add(rec(Ctl, data(bid, 0, make([]byte, 40))))
	f.Add(append(rec(Bulk, data(bid, bridgeFlagBulk|bridgeFlagMore, make([]byte, 1000))), rec(Bulk, data(bid, bridgeFlagBulk, make([]byte, 20)))...))
	f.Add(rec(Ctl, data(rid, 0, []byte("pass me on"))))
	f.Add(rec(Ctl, closeFrame(bid)))
	f.Add(rec(Ctl, closeFrame(rid)))
	f.Add(rec(Ctl, []byte{9, 9, 9}))
	f.Add(rec(Bulk, data(bid, 0, []byte("bulk flagged as ctl"))))
	ident, _ := NewIdentity()
	via, _ := NewIdentity()
	far, _ := NewIdentity()
	key := make([]byte, 32)
	rand.Read(key)
	blk, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(blk)
	f.Fuzz(func(t *testing.T, in []byte) {
		n, err := NewNode(Config{Identity: ident, Transport: nopTransport{}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		sink := &sinkConn{remote: via.ID, done: make(chan struct{})}
		l := newLink(n, sink)
		c := newBridgeConn(n.bridges, bid, far.ID, via.ID, true)
		c.setKeys(aead, aead)
		delivered := 0
		c.Start(func(Channel, []byte) { delivered++ })
		n.bridges.addEnd(c)
		n.bridges.relay[rid] = &bridgeRelay{a: via.ID, b: far.ID, lim: newRelayLimiter(1 << 20)}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for len(in) >= 3 {
			ch := Channel(in[0] & 1)
			size := min(int(binary.BigEndian.Uint16(in[1:3])), len(in)-3)
			n.bridges.onData(ctx, l, ch, append([]byte(nil), in[3:3+size]...))
			in = in[3+size:]
			for i := range c.partial {
				if len(c.partial[i]) > maxFrame(Channel(i))+16 {
					t.Fatalf("fragment buffer of %d bytes", len(c.partial[i]))
				}
			}
		}
		if delivered != 0 {
			t.Fatalf("%d forged frames delivered", delivered)
		}
		c.closeLocal()
		sink.Close()
	})
}

// TestBridgeEndRefusesTamperedFrames: an end delivers what the other end
// sealed, in order, and closes the bridged link on a frame the bridging
// node altered or replayed, delivering nothing of it.
func TestBridgeEndRefusesTamperedFrames(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mangle func(sealed [][]byte) [][]byte
	}{
		{"flipped bit", func(s [][]byte) [][]byte { s[1][len(s[1])/2] ^= 1; return s }},
		{"replayed", func(s [][]byte) [][]byte { return [][]byte{s[0], s[0]} }},
		{"reordered", func(s [][]byte) [][]byte { return [][]byte{s[1], s[0]} }},
		{"dropped", func(s [][]byte) [][]byte { return [][]byte{s[1]} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ident, _ := NewIdentity()
			via, _ := NewIdentity()
			far, _ := NewIdentity()
			n, err := NewNode(Config{Identity: ident, Transport: nopTransport{}, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			key := make([]byte, 32)
			rand.Read(key)
			blk, _ := aes.NewCipher(key)
			aead, _ := cipher.NewGCM(blk)
			var bid [bridgeIDLen]byte
			rand.Read(bid[:])
			c := newBridgeConn(n.bridges, bid, far.ID, via.ID, false) // the accepter: frames come from dir 0
			c.setKeys(aead, aead)
			var got []string
			c.Start(func(_ Channel, b []byte) { got = append(got, string(b)) })
			n.bridges.addEnd(c)
			l := newLink(n, &sinkConn{remote: via.ID, done: make(chan struct{})})
			var sealed [][]byte
			for i, msg := range []string{"first", "second"} {
				sealed = append(sealed, aead.Seal(nil, nonce(0, Ctl, uint64(i)), []byte(msg), bid[:]))
			}
			ctx := context.Background()
			feed := func(frames [][]byte) {
				for _, s := range frames {
					n.bridges.onData(ctx, l, Ctl, append(append(append([]byte{bridgeData}, bid[:]...), 0), s...))
				}
			}
			feed(tc.mangle(append([][]byte(nil), sealed...)))
			select {
			case <-c.Done():
			default:
				t.Fatalf("the bridged link stayed open; delivered %q", got)
			}
			if len(got) > 1 || (len(got) == 1 && got[0] != "first") {
				t.Fatalf("delivered %q, want at most the untouched first frame", got)
			}
		})
	}
}
