package webui

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// chatFixture is a server with a fakeChat: channels "general" (joined,
// owned by someone else, with three messages, the middle one ours) and
// "random" (not joined).
type chatFixture struct {
	t    *testing.T
	base string
	c    *http.Client
	chat *fakeChat
	node *fakeNode
	msgs []chatlog.Entry // general's messages, oldest first
}

const (
	generalID = "0000000000000000000000000000a001"
	randomID  = "0000000000000000000000000000a002"
)

var fixtureStart = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func newChatFixture(t *testing.T) *chatFixture {
	t.Helper()
	node := newFakeNode("alpha")
	chat := newFakeChat(node.id)
	bravo := fakeID("bravo")
	node.setRecords(mesh.Record{ID: bravo, Name: "bravo"}) // names come from the directory
	chat.addChannel(chatlog.ChannelInfo{ID: generalID, Name: "general", Owner: bravo, Joined: true, Members: 3,
		Range: chatlog.Range{Days: 30}})
	chat.addChannel(chatlog.ChannelInfo{ID: randomID, Name: "random", Owner: bravo, Members: 2})
	f := &chatFixture{t: t, chat: chat, node: node}
	for i, text := range []string{"hello", "hi bravo", "how are you?"} {
		m := chatlog.Entry{Author: bravo, Text: text,
			Time: fixtureStart.Add(time.Duration(i) * time.Minute)}
		if i == 1 {
			m.Author = node.id
		}
		f.msgs = append(f.msgs, chat.receive(generalID, m))
	}
	f.base = startServer(t, Config{Chat: chat}, node)
	f.c = newClient(t)
	return f
}

// call does a request from our own page (Origin set) with body as JSON
// when it is not empty, and returns the status and body.
func (f *chatFixture) call(method, path, body string) (int, []byte) {
	f.t.Helper()
	resp, b := pageCall(f.t, f.c, f.base, method, path, body)
	return resp.StatusCode, b
}

// want does a request and fails the test unless it gets status; it
// returns the body.
func (f *chatFixture) want(status int, method, path, body string) []byte {
	f.t.Helper()
	got, b := f.call(method, path, body)
	if got != status {
		f.t.Fatalf("%s %s %s: status %d, want %d; body %s", method, path, body, got, status, b)
	}
	return b
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

func TestChatChannels(t *testing.T) {
	checkGoroutines(t)
	f := newChatFixture(t)

	got := decode[[]map[string]any](t, f.want(200, "GET", "/api/channels", ""))
	if len(got) != 2 {
		t.Fatalf("GET /api/channels: %d channels, want 2", len(got))
	}
	for _, k := range []string{"id", "name", "owner", "owner_name", "joined", "burn", "range", "members"} {
		if _, ok := got[0][k]; !ok {
			t.Errorf("channel has no %q: %v", k, got[0])
		}
	}
	if got[0]["id"] != generalID || got[1]["id"] != randomID {
		t.Errorf("order %v, %v: want joined first", got[0]["id"], got[1]["id"])
	}
	if r, _ := got[0]["range"].(map[string]any); r["days"] != 30.0 || r["count"] != 0.0 {
		t.Errorf("range %v, want days 30, count 0", got[0]["range"])
	}

	// Create: 201 with the new channel; it is listed, joined and ours.
	created := decode[Channel](t, f.want(201, "POST", "/api/channels", `{"name": "  猫窝 ", "burn": true}`))
	if created.ID == "" || created.Name != "猫窝" || !created.Burn || created.Owner != string(f.node.id) {
		t.Errorf("created %+v, want a burn channel 猫窝 owned by this node with an id", created)
	}
	list := decode[[]Channel](t, f.want(200, "GET", "/api/channels", ""))
	if i := slices.IndexFunc(list, func(c Channel) bool { return c.ID == created.ID }); i < 0 || !list[i].Joined {
		t.Errorf("created channel not listed as joined: %+v", list)
	}

	// Leave and join change the list.
	f.want(204, "POST", "/api/channels/"+randomID+"/join", "")
	list = decode[[]Channel](t, f.want(200, "GET", "/api/channels", ""))
	if i := slices.IndexFunc(list, func(c Channel) bool { return c.ID == randomID }); i < 0 || !list[i].Joined {
		t.Errorf("after join: %+v", list)
	}
	f.want(204, "POST", "/api/channels/"+randomID+"/leave", "")
	list = decode[[]Channel](t, f.want(200, "GET", "/api/channels", ""))
	if i := slices.IndexFunc(list, func(c Channel) bool { return c.ID == randomID }); i < 0 || list[i].Joined {
		t.Errorf("after leave: %+v", list)
	}

	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"create: empty name", "POST", "/api/channels", `{"name": "   "}`, 400},
		{"create: long name", "POST", "/api/channels", `{"name": "` + strings.Repeat("猫", maxChannelName+1) + `"}`, 400},
		{"create: control character", "POST", "/api/channels", `{"name": "a\u0007b"}`, 400},
		{"create: no body", "POST", "/api/channels", ``, 400},
		{"create: not JSON", "POST", "/api/channels", `name=x`, 400},
		{"create: unknown field", "POST", "/api/channels", `{"name": "x", "brun": true}`, 400},
		{"create: two values", "POST", "/api/channels", `{"name": "x"} {"name": "y"}`, 400},
		{"create: wrong type", "POST", "/api/channels", `{"name": 5}`, 400},
		{"join unknown", "POST", "/api/channels/ffff/join", ``, 404},
		{"leave unknown", "POST", "/api/channels/ffff/leave", ``, 404},
		{"channels: wrong method", "DELETE", "/api/channels", ``, 405},
		{"join: GET", "GET", "/api/channels/" + generalID + "/join", ``, 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, b := f.call(tt.method, tt.path, tt.body); got != tt.want {
				t.Errorf("status %d, want %d; body %s", got, tt.want, b)
			}
		})
	}

	// An empty list is [], not null.
	empty := newFakeChat(f.node.id)
	s, err := New(Config{Addr: "127.0.0.1:0", Chat: empty}, f.node)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := serve(t, s)
	if resp, b := do(t, f.c, newRequest(t, "GET", base+"/api/channels")); resp.StatusCode != 200 || strings.TrimSpace(string(b)) != "[]" {
		t.Errorf("no channels: status %d, body %q, want []", resp.StatusCode, b)
	}
}

