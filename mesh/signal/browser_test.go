package signal_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/internal/peerjstest"
	"github.com/catnest/catnest/mesh/signal"
)

// browserPage is the test page. The Go test calls its functions one step
// at a time and polls window.t, where the page records what happened.
const browserPage = `<!doctype html>
<meta charset="utf-8">
<title>PeerJS against catnest</title>
<script id="cfg" type="application/json">%s</script>
<script src="/peerjs.min.js"></script>
<script>
"use strict";
const cfg = JSON.parse(document.getElementById("cfg").textContent);
// opened: id by peer name; errors: {type, msg} by peer name; log: events.
window.t = {log: [], opened: {}, errors: {}, bobGot: null, aliceGot: null, bobFrom: null,
            bobReliable: null, aliceConnOpen: false};
function log(...a) { t.log.push(a.map(String).join(" ")); }
window.addEventListener("error", e => log("page error:", e.message));
function options(key) {
  // No STUN or TURN: the test has no internet, and loopback needs none.
  return {host: "127.0.0.1", port: cfg.port, path: cfg.path, key, secure: false,
          config: {iceServers: []}, debug: 2};
}
function watch(name, peer) {
  peer.on("open", id => { t.opened[name] = id; log(name, "open", id); });
  peer.on("error", e => { t.errors[name] = {type: e.type, msg: String(e.message)}; log(name, "error", e.type, e.message); });
  peer.on("disconnected", () => log(name, "disconnected"));
  peer.on("close", () => log(name, "close"));
  return peer;
}
window.peers = {};

window.start = () => {
  peers.alice = watch("alice", new Peer(cfg.alice, options(cfg.key)));
  peers.bob = watch("bob", new Peer(cfg.bob, options(cfg.key)));
  peers.bob.on("connection", c => {
    log("bob: connection from", c.peer, "reliable", c.reliable);
    t.bobFrom = c.peer;
    t.bobReliable = c.reliable;
    c.on("open", () => log("bob: connection open"));
    c.on("data", d => { t.bobGot = d; log("bob got", JSON.stringify(d)); c.send(cfg.reply); });
    c.on("error", e => log("bob: connection error", e.type, e.message));
  });
};

window.connect = () => {
  const c = peers.alice.connect(cfg.bob, {reliable: true});
  c.on("open", () => { t.aliceConnOpen = true; log("alice: connection open"); c.send(cfg.hello); });
  c.on("data", d => { t.aliceGot = d; log("alice got", JSON.stringify(d)); });
  c.on("error", e => log("alice: connection error", e.type, e.message));
  c.on("iceStateChanged", s => log("alice: ice", s));
};

window.refused = () => {
  // A fresh Peer object has a fresh token, so alice's id is taken for it.
  peers.dup = watch("dup", new Peer(cfg.alice, options(cfg.key)));
  peers.badkey = watch("badkey", new Peer(cfg.carol, options(cfg.key + "-wrong")));
};

window.stop = () => { peers.alice.destroy(); peers.bob.destroy(); };
</script>
<p>PeerJS against catnest</p>
`

// pageConfig is what the page reads from its #cfg script.
type pageConfig struct {
	Port  int    `json:"port"`
	Path  string `json:"path"`
	Key   string `json:"key"`
	Alice string `json:"alice"`
	Bob   string `json:"bob"`
	Carol string `json:"carol"`
	Hello string `json:"hello"`
	Reply string `json:"reply"`
}

// pageState mirrors window.t.
type pageState struct {
	Log         []string             `json:"log"`
	Opened      map[string]string    `json:"opened"`
	Errors      map[string]peerError `json:"errors"`
	BobGot      any                  `json:"bobGot"`
	AliceGot    any                  `json:"aliceGot"`
	BobFrom     string               `json:"bobFrom"`
	BobReliable bool                 `json:"bobReliable"`
}

type peerError struct {
	Type string `json:"type"`
	Msg  string `json:"msg"`
}

