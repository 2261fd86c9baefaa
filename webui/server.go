package webui

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"

	"github.com/catnest/catnest/internal/loopback"
	"github.com/catnest/catnest/mesh"
)

// DefaultAddr is where the UI listens unless told otherwise: loopback only,
// so no token is needed.
const DefaultAddr = "127.0.0.1:7070"

// Node is what the web UI needs of the local mesh node.
type Node interface {
	ID() mesh.ID
	Name() string
	Peers() []mesh.PeerInfo
	// SubscribePeers returns a channel of link changes and a cancel func. The channel is buffered and
	// events may be dropped if the reader falls behind, so on each event re-read Peers().
	SubscribePeers() (<-chan mesh.PeerEvent, func())
	// Directory lists the online nodes this node knows, itself included.
	Directory() []mesh.Record
	// Lookup returns the directory record of one online node: the names
	// of authors and owners, without a copy of the whole directory.
	Lookup(id mesh.ID) (mesh.Record, bool)
	// SubscribeDirectory returns a channel that receives a value whenever
	// the directory changes, and a cancel func. Values are coalesced and may
	// be dropped when the reader is slow, so on each one re-read Directory().
	SubscribeDirectory() (<-chan struct{}, func())
}

// Config configures a Server.
type Config struct {
	// Addr is the listen address, for cmd/catnest and for the Host check:
	// a loopback host accepts only loopback Host headers. Default DefaultAddr.
	Addr string
	// Token is required when Addr is not loopback; when set, every request
	// must present it or the API key (see the package doc). Use a long
	// random string.
	Token string
	// APIKey lets scripts in: a request that carries it as
	// "Authorization: Bearer KEY" or "X-API-Key: KEY" needs neither the
	// token nor an Origin. Browsers keep the Origin rules, which stop
	// cross-site requests that ride on the user's cookies; a key in a
	// header is never sent by a browser on its own. Empty: no key, and
	// only the node's own page can change anything. cmd/catnest keeps it
	// in <data>/api.key (LoadOrCreateAPIKey).
	APIKey string
	// Version is shown in the UI and /api/node. Empty means the version of
	// the main module from the build info.
	Version string
	// Logger receives request errors and stream starts and ends. Nil discards.
	Logger *slog.Logger
	// Chat is the chat service behind /api/channels and the "chat" events.
	// Nil leaves chat out: its endpoints answer 404 and the UI shows no
	// Chat view.
	Chat Chat
	// Files is the shards service behind /api/shards, /api/files and the
	// "shards" events. Nil leaves file sharing out: its endpoints answer
	// 404 and the UI shows no Files view.
	Files Files
	// Music is the music service behind /api/music and the "music"
	// events. Nil leaves music out: its endpoints answer 404 and the UI
	// shows no Music view.
	Music Music
	// Plugins is the plugins service behind /api/plugins and the
	// "plugins" events. Nil leaves plugins out: its endpoints answer 404
	// and the UI shows no Plugins view and runs no plugin.
	Plugins Plugins
	// Members resolves a push's "channel" to its online members. Nil:
	// pushes take only a list of node ids.
	Members ChannelMembers
	// Calls is the call service behind /api/calls and the Call view. Nil
	// leaves calls out: its endpoints answer 404 and the UI shows no Call
	// view.
	Calls Calls
	// Subsonic answers /rest/ for Subsonic music apps, which log in with
	// its own user and password rather than the token (see
	// subsonicFirst), and backs /api/subsonic. Nil leaves it out.
	Subsonic Subsonic
	// Live is the live rooms service behind /api/live and the "live"
	// events. Nil leaves live rooms out: its endpoints answer 404 and the
	// UI shows no Live view.
	Live Live
}

// DefaultConfig returns the configuration of a personal node's UI.
func DefaultConfig() Config {
	return Config{Addr: DefaultAddr}
}

// timing holds the intervals of the event stream; tests shorten them.
type timing struct {
	coalesce time.Duration // wait this long after a change for more before sending
	// coalesceDirectory is coalesce for the directory feed: a node coming
	// or going changes several records in a burst (its own and its
	// neighbours'), and each snapshot is the whole directory.
	coalesceDirectory time.Duration
	refresh           time.Duration // resend snapshots this often, so RTT changes show
	keepAlive         time.Duration // send a comment line this often
	retry             time.Duration // tell EventSource to reconnect after this long
	write             time.Duration // give up on a client that takes longer to accept a write
}

var defaultTiming = timing{
	coalesce:          100 * time.Millisecond,
	coalesceDirectory: 200 * time.Millisecond,
	refresh:           5 * time.Second,
	keepAlive:         15 * time.Second,
	retry:             2 * time.Second,
	write:             10 * time.Second,
}

