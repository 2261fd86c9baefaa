package webui

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/catnest/catnest/internal/pubsub"
	"github.com/catnest/catnest/subsonic"
)

// Subsonic is the Subsonic API service (*subsonic.Service): its handler
// answers /rest/ for music apps, which log in with its own user and
// password instead of the UI's token; the Settings view sets them, and
// the Music view shows what the apps play.
type Subsonic interface {
	http.Handler
	// Credentials returns the user and whether a password is set.
	Credentials(ctx context.Context) (user string, passwordSet bool, err error)
	// SetCredentials sets both, or clears both to turn the API off;
	// subsonic.ErrBadCredentials for values it cannot take.
	SetCredentials(ctx context.Context, user, password string) error
	// NowPlaying lists what apps said they are playing, newest first.
	NowPlaying(ctx context.Context) ([]subsonic.NowPlaying, error)
	// SubscribeNowPlaying returns a subscription to the now-playing
	// list (each value the whole list).
	SubscribeNowPlaying() *pubsub.Subscription[[]subsonic.NowPlaying]
}

// SubsonicJSON is the body of GET and PUT /api/subsonic: the user, and
// whether a password is set (GET) or the new password (PUT). Both empty
// turns the API off.
type SubsonicJSON struct {
	User        string `json:"user"`
	Password    string `json:"password,omitempty"`
	PasswordSet bool   `json:"password_set"`
	// Path is where apps reach the API on this node.
	Path string `json:"path"`
}

func (s *Server) subsonicRoutes() []route {
	routes := []route{
		{http.MethodGet, "/api/subsonic", s.handleSubsonic},
		{http.MethodPut, "/api/subsonic", s.handleSetSubsonic},
		{http.MethodGet, "/api/subsonic/nowplaying", s.handleNowPlaying},
	}
	if s.cfg.Subsonic == nil {
		for i := range routes {
			routes[i].handle = func(w http.ResponseWriter, r *http.Request) {
				writeError(w, http.StatusNotFound, "the Subsonic API is not enabled on this node")
			}
		}
	}
	return routes
}

func (s *Server) handleSubsonic(w http.ResponseWriter, r *http.Request) {
	u, set, err := s.cfg.Subsonic.Credentials(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, SubsonicJSON{User: u, PasswordSet: set, Path: "/rest"})
}

func (s *Server) handleSetSubsonic(w http.ResponseWriter, r *http.Request) {
	var req SubsonicJSON
	if !readJSON(w, r, &req) {
		return
	}
	err := s.cfg.Subsonic.SetCredentials(r.Context(), strings.TrimSpace(req.User), req.Password)
	switch {
	case errors.Is(err, subsonic.ErrBadCredentials):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.handleSubsonic(w, r)
}

func (s *Server) handleNowPlaying(w http.ResponseWriter, r *http.Request) {
	l, err := s.cfg.Subsonic.NowPlaying(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if l == nil {
		l = []subsonic.NowPlaying{}
	}
	writeJSON(w, http.StatusOK, l)
}

// subsonicRelays sends the now-playing list as "nowplaying" events.
func (s *Server) subsonicRelays() []relay {
	if s.cfg.Subsonic == nil {
		return nil
	}
	return []relay{{
		event: "nowplaying",
		subscribe: func(push func(any)) func() {
			sub := s.cfg.Subsonic.SubscribeNowPlaying()
			return each(sub.C(), sub.Close)(func(l []subsonic.NowPlaying) {
				if l == nil {
					l = []subsonic.NowPlaying{}
				}
				push(l)
			})
		},
		// Re-read with GET /api/subsonic/nowplaying.
		lost: map[string]bool{"lost": true},
	}}
}

// isSubsonic reports whether a request is for the Subsonic API.
func isSubsonic(r *http.Request) bool {
	return r.URL.Path == "/rest" || strings.HasPrefix(r.URL.Path, "/rest/")
}

// subsonicFirst hands /rest/ to the Subsonic service before the UI's
// token, API key and Origin checks: apps log in with the Subsonic user and
// password on every request (and the service limits failed logins),
// carry no cookie a page elsewhere could ride on, and run off loopback
// too. The Host check before this still guards a loopback node against
// DNS rebinding.
func (s *Server) subsonicFirst(ui http.Handler) http.Handler {
	if s.cfg.Subsonic == nil {
		return ui
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isSubsonic(r) {
			ui.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
		s.cfg.Subsonic.ServeHTTP(w, r)
	})
}
