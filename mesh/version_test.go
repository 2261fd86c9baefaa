package mesh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// helloConn plays a peer that answers this node's hello with its own, of
// a chosen version, and sends nothing else.
type helloConn struct {
	remote   ID
	outbound bool
	version  int

	mu   sync.Mutex
	recv func(Channel, []byte)
	done chan struct{}
	once sync.Once
}

func (c *helloConn) Remote() ID     { return c.remote }
func (c *helloConn) Outbound() bool { return c.outbound }
func (c *helloConn) Start(recv func(Channel, []byte)) {
	c.mu.Lock()
	c.recv = recv
	c.mu.Unlock()
}

func (c *helloConn) Send(ctx context.Context, ch Channel, b []byte) error {
	select {
	case <-c.done:
		return ErrLinkClosed
	default:
	}
	f, err := parseFrame(b, maxFrame(ch))
	if err != nil || f.kind != kindHello {
		return err
	}
	p, _ := json.Marshal(hello{Name: "other", Version: c.version})
	c.mu.Lock()
	recv := c.recv
	c.mu.Unlock()
	recv(Ctl, appendFrame(nil, frame{kind: kindHello, payload: p}))
	return nil
}

func (c *helloConn) Close() error          { c.once.Do(func() { close(c.done) }); return nil }
func (c *helloConn) Done() <-chan struct{} { return c.done }

// helloTransport dials helloConns, and hands the test the accept function
// for links the peer dials.
type helloTransport struct {
	version int
	accept  chan func(Conn)
}

func (t *helloTransport) Dial(_ context.Context, id ID) (Conn, error) {
	return &helloConn{remote: id, outbound: true, version: t.version, done: make(chan struct{})}, nil
}

func (t *helloTransport) Serve(ctx context.Context, accept func(Conn)) error {
	t.accept <- accept
	<-ctx.Done()
	return nil
}

func (t *helloTransport) Candidates(context.Context) ([]ID, error) { return nil, nil }

// syncBuffer is a log sink that tests may read while the node writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestHelloVersionMismatchRefused: a peer whose hello carries another
// link protocol version is not linked, in either direction; the dialer
// gets an error that says so and the node logs it as a warning. A peer of
// this node's version links.
func TestHelloVersionMismatchRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version int
		ok      bool
	}{
		{"same version", helloVersion, true},
		{"newer", helloVersion + 1, false},
		{"no version", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			self, err := NewIdentity()
			if err != nil {
				t.Fatal(err)
			}
			var logs syncBuffer
			tr := &helloTransport{version: tc.version, accept: make(chan func(Conn), 1)}
			n, err := NewNode(Config{Identity: self, Transport: tr, ManualLinks: true, HelloTimeout: 10 * time.Second,
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			served := make(chan error, 1)
			go func() { served <- n.Serve(ctx) }()
			defer func() {
				cancel()
				if err := <-served; err != nil {
					t.Error(err)
				}
			}()
			accept := <-tr.accept

			out, err := NewIdentity()
			if err != nil {
				t.Fatal(err)
			}
			err = n.Connect(ctx, out.ID)
			if tc.ok {
				if err != nil {
					t.Fatalf("dial a peer of the same version: %v", err)
				}
			} else {
				if !errors.Is(err, errVersion) || !strings.Contains(err.Error(), "version") {
					t.Fatalf("dial a peer of version %d: got %v, want a version error", tc.version, err)
				}
				if n.link(out.ID) != nil {
					t.Fatal("the node linked a peer of another version it dialed")
				}
			}

			in, err := NewIdentity()
			if err != nil {
				t.Fatal(err)
			}
			c := &helloConn{remote: in.ID, version: tc.version, done: make(chan struct{})}
			accept(c)
			if tc.ok {
				testutil.WaitFor(t, 20*time.Second, "the inbound link", func() bool { return n.link(in.ID) != nil })
				return
			}
			select {
			case <-c.done:
			case <-ctx.Done():
				t.Fatal("the node kept an inbound link from a peer of another version")
			}
			if n.link(in.ID) != nil {
				t.Fatal("the node registered an inbound link from a peer of another version")
			}
			testutil.WaitFor(t, 20*time.Second, "two warnings of the mismatch", func() bool {
				return strings.Count(logs.String(), "another link protocol version") == 2
			})
		})
	}
}
