package signal

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

// newNodeKey returns a fresh node key and its node ID.
func newNodeKey(t testing.TB) (*ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := signerID(key)
	if err != nil {
		t.Fatal(err)
	}
	return key, id
}

func mustProof(t testing.TB, key *ecdsa.PrivateKey, serverKey, id string, at time.Time) string {
	t.Helper()
	tok, err := makeProof(key, serverKey, id, at)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestProof(t *testing.T) {
	key, id := newNodeKey(t)
	other, otherID := newNodeKey(t)
	now := time.Now()
	good := mustProof(t, key, "k1", id, now)

	if !isNodeID(id) || isNodeID(strings.ToUpper(id)) || isNodeID(id[1:]) || isNodeID("0"+id[1:]) {
		t.Fatalf("isNodeID is wrong about %q or its variants", id)
	}
	// The token goes in the WebSocket URL's query: it must be short and
	// need no escaping, for PeerJS servers as for ours.
	if len(good) > maxProofLength || maxProofLength > maxTokenLength {
		t.Fatalf("proof of %d characters; limits %d, %d", len(good), maxProofLength, maxTokenLength)
	}
	if url.QueryEscape(good) != good {
		t.Fatalf("proof %q needs escaping in a URL", good)
	}
	if mustProof(t, key, "k1", id, now) == good {
		t.Fatal("two proofs made at the same time are equal")
	}

	flip := func(tok string, i int) string { // change one byte of the decoded proof
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok, proofPrefix))
		if err != nil {
			t.Fatal(err)
		}
		b[i] ^= 1
		return proofPrefix + base64.RawURLEncoding.EncodeToString(b)
	}
	tests := []struct {
		name      string
		token     string
		serverKey string
		id        string
		wantErr   bool
	}{
		{"valid", good, "k1", id, false},
		{"other server key", good, "k2", id, true},
		{"other id", good, "k1", otherID, true},
		{"other key's proof", mustProof(t, other, "k1", id, now), "k1", id, true},
		{"time changed", flip(good, proofPointLen+7), "k1", id, true},
		{"nonce changed", flip(good, proofPointLen+8), "k1", id, true},
		{"signature changed", flip(good, proofFixedLen+10), "k1", id, true},
		{"point changed", flip(good, 10), "k1", id, true},
		{"plain token", "abc123", "k1", id, true},
		{"empty", "", "k1", id, true},
		{"prefix only", proofPrefix, "k1", id, true},
		{"not base64url", proofPrefix + "+/+/", "k1", id, true},
		{"padded", good + "==", "k1", id, true},
		{"truncated", good[:len(good)-4], "k1", id, true},
		{"too long", good + strings.Repeat("A", maxProofLength), "k1", id, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseProof(tc.token)
			if err == nil {
				err = p.verify(tc.serverKey, tc.id)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, errBadProof) {
				t.Fatalf("error %v does not wrap errBadProof", err)
			}
		})
	}

	p, err := parseProof(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []time.Duration{0, proofWindow - time.Second, -proofWindow + time.Second} {
		if !p.fresh(now.Add(d)) {
			t.Errorf("proof not fresh %v after it was made", d)
		}
	}
	for _, d := range []time.Duration{proofWindow + time.Second, -proofWindow - time.Second} {
		if p.fresh(now.Add(d)) {
			t.Errorf("proof still fresh %v after it was made", d)
		}
	}
}

// FuzzParseProof checks that the proof decoder never panics, that its
// errors wrap errBadProof, and that it accepts nothing longer than its
// limit; a proof it accepts must not verify for an id or key it was not
// made for.
func FuzzParseProof(f *testing.F) {
	key, id := newNodeKey(f)
	f.Add(mustProof(f, key, "k1", id, time.Now()), id)
	f.Add(mustProof(f, key, "peerjs", id, time.Unix(0, 0)), id)
	f.Add("cn1.", id)
	f.Add("abc123", "alice")
	f.Add(proofPrefix+strings.Repeat("A", 300), id)
	f.Fuzz(func(t *testing.T, token, id string) {
		p, err := parseProof(token)
		if err != nil {
			if !errors.Is(err, errBadProof) {
				t.Fatalf("error %v does not wrap errBadProof", err)
			}
			return
		}
		if len(token) > maxProofLength {
			t.Fatalf("accepted a token of %d characters", len(token))
		}
		if err := p.verify("k1", id); err != nil && !errors.Is(err, errBadProof) {
			t.Fatalf("verify error %v does not wrap errBadProof", err)
		}
		if p.verify("another key", id) == nil {
			t.Fatalf("proof %q verified for a server key it was not made for", token)
		}
		p.fresh(time.Now())
	})
}
