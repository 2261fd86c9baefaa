package calls

import (
	"encoding/json"
	"testing"

	"github.com/catnest/catnest/mesh"
)

// Every decoder of a peer's bytes must refuse what it cannot use without
// panicking, and what it takes must pass its own checks again.

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"seq":9,"op":"join","room":"kitchen","session":"ABC","refresh":true,"peer":{"node":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","session":"X"}}`))
	f.Add([]byte(`{"seq":9,"op":"signal","room":"k","session":"A","from":"B","signal":{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0}}}`))
	f.Add([]byte(`{"seq":9,"op":"signal","room":"k","session":"A","from":"B","signal":{"type":"offer","sdp":"` + jsonEscape(sdpOffer) + `"}}`))
	f.Add([]byte(`{"seq":9,"op":"state","room":"猫窝","session":"A","state":"full","epoch":7}`))
	f.Add([]byte(`{"seq":9,"op":"leave","room":"k","session":"A"}`))
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
	f.Add(good, false)
	// The destination's answer and a hop's failure notice, on their way
	// back through path[1].
	r := envelope{Path: path, Hop: 1, Back: true, Nonce: e.Nonce, Body: []byte(`{"state":"full"}`)}
	if r.Key, r.Sig, err = sign(ids[2].Key, replySigned(&r)); err != nil {
		f.Fatal(err)
	}
	answer, _ := json.Marshal(r)
	f.Add(answer, true)
	fail, _ := json.Marshal(envelope{Path: path, Hop: 1, Back: true, Nonce: e.Nonce, Fail: "no link"})
	f.Add(fail, true)
	f.Add([]byte(`{"path":[],"hop":1}`), false)
	f.Fuzz(func(t *testing.T, b []byte, back bool) {
		from := path[0]
		if back {
			from = path[2]
		}
		got, err := decodeEnvelope(b, path[1], from)
		if err != nil {
			return
		}
		switch {
		case got.Back != back:
			t.Fatalf("took a message from %s going the wrong way", from.Short())
		case !got.Back && verify(got.Path[0], got.Key, got.Sig, envSigned(got)) != nil:
			t.Fatalf("took an envelope with a bad signature")
		case got.Back && got.Fail == "" && verify(got.Path[len(got.Path)-1], got.Key, got.Sig, replySigned(got)) != nil:
			t.Fatalf("took an answer with a bad signature")
		case got.Back && got.Fail != "" && (len(got.Body) != 0 || got.Err != ""):
			t.Fatalf("took a failure notice that carries an answer")
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

// FuzzSeqTooLateTop: the window's top is read from a destination's error
// text; whatever the text, it parses or is refused without panicking, and
// what parses is what the error said.
func FuzzSeqTooLateTop(f *testing.F) {
	f.Add((&seqTooLate{top: 1764547200000000000}).Error())
	f.Add(errSeqTooLate.Error() + seqTooLatePrefix + "18446744073709551615")
	f.Add(errSeqTooLate.Error() + seqTooLatePrefix + "-1")
	f.Add("calls: join sent before the session's leave")
	f.Fuzz(func(t *testing.T, msg string) {
		top, ok := seqTooLateTop(msg)
		if !ok {
			return
		}
		if got, ok := seqTooLateTop((&seqTooLate{top: top}).Error()); !ok || got != top {
			t.Fatalf("top %d reads back as %d, %v", top, got, ok)
		}
	})
}
