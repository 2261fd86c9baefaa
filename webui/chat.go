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
	"github.com/catnest/catnest/mesh"
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
	Messages(ctx context.Context, channel string, before time.Time, limit int) ([]chatlog.Entry, error)
	Post(ctx context.Context, channel, text string) (chatlog.Entry, error)
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

// Channel is a channel as the API shows it.
type Channel struct {
	ID        string        `json:"id"`
	Name      string        `json:"name"`
	Owner     string        `json:"owner"`
	OwnerName string        `json:"owner_name"`
	Joined    bool          `json:"joined"`
	Burn      bool          `json:"burn"`
	Range     chatlog.Range `json:"range"`
	// Members counts the online nodes that advertise the channel.
	Members int `json:"members"`
}

// Message is a message as the API shows it.
type Message struct {
	ID         string    `json:"id"`
	Channel    string    `json:"channel"`
	Author     string    `json:"author"`
	AuthorName string    `json:"author_name"`
	Time       time.Time `json:"time"` // UTC
	Text       string    `json:"text"` // empty once retracted
	Retracted  bool      `json:"retracted"`
	Marked     bool      `json:"marked"`
	// Burn: delivered live from a burn-after-read channel; gone once read.
	Burn bool `json:"burn"`
	// Mine: written by this node.
	Mine bool `json:"mine"`
	// Guest is the chosen name of the guest that Author posted for
	// (chatlog.KindGuest); empty for a member's own message.
	Guest string `json:"guest,omitempty"`
}

// ChatEvent is a "chat" event of /api/events.
type ChatEvent struct {
	// Type is "message" (new), "retract", "burned" (a burn message was
	// read and is gone), "channel" (the channel list changed), or
	// eventResync.
	Type    string   `json:"type"`
	Channel string   `json:"channel,omitempty"`
	Message *Message `json:"message,omitempty"`
	// ID is the retracted or burned message.
	ID string `json:"id,omitempty"`
}

// names returns the name to show for a node ID: its own name for this
// node, else the one in its directory record, else the start of the ID.
// Names are read from the directory as it is now, each ID once per answer;
// a lookup per ID, not a copy of the directory, as an event names one
// author and a page few.
func (s *Server) names() func(mesh.ID) string {
	self, selfName := s.node.ID(), s.node.Name()
	known := map[mesh.ID]string{}
	return func(id mesh.ID) string {
		if id == self {
			return selfName
		}
		if name, ok := known[id]; ok {
			return name
		}
		name := id.Short()
		if r, ok := s.node.Lookup(id); ok {
			name = r.Name
		}
		known[id] = name
		return name
	}
}

// channelJSON is a channel for the API, with its owner's name.
func channelJSON(c chatlog.ChannelInfo, name func(mesh.ID) string) Channel {
	return Channel{ID: c.ID, Name: c.Name, Owner: string(c.Owner), OwnerName: name(c.Owner),
		Joined: c.Joined, Burn: c.Burn, Range: c.Range, Members: c.Members}
}

// messageJSON is a message for the API: with its author's name, and
// times in UTC, as the rest of it.
func (s *Server) messageJSON(m chatlog.Entry, name func(mesh.ID) string) Message {
	return Message{ID: m.ID, Channel: m.Channel, Author: string(m.Author), AuthorName: name(m.Author),
		Time: m.Time.UTC(), Text: m.Text, Retracted: m.Retracted, Marked: m.Marked, Burn: m.Burn,
		Mine: m.Author == s.node.ID(), Guest: m.Guest}
}

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
	return readJSONMax(w, r, v, maxChatBody)
}

// readJSONMax is readJSON for a body of at most limit bytes.
func readJSONMax(w http.ResponseWriter, r *http.Request, v any, limit int64) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
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

// channelList is channels for the API, sorted: joined first, then by
// name, then ID; never nil.
func (s *Server) channelList(chs []chatlog.ChannelInfo) []Channel {
	name := s.names()
	out := make([]Channel, 0, len(chs))
	for _, c := range chs {
		out = append(out, channelJSON(c, name))
	}
	slices.SortFunc(out, func(a, b Channel) int {
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

func (s *Server) handleChannels(w http.ResponseWriter, r *http.Request) {
	chs, err := s.cfg.Chat.Channels(r.Context())
	if err != nil {
		s.chatError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.channelList(chs))
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
	writeJSON(w, http.StatusCreated, channelJSON(ch, s.names()))
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
	name := s.names()
	out := make([]Message, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, s.messageJSON(m, name))
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
	writeJSON(w, http.StatusCreated, s.messageJSON(m, s.names()))
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
// chatlog.Event as a "chat" event (ChatEvent), and a resync event when the service
// dropped some for this stream, as when the stream's own backlog does.
func (s *Server) chatRelays() []relay {
	if s.cfg.Chat == nil {
		return nil
	}
	lost := ChatEvent{Type: eventResync}
	return []relay{{
		event: "chat",
		subscribe: func(push func(any)) func() {
			sub := s.cfg.Chat.SubscribeChat()
			var missed uint64 // dropped, not yet followed by lost
			return each(sub.C(), sub.Close)(func(ev chatlog.Event) {
				out := ChatEvent{Type: ev.Type, Channel: ev.Channel, ID: ev.ID}
				if ev.Message != nil {
					m := s.messageJSON(*ev.Message, s.names())
					out.Message = &m
				}
				push(out)
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
