package webui

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/catnest/catnest/live"
)

// Live is the live rooms service behind /api/live and the "live" events.
type Live interface {
	Rooms() []live.Room
	Room(id string) (live.Room, bool)
	Create(ctx context.Context, title, description, chat string) (live.Created, error)
	End(ctx context.Context, id string) error
	SetCover(ctx context.Context, id string, img []byte) error
	Cover(ctx context.Context, id string) ([]byte, error)
	Publish(ctx context.Context, room, token, offer string) (answer, session string, err error)
	Watch(ctx context.Context, room, offer string) (answer, session string, err error)
	Stop(room, session string) error
	Tree(room string) (live.TreeInfo, error)
	Fanout() int
	// Subscribe returns a channel that receives a value when the rooms or
	// their trees change, and a function that ends the subscription.
	Subscribe() (<-chan struct{}, func())
}

const (
	liveRooms = "/api/live/rooms"
	liveRoom  = liveRooms + "/{id}"
)

func (s *Server) liveRoutes() []route {
	routes := []route{
		{http.MethodGet, liveRooms, s.handleLiveRooms},
		{http.MethodPost, liveRooms, s.handleLiveCreate},
		{http.MethodGet, liveRoom, s.handleLiveRoom},
		{http.MethodDelete, liveRoom, s.handleLiveEnd},
		{http.MethodGet, liveRoom + "/cover", s.handleLiveCover},
		{http.MethodPut, liveRoom + "/cover", s.handleLiveSetCover},
		{http.MethodGet, liveRoom + "/tree", s.handleLiveTree},
		{http.MethodPost, liveRoom + "/whip", s.handleWHIP},
		{http.MethodDelete, liveRoom + "/whip/{session}", s.handleWHIPStop},
		{http.MethodPost, liveRoom + "/whep", s.handleWHEP},
		{http.MethodDelete, liveRoom + "/whep/{session}", s.handleWHEPStop},
	}
	if s.cfg.Live == nil {
		for i := range routes {
			routes[i].handle = func(w http.ResponseWriter, r *http.Request) {
				writeError(w, http.StatusNotFound, "live rooms are not enabled on this node")
			}
		}
	}
	return routes
}

// liveFeeds is the "live" event: the room list, on every change.
func (s *Server) liveFeeds() []feed {
	if s.cfg.Live == nil {
		return nil
	}
	return []feed{{
		event:    "live",
		snapshot: func() any { return s.cfg.Live.Rooms() },
		watch: func(changed func()) func() {
			return forward(s.cfg.Live.Subscribe())(changed)
		},
	}}
}

// liveBypass sends WHIP requests past the API key, token and Origin checks
// (OBS and other WHIP clients have none of them: the handler checks the
// room's bearer token instead), and WHEP requests without an Origin past
// the Origin check, so that any WHEP player can watch (off loopback it
// still needs the token or the API key); a browser page elsewhere sends
// its Origin and is refused as usual. Only the WHIP and WHEP endpoints
// themselves are let by, matched on the escaped path as the mux matches
// routes, so that no other route can be reached with an encoded slash.
func (s *Server) liveBypass(open, tokened, secured http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch liveEndpoint(r) {
		case "whip":
			open.ServeHTTP(w, r)
		case "whep":
			if r.Header.Get("Origin") == "" || sameOrigin(r) {
				tokened.ServeHTTP(w, r)
				return
			}
			fallthrough
		default:
			secured.ServeHTTP(w, r)
		}
	})
}

// liveEndpoint returns "whip" or "whep" for a request to one of those
// endpoints (POST to start, DELETE of a session), "" for anything else.
func liveEndpoint(r *http.Request) string {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), liveRooms+"/")
	if !ok {
		return ""
	}
	parts := strings.Split(rest, "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || strings.ContainsAny(p, "%\\") {
			return ""
		}
	}
	switch {
	case r.Method == http.MethodPost && len(parts) == 2,
		r.Method == http.MethodDelete && len(parts) == 3:
		if parts[1] == "whip" || parts[1] == "whep" {
			return parts[1]
		}
	}
	return ""
}

func (s *Server) liveError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, live.ErrBadInput), errors.Is(err, live.ErrBadSDP):
		status = http.StatusBadRequest
	case errors.Is(err, live.ErrNoCodec):
		status = http.StatusUnprocessableEntity
	case errors.Is(err, live.ErrBadToken):
		w.Header().Set("WWW-Authenticate", `Bearer realm="catnest live"`)
		status = http.StatusUnauthorized
	case errors.Is(err, live.ErrNotHost):
		status = http.StatusForbidden
	case errors.Is(err, live.ErrUnknownRoom), errors.Is(err, live.ErrUnknownSession):
		status = http.StatusNotFound
	case errors.Is(err, live.ErrNotLive):
		status = http.StatusServiceUnavailable
	case errors.Is(err, live.ErrBusy):
		w.Header().Set("Retry-After", "30")
		status = http.StatusServiceUnavailable
	case r.Context().Err() != nil:
		return
	}
	if status == http.StatusInternalServerError {
		s.log.Warn("web UI: live request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, status, err.Error())
}

func (s *Server) handleLiveRooms(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.cfg.Live.Rooms())
}

func (s *Server) handleLiveRoom(w http.ResponseWriter, r *http.Request) {
	room, ok := s.cfg.Live.Room(r.PathValue("id"))
	if !ok {
		s.liveError(w, r, live.ErrUnknownRoom)
		return
	}
	writeJSON(w, http.StatusOK, room)
}

