package webui

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/mesh"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

const (
	secretID  = "0000000000000000000000000000a003"
	historyID = "0000000000000000000000000000a004"
)

// browserChat is the chat of the browser tests: the fixture's general
// (joined, three messages) and random (not joined), plus secret (joined,
// burn after read, owned by bravo) and history (joined, 130 messages).
func browserChat(node *fakeNode) *fakeChat {
	chat := newFakeChat(node.id)
	bravo := fakeID("bravo")
	node.setRecords(mesh.Record{ID: bravo, Name: "bravo"}) // names come from the directory
	chat.addChannel(chatlog.ChannelInfo{ID: generalID, Name: "general", Owner: bravo, Joined: true, Members: 3,
		Range: chatlog.Range{Days: 30}})
	chat.addChannel(chatlog.ChannelInfo{ID: randomID, Name: "random", Owner: bravo, Members: 2})
	chat.addChannel(chatlog.ChannelInfo{ID: secretID, Name: "secret", Owner: bravo, Joined: true, Burn: true, Members: 2})
	chat.addChannel(chatlog.ChannelInfo{ID: historyID, Name: "history", Owner: node.id, Joined: true, Members: 1})
	start := time.Now().Add(-2 * time.Hour)
	for i, text := range []string{"hello everyone", "hi bravo", "<b>not bold</b> & fine\nsecond line"} {
		m := chatlog.Entry{Author: bravo, Text: text, Time: start.Add(time.Duration(i) * time.Minute)}
		if i == 1 {
			m.Author = node.id
		}
		chat.receive(generalID, m)
	}
	for i := range 130 {
		chat.receive(historyID, chatlog.Entry{Author: bravo, Text: "old " + strconv.Itoa(i),
			Time: start.Add(time.Duration(i) * time.Second)})
	}
	return chat
}

// chatPage starts the web UI of node with chat on loopback and a browser
// that speaks lang, and opens the page in it.
func chatPage(t *testing.T, node Node, chat Chat, lang string) context.Context {
	t.Helper()
	base := startServer(t, Config{Version: "test", Chat: chat}, node)
	ctx := browsertest.New(t)
	if err := browsertest.SetLanguage(ctx, lang); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// click clicks the element sel with the mouse, pointing at it first, as a
// user does: message actions show only on hover.
func click(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	browsertest.Until(t, ctx, 10*time.Second, fmt.Sprintf(`document.querySelector(%q) !== null`, sel))
	pt, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](fmt.Sprintf(`(() => {
		const el = document.querySelector(%q);
		el.scrollIntoView({ block: "nearest" });
		const r = el.getBoundingClientRect();
		return [r.x + r.width / 2, r.y + r.height / 2];
	})()`, sel)))
	if err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
	if err := chromedp.Do(ctx,
		chromedp.MouseEvent(chromedp.MouseMoved, pt[0], pt[1]),
		chromedp.MouseClickXY(pt[0], pt[1])); err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
}

// msgRow is a JS expression for the row of message id.
func msgRow(id string) string {
	return `document.querySelector('#chat-messages li[data-id="` + id + `"]')`
}

// openChannel clicks the channel id in the list and waits for its messages.
func openChannel(t *testing.T, ctx context.Context, id string) {
	t.Helper()
	click(t, ctx, `.chan[data-id="`+id+`"]`)
	browsertest.Until(t, ctx, 10*time.Second, `document.querySelector(".chan.active").dataset.id === "`+id+`"
		&& document.querySelector("#chat-placeholder").dataset.state === "ready"`)
	// It opens at the newest message.
	browsertest.Until(t, ctx, 10*time.Second, `(() => {
		const log = document.querySelector("#chat-log");
		return log.scrollHeight - log.scrollTop - log.clientHeight < 2;
	})()`)
}

