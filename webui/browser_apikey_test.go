package webui

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/internal/browsertest"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestBrowserAPIKeySettings checks that the UI's settings show the API key,
// hidden until asked, with curl examples.
func TestBrowserAPIKeySettings(t *testing.T) {
	checkGoroutines(t)
	base := startServer(t, Config{Version: "test", APIKey: testAPIKey}, newFakeNode("alpha"))
	ctx := browsertest.New(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	const wait = 10 * time.Second
	click(t, ctx, `.nav-link[data-view="settings"]`)
	browsertest.Until(t, ctx, wait, `document.querySelector("#apikey-value") !== null
		&& /^•{26}$/.test(document.querySelector("#apikey-value").textContent)
		&& !document.querySelector("#apikey-example").textContent.includes("`+testAPIKey+`")`)
	click(t, ctx, "#apikey-show")
	browsertest.Until(t, ctx, wait, `document.querySelector("#apikey-value").textContent === "`+testAPIKey+`"
		&& document.querySelector("#apikey-example").textContent.includes('curl -H "X-API-Key: `+testAPIKey+`" `+base+`/api/channels')`)
	screenshot(t, ctx, "settings-en")
}

// TestBrowserCrossSiteRefused opens a page of another site on this machine
// (another port of 127.0.0.1, so the browser sends the node's SameSite
// cookie along) that tries to post in a channel, with a fetch and with the
// request a form would send, and to read the API key. The node refuses all of
// it, although the requests carry its token cookie.
func TestBrowserCrossSiteRefused(t *testing.T) {
	checkGoroutines(t)
	const token = "browser-token-0123456789"
	node := newFakeNode("alpha")
	chat := newFakeChat(node.id)
	chat.addChannel(chatlog.ChannelInfo{ID: generalID, Name: "general", Owner: node.id, Joined: true})
	// Off loopback, so that the browser holds the token cookie.
	s, err := New(Config{Addr: "0.0.0.0:7070", Token: token, APIKey: testAPIKey, Chat: chat}, node)
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		method, path, origin string
		cookie               bool
		status               int
	}
	var mu sync.Mutex
	var reqs []seen
	nodeSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		s.Handler().ServeHTTP(rec, r)
		_, err := r.Cookie(tokenCookie)
		mu.Lock()
		reqs = append(reqs, seen{r.Method, r.URL.Path, r.Header.Get("Origin"), err == nil, rec.status})
		mu.Unlock()
	}))
	defer nodeSrv.Close()
	target := nodeSrv.URL + "/api/channels/" + generalID + "/messages"
	// The second POST is what a form with enctype text/plain sends (no
	// preflight, an opaque answer), made with fetch so that the page stays
	// in place for the test to read.
	page := `<!doctype html><title>evil</title>
<script>
window.results = {};
(async () => {
  try {
    await fetch("` + target + `", {method: "POST", credentials: "include", headers: {"Content-Type": "text/plain"}, body: '{"text":"csrf by fetch"}'});
    window.results.post = "sent";
  } catch (e) { window.results.post = "failed"; }
  try {
    const res = await fetch("` + nodeSrv.URL + `/api/apikey", {credentials: "include"});
    window.results.key = await res.text();
  } catch (e) { window.results.key = "failed"; }
  try {
    await fetch("` + target + `", {method: "POST", mode: "no-cors", credentials: "include", headers: {"Content-Type": "text/plain"}, body: '{"text":"csrf like a form"}'});
    window.results.form = "sent";
  } catch (e) { window.results.form = "failed"; }
})();
</script>`
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page)
	}))
	defer evil.Close()

	ctx := browsertest.New(t)
	const wait = 10 * time.Second
	// The user opened the node's UI with its token: the browser holds the
	// cookie the node set then.
	yes := true
	if _, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{
		Name: tokenCookie, Value: token, URL: nodeSrv.URL + "/", HTTPOnly: &yes, SameSite: network.CookieSameSiteStrict,
	}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(evil.URL+"/")); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, `window.results && window.results.form !== undefined && window.results.key !== undefined`)
	key, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.results.key`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(key, testAPIKey) {
		t.Fatalf("a page of another site read the API key: %s", key)
	}

	chat.mu.Lock()
	n := len(chat.channels[generalID].msgs)
	chat.mu.Unlock()
	if n != 0 {
		t.Fatalf("a page of another site posted %d messages", n)
	}
	// The requests did reach the node, with the cookie, and were refused.
	mu.Lock()
	defer mu.Unlock()
	var posts, keys int
	for _, r := range reqs {
		switch {
		case r.method == "POST":
			posts++
			if !r.cookie || r.origin != evil.URL || r.status != http.StatusForbidden {
				t.Errorf("cross-site POST: %+v, want it with the cookie and Origin %s, refused with 403", r, evil.URL)
			}
		case r.path == "/api/apikey":
			keys++
			if !r.cookie || r.status != http.StatusForbidden {
				t.Errorf("cross-site key read: %+v, want it with the cookie, refused with 403", r)
			}
		}
	}
	if posts != 2 || keys != 1 {
		t.Errorf("the node saw %d POSTs and %d key reads, want 2 and 1: %+v", posts, keys, reqs)
	}
}

// statusRecorder remembers the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}
