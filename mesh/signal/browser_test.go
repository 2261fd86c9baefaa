package signal_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
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

// Loopback only. Chromium gives a page that has no camera or microphone
// permission one UDP socket per address family, bound to the wildcard
// address, and announces it as a host candidate on the default route's
// address (eth0's). Every candidate either Peer learns from the other
// passes through loopbackCandidate: one on a loopback address is kept, a
// UDP host candidate on any other address is rewritten to the loopback
// address of its family (the wildcard socket receives there too), and
// anything else is dropped. So every connectivity check, and then the
// DataConnection, goes to 127.0.0.1 or ::1 and, sent from a wildcard
// socket, comes from there too; the test checks that with getStats.
t.cands = {kept: [], rewritten: [], dropped: [], inSDP: 0};
function isLoopback(a) {
  a = String(a || "").replace(/^\[|\]$/g, "");
  return /^127\.\d+\.\d+\.\d+$/.test(a) || a === "::1";
}
// loopbackCandidate returns the candidate line to use instead of line, or
// "" to drop it.
function loopbackCandidate(line) {
  // [a=]candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
  const f = String(line).split(" ");
  if (f.length < 8 || f[6] !== "typ") { t.cands.dropped.push(line); return ""; }
  if (isLoopback(f[4])) { t.cands.kept.push(line); return line; }
  if (f[2].toLowerCase() !== "udp" || f[7] !== "host") { t.cands.dropped.push(line); return ""; }
  f[4] = f[4].includes(":") ? "::1" : "127.0.0.1";
  const out = f.join(" ");
  t.cands.rewritten.push(line + " => " + f[4]);
  return out;
}
const origAddIce = RTCPeerConnection.prototype.addIceCandidate;
RTCPeerConnection.prototype.addIceCandidate = function(c, ...rest) {
  if (c && c.candidate) {
    const line = loopbackCandidate(c.candidate);
    if (!line) return Promise.resolve();
    c = {candidate: line, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex,
         usernameFragment: c.usernameFragment};
  }
  return origAddIce.call(this, c, ...rest);
};
// PeerJS trickles its candidates, so SDPs carry none; should one carry
// some, they get the same treatment.
const origSetRemote = RTCPeerConnection.prototype.setRemoteDescription;
RTCPeerConnection.prototype.setRemoteDescription = function(d, ...rest) {
  if (d && typeof d.sdp === "string") {
    const lines = d.sdp.split("\r\n").flatMap(l => {
      if (!l.startsWith("a=candidate:")) return [l];
      t.cands.inSDP++;
      const c = loopbackCandidate(l.slice(2));
      return c ? ["a=" + c] : [];
    });
    d = {type: d.type, sdp: lines.join("\r\n")};
  }
  return origSetRemote.call(this, d, ...rest);
};

// pcStats reads the ICE side of pc's stats: the selected candidate pair
// and every pair and candidate getStats knows of.
async function pcStats(pc) {
  const out = {selected: null, pairs: [], candidates: []};
  if (!pc) return out;
  const stats = await pc.getStats();
  const byId = new Map();
  stats.forEach(s => byId.set(s.id, s));
  const cand = id => { const c = byId.get(id); return c ? {address: c.address ?? c.ip, port: c.port, protocol: c.protocol, type: c.candidateType} : null; };
  let selectedId = null;
  stats.forEach(s => { if (s.type === "transport" && s.selectedCandidatePairId) selectedId = s.selectedCandidatePairId; });
  stats.forEach(s => {
    if (s.type === "candidate-pair") {
      const p = {id: s.id, state: s.state, nominated: !!s.nominated, requestsSent: s.requestsSent || 0,
                 local: cand(s.localCandidateId), remote: cand(s.remoteCandidateId)};
      out.pairs.push(p);
      if (s.id === selectedId || (!selectedId && s.nominated && s.state === "succeeded")) out.selected = p;
    } else if (s.type === "local-candidate" || s.type === "remote-candidate") {
      out.candidates.push({kind: s.type, address: s.address ?? s.ip, port: s.port, protocol: s.protocol, type: s.candidateType});
    }
  });
  return out;
}
window.conns = {};
window.readStats = async () => {
  t.stats = {alice: await pcStats(conns.alice && conns.alice.peerConnection),
             bob: await pcStats(conns.bob && conns.bob.peerConnection)};
  return JSON.stringify(t.stats);
};
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
    conns.bob = c;
    t.bobReliable = c.reliable;
    c.on("open", () => log("bob: connection open"));
    c.on("data", d => { t.bobGot = d; log("bob got", JSON.stringify(d)); c.send(cfg.reply); });
    c.on("error", e => log("bob: connection error", e.type, e.message));
  });
};

