package signal

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Reasons sent in ERROR payloads. The first four are the reference server's
// exact words, which PeerJS clients show to their users.
const (
	reasonNoParams   = "No id, token, or key supplied to websocket server"
	reasonBadKey     = "Invalid key provided"
	reasonBadToken   = "Invalid token provided"
	reasonLimit      = "Server has reached its concurrent user limit"
	reasonBadID      = "Invalid id provided: ids are letters and digits, joined by single spaces, _ or -, at most 256 bytes"
	reasonTooLarge   = "Message too large"
	reasonBadMessage = "Invalid message"
	reasonBadType    = "Invalid message type"
	reasonNoDst      = "No dst supplied"
	reasonBadDst     = "Invalid dst"
	// reasonBadProof starts with reasonBadToken, so that clients take it
	// as a refusal that retrying cannot fix.
	reasonBadProof = reasonBadToken + ": ids of the form of a catnest node ID need a proof signed with the node key"
	// reasonStaleProof is worth retrying with a fresh proof.
	reasonStaleProof   = "Proof of id is out of date: make a new one, and check the clock"
	reasonAddressLimit = "Too many connections from your address"
	// closeOusted is the close reason for a socket whose id a newer proof
	// of id took over.
	closeOusted = "replaced by a newer proof of id"
)

const (
	// aliveInterval and expireInterval are how often the server looks for
	// silent clients and for stale queues, as the reference server does.
	aliveInterval  = 300 * time.Millisecond
	expireInterval = time.Second

	// sendQueueLen and sendQueueBytes bound the messages waiting to be
	// written to one socket, so a slow reader never blocks the server or
	// grows its memory. A message that does not fit is not delivered and
	// its sender gets EXPIRE: the sender bears a full queue, never the
	// destination, which others could otherwise flood off the server.
	sendQueueLen   = 256
	sendQueueBytes = 1 << 20
	// maxSenderShare: one sender may hold at most 1/maxSenderShare of the
	// room the other senders leave in a destination's send queue (or in
	// the queue held for it while it is offline); see fairShare.
	maxSenderShare = 4
	// writeTimeout bounds one WebSocket write; a client that cannot take a
	// message in that time is dropped.
	writeTimeout = 10 * time.Second
	// closeTimeout bounds a graceful close: writing what is queued, the
	// close frame, and reading until the peer's close frame (which may sit
	// behind the rest of a huge frame the peer announced and never sends).
	closeTimeout = 3 * time.Second

	// Bounds of the messages held for offline peers. Past them a message is
	// answered with EXPIRE at once instead of being held.
	maxQueuedPerPeer  = 128
	maxQueuedPeerSize = 512 << 10 // bytes, so a full queue fits in sendQueueBytes
	maxQueuedMessages = 10000
	maxQueuedBytes    = 32 << 20

	// shutdownGrace is how long shutdown waits for close handshakes
	// before it hangs up.
	shutdownGrace = 2 * time.Second

	// maxTokenLength bounds the client token; PeerJS tokens are ~11 chars,
	// proofs of id at most maxProofLength.
	maxTokenLength = 256

	// Timeouts of the HTTP server Serve runs. WebSockets are not bound by
	// them: a hijacked connection has its deadlines cleared.
	httpReadHeaderTimeout = 10 * time.Second
	httpReadTimeout       = 30 * time.Second
	httpWriteTimeout      = 30 * time.Second
)

