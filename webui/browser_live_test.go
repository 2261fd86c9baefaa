package webui

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/internal/browsertest"
)

// TestBrowserLiveRoomsAtOpen: the Live view, opened after the event
// stream sent the room list, shows the rooms at once, not after the
// stream's next snapshot (here: none for an hour).
func TestBrowserLiveRoomsAtOpen(t *testing.T) {
	checkGoroutines(t)
	s, err := New(Config{Addr: "127.0.0.1:0", Version: "test", Live: &fakeLive{}}, newFakeNode("alpha"))
	if err != nil {
		t.Fatal(err)
	}
	s.timing.refresh = time.Hour
	base, _ := serve(t, s)
	ctx := browsertest.New(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	const wait = 10 * time.Second
	browsertest.Until(t, ctx, wait, `document.querySelector('.nav-link[data-view="live"]') !== null
		&& document.querySelector("#conn").dataset.state === "open"`)
	click(t, ctx, `.nav-link[data-view="live"]`)
	browsertest.Until(t, ctx, wait, `document.querySelector('#live-rooms li[data-id="r1"] .live-title')?.textContent === "room"`)
}

// TestBrowserLiveChatHeldGET: the Live view reads its room's chat again on
// every chat event. Going live (from OBS: no capture) reads it first; that
// read is on its way when a message comes, whose event starts another read
// that answers first. The older answer, coming last, must not take the
// message away.
func TestBrowserLiveChatHeldGET(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	chat := newFakeChat(node.id)
	chatID := fmt.Sprintf("%032x", 1) // the fake's first channel: the room's
	path := "/api/channels/" + chatID + "/messages"
	ctx, holds := holdingPage(t, node, Config{Live: &fakeLive{}, Chat: chat}, "en-US", "live", true, path)
	const wait = 10 * time.Second
	held := holds[path]
	browsertest.Until(t, ctx, wait, `document.querySelector("#live-form") !== null`)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
		document.querySelector("#live-title").value = "cats";
		document.querySelector("#live-source").value = "obs";
		document.querySelector("#live-form").requestSubmit();
		return true; })()`)); err != nil {
		t.Fatal(err)
	}
	held.wait(t, wait) // it has read no message

	chat.receive(chatID, chatlog.Entry{Author: fakeID("bravo"), Text: "hello from bravo"})
	msgs := `[...document.querySelectorAll(".live-messages li")].map((e) => e.textContent).join("|")`
	browsertest.Until(t, ctx, wait, msgs+`.includes("hello from bravo")`)
	held.letGoAndWait(t, ctx, "readLiveChat", wait)
	checkJS(t, ctx, msgs+`.includes("hello from bravo")`,
		"the Live view's first read of the room's chat, answered before a message came and read after the next read, took the message away")
}

// pionAnswer answers a browser's WHEP offer with a pion peer that sends
// nothing, on loopback only, closed when the test ends: enough for the
// page to be watching.
func pionAnswer(t *testing.T) func(offer string) (string, error) {
	return func(offer string) (string, error) {
		var se webrtc.SettingEngine
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			return "", err
		}
		t.Cleanup(func() { pc.Close() })
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
			return "", err
		}
		ans, err := pc.CreateAnswer(nil)
		if err != nil {
			return "", err
		}
		gathered := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(ans); err != nil {
			return "", err
		}
		<-gathered
		return pc.LocalDescription().SDP, nil
	}
}

// TestBrowserLiveTreeHeldGET: the Live view polls the relay tree of the
// room it watches every 2 s. A poll is held while a node joins below this
// one, and the next poll, which sees it, answers first. The older answer,
// coming last, must not take the child away.
func TestBrowserLiveTreeHeldGET(t *testing.T) {
	checkGoroutines(t)
	fl := &fakeLive{answer: pionAnswer(t)}
	path := "/api/live/rooms/r1/tree"
	ctx, holds := holdingPage(t, newFakeNode("alpha"), Config{Live: fl}, "en-US", "live", true, path)
	const wait = 10 * time.Second
	held := holds[path]
	click(t, ctx, `#live-rooms li[data-id="r1"] .live-watch`)
	held.wait(t, wait) // it has read no child

	fl.setChildren(fakeID("bravo"))
	tree := `document.querySelector("#live-tree")?.textContent`
	browsertest.Until(t, ctx, wait, tree+` === "This node hosts the room; 1 child nodes"`)
	held.letGoAndWait(t, ctx, "readTree", wait)
	checkJS(t, ctx, tree+` === "This node hosts the room; 1 child nodes"`,
		"a poll of the relay tree, answered before a child joined and read after the next poll, took the child away")
}
