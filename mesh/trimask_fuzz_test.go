package mesh

import (
	"context"
	"log/slog"
	"testing"
)

// FuzzTrimAsk feeds a node a run of trim asks from its neighbours, as
// hostile ones could send them, between which neighbours drop their links:
// each ask must be refused cleanly when malformed, and otherwise answered
// yes or no as a model of the grants says; whatever the asks, the yeses to
// linked neighbours never leave the node fewer links than an ask named.
// The input is the node's link count (1 + the first byte mod 8), then records of
// (asker byte, payload length byte, payload); a length of 255 means the
// asker drops its link instead (no payload). Asker 8 is not linked.
func FuzzTrimAsk(f *testing.F) {
	// The seeds are in testdata/fuzz/FuzzTrimAsk.
	const maxLinks = 8
	self, err := NewIdentity()
	if err != nil {
		f.Fatal(err)
	}
	var peers [maxLinks + 1]ID
	for i := range peers {
		p, err := NewIdentity()
		if err != nil {
			f.Fatal(err)
		}
		peers[i] = p.ID
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		n, err := NewNode(Config{Identity: self, Transport: nopTransport{}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		links := 1 + int(in[0])%maxLinks
		in = in[1:]
		linked := make(map[ID]bool)
		for _, id := range peers[:links] {
			n.links[id] = newLink(n, &sinkConn{remote: id, done: make(chan struct{})})
			linked[id] = true
		}
		granted := make(map[ID]bool) // the model: linked neighbours told yes
		for len(in) >= 2 {
			from := peers[int(in[0])%len(peers)]
			size := int(in[1])
			in = in[2:]
			if size == 255 {
				n.mu.Lock()
				delete(n.links, from)
				n.mu.Unlock()
				delete(linked, from)
				delete(granted, from)
				continue
			}
			size = min(size, len(in))
			payload := append([]byte(nil), in[:size]...)
			in = in[size:]
			resp, err := n.handleTrimAsk(context.Background(), &Message{From: from, Protocol: trimProto, Payload: payload, Request: true})
			if len(payload) != 1 {
				if err == nil || resp != nil {
					t.Fatalf("ask %x answered %x, %v", payload, resp, err)
				}
				continue
			}
			if err != nil || len(resp) != 1 || (resp[0] != trimYes && resp[0] != trimNo) {
				t.Fatalf("ask %x answered %x, %v", payload, resp, err)
			}
			yes := decodeTrimAnswer(resp)
			if !linked[from] {
				if !yes {
					t.Fatalf("an ask from a peer not linked answered no")
				}
				continue
			}
			others := len(granted)
			if granted[from] {
				others--
			}
			want := len(linked)-others-1 >= int(payload[0])
			if yes != want {
				t.Fatalf("ask for %d of %d links, %d granted to others: yes %v, want %v", payload[0], len(linked), others, yes, want)
			}
			if yes {
				granted[from] = true
				if left := len(linked) - len(granted); left < int(payload[0]) {
					t.Fatalf("granted down to %d links, under the %d asked", left, payload[0])
				}
			}
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		if len(n.trimGrants) > len(peers) {
			t.Fatalf("%d grants held for %d peers", len(n.trimGrants), len(peers))
		}
	})
}
