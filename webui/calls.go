package webui

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/catnest/catnest/live/calls"
)

// Calls is what the web UI needs of the call service (*calls.Service).
// Its methods are called from request goroutines, several at a time.
type Calls interface {
	// Open starts a page's session; the page's call event stream holds
	// it, and closing it leaves the page's room.
	Open() (*calls.Session, error)
	Join(ctx context.Context, session, room string) (calls.JoinResult, error)
	Leave(ctx context.Context, session, room string) error
	Signal(ctx context.Context, session, room string, sig calls.Signal) error
	// ICEServers are the STUN and TURN servers pages use for media.
	ICEServers() []calls.ICEServer
}

var _ Calls = (*calls.Service)(nil)

// maxCallBody bounds a call request body: a signal with its SDP, with
// room for JSON escapes.
const maxCallBody = 2*calls.MaxSDP + 4<<10

func (s *Server) callsRoutes() []route {
	if s.cfg.Calls == nil {
		return nil
	}
	return []route{
		{http.MethodGet, "/api/calls/ice", s.handleCallICE},
		{http.MethodGet, "/api/calls/events", s.handleCallEvents},
		{http.MethodPost, "/api/calls/{room}/join", s.handleCallJoin},
		{http.MethodPost, "/api/calls/{room}/leave", s.handleCallLeave},
		{http.MethodPost, "/api/calls/{room}/signal", s.handleCallSignal},
	}
}

// iceJSON is the body of GET /api/calls/ice.
type iceJSON struct {
	ICEServers []calls.ICEServer `json:"ice_servers"`
}

func (s *Server) handleCallICE(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, iceJSON{ICEServers: s.cfg.Calls.ICEServers()})
}

// callSessionEvent is the first "call" event of a call stream: the
// session the page names in its requests, and the ICE servers to use.
type callSessionEvent struct {
	Type       string            `json:"type"` // "session"
	Session    string            `json:"session"`
	ICEServers []calls.ICEServer `json:"ice_servers"`
}

// handleCallEvents is a page's call session: it streams the session's
// "call" events, and the session (and its room) ends with the stream.
func (s *Server) handleCallEvents(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	sess, err := s.cfg.Calls.Open()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	defer sess.Close()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	st := &stream{w: bufio.NewWriter(w), rc: http.NewResponseController(w), timeout: s.timing.write}
	defer st.rc.SetWriteDeadline(time.Time{})
	fmt.Fprintf(st.w, "retry: %d\n\n", s.timing.retry.Milliseconds())
	st.event("call", callSessionEvent{Type: "session", Session: sess.ID(), ICEServers: s.cfg.Calls.ICEServers()})
	if st.flush() != nil {
		return
	}
	keepAlive := time.NewTicker(s.timing.keepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-sess.Events():
			st.event("call", ev)
		case <-keepAlive.C:
			st.w.WriteString(": keep-alive\n\n")
		}
		if st.flush() != nil {
			return
		}
	}
}

// callRequest is the body of the call requests: the page's session, and
// for a signal the signal.
type callRequest struct {
	Session string `json:"session"`
	calls.Signal
}

// callJoinJSON is the answer to POST /api/calls/{room}/join.
type callJoinJSON struct {
	calls.JoinResult
	ICEServers []calls.ICEServer `json:"ice_servers"`
}

func (s *Server) handleCallJoin(w http.ResponseWriter, r *http.Request) {
	var req callRequest
	if !readJSONMax(w, r, &req, maxCallBody) {
		return
	}
	res, err := s.cfg.Calls.Join(r.Context(), req.Session, r.PathValue("room"))
	if err != nil {
		writeCallError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, callJoinJSON{JoinResult: res, ICEServers: s.cfg.Calls.ICEServers()})
}

func (s *Server) handleCallLeave(w http.ResponseWriter, r *http.Request) {
	var req callRequest
	if !readJSONMax(w, r, &req, maxCallBody) {
		return
	}
	if err := s.cfg.Calls.Leave(r.Context(), req.Session, r.PathValue("room")); err != nil {
		writeCallError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleCallSignal(w http.ResponseWriter, r *http.Request) {
	var req callRequest
	if !readJSONMax(w, r, &req, maxCallBody) {
		return
	}
	if err := s.cfg.Calls.Signal(r.Context(), req.Session, r.PathValue("room"), req.Signal); err != nil {
		writeCallError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// writeCallError maps the call service's errors to HTTP.
func writeCallError(w http.ResponseWriter, err error) {
	status := http.StatusBadGateway // the other node or the owner failed
	switch {
	case errors.Is(err, calls.ErrBadRoom), errors.Is(err, calls.ErrBadSignal):
		status = http.StatusBadRequest
	case errors.Is(err, calls.ErrNoSession):
		status = http.StatusNotFound
		err = fmt.Errorf("%w: open GET /api/calls/events first and name the session it gives", err)
	case errors.Is(err, calls.ErrInOtherRoom), errors.Is(err, calls.ErrNoPeer):
		status = http.StatusConflict
	case errors.Is(err, calls.ErrNoOwner), errors.Is(err, calls.ErrTooManySessions):
		status = http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		status = http.StatusGatewayTimeout
	}
	writeError(w, status, err.Error())
}