// TestChatNames checks the names the API shows for authors and owners:
// this node's own, the directory's for others, the start of the ID for a
// node the directory does not hold, and a rename as soon as the directory
// has it, live events included.
func TestChatNames(t *testing.T) {
	checkGoroutines(t)
	f := newChatFixture(t)
	stranger := fakeID("stranger")
	f.chat.receive(generalID, chatlog.Entry{Author: stranger, Text: "who am I", Time: fixtureStart.Add(time.Hour)})
	msgs := "/api/channels/" + generalID + "/messages"
	names := func() []string {
		var out []string
		for _, m := range decode[[]Message](t, f.want(200, "GET", msgs, "")) {
			out = append(out, m.AuthorName)
		}
		return out
	}
	if got, want := names(), []string{"bravo", "alpha", "bravo", stranger.Short()}; !slices.Equal(got, want) {
		t.Errorf("author names %q, want %q", got, want)
	}
	list := decode[[]Channel](t, f.want(200, "GET", "/api/channels", ""))
	if len(list) != 2 || list[0].OwnerName != "bravo" || list[1].OwnerName != "bravo" {
		t.Errorf("channels %+v, want bravo as the owner's name", list)
	}

	events, cancel := openEvents(t, f.c, f.base)
	defer cancel()
	nextPeers(t, events, 5*time.Second)
	f.node.setRecords(mesh.Record{ID: fakeID("bravo"), Name: "bravo 2"}, mesh.Record{ID: stranger, Name: "stranger"})
	if got, want := names(), []string{"bravo 2", "alpha", "bravo 2", "stranger"}; !slices.Equal(got, want) {
		t.Errorf("after the renames: author names %q, want %q", got, want)
	}
	f.chat.receive(generalID, chatlog.Entry{Author: stranger, Text: "now known"})
	if ev := nextChat(t, events, 5*time.Second); ev.Message == nil || ev.Message.AuthorName != "stranger" || ev.Message.Mine {
		t.Errorf("event %+v, want the stranger's message under its name", ev.ChatEvent)
	}
	mine := decode[Message](t, f.want(201, "POST", msgs, `{"text": "me"}`))
	if mine.AuthorName != "alpha" || !mine.Mine || mine.Author != string(f.node.id) {
		t.Errorf("posted %+v, want it as this node's", mine)
	}
}