// Server is the web UI of one node. It is safe for concurrent use.
type Server struct {
	cfg      Config
	node     Node
	log      *slog.Logger
	apiKey   *secret // cfg.APIKey; nil when there is none
	loopback bool    // cfg.Addr is a loopback address: check Host
	port     string  // port of cfg.Addr, used when the connection's is unknown
	timing   timing
	handler  http.Handler
	etags    map[string]string // static file name -> ETag
	plugins  *pluginRuntime    // capabilities and tried plugins
}

//go:embed static
var staticFiles embed.FS

// New checks cfg and returns a Server for node.
func New(cfg Config, node Node) (*Server, error) {
	if node == nil {
		return nil, errors.New("webui: nil node")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("webui: address %q: %w", cfg.Addr, err)
	}
	s := &Server{
		cfg:      cfg,
		node:     node,
		log:      cfg.Logger,
		loopback: loopback.IsHost(host),
		port:     port,
		timing:   defaultTiming,
		plugins:  newPluginRuntime(),
	}
	if !s.loopback && cfg.Token == "" {
		return nil, fmt.Errorf("%w (address %s)", ErrNoToken, cfg.Addr)
	}
	if cfg.APIKey != "" {
		if err := checkAPIKey(cfg.APIKey); err != nil {
			return nil, fmt.Errorf("webui: %w", err)
		}
		s.apiKey = newSecret(cfg.APIKey)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.cfg.Version == "" {
		s.cfg.Version = buildVersion()
	}
	if s.etags, err = hashFiles(staticFS()); err != nil {
		return nil, fmt.Errorf("webui: static files: %w", err)
	}
	s.handler = s.routes()
	return s, nil
}

// Handler returns the server's routes with all security checks applied.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves HTTP on ln until ctx ends, then shuts down gracefully: event
// streams are closed, other requests get up to five seconds to finish. It
// closes ln. It returns nil after a shutdown caused by ctx, or the error that
// stopped it otherwise.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// Requests' contexts derive from base, so cancelling it ends every
	// event stream; http.Server.Shutdown alone would wait for them forever.
	base, cancelBase := context.WithCancel(context.Background())
	defer cancelBase()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	s.log.Info("web UI listening", "url", "http://"+ln.Addr().String()+"/")
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("webui: serve: %w", err)
	case <-ctx.Done():
	}
	cancelBase()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		s.log.Warn("web UI shutdown timed out; closing connections", "err", err)
		srv.Close()
	}
	<-errc // http.ErrServerClosed
	return nil
}

// routes builds the handler: the API route table and the static files,
// behind the security checks.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	byPath := map[string][]route{}
	var paths []string
	for _, r := range s.apiRoutes() {
		if _, ok := byPath[r.path]; !ok {
			paths = append(paths, r.path)
		}
		byPath[r.path] = append(byPath[r.path], r)
	}
	for _, p := range paths {
		mux.Handle(p, methodHandler(byPath[p]))
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})
	mux.Handle("/", s.staticHandler())
	// Subsonic apps and WHIP/WHEP clients carry their own credentials
	// (Subsonic's login, the room's bearer token); everything else goes
	// through the UI's checks.
	return s.checkHost(s.subsonicFirst(s.liveBypass(securityHeaders(mux), s.checkAPIKey(s.checkToken(securityHeaders(mux))),
		s.checkAPIKey(s.checkToken(checkOrigin(securityHeaders(mux)))))))
}

// route is one API endpoint. path is a http.ServeMux pattern without a
// method; a path may have several routes with different methods.
type route struct {
	method string
	path   string
	handle http.HandlerFunc
}

// methodHandler dispatches on the method so that a wrong method gets a JSON
// 405 (the mux's own 405 is plain text). GET routes also answer HEAD.
func methodHandler(routes []route) http.Handler {
	var allow []string
	for _, r := range routes {
		allow = append(allow, r.method)
		if r.method == http.MethodGet {
			allow = append(allow, http.MethodHead)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := r.Method
		if method == http.MethodHead {
			method = http.MethodGet
		}
		for _, rt := range routes {
			if rt.method == method {
				rt.handle(w, r)
				return
			}
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
	})
}

// staticFS is the embedded UI with the static/ prefix removed.
func staticFS() fs.FS {
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err) // "static" is a valid path; fs.Sub cannot fail
	}
	return sub
}

// hashFiles computes an ETag for every file, so browsers can revalidate
// cheaply (embedded files have no modification time).
func hashFiles(fsys fs.FS) (map[string]string, error) {
	etags := map[string]string{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		etags["/"+p] = `"` + hex.EncodeToString(sum[:12]) + `"`
		return nil
	})
	return etags, err
}

