package webui

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/internal/pubsub"
)

// Chat is what the web UI needs of the chat service (*chatlog.Service): the
// roles below. Its methods are called from request goroutines, several at
// a time.
type Chat interface {
	ChatChannels
	ChatMessages
	ChatEvents
}

// ChatChannels is the channel list and each channel's settings, behind
// /api/channels and /api/channels/{id}/….
type ChatChannels interface {
	// Channels lists the joined channels and the discoverable ones.
	Channels(ctx context.Context) ([]chatlog.ChannelInfo, error)
	CreateChannel(ctx context.Context, name string, burn bool) (chatlog.ChannelInfo, error)
	Join(ctx context.Context, channel string) error
	Leave(ctx context.Context, channel string) error
	// SetSettings changes this device's range and, for the owner, burn;
	// nil leaves a setting as it is.
	SetSettings(ctx context.Context, channel string, r *chatlog.Range, burn *bool) error
}

// ChatMessages is a channel's messages, behind
// /api/channels/{id}/messages/….
type ChatMessages interface {
	// Messages returns up to limit messages older than before (zero: now),
	// newest last.
	Messages(ctx context.Context, channel string, before time.Time, limit int) ([]chatlog.MessageView, error)
	Post(ctx context.Context, channel, text string) (chatlog.MessageView, error)
	Retract(ctx context.Context, channel, id string) error
	Mark(ctx context.Context, channel, id string, on bool) error
	// Read says that a burn message was shown: forget it.
	Read(ctx context.Context, channel, id string) error
}

// ChatEvents is the live feed behind the "chat" events of /api/events.
type ChatEvents interface {
	// SubscribeChat returns a subscription to the changes. Events may be
	// dropped when the reader is slow; Missed counts them.
	SubscribeChat() *pubsub.Subscription[chatlog.Event]
}

// Limits of the chat API.
const (
	// maxChatBody bounds a request body: a message of maxText bytes fits
	// with room for JSON escapes.
	maxChatBody = 64 << 10
	// maxText bounds a message's text, in bytes of UTF-8.
	maxText = chatlog.MaxBody
	// maxChannelName bounds a channel name, in characters.
	maxChannelName = 64
	// defaultPage and maxPage are the default and largest number of
	// messages GET .../messages returns.
	defaultPage = 100
	maxPage     = 500
)

// eventResync is the type of the "chat" event sent in place of events that
// were dropped because the client was slow: re-fetch what is shown.
const eventResync = "resync"

func (s *Server) chatRoutes() []route {
	const (
		channels = "/api/channels"
		channel  = channels + "/{id}"
		messages = channel + "/messages"
		message  = messages + "/{mid}"
	)
	routes := []route{
		{http.MethodGet, channels, s.handleChannels},
		{http.MethodPost, channels, s.handleCreateChannel},
		{http.MethodPost, channel + "/join", s.handleJoin},
		{http.MethodPost, channel + "/leave", s.handleLeave},
		{http.MethodPut, channel + "/settings", s.handleSettings},
		{http.MethodGet, messages, s.handleMessages},
		{http.MethodPost, messages, s.handlePost},
		{http.MethodPost, message + "/retract", s.handleRetract},
		{http.MethodPost, message + "/mark", s.handleMark(true)},
		{http.MethodDelete, message + "/mark", s.handleMark(false)},
		{http.MethodPost, message + "/read", s.handleRead},
	}
	if s.cfg.Chat == nil {
		// Same paths, so that a client learns "no chat here" and not
		// "no such endpoint"; the UI hides its Chat view on this 404.
		for i := range routes {
			routes[i].handle = func(w http.ResponseWriter, r *http.Request) {
				writeError(w, http.StatusNotFound, "chat is not enabled on this node")
			}
		}
	}
	return routes
}

// chatError answers a failed call of the chat service, mapping its errors
// to statuses.
func (s *Server) chatError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, chatlog.ErrUnknownChannel), errors.Is(err, chatlog.ErrUnknownMessage):
		status = http.StatusNotFound
	case errors.Is(err, chatlog.ErrNotOwner), errors.Is(err, chatlog.ErrNotAuthor):
		status = http.StatusForbidden
	case errors.Is(err, chatlog.ErrInvalidInput):
		status = http.StatusBadRequest
	case errors.Is(err, chatlog.ErrNotJoined):
		status = http.StatusConflict
	case r.Context().Err() != nil:
		return // the client is gone
	}
	if status == http.StatusInternalServerError {
		s.log.Warn("web UI: chat request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, status, err.Error())
}

// readJSON decodes a request body of at most maxChatBody bytes that holds
// one JSON object with only known fields into v. On failure it answers the
// request and returns false.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxChatBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, err = dec.Token(); err == io.EOF {
			return true
		} else if err == nil {
			err = errors.New("more than one JSON value")
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("request body too large: at most %d bytes", tooBig.Limit))
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "empty request body: want a JSON object")
	default:
		writeError(w, http.StatusBadRequest, "bad request body: "+err.Error())
	}
	return false
}

// checkText says what is wrong with a message's text, or "".
func checkText(text string) string {
	switch {
	case strings.TrimSpace(text) == "":
		return "the message is empty"
	case len(text) > maxText:
		return fmt.Sprintf("the message is too long: %d bytes, at most %d (16 KiB)", len(text), maxText)
	case !utf8.ValidString(text):
		return "the message is not valid UTF-8"
	}
	return ""
}

