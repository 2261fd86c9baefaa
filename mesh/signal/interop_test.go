package signal

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/peerjstest"
)

// These tests hold our server and client to the reference: the npm
// package peer, started by peerjstest. Without it they skip, unless
// CATNEST_REQUIRE_INTEROP=1.

const interopExpire = 300 * time.Millisecond

// startReference runs the npm peer server like testConfig's, and returns
// its base URL.
func startReference(t *testing.T) string {
	t.Helper()
	return peerjstest.Start(t, peerjstest.Options{
		Key:            "k1",
		Path:           "/myapp",
		AllowDiscovery: true,
		ExpireTimeout:  interopExpire,
	})
}

func TestInteropClientWithReferenceServer(t *testing.T) {
	checkGoroutines(t)
	base := startReference(t)
	a := runClient(t, ClientConfig{URL: base, Key: "k1", ID: "alice"})
	b := runClient(t, ClientConfig{URL: base, Key: "k1", ID: "bob"})
	a.expectState(t, true)
	b.expectState(t, true)

	ctx := context.Background()
	offer := json.RawMessage(`{"sdp":{"type":"offer","sdp":"v=0\r\n"},"type":"data","connectionId":"dc_1","reliable":false}`)
	if err := a.Send(ctx, Message{Type: TypeOffer, Dst: "bob", Payload: offer}); err != nil {
		t.Fatal(err)
	}
	b.expectMessage(t, Message{Type: TypeOffer, Src: "alice", Dst: "bob", Payload: offer})
	if err := b.Send(ctx, Message{Type: TypeOffer, Dst: "alice", Payload: offer}); err != nil {
		t.Fatal(err)
	}
	a.expectMessage(t, Message{Type: TypeOffer, Src: "bob", Dst: "alice", Payload: offer})

	ids, err := a.Peers(ctx)
	slices.Sort(ids)
	if err != nil || !slices.Equal(ids, []string{"alice", "bob"}) {
		t.Fatalf("Peers: %v, %v; want [alice bob]", ids, err)
	}

	if err := a.Send(ctx, Message{Type: TypeOffer, Dst: "nobody"}); err != nil {
		t.Fatal(err)
	}
	a.expectMessage(t, Message{Type: TypeExpire, Src: "nobody", Dst: "alice"})

	bad, err := NewClient(ClientConfig{URL: base, Key: "wrong", ID: "carol", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, waitFor)
	defer cancel()
	if err := bad.Serve(rctx); !errors.Is(err, ErrRejected) {
		t.Fatalf("Serve with a wrong key: %v, want ErrRejected", err)
	}
}

func TestInteropPeersDisabled(t *testing.T) {
	checkGoroutines(t)
	base := peerjstest.Start(t, peerjstest.Options{})
	c, err := NewClient(ClientConfig{URL: base, ID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Peers(context.Background()); !errors.Is(err, ErrDiscoveryDisabled) {
		t.Fatalf("Peers: %v, want ErrDiscoveryDisabled", err)
	}
}

// TestConformance runs the same protocol exchanges against our server and
// the reference, so a difference shows up as a failure on one side.
func TestConformance(t *testing.T) {
	checkGoroutines(t)
	servers := []struct {
		name  string
		start func(t *testing.T) string
	}{
		{"catnest", func(t *testing.T) string {
			cfg := testConfig()
			cfg.AllowDiscovery = true
			cfg.ExpireTimeout = interopExpire
			return startServer(t, cfg, "").url
		}},
		{"npm-peer", startReference},
	}
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			t.Parallel()
			base := srv.start(t)
			t.Run("http", func(t *testing.T) {
				host := base[:strings.LastIndex(base, "/myapp")]
				for _, p := range []string{"/myapp", "/myapp/", "/myapp/k1/id", "/myapp/other/id", "/myapp//k1/id", "/myapp/k1/ID/", "/myapp/k1/peers"} {
					if status, _, body := httpGet(t, host+p); status != 200 || body == "" {
						t.Errorf("GET %s: %d %q", p, status, body)
					}
				}
				for _, p := range []string{"/myapp/peerjs", "/myapp/k1/nothing", "/myapp/a/b/id"} {
					if status, _, _ := httpGet(t, host+p); status != 404 {
						t.Errorf("GET %s: %d, want 404", p, status)
					}
				}
			})
			t.Run("refusals", func(t *testing.T) {
				connectOpen(t, base, "k1", "held")
				tests := []struct {
					name  string
					query url.Values
					want  Message
				}{
					{"no token", url.Values{"key": {"k1"}, "id": {"x"}}, errorMsg(reasonNoParams)},
					{"wrong key", url.Values{"key": {"k2"}, "id": {"x"}, "token": {"t"}}, errorMsg(reasonBadKey)},
					{"id taken", url.Values{"key": {"k1"}, "id": {"held"}, "token": {"t"}},
						Message{Type: TypeIDTaken, Payload: json.RawMessage(`{"msg":"ID is taken"}`)}},
				}
				for _, tc := range tests {
					t.Run(tc.name, func(t *testing.T) {
						dialRaw(t, base, tc.query, true).expectClosed(tc.want)
					})
				}
			})
			t.Run("relay", func(t *testing.T) {
				a := connectOpen(t, base, "k1", "relay-a")
				b := connectOpen(t, base, "k1", "relay-b")
				a.sendRaw([]byte(`{"type":"CANDIDATE","src":"forged","dst":"relay-b","payload":{"candidate":{"candidate":"c"},"type":"data","connectionId":"dc_1"},"extra":1}`))
				b.expect(Message{Type: TypeCandidate, Src: "relay-a", Dst: "relay-b",
					Payload: json.RawMessage(`{"candidate":{"candidate":"c"},"type":"data","connectionId":"dc_1"}`)})
			})
			t.Run("queue", func(t *testing.T) {
				a := connectOpen(t, base, "k1", "queue-a")
				a.send(Message{Type: TypeOffer, Dst: "queue-b", Payload: json.RawMessage(`"o"`)})
				a.send(Message{Type: TypeLeave, Dst: "queue-b"}) // not held
				// Once queue-c has this, the server has handled all of the above.
				c := connectOpen(t, base, "k1", "queue-c")
				a.send(Message{Type: TypeAnswer, Dst: "queue-c"})
				c.expect(Message{Type: TypeAnswer, Src: "queue-a", Dst: "queue-c"})
				b := connect(t, base, "k1", "queue-b", "t")
				b.expect(Message{Type: TypeOpen})
				b.expect(Message{Type: TypeOffer, Src: "queue-a", Dst: "queue-b", Payload: json.RawMessage(`"o"`)})
				b.expectNothing(100 * time.Millisecond)
			})
			t.Run("expire", func(t *testing.T) {
				a := connectOpen(t, base, "k1", "expire-a")
				a.send(Message{Type: TypeOffer, Dst: "expire-b"})
				a.send(Message{Type: TypeCandidate, Dst: "expire-b"})
				a.expect(Message{Type: TypeExpire, Src: "expire-b", Dst: "expire-a"})
				a.expectNothing(300 * time.Millisecond) // the queue went all at once
			})
			t.Run("reattach", func(t *testing.T) {
				a := connectOpen(t, base, "k1", "again-a")
				connect(t, base, "k1", "again-b", "same").expect(Message{Type: TypeOpen})
				b := connect(t, base, "k1", "again-b", "same")
				b.expectNothing(200 * time.Millisecond) // no OPEN
				a.send(Message{Type: TypeAnswer, Dst: "again-b"})
				b.expect(Message{Type: TypeAnswer, Src: "again-a", Dst: "again-b"})
			})
			t.Run("proof of id", func(t *testing.T) {
				// A catnest node's token: a proof to ours, an opaque token to
				// the reference; both register it and re-attach with it.
				key, id := newNodeKey(t)
				token := mustProof(t, key, "k1", id, time.Now())
				a := connectOpen(t, base, "k1", "proof-a")
				connect(t, base, "k1", id, token).expect(Message{Type: TypeOpen})
				b := connect(t, base, "k1", id, token)
				b.expectNothing(200 * time.Millisecond) // no OPEN
				a.send(Message{Type: TypeOffer, Dst: id})
				b.expect(Message{Type: TypeOffer, Src: "proof-a", Dst: id})
				b.send(Message{Type: TypeAnswer, Dst: "proof-a"})
				a.expect(Message{Type: TypeAnswer, Src: id, Dst: "proof-a"})
			})
		})
	}
}

func TestInteropSignerWithReferenceServer(t *testing.T) {
	checkGoroutines(t)
	base := startReference(t)
	key, id := newNodeKey(t)
	node := runClient(t, ClientConfig{URL: base, Key: "k1", ID: id, Signer: key})
	node.expectState(t, true)
	a := runClient(t, ClientConfig{URL: base, Key: "k1", ID: "alice"})
	a.expectState(t, true)
	ctx := context.Background()
	if err := a.Send(ctx, Message{Type: TypeOffer, Dst: id}); err != nil {
		t.Fatal(err)
	}
	node.expectMessage(t, Message{Type: TypeOffer, Src: "alice", Dst: id})
	if err := node.Send(ctx, Message{Type: TypeAnswer, Dst: "alice"}); err != nil {
		t.Fatal(err)
	}
	a.expectMessage(t, Message{Type: TypeAnswer, Src: id, Dst: "alice"})
}
