package mesh_test

import (
	"context"
	"fmt"
	"time"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// Two nodes on an in-memory network: one serves a protocol, the other
// links to it and asks. Over WebRTC only the Config differs: set SignalURL
// (the rendezvous) instead of Transport.
func Example() {
	nw := meshtest.NewNetwork()
	start := func(name string) (*mesh.Node, func()) {
		ident, _ := mesh.NewIdentity() // real nodes: mesh.LoadOrCreateIdentity(dataDir)
		cfg := mesh.DefaultConfig()
		cfg.Identity, cfg.Name = ident, name
		cfg.Transport = nw.Transport(ident.ID)
		cfg.ManualLinks = true
		n, err := mesh.NewNode(cfg)
		if err != nil {
			panic(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { n.Serve(ctx); close(done) }()
		return n, func() { cancel(); <-done }
	}
	alice, stopAlice := start("alice")
	defer stopAlice()
	bob, stopBob := start("bob")
	defer stopBob()

	bob.Handle("greet/1", mesh.HandlerFunc(func(ctx context.Context, m *mesh.Message) ([]byte, error) {
		return []byte("hello, " + string(m.Payload)), nil
	}))
	events, stop := alice.SubscribePeers()
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Serve has just started in a goroutine: retry until bob accepts.
	for alice.Connect(ctx, bob.ID()) != nil && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	e := <-events
	fmt.Println("peer", e.Kind, e.Peer.Name)

	answer, err := alice.Request(ctx, bob.ID(), "greet/1", []byte("alice"))
	fmt.Println(string(answer), err)
	// Output:
	// peer up bob
	// hello, alice <nil>
}