func TestChatMessages(t *testing.T) {
	checkGoroutines(t)
	f := newChatFixture(t)
	msgs := "/api/channels/" + generalID + "/messages"

	got := decode[[]map[string]any](t, f.want(200, "GET", msgs, ""))
	if len(got) != 3 {
		t.Fatalf("%d messages, want 3", len(got))
	}
	for _, k := range []string{"id", "author", "author_name", "time", "text", "retracted", "marked", "burn", "mine"} {
		if _, ok := got[0][k]; !ok {
			t.Errorf("message has no %q: %v", k, got[0])
		}
	}
	if got[0]["text"] != "hello" || got[2]["text"] != "how are you?" || got[1]["mine"] != true {
		t.Errorf("messages %v: want oldest first, the middle one ours", got)
	}
	if got[0]["time"] != "2025-06-01T12:00:00Z" {
		t.Errorf("time %v, want 2025-06-01T12:00:00Z", got[0]["time"])
	}

	// Paging: before as RFC 3339 or unix ms, and limit.
	texts := func(b []byte) string {
		var out []string
		for _, m := range decode[[]Message](t, b) {
			out = append(out, m.Text)
		}
		return strings.Join(out, "|")
	}
	third := fixtureStart.Add(2 * time.Minute)
	pages := []struct{ query, want string }{
		{"?before=" + third.Format(time.RFC3339), "hello|hi bravo"},
		{"?before=" + url.QueryEscape(third.In(time.FixedZone("CST", 8*3600)).Format(time.RFC3339Nano)), "hello|hi bravo"},
		{"?before=" + third.In(time.FixedZone("CST", 8*3600)).Format(time.RFC3339Nano), "hello|hi bravo"}, // "+" unescaped
		{fmt.Sprintf("?before=%d", third.UnixMilli()), "hello|hi bravo"},
		{"?limit=1", "how are you?"},
		{fmt.Sprintf("?before=%d&limit=1", third.UnixMilli()), "hi bravo"},
		{"?before=" + fixtureStart.Format(time.RFC3339), ""},
	}
	for _, p := range pages {
		b := f.want(200, "GET", msgs+p.query, "")
		if got := texts(b); got != p.want {
			t.Errorf("GET %s: %q, want %q", p.query, got, p.want)
		}
		if p.want == "" && strings.TrimSpace(string(b)) != "[]" {
			t.Errorf("GET %s: body %q, want []", p.query, b)
		}
	}

	// Post: 201 with the stored message; then it is the newest.
	posted := decode[Message](t, f.want(201, "POST", msgs, `{"text": "line one\nline two <b>"}`))
	if posted.ID == "" || !posted.Mine || posted.Text != "line one\nline two <b>" {
		t.Errorf("posted %+v", posted)
	}
	if all := decode[[]Message](t, f.want(200, "GET", msgs, "")); len(all) != 4 || all[3].ID != posted.ID {
		t.Errorf("after post: %+v", all)
	}
	// Exactly the limit is fine.
	f.want(201, "POST", msgs, `{"text": "`+strings.Repeat("x", maxText)+`"}`)

	// Over 500 is lowered to 500.
	for i := range 600 {
		f.chat.receive(generalID, chatlog.Entry{Text: fmt.Sprint(i), Time: fixtureStart.Add(time.Hour + time.Duration(i)*time.Second)})
	}
	if n := len(decode[[]Message](t, f.want(200, "GET", msgs+"?limit=10000", ""))); n != maxPage {
		t.Errorf("limit=10000: %d messages, want %d", n, maxPage)
	}
	if n := len(decode[[]Message](t, f.want(200, "GET", msgs, ""))); n != defaultPage {
		t.Errorf("no limit: %d messages, want %d", n, defaultPage)
	}

	tooLong, tooLongBody := f.call("POST", msgs, `{"text": "`+strings.Repeat("猫", maxText/3+1)+`"}`)
	if tooLong != 400 || !strings.Contains(string(tooLongBody), "too long") {
		t.Errorf("too long text: status %d, body %s; want 400 saying too long", tooLong, tooLongBody)
	}
	huge, hugeBody := f.call("POST", msgs, `{"text": "`+strings.Repeat("x", maxChatBody)+`"}`)
	if huge != http.StatusRequestEntityTooLarge {
		t.Errorf("body over %d bytes: status %d, want 413; body %s", maxChatBody, huge, hugeBody)
	}

	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"bad before", "GET", msgs + "?before=yesterday", "", 400},
		{"negative before", "GET", msgs + "?before=-5", "", 400},
		{"bad limit", "GET", msgs + "?limit=ten", "", 400},
		{"zero limit", "GET", msgs + "?limit=0", "", 400},
		{"unknown channel", "GET", "/api/channels/ffff/messages", "", 404},
		{"not joined", "GET", "/api/channels/" + randomID + "/messages", "", 409},
		{"post: not joined", "POST", "/api/channels/" + randomID + "/messages", `{"text": "hi"}`, 409},
		{"post: empty", "POST", msgs, `{"text": ""}`, 400},
		{"post: blank", "POST", msgs, `{"text": " \n\t "}`, 400},
		{"post: no text", "POST", msgs, `{}`, 400},
		{"post: unknown field", "POST", msgs, `{"text": "x", "html": "<b>"}`, 400},
		{"post: unknown channel", "POST", "/api/channels/ffff/messages", `{"text": "hi"}`, 404},
		{"messages: PUT", "PUT", msgs, `{"text": "hi"}`, 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, b := f.call(tt.method, tt.path, tt.body); got != tt.want {
				t.Errorf("status %d, want %d; body %s", got, tt.want, b)
			}
		})
	}
}