// TestBrowserChat walks through the Chat view: channels, history, posting,
// retracting, marking, paging, settings and burn after read.
func TestBrowserChat(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	chat := browserChat(node)
	ctx := chatPage(t, node, chat, "en-US")
	const wait = 10 * time.Second

	browsertest.Until(t, ctx, wait, `document.querySelector('.nav-link[data-view="chat"]') !== null`)
	click(t, ctx, `.nav-link[data-view="chat"]`)
	browsertest.Until(t, ctx, wait, `document.querySelector("#chat-title").textContent === "Chat"
		&& document.querySelector('.nav-link[data-view="chat"]').getAttribute("aria-current") === "page"
		&& document.querySelector("#chat-pick") !== null`)
	// Joined channels by name, then the discoverable one with a Join button;
	// burn channels flagged.
	browsertest.Until(t, ctx, wait, `[...document.querySelectorAll("#chat-joined .chan-name")].map((e) => e.textContent).join(",") === "general,history,secret"
		&& document.querySelector('#chat-discover .chan[data-id="`+randomID+`"]').textContent.includes("random")
		&& document.querySelector('#chat-discover button[data-act="join"][data-id="`+randomID+`"]') !== null
		&& document.querySelector('.chan[data-id="`+secretID+`"] .burn-icon') !== null
		&& document.querySelector('.chan[data-id="`+generalID+`"] .burn-icon') === null`)
	screenshot(t, ctx, "chat-pick-en")

	// History, oldest first, text as text.
	openChannel(t, ctx, generalID)
	msgs := chat.channels[generalID].msgs
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#chat-messages .msg").length === 3
		&& document.querySelector("#chat-channel-name").textContent.includes("general")
		&& `+msgRow(msgs[0].ID)+`.querySelector(".msg-author").textContent === "bravo"
		&& `+msgRow(msgs[1].ID)+`.classList.contains("mine")
		&& `+msgRow(msgs[2].ID)+`.querySelector(".msg-text").textContent === "<b>not bold</b> & fine\nsecond line"
		&& `+msgRow(msgs[2].ID)+`.querySelector(".msg-text b") === null`)

	// Post from the composer: Enter sends, Shift+Enter is a new line. The
	// fake echoes the message as an event too; it shows once.
	if err := chromedp.Do(ctx,
		chromedp.SendKeys("#chat-input", "hi from alpha"),
		browsertest.Enter(chromedp.ModifierShift),
		chromedp.SendKeys("#chat-input", "<i>two</i>"),
		browsertest.Enter(0)); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#chat-messages .msg").length === 4
		&& document.querySelector("#chat-messages .msg:last-child .msg-text").textContent === "hi from alpha\n<i>two</i>"
		&& document.querySelector("#chat-messages .msg:last-child").classList.contains("mine")
		&& document.querySelector("#chat-input").value === ""`)
	posted := chat.channels[generalID].msgs[3]
	if posted.Text != "hi from alpha\n<i>two</i>" {
		t.Fatalf("posted %q", posted.Text)
	}

	// A message from someone else arrives live.
	live := chat.receive(generalID, chatlog.Entry{Author: fakeID("bravo"), Text: "welcome!"})
	browsertest.Until(t, ctx, wait, msgRow(live.ID)+` !== null && document.querySelectorAll("#chat-messages .msg").length === 5`)

	// Mark bravo's message; retract our own (it asks first). Someone
	// else's message has no retract button.
	browsertest.Until(t, ctx, wait, msgRow(msgs[0].ID)+`.querySelector('[data-act="retract"]') === null`)
	click(t, ctx, `#chat-messages li[data-id="`+msgs[0].ID+`"] [data-act="mark"]`)
	browsertest.Until(t, ctx, wait, msgRow(msgs[0].ID)+`.classList.contains("marked")
		&& `+msgRow(msgs[0].ID)+`.querySelector(".msg-pin") !== null
		&& `+msgRow(msgs[0].ID)+`.querySelector('[data-act="mark"]').textContent === "Unmark"`)
	if m, _ := chat.message(generalID, msgs[0].ID); !m.Marked {
		t.Error("mark did not reach the service")
	}
	retract := `#chat-messages li[data-id="` + posted.ID + `"] [data-act="retract"]`
	click(t, ctx, retract)
	browsertest.Until(t, ctx, wait, `document.querySelector('`+retract+`').textContent === "Retract for everyone?"`)
	if m, _ := chat.message(generalID, posted.ID); m.Retracted {
		t.Fatal("retracted on the first click")
	}
	screenshot(t, ctx, "chat-general-en")
	click(t, ctx, retract)
	browsertest.Until(t, ctx, wait, msgRow(posted.ID)+`.classList.contains("retracted")
		&& `+msgRow(posted.ID)+`.querySelector(".msg-text").textContent === "Message retracted"
		&& `+msgRow(posted.ID)+`.querySelector('[data-act="retract"]') === null`)
	if m, _ := chat.message(generalID, posted.ID); !m.Retracted {
		t.Error("retract did not reach the service")
	}
	// Unmark.
	click(t, ctx, `#chat-messages li[data-id="`+msgs[0].ID+`"] [data-act="mark"]`)
	browsertest.Until(t, ctx, wait, `!`+msgRow(msgs[0].ID)+`.classList.contains("marked")`)
	if m, _ := chat.message(generalID, msgs[0].ID); m.Marked {
		t.Error("unmark did not reach the service")
	}

	// Paging: the newest 100 first, then the rest.
	openChannel(t, ctx, historyID)
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#chat-messages .msg").length === 100
		&& document.querySelector("#chat-messages .msg .msg-text").textContent === "old 30"
		&& !document.querySelector("#chat-older").hidden`)
	click(t, ctx, "#chat-older")
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#chat-messages .msg").length === 130
		&& document.querySelector("#chat-messages .msg .msg-text").textContent === "old 0"
		&& document.querySelector("#chat-older").hidden`)

	// Settings of our own channel: the range, and the burn switch.
	click(t, ctx, "#chat-settings-btn")
	browsertest.Until(t, ctx, wait, `document.querySelector("#chat-burn") !== null`)
	if err := chromedp.Do(ctx,
		chromedp.SetValue("#chat-range-days", "7"),
		chromedp.SetValue("#chat-range-count", "500")); err != nil {
		t.Fatal(err)
	}
	click(t, ctx, "#chat-burn")
	screenshot(t, ctx, "chat-settings-en")
	click(t, ctx, "#chat-settings-save")
	browsertest.Until(t, ctx, wait, `document.querySelector("#chat-settings") === null
		&& document.querySelector("#chat-burn-badge") !== null`)
	if info := chat.channels[historyID].info; info.Range != (chatlog.Range{Days: 7, Count: 500}) || !info.Burn {
		t.Errorf("after saving settings: %+v, want 7 days, 500 messages, burn", info)
	}
	// On someone else's channel, burn is not ours to change.
	openChannel(t, ctx, generalID)
	click(t, ctx, "#chat-settings-btn")
	browsertest.Until(t, ctx, wait, `document.querySelector("#chat-settings") !== null
		&& document.querySelector("#chat-burn") === null
		&& document.querySelector("#chat-range-days").value === "30"
		&& document.querySelector("#chat-settings").textContent.includes("Only the owner, bravo")`)
	click(t, ctx, `#chat-settings [data-act="settings"]`)

	// Join the discoverable channel.
	click(t, ctx, `#chat-discover button[data-act="join"][data-id="`+randomID+`"]`)
	browsertest.Until(t, ctx, wait, `document.querySelector('#chat-joined .chan[data-id="`+randomID+`"]') !== null
		&& document.querySelector(".chan.active").dataset.id === "`+randomID+`"
		&& document.querySelector("#chat-no-messages, #chat-placeholder[data-state=ready]") !== null`)

	// Create a channel.
	if err := chromedp.Do(ctx, chromedp.SendKeys("#chat-new-name", "猫窝")); err != nil {
		t.Fatal(err)
	}
	click(t, ctx, "#chat-new-burn")
	click(t, ctx, "#chat-create-btn")
	browsertest.Until(t, ctx, wait, `document.querySelector(".chan.active .chan-name").textContent === "猫窝"
		&& document.querySelector(".chan.active .burn-icon") !== null
		&& document.querySelector("#chat-new-name").value === ""`)

	// Burn after read: a burn message shows, then goes once it has been in
	// view for BURN_AFTER, and the service is told.
	openChannel(t, ctx, secretID)
	// Measured from before the message exists, so a slow check or screenshot
	// cannot shorten the time it was visible: the page holds it ~5 s.
	sent := time.Now()
	burn := chat.receive(secretID, chatlog.Entry{Author: fakeID("bravo"), Text: "this will self-destruct", Burn: true})
	browsertest.Until(t, ctx, wait, msgRow(burn.ID)+` !== null && `+msgRow(burn.ID)+`.classList.contains("burn")`)
	screenshot(t, ctx, "chat-burn-en")
	if got := chat.readIDs(); len(got) != 0 {
		t.Fatalf("Read called at once: %v", got)
	}
	browsertest.Until(t, ctx, wait, msgRow(burn.ID)+` === null`)
	if d := time.Since(sent); d < 4500*time.Millisecond {
		t.Errorf("burn message gone after %v, want about 5 s", d)
	}
	if got := chat.readIDs(); !slices.Equal(got, []string{burn.ID}) {
		t.Errorf("Read called with %v, want [%s]", got, burn.ID)
	}
	// A burn message read elsewhere disappears here with the event.
	other := chat.receive(secretID, chatlog.Entry{Author: fakeID("bravo"), Text: "read on another device", Burn: true})
	browsertest.Until(t, ctx, wait, msgRow(other.ID)+` !== null`)
	if err := chat.Read(context.Background(), secretID, other.ID); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, msgRow(other.ID)+` === null`)

	// Leave.
	click(t, ctx, "#chat-leave")
	browsertest.Until(t, ctx, wait, `document.querySelector('#chat-discover .chan[data-id="`+secretID+`"]') !== null
		&& document.querySelector("#chat-not-joined") !== null`)

	if *screenshotDir != "" {
		openChannel(t, ctx, generalID)
		if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
		}); err != nil {
			t.Fatal(err)
		}
		screenshot(t, ctx, "chat-general-en-dark")
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844)); err != nil {
			t.Fatal(err)
		}
		screenshot(t, ctx, "chat-general-en-dark-narrow")
	}
}

