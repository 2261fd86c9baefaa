package subsonic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"time"
	"unicode"

	"go.etcd.io/bbolt"
	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/pubsub"
	"github.com/catnest/catnest/music"
	"github.com/catnest/catnest/shards"
)

// Music is what the API needs of the music service (*music.Service):
// the mesh-wide library, a track's bytes, covers and lyrics. Its methods
// are called from request goroutines, several at a time.
type Music interface {
	// Tracks lists the library; banned tracks are left out when banned
	// is false.
	Tracks(ctx context.Context, banned bool) ([]music.Track, error)
	// Stream returns a seekable reader over a track, local or remote
	// (music.ErrUnknown, music.ErrBanned).
	Stream(ctx context.Context, id shards.MD5) (shards.Content, error)
	// Cover returns a track's cover (music.ErrNoCover when none).
	Cover(ctx context.Context, id shards.MD5, thumb bool) (mimeType string, data []byte, err error)
	// Lyrics returns a track's lyrics (music.ErrNoLyrics when none).
	Lyrics(ctx context.Context, id shards.MD5) (music.Lyrics, error)
	// SubscribeMusic tells when the library changed.
	SubscribeMusic() *pubsub.Subscription[music.Event]
}

var _ Music = (*music.Service)(nil)

// Config configures a Service.
type Config struct {
	Music Music
	// DB is the node's database; the service owns the bucket "subsonic".
	DB *bbolt.DB
	// Version is the serverVersion answered; empty: the main module's
	// version from the build info.
	Version string
	// LoginRate and LoginBurst bound the failed logins of one client
	// address: after LoginBurst failures, one more per 1/LoginRate.
	LoginRate  rate.Limit
	LoginBurst int
	Logger     *slog.Logger
}

// DefaultConfig returns the settings of a real node; Music and DB are
// the caller's.
func DefaultConfig() Config {
	return Config{
		// A user who mistypes the password a few times is not held up;
		// guessing runs at one password a second.
		LoginRate:  1,
		LoginBurst: 10,
	}
}

// Service answers the Subsonic API. It is an http.Handler for /rest/.
type Service struct {
	cfg      Config
	music    Music
	store    *store
	log      *slog.Logger
	musicSub *pubsub.Subscription[music.Event]
	methods  map[string]method
	events   pubsub.Topic[[]NowPlaying]
	covers   *coverCache

	libMu sync.Mutex
	lib   *library

	limMu    sync.Mutex
	limiters map[string]*rate.Limiter // by clientKey
	overflow *rate.Limiter            // of the clients beyond maxLimiters
}

// method answers one API method: a response to write, or an error. A
// method that writes its own answer (stream, getCoverArt) returns nil
// and nil.
type method func(ctx context.Context, w http.ResponseWriter, r *http.Request, p params) (*response, error)

// maxLimiters bounds the clients whose failed logins are counted apart
// (see limiter).
const maxLimiters = 4096

// New makes a service from cfg and loads what it keeps in the DB. Close
// it when done.
func New(cfg Config) (*Service, error) {
	if cfg.Music == nil || cfg.DB == nil {
		return nil, errors.New("subsonic: New needs Music and a DB")
	}
	d := DefaultConfig()
	if cfg.LoginRate <= 0 {
		cfg.LoginRate = d.LoginRate
	}
	if cfg.LoginBurst <= 0 {
		cfg.LoginBurst = d.LoginBurst
	}
	if cfg.Version == "" {
		cfg.Version = "(devel)"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			cfg.Version = bi.Main.Version
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := openStore(cfg.DB)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, music: cfg.Music, store: st, log: log.With("svc", "subsonic"),
		limiters: map[string]*rate.Limiter{}, covers: newCoverCache(64)}
	s.methods = s.routes()
	// Subscribed before the first index is built, so that no change is
	// missed between the two.
	s.musicSub = cfg.Music.SubscribeMusic()
	return s, nil
}

// Close ends the service's subscription to the music service.
func (s *Service) Close() { s.musicSub.Close() }

// Credentials returns the Subsonic user and whether a password is set.
func (s *Service) Credentials(ctx context.Context) (user string, passwordSet bool, err error) {
	u, p := s.store.credentials()
	return u, p != "", nil
}

// SetCredentials sets the user and password that Subsonic apps log in
// with; both empty turns the API off (every request is refused).
// ErrBadCredentials when one is empty and not the other, too long, or
// holds control characters.
func (s *Service) SetCredentials(ctx context.Context, user, password string) error {
	if err := checkCredentials(user, password); err != nil {
		return err
	}
	return s.store.setCredentials(user, password)
}