// TestPeerJSBrowserClient runs the real PeerJS browser client (npm peerjs)
// in headless Chromium against our Server: two Peers register, open a
// reliable DataConnection through the server's relay of OFFER, ANSWER and
// CANDIDATE, and exchange a message each way; a Peer asking for a taken id
// and one with a wrong key are refused the way PeerJS understands.
func TestPeerJSBrowserClient(t *testing.T) {
	script := peerjstest.ClientScript(t)

	const path, key = "/myapp", "peerjs"
	srv := signal.NewServer(signal.ServerConfig{
		Key:            key,
		Path:           path,
		AllowDiscovery: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvCtx, stopSrv := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(srvCtx, ln) }()
	// Registered before the browser's cleanup, so it runs after it.
	t.Cleanup(func() {
		stopSrv()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	suffix := rand.Text()[:8]
	cfg := pageConfig{
		Port:  ln.Addr().(*net.TCPAddr).Port,
		Path:  path,
		Key:   key,
		Alice: "alice-" + suffix,
		Bob:   "bob-" + suffix,
		Carol: "carol-" + suffix,
		Hello: "hello from alice " + suffix,
		Reply: "hi alice, bob here " + suffix,
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, browserPage, cfgJSON)
		case "/peerjs.min.js":
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			w.Write(script)
		case "/favicon.ico":
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(page.Close)

	ctx := browsertest.New(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(page.URL+"/")); err != nil {
		t.Fatalf("load the test page: %v", err)
	}
	p := &peerPage{t: t, ctx: ctx, srv: srv}
	p.wait(3*time.Second, `typeof Peer === "function" && typeof start === "function"`, "the page to load peerjs.min.js")

	// Both register under their own ids.
	p.eval(`start()`)
	p.wait(5*time.Second, `t.opened.alice && t.opened.bob`, "both Peers to get OPEN")
	st := p.state()
	if st.Opened["alice"] != cfg.Alice || st.Opened["bob"] != cfg.Bob {
		p.fatalf("opened as %v, want alice=%s bob=%s", st.Opened, cfg.Alice, cfg.Bob)
	}

	// A reliable DataConnection, signaled through the server, carries a
	// message each way.
	p.eval(`connect()`)
	p.wait(8*time.Second, `t.bobGot !== null`, "bob to receive alice's message over the DataConnection (signaled by OFFER/ANSWER/CANDIDATE through our server)")
	p.wait(3*time.Second, `t.aliceGot !== null`, "alice to receive bob's reply")
	st = p.state()
	if st.BobGot != cfg.Hello {
		p.fatalf("bob got %#v, want %q", st.BobGot, cfg.Hello)
	}
	if st.AliceGot != cfg.Reply {
		p.fatalf("alice got %#v, want %q", st.AliceGot, cfg.Reply)
	}
	if st.BobFrom != cfg.Alice || !st.BobReliable {
		p.fatalf("bob's connection is from %q (reliable %v), want %q (reliable)", st.BobFrom, st.BobReliable, cfg.Alice)
	}
	if got, want := srv.Clients(), sortedIDs(cfg.Alice, cfg.Bob); !slices.Equal(got, want) {
		p.fatalf("server has clients %v, want %v", got, want)
	}

	// Refusals: PeerJS turns ID-TAKEN into an "unavailable-id" error and
	// an ERROR payload into a "server-error" with the server's words.
	p.eval(`refused()`)
	p.wait(5*time.Second, `t.errors.dup && t.errors.badkey`, "the duplicate-id and wrong-key Peers to get errors")
	st = p.state()
	if e := st.Errors["dup"]; e.Type != "unavailable-id" || e.Msg != fmt.Sprintf("ID %q is taken", cfg.Alice) {
		p.fatalf("duplicate id: error %+v, want unavailable-id `ID %q is taken`", e, cfg.Alice)
	}
	if e := st.Errors["badkey"]; e.Type != "server-error" || e.Msg != "Invalid key provided" {
		p.fatalf("wrong key: error %+v, want server-error `Invalid key provided`", e)
	}
	for _, name := range []string{"dup", "badkey"} {
		if id, ok := st.Opened[name]; ok {
			p.fatalf("refused Peer %s got OPEN as %q", name, id)
		}
	}
	for _, name := range []string{"alice", "bob"} {
		if e, ok := st.Errors[name]; ok {
			p.fatalf("%s got error %+v", name, e)
		}
	}
	// The refused duplicate must not have cost alice her registration.
	if got, want := srv.Clients(), sortedIDs(cfg.Alice, cfg.Bob); !slices.Equal(got, want) {
		p.fatalf("after the refusals the server has clients %v, want %v", got, want)
	}
	p.wait(time.Second, `peers.alice.open && !peers.alice.disconnected`, "alice to stay connected after the duplicate was refused")

	// Destroyed Peers close their sockets, and the server forgets them.
	p.eval(`stop()`)
	deadline := time.Now().Add(3 * time.Second)
	for len(srv.Clients()) > 0 {
		if time.Now().After(deadline) {
			p.fatalf("server still has clients %v after the Peers were destroyed", srv.Clients())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sortedIDs(ids ...string) []string {
	slices.Sort(ids)
	return ids
}

// peerPage drives the test page and, on failure, shows what the page
// recorded.
type peerPage struct {
	t   *testing.T
	ctx context.Context
	srv *signal.Server
}

func (p *peerPage) eval(js string) {
	p.t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Evaluate[any](js+"; undefined")); err != nil {
		p.fatalf("evaluate %s: %v", js, err)
	}
}

func (p *peerPage) wait(timeout time.Duration, expr, what string) {
	p.t.Helper()
	if err := browsertest.Wait(p.ctx, timeout, expr); err != nil {
		p.fatalf("waiting for %s (%s): not within %v: %v", what, expr, timeout, err)
	}
}

// state reads window.t.
func (p *peerPage) state() pageState {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`JSON.stringify(window.t)`))
	if err != nil {
		p.t.Fatalf("read the page's state: %v", err)
	}
	var st pageState
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		p.t.Fatalf("decode the page's state %s: %v", s, err)
	}
	return st
}

// fatalf fails the test with msg and the page's record.
func (p *peerPage) fatalf(format string, args ...any) {
	p.t.Helper()
	rec := "(unreadable)"
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
	defer cancel()
	if s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.t, null, 1)`)); err == nil {
		rec = s
	} else {
		rec += ": " + err.Error()
	}
	p.t.Fatalf("%s\nserver clients: %v\npage record (window.t):\n%s", fmt.Sprintf(format, args...), p.srv.Clients(), rec)
}