// TestBrowserChatChinese checks the Chat view in Chinese.
func TestBrowserChatChinese(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	chat := browserChat(node)
	ctx := chatPage(t, node, chat, "zh-CN")
	const wait = 10 * time.Second

	click(t, ctx, `.nav-link[data-view="chat"]`)
	browsertest.Until(t, ctx, wait, `document.querySelector("#chat-title").textContent === "聊天"
		&& document.querySelector('.nav-link[data-view="chat"]').textContent === "聊天"
		&& document.querySelector("#chat-side .side-title").textContent === "我的频道"`)
	openChannel(t, ctx, generalID)
	browsertest.Until(t, ctx, wait, `document.querySelector("#chat-send").textContent === "发送"`)
	screenshot(t, ctx, "chat-general-zh")
}

// TestBrowserChatHidden checks that a node without chat offers no Chat view.
func TestBrowserChatHidden(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	ctx, _ := browserPage(t, node, "en-US")
	browsertest.Until(t, ctx, 10*time.Second, `document.documentElement.dataset.probed === "true"
		&& document.querySelectorAll(".nav-link").length === 2
		&& document.querySelector('.nav-link[data-view="chat"]') === null`)
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`location.hash = "#/chat"`)); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, 10*time.Second, `document.querySelector("#view").dataset.view === "peers"`)
}