// ServerConfig configures a Server. The zero value of each field selects
// its default.
type ServerConfig struct {
	// Key is the connection key clients must present; default "peerjs".
	Key string
	// Path is where the server is mounted; default "/". It is normalised
	// to a leading and trailing slash.
	Path string
	// AllowDiscovery lets anyone list the connected ids at
	// GET {Path}{Key}/peers; default false (401).
	AllowDiscovery bool
	// ExpireTimeout is how long messages for an offline peer are held
	// before the sender is told EXPIRE; default 5s.
	ExpireTimeout time.Duration
	// AliveTimeout is how long a client may go without a HEARTBEAT before
	// it is dropped; default 60s (the reference CLI's default).
	AliveTimeout time.Duration
	// ConcurrentLimit is the most clients registered at once; default 5000.
	ConcurrentLimit int
	// PerAddressLimit is the most WebSockets open at once from one address
	// (an IPv4 address or an IPv6 /64), so that one host cannot take all
	// ConcurrentLimit slots; default 64. Serve also accepts at most four
	// times as many TCP connections from one address (each node also keeps
	// idle HTTP connections), so that one host cannot use up the server's
	// file descriptors. Behind a reverse proxy every
	// client has the proxy's address: set it to ConcurrentLimit there.
	PerAddressLimit int
	// IdleTimeout is how long Serve keeps an idle HTTP keep-alive
	// connection open; default 30s. (With ServeHTTP, the http.Server's own
	// settings apply.)
	IdleTimeout time.Duration
	// TURN, when set, hands registered clients credentials for TURN
	// servers at GET {Path}{Key}/turn?id=&token= (see TURNConfig).
	TURN TURNConfig
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
}

// DefaultServerConfig returns the defaults of the reference CLI.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		Key:             "peerjs",
		Path:            "/",
		AllowDiscovery:  false,
		ExpireTimeout:   5 * time.Second,
		AliveTimeout:    60 * time.Second,
		ConcurrentLimit: 5000,
		PerAddressLimit: 64,
		IdleTimeout:     30 * time.Second,
	}
}

// Server is a PeerJS PeerServer: it registers clients by id over
// WebSockets and relays signaling messages between them. Create it with
// NewServer; its methods are safe for concurrent use.
type Server struct {
	cfg  ServerConfig
	base string // cfg.Path with a leading and trailing slash
	log  *slog.Logger

	mu          sync.Mutex
	closed      bool
	clients     map[string]*client
	queues      map[string]*queue // by dst id
	queued      int               // messages in all queues
	queuedBytes int
	sockets     map[*socket]struct{} // every open socket, registered or not
	addrs       map[string]int       // open sockets by addressKey, those over the limit not counted
	handlers    sync.WaitGroup       // WebSocket handlers; Add only under mu while !closed
}

// client is one registered id.
type client struct {
	id, token string
	proofAt   int64     // the time of the token's proof of id (Unix ms); 0 for other ids
	sock      *socket   // the current socket; replaced on re-attach
	lastPing  time.Time // last HEARTBEAT (or registration)
}

// queue holds messages for an id that is not connected.
type queue struct {
	created time.Time // the reference expires a queue this long after it was made
	msgs    []queued
	size    int             // bytes in msgs
	senders map[string]load // msgs by src
}

// load is what one sender has in a queue.
type load struct{ n, size int }

type queued struct {
	src, dst string
	b        []byte
}

// NewServer returns a server for cfg, with defaults filled in.
func NewServer(cfg ServerConfig) *Server {
	def := DefaultServerConfig()
	if cfg.Key == "" {
		cfg.Key = def.Key
	}
	if cfg.ExpireTimeout <= 0 {
		cfg.ExpireTimeout = def.ExpireTimeout
	}
	if cfg.AliveTimeout <= 0 {
		cfg.AliveTimeout = def.AliveTimeout
	}
	if cfg.ConcurrentLimit <= 0 {
		cfg.ConcurrentLimit = def.ConcurrentLimit
	}
	if cfg.PerAddressLimit <= 0 {
		cfg.PerAddressLimit = def.PerAddressLimit
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = def.IdleTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		cfg:     cfg,
		base:    normalisePath(cfg.Path),
		log:     log,
		clients: make(map[string]*client),
		queues:  make(map[string]*queue),
		sockets: make(map[*socket]struct{}),
		addrs:   make(map[string]int),
	}
}

// normalisePath returns p with a leading and a trailing slash.
func normalisePath(p string) string {
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p
}

