package webui

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"

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
