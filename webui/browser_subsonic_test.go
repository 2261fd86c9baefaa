package webui

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/music"
	"github.com/catnest/catnest/subsonic"
)

// heldNowPlaying answers the first now-playing GET with the list as it
// was when the GET came in, but only once the test lets it go: the page
// then holds an answer older than what events told it since.
type heldNowPlaying struct {
	*subsonic.Service
	once    sync.Once
	entered chan struct{} // closed when the first GET has read its list
	release chan struct{}
}

func (h *heldNowPlaying) NowPlaying(ctx context.Context) ([]subsonic.NowPlaying, error) {
	l, err := h.Service.NowPlaying(ctx)
	first := false
	h.once.Do(func() { first = true })
	if first {
		close(h.entered)
		select {
		case <-h.release:
		case <-ctx.Done():
		}
	}
	return l, err
}

// TestBrowserSubsonic: the Settings view sets the login of Subsonic
// apps, and the Music view shows what an app plays as soon as it says so.
func TestBrowserSubsonic(t *testing.T) {
	checkGoroutines(t)
	m := newFakeMusic()
	tr := m.add(music.Track{Title: "Purr Song", Artist: "Cats", Album: "LP", Format: "mp3", Duration: 200}, []byte("audio"))
	ss := newSubsonic(t, m)
	held := &heldNowPlaying{Service: ss, entered: make(chan struct{}), release: make(chan struct{})}
	var releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(held.release) }) }
	t.Cleanup(letGo)
	base := startServer(t, Config{Version: "test", APIKey: testAPIKey, Music: m, Subsonic: held}, newFakeNode("alpha"))
	ctx := browsertest.New(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	const wait = 10 * time.Second
	click(t, ctx, `.nav-link[data-view="settings"]`)
	browsertest.Until(t, ctx, wait, `document.querySelector("#subsonic-state")?.textContent.includes("ann")
		&& document.querySelector("#settings-subsonic").textContent.includes("`+base+`")
		&& !document.querySelector("#settings-subsonic").textContent.includes("`+base+`/rest")`)
	if err := chromedp.Do(ctx, chromedp.SetValue("#subsonic-user", "bo"), chromedp.SendKeys("#subsonic-password", "new pw")); err != nil {
		t.Fatal(err)
	}
	click(t, ctx, "#subsonic-save")
	browsertest.Until(t, ctx, wait, `document.querySelector("#subsonic-state")?.textContent.includes("bo")
		&& document.querySelector("#subsonic-password").value === ""`)
	if u, set, _ := ss.Credentials(context.Background()); u != "bo" || !set {
		t.Fatalf("after saving in Settings: user %q, password set %v", u, set)
	}
	screenshot(t, ctx, "settings-subsonic")

	// The "saved" toast may cover the navigation: go by the address.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`location.hash = "#/music"`)); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, `document.querySelector("#music-nowplaying")?.hidden === true`)
	select {
	case <-held.entered:
	case <-time.After(wait):
		t.Fatal("the Music view did not ask for the now-playing list")
	}
	q := url.Values{"u": {"bo"}, "p": {"new pw"}, "f": {"json"}, "id": {tr.MD5.String()}, "submission": {"false"}, "c": {"Symfonium"}}
	resp, err := http.Get(base + "/rest/scrobble?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	browsertest.Until(t, ctx, wait, `!document.querySelector("#music-nowplaying").hidden
		&& document.querySelector("#music-nowplaying").textContent.includes("Purr Song")
		&& document.querySelector("#music-nowplaying").textContent.includes("Symfonium")`)
	// The GET that started before the scrobble now answers with the
	// empty list it read then; the page keeps what the event said.
	letGo()
	browsertest.Until(t, ctx, wait, `document.querySelector("#music-nowplaying").dataset.loads === "1"`)
	shown, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!document.querySelector("#music-nowplaying").hidden
		&& document.querySelector("#music-nowplaying").textContent.includes("Purr Song")`))
	if err != nil {
		t.Fatal(err)
	}
	if !shown {
		t.Fatal("an older now-playing answer read after the event hid what the app plays")
	}
	screenshot(t, ctx, "music-nowplaying")
}
