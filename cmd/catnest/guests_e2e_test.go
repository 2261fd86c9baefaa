package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/internal/peerjstest"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// guestPage is a plain PeerJS page, as a web developer would write it:
// it loads the stock peerjs client and talks to nodes with the guest
// protocol. The Go test calls its functions and awaits their promises.
const guestPage = `<!doctype html>
<meta charset="utf-8">
<script src="/peerjs.min.js"></script>
<script>
"use strict";
window.conns = {};
let next = 0;
window.start = (port, path) => new Promise((resolve, reject) => {
  if (window.peer) window.peer.destroy();
  const p = new Peer({host: "127.0.0.1", port, path, key: "peerjs", secure: false,
                      config: {iceServers: []}, debug: 1});
  window.peer = p;
  p.on("open", id => resolve(id));
  p.on("error", e => reject(String(e.type + ": " + e.message)));
});
// connect opens a DataConnection to a node and returns its key.
window.connect = (node, serialization) => new Promise((resolve, reject) => {
  const c = peer.connect(node, {serialization, reliable: true});
  const key = "c" + (next++);
  const st = {c, waiting: {}, pushes: [], closed: false, errors: [], unmatched: []};
  conns[key] = st;
  c.on("open", () => resolve(key));
  c.on("data", d => {
    if (d && d.id !== undefined && st.waiting[d.id]) { st.waiting[d.id](d); delete st.waiting[d.id]; }
    else if (d && d.op === "message") st.pushes.push(d);
    else st.unmatched.push(d);
  });
  c.on("close", () => { st.closed = true; });
  c.on("error", e => st.errors.push(String(e.type)));
  setTimeout(() => reject("no open within 30 s"), 30000);
});
window.request = (key, req) => new Promise((resolve, reject) => {
  const st = conns[key];
  req.id = "r" + (next++);
  st.waiting[req.id] = resolve;
  st.c.send(req);
  setTimeout(() => reject("no answer to " + JSON.stringify(req).slice(0, 100)), 20000);
});
// history pages a channel back to its start.
window.history_ = async (key, channel, limit) => {
  let before, pages = 0, all = [];
  for (;;) {
    const a = await request(key, before ? {op: "history", channel, limit, before} : {op: "history", channel, limit});
    if (a.error) throw a.error;
    pages++;
    all = a.messages.concat(all);
    if (!a.more) break;
    before = a.before;
  }
  return {pages, ids: all.map(m => m.id), times: all.map(m => m.time), texts: all.map(m => m.text)};
};
// sendRaw puts bytes on the data channel under PeerJS: what a broken or
// hostile page sends.
window.sendRaw = (key, text) => { conns[key].c.dataChannel.send(new TextEncoder().encode(text)); };
window.closedWithError = key => {
  const st = conns[key];
  return {closed: st.closed, unmatched: st.unmatched};
};
</script>`

// eval runs js in the page, awaiting a promise, and decodes its JSON
// result into out.
func evalJSON(t *testing.T, ctx context.Context, js string, out any) {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(async () => JSON.stringify(await (`+js+`)))()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(s), out); err != nil {
			t.Fatalf("%s: %v: %s", js, err, s)
		}
	}
}

// guestNodes runs nodes alice (--guests) and bob (guests may only read)
// registered with the rendezvous at signalURL, until the test ends.
func guestNodes(t *testing.T, signalURL string) (alice, bob *node) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	start := func(name string, guests bool, boot []mesh.ID) *node {
		n, err := newNode(ServeConfig{Data: filepath.Join(t.TempDir(), name), HTTP: "127.0.0.1:0", SignalURL: signalURL,
			SignalKey: "peerjs", Name: name, LoopbackOnly: true, Guests: guests, MaxGuests: mesh.DefaultMaxGuests, Bootstrap: boot},
			newLogger(false).With("test", name))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := n.run(ctx); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
		return n
	}
	alice = start("alice", true, nil)
	return alice, start("bob", false, []mesh.ID{alice.mesh.ID()})
}

