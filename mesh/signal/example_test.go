package signal_test

import (
	"context"
	"encoding/json"
	"log"
	"net"
	"time"

	"github.com/catnest/catnest/mesh/signal"
)

// A rendezvous server and a client that registers on it and answers
// offers. (Compiled, not run: it serves until its context ends.)
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cfg := signal.DefaultServerConfig()
	cfg.Path = "/myapp"
	srv := signal.NewServer(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:9000")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ctx, ln)

	var c *signal.Client
	c, err = signal.NewClient(signal.ClientConfig{
		URL: "http://127.0.0.1:9000/myapp",
		ID:  "alice",
		OnMessage: func(m signal.Message) {
			if m.Type == signal.TypeOffer {
				// Runs on Serve's goroutine: hand real work to another one.
				go c.Send(ctx, signal.Message{Type: signal.TypeAnswer, Dst: m.Src, Payload: json.RawMessage(`{}`)})
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Serve(ctx); err != nil {
		log.Fatal(err)
	}
}
