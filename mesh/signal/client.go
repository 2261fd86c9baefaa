package signal

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

const (
	// clientVersion is sent as the version query parameter: the PeerJS
	// client release whose protocol this client speaks. Servers ignore it.
	clientVersion = "1.5.5"
	// dialTimeout bounds connecting and the WebSocket handshake.
	dialTimeout = 10 * time.Second
	// attachGrace is how long the client waits for OPEN. A server that
	// re-attaches a known token sends nothing, while every refusal comes at
	// once; so silence for this long means the client is registered.
	attachGrace = time.Second
	// clientReadLimit bounds a message from the server; larger ones close
	// the socket (and the client reconnects).
	clientReadLimit = 1 << 20
	// maxPeersResponse bounds the body of GET /peers.
	maxPeersResponse = 16 << 20
)

// ClientConfig configures a Client. The zero value of each optional field
// selects its default.
type ClientConfig struct {
	// URL is the rendezvous base URL including its path, http or https,
	// e.g. http://127.0.0.1:9000/myapp. Required.
	URL string
	// Key is the server's connection key; default "peerjs".
	Key string
	// ID is the id to register; required, must be ValidID.
	ID string
	// Token proves to the server that a reconnect is this client again;
	// empty: a random base-36 string, kept for the client's lifetime so that
	// reconnects re-attach to the session the server may still hold. Leave
	// it empty when Signer is set.
	Token string
	// Signer, if set, is the node's ECDSA P-256 key, and ID must be its
	// catnest node ID. The client then registers with a proof of id signed
	// with it as its token, so that on a catnest server nobody without the
	// key can hold the id, and a restarted node takes its id back at once.
	// A PeerJS server takes the proof as an ordinary token. The proof is
	// kept for reconnects and renewed when the server says it is out of
	// date or the id is taken.
	Signer crypto.Signer
	// Heartbeat is how often the client tells the server it is alive;
	// default 5s. Keep it well under the server's alive timeout.
	Heartbeat time.Duration
	// MinBackoff and MaxBackoff bound the wait before reconnecting, which
	// doubles after each failed attempt (with jitter); defaults 250ms, 10s.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// OnMessage is called for every message the server relays to us
	// (OFFER, ANSWER, CANDIDATE, LEAVE, EXPIRE), in order, on the
	// goroutine running Serve; it must not block for long (heartbeats wait
	// for it). It may call Send. May be nil.
	OnMessage func(Message)
	// OnState is called on the goroutine running Serve with true when the
	// client becomes registered and with false when it loses that socket
	// (including when Serve ends). Calls alternate, starting with true. It
	// must not block for long. May be nil.
	OnState func(connected bool)
	// HTTPClient makes the HTTP requests and WebSocket handshakes; nil:
	// http.DefaultClient. Its Timeout applies to Peers only.
	HTTPClient *http.Client
	// Logger receives the client's logs; nil discards them.
	Logger *slog.Logger
}

// Client keeps one id registered on a PeerServer and exchanges signaling
// messages through it. Create it with NewClient and run Serve; the other
// methods are safe for concurrent use, also while Serve runs.
type Client struct {
	cfg     ClientConfig
	base    *url.URL // cfg.URL with the path ending in a slash
	ws      url.URL  // the WebSocket URL without its query
	log     *slog.Logger
	http    *http.Client
	dialer  *http.Client // http without Timeout, which websocket.Dial refuses
	serving atomic.Bool

	mu    sync.Mutex
	conn  *websocket.Conn // the registered socket; nil when not registered
	token string          // cfg.Token, or the current proof of id
}