func checkCredentials(user, password string) error {
	switch {
	case user == "" && password == "":
		return nil
	case user == "" || password == "":
		return fmt.Errorf("%w: set both a user and a password (or neither, to turn the Subsonic API off)", ErrBadCredentials)
	case len(user) > maxUserLen:
		return fmt.Errorf("%w: user name of %d bytes, at most %d", ErrBadCredentials, len(user), maxUserLen)
	case len(password) > maxPasswordLen:
		return fmt.Errorf("%w: password of %d bytes, at most %d", ErrBadCredentials, len(password), maxPasswordLen)
	case strings.IndexFunc(user+password, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: control characters", ErrBadCredentials)
	case strings.TrimSpace(user) != user:
		return fmt.Errorf("%w: the user name starts or ends with a space", ErrBadCredentials)
	}
	return nil
}

// NowPlaying lists what Subsonic apps said they are playing, newest
// first.
func (s *Service) NowPlaying(ctx context.Context) ([]NowPlaying, error) {
	return s.store.nowPlaying(time.Now()), nil
}

// SubscribeNowPlaying returns a subscription to the now-playing list:
// each value is the whole list after a change. Close it when done.
func (s *Service) SubscribeNowPlaying() *pubsub.Subscription[[]NowPlaying] {
	return s.events.Subscribe(16)
}

// ServeHTTP answers /rest/{method} and /rest/{method}.view (and
// /rest/rest/{method}…, for an app given the /rest address).
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Web players (Feishin, Airsonic Refix) call from their own origin;
	// every request carries its credentials, never a cookie, so any
	// origin may read the answers.
	h.Set("Access-Control-Allow-Origin", "*")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, POST, HEAD, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Content-Type, Range")
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	f := format("xml")
	if strings.EqualFold(r.URL.Query().Get("f"), "json") {
		f = "json"
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost:
	default:
		h.Set("Allow", "GET, HEAD, POST, OPTIONS")
		writeError(w, f, s.cfg.Version, errorf(codeGeneric, "method %s not allowed", r.Method))
		return
	}
	p, e := readParams(w, r)
	if e != nil {
		writeError(w, f, s.cfg.Version, e)
		return
	}
	f = p.format()
	if e := s.login(r, p); e != nil {
		writeError(w, f, s.cfg.Version, e)
		return
	}
	name, _ := strings.CutPrefix(r.URL.Path, "/rest/")
	// Apps add /rest/ to the server address they are given, so an app
	// given http://HOST:7070/rest asks /rest/rest/ping.view.
	name, _ = strings.CutPrefix(name, "rest/")
	name = strings.TrimSuffix(name, ".view")
	m, ok := s.methods[strings.ToLower(name)]
	if !ok {
		writeError(w, f, s.cfg.Version, errorf(codeGeneric, "unknown method %.60q", name))
		return
	}
	resp, err := m(r.Context(), w, r, p)
	if err != nil {
		var e *apiError
		if !errors.As(err, &e) {
			if r.Context().Err() != nil {
				return // the client is gone
			}
			s.log.Warn("subsonic: request failed", "method", name, "err", err)
			e = errorf(codeGeneric, "%v", err)
		}
		writeError(w, f, s.cfg.Version, e)
		return
	}
	if resp != nil {
		write(w, f, s.cfg.Version, resp)
	}
}

// login authenticates a request, refusing at once a client address that
// failed too often lately.
func (s *Service) login(r *http.Request, p params) *apiError {
	host := clientKey(r.RemoteAddr)
	lim := s.limiter(host)
	if lim.Tokens() < 1 {
		return errorf(codeWrongCreds, "too many failed logins from %s: try again in a few seconds", host)
	}
	user, password := s.store.credentials()
	e := authenticate(p, user, password)
	if e != nil && e.code == codeWrongCreds {
		lim.Allow()
		s.log.Info("subsonic: failed login", "remote", r.RemoteAddr, "user", p.str("u"))
	}
	return e
}

// clientKey is what failed logins are counted by: the client's IPv4
// address, or the /64 of its IPv6 address (one host picks any address of
// its /64 at will, so counting addresses would give it a fresh allowance
// with each).
func clientKey(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	if ip = ip.Unmap(); ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// limiter returns the failed-login limiter of a client. When maxLimiters
// clients are counted, those with no failure left to forgive make room;
// if none has, new clients share one limiter, so that many addresses
// never buy fresh allowances (nor wipe the counts of the others).
func (s *Service) limiter(key string) *rate.Limiter {
	s.limMu.Lock()
	defer s.limMu.Unlock()
	if lim := s.limiters[key]; lim != nil {
		return lim
	}
	if len(s.limiters) >= maxLimiters {
		burst := float64(s.cfg.LoginBurst)
		maps.DeleteFunc(s.limiters, func(_ string, l *rate.Limiter) bool { return l.Tokens() >= burst })
	}
	if len(s.limiters) >= maxLimiters {
		if s.overflow == nil {
			s.overflow = rate.NewLimiter(s.cfg.LoginRate, s.cfg.LoginBurst)
		}
		return s.overflow
	}
	lim := rate.NewLimiter(s.cfg.LoginRate, s.cfg.LoginBurst)
	s.limiters[key] = lim
	return lim
}

// libraryParam reads the required parameter name and the library, as
// every method on one item of the library starts.
func (s *Service) libraryParam(ctx context.Context, p params, name string) (string, *library, error) {
	id, e := p.required(name)
	if e != nil {
		return "", nil, e
	}
	lib, err := s.library(ctx)
	if err != nil {
		return "", nil, err
	}
	return id, lib, nil
}

// songParam finds the song named by the required parameter id; it
// returns the id as asked, which errors about the song name.
func (s *Service) songParam(ctx context.Context, p params) (string, *libSong, error) {
	id, lib, err := s.libraryParam(ctx, p, "id")
	if err != nil {
		return "", nil, err
	}
	so, e := lib.song(id)
	if e != nil {
		return "", nil, e
	}
	return id, so, nil
}

// lookupSong finds a song of the library by id (70 when none).
func (l *library) song(id string) (*libSong, *apiError) {
	if s := l.songs[strings.ToLower(id)]; s != nil {
		return s, nil
	}
	return nil, notFound("song", id)
}

// musicErr maps the music service's errors: a track gone or banned is
// not found.
func musicErr(err error, id string) error {
	switch {
	case errors.Is(err, music.ErrUnknown), errors.Is(err, music.ErrBanned),
		errors.Is(err, shards.ErrUnknown), errors.Is(err, shards.ErrNoHolders):
		return notFound("song", id)
	case errors.Is(err, music.ErrNoCover):
		return notFound("cover art", id)
	}
	return err
}