// TestBrowserChatOpensChannel checks where the Chat view opens: on the only
// joined channel, and later on the channel used last; and that a channel
// another node creates shows up in the browse list, without a chat event,
// and can be joined from there.
func TestBrowserChatOpensChannel(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	chat := newFakeChat(node.id)
	bravo := fakeID("bravo")
	node.setRecords(mesh.Record{ID: bravo, Name: "bravo"}) // names come from the directory
	chat.addChannel(chatlog.ChannelInfo{ID: generalID, Name: "general", Owner: bravo, Joined: true, Members: 2})
	start := time.Now().Add(-time.Hour)
	for i := range 250 {
		chat.receive(generalID, chatlog.Entry{Author: bravo, Text: "line " + strconv.Itoa(i),
			Time: start.Add(time.Duration(i) * time.Second)})
	}
	base := startServer(t, Config{Version: "test", Chat: chat}, node)
	ctx := browsertest.New(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/#/chat")); err != nil {
		t.Fatal(err)
	}
	const wait = 10 * time.Second

	// The only joined channel opens by itself, at its newest message.
	browsertest.Until(t, ctx, wait, `document.querySelector(".chan.active") !== null
		&& document.querySelector(".chan.active").dataset.id === "`+generalID+`"
		&& document.querySelector("#chat-pick") === null
		&& document.querySelector("#chat-placeholder").dataset.state === "ready"
		&& document.querySelectorAll("#chat-messages .msg").length === 100
		&& document.querySelector("#chat-messages .msg:last-child .msg-text").textContent === "line 249"`)
	browsertest.Until(t, ctx, wait, `document.querySelector("#chat-discover") === null`)

	// Other nodes create channels: they come with the directory, which
	// raises no chat event, and show in the browse list.
	const musicID = "0000000000000000000000000000a005"
	for i := range 30 {
		id := fmt.Sprintf("00000000000000000000000000000b%02d", i)
		chat.addChannel(chatlog.ChannelInfo{ID: id, Name: fmt.Sprintf("room %02d", i), Owner: bravo, Members: 1 + i%4})
	}
	chat.addChannel(chatlog.ChannelInfo{ID: musicID, Name: "music", Owner: bravo, Members: 3})
	chat.mu.Lock() // history that arrives with the join: no event
	chat.channels[musicID].msgs = append(chat.channels[musicID].msgs, chatlog.Entry{ID: "music-1", Channel: musicID,
		Author: bravo, Text: "welcome to music", Time: time.Now()})
	chat.mu.Unlock()
	node.setRecords(fakeRecord("bravo", time.Now(), map[string]string{"chat": `{"n":31}`}))
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#chat-discover .chan").length === 31
		&& document.querySelector('#chat-discover .chan[data-id="`+musicID+`"]').textContent.includes("music")
		&& document.querySelector(".chan.active").dataset.id === "`+generalID+`"`)
	screenshot(t, ctx, "chat-browse-en")

	// Join from the browse list: the channel moves to the joined ones and
	// opens, with its history.
	click(t, ctx, `#chat-discover button[data-act="join"][data-id="`+musicID+`"]`)
	browsertest.Until(t, ctx, wait, `document.querySelector('#chat-joined .chan[data-id="`+musicID+`"]') !== null
		&& document.querySelector('#chat-discover .chan[data-id="`+musicID+`"]') === null
		&& document.querySelector(".chan.active").dataset.id === "`+musicID+`"
		&& document.querySelector("#chat-messages .msg .msg-text").textContent === "welcome to music"`)
	chat.mu.Lock()
	joined := chat.channels[musicID].info.Joined
	chat.mu.Unlock()
	if !joined {
		t.Fatal("the join did not reach the service")
	}

	// With two joined channels, a reload opens the one used last.
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, `document.querySelector(".chan.active") !== null
		&& document.querySelector(".chan.active").dataset.id === "`+musicID+`"
		&& document.querySelector("#chat-messages .msg .msg-text").textContent === "welcome to music"`)
	openChannel(t, ctx, generalID)
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, `document.querySelector(".chan.active") !== null
		&& document.querySelector(".chan.active").dataset.id === "`+generalID+`"
		&& document.querySelectorAll("#chat-messages .msg").length === 100`)

	// Members come and go while the user types: the channel's header
	// changes with the directory, and the half-typed message keeps its
	// text and the focus.
	browsertest.Until(t, ctx, wait, `(() => {
		const log = document.querySelector("#chat-log");
		return log.scrollTop > 0 && log.scrollHeight - log.scrollTop - log.clientHeight < 8;
	})()`)
	click(t, ctx, "#chat-input")
	if err := chromedp.Do(ctx, chromedp.KeyEvent("half typed")); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, `document.activeElement === document.querySelector("#chat-input")
		&& document.querySelector("#chat-input").value === "half typed"`)
	chat.mu.Lock()
	chat.channels[generalID].info.Members = 7
	chat.mu.Unlock()
	node.setRecords(fakeRecord("bravo", time.Now(), map[string]string{"chat": `{"n":32}`}), fakeRecord("charlie", time.Now(), nil))
	browsertest.Until(t, ctx, wait, `document.querySelector("#chat-channel-name").parentElement.textContent.includes("7 members")`)
	// and the log stays where it was, at the newest message.
	atBottom, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
		const log = document.querySelector("#chat-log");
		return log.scrollTop > 0 && log.scrollHeight - log.scrollTop - log.clientHeight < 8;
	})()`))
	if err != nil || !atBottom {
		t.Errorf("the log left the newest message when the header changed (%v)", err)
	}
	// Keys go where the focus is, as a user's do.
	if err := chromedp.Do(ctx, chromedp.KeyEvent(" and more")); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, `document.activeElement === document.querySelector("#chat-input")
		&& document.querySelector("#chat-input").value === "half typed and more"`)
}

// TestBrowserChatOlderAfterLateMessage: a message older than the oldest
// shown comes late (a node back online had it). The view shows it in its
// place, and the next "older" read starts from the oldest message read in
// a page, not from it: none of the messages between is skipped.
func TestBrowserChatOlderAfterLateMessage(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	chat := newFakeChat(node.id)
	chat.addChannel(chatlog.ChannelInfo{ID: generalID, Name: "general", Joined: true, Members: 2})
	start := time.Now().Add(-time.Hour)
	var want []string
	for i := range 130 {
		text := "old " + strconv.Itoa(i)
		chat.receive(generalID, chatlog.Entry{Author: fakeID("bravo"), Text: text, Time: start.Add(time.Duration(i) * time.Second)})
		want = append(want, text)
		if i == 20 {
			want = append(want, "late")
		}
	}
	ctx, _ := holdingPage(t, node, Config{Chat: chat}, "en-US", "chat", false)
	const wait = 10 * time.Second
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#chat-messages .msg").length === 100
		&& !document.querySelector("#chat-older").hidden`)
	// Between "old 20" and "old 21", older than all 100 shown.
	late := chat.receive(generalID, chatlog.Entry{Author: fakeID("bravo"), Text: "late", Time: start.Add(20*time.Second + 500*time.Millisecond)})
	browsertest.Until(t, ctx, wait, msgRow(late.ID)+` !== null`)
	click(t, ctx, "#chat-older")
	texts := `[...document.querySelectorAll("#chat-messages .msg .msg-text")].map((e) => e.textContent).join("|")`
	browsertest.Until(t, ctx, wait, `!document.querySelector("#chat-older").disabled`)
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](texts))
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(want, "|"); got != w {
		t.Fatalf("after a late old message and one older page, the log is\n%s\nwant\n%s", got, w)
	}
}