// NewClient checks cfg and returns a client for it, with defaults filled
// in. It does not connect; Serve does.
func NewClient(cfg ClientConfig) (*Client, error) {
	if !ValidID(cfg.ID) {
		return nil, fmt.Errorf("signal: invalid client id %q", cfg.ID)
	}
	base, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("signal: rendezvous URL: %w", err)
	}
	if base.Host == "" {
		return nil, fmt.Errorf("signal: rendezvous URL %q has no host", cfg.URL)
	}
	ws := *base
	switch base.Scheme {
	case "http":
		ws.Scheme = "ws"
	case "https":
		ws.Scheme = "wss"
	default:
		return nil, fmt.Errorf("signal: rendezvous URL %q: scheme must be http or https", cfg.URL)
	}
	base.Path = normalisePath(base.Path)
	base.RawPath, base.RawQuery, base.Fragment = "", "", ""
	if cfg.Key == "" {
		cfg.Key = "peerjs"
	}
	token := cfg.Token
	switch {
	case cfg.Signer != nil && token != "":
		return nil, errors.New("signal: a client with a Signer makes its own token; leave Token empty")
	case cfg.Signer != nil:
		id, err := signerID(cfg.Signer)
		if err != nil {
			return nil, err
		}
		if id != cfg.ID {
			return nil, fmt.Errorf("signal: the signer's key has node ID %s, not the client id %s", id, cfg.ID)
		}
		if token, err = makeProof(cfg.Signer, cfg.Key, cfg.ID, time.Now()); err != nil {
			return nil, err
		}
	case token == "":
		token = randomToken()
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	hc := cfg.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	dialer := hc
	if hc.Timeout != 0 {
		d := *hc
		d.Timeout = 0
		dialer = &d
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	ws.Path = base.Path + "peerjs"
	ws.RawPath, ws.RawQuery, ws.Fragment = "", "", ""

	return &Client{
		cfg:    cfg,
		base:   base,
		ws:     ws,
		log:    log.With("id", cfg.ID),
		http:   hc,
		dialer: dialer,
		token:  token,
	}, nil
}

// wsURL returns the WebSocket URL with the current token.
func (c *Client) wsURL() string {
	c.mu.Lock()
	token := c.token
	c.mu.Unlock()
	u := c.ws
	u.RawQuery = url.Values{
		"key":     {c.cfg.Key},
		"id":      {c.cfg.ID},
		"token":   {token},
		"version": {clientVersion},
	}.Encode()
	return u.String()
}

// renewProof replaces the token with a new proof of id, if the client has
// a Signer: a catnest server refuses an old proof for a new session, and
// lets a newer one take over an id held with an older one.
func (c *Client) renewProof() {
	if c.cfg.Signer == nil {
		return
	}
	token, err := makeProof(c.cfg.Signer, c.cfg.Key, c.cfg.ID, time.Now())
	if err != nil {
		c.log.Error("signal: cannot renew proof of id", "err", err)
		return
	}
	c.mu.Lock()
	c.token = token
	c.mu.Unlock()
}

// randomToken returns a random base-36 string like the tokens of PeerJS.
func randomToken() string {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 80))
	return n.Text(36)
}

// ID returns the id the client registers.
func (c *Client) ID() string { return c.cfg.ID }

// Connected reports whether the client is registered on the server now.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn != nil
}