// checkName says what is wrong with a channel name (already trimmed), or "".
func checkName(name string) string {
	switch {
	case name == "":
		return "the channel name is empty"
	case !utf8.ValidString(name):
		return "the channel name is not valid UTF-8"
	case utf8.RuneCountInString(name) > maxChannelName:
		return fmt.Sprintf("the channel name is too long: at most %d characters", maxChannelName)
	case strings.ContainsFunc(name, unicode.IsControl):
		return "the channel name contains control characters"
	}
	return ""
}

// parseBefore reads the before parameter: RFC 3339 or unix milliseconds;
// empty is the zero time (now).
func parseBefore(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		if ms <= 0 {
			return time.Time{}, errors.New("before must be positive")
		}
		return time.UnixMilli(ms), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil && strings.Contains(v, " ") {
		// An unescaped "+01:00" arrives as " 01:00".
		t, err = time.Parse(time.RFC3339Nano, strings.ReplaceAll(v, " ", "+"))
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("before %q is neither RFC 3339 nor unix milliseconds", v)
	}
	return t, nil
}

// parseLimit reads the limit parameter: default defaultPage, at most
// maxPage (larger values are lowered to it).
func parseLimit(v string) (int, error) {
	if v == "" {
		return defaultPage, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("limit %q is not a positive number", v)
	}
	return min(n, maxPage), nil
}

// channelList sorts channels: joined first, then by name, then ID; never
// nil.
func channelList(chs []chatlog.ChannelInfo) []chatlog.ChannelInfo {
	out := append(make([]chatlog.ChannelInfo, 0, len(chs)), chs...)
	slices.SortFunc(out, func(a, b chatlog.ChannelInfo) int {
		if a.Joined != b.Joined {
			if a.Joined {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// messageJSON is a message for the API: times in UTC, as the rest of it.
func messageJSON(m chatlog.MessageView) chatlog.MessageView {
	m.Time = m.Time.UTC()
	return m
}

func (s *Server) handleChannels(w http.ResponseWriter, r *http.Request) {
	chs, err := s.cfg.Chat.Channels(r.Context())
	if err != nil {
		s.chatError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, channelList(chs))
}

func (s *Server) handleCreateChannel(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
		Burn bool   `json:"burn"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	name := strings.TrimSpace(req.Name)
	if msg := checkName(name); msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	ch, err := s.cfg.Chat.CreateChannel(r.Context(), name, req.Burn)
	if err != nil {
		s.chatError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, ch)
}

// done answers a state change that has nothing to return.
func (s *Server) done(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		s.chatError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) {
	s.done(w, r, s.cfg.Chat.Join(r.Context(), r.PathValue("id")))
}

func (s *Server) handleLeave(w http.ResponseWriter, r *http.Request) {
	s.done(w, r, s.cfg.Chat.Leave(r.Context(), r.PathValue("id")))
}

func (s *Server) handleSettings(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Range *chatlog.Range `json:"range"`
		Burn  *bool          `json:"burn"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	switch {
	case req.Range == nil && req.Burn == nil:
		writeError(w, http.StatusBadRequest, `nothing to change: give "range" and/or "burn"`)
		return
	case req.Range != nil && (req.Range.Days < 0 || req.Range.Count < 0):
		writeError(w, http.StatusBadRequest, "range days and count must not be negative (0 = no limit)")
		return
	}
	s.done(w, r, s.cfg.Chat.SetSettings(r.Context(), r.PathValue("id"), req.Range, req.Burn))
}

func (s *Server) handleMessages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	before, err := parseBefore(q.Get("before"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	msgs, err := s.cfg.Chat.Messages(r.Context(), r.PathValue("id"), before, limit)
	if err != nil {
		s.chatError(w, r, err)
		return
	}
	out := make([]chatlog.MessageView, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, messageJSON(m))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handlePost(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Text string `json:"text"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if msg := checkText(req.Text); msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	m, err := s.cfg.Chat.Post(r.Context(), r.PathValue("id"), req.Text)
	if err != nil {
		s.chatError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, messageJSON(m))
}

func (s *Server) handleRetract(w http.ResponseWriter, r *http.Request) {
	s.done(w, r, s.cfg.Chat.Retract(r.Context(), r.PathValue("id"), r.PathValue("mid")))
}

func (s *Server) handleMark(on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.done(w, r, s.cfg.Chat.Mark(r.Context(), r.PathValue("id"), r.PathValue("mid"), on))
	}
}

func (s *Server) handleRead(w http.ResponseWriter, r *http.Request) {
	s.done(w, r, s.cfg.Chat.Read(r.Context(), r.PathValue("id"), r.PathValue("mid")))
}

// chatRelays is the chat service's part of the event stream: every
// chatlog.Event as a "chat" event, and a resync event when the service
// dropped some for this stream, as when the stream's own backlog does.
func (s *Server) chatRelays() []relay {
	if s.cfg.Chat == nil {
		return nil
	}
	lost := chatlog.Event{Type: eventResync}
	return []relay{{
		event: "chat",
		subscribe: func(push func(any)) func() {
			sub := s.cfg.Chat.SubscribeChat()
			var missed uint64 // dropped, not yet followed by lost
			return each(sub.C(), sub.Close)(func(ev chatlog.Event) {
				if ev.Message != nil {
					m := messageJSON(*ev.Message)
					ev.Message = &m
				}
				push(ev)
				// The events dropped came after those still buffered: the
				// resync follows the last of these, so the UI re-fetches
				// once, after everything it will be sent.
				if missed += sub.Missed(); missed > 0 && len(sub.C()) == 0 {
					push(lost)
					missed = 0
				}
			})
		},
		lost: lost,
	}}
}
