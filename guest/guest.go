package guest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/internal/pubsub"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/peerjs"
)

// Chat is what the guest protocol needs of the chat service
// (*chatlog.Service).
type Chat interface {
	Channels(ctx context.Context) ([]chatlog.ChannelInfo, error)
	Messages(ctx context.Context, id string, before time.Time, limit int) ([]chatlog.Entry, error)
	PostGuest(ctx context.Context, id, guest, text string) (chatlog.Entry, error)
	SubscribeChat() *pubsub.Subscription[chatlog.Event]
}

// Config configures a Service.
type Config struct {
	// Chat is the node's chat service. Required.
	Chat Chat
	// AllowPost lets guests post (serve --guests); otherwise "post" is
	// refused.
	AllowPost bool
	// MaxMessage bounds one message from a guest, chunks put together;
	// default 32 KiB (a post of the longest text fits).
	MaxMessage int
	// Rate and Burst bound a guest's requests per second; defaults 20
	// and 40. Requests beyond get an error answer.
	Rate  float64
	Burst int
	// PostRate and PostBurst bound a guest's posts; defaults 1 a second
	// and 5.
	PostRate  float64
	PostBurst int
	// AllPostRate and AllPostBurst bound the posts of all guests together;
	// defaults 2 a second and 10. Guests' posts are the node's messages
	// and share the pace members hold every author to (chatlog
	// ServiceConfig.AuthorRate, 5 a second): without this bound, guests
	// that come and go with new ids would take all of it, and the node's
	// user could no longer post.
	AllPostRate  float64
	AllPostBurst int
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults; set Chat.
func DefaultConfig() Config {
	return Config{MaxMessage: 32 << 10, Rate: 20, Burst: 40, PostRate: 1, PostBurst: 5, AllPostRate: 2, AllPostBurst: 10}
}

// Service answers guests' requests.
type Service struct {
	cfg   Config
	log   *slog.Logger
	posts *rate.Limiter // all guests' posts (Config.AllPostRate)
}

// NewService returns a Service; zero Config values take the defaults.
func NewService(cfg Config) (*Service, error) {
	if cfg.Chat == nil {
		return nil, errors.New("guest: Config.Chat is required")
	}
	d := DefaultConfig()
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = d.MaxMessage
	}
	if cfg.Rate <= 0 {
		cfg.Rate, cfg.Burst = d.Rate, d.Burst
	}
	if cfg.Burst <= 0 {
		cfg.Burst = max(1, int(cfg.Rate))
	}
	if cfg.PostRate <= 0 {
		cfg.PostRate, cfg.PostBurst = d.PostRate, d.PostBurst
	}
	if cfg.PostBurst <= 0 {
		cfg.PostBurst = 1
	}
	if cfg.AllPostRate <= 0 {
		cfg.AllPostRate, cfg.AllPostBurst = d.AllPostRate, d.AllPostBurst
	}
	if cfg.AllPostBurst <= 0 {
		cfg.AllPostBurst = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Service{cfg: cfg, log: cfg.Logger, posts: rate.NewLimiter(rate.Limit(cfg.AllPostRate), cfg.AllPostBurst)}, nil
}

// Conn is one guest connection as the Service uses it (*mesh.Guest).
type Conn interface {
	Peer() string
	Serialization() string
	Recv(ctx context.Context) ([]byte, error)
	Send(ctx context.Context, b []byte) error
	Flush(ctx context.Context) error
	Close() error
}

var _ Conn = (*mesh.Guest)(nil)

// Handle serves one guest until it leaves, breaks the protocol or ctx
// ends; it fits mesh.GuestHandler (node.HandleGuests(svc.Handle)).
func (s *Service) Handle(ctx context.Context, g *mesh.Guest) { s.Serve(ctx, g) }

// flushTimeout bounds how long a last answer may take to leave before the
// connection closes.
const flushTimeout = 2 * time.Second

// Serve serves one guest connection until it ends, and closes it.
func (s *Service) Serve(ctx context.Context, c Conn) {
	defer c.Close()
	// The last answer (an error before closing, say) must reach the page
	// first; the flush has a deadline of its own, as the session's
	// context is cancelled by then.
	defer func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
		defer cancel()
		_ = c.Flush(fctx)
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sess := &session{s: s, c: c, log: s.log.With("guest", c.Peer()),
		reqs:  rate.NewLimiter(rate.Limit(s.cfg.Rate), s.cfg.Burst),
		posts: rate.NewLimiter(rate.Limit(s.cfg.PostRate), s.cfg.PostBurst),
		out:   make(chan []byte, 16),
		subs:  map[string]bool{},
	}
	var err error
	sess.enc, err = peerjs.NewEncoder(c.Serialization())
	if err == nil {
		sess.dec, err = peerjs.NewDecoder(c.Serialization(), s.cfg.MaxMessage)
	}
	if err != nil {
		// A raw or msgpack page gets the refusal as raw text: it cannot
		// read either form this package writes.
		_ = c.Send(ctx, []byte(`{"error":"`+jsonEscape(err.Error())+`"}`))
		return
	}
	sess.run(ctx)
}

func jsonEscape(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

// session is one guest connection's state. Only run's goroutine touches
// it, but for out, which the subscription goroutine also writes.
type session struct {
	s     *Service
	c     Conn
	log   *slog.Logger
	enc   *peerjs.Encoder
	dec   *peerjs.Decoder
	reqs  *rate.Limiter
	posts *rate.Limiter
	out   chan []byte // pushed messages, JSON
	subs  map[string]bool
	sub   *pubsub.Subscription[chatlog.Event]
}

// maxSubscriptions bounds the channels one guest follows.
const maxSubscriptions = 16

func (ss *session) run(ctx context.Context) {
	in := make(chan []byte)
	errc := make(chan error, 1)
	done := make(chan struct{})
	rctx, rcancel := context.WithCancel(ctx)
	exited := make(chan struct{})
	defer func() {
		close(done)
		rcancel()
		<-exited
	}()
	go func() {
		defer close(exited)
		for {
			b, err := ss.c.Recv(rctx)
			if err != nil {
				errc <- err
				return
			}
			select {
			case in <- b:
			case <-done:
				return
			}
		}
	}()
	defer func() {
		if ss.sub != nil {
			ss.sub.Close()
		}
	}()
	for {
		var events <-chan chatlog.Event
		if ss.sub != nil {
			events = ss.sub.C()
		}
		select {
		case b := <-in:
			if !ss.request(ctx, b) {
				return // Serve flushes the last answer and closes
			}
		case e := <-events:
			// A channel may turn burn-after-read after the guest
			// subscribed: its messages are for members' eyes only.
			if e.Type == "message" && ss.subs[e.Channel] && e.Message != nil && !e.Message.Burn {
				if !ss.send(ctx, map[string]any{"op": "message", "channel": e.Channel, "message": messageJSON(*e.Message)}) {
					return
				}
			}
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				ss.log.Debug("guest gone", "err", err)
			}
			return
		case <-ctx.Done():
			return
		}
	}
}

// request answers one message; false: the connection must close.
func (ss *session) request(ctx context.Context, b []byte) bool {
	v, err := ss.dec.Decode(b)
	if errors.Is(err, peerjs.ErrClosed) {
		return false
	}
	if err != nil {
		ss.log.Info("guest message refused: closing", "err", err)
		ss.send(ctx, map[string]any{"error": err.Error()})
		return false
	}
	if v == nil {
		return true // a chunk
	}
	req, err := DecodeRequest(v)
	if err != nil {
		ss.log.Info("guest request refused: closing", "err", err)
		ss.send(ctx, map[string]any{"error": err.Error()})
		return false
	}
	if !ss.reqs.Allow() {
		return ss.send(ctx, reply(req, map[string]any{"error": "too many requests: slow down"}))
	}
	resp, err := ss.answer(ctx, req)
	if err != nil {
		resp = map[string]any{"error": err.Error()}
	}
	return ss.send(ctx, reply(req, resp))
}

// reply adds the request's op and id to an answer, so that a page can
// match answers to requests.
func reply(req Request, resp map[string]any) map[string]any {
	resp["op"] = req.Op
	if req.ID != nil {
		resp["id"] = req.ID
	}
	return resp
}

func (ss *session) send(ctx context.Context, v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		ss.log.Warn("guest answer", "err", err)
		return false
	}
	msgs, err := ss.enc.Encode(b)
	if err != nil {
		ss.log.Warn("guest answer", "err", err)
		return false
	}
	for _, m := range msgs {
		if err := ss.c.Send(ctx, m); err != nil {
			return false
		}
	}
	return true
}