func TestChatMessageActions(t *testing.T) {
	checkGoroutines(t)
	f := newChatFixture(t)
	msg := func(i int) string { return "/api/channels/" + generalID + "/messages/" + f.msgs[i].ID }
	state := func(i int) chatlog.Entry {
		t.Helper()
		m, ok := f.chat.message(generalID, f.msgs[i].ID)
		if !ok {
			t.Fatalf("message %d is gone", i)
		}
		return m
	}

	f.want(204, "POST", msg(0)+"/mark", "")
	if !state(0).Marked {
		t.Error("POST mark did not mark")
	}
	f.want(204, "DELETE", msg(0)+"/mark", "")
	if state(0).Marked {
		t.Error("DELETE mark did not unmark")
	}

	f.want(204, "POST", msg(1)+"/retract", "")
	if !state(1).Retracted {
		t.Error("retract of our message did not retract it")
	}
	f.want(403, "POST", msg(0)+"/retract", "") // bravo's
	if state(0).Retracted {
		t.Error("someone else's message was retracted")
	}

	// Settings: the range is ours to set; burn only the owner's.
	settings := "/api/channels/" + generalID + "/settings"
	f.want(204, "PUT", settings, `{"range": {"days": 7, "count": 200}}`)
	list := decode[[]Channel](t, f.want(200, "GET", "/api/channels", ""))
	if list[0].Range != (chatlog.Range{Days: 7, Count: 200}) {
		t.Errorf("range %+v after PUT, want 7 days, 200 messages", list[0].Range)
	}
	f.want(403, "PUT", settings, `{"burn": true}`)
	mine := decode[Channel](t, f.want(201, "POST", "/api/channels", `{"name": "own"}`))
	f.want(204, "PUT", "/api/channels/"+mine.ID+"/settings", `{"burn": true}`)
	f.want(204, "PUT", "/api/channels/"+mine.ID+"/settings", `{"burn": false, "range": {"days": 1, "count": 0}}`)

	// Read forgets a burn message.
	burnMsg := decode[Message](t, f.want(201, "POST", "/api/channels/"+mine.ID+"/messages", `{"text": "x"}`))
	f.want(204, "PUT", "/api/channels/"+mine.ID+"/settings", `{"burn": true}`)
	burnMsg = decode[Message](t, f.want(201, "POST", "/api/channels/"+mine.ID+"/messages", `{"text": "gone soon"}`))
	if !burnMsg.Burn {
		t.Fatalf("message in a burn channel: %+v", burnMsg)
	}
	f.want(204, "POST", "/api/channels/"+mine.ID+"/messages/"+burnMsg.ID+"/read", "")
	if got := f.chat.readIDs(); !slices.Equal(got, []string{burnMsg.ID}) {
		t.Errorf("Read calls %v, want [%s]", got, burnMsg.ID)
	}
	if _, ok := f.chat.message(mine.ID, burnMsg.ID); ok {
		t.Error("burn message still there after read")
	}

	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"mark unknown message", "POST", "/api/channels/" + generalID + "/messages/ffff/mark", "", 404},
		{"unmark in unknown channel", "DELETE", "/api/channels/ffff/messages/ffff/mark", "", 404},
		{"retract unknown message", "POST", "/api/channels/" + generalID + "/messages/ffff/retract", "", 404},
		{"read a message that is not burn", "POST", msg(0) + "/read", "", 400},
		{"read again", "POST", "/api/channels/" + mine.ID + "/messages/" + burnMsg.ID + "/read", "", 404},
		{"mark: PUT", "PUT", msg(0) + "/mark", "", 405},
		{"settings: nothing", "PUT", settings, `{}`, 400},
		{"settings: negative", "PUT", settings, `{"range": {"days": -1, "count": 0}}`, 400},
		{"settings: unknown field", "PUT", settings, `{"keep": 5}`, 400},
		{"settings: unknown channel", "PUT", "/api/channels/ffff/settings", `{"burn": false}`, 404},
		{"settings: POST", "POST", settings, `{"burn": false}`, 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, b := f.call(tt.method, tt.path, tt.body); got != tt.want {
				t.Errorf("status %d, want %d; body %s", got, tt.want, b)
			}
		})
	}
}