func (s *Server) staticHandler() http.Handler {
	files := http.FileServerFS(staticFS())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := r.URL.Path
		if strings.HasSuffix(name, "/") {
			name += "index.html"
		}
		if etag, ok := s.etags[name]; ok {
			w.Header().Set("ETag", etag)
		}
		// Revalidate every time: the files change with the binary.
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// contentSecurityPolicy lets the page use only its own scripts, styles and
// connections, and keeps it out of frames.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; " +
	"form-action 'self'; frame-ancestors 'none'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// checkHost rejects, on a loopback server, requests whose Host is not a
// loopback name with the port the request arrived on (DNS rebinding).
func (s *Server) checkHost(next http.Handler) http.Handler {
	if !s.loopback {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hostAllowed(r) {
			s.log.Warn("web UI: request with foreign Host refused", "host", r.Host, "remote", r.RemoteAddr)
			writeError(w, http.StatusForbidden, "host not allowed")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) hostAllowed(r *http.Request) bool {
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		// No port: the default port of the scheme.
		host, port = r.Host, "80"
		if r.TLS != nil {
			port = "443"
		}
	}
	if !loopback.IsHost(host) {
		return false
	}
	want := s.port
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if _, p, err := net.SplitHostPort(a.String()); err == nil {
			want = p
		}
	}
	if want == "0" { // unknown: listening on a random port, and no connection address
		return true
	}
	return port == want
}

// tokenCookie is the cookie that carries the token after a ?token= request.
const tokenCookie = "catnest_token"

// checkAPIKey marks a request that presents the API key (see byScript),
// and refuses one that presents a wrong key. A Bearer value that is not the
// key may be the token, which checkToken judges.
func (s *Server) checkAPIKey(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, inKeyHeader, ok := presentedKey(r)
		switch {
		case !ok:
		case s.apiKey.matches(key):
			r = r.WithContext(context.WithValue(r.Context(), scriptKey{}, true))
		case !inKeyHeader && s.cfg.Token != "":
		default:
			s.log.Warn("web UI: request with a wrong API key refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="catnest"`)
			writeError(w, http.StatusUnauthorized, "bad API key: use the key in "+APIKeyFile+" in the node's data dir, which catnest serve prints")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// checkToken enforces cfg.Token when it is set. A request with the API key
// needs no token: both are secrets of the node's owner, and scripts should
// not need two.
func (s *Server) checkToken(next http.Handler) http.Handler {
	if s.cfg.Token == "" {
		return next
	}
	token := newSecret(s.cfg.Token)
	valid := token.matches
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if byScript(r) {
			next.ServeHTTP(w, r)
			return
		}
		if auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && valid(auth) {
			next.ServeHTTP(w, r)
			return
		}
		if q := r.URL.Query(); q.Has("token") {
			if !valid(q.Get("token")) {
				writeError(w, http.StatusUnauthorized, "bad token")
				return
			}
			http.SetCookie(w, &http.Cookie{
				Name:     tokenCookie,
				Value:    s.cfg.Token,
				Path:     "/",
				HttpOnly: true,
				Secure:   r.TLS != nil,
				SameSite: http.SameSiteStrictMode,
			})
			if r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/api/") {
				// A page load: drop the token from the address bar.
				q.Del("token")
				u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
				http.Redirect(w, r, u.String(), http.StatusSeeOther)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		if c, err := r.Cookie(tokenCookie); err == nil && valid(c.Value) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="catnest"`)
		writeError(w, http.StatusUnauthorized, "token required: open the URL with ?token=… that catnest printed")
	})
}

// checkOrigin makes state-changing requests prove they come from our own
// page (CSRF): Origin equal to the request's origin, or, without Origin,
// Sec-Fetch-Site: same-origin. A script with the API key may send no
// Origin; one that sends a foreign Origin is refused all the same, as a
// browser would be.
func checkOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			next.ServeHTTP(w, r)
			return
		}
		switch {
		case sameOrigin(r), byScript(r) && r.Header.Get("Origin") == "":
		case r.Header.Get("Origin") != "":
			writeError(w, http.StatusForbidden, "cross-origin request refused")
			return
		default:
			writeError(w, http.StatusForbidden, "request without Origin refused: scripts send the API key ("+APIKeyHeader+": KEY, from "+APIKeyFile+" in the node's data dir)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sameOrigin reports whether a browser says that r comes from our own page:
// Origin equal to the request's origin, or no Origin and Sec-Fetch-Site:
// same-origin (browsers send no Origin on a same-origin GET).
func sameOrigin(r *http.Request) bool {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		return strings.EqualFold(origin, scheme+"://"+r.Host)
	}
	return r.Header.Get("Sec-Fetch-Site") == "same-origin"
}

// buildVersion is the main module's version from the build info.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