// Serve serves HTTP and WebSocket requests on ln and runs the server's
// timers (as Maintain does) until ctx ends. Then it stops listening,
// closes every socket, waits for their handlers, and returns nil. It
// returns an error if ln fails first. A Server serves once: after Serve
// or Maintain returns, the server is closed for good.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.isClosed() {
		ln.Close()
		return ErrServerClosed
	}
	srv := &http.Server{
		Handler: s,
		// Every connection ends: one that sends its request slowly, one
		// that does not read the answer, one that idles between requests.
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	serveErr := make(chan error, 1)
	lim := &addrLimitListener{Listener: ln, limit: connsPerAddress(s.cfg.PerAddressLimit), log: s.log, conns: make(map[string]int)}
	go func() { serveErr <- srv.Serve(lim) }()

	err := s.maintain(ctx, serveErr)

	// Requests are short, so a moment is enough for those in flight; then
	// every other connection is closed. Hijacked WebSockets are not
	// tracked by srv: shutdown closes them.
	shutCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	_ = srv.Shutdown(shutCtx)
	cancel()
	srv.Close()
	s.shutdown()
	if err == nil {
		err = <-serveErr
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Maintain runs the server's timers (dropping clients silent past
// AliveTimeout, expiring queued messages) until ctx ends, then closes
// every socket and returns nil. Use it instead of Serve when the server is
// mounted with ServeHTTP on an http.Server of your own.
func (s *Server) Maintain(ctx context.Context) error {
	if s.isClosed() {
		return ErrServerClosed
	}
	err := s.maintain(ctx, nil)
	s.shutdown()
	return err
}

// maintain runs the timers until ctx ends (nil) or failed yields an error.
func (s *Server) maintain(ctx context.Context, failed <-chan error) error {
	alive := time.NewTicker(aliveInterval)
	defer alive.Stop()
	expire := time.NewTicker(expireInterval)
	defer expire.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-failed:
			return err
		case now := <-alive.C:
			s.dropSilent(now)
		case now := <-expire.C:
			s.expireQueues(now)
		}
	}
}

// shutdown closes the server for good and waits for the WebSocket
// handlers to finish.
func (s *Server) shutdown() {
	s.mu.Lock()
	s.closed = true
	for sock := range s.sockets {
		sock.closeWith(nil, websocket.StatusGoingAway, "server shutting down")
	}
	clear(s.clients)
	clear(s.queues)
	s.queued, s.queuedBytes = 0, 0
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.handlers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-time.After(shutdownGrace):
	}
	// Some peers do not answer the close handshake (closeTimeout also ends
	// it, but later): hang up on them.
	s.mu.Lock()
	for sock := range s.sockets {
		sock.hangUp()
	}
	s.mu.Unlock()
	<-done
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Clients returns the registered ids, sorted.
func (s *Server) Clients() []string {
	s.mu.Lock()
	ids := make([]string, 0, len(s.clients))
	for id := range s.clients {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	slices.Sort(ids)
	return ids
}

// ServeHTTP serves everything under the configured path:
//
//	GET {path}             server info (JSON)
//	GET {path}{key}/id     a fresh unused id (text)
//	GET {path}{key}/peers  the registered ids (JSON), or 401 without discovery
//	{path}peerjs?key=&id=&token=   the WebSocket
//
// Like the reference server it tolerates repeated slashes and a trailing
// slash, matches "id" and "peers" case-insensitively, does not check the
// key on the HTTP routes, and allows any origin (browser pages on other
// origins use it).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := s.within(r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
			h.Set("Access-Control-Allow-Headers", req)
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if rest == "peerjs" && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		s.serveWS(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var segs []string
	for seg := range strings.SplitSeq(rest, "/") {
		if seg != "" {
			segs = append(segs, seg)
		}
	}
	switch {
	case len(segs) == 0:
		writeJSON(w, serverInfo)
	case len(segs) == 2 && strings.EqualFold(segs[1], "id"):
		h.Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, s.freshID())
	case len(segs) == 2 && strings.EqualFold(segs[1], "peers"):
		if !s.cfg.AllowDiscovery {
			http.Error(w, http.StatusText(http.StatusUnauthorized), http.StatusUnauthorized)
			return
		}
		writeJSON(w, s.Clients())
	case len(segs) == 2 && strings.EqualFold(segs[1], "turn") && s.cfg.TURN.enabled():
		s.serveTURN(w, r, segs[0])
	default:
		http.NotFound(w, r)
	}
}