// Serve connects to the server, registers, sends heartbeats, and passes
// relayed messages to OnMessage. When the socket drops or the server
// cannot be reached it reconnects, waiting between attempts with
// exponential backoff and jitter. If the id is taken it keeps retrying
// the same way (the old session may expire); with a Signer it renews its
// proof of id first, which on a catnest server takes the id over, unless
// a client with the same key took it from this one. It returns nil when ctx
// ends, or an error wrapping ErrRejected when the server refuses the
// client for good (a wrong key, say). Serve must not run twice at once.
func (c *Client) Serve(ctx context.Context) error {
	if !c.serving.CompareAndSwap(false, true) {
		return errors.New("signal: Client.Serve is already running")
	}
	defer c.serving.Store(false)
	backoff := c.cfg.MinBackoff
	// ousted: a client with our key took our id over with a newer proof.
	// Then ID-TAKEN means that it is still there, and taking the id back
	// with a newer proof would only start a tug of war: wait for it to go.
	ousted := false
	for {
		registered, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrRejected) {
			c.log.Error("signal: rejected by rendezvous server", "err", err)
			return err
		}
		if registered {
			backoff = c.cfg.MinBackoff
			ousted = false
		}
		switch {
		case errors.Is(err, errOusted):
			c.log.Warn("signal: another client with this node's key took over the id; waiting for it to leave")
			ousted = true
		case errors.Is(err, errStaleProof), errors.Is(err, errIDTaken) && !ousted:
			c.renewProof()
		}
		// Wait between backoff/2 and backoff.
		wait := backoff/2 + mrand.N(backoff/2+1)
		c.log.Info("signal: rendezvous connection lost; retrying", "err", err, "in", wait)
		backoff = min(2*backoff, c.cfg.MaxBackoff)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

var (
	// errIDTaken ends a session whose id another client holds.
	errIDTaken = errors.New("signal: id is taken")
	// errStaleProof ends a session refused for an out-of-date proof of id.
	errStaleProof = errors.New("signal: proof of id is out of date")
	// errOusted ends a session whose id a newer proof took over.
	errOusted = errors.New("signal: id taken over by another client with the same key")
)

// session runs one socket from dial to its end and reports whether it got
// registered and why it ended.
func (c *Client) session(ctx context.Context) (registered bool, err error) {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	ws, _, err := websocket.Dial(dctx, c.wsURL(), &websocket.DialOptions{HTTPClient: c.dialer})
	cancel()
	if err != nil {
		return false, err
	}
	ws.SetReadLimit(clientReadLimit)

	msgs := make(chan Message)
	readErr := make(chan error, 1)
	quit := make(chan struct{})
	go c.readLoop(ws, msgs, readErr, quit)
	defer func() {
		close(quit)
		ws.Close(websocket.StatusNormalClosure, "")
		ws.CloseNow()
		if e := <-readErr; err == nil {
			err = e
		}
		if registered {
			c.setConn(nil)
			if c.cfg.OnState != nil {
				c.cfg.OnState(false)
			}
		}
	}()

	markRegistered := func() {
		if registered {
			return
		}
		registered = true
		c.setConn(ws)
		c.log.Debug("signal: registered")
		if c.cfg.OnState != nil {
			c.cfg.OnState(true)
		}
	}
	grace := time.NewTimer(attachGrace)
	defer grace.Stop()
	heartbeat := time.NewTicker(c.cfg.Heartbeat)
	defer heartbeat.Stop()
	beat, _ := encodeMessage(Message{Type: TypeHeartbeat})
	for {
		select {
		case <-ctx.Done():
			return registered, nil
		case err := <-readErr:
			readErr <- err // for the deferred receive
			if ce := (websocket.CloseError{}); errors.As(err, &ce) && ce.Reason == closeOusted {
				err = fmt.Errorf("%w: %v", errOusted, err)
			}
			return registered, err
		case <-grace.C:
			markRegistered()
		case <-heartbeat.C:
			if err := write(ctx, ws, beat); err != nil {
				return registered, fmt.Errorf("signal: heartbeat: %w", err)
			}
		case m := <-msgs:
			switch m.Type {
			case TypeOpen:
				markRegistered()
			case TypeIDTaken:
				c.log.Warn("signal: id is taken on the rendezvous server; will retry")
				return registered, errIDTaken
			case TypeError:
				return registered, serverError(m, registered)
			case TypeHeartbeat:
			default:
				if !relayed(m.Type) {
					c.log.Debug("signal: ignoring message of unknown type", "type", m.Type)
					continue
				}
				markRegistered() // only a registered client is relayed to
				if c.cfg.OnMessage != nil {
					c.cfg.OnMessage(m)
				}
			}
		}
	}
}

// readLoop passes the messages read from ws to msgs until ws fails (the
// error goes to errc) or quit is closed.
func (c *Client) readLoop(ws *websocket.Conn, msgs chan<- Message, errc chan<- error, quit <-chan struct{}) {
	for {
		_, b, err := ws.Read(context.Background())
		if err != nil {
			errc <- err
			return
		}
		m, err := DecodeMessage(b)
		if err != nil {
			c.log.Debug("signal: ignoring bad message from server", "err", err)
			continue
		}
		select {
		case msgs <- m:
		case <-quit:
			errc <- nil
			return
		}
	}
}

// serverError turns an ERROR message into an error, wrapping ErrRejected
// when retrying cannot help.
func serverError(m Message, registered bool) error {
	var p struct {
		Msg string `json:"msg"`
	}
	_ = json.Unmarshal(m.Payload, &p)
	if p.Msg == reasonStaleProof {
		return fmt.Errorf("%w (is this machine's clock right?)", errStaleProof)
	}
	if !registered {
		for _, prefix := range []string{reasonNoParams, reasonBadKey, reasonBadToken, "Invalid id"} {
			if strings.HasPrefix(p.Msg, prefix) {
				return fmt.Errorf("%w: %s", ErrRejected, p.Msg)
			}
		}
	}
	return fmt.Errorf("signal: server error: %q", p.Msg)
}

func (c *Client) setConn(ws *websocket.Conn) {
	c.mu.Lock()
	c.conn = ws
	c.mu.Unlock()
}

func write(ctx context.Context, ws *websocket.Conn, b []byte) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	return ws.Write(ctx, websocket.MessageText, b)
}