// TestChatErrorMapping checks the status of each chatlog error, wrapped as
// the service may wrap it, on every endpoint.
func TestChatErrorMapping(t *testing.T) {
	checkGoroutines(t)
	f := newChatFixture(t)
	ch := "/api/channels/" + generalID
	m := ch + "/messages/" + f.msgs[0].ID
	endpoints := []struct{ method, path, body string }{
		{"GET", "/api/channels", ""},
		{"POST", "/api/channels", `{"name": "x"}`},
		{"POST", ch + "/join", ""},
		{"POST", ch + "/leave", ""},
		{"PUT", ch + "/settings", `{"burn": true}`},
		{"GET", ch + "/messages", ""},
		{"POST", ch + "/messages", `{"text": "x"}`},
		{"POST", m + "/retract", ""},
		{"POST", m + "/mark", ""},
		{"DELETE", m + "/mark", ""},
		{"POST", m + "/read", ""},
	}
	errs := []struct {
		err  error
		want int
	}{
		{chatlog.ErrUnknownChannel, 404},
		{chatlog.ErrUnknownMessage, 404},
		{chatlog.ErrNotOwner, 403},
		{chatlog.ErrNotAuthor, 403},
		{chatlog.ErrInvalidInput, 400},
		{chatlog.ErrNotJoined, 409},
		{errors.New("disk on fire"), 500},
	}
	for _, e := range errs {
		for _, ep := range endpoints {
			t.Run(fmt.Sprintf("%v/%s %s", e.err, ep.method, ep.path), func(t *testing.T) {
				f.chat.failNext(fmt.Errorf("doing it: %w", e.err))
				got, b := f.call(ep.method, ep.path, ep.body)
				f.chat.failNext(nil)
				if got != e.want {
					t.Fatalf("status %d, want %d; body %s", got, e.want, b)
				}
				if !strings.Contains(string(b), e.err.Error()) {
					t.Errorf("body %s does not say %q", b, e.err)
				}
			})
		}
	}
}

// TestChatOrigin checks that every state-changing chat endpoint refuses a
// request from another origin before it reaches the service.
func TestChatOrigin(t *testing.T) {
	checkGoroutines(t)
	f := newChatFixture(t)
	ch := "/api/channels/" + generalID
	m := ch + "/messages/" + f.msgs[1].ID
	endpoints := []struct{ method, path, body string }{
		{"POST", "/api/channels", `{"name": "x"}`},
		{"POST", "/api/channels/" + randomID + "/join", ""},
		{"POST", ch + "/leave", ""},
		{"PUT", ch + "/settings", `{"range": {"days": 1, "count": 1}}`},
		{"POST", ch + "/messages", `{"text": "x"}`},
		{"POST", m + "/retract", ""},
		{"POST", m + "/mark", ""},
		{"DELETE", m + "/mark", ""},
		{"POST", m + "/read", ""},
	}
	for _, ep := range endpoints {
		for _, origin := range []string{"", "http://evil.example"} {
			t.Run(ep.method+" "+ep.path+" from "+origin, func(t *testing.T) {
				req, err := http.NewRequest(ep.method, f.base+ep.path, strings.NewReader(ep.body))
				if err != nil {
					t.Fatal(err)
				}
				if origin != "" {
					req.Header.Set("Origin", origin)
				}
				resp, b := do(t, f.c, req)
				wantJSONError(t, resp, b, http.StatusForbidden)
			})
		}
	}
	// Nothing changed.
	list := decode[[]Channel](t, f.want(200, "GET", "/api/channels", ""))
	if len(list) != 2 || !list[0].Joined || list[1].Joined || list[0].Range.Days != 30 {
		t.Errorf("channels changed by refused requests: %+v", list)
	}
	if got, _ := f.chat.message(generalID, f.msgs[1].ID); got.Retracted || got.Marked {
		t.Errorf("message changed by refused requests: %+v", got)
	}
	if all := decode[[]Message](t, f.want(200, "GET", ch+"/messages", "")); len(all) != 3 {
		t.Errorf("%d messages after refused posts, want 3", len(all))
	}
}

