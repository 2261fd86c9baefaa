package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/webui"
)

// TestMain lets a test run this binary as the catnest command: with
// CATNEST_RUN_MAIN=1 it runs main() on its arguments instead of the tests
// (and with CATNEST_TEST_RECORD_TTL, see shortRecordTTL, its nodes' records
// expire after that long).
func TestMain(m *testing.M) {
	if os.Getenv("CATNEST_RUN_MAIN") == "1" {
		if v := os.Getenv(recordTTLEnv); v != "" {
			ttl, err := time.ParseDuration(v)
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", recordTTLEnv, err)
				os.Exit(2)
			}
			testMeshConfig = func(c *mesh.Config) {
				c.RecordTTL = ttl
				c.RecordRefresh = ttl / 5
			}
		}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const recordTTLEnv = "CATNEST_TEST_RECORD_TTL"

// shortRecordTTL makes the nodes this test starts from here on expire a
// record not refreshed within ttl (and refresh their own five times as
// often), so that a node that stops leaves the others' directory, and
// the music library, within seconds instead of after mesh's default
// RecordTTL of 65 s. Every node of the mesh must have it: a node with
// the default refresh (20 s) would flap in the directory of one with a
// short TTL.
func shortRecordTTL(t *testing.T, ttl time.Duration) {
	t.Setenv(recordTTLEnv, ttl.String())
}

func TestHelpAndUsage(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		args []string
		want string
		err  error
	}{
		{[]string{"serve", "--help"}, "-signal", flag.ErrHelp},
		{[]string{"signal", "--help"}, "-allow-discovery", flag.ErrHelp},
		{[]string{"demo", "--help"}, "-nodes", flag.ErrHelp},
		{nil, "Usage:", errUsage},
		{[]string{"frobnicate"}, "unknown command", errUsage},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(ctx, tt.args, &out, &errOut)
			if !errors.Is(err, tt.err) {
				t.Fatalf("run = %v, want %v", err, tt.err)
			}
			if !strings.Contains(out.String()+errOut.String(), tt.want) {
				t.Fatalf("output lacks %q:\n%s%s", tt.want, out.String(), errOut.String())
			}
		})
	}
}

func TestServeFlagErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{}, "--signal is required"},
		{[]string{"--signal", "ws://x/y"}, "http or https"},
		{[]string{"--signal", "http://x/y", "--bootstrap", "nope"}, "bad node id"},
		{[]string{"--signal", "http://x/y", "--stun", "http://x"}, "stun:host:port"},
		{[]string{"--signal", "http://x/y", "--turn", "turn:alice@x:1"}, "user:pass"},
		{[]string{"--signal", "http://x/y", "extra"}, "unexpected argument"},
	} {
		t.Run(tt.want, func(t *testing.T) {
			_, err := parseServe(tt.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("parseServe(%q) = %v, want an error with %q", tt.args, err, tt.want)
			}
		})
	}
	cfg, err := parseServe([]string{"--signal", "http://127.0.0.1:9000/myapp", "--turn", "turn:u:p@127.0.0.1:3478", "--stun", "stun:127.0.0.1:3478"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.ICEServers) != 2 || cfg.ICEServers[1].Username != "u" || cfg.ICEServers[1].Credential != "p" || cfg.ICEServers[1].URLs[0] != "turn:127.0.0.1:3478" {
		t.Fatalf("ICE servers: %+v", cfg.ICEServers)
	}
}