// Send sends m to m.Dst through the server. m.Type must be one the server
// relays (OFFER, ANSWER, CANDIDATE, LEAVE, EXPIRE) and m.Dst a valid id;
// m.Src is set to our id (the server would overwrite it anyway). It
// returns ErrNotConnected when the client is not registered. A nil error
// means the server got the message, not that m.Dst did: an offline peer
// is answered with EXPIRE later.
func (c *Client) Send(ctx context.Context, m Message) error {
	switch {
	case !relayed(m.Type):
		return fmt.Errorf("%w: cannot send type %q", ErrBadMessage, m.Type)
	case m.Dst == "":
		return fmt.Errorf("%w: no dst", ErrBadMessage)
	case !ValidID(m.Dst):
		return fmt.Errorf("%w: invalid dst %q", ErrBadMessage, m.Dst)
	}
	m.Src = c.cfg.ID
	b, err := encodeMessage(m)
	if err != nil {
		return err
	}
	if len(b) > MaxMessageSize {
		return fmt.Errorf("%w: %d bytes, over the limit of %d", ErrBadMessage, len(b), MaxMessageSize)
	}
	c.mu.Lock()
	ws := c.conn
	c.mu.Unlock()
	if ws == nil {
		return ErrNotConnected
	}
	if err := write(ctx, ws, b); err != nil {
		return fmt.Errorf("signal: send %s to %s: %w", m.Type, m.Dst, err)
	}
	return nil
}

// Peers lists the ids registered on the server (GET {path}{key}/peers). It
// returns ErrDiscoveryDisabled when the server does not allow that. It
// needs no connection.
func (c *Client) Peers(ctx context.Context) ([]string, error) {
	u := *c.base
	u.Path += c.cfg.Key + "/peers"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("signal: peers: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("signal: peers: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return nil, ErrDiscoveryDisabled
	default:
		return nil, fmt.Errorf("signal: peers: server answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPeersResponse))
	if err != nil {
		return nil, fmt.Errorf("signal: peers: %w", err)
	}
	var ids []string
	if err := json.Unmarshal(body, &ids); err != nil {
		return nil, fmt.Errorf("signal: peers: %w", err)
	}
	if ids == nil {
		ids = []string{}
	}
	return ids, nil
}

// maxTURNResponse bounds the body of GET /turn.
const maxTURNResponse = 64 << 10

// TURN fetches TURN credentials for this client (GET {path}{key}/turn),
// which a server hands only to a registered client: call it once
// registered (OnState(true)). It returns ErrNoTURN when the server hands
// out none (it answered 404, as a server without TURN and the npm peer
// server do). Expires in the answer is moved to this machine's clock,
// from the TTL, so that a skewed clock does not keep expired credentials.
func (c *Client) TURN(ctx context.Context) (TURNCredentials, error) {
	u := *c.base
	u.Path += c.cfg.Key + "/turn"
	c.mu.Lock()
	token := c.token
	c.mu.Unlock()
	u.RawQuery = url.Values{"id": {c.cfg.ID}, "token": {token}}.Encode()
	var out TURNCredentials
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return out, fmt.Errorf("signal: turn: %w", err)
	}
	asked := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return out, fmt.Errorf("signal: turn: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return out, ErrNoTURN
	default:
		return out, fmt.Errorf("signal: turn: server answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTURNResponse+1))
	if err != nil {
		return out, fmt.Errorf("signal: turn: %w", err)
	}
	if len(body) > maxTURNResponse {
		return out, fmt.Errorf("signal: turn: answer over %d bytes", maxTURNResponse)
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return out, fmt.Errorf("signal: turn: %w", err)
	}
	if out.TTL > 0 {
		out.Expires = asked.Add(time.Duration(out.TTL) * time.Second)
	}
	if out.Expires.IsZero() {
		return out, errors.New("signal: turn: the answer has no expiry")
	}
	return out, nil
}
