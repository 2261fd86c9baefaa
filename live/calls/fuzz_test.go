package calls

import (
	"encoding/json"
	"testing"

	"github.com/catnest/catnest/mesh"
)

// Every decoder of a peer's bytes must refuse what it cannot use without
// panicking, and what it takes must pass its own checks again.

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"op":"join","room":"kitchen","session":"ABC","refresh":true,"peer":{"node":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","session":"X"}}`))
	f.Add([]byte(`{"op":"signal","room":"k","session":"A","from":"B","signal":{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0}}}`))
	f.Add([]byte(`{"op":"signal","room":"k","session":"A","from":"B","signal":{"type":"offer","sdp":"` + jsonEscape(sdpOffer) + `"}}`))
	f.Add([]byte(`{"op":"state","room":"猫窝","session":"A","state":"full","epoch":7}`))
	f.Add([]byte(`{"op":"leave","room":"k","session":"A"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRequest(b)
		if err != nil {
			return
		}
		if CheckRoom(r.Room) != nil || checkSession(r.Session) != nil {
			t.Fatalf("took %+v", r)
		}
		if r.Op == opSignal && r.Signal.Check() != nil {
			t.Fatalf("took a bad signal %+v", r.Signal)
		}
	})
}

func FuzzDecodeReply(f *testing.F) {
	f.Add([]byte(`{"state":"joined","epoch":3,"peer":{"node":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","session":"X"},"initiator":true}`))
	f.Add([]byte(`{"state":"redirect","owner":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}`))
	f.Add([]byte(`{"state":"full"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeReply(b)
		if err != nil {
			return
		}
		if r.Peer != nil && r.Peer.check() != nil {
			t.Fatalf("took %+v", r)
		}
	})
}

func FuzzDecodeEnvelope(f *testing.F) {
	ids := []*mesh.Identity{fuzzIdentity(f), fuzzIdentity(f), fuzzIdentity(f)}
	path := []mesh.ID{ids[0].ID, ids[1].ID, ids[2].ID}
	e := envelope{Path: path, Hop: 1, Time: 1, Nonce: make([]byte, nonceLen), Body: []byte(`{"op":"leave","room":"k","session":"A"}`)}
	var err error
	if e.Key, e.Sig, err = sign(ids[0].Key, envSigned(&e)); err != nil {
		f.Fatal(err)
	}
	good, _ := json.Marshal(e)
	f.Add(good)
	f.Add([]byte(`{"path":[],"hop":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeEnvelope(b, path[1], path[0])
		if err != nil {
			return
		}
		if verify(got.Path[0], got.Key, got.Sig, envSigned(got)) != nil {
			t.Fatalf("took an envelope with a bad signature")
		}
	})
}

func fuzzIdentity(f *testing.F) *mesh.Identity {
	id, err := mesh.NewIdentity()
	if err != nil {
		f.Fatal(err)
	}
	return id
}

func jsonEscape(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}
