package guest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/internal/pubsub"
	"github.com/catnest/catnest/mesh/peerjs"
)

// fakeChat holds one public channel of messages, oldest first.
type fakeChat struct {
	mu     sync.Mutex
	msgs   []chatlog.Entry
	events pubsub.Topic[chatlog.Event]
}

func (c *fakeChat) Channels(context.Context) ([]chatlog.ChannelInfo, error) {
	return []chatlog.ChannelInfo{{ID: "c1", Name: "lobby", Joined: true}, {ID: "c2", Name: "secret", Joined: true, Burn: true}}, nil
}

func (c *fakeChat) Messages(_ context.Context, id string, before time.Time, limit int) ([]chatlog.Entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []chatlog.Entry
	for _, m := range c.msgs {
		if before.IsZero() || m.Time.Before(before) {
			out = append(out, m)
		}
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

func (c *fakeChat) PostGuest(_ context.Context, id, guest, text string) (chatlog.Entry, error) {
	e := chatlog.Entry{ID: fmt.Sprint("g", time.Now().UnixNano()), Channel: id, Guest: guest, Text: text, Time: time.Now()}
	c.events.Publish(chatlog.Event{Type: "message", Channel: id, Message: &e})
	return e, nil
}

func (c *fakeChat) SubscribeChat() *pubsub.Subscription[chatlog.Event] { return c.events.Subscribe(64) }

// fakeConn is a guest connection whose page is the test.
type fakeConn struct {
	ser    string
	in     chan []byte
	out    chan []byte
	done   chan struct{}
	closed sync.Once
}

func newFakeConn(ser string) *fakeConn {
	return &fakeConn{ser: ser, in: make(chan []byte), out: make(chan []byte, 1024), done: make(chan struct{})}
}

func (c *fakeConn) Peer() string          { return "page" }
func (c *fakeConn) Serialization() string { return c.ser }
func (c *fakeConn) Recv(ctx context.Context) ([]byte, error) {
	select {
	case b := <-c.in:
		return b, nil
	case <-c.done:
		return nil, errors.New("closed")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
func (c *fakeConn) Send(_ context.Context, b []byte) error {
	if len(b) > peerjs.ChunkMTU {
		return fmt.Errorf("message of %d bytes", len(b))
	}
	select {
	case c.out <- b:
		return nil
	case <-c.done:
		return errors.New("closed")
	}
}
func (c *fakeConn) Flush(context.Context) error { return nil }
func (c *fakeConn) Close() error                { c.closed.Do(func() { close(c.done) }); return nil }

type page struct {
	t   *testing.T
	c   *fakeConn
	enc *peerjs.Encoder
	dec *peerjs.Decoder
}

func (p *page) send(v any) {
	p.t.Helper()
	b, _ := json.Marshal(v)
	msgs, err := p.enc.Encode(b)
	if err != nil {
		p.t.Fatal(err)
	}
	for _, m := range msgs {
		select {
		case p.c.in <- m:
		case <-p.c.done:
			return
		case <-time.After(10 * time.Second):
			p.t.Fatal("guest service does not read")
		}
	}
}

func (p *page) recv() map[string]any {
	p.t.Helper()
	for {
		select {
		case b := <-p.c.out:
			v, err := p.dec.Decode(b)
			if err != nil {
				p.t.Fatal(err)
			}
			if v == nil {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal(v, &m); err != nil {
				p.t.Fatal(err)
			}
			return m
		case <-time.After(10 * time.Second):
			p.t.Fatal("no answer")
		}
	}
}

func start(t *testing.T, ser string, cfg Config) (*page, chan struct{}) {
	t.Helper()
	svc, err := NewService(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := newFakeConn(ser)
	ended := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { defer close(ended); svc.Serve(ctx, c) }()
	t.Cleanup(func() { cancel(); <-ended })
	enc, _ := peerjs.NewEncoder(ser)
	dec, _ := peerjs.NewDecoder(ser, 1<<20)
	return &page{t: t, c: c, enc: enc, dec: dec}, ended
}

// TestHistoryPagesFitJSON: pages of long messages stay under what a JSON
// DataConnection carries, and the cursor walks the whole history.
func TestHistoryPagesFitJSON(t *testing.T) {
	chat := &fakeChat{}
	base := time.UnixMilli(1_700_000_000_000)
	for i := range 3000 {
		chat.msgs = append(chat.msgs, chatlog.Entry{ID: fmt.Sprint(i), Time: base.Add(time.Duration(i) * time.Millisecond),
			Text: fmt.Sprintf("%04d ", i) + strings.Repeat("ü", 300+i%700)})
	}
	chat.msgs[1500].Text = strings.Repeat("long", 4000) // 16,000 bytes: cut
	for _, ser := range []string{"json", "binary"} {
		t.Run(ser, func(t *testing.T) {
			// A page this fast would be slowed down; this test is about paging.
			p, _ := start(t, ser, Config{Chat: chat, Rate: 10000, Burst: 10000})
			seen := 0
			var before float64
			for pages := 0; ; pages++ {
				req := map[string]any{"op": "history", "channel": "lobby", "limit": MaxLimit}
				if before > 0 {
					req["before"] = before
				}
				p.send(req)
				a := p.recv()
				if e, _ := a["error"].(string); strings.Contains(e, "slow down") {
					time.Sleep(50 * time.Millisecond) // back off, as a page should
					continue
				}
				if a["error"] != nil {
					t.Fatal(a["error"])
				}
				msgs := a["messages"].([]any)
				seen += len(msgs)
				if a["more"] != true {
					break
				}
				before = a["before"].(float64)
				if pages > 3000 {
					t.Fatal("history does not end")
				}
			}
			if seen != len(chat.msgs) {
				t.Fatalf("paged through %d messages of %d", seen, len(chat.msgs))
			}
		})
	}
}

// TestHostileGuest: a flood is answered with rate errors without closing;
// posting is refused unless allowed; burn channels are not public; a
// malformed message gets an error and the connection closed.
func TestHostileGuest(t *testing.T) {
	chat := &fakeChat{}
	p, ended := start(t, "binary", Config{Chat: chat})
	limited := 0
	for i := range 200 {
		p.send(map[string]any{"op": "channels", "id": i})
		if a := p.recv(); a["error"] != nil {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("200 requests at once were all answered: no rate limit")
	}
	for p.send(map[string]any{"op": "post", "channel": "lobby", "name": "m", "text": "x"}); ; {
		a := p.recv()
		if e, _ := a["error"].(string); strings.Contains(e, "slow down") {
			time.Sleep(50 * time.Millisecond) // the limiter refills; retry
			p.send(map[string]any{"op": "post", "channel": "lobby", "name": "m", "text": "x"})
			continue
		} else if !strings.Contains(e, "does not let guests post") {
			t.Fatalf("post: %v", a)
		}
		break
	}
	p.send("not a request")
	if a := p.recv(); a["error"] == nil {
		t.Fatalf("malformed: %v", a)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("connection still served after a malformed message")
	}

	p2, _ := start(t, "json", Config{Chat: chat, AllowPost: true})
	p2.send(map[string]any{"op": "history", "channel": "secret"})
	if a := p2.recv(); a["error"] == nil {
		t.Fatalf("burn channel served to a guest: %v", a)
	}
	p2.send(map[string]any{"op": "subscribe", "channel": "lobby"})
	p2.recv()
	p2.send(map[string]any{"op": "post", "channel": "lobby", "name": "ann", "text": "hi all", "id": "p"})
	var got, push map[string]any
	for got == nil || push == nil {
		a := p2.recv()
		if a["op"] == "message" {
			push = a
		} else {
			got = a
		}
	}
	if m := got["message"].(map[string]any); m["guest"] != "ann" || got["id"] != "p" {
		t.Fatalf("post answer: %v", got)
	}
	if m := push["message"].(map[string]any); m["text"] != "hi all" {
		t.Fatalf("pushed: %v", push)
	}
}

// TestGuestPostsTogether: guests' posts together stay within the node's
// bound however many guests there are, each within its own.
func TestGuestPostsTogether(t *testing.T) {
	chat := &fakeChat{}
	svc, err := NewService(Config{Chat: chat, AllowPost: true, AllPostRate: 0.001, AllPostBurst: 3})
	if err != nil {
		t.Fatal(err)
	}
	posted, refused := 0, 0
	for g := range 4 {
		c := newFakeConn("json")
		ended := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		go func() { defer close(ended); svc.Serve(ctx, c) }()
		enc, _ := peerjs.NewEncoder("json")
		dec, _ := peerjs.NewDecoder("json", 1<<20)
		p := &page{t: t, c: c, enc: enc, dec: dec}
		for i := range 2 {
			p.send(map[string]any{"op": "post", "channel": "lobby", "name": fmt.Sprint("g", g), "text": fmt.Sprint("post ", i)})
			a := p.recv()
			if e, _ := a["error"].(string); strings.Contains(e, "guests of this node are posting too fast") {
				refused++
			} else if e != "" {
				t.Fatalf("post: %v", a)
			} else {
				posted++
			}
		}
		cancel()
		<-ended
	}
	if posted != 3 || refused != 5 {
		t.Fatalf("8 posts from 4 guests, all guests' burst 3: %d posted, %d refused", posted, refused)
	}
}

// TestGuestNoBurnPush: a channel that turns burn-after-read after a guest
// subscribed pushes it no more messages.
func TestGuestNoBurnPush(t *testing.T) {
	chat := &fakeChat{}
	p, _ := start(t, "binary", Config{Chat: chat})
	p.send(map[string]any{"op": "subscribe", "channel": "lobby", "id": 1})
	if a := p.recv(); a["error"] != nil {
		t.Fatal(a)
	}
	chat.events.Publish(chatlog.Event{Type: "message", Channel: "c1", Message: &chatlog.Entry{ID: "b", Channel: "c1", Text: "burn after reading", Burn: true}})
	chat.events.Publish(chatlog.Event{Type: "message", Channel: "c1", Message: &chatlog.Entry{ID: "n", Channel: "c1", Text: "plain"}})
	a := p.recv()
	if m, _ := a["message"].(map[string]any); a["op"] != "message" || m["id"] != "n" {
		t.Fatalf("pushed %v, want the plain message only", a)
	}
}