func TestSignalFlags(t *testing.T) {
	cfg, err := parseSignal([]string{"--port", "9100", "--expire-timeout", "2500", "--alive-timeout", "90s", "--allow-discovery"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Port != 9100 || cfg.Server.ExpireTimeout != 2500*time.Millisecond || cfg.Server.AliveTimeout != 90*time.Second || !cfg.Server.AllowDiscovery {
		t.Fatalf("parsed %+v", cfg)
	}
	def, _ := parseSignal(nil, io.Discard)
	if def.Port != 9000 || def.Server.Key != "peerjs" || def.Server.Path != "/" || def.Server.ExpireTimeout != 5*time.Second ||
		def.Server.AliveTimeout != 60*time.Second || def.Server.ConcurrentLimit != 5000 || def.Server.AllowDiscovery {
		t.Fatalf("defaults differ from PeerServer's: %+v", def)
	}
	if _, err := parseSignal([]string{"--expire-timeout", "-1"}, io.Discard); err == nil {
		t.Fatal("a negative timeout was accepted")
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// proc is catnest running as a child process.
type proc struct {
	cmd   *exec.Cmd
	lines chan string
	mu    sync.Mutex
	out   strings.Builder
}

func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	return startCommand(t, exec.Command(os.Args[0], args...), args)
}

// startCommand runs cmd, which runs catnest with args, as startProc does.
func startCommand(t *testing.T, cmd *exec.Cmd, args []string) *proc {
	t.Helper()
	cmd.Env = append(os.Environ(), "CATNEST_RUN_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, lines: make(chan string, 100)}
	cmd.Stderr = &lockedWriter{p: p}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.write(sc.Text() + "\n")
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			// SIGQUIT makes the Go runtime print every goroutine's stack
			// (logged below with the output) before it exits: what the
			// process was still waiting for.
			cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
			t.Errorf("%s did not stop on SIGTERM within 10 s (its goroutines are in its output)", args[0])
		}
		<-done
		if t.Failed() {
			t.Logf("output of catnest %s:\n%s", strings.Join(args, " "), p.output())
		}
	})
	return p
}

type lockedWriter struct{ p *proc }

func (w *lockedWriter) Write(b []byte) (int, error) { w.p.write(string(b)); return len(b), nil }

func (p *proc) write(s string) {
	p.mu.Lock()
	p.out.WriteString(s)
	p.mu.Unlock()
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// expect waits for a stdout line matching re and returns its submatches.
func (p *proc) expect(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(20 * time.Second)
	for {
		select {
		case line := <-p.lines:
			if m := rx.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-deadline:
			t.Fatalf("no line matching %q; output:\n%s", re, p.output())
		}
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

type apiPeer struct {
	ID   string  `json:"id"`
	Name string  `json:"name"`
	RTT  float64 `json:"rtt_ms"`
}

func peerNames(t *testing.T, ui string) map[string]apiPeer {
	t.Helper()
	var ps []apiPeer
	getJSON(t, ui+"api/peers", &ps)
	m := make(map[string]apiPeer)
	for _, p := range ps {
		m[p.Name] = p
	}
	return m
}

// TestServeEndToEnd runs `catnest signal` and three `catnest serve`
// processes as a user would, checks the API, then kills one node with
// SIGKILL and sees it leave the others' peer lists within 30 s.
func TestServeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	signalURL := startSignalAt(t, "/myapp")

	uis := map[string]string{}
	ids := map[string]string{}
	procs := map[string]*proc{}
	for _, name := range []string{"alice", "bob", "carol"} {
		data := filepath.Join(t.TempDir(), name)
		p := startProc(t, "serve", "--data", data, "--http", "127.0.0.1:0", "--signal", signalURL, "--name", name, "--loopback")
		ids[name] = p.expect(t, `^catnest node ([a-z2-7]{32}) \(`+name+`\)$`)[1]
		uis[name] = p.expect(t, `^web UI: (http://127\.0\.0\.1:\d+/)$`)[1]
		procs[name] = p
	}
	var node struct{ ID, Name string }
	getJSON(t, uis["alice"]+"api/node", &node)
	if node.ID != ids["alice"] || node.Name != "alice" {
		t.Fatalf("/api/node = %+v", node)
	}
	testutil.WaitFor(t, 30*time.Second, "a full mesh of three", func() bool {
		for name, ui := range uis {
			ps := peerNames(t, ui)
			for other := range uis {
				if other != name && ps[other].ID != ids[other] {
					return false
				}
			}
		}
		return true
	})
	testutil.WaitFor(t, 15*time.Second, "round-trip times", func() bool { return peerNames(t, uis["alice"])["bob"].RTT > 0 })

	procs["carol"].cmd.Process.Kill() // kill -9: no goodbye
	took := testutil.WaitFor(t, 30*time.Second, "carol to leave the others' peer lists", func() bool {
		_, a := peerNames(t, uis["alice"])["carol"]
		_, b := peerNames(t, uis["bob"])["carol"]
		return !a && !b
	})
	t.Logf("a killed peer left the peer lists after %v", took.Round(100*time.Millisecond))
	if _, ok := peerNames(t, uis["alice"])["bob"]; !ok {
		t.Fatal("alice lost bob too")
	}
}

// twoNodes runs a rendezvous and nodes alice and bob in this process over
// real WebRTC on loopback, until the test ends.
func twoNodes(t *testing.T) map[string]*node {
	t.Helper()
	return meshOf(t, "alice", "bob")
}

// TestBrowserSeesRealPeer loads a real node's web UI in Chromium in a
// two-node WebRTC mesh and sees the other node appear in the peers view.
func TestBrowserSeesRealPeer(t *testing.T) {
	nodes := twoNodes(t)
	bctx := browsertest.New(t)
	if err := chromedp.Do(bctx, chromedp.Navigate(nodes["alice"].url)); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, bctx, 10*time.Second, `document.querySelector("#node-name").textContent === "alice"`)
	bobRow := `document.querySelector('#peers-table tr[data-id="` + string(nodes["bob"].mesh.ID()) + `"]')`
	browsertest.Until(t, bctx, 30*time.Second, bobRow+` !== null && `+bobRow+`.textContent.includes("bob")`)
}

// joinSoon joins a channel once the owner's advertisement has reached n.
func joinSoon(t *testing.T, n *node, id string) {
	t.Helper()
	testutil.WaitFor(t, 30*time.Second, "to join "+id, func() bool {
		err := n.chat.Join(context.Background(), id)
		if err != nil && !errors.Is(err, chatlog.ErrUnknownChannel) {
			t.Fatal(err)
		}
		return err == nil
	})
}

// TestBrowserChatAcrossNodes posts on one real node and watches bob's web
// UI in Chromium: the message arrives, is retracted, and in a burn channel
// is shown and then vanishes.
func TestBrowserChatAcrossNodes(t *testing.T) {
	nodes := twoNodes(t)
	alice, bob := nodes["alice"], nodes["bob"]
	ctx := context.Background()
	lobby, err := alice.chat.CreateChannel(ctx, "lobby", false)
	if err != nil {
		t.Fatal(err)
	}
	whisper, err := alice.chat.CreateChannel(ctx, "whisper", true)
	if err != nil {
		t.Fatal(err)
	}
	joinSoon(t, bob, lobby.ID)
	joinSoon(t, bob, whisper.ID)

	bctx := browsertest.New(t)
	if err := chromedp.Do(bctx, chromedp.Navigate(bob.url+"#/chat")); err != nil {
		t.Fatal(err)
	}
	const wait = 30 * time.Second
	open := func(id string) {
		t.Helper()
		sel := `.chan[data-id="` + id + `"]`
		browsertest.Until(t, bctx, wait, `document.querySelector('`+sel+`') !== null`)
		browsertest.Until(t, bctx, wait, `(document.querySelector('`+sel+`').click(), document.querySelector(".chan.active") !== null
			&& document.querySelector(".chan.active").dataset.id === "`+id+`")`)
	}
	row := func(id string) string { return `document.querySelector('#chat-messages li[data-id="` + id + `"]')` }

	open(lobby.ID)
	m, err := alice.chat.Post(ctx, lobby.ID, "hello bob, from alice")
	if err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, bctx, wait, row(m.ID)+` !== null && `+row(m.ID)+`.querySelector(".msg-text").textContent === "hello bob, from alice"
		&& `+row(m.ID)+`.querySelector(".msg-author").textContent === "alice"`)
	if err := alice.chat.Retract(ctx, lobby.ID, m.ID); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, bctx, wait, row(m.ID)+`.querySelector(".msg-text").textContent === "Message retracted"`)

	open(whisper.ID)
	b, err := alice.chat.Post(ctx, whisper.ID, "this line burns after reading")
	if err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, bctx, wait, row(b.ID)+` !== null && `+row(b.ID)+`.classList.contains("burn")`)
	browsertest.Until(t, bctx, wait, row(b.ID)+` === null`)
	ms, err := bob.chat.Messages(ctx, whisper.ID, time.Time{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 0 {
		t.Fatalf("bob still holds the read burn message: %+v", ms)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestChatCommand drives `catnest chat` against a real node: it shows the
// history, sends what is typed, and prints live messages.
func TestChatCommand(t *testing.T) {
	nodes := twoNodes(t)
	alice, bob := nodes["alice"], nodes["bob"]
	ctx := context.Background()
	lobby, err := alice.chat.CreateChannel(ctx, "lobby", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.chat.Post(ctx, lobby.ID, "said before you came"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "bob to see the lobby", func() bool {
		chs, _ := bob.chat.Channels(ctx)
		return len(chs) == 1
	})

	stdin, typing := io.Pipe()
	var out syncBuffer
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- RunChat(cctx, ChatConfig{Node: strings.TrimSuffix(bob.url, "/"), APIKey: bob.apiKey, Channel: "lobby", History: 10}, stdin, &out)
	}()
	testutil.WaitFor(t, 30*time.Second, "the history in the terminal", func() bool { return strings.Contains(out.String(), "alice: said before you came") })

	fmt.Fprintln(typing, "typed in a terminal")
	testutil.WaitFor(t, 30*time.Second, "alice to get the typed line", func() bool {
		ms, _ := alice.chat.Messages(ctx, lobby.ID, time.Time{}, 10)
		for _, m := range ms {
			if m.Text == "typed in a terminal" && m.Author == bob.mesh.ID() {
				return true
			}
		}
		return false
	})
	if _, err := alice.chat.Post(ctx, lobby.ID, "a live reply"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the live reply in the terminal", func() bool { return strings.Contains(out.String(), "alice: a live reply") })
	if n := strings.Count(out.String(), "bob: typed in a terminal"); n != 1 {
		t.Fatalf("the sent line shows %d times:\n%s", n, out.String())
	}
	// A member's message reaches the terminal inert: no escape sequence,
	// no line that poses as someone else's.
	if _, err := alice.chat.Post(ctx, lobby.ID, "title\x1b]0;pwned\x07 clip\x1b]52;c;cm0=\x07\n[01-02 10:00] bob: I never said this\u202e"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the hostile message in the terminal", func() bool { return strings.Contains(out.String(), "alice: title") })
	if r, bad := rawDanger(out.String()); bad {
		t.Fatalf("raw %U reached the terminal:\n%q", r, out.String())
	}
	if want := `alice: title\x1b]0;pwned\x07 clip\x1b]52;c;cm0=\x07` + "\n" + contLine + `[01-02 10:00] bob: I never said this\u202e`; !strings.Contains(out.String(), want) {
		t.Fatalf("terminal lacks %q:\n%s", want, out.String())
	}
	typing.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("catnest chat did not end with its input")
	}
	if _, err := parseChat([]string{"--node", "ftp://x", "lobby"}, io.Discard); err == nil {
		t.Fatal("a non-http --node was accepted")
	}
}

// postJSON sends a state-changing request as the web UI would.
func postJSON(t *testing.T, ui, path string, body, out any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, ui+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", strings.TrimSuffix(ui, "/"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST %s: %s %s", path, resp.Status, msg)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

// TestAcknowledgedMessageSurvivesKill9 posts messages through the API of
// a `catnest serve` process, kills it with SIGKILL right after the last
// acknowledgement, and finds every acknowledged message after a restart.
func TestAcknowledgedMessageSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	signalURL := startSignalAt(t, "")
	data := filepath.Join(t.TempDir(), "node")
	serve := func() (*proc, string) {
		p := startProc(t, "serve", "--data", data, "--http", "127.0.0.1:0", "--signal", signalURL, "--name", "solo", "--loopback")
		return p, p.expect(t, `^web UI: (http://127\.0\.0\.1:\d+/)$`)[1]
	}
	p, ui := serve()
	var ch webui.Channel
	postJSON(t, ui, "api/channels", map[string]any{"name": "durable"}, &ch)
	var acked []string
	for i := range 20 {
		var m webui.Message
		postJSON(t, ui, "api/channels/"+ch.ID+"/messages", map[string]string{"text": fmt.Sprint("acked ", i)}, &m)
		acked = append(acked, m.ID)
	}
	p.cmd.Process.Kill() // kill -9, straight after the last acknowledgement
	p.cmd.Wait()

	_, ui = serve()
	var ms []webui.Message
	getJSON(t, ui+"api/channels/"+ch.ID+"/messages?limit=100", &ms)
	have := map[string]bool{}
	for _, m := range ms {
		have[m.ID] = true
	}
	for i, id := range acked {
		if !have[id] {
			t.Fatalf("acknowledged message %d (%s) is gone after kill -9", i, id)
		}
	}
}