// public returns the channel a guest may see, by id or by name.
func (ss *session) public(ctx context.Context, ref string) (chatlog.ChannelInfo, error) {
	chs, err := ss.s.cfg.Chat.Channels(ctx)
	if err != nil {
		return chatlog.ChannelInfo{}, err
	}
	var found []chatlog.ChannelInfo
	for _, c := range chs {
		if c.Joined && !c.Burn && (c.ID == ref || strings.EqualFold(c.Name, ref)) {
			found = append(found, c)
		}
	}
	switch len(found) {
	case 0:
		return chatlog.ChannelInfo{}, fmt.Errorf("no public channel %q on this node", ref)
	case 1:
		return found[0], nil
	}
	for _, c := range found {
		if c.ID == ref {
			return c, nil
		}
	}
	return chatlog.ChannelInfo{}, fmt.Errorf("%d channels are named %q: use the id", len(found), ref)
}

func (ss *session) answer(ctx context.Context, req Request) (map[string]any, error) {
	chat := ss.s.cfg.Chat
	switch req.Op {
	case "channels":
		chs, err := chat.Channels(ctx)
		if err != nil {
			return nil, errors.New("channels unavailable")
		}
		out := []map[string]any{}
		for _, c := range chs {
			if c.Joined && !c.Burn {
				out = append(out, map[string]any{"id": c.ID, "name": c.Name, "owner": string(c.Owner)})
			}
		}
		return map[string]any{"channels": out, "posting": ss.s.cfg.AllowPost}, nil
	case "history":
		c, err := ss.public(ctx, req.Channel)
		if err != nil {
			return nil, err
		}
		var before time.Time
		if req.Before > 0 {
			before = time.UnixMilli(req.Before)
		}
		limit := req.Limit
		if limit <= 0 {
			limit = 50
		}
		es, err := chat.Messages(ctx, c.ID, before, limit)
		if err != nil {
			return nil, errors.New("history unavailable")
		}
		msgs := historyPage(es)
		resp := map[string]any{"channel": c.ID, "messages": msgs, "more": len(msgs) > 0 && (len(es) == limit || len(msgs) < len(es))}
		if len(msgs) > 0 {
			resp["before"] = msgs[0].Time
		}
		return resp, nil
	case "post":
		if !ss.s.cfg.AllowPost {
			return nil, errors.New("this node does not let guests post")
		}
		c, err := ss.public(ctx, req.Channel)
		if err != nil {
			return nil, err
		}
		if !ss.posts.Allow() {
			return nil, errors.New("posting too fast: slow down")
		}
		if !ss.s.posts.Allow() {
			return nil, errors.New("guests of this node are posting too fast: try again later")
		}
		e, err := chat.PostGuest(ctx, c.ID, req.Name, req.Text)
		if err != nil {
			return nil, fmt.Errorf("not posted: %w", err)
		}
		return map[string]any{"channel": c.ID, "message": messageJSON(e)}, nil
	case "subscribe", "unsubscribe":
		c, err := ss.public(ctx, req.Channel)
		if err != nil {
			return nil, err
		}
		if req.Op == "unsubscribe" {
			delete(ss.subs, c.ID)
			return map[string]any{"channel": c.ID}, nil
		}
		if len(ss.subs) >= maxSubscriptions && !ss.subs[c.ID] {
			return nil, fmt.Errorf("at most %d subscriptions", maxSubscriptions)
		}
		ss.subs[c.ID] = true
		if ss.sub == nil {
			ss.sub = chat.SubscribeChat()
		}
		return map[string]any{"channel": c.ID}, nil
	}
	return nil, fmt.Errorf("unknown op %q", req.Op)
}