// createdJSON is the answer to POST /api/live/rooms.
type createdJSON struct {
	live.Created
	WHIPURL string `json:"whip_url"`
}

func (s *Server) handleLiveCreate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Title       string `json:"title"`
		Description string `json:"description"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<10)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad JSON: "+err.Error())
		return
	}
	if req.Title == "" || len(req.Title) > live.MaxTitle {
		s.liveError(w, r, live.ErrBadInput)
		return
	}
	chat := ""
	if s.cfg.Chat != nil {
		// The room's chat: a channel named after the room.
		ch, err := s.cfg.Chat.CreateChannel(r.Context(), req.Title, false)
		if err != nil {
			s.log.Warn("web UI: room chat not created", "err", err)
		} else {
			chat = ch.ID
		}
	}
	c, err := s.cfg.Live.Create(r.Context(), req.Title, req.Description, chat)
	if err != nil {
		s.liveError(w, r, err)
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	writeJSON(w, http.StatusCreated, createdJSON{Created: c, WHIPURL: scheme + "://" + r.Host + liveRooms + "/" + c.ID + "/whip"})
}

func (s *Server) handleLiveEnd(w http.ResponseWriter, r *http.Request) {
	if err := s.cfg.Live.End(r.Context(), r.PathValue("id")); err != nil {
		s.liveError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleLiveCover(w http.ResponseWriter, r *http.Request) {
	img, err := s.cfg.Live.Cover(r.Context(), r.PathValue("id"))
	if err != nil {
		s.liveError(w, r, err)
		return
	}
	if len(img) == 0 {
		writeError(w, http.StatusNotFound, "the room has no cover")
		return
	}
	w.Header().Set("Content-Type", http.DetectContentType(img))
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(img)
}

func (s *Server) handleLiveSetCover(w http.ResponseWriter, r *http.Request) {
	img, err := io.ReadAll(io.LimitReader(r.Body, live.MaxCover+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if ct := http.DetectContentType(img); len(img) > 0 && !strings.HasPrefix(ct, "image/") {
		writeError(w, http.StatusUnsupportedMediaType, "a cover is an image, not "+ct)
		return
	}
	if err := s.cfg.Live.SetCover(r.Context(), r.PathValue("id"), img); err != nil {
		s.liveError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleLiveTree(w http.ResponseWriter, r *http.Request) {
	ti, err := s.cfg.Live.Tree(r.PathValue("id"))
	if err != nil {
		s.liveError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ti)
}

// readOffer reads an SDP offer body (RFC 9725: Content-Type application/sdp).
func readOffer(w http.ResponseWriter, r *http.Request) (string, bool) {
	if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); !strings.EqualFold(strings.TrimSpace(ct), "application/sdp") {
		writeError(w, http.StatusUnsupportedMediaType, "the body must be an SDP offer (Content-Type: application/sdp)")
		return "", false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return "", false
	}
	if len(b) > 64<<10 {
		writeError(w, http.StatusRequestEntityTooLarge, "SDP offer over 64 KiB")
		return "", false
	}
	return string(b), true
}

func writeAnswer(w http.ResponseWriter, location, answer string) {
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", location)
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, answer)
}

func bearer(r *http.Request) string {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return tok
}

// handleWHIP takes a WHIP publish (RFC 9725) with the room's bearer token.
func (s *Server) handleWHIP(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if bearer(r) == "" {
		s.liveError(w, r, live.ErrBadToken)
		return
	}
	offer, ok := readOffer(w, r)
	if !ok {
		return
	}
	ans, sid, err := s.cfg.Live.Publish(r.Context(), id, bearer(r), offer)
	if err != nil {
		s.liveError(w, r, err)
		return
	}
	writeAnswer(w, liveRooms+"/"+id+"/whip/"+sid, ans)
}

// handleWHIPStop ends a WHIP session. The session's URL, which only the
// publisher learned, is the capability, as in RFC 9725; a viewer's
// session is not a publisher's.
func (s *Server) handleWHIPStop(w http.ResponseWriter, r *http.Request) {
	if !live.IsPublisher(r.PathValue("session")) {
		s.liveError(w, r, live.ErrUnknownSession)
		return
	}
	if err := s.cfg.Live.Stop(r.PathValue("id"), r.PathValue("session")); err != nil {
		s.liveError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// handleWHEP takes a WHEP offer: a viewer of the room on this node.
func (s *Server) handleWHEP(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, ok := s.cfg.Live.Room(id); !ok {
		s.liveError(w, r, live.ErrUnknownRoom)
		return
	}
	offer, ok := readOffer(w, r)
	if !ok {
		return
	}
	ans, sid, err := s.cfg.Live.Watch(r.Context(), id, offer)
	if err != nil {
		s.liveError(w, r, err)
		return
	}
	writeAnswer(w, liveRooms+"/"+id+"/whep/"+sid, ans)
}

func (s *Server) handleWHEPStop(w http.ResponseWriter, r *http.Request) {
	if live.IsPublisher(r.PathValue("session")) {
		s.liveError(w, r, live.ErrUnknownSession)
		return
	}
	if err := s.cfg.Live.Stop(r.PathValue("id"), r.PathValue("session")); err != nil {
		s.liveError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}