// within returns the part of p after the base path, and whether p is
// under it at all ("/app" counts as the base "/app/").
func (s *Server) within(p string) (string, bool) {
	if p+"/" == s.base {
		return "", true
	}
	return strings.CutPrefix(p, s.base)
}

var serverInfo = struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Website     string `json:"website"`
}{
	Name:        "catnest PeerServer",
	Description: "A PeerJS-compatible server that brokers connections between catnest and PeerJS clients.",
	Website:     "https://github.com/catnest/catnest",
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write(b)
}

// freshID returns a random UUID (version 4) that no client holds.
func (s *Server) freshID() string {
	for {
		var b [16]byte
		rand.Read(b[:])
		b[6] = b[6]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		id := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
		s.mu.Lock()
		_, taken := s.clients[id]
		s.mu.Unlock()
		if !taken {
			return id
		}
	}
}

// serveWS runs one WebSocket from the handshake to its end.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	hj := &hijackRecorder{ResponseWriter: w}
	ws, err := websocket.Accept(hj, r, &websocket.AcceptOptions{
		// PeerJS pages are served from other origins than the server's.
		InsecureSkipVerify: true,
	})
	if err != nil {
		s.log.Debug("signal: websocket handshake failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	// Oversized messages are caught below, so that the client gets an
	// ERROR before the close rather than a bare close frame.
	ws.SetReadLimit(-1)
	sock := newSocket(ws, hj.conn)
	addr := addressKey(r.RemoteAddr)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ws.CloseNow()
		return
	}
	s.sockets[sock] = struct{}{}
	overLimit := s.addrs[addr] >= s.cfg.PerAddressLimit
	if !overLimit {
		s.addrs[addr]++
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()
	go sock.writeLoop()
	defer func() {
		sock.abort() // a no-op if a graceful close was asked for
		<-sock.done
		s.mu.Lock()
		delete(s.sockets, sock)
		if !overLimit {
			if s.addrs[addr]--; s.addrs[addr] <= 0 {
				delete(s.addrs, addr)
			}
		}
		s.mu.Unlock()
	}()

	q := r.URL.Query()
	id, token, key := q.Get("id"), q.Get("token"), q.Get("key")
	refuse := func(reason string) {
		s.log.Debug("signal: refused websocket", "remote", r.RemoteAddr, "id", id, "reason", reason)
		sock.closeWith(errorMessage(reason), websocket.StatusPolicyViolation, "refused")
	}
	switch {
	case id == "" || token == "" || key == "":
		refuse(reasonNoParams)
		return
	case key != s.cfg.Key:
		refuse(reasonBadKey)
		return
	case !ValidID(id):
		refuse(reasonBadID)
		return
	case len(token) > maxTokenLength:
		refuse(reasonBadToken)
		return
	case overLimit:
		refuse(reasonAddressLimit)
		return
	}
	var pr *proof
	if isNodeID(id) {
		// Checked here, outside the lock: a signature check takes a while.
		p, err := parseProof(token)
		if err == nil {
			err = p.verify(s.cfg.Key, id)
		}
		if err != nil {
			s.log.Debug("signal: bad proof of id", "id", id, "remote", r.RemoteAddr, "err", err)
			refuse(reasonBadProof)
			return
		}
		pr = &p
	}
	c, refusal := s.register(id, token, pr, sock)
	if c == nil {
		if refusal != "" {
			refuse(refusal)
		}
		return
	}
	defer s.unregister(c, sock)
	s.log.Debug("signal: client connected", "id", id, "remote", r.RemoteAddr)

	for {
		b, err := readMessage(ws)
		if errors.Is(err, errTooLarge) {
			s.refuseClient(c, sock, reasonTooLarge)
			return
		}
		if err != nil {
			s.log.Debug("signal: client disconnected", "id", id, "err", err)
			return
		}
		if !s.handle(c, sock, b) {
			return
		}
	}
}

var errTooLarge = errors.New("message too large")

// readMessage reads one message of at most MaxMessageSize bytes. Text and
// binary messages are both taken as JSON, as the reference does.
func readMessage(ws *websocket.Conn) ([]byte, error) {
	_, r, err := ws.Reader(context.Background())
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(r, MaxMessageSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxMessageSize {
		return nil, errTooLarge
	}
	return b, nil
}

// register adds a client for id or re-attaches sock to the existing one
// with the same token. pr is the token's checked proof of id, for ids
// that need one (isNodeID), else nil. It returns nil and the reason for
// an ERROR, or nil and "" when sock has already been told why (ID-TAKEN).
func (s *Server) register(id, token string, pr *proof, sock *socket) (*client, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ""
	}
	now := time.Now()
	c := s.clients[id]
	open, _ := encodeMessage(Message{Type: TypeOpen})
	switch {
	case c != nil && c.token == token:
		// The same client on a new socket: re-attach without OPEN, as the
		// reference does. The old socket can no longer speak for the id.
		// The token is the client's secret, so an old proof does.
		c.sock.closeWith(nil, websocket.StatusNormalClosure, "replaced by a new connection")
		c.sock = sock
		c.lastPing = now
	case pr != nil && !pr.fresh(now):
		return nil, reasonStaleProof
	case c != nil && pr != nil && pr.at > c.proofAt:
		// The key's holder with a newer proof, such as the node restarted:
		// it takes its id over at once rather than wait for the old session
		// to time out. An older proof (a replay) gets ID-TAKEN below.
		s.log.Debug("signal: id taken over by a newer proof", "id", id)
		c.sock.closeWith(nil, websocket.StatusNormalClosure, closeOusted)
		c.sock, c.token, c.proofAt, c.lastPing = sock, token, pr.at, now
		sock.send("", open, false)
	case c != nil:
		b, _ := encodeMessage(Message{Type: TypeIDTaken, Payload: json.RawMessage(`{"msg":"ID is taken"}`)})
		sock.closeWith(b, websocket.StatusPolicyViolation, "id taken")
		return nil, ""
	default:
		if len(s.clients) >= s.cfg.ConcurrentLimit {
			return nil, reasonLimit
		}
		c = &client{id: id, token: token, sock: sock, lastPing: now}
		if pr != nil {
			c.proofAt = pr.at
		}
		s.clients[id] = c
		sock.send("", open, false)
	}
	if q := s.queues[id]; q != nil {
		s.dropQueueLocked(id)
		for _, m := range q.msgs {
			// Held messages fit in an empty queue, whatever their senders'
			// shares; they count towards them from now on.
			if !sock.send(m.src, m.b, false) {
				s.notifyLocked(m.src, Message{Type: TypeExpire, Src: id, Dst: m.src})
			}
		}
	}
	return c, ""
}

// unregister forgets c if sock is still its socket (a re-attached client
// lives on). Like the reference, it tells no one.
func (s *Server) unregister(c *client, sock *socket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clients[c.id] == c && c.sock == sock {
		delete(s.clients, c.id)
	}
}

// refuseClient sends ERROR on sock, closes it and forgets c.
func (s *Server) refuseClient(c *client, sock *socket, reason string) {
	s.log.Debug("signal: closing client for bad input", "id", c.id, "reason", reason)
	s.mu.Lock()
	if s.clients[c.id] == c && c.sock == sock {
		delete(s.clients, c.id)
	}
	s.mu.Unlock()
	sock.closeWith(errorMessage(reason), websocket.StatusPolicyViolation, "bad input")
}

// handle acts on one message from c's socket sock and reports whether to
// keep reading.
func (s *Server) handle(c *client, sock *socket, b []byte) bool {
	m, err := DecodeMessage(b)
	if err != nil {
		s.refuseClient(c, sock, reasonBadMessage)
		return false
	}
	switch {
	case m.Type == TypeHeartbeat:
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.clients[c.id] != c || c.sock != sock {
			return false // dropped or replaced meanwhile
		}
		c.lastPing = time.Now()
		return true
	case m.Type == TypeLeave && m.Dst == "":
		// The reference treats this as the client leaving.
		s.mu.Lock()
		if s.clients[c.id] == c && c.sock == sock {
			delete(s.clients, c.id)
		}
		s.mu.Unlock()
		sock.closeWith(nil, websocket.StatusNormalClosure, "left")
		return false
	case !relayed(m.Type):
		s.refuseClient(c, sock, reasonBadType)
		return false
	case m.Dst == "":
		s.refuseClient(c, sock, reasonNoDst)
		return false
	case !ValidID(m.Dst):
		s.refuseClient(c, sock, reasonBadDst)
		return false
	}
	m.Src = c.id
	out := appendMessage(make([]byte, 0, len(b)+len(m.Src)+16), m)
	if len(out) > MaxMessageSize {
		s.refuseClient(c, sock, reasonTooLarge)
		return false
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clients[c.id] != c || c.sock != sock {
		return false // dropped or replaced meanwhile
	}
	s.routeLocked(m.Type, c.id, m.Dst, out)
	return true
}

// routeLocked delivers b (of type typ, from src) to dst, or holds it while
// dst is offline. A message that finds no room is not delivered and its
// sender gets EXPIRE at once, as for an offline dst whose messages were
// not picked up: dst stays, however hard others send to it.
func (s *Server) routeLocked(typ, src, dst string, b []byte) {
	notice := typ != TypeLeave && typ != TypeExpire // the others are not answered
	if d := s.clients[dst]; d != nil {
		if !d.sock.send(src, b, true) && notice {
			s.notifyLocked(src, Message{Type: TypeExpire, Src: dst, Dst: src})
		}
		return
	}
	if !notice {
		return
	}
	q := s.queues[dst]
	var l load
	if q != nil {
		l = q.senders[src]
	}
	var held, size int
	if q != nil {
		held, size = len(q.msgs), q.size
	}
	if !fairShare(l.n, held, 1, maxQueuedPerPeer) || !fairShare(l.size, size, len(b), maxQueuedPeerSize) ||
		s.queued >= maxQueuedMessages || s.queuedBytes+len(b) > maxQueuedBytes {
		// No room: tell the sender now rather than holding nothing for
		// ExpireTimeout.
		s.notifyLocked(src, Message{Type: TypeExpire, Src: dst, Dst: src})
		return
	}
	if q == nil {
		q = &queue{created: time.Now(), senders: make(map[string]load)}
		s.queues[dst] = q
	}
	q.msgs = append(q.msgs, queued{src: src, dst: dst, b: b})
	q.size += len(b)
	q.senders[src] = load{l.n + 1, l.size + len(b)}
	s.queued++
	s.queuedBytes += len(b)
}

// notifyLocked sends a message of the server's own to id, if connected and
// if it has room: a client that does not read what it is told misses it.
func (s *Server) notifyLocked(id string, m Message) {
	c := s.clients[id]
	if c == nil {
		return
	}
	b, err := encodeMessage(m)
	if err != nil {
		return
	}
	c.sock.send("", b, false)
}

func (s *Server) dropQueueLocked(id string) {
	q := s.queues[id]
	if q == nil {
		return
	}
	delete(s.queues, id)
	s.queued -= len(q.msgs)
	for _, m := range q.msgs {
		s.queuedBytes -= len(m.b)
	}
}

// dropSilent drops the clients that sent no HEARTBEAT for AliveTimeout.
func (s *Server) dropSilent(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, c := range s.clients {
		if now.Sub(c.lastPing) < s.cfg.AliveTimeout {
			continue
		}
		s.log.Debug("signal: dropping silent client", "id", id)
		delete(s.clients, id)
		s.dropQueueLocked(id)
		c.sock.closeWith(nil, websocket.StatusPolicyViolation, "no heartbeat")
	}
}

// expireQueues answers the senders of messages held longer than
// ExpireTimeout with EXPIRE (once per sender and destination) and drops
// the messages.
func (s *Server) expireQueues(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	type pair struct{ src, dst string }
	for id, q := range s.queues {
		if now.Sub(q.created) < s.cfg.ExpireTimeout {
			continue
		}
		s.dropQueueLocked(id)
		told := make(map[pair]bool)
		for _, m := range q.msgs {
			p := pair{m.src, m.dst}
			if told[p] {
				continue
			}
			told[p] = true
			s.notifyLocked(m.src, Message{Type: TypeExpire, Src: m.dst, Dst: m.src})
		}
	}
}

// socket is one WebSocket with its own writer goroutine, so that no client
// can block the server: messages go through a bounded queue, writes have
// a timeout, and a close has a deadline.
type socket struct {
	ws   *websocket.Conn
	nc   net.Conn // the hijacked connection under ws; nil in fuzz tests
	out  chan outgoing
	stop chan struct{} // closed once, by closeWith or abort
	done chan struct{} // closed when the writer has closed ws and ended

	mu      sync.Mutex // guards pending and senders; taken under Server.mu
	pending int        // bytes in out
	senders map[string]load

	once     sync.Once
	graceful bool // set before stop is closed; read by the writer after
	final    []byte
	code     websocket.StatusCode
	reason   string
}

// outgoing is a message waiting in a socket's queue, with the id of its
// sender ("" for the server's own).
type outgoing struct {
	src string
	b   []byte
}

func newSocket(ws *websocket.Conn, nc net.Conn) *socket {
	return &socket{
		ws:      ws,
		nc:      nc,
		out:     make(chan outgoing, sendQueueLen),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		senders: make(map[string]load),
	}
}

// send queues b from src without blocking and reports whether it fit.
// With share, src may not hold more than 1/maxSenderShare of the queue.
func (s *socket) send(src string, b []byte, share bool) bool {
	select {
	case <-s.stop:
		return false
	default:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending+len(b) > sendQueueBytes {
		return false
	}
	l := s.senders[src]
	if share && (!fairShare(l.n, len(s.out), 1, sendQueueLen) || !fairShare(l.size, s.pending, len(b), sendQueueBytes)) {
		return false
	}
	select {
	case s.out <- outgoing{src, b}:
		s.pending += len(b)
		s.senders[src] = load{l.n + 1, l.size + len(b)}
		return true
	default:
		return false
	}
}

// fairShare reports whether a sender that holds own (messages or bytes)
// of a queue of the given capacity, holding used in all, may add n more:
// it may hold at most 1/maxSenderShare of the room the other senders
// leave. Alone, a sender gets a quarter of the queue; k senders flooding
// it together leave about 3/(k+3) of it free, so a few ids opened by one
// attacker cannot crowd out everyone else, as a fixed quarter each would.
func fairShare(own, used, n, capacity int) bool {
	return maxSenderShare*(own+n) <= capacity-used+own
}

// took accounts for m having been taken from the queue.
func (s *socket) took(m outgoing) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending -= len(m.b)
	l := s.senders[m.src]
	if l.n <= 1 {
		delete(s.senders, m.src)
		return
	}
	s.senders[m.src] = load{l.n - 1, l.size - len(m.b)}
}

// closeWith asks the writer to write what is queued, then final (if not
// nil), then to close with the close handshake, all within closeTimeout.
func (s *socket) closeWith(final []byte, code websocket.StatusCode, reason string) {
	s.once.Do(func() {
		s.graceful, s.final, s.code, s.reason = true, final, code, reason
		close(s.stop)
	})
}

// abort closes the connection at once, also unblocking a write in
// progress, unless a graceful close was asked for already.
func (s *socket) abort() {
	first := false
	s.once.Do(func() {
		first = true
		close(s.stop)
	})
	if first {
		s.ws.CloseNow()
	}
}

// hangUp closes the connection at once, even during a graceful close. It
// closes the connection under the WebSocket, as the library's CloseNow
// waits for a close handshake already under way.
func (s *socket) hangUp() {
	s.once.Do(func() { close(s.stop) })
	if s.nc != nil {
		s.nc.Close()
		return
	}
	s.ws.CloseNow()
}

func (s *socket) writeLoop() {
	defer close(s.done)
	for {
		select {
		case m := <-s.out:
			s.took(m)
			if s.write(m.b) != nil {
				s.ws.CloseNow()
				return
			}
		case <-s.stop:
			if s.graceful {
				// The close handshake reads until the peer's close frame,
				// first skipping the rest of any message the peer started:
				// without a deadline, a peer that announced a huge frame and
				// went quiet would hold the connection for ever.
				if s.nc != nil {
					s.nc.SetDeadline(time.Now().Add(closeTimeout))
				}
				if s.flush() == nil {
					s.ws.Close(s.code, s.reason)
				}
			}
			s.ws.CloseNow()
			return
		}
	}
}

// flush writes what is queued and then the final message.
func (s *socket) flush() error {
	for {
		select {
		case m := <-s.out:
			s.took(m)
			if err := s.write(m.b); err != nil {
				return err
			}
		default:
			if s.final == nil {
				return nil
			}
			return s.write(s.final)
		}
	}
}

func (s *socket) write(b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	return s.ws.Write(ctx, websocket.MessageText, b)
}

// hijackRecorder passes the WebSocket handshake through and keeps the
// connection it hijacks, so that the server can put a deadline on it and
// close it whatever state the WebSocket library is in.
type hijackRecorder struct {
	http.ResponseWriter
	conn net.Conn
}

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	h.conn = c
	return c, brw, err
}

// Unwrap lets http.ResponseController find the writer's other methods.
func (h *hijackRecorder) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// addressKey is what PerAddressLimit counts by: the IP of remote (a
// host:port), or its /64 for IPv6, where one host often has a whole /64.
func addressKey(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.WithZone("").Prefix(64)
	return p.String()
}

// connsPerAddress is how many TCP connections Serve accepts at once from
// one address: its WebSockets and as many plain requests or connections
// waiting to become one.
func connsPerAddress(perAddressLimit int) int { return 4 * perAddressLimit }

// addrLimitListener closes at once each connection from an address (see
// addressKey) that already has limit open. The HTTP server's timeouts end
// idle and slow connections, but only after seconds: without this, one
// host opening connections faster than that could hold every descriptor.
type addrLimitListener struct {
	net.Listener
	limit int
	log   *slog.Logger

	mu    sync.Mutex
	conns map[string]int // open connections by addressKey
}

func (l *addrLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := addressKey(c.RemoteAddr().String())
		l.mu.Lock()
		over := l.conns[key] >= l.limit
		if !over {
			l.conns[key]++
		}
		l.mu.Unlock()
		if !over {
			return &addrLimitConn{Conn: c, l: l, key: key}, nil
		}
		l.log.Debug("signal: too many connections from one address", "remote", c.RemoteAddr())
		c.Close()
	}
}

// addrLimitConn gives its slot back when closed, also after a hijack.
type addrLimitConn struct {
	net.Conn
	l    *addrLimitListener
	key  string
	once sync.Once
}

// CloseWrite passes a half-close through, which net/http uses to end a
// connection gracefully.
func (c *addrLimitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *addrLimitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.conns[c.key]--; c.l.conns[c.key] <= 0 {
			delete(c.l.conns, c.key)
		}
		c.l.mu.Unlock()
	})
	return err
}
