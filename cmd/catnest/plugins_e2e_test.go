package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/music"
	"github.com/catnest/catnest/plugins"
	"github.com/catnest/catnest/plugins/examples"
)

// meshOf runs a rendezvous and the named nodes in this process over real
// WebRTC on loopback, until the test ends.
func meshOf(t *testing.T, names ...string) map[string]*node {
	t.Helper()
	return meshWith(t, nil, names...)
}

// meshWith is meshOf with each node's config changed by set, if not nil.
func meshWith(t *testing.T, set func(name string, c *ServeConfig), names ...string) map[string]*node {
	t.Helper()
	signalURL := fmt.Sprintf("http://127.0.0.1:%d/", runSignal(t, "--allow-discovery"))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	nodes := map[string]*node{}
	for _, name := range names {
		cfg := ServeConfig{Data: filepath.Join(t.TempDir(), name), HTTP: "127.0.0.1:0", SignalURL: signalURL,
			SignalKey: "peerjs", Name: name, LoopbackOnly: true}
		if set != nil {
			set(name, &cfg)
		}
		n, err := newNode(cfg, newLogger(false).With("test", name))
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

// runSignal runs a rendezvous (`catnest signal` with args) in this
// process on a free loopback port until the test ends, and returns the
// port.
func runSignal(t testing.TB, args ...string) int {
	t.Helper()
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		if err := run(ctx, append([]string{"signal", "--host", "127.0.0.1", "--port", fmt.Sprint(port)}, args...), io.Discard, io.Discard); err != nil {
			t.Errorf("signal: %v", err)
		}
	})
	return port
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
		grantAll(t, bctx, fmt.Sprintf(`#plugins-market li[data-id="%s"][data-publisher="%s"] button[data-act="install"]`, e.ID, alice.mesh.ID()))
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

// TestBrowserPluginExamples runs the three example plugins in bob's web
// UI, installed from the market as a user would: playing a track with
// lyrics, Karaoke shows the line being sung in its panel and Now playing
// announces the track in the channel; Word filter hides a message with
// "spoiler" in the Chat view and opens its panel from its toolbar button.
func TestBrowserPluginExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node and a browser")
	}
	lib := t.TempDir()
	track, _ := writeChords(t, lib, "song", shortChords("Plugin Song", "Ann", 4))
	bob := meshWith(t, func(_ string, c *ServeConfig) { c.Music = []string{lib} }, "bob")["bob"]
	ctx := context.Background()
	lobby, err := bob.chat.CreateChannel(ctx, "lobby", false)
	if err != nil {
		t.Fatal(err)
	}
	names, files := examples.Files()
	byName := map[string]plugins.Entry{}
	for _, n := range names {
		e, err := bob.plugins.Publish(ctx, files[n])
		if err != nil {
			t.Fatal(err)
		}
		byName[e.Name] = e
	}
	const wait = 60 * time.Second
	testutil.WaitFor(t, wait, "bob's track in his library", func() bool {
		all, _ := bob.music.Tracks(ctx, false)
		return slices.ContainsFunc(all, func(tr music.Track) bool { return tr.MD5 == track && tr.HasLyrics })
	})

	bctx := browsertest.NewFor(t, 3*time.Minute)
	if err := chromedp.Do(bctx, chromedp.Navigate(bob.url+"#/plugins")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Karaoke", "Now playing", "Word filter"} {
		e := byName[name]
		grantAll(t, bctx, fmt.Sprintf(`#plugins-market li[data-id="%s"] button[data-act="install"]`, e.ID))
		testutil.WaitFor(t, wait, name+" installed", func() bool {
			all, _ := bob.plugins.Installed(ctx)
			return slices.ContainsFunc(all, func(p plugins.Installed) bool { return p.ID == e.ID && p.Enabled })
		})
	}
	clickSel(t, bctx, `#plugins-tab-installed`)
	browsertest.Until(t, bctx, wait, `[...document.querySelectorAll('#plugins-installed > li')].map((li) => li.dataset.state).join() === "running,running,running"`)

	// Karaoke shows the line being sung; Now playing announces the track.
	karaoke := byName["Karaoke"].ID
	clickSel(t, bctx, `.nav-link[data-view="music"]`)
	clickSel(t, bctx, `#music-list .music-track[data-id="`+track.String()+`"] .music-name`)
	browsertest.Until(t, bctx, wait, fmt.Sprintf(`!document.querySelector('section.plugin-panel[data-plugin="%s"]').hidden`, karaoke))
	frameText(t, bctx, wait, "Ann plays ")
	testutil.WaitFor(t, wait, "Now playing's post", func() bool {
		ms, _ := bob.chat.Messages(ctx, lobby.ID, time.Time{}, 100)
		return slices.ContainsFunc(ms, func(m chatlog.Entry) bool { return m.Text == "🎵 Now playing: Plugin Song — Ann" })
	})

	// Word filter hides a message with "spoiler" and not the others; its
	// toolbar button opens its panel.
	filter := byName["Word filter"].ID
	clickSel(t, bctx, `.nav-link[data-view="chat"]`)
	clickSel(t, bctx, fmt.Sprintf(`.chan[data-id="%s"]`, lobby.ID))
	spoiler, err := bob.chat.Post(ctx, lobby.ID, "SPOILER: it was the cat")
	if err != nil {
		t.Fatal(err)
	}
	plain, err := bob.chat.Post(ctx, lobby.ID, "no secrets here")
	if err != nil {
		t.Fatal(err)
	}
	row := func(id string) string { return fmt.Sprintf(`document.querySelector('li.msg[data-id="%s"]')`, id) }
	browsertest.Until(t, bctx, wait, row(plain.ID)+` !== null && !`+row(plain.ID)+`.hidden && `+row(spoiler.ID)+` !== null && `+row(spoiler.ID)+`.hidden`)
	clickSel(t, bctx, fmt.Sprintf(`#plugin-toolbar button[data-plugin="%s"]`, filter))
	browsertest.Until(t, bctx, wait, fmt.Sprintf(`!document.querySelector('section.plugin-panel[data-plugin="%s"]').hidden`, filter))
	frameText(t, bctx, wait, "Hide messages containing")

	// Try in the editor: the tried plugin runs with the grants given, in
	// a panel with a toolbar button and storage of its own; when it loops
	// for good, the page goes on and the host stops it.
	if err := chromedp.Do(bctx, chromedp.Navigate(bob.url+"#/plugins")); err != nil {
		t.Fatal(err)
	}
	clickSel(t, bctx, `#plugins-tab-editor`)
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](fmt.Sprintf(`(() => {
		const ta = document.querySelector('textarea#plugin-editor');
		ta.value = %q;
		ta.dispatchEvent(new Event('input'));
		return true;
	})()`, loopPlugin))); err != nil {
		t.Fatal(err)
	}
	grantAll(t, bctx, `#plugin-try`)
	frameText(t, bctx, wait, "stored 42")
	clickSel(t, bctx, `#plugin-toolbar button[data-plugin^="try-"]`)
	// The page answers while the plugin loops, until the host stops it.
	browsertest.Until(t, bctx, wait, `document.querySelector('iframe[data-plugin^="try-"]') === null
		&& document.querySelector('#plugin-toolbar button[data-plugin^="try-"]') === null`)
	// The installed plugins, silenced with it (they share its process),
	// start again.
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`(scrollTo(0, 0), true)`)); err != nil {
		t.Fatal(err)
	}
	clickSel(t, bctx, `#plugins-tab-installed`)
	browsertest.Until(t, bctx, wait, `[...document.querySelectorAll('#plugins-installed > li')].map((li) => li.dataset.state).join() === "running,running,running"`)
	frameText(t, bctx, wait, "Hide messages containing")
}