// fillChannel stores n old messages of alice's in channel ch directly, as
// history that alice has had for a while (posting would be paced).
func fillChannel(t *testing.T, n *node, data string, ch chatlog.ChannelInfo, count int) {
	t.Helper()
	ident, err := mesh.LoadOrCreateIdentity(data)
	if err != nil {
		t.Fatal(err)
	}
	st, err := chatlog.OpenStore(n.db)
	if err != nil {
		t.Fatal(err)
	}
	cid, err := chatlog.ParseChannelID(ch.ID)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Duration(count+10) * time.Second)
	var ms []*chatlog.Message
	for i := range count {
		m, err := chatlog.NewMessage(ident, cid, chatlog.KindText, fmt.Appendf(nil, "history %04d", i), chatlog.ID{}, base.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	if _, err := st.Put(context.Background(), ms...); err != nil {
		t.Fatal(err)
	}
}

// TestPeerJSGuests: a page with the stock peerjs 1.5.5 client connects to
// nodes through catnest's rendezvous and through npm peer, with JSON and
// binary serialization: it lists channels, pages through 1,200 messages
// of history, posts as a guest where the node allows it (another node
// sees the message marked as alice's guest) and is refused where not;
// malformed and oversized messages get an error and a closed connection.
func TestPeerJSGuests(t *testing.T) {
	script := peerjstest.ClientScript(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readme" {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, readmePage(t, r.URL.Query().Get("node"), r.URL.Query().Get("port"), r.URL.Query().Get("path")))
			return
		}
		if r.URL.Path == "/peerjs.min.js" {
			w.Header().Set("Content-Type", "text/javascript")
			w.Write(script)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, guestPage)
	}))
	defer srv.Close()
	bctx := browsertest.NewFor(t, 5*time.Minute)
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}

	ourSignal := func(t *testing.T) string {
		return fmt.Sprintf("http://127.0.0.1:%d/guests", runSignal(t, "--path", "/guests"))
	}
	npmPeer := func(t *testing.T) string { return peerjstest.Start(t, peerjstest.Options{Path: "/npm"}) }

	for _, rv := range []struct {
		name  string
		start func(*testing.T) string
	}{{"catnest rendezvous", ourSignal}, {"npm peer", npmPeer}} {
		t.Run(rv.name, func(t *testing.T) {
			signalURL := rv.start(t)
			alice, bob := guestNodes(t, signalURL)
			ctx := context.Background()
			lobby, err := alice.chat.CreateChannel(ctx, "lobby", false)
			if err != nil {
				t.Fatal(err)
			}
			const history = 1200
			fillChannel(t, alice, filepath.Dir(alice.db.Path()), lobby, history)
			joinSoon(t, bob, lobby.ID)

			u, err := url.Parse(signalURL)
			if err != nil {
				t.Fatal(err)
			}
			var pageID string
			evalJSON(t, bctx, fmt.Sprintf("start(%s, %q)", u.Port(), u.Path+"/"), &pageID)
			t.Logf("page registered as %s", pageID)

			for _, ser := range []string{"json", "binary"} {
				t.Run(ser, func(t *testing.T) {
					var key string
					evalJSON(t, bctx, fmt.Sprintf("connect(%q, %q)", alice.mesh.ID(), ser), &key)

					var chs struct {
						Channels []struct{ ID, Name string }
						Posting  bool
						Error    string
					}
					evalJSON(t, bctx, fmt.Sprintf(`request(%q, {op: "channels"})`, key), &chs)
					if len(chs.Channels) != 1 || chs.Channels[0].ID != lobby.ID || chs.Channels[0].Name != "lobby" || !chs.Posting {
						t.Fatalf("channels: %+v", chs)
					}

					var h struct {
						Pages int
						IDs   []string
						Times []int64
						Texts []string
					}
					evalJSON(t, bctx, fmt.Sprintf(`history_(%q, %q, 150)`, key, "lobby"), &h)
					if len(h.IDs) < history || h.Pages < history/150 {
						t.Fatalf("history: %d messages in %d pages, want %d in at least %d", len(h.IDs), h.Pages, history, history/150)
					}
					seen := map[string]bool{}
					for i, id := range h.IDs {
						if seen[id] {
							t.Fatalf("message %s twice in the history", id)
						}
						seen[id] = true
						if i > 0 && h.Times[i] < h.Times[i-1] {
							t.Fatalf("history out of order at %d", i)
						}
					}
					if h.Texts[0] != "history 0000" || h.Texts[history-1] != fmt.Sprintf("history %04d", history-1) {
						t.Fatalf("history runs from %q to %q", h.Texts[0], h.Texts[history-1])
					}

					name := "visitor-" + ser
					text := "hello from a PeerJS page over " + ser
					var posted struct {
						Message struct{ ID, Author, Guest, Text string }
						Error   string
					}
					evalJSON(t, bctx, fmt.Sprintf(`request(%q, {op: "post", channel: %q, name: %q, text: %q})`, key, lobby.ID, name, text), &posted)
					if posted.Error != "" || posted.Message.Guest != name || posted.Message.Author != string(alice.mesh.ID()) {
						t.Fatalf("post: %+v", posted)
					}
					testutil.WaitFor(t, 30*time.Second, "bob to hold the guest's message", func() bool {
						ms, err := bob.chat.Messages(ctx, lobby.ID, time.Time{}, 10)
						if err != nil {
							t.Fatal(err)
						}
						for _, m := range ms {
							if m.ID == posted.Message.ID {
								if m.Guest != name || m.Author != alice.mesh.ID() || m.Text != text {
									t.Fatalf("bob holds the guest message as %+v", m)
								}
								return true
							}
						}
						return false
					})

					// bob lets guests read but not post.
					var bkey string
					evalJSON(t, bctx, fmt.Sprintf("connect(%q, %q)", bob.mesh.ID(), ser), &bkey)
					var refused struct{ Error string }
					evalJSON(t, bctx, fmt.Sprintf(`request(%q, {op: "post", channel: "lobby", name: "mallory", text: "let me in"})`, bkey), &refused)
					if !strings.Contains(refused.Error, "does not let guests post") {
						t.Fatalf("post to bob: %+v", refused)
					}

					// Malformed: not a request. Oversized: over the 32 KiB a
					// guest message may have.
					bad := map[string]string{
						"malformed": fmt.Sprintf(`(conns[%q].c.send("just a string"), 0)`, bkey),
						"oversized": fmt.Sprintf(`(conns[%q].c.send({op: "post", channel: "lobby", name: "x", text: "y".repeat(40000)}), 0)`, key),
					}
					if ser == "json" {
						// The client refuses to send big JSON: put it on the channel.
						bad["oversized"] = fmt.Sprintf(`(sendRaw(%q, JSON.stringify({op: "channels", pad: "y".repeat(40000)})), 0)`, key)
					}
					for what, js := range bad {
						k := key
						if what == "malformed" {
							k = bkey
						}
						evalJSON(t, bctx, js, nil)
						var st struct {
							Closed    bool
							Unmatched []struct{ Error string }
						}
						testutil.WaitFor(t, 20*time.Second, what+" message to close the connection", func() bool {
							evalJSON(t, bctx, fmt.Sprintf("closedWithError(%q)", k), &st)
							return st.Closed
						})
						if len(st.Unmatched) != 1 || st.Unmatched[0].Error == "" {
							t.Fatalf("%s: answers before the close: %+v", what, st.Unmatched)
						}
						t.Logf("%s: %s", what, st.Unmatched[0].Error)
					}
				})
			}
			evalJSON(t, bctx, "(peer.destroy(), 0)", nil)

			// The README's example page, as written but for its addresses.
			tab, cancel := chromedp.NewContext(bctx)
			defer cancel()
			q := url.Values{"node": {string(alice.mesh.ID())}, "port": {u.Port()}, "path": {u.Path + "/"}}
			if err := chromedp.Do(tab, chromedp.Navigate(srv.URL+"/readme?"+q.Encode())); err != nil {
				t.Fatal(err)
			}
			var out string
			testutil.WaitFor(t, 60*time.Second, "the README page to post and see its post", func() bool {
				var err error
				if out, err = chromedp.Run(tab, chromedp.Evaluate[string](`document.getElementById("out").textContent`)); err != nil {
					t.Fatal(err)
				}
				return strings.Contains(out, "ann: hello from a plain page")
			})
			if !strings.Contains(out, fmt.Sprintf("history %04d", history-1)) || strings.Contains(out, "not posted") {
				t.Fatalf("README page shows:\n%s", out)
			}
		})
	}
}

// readmePage is the example page of README's "PeerJS guests" section with
// the client loaded from the test server and its node and rendezvous
// filled in; the test fails if the README no longer has what it replaces.
func readmePage(t *testing.T, node, port, path string) string {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Error(err)
		return ""
	}
	_, sec, _ := strings.Cut(string(b), "## PeerJS guests")
	_, page, _ := strings.Cut(sec, "```html\n")
	page, _, _ = strings.Cut(page, "```")
	for _, r := range [][2]string{
		{"https://unpkg.com/peerjs@1.5.5/dist/peerjs.min.js", "/peerjs.min.js"},
		{`"paste the node id here"`, fmt.Sprintf("%q", node)},
		{"port: 9000", "port: " + port},
		{`path: "/"`, fmt.Sprintf("path: %q", path)},
	} {
		if !strings.Contains(page, r[0]) {
			t.Errorf("README example page has no %s", r[0])
		}
		page = strings.Replace(page, r[0], r[1], 1)
	}
	return "<!doctype html><meta charset=\"utf-8\">\n" + page
}