// TestChatDisabled checks that without a Chat the chat endpoints answer
// 404, and the event stream has no chat events.
func TestChatDisabled(t *testing.T) {
	checkGoroutines(t)
	base := startServer(t, Config{}, newFakeNode("alpha"))
	c := newClient(t)
	for _, ep := range []struct{ method, path string }{
		{"GET", "/api/channels"},
		{"POST", "/api/channels"},
		{"GET", "/api/channels/x/messages"},
		{"POST", "/api/channels/x/messages/y/read"},
	} {
		req := newRequest(t, ep.method, base+ep.path)
		req.Header.Set("Origin", base)
		resp, b := do(t, c, req)
		wantJSONError(t, resp, b, http.StatusNotFound)
		if !strings.Contains(string(b), "chat is not enabled") {
			t.Errorf("%s %s: body %s, want it to say chat is not enabled", ep.method, ep.path, b)
		}
	}
}

// chatEvent is a "chat" event decoded, and as it came.
type chatEvent struct {
	ChatEvent
	raw []byte
}

// nextChat waits for the next "chat" event and decodes it, skipping others.
func nextChat(t *testing.T, events <-chan sseEvent, timeout time.Duration) chatEvent {
	t.Helper()
	ev := nextEvent(t, events, "chat", timeout, nil)
	return chatEvent{decode[ChatEvent](t, []byte(ev.data)), []byte(ev.data)}
}