// Message is a chat message as guests see it.
type Message struct {
	ID     string `json:"id"`
	Author string `json:"author"` // the node that wrote it (or posted it for a guest)
	Guest  string `json:"guest,omitempty"`
	Time   int64  `json:"time"` // unix ms
	Text   string `json:"text"`
	// Retracted: the author withdrew it; Text is empty.
	Retracted bool `json:"retracted,omitempty"`
	// Truncated: Text was cut to fit one PeerJS message.
	Truncated bool `json:"truncated,omitempty"`
}

func messageJSON(e chatlog.Entry) Message {
	return Message{ID: e.ID, Author: string(e.Author), Guest: e.Guest, Time: e.Time.UnixMilli(), Text: e.Text, Retracted: e.Retracted}
}

// pageBudget is how many bytes of JSON a page of history may take: an
// answer must fit in one message of the JSON serialization (under
// peerjs.ChunkMTU), with room for the rest of the answer.
const pageBudget = peerjs.ChunkMTU - 700

// maxText is how much of one message's text a history page carries.
const maxText = 4 << 10

// historyPage returns the newest of es (oldest first) that fit in
// pageBudget, texts cut to maxText bytes.
func historyPage(es []chatlog.Entry) []Message {
	out := make([]Message, 0, len(es))
	size := 0
	for i := len(es) - 1; i >= 0; i-- {
		m := messageJSON(es[i])
		if len(m.Text) > maxText {
			cut := maxText
			for cut > 0 && !utf8RuneStart(m.Text[cut]) {
				cut--
			}
			m.Text, m.Truncated = m.Text[:cut], true
		}
		b, _ := json.Marshal(m)
		if size+len(b)+1 > pageBudget {
			break
		}
		size += len(b) + 1
		out = append(out, m)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