window.connect = () => {
  const c = peers.alice.connect(cfg.bob, {reliable: true});
  conns.alice = c;
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

	ctx := browsertest.NewWithFlags(t, chromeLoopbackFlags...)
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
	p.checkLoopback()

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

// chromeLoopbackFlags keep Chromium's WebRTC on loopback, together with
// the page's loopbackCandidate.
//
// WebRtcHideLocalIpsWithMdns, on by default, lets Chromium enumerate the
// network interfaces and announce each host candidate under a random
// .local name (resolved with multicast DNS on the real network). With it
// off, and with no camera or microphone permission, Chromium instead
// binds one UDP socket per address family to the wildcard address and
// announces it under the default route's address, which the page can
// turn into loopback. --allow-loopback-in-peer-connection is not used:
// it adds loopback candidates only where interfaces are enumerated, and
// there it comes with sockets bound to eth0's addresses, which libwebrtc
// pairs with the loopback candidates and even prefers (eth0 has network
// cost 0, the loopback networks 50), so checks go out from eth0's address.
var chromeLoopbackFlags = []string{
	"--disable-features=WebRtcHideLocalIpsWithMdns",
}

// iceStats mirrors what the page's pcStats returns.
type iceStats struct {
	Selected   *icePair       `json:"selected"`
	Pairs      []icePair      `json:"pairs"`
	Candidates []iceCandidate `json:"candidates"`
}

type icePair struct {
	ID           string        `json:"id"`
	State        string        `json:"state"`
	Nominated    bool          `json:"nominated"`
	RequestsSent int           `json:"requestsSent"`
	Local        *iceCandidate `json:"local"`
	Remote       *iceCandidate `json:"remote"`
}

type iceCandidate struct {
	Kind     string `json:"kind,omitempty"`
	Address  string `json:"address"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
	Type     string `json:"type"`
}

func (c *iceCandidate) String() string {
	if c == nil {
		return "<none>"
	}
	return fmt.Sprintf("%s/%s %s", net.JoinHostPort(c.Address, strconv.Itoa(c.Port)), c.Protocol, c.Type)
}

func isLoopback(addr string) bool {
	ip := net.ParseIP(addr)
	return ip != nil && ip.IsLoopback()
}

// checkLoopback fails the test unless the DataConnection provably runs
// over loopback: on both ends the selected ICE pair's remote candidate is
// a loopback host candidate whose port is the other end's local one; no
// end saw a check from an address it was not told of (a peer-reflexive
// candidate, as eth0's address would be); every candidate pair has a
// loopback remote; and every local candidate's socket is bound to the
// wildcard address or a loopback one, so that what it sends to loopback
// leaves from loopback.
func (p *peerPage) checkLoopback() {
	p.t.Helper()
	var cands struct {
		Kept      []string `json:"kept"`
		Rewritten []string `json:"rewritten"`
		Dropped   []string `json:"dropped"`
		InSDP     int      `json:"inSDP"`
	}
	p.evalJSON(`JSON.stringify(t.cands)`, &cands)
	other := map[string]string{"alice": "bob", "bob": "alice"}
	// The answering end (controlled in ICE) may use a pair of its own
	// that works until the offerer's nomination of another one is
	// checked from its side too; data already flows on both, so the two
	// ends' selected pairs can differ for a moment (seconds on a starved
	// CPU). Wait for them to agree before checking the pair each names.
	agree := func(stats map[string]iceStats) bool {
		for _, name := range []string{"alice", "bob"} {
			sel, peer := stats[name].Selected, stats[other[name]].Selected
			if sel == nil || sel.Remote == nil || peer == nil || peer.Local == nil || peer.Local.Port != sel.Remote.Port || peer.Local.Protocol != sel.Remote.Protocol {
				return false
			}
		}
		return true
	}
	var stats map[string]iceStats
	for deadline := time.Now().Add(20 * time.Second); ; {
		stats = nil
		p.evalJSON(`readStats()`, &stats)
		if agree(stats) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, name := range []string{"alice", "bob"} {
		st := stats[name]
		sel := st.Selected
		if sel == nil || sel.Local == nil || sel.Remote == nil {
			p.fatalf("%s: getStats has no selected candidate pair: %+v", name, st)
		}
		if sel.Remote.Type != "host" || !isLoopback(sel.Remote.Address) {
			p.fatalf("%s: the DataConnection runs to %v, want a loopback host candidate", name, sel.Remote)
		}
		if peer := stats[other[name]].Selected; peer == nil || peer.Local == nil || peer.Local.Port != sel.Remote.Port || peer.Local.Protocol != sel.Remote.Protocol {
			p.fatalf("%s: the DataConnection runs to %v, which is not %s's local candidate of its selected pair", name, sel.Remote, other[name])
		}
		p.t.Logf("%s: selected ICE pair %v -> %v (%s, nominated %v)", name, sel.Local, sel.Remote, sel.State, sel.Nominated)
		for _, pr := range st.Pairs {
			if pr.Remote == nil || pr.Remote.Type == "prflx" || !isLoopback(pr.Remote.Address) {
				p.fatalf("%s: ICE candidate pair %v -> %v (%s, %d requests sent) does not go to a loopback host candidate", name, pr.Local, pr.Remote, pr.State, pr.RequestsSent)
			}
		}
		for _, c := range st.Candidates {
			switch {
			case c.Kind == "remote-candidate" && (c.Type == "prflx" || !isLoopback(c.Address)):
				p.fatalf("%s: a connectivity check came from %v, not from a loopback candidate", name, &c)
			case c.Kind == "local-candidate":
				if err := checkUDPBound(c); err != nil {
					p.fatalf("%s: local candidate %v: %v", name, &c, err)
				}
			}
		}
	}
	if cands.InSDP > 0 {
		p.t.Logf("the SDPs carried %d candidates", cands.InSDP)
	}
	p.t.Logf("remote candidates: kept %q; rewritten to loopback %q; dropped %q", cands.Kept, cands.Rewritten, cands.Dropped)
}

// checkUDPBound checks, on Linux, that the UDP socket behind the local
// candidate c is bound to a loopback address or the wildcard one, so that
// datagrams it sends to loopback carry a loopback source.
func checkUDPBound(c iceCandidate) error {
	if isLoopback(c.Address) {
		return nil
	}
	if c.Protocol != "udp" {
		return fmt.Errorf("a %s candidate on a non-loopback address", c.Protocol)
	}
	ip := net.ParseIP(c.Address)
	if ip == nil {
		return fmt.Errorf("unparsable address %q", c.Address)
	}
	table := "/proc/net/udp6"
	if ip.To4() != nil {
		table = "/proc/net/udp"
	}
	if runtime.GOOS != "linux" {
		return nil // no way to look; the checks on the remote ends still hold
	}
	data, err := os.ReadFile(table)
	if err != nil {
		return err
	}
	var bound []string
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] == "sl" {
			continue
		}
		hexAddr, hexPort, ok := strings.Cut(f[1], ":")
		if port, err := strconv.ParseUint(hexPort, 16, 16); !ok || err != nil || int(port) != c.Port {
			continue
		}
		raw, err := hex.DecodeString(hexAddr)
		if err != nil || len(raw)%4 != 0 {
			return fmt.Errorf("%s: bad address %q", table, f[1])
		}
		// The kernel prints each 32-bit word in host byte order.
		addr := make(net.IP, len(raw))
		for i := 0; i < len(raw); i += 4 {
			binary.BigEndian.PutUint32(addr[i:], binary.NativeEndian.Uint32(raw[i:]))
		}
		if !addr.IsUnspecified() && !addr.IsLoopback() {
			return fmt.Errorf("its UDP port %d is bound to %s", c.Port, addr)
		}
		bound = append(bound, addr.String())
	}
	if len(bound) == 0 {
		return fmt.Errorf("no UDP socket on port %d in %s", c.Port, table)
	}
	return nil
}

// evalJSON evaluates js, which returns a JSON string (or a promise of one),
// into v.
func (p *peerPage) evalJSON(js string, v any) {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
	if err != nil {
		p.fatalf("evaluate %s: %v", js, err)
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		p.fatalf("decode %s = %s: %v", js, s, err)
	}
}
