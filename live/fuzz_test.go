package live

import (
	"testing"

	"github.com/catnest/catnest/mesh"
)

// FuzzDecodeRoom: a room record from the mesh never crashes the decoder,
// and one it accepts is signed by its host for a room ID of the host's.
func FuzzDecodeRoom(f *testing.F) {
	ident, err := mesh.NewIdentity()
	if err != nil {
		f.Fatal(err)
	}
	nonce := []byte("0123456789abcdef")
	r := Room{ID: roomID(ident.ID, nonce), Nonce: nonce, Host: ident.ID, Title: "t", Live: true, Seq: 1}
	env, err := seal(ident, roomContext, r)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env)
	f.Add([]byte(`{"b":{},"k":"","s":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRoom(b)
		if err != nil {
			return
		}
		if r.ID != roomID(r.Host, r.Nonce) || r.Title == "" {
			t.Fatalf("accepted a bad record: %+v", r)
		}
	})
}

// FuzzTreeRequest: a tree request from a peer never crashes its decoder.
func FuzzTreeRequest(f *testing.F) {
	ident, err := mesh.NewIdentity()
	if err != nil {
		f.Fatal(err)
	}
	env, err := seal(ident, treeContext, treeReq{Op: opAttach, Room: "r", From: ident.ID, To: ident.ID, Time: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env)
	f.Fuzz(func(t *testing.T, b []byte) {
		var req treeReq
		if signer, err := open(b, maxTreeMsg, treeContext, &req); err == nil && signer == "" {
			t.Fatal("accepted without a signer")
		}
	})
}

// FuzzParseOffer: an SDP offer from an HTTP client or a peer never crashes
// the parser.
func FuzzParseOffer(f *testing.F) {
	f.Add("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, s string) {
		o, err := parseOffer(s)
		if err == nil && len(o.kinds) == 0 {
			t.Fatal("accepted an offer without media")
		}
	})
}
