package signal

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
)

const (
	// aliveInterval and expireInterval are how often the server looks for
	// silent clients and for stale queues, as the reference server does.
	aliveInterval  = 300 * time.Millisecond
	expireInterval = time.Second

	// sendQueueLen and sendQueueBytes bound the messages waiting to be
	// written to one socket; a client that lets them fill up is dropped, so
	// a slow reader never blocks the server or grows its memory.
	sendQueueLen   = 256
	sendQueueBytes = 1 << 20
	// writeTimeout bounds one WebSocket write; a client that cannot take a
	// message in that time is dropped.
	writeTimeout = 10 * time.Second

	// Bounds of the messages held for offline peers. Past them a message is
	// answered with EXPIRE at once instead of being held.
	maxQueuedPerPeer  = 128
	maxQueuedPeerSize = 512 << 10 // bytes, so a full queue fits in sendQueueBytes
	maxQueuedMessages = 10000
	maxQueuedBytes    = 32 << 20

	// shutdownGrace is how long shutdown waits for close handshakes
	// before it hangs up.
	shutdownGrace = 2 * time.Second

	// maxTokenLength bounds the client token; PeerJS tokens are ~11 chars.
	maxTokenLength = 256
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
	handlers    sync.WaitGroup       // WebSocket handlers; Add only under mu while !closed
}

// client is one registered id.
type client struct {
	id, token string
	sock      *socket   // the current socket; replaced on re-attach
	lastPing  time.Time // last HEARTBEAT (or registration)
}

// queue holds messages for an id that is not connected.
type queue struct {
	created time.Time // the reference expires a queue this long after it was made
	msgs    []queued
	size    int // bytes in msgs
}

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
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	err := s.maintain(ctx, serveErr)

	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Shutdown(shutCtx) // hijacked WebSockets are not waited for; shutdown closes them
	cancel()
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
	// Some peers do not answer the close handshake: hang up on them.
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
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
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
	sock := newSocket(ws)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ws.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	s.sockets[sock] = struct{}{}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()
	go sock.writeLoop()
	defer func() {
		sock.abort() // a no-op if a graceful close was asked for
		<-sock.done
		s.mu.Lock()
		delete(s.sockets, sock)
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
	}
	c, refusal := s.register(id, token, sock)
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
// with the same token. It returns nil and the reason for an ERROR, or nil
// and "" when sock has already been told why (ID-TAKEN).
func (s *Server) register(id, token string, sock *socket) (*client, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ""
	}
	now := time.Now()
	c := s.clients[id]
	switch {
	case c != nil && c.token != token:
		b, _ := encodeMessage(Message{Type: TypeIDTaken, Payload: json.RawMessage(`{"msg":"ID is taken"}`)})
		sock.closeWith(b, websocket.StatusPolicyViolation, "id taken")
		return nil, ""
	case c != nil:
		// The same client on a new socket: re-attach without OPEN, as the
		// reference does. The old socket can no longer speak for the id.
		c.sock.closeWith(nil, websocket.StatusNormalClosure, "replaced by a new connection")
		c.sock = sock
		c.lastPing = now
	default:
		if len(s.clients) >= s.cfg.ConcurrentLimit {
			return nil, reasonLimit
		}
		c = &client{id: id, token: token, sock: sock, lastPing: now}
		s.clients[id] = c
		open, _ := encodeMessage(Message{Type: TypeOpen})
		sock.send(open)
	}
	if q := s.queues[id]; q != nil {
		s.dropQueueLocked(id)
		for _, m := range q.msgs {
			s.sendLocked(c, m.b)
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
// dst is offline.
func (s *Server) routeLocked(typ, src, dst string, b []byte) {
	if d := s.clients[dst]; d != nil {
		if !s.sendLocked(d, b) {
			// As the reference does when a send fails: the sender
			// learns that dst is gone.
			s.notifyLocked(src, Message{Type: TypeLeave, Src: dst, Dst: src})
		}
		return
	}
	if typ == TypeLeave || typ == TypeExpire {
		return
	}
	q := s.queues[dst]
	if (q != nil && (len(q.msgs) >= maxQueuedPerPeer || q.size+len(b) > maxQueuedPeerSize)) ||
		s.queued >= maxQueuedMessages || s.queuedBytes+len(b) > maxQueuedBytes {
		// No room: tell the sender now rather than holding nothing for
		// ExpireTimeout.
		s.notifyLocked(src, Message{Type: TypeExpire, Src: dst, Dst: src})
		return
	}
	if q == nil {
		q = &queue{created: time.Now()}
		s.queues[dst] = q
	}
	q.msgs = append(q.msgs, queued{src: src, dst: dst, b: b})
	q.size += len(b)
	s.queued++
	s.queuedBytes += len(b)
}

// sendLocked queues b on c's socket. If the socket cannot take it, c is
// dropped and sendLocked reports false.
func (s *Server) sendLocked(c *client, b []byte) bool {
	if c.sock.send(b) {
		return true
	}
	s.log.Warn("signal: dropping client that does not keep up", "id", c.id)
	if s.clients[c.id] == c {
		delete(s.clients, c.id)
	}
	c.sock.abort()
	return false
}

// notifyLocked sends a message of the server's own to id, if connected.
func (s *Server) notifyLocked(id string, m Message) {
	c := s.clients[id]
	if c == nil {
		return
	}
	b, err := encodeMessage(m)
	if err != nil {
		return
	}
	s.sendLocked(c, b)
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
// can block the server: messages go through a bounded queue, and writes
// have a timeout.
type socket struct {
	ws      *websocket.Conn
	out     chan []byte
	pending atomic.Int64  // bytes in out; added to under Server.mu only
	stop    chan struct{} // closed once, by closeWith or abort
	done    chan struct{} // closed when the writer has closed ws and ended

	once     sync.Once
	graceful bool // set before stop is closed; read by the writer after
	final    []byte
	code     websocket.StatusCode
	reason   string
}

func newSocket(ws *websocket.Conn) *socket {
	return &socket{
		ws:   ws,
		out:  make(chan []byte, sendQueueLen),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
}

// send queues b without blocking and reports whether it fit. Callers hold
// Server.mu, so that the check of pending and the add are one step.
func (s *socket) send(b []byte) bool {
	select {
	case <-s.stop:
		return false
	default:
	}
	if s.pending.Load()+int64(len(b)) > sendQueueBytes {
		return false
	}
	select {
	case s.out <- b:
		s.pending.Add(int64(len(b)))
		return true
	default:
		return false
	}
}

// took accounts for b having been taken from the queue.
func (s *socket) took(b []byte) {
	s.pending.Add(-int64(len(b)))
}

// closeWith asks the writer to write what is queued, then final (if not
// nil), then to close with the close handshake.
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

// hangUp closes the connection at once, even during a graceful close.
func (s *socket) hangUp() {
	s.once.Do(func() { close(s.stop) })
	s.ws.CloseNow()
}

func (s *socket) writeLoop() {
	defer close(s.done)
	for {
		select {
		case b := <-s.out:
			s.took(b)
			if s.write(b) != nil {
				s.ws.CloseNow()
				return
			}
		case <-s.stop:
			if s.graceful && s.flush() == nil {
				s.ws.Close(s.code, s.reason)
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
		case b := <-s.out:
			s.took(b)
			if err := s.write(b); err != nil {
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