// TestChatEvents checks that every chat event is forwarded at once and in
// order, and that the subscription ends with the stream.
func TestChatEvents(t *testing.T) {
	checkGoroutines(t)
	f := newChatFixture(t)
	events, cancel := openEvents(t, f.c, f.base)
	// The stream has subscribed once its first events have arrived.
	nextPeers(t, events, 5*time.Second)
	if n := f.chat.subscribers(); n != 1 {
		t.Fatalf("%d chat subscriptions, want 1", n)
	}

	in := []chatlog.Event{
		{Type: "channel"},
		{Type: "retract", Channel: generalID, ID: f.msgs[1].ID},
		{Type: "burned", Channel: generalID, ID: "abc"},
	}
	for _, ev := range in {
		f.chat.emit(ev)
	}
	for _, want := range in {
		if got := nextChat(t, events, 5*time.Second); got.Type != want.Type || got.ID != want.ID || got.Channel != want.Channel {
			t.Errorf("event %+v, want %+v", got, want)
		}
	}

	// A message posted through the API comes back as an event with the
	// message, time in UTC.
	local := time.FixedZone("CST", 8*3600)
	f.chat.now = func() time.Time { return time.Date(2025, 6, 2, 8, 0, 0, 0, local) }
	posted := decode[Message](t, f.want(201, "POST", "/api/channels/"+generalID+"/messages", `{"text": "hi all"}`))
	ev := nextChat(t, events, 5*time.Second)
	if ev.Type != "message" || ev.Channel != generalID || ev.Message == nil || ev.Message.ID != posted.ID || ev.Message.Text != "hi all" {
		t.Fatalf("event %+v, want the posted message", ev)
	}
	var raw struct {
		Message struct{ Time string }
	}
	if err := json.Unmarshal(ev.raw, &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Message.Time != "2025-06-02T00:00:00Z" {
		t.Errorf("message time %q in the event, want UTC", raw.Message.Time)
	}

	cancel()
	testutil.WaitFor(t, 5*time.Second, "the chat subscription to be cancelled after the stream ended", func() bool {
		return f.chat.subscribers() == 0
	})
}

// TestChatEventsDroppedByService checks that events the chat service
// dropped for a slow stream are followed by a resync event, so the UI
// re-fetches instead of showing a history with holes.
func TestChatEventsDroppedByService(t *testing.T) {
	checkGoroutines(t)
	f := newChatFixture(t)
	// Three buffers' worth arrive before the stream reads any: all but the
	// first buffer are dropped.
	for i := range 3 * fakeChatBuffer {
		f.chat.stalled = append(f.chat.stalled, chatlog.Event{Type: "burned", Channel: generalID, ID: fmt.Sprint(i)})
	}
	events, cancel := openEvents(t, f.c, f.base)
	defer cancel()
	for i := range fakeChatBuffer {
		if ev := nextChat(t, events, 10*time.Second); ev.Type != "burned" || ev.ID != fmt.Sprint(i) {
			t.Fatalf("event %d: %+v, want the kept events in order", i, ev.ChatEvent)
		}
	}
	if ev := nextChat(t, events, 10*time.Second); ev.Type != eventResync {
		t.Fatalf("after the kept events: %+v, want a %q event for the dropped ones", ev.ChatEvent, eventResync)
	}
}

// TestChatEventNamesAtScale relays a burst of 1,000 new messages, from 50
// authors, to a stream of a node whose directory holds 500 records: each
// event names its author, and naming costs a lookup of that author, not a
// copy of the whole directory per message (500,000 records), which would
// also hold the mesh's directory lock for each and make the stream fall
// behind.
func TestChatEventNamesAtScale(t *testing.T) {
	checkGoroutines(t)
	const records, authors, messages = 500, 50, 1000
	node := newFakeNode("alpha")
	var recs []mesh.Record
	for i := range records {
		name := fmt.Sprintf("node %03d", i)
		recs = append(recs, mesh.Record{ID: fakeID(name), Name: name})
	}
	node.setRecords(recs...)
	chat := newFakeChat(node.id)
	s, err := New(Config{Addr: "127.0.0.1:0", Chat: chat}, node)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []ChatEvent
	received := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	stop := s.chatRelays()[0].subscribe(func(v any) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, v.(ChatEvent))
	})
	defer stop()

	before := node.recordsCopied()
	for i := range messages {
		// Sent a buffer at a time, so that none is dropped.
		if i%fakeChatBuffer == 0 {
			testutil.WaitFor(t, 30*time.Second, "the relay to take the last buffer of events", func() bool { return received() == i })
		}
		m := chatlog.Entry{ID: fmt.Sprint(i), Channel: generalID, Author: recs[i%authors].ID, Text: "hi", Time: fixtureStart}
		chat.emit(chatlog.Event{Type: "message", Channel: generalID, Message: &m})
	}
	testutil.WaitFor(t, 30*time.Second, "every event relayed", func() bool { return received() == messages })
	stop()
	for i, ev := range got {
		if want := recs[i%authors].Name; ev.Type != "message" || ev.Message == nil || ev.Message.AuthorName != want {
			t.Fatalf("event %d: %+v, want a message by %q", i, ev, want)
		}
	}
	if n := node.recordsCopied() - before; n > messages {
		t.Errorf("naming the authors of %d events copied %d directory records, want at most one per event", messages, n)
	}
}

// TestBacklog checks that a slow client's backlog drops what does not fit
// and says so once, after what it kept.
func TestBacklog(t *testing.T) {
	relays := []relay{{event: "a", lost: "lost a"}, {event: "b", lost: "lost b"}}
	b := newBacklog(len(relays))
	if got := b.take(relays); len(got) != 0 {
		t.Fatalf("empty backlog gave %v", got)
	}
	b.push(1, "first")
	for i := range maxBacklog + 10 {
		b.push(0, i)
	}
	got := b.take(relays)
	if len(got) != maxBacklog+1 {
		t.Fatalf("took %d, want %d kept and one lost marker", len(got), maxBacklog+1)
	}
	if got[0] != (relayed{1, "first"}) || got[1] != (relayed{0, 0}) || got[maxBacklog-1] != (relayed{0, maxBacklog - 2}) {
		t.Errorf("kept %v … %v, want the oldest in order", got[:2], got[maxBacklog-1])
	}
	if got[maxBacklog] != (relayed{0, "lost a"}) {
		t.Errorf("last %v, want the lost marker of relay 0", got[maxBacklog])
	}
	if got := b.take(relays); len(got) != 0 {
		t.Errorf("second take gave %v, want nothing", got)
	}
	b.push(1, "again")
	if got := b.take(relays); len(got) != 1 || got[0] != (relayed{1, "again"}) {
		t.Errorf("after a drain: %v", got)
	}
}