// loopPlugin, tried in the editor, shows its panel and a button and
// keeps a value; a click on its button sends it into an endless loop.
const loopPlugin = `// ==CatnestPlugin==
// @name        Looper
// @description Loops for good when its button is clicked.
// @version     0.1.0
// @permissions storage ui-panel
// ==/CatnestPlugin==
export default class Looper {
  constructor(api) { this.api = api; }
  async start() {
    await this.api.storage.set('n', '42');
    document.body.textContent = 'stored ' + await this.api.storage.get('n');
    await this.api.ui.showPanel({ height: 60, title: 'Looper' });
    await this.api.ui.setButton({ label: 'Loop' });
  }
  onToolbarClick() { for (;;) {} }
}
`

// grantAll clicks the button sel, which opens the grant dialog, and
// grants everything asked. The button goes mid-screen first: the player
// bar and toasts cover the foot of the page, and a click that lands on
// them is lost. The market list is drawn anew when it changes (the last
// install, a market event), and when that falls between the press and
// the release, the click is lost too: it is made again until the dialog
// opens (the click opens it at once; once open, the page behind it takes
// no clicks). The dialog of an earlier grant stays in the page, closed.
func grantAll(t *testing.T, bctx context.Context, sel string) {
	t.Helper()
	const open = `document.querySelector("#plugin-grant[open]") !== null`
	testutil.WaitFor(t, time.Minute, "the grant dialog of "+sel, func() bool {
		if browsertest.Wait(bctx, 10*time.Second, fmt.Sprintf(`document.querySelector(%q) !== null`, sel)) != nil {
			return false
		}
		if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](fmt.Sprintf(`(document.querySelector(%q).scrollIntoView({ block: "center" }), true)`, sel))); err != nil {
			return false
		}
		clickSel(t, bctx, sel)
		return browsertest.Wait(bctx, 5*time.Second, open) == nil
	})
	clickSel(t, bctx, `#plugin-grant[open] #plugin-grant-ok`)
	browsertest.Until(t, bctx, 30*time.Second, `!document.querySelector("#plugin-grant").open`)
}

// frameText waits until the text of a plugin's frame contains want.
// The frame is out of the page's reach (its origin is opaque); the test
// reads it through the browser's own protocol, as a debugger would.
func frameText(t *testing.T, bctx context.Context, wait time.Duration, want string) {
	t.Helper()
	testutil.WaitFor(t, wait, fmt.Sprintf("%q in a plugin's frame", want), func() bool {
		ts, err := chromedp.Targets(bctx)
		if err != nil {
			return false
		}
		for _, ti := range ts {
			if ti.Type != "iframe" || !strings.HasSuffix(ti.URL, "/api/plugins/frame") {
				continue
			}
			fctx, cancel := chromedp.NewContext(bctx, chromedp.WithTargetID(ti.TargetID), chromedp.WithDetachOnCancel())
			got, err := chromedp.Run(fctx, chromedp.Evaluate[string](`document.body.innerText`))
			cancel()
			if err == nil && strings.Contains(got, want) {
				return true
			}
		}
		return false
	})
}
