package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/music"
	"github.com/catnest/catnest/shards"
	"github.com/catnest/catnest/webui"
)

// curl does what README's curl lines do: a request with the API key in a
// header and no Origin, no cookie, no Sec-Fetch-* header.
func curl(t *testing.T, method, url, key string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", "curl/8.5.0")
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestServeAPIKey runs `catnest serve` as a user would: it prints the API
// key, keeps it in <data>/api.key with mode 0600, and the same key after a
// restart lets a script without an Origin create a channel and post; a
// wrong key does not.
func TestServeAPIKey(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	signalURL := startSignalAt(t, "")
	data := filepath.Join(t.TempDir(), "node")
	serve := func() (p *proc, ui, key string) {
		p = startProc(t, "serve", "--data", data, "--http", "127.0.0.1:0", "--signal", signalURL, "--name", "solo", "--loopback")
		ui = p.expect(t, `^web UI: (http://127\.0\.0\.1:\d+/)$`)[1]
		m := p.expect(t, `^API key: ([A-Z2-7]{26}) \(for scripts; kept in (.+)\)$`)
		if m[2] != filepath.Join(data, webui.APIKeyFile) {
			t.Errorf("key kept in %q, want %q", m[2], filepath.Join(data, webui.APIKeyFile))
		}
		return p, ui, m[1]
	}
	p, ui, key := serve()
	fi, err := os.Stat(filepath.Join(data, webui.APIKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("api.key has mode %#o, want 0600", perm)
	}
	if b, _ := os.ReadFile(filepath.Join(data, webui.APIKeyFile)); strings.TrimSpace(string(b)) != key {
		t.Fatalf("api.key holds %q, serve printed %q", b, key)
	}

	// Without the key a script is refused, as before.
	if st, b := curl(t, "POST", ui+"api/channels", "", map[string]any{"name": "bots"}); st != http.StatusForbidden {
		t.Fatalf("no key: %d %s, want 403", st, b)
	}
	if st, b := curl(t, "POST", ui+"api/channels", "NOTTHEKEY0123456789ABCDEFG", map[string]any{"name": "bots"}); st != http.StatusUnauthorized {
		t.Fatalf("wrong key: %d %s, want 401", st, b)
	}
	st, b := curl(t, "POST", ui+"api/channels", key, map[string]any{"name": "bots"})
	if st != http.StatusCreated {
		t.Fatalf("create a channel with the key: %d %s", st, b)
	}
	var ch webui.Channel
	if err := json.Unmarshal(b, &ch); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(os.Interrupt)
	p.cmd.Wait()

	_, ui, again := serve()
	if again != key {
		t.Fatalf("key after a restart %q, want %q", again, key)
	}
	if st, b := curl(t, "POST", ui+"api/channels/"+ch.ID+"/messages", key, map[string]string{"text": "hi from curl"}); st != http.StatusCreated {
		t.Fatalf("post with the key after a restart: %d %s", st, b)
	}
	var ms []webui.Message
	getJSON(t, ui+"api/channels/"+ch.ID+"/messages", &ms)
	if len(ms) != 1 || ms[0].Text != "hi from curl" {
		t.Fatalf("messages %+v", ms)
	}

	// README's curl lines, as a user pastes them.
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("no curl to run README's examples with")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)```sh\n(KEY=.*?)```").FindSubmatch(readme)
	if block == nil {
		t.Fatal("README has no curl example starting with KEY=")
	}
	script := strings.NewReplacer("~/.catnest-alice", data, "http://127.0.0.1:7071", strings.TrimSuffix(ui, "/"), "CHANNEL_ID", ch.ID).
		Replace(string(block[1]))
	out, err := exec.Command("sh", "-ec", script).CombinedOutput()
	if err != nil {
		t.Fatalf("README's example:\n%s\nfailed: %v\n%s", script, err, out)
	}
	if !strings.Contains(string(out), `"name":"bots"`) {
		t.Errorf("README's channel listing printed %s", out)
	}
	ms = nil
	getJSON(t, ui+"api/channels/"+ch.ID+"/messages", &ms)
	if len(ms) != 2 || ms[1].Text != "hi from a script" {
		t.Fatalf("after README's example: messages %+v", ms)
	}
}

// goroutinesOf lists the stacks of running goroutines that mention fn.
func goroutinesOf(fn string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, st := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(st, fn) {
			out = append(out, st)
		}
	}
	return out
}

// TestChatEndsWithEventStream runs `catnest chat` against a node whose
// event stream ends: it returns, and leaves no goroutine reading its input
// behind. The node checks that the command sends its key and no Origin.
func TestChatEndsWithEventStream(t *testing.T) {
	const key = "KEYFORTHECHATCOMMAND234567"
	posted := make(chan string, 1)
	var mu sync.Mutex
	var bad []string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/channels", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]webui.Channel{{ID: "c1", Name: "lobby", Joined: true}})
	})
	mux.HandleFunc("GET /api/channels/c1/messages", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]webui.Message{})
	})
	mux.HandleFunc("POST /api/channels/c1/messages", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-API-Key") != key || r.Header.Get("Origin") != "" {
			mu.Lock()
			bad = append(bad, fmt.Sprintf("POST with key %q, Origin %q", r.Header.Get("X-API-Key"), r.Header.Get("Origin")))
			mu.Unlock()
		}
		var req struct{ Text string }
		json.NewDecoder(r.Body).Decode(&req)
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(webui.Message{ID: "m1", Channel: "c1", AuthorName: "me", Text: req.Text, Time: time.Now()})
		posted <- req.Text
	})
	mux.HandleFunc("GET /api/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		// The stream ends once the line typed has been posted (the node
		// restarts, say).
		select {
		case <-posted:
		case <-r.Context().Done():
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	stdin, typing := io.Pipe()
	defer typing.Close()
	var out syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- RunChat(ctx, ChatConfig{Node: srv.URL, APIKey: key, Channel: "lobby"}, stdin, &out)
	}()
	go fmt.Fprintln(typing, "one line, then the node goes away")
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "lost the node's event stream") {
			t.Fatalf("RunChat = %v, want the stream lost", err)
		}
	case <-ctx.Done():
		t.Fatal("RunChat did not return when the event stream ended")
	}
	mu.Lock()
	if len(bad) > 0 {
		t.Errorf("requests: %v", bad)
	}
	mu.Unlock()
	// The input stays open (a terminal nobody types in): RunChat's reader
	// must end all the same.
	var left []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if left = goroutinesOf("cmd/catnest.RunChat"); len(left) == 0 {
			break
		}
	}
	if len(left) > 0 {
		t.Fatalf("%d goroutines of RunChat left running:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}

// TestChatNeedsKey checks that `catnest chat` reads the key from --data,
// and says what to do when there is none.
func TestChatNeedsKey(t *testing.T) {
	dir := t.TempDir()
	err := RunChat(context.Background(), ChatConfig{Node: "http://127.0.0.1:1", Data: dir, Channel: "lobby"}, strings.NewReader(""), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--api-key") {
		t.Fatalf("without a key: %v, want a hint at --api-key", err)
	}
	key, err := webui.LoadOrCreateAPIKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("X-API-Key")
		http.Error(w, `{"error":"stop here"}`, http.StatusTeapot)
	}))
	defer srv.Close()
	err = RunChat(context.Background(), ChatConfig{Node: srv.URL, Data: dir, Channel: "lobby"}, strings.NewReader(""), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "stop here") || got != key {
		t.Fatalf("RunChat = %v, key sent %q, want %q", err, got, key)
	}
	cfg, err := parseChat([]string{"--data", dir, "--api-key", key, "lobby"}, io.Discard)
	if err != nil || cfg.Data != dir || cfg.APIKey != key {
		t.Fatalf("parseChat: %+v, %v", cfg, err)
	}
}

// TestDemoStartsQuietly runs `catnest demo` and reads its logs until every
// node has peers and the lobby's messages: a newcomer's first screen holds
// no warnings or errors, and no "dial failed" at INFO (a node that dials
// before it has registered with the rendezvous is not an error).
func TestDemoStartsQuietly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	const nodes = 6
	p := startProc(t, "demo", "--http", "127.0.0.1:0", "--nodes", fmt.Sprint(nodes))
	var uis []string
	for range nodes {
		uis = append(uis, p.expect(t, `web UI: (http://127\.0\.0\.1:\d+/)$`)[1])
	}
	testutil.WaitFor(t, 60*time.Second, "every demo node to have peers and the lobby's four messages", func() bool {
		for _, ui := range uis {
			if len(peerNames(t, ui)) < 2 {
				return false
			}
			// The lobby, joined; the first node has the chat of its
			// live room too.
			var chs []webui.Channel
			getJSON(t, ui+"api/channels", &chs)
			lobby := slices.IndexFunc(chs, func(c webui.Channel) bool { return c.Name == "lobby" })
			if lobby < 0 || !chs[lobby].Joined {
				return false
			}
			var ms []webui.Message
			getJSON(t, ui+"api/channels/"+chs[lobby].ID+"/messages", &ms)
			if len(ms) < 4 {
				return false
			}
		}
		return true
	})
	// Each node shares its sample files: every node lists all of them,
	// and another node's image comes whole through the content endpoint.
	// (Their music folders are shared too: the sample files are those
	// writeDemoFiles names.) The demo makes them node after node, in the
	// background, which takes minutes under the race detector on a busy
	// machine: what fails is a list that stops growing.
	sample := regexp.MustCompile(`^[a-z]+-(rings\.png|stripes\.png|readme\.txt)$`)
	var files []shards.File
	testutil.WaitProgress(t, 60*time.Second, "every node to list every node's sample files", func() (bool, int) {
		listed, done := 0, true
		for _, ui := range uis {
			var all []shards.File
			getJSON(t, ui+"api/files", &all)
			files = slices.DeleteFunc(all, func(f shards.File) bool { return !sample.MatchString(f.Name) })
			listed += len(files)
			done = done && len(files) == 3*nodes
		}
		if !done {
			time.Sleep(100 * time.Millisecond)
		}
		return done, listed
	})
	// And their music: every node lists the whole demo library, each
	// track once, in the three formats, the one track two nodes hold with
	// both.
	testutil.WaitProgress(t, 60*time.Second, "every node to list every node's music", func() (bool, int) {
		listed, done := 0, true
		for _, ui := range uis {
			var ts []music.Track
			getJSON(t, ui+"api/music/tracks", &ts)
			seen, formats, twice := map[shards.MD5]bool{}, map[string]bool{}, 0
			for _, tr := range ts {
				if seen[tr.MD5] {
					t.Fatalf("%s lists %s twice", ui, tr.MD5)
				}
				seen[tr.MD5], formats[tr.Format] = true, true
				if len(tr.Sources) == 2 {
					twice++
				}
			}
			listed += len(ts) + twice
			done = done && len(ts) == nodes*len(demoProgressions)+len(demoFixtures) && len(formats) == 3 && twice == 1
		}
		if !done {
			time.Sleep(100 * time.Millisecond)
		}
		return done, listed
	})
	var self struct{ ID string }
	getJSON(t, uis[0]+"api/node", &self)
	images := 0
	for _, f := range files {
		if f.Type != "image/png" || len(f.Holders) != 1 || string(f.Holders[0]) == self.ID {
			continue
		}
		images++
		resp, err := http.Get(uis[0] + "api/shards/" + f.ID.String() + "/content")
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(resp.Body)
		resp.Body.Close()
		if err != nil || img.Bounds().Dx() != demoW || img.Bounds().Dy() != demoH {
			t.Fatalf("%s from another node: %v, %v", f.Name, img, err)
		}
		break
	}
	if images == 0 {
		t.Fatalf("no other node's image among %+v", files)
	}
	noisy := regexp.MustCompile(`level=(WARN|ERROR)|level=INFO msg="[^"]*dial failed`)
	var bad []string
	for _, line := range strings.Split(p.output(), "\n") {
		if noisy.MatchString(line) {
			bad = append(bad, line)
		}
	}
	if len(bad) > 0 {
		t.Fatalf("the demo's start logs %d noisy lines:\n%s", len(bad), strings.Join(bad, "\n"))
	}
}

// TestChatKeepsLocalKeyHome checks that `catnest chat` sends the key of
// the node on this machine (from the default data dir) only to a node on
// this machine: a --node elsewhere needs its own key, and gets no request
// carrying this one.
func TestChatKeepsLocalKeyHome(t *testing.T) {
	home := t.TempDir()
	t.Setenv("XDG_DATA_HOME", home)
	t.Setenv("CATNEST_API_KEY", "")
	local, err := webui.LoadOrCreateAPIKey(filepath.Join(home, "catnest"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// 192.0.2.1 (TEST-NET-1) stands for a node on another machine: no
	// request may leave for it.
	cfg, err := parseChat([]string{"--node", "http://192.0.2.1:7070", "--token", "their-token", "lobby"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	err = RunChat(ctx, cfg, strings.NewReader(""), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "not on this machine") || !strings.Contains(err.Error(), "--api-key") {
		t.Fatalf("chat with a node elsewhere and no key: %v, want a hint at --api-key", err)
	}

	// A node on this machine gets the local key.
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("X-API-Key"))
		mu.Unlock()
		http.Error(w, `{"error":"stop here"}`, http.StatusTeapot)
	}))
	defer srv.Close()
	cfg, err = parseChat([]string{"--node", srv.URL, "lobby"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := RunChat(ctx, cfg, strings.NewReader(""), io.Discard); err == nil || !strings.Contains(err.Error(), "stop here") {
		t.Fatalf("chat with a node here: %v, want the node's answer", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != local {
		t.Fatalf("keys sent %q, want the local key %q once", got, local)
	}
}

// TestChatCatchesUpAfterResync runs `catnest chat` against a node that,
// having dropped events for it (it fell behind in a burst), sends a resync
// event: the messages it missed show, each once.
func TestChatCatchesUpAfterResync(t *testing.T) {
	const missed = 300
	var mu sync.Mutex
	var msgs []webui.Message // what the node holds
	start := time.Date(2026, 1, 2, 10, 0, 0, 0, time.Local)
	add := func(n int) {
		mu.Lock()
		defer mu.Unlock()
		for range n {
			i := len(msgs)
			msgs = append(msgs, webui.Message{ID: fmt.Sprintf("m%04d", i), Channel: "c1", AuthorName: "bot",
				Text: fmt.Sprintf("burst line %04d", i), Time: start.Add(time.Duration(i) * time.Second)})
		}
	}
	add(5) // the history
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/channels", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]webui.Channel{{ID: "c1", Name: "lobby", Joined: true}})
	})
	mux.HandleFunc("GET /api/channels/c1/messages", func(w http.ResponseWriter, r *http.Request) {
		var limit int
		fmt.Sscan(r.URL.Query().Get("limit"), &limit)
		mu.Lock()
		defer mu.Unlock()
		json.NewEncoder(w).Encode(msgs[max(0, len(msgs)-limit):])
	})
	mux.HandleFunc("GET /api/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		// Events for another channel, then a burst this client fell
		// behind in: the node sends resync in place of the dropped events.
		fmt.Fprint(w, "event: chat\ndata: {\"type\":\"message\",\"channel\":\"c2\",\"message\":{\"id\":\"x\",\"text\":\"elsewhere\"}}\n\n")
		add(missed)
		fmt.Fprint(w, "event: chat\ndata: {\"type\":\"resync\"}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	stdin, typing := io.Pipe()
	defer typing.Close()
	var out syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- RunChat(ctx, ChatConfig{Node: srv.URL, APIKey: "KEYFORTHECHATCOMMAND234567", Channel: "lobby", History: 5}, stdin, &out)
	}()
	last := fmt.Sprintf("burst line %04d", 5+missed-1)
	testutil.WaitFor(t, 20*time.Second, "the missed messages", func() bool { return strings.Contains(out.String(), last) })
	typing.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := range 5 + missed {
		if n := strings.Count(out.String(), fmt.Sprintf("burst line %04d", i)); n != 1 {
			t.Fatalf("line %d shows %d times:\n%s", i, n, out.String())
		}
	}
	if strings.Contains(out.String(), "elsewhere") {
		t.Fatalf("a message of another channel shows:\n%s", out.String())
	}
}

// TestChatInputTooLong pipes a line longer than the input allows into
// `catnest chat`: it says so instead of ending as if the input had ended.
func TestChatInputTooLong(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/channels", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]webui.Channel{{ID: "c1", Name: "lobby", Joined: true}})
	})
	mux.HandleFunc("GET /api/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	input := strings.NewReader(strings.Repeat("x", 100<<10) + "\n")
	err := RunChat(ctx, ChatConfig{Node: srv.URL, APIKey: "KEYFORTHECHATCOMMAND234567", Channel: "lobby"}, input, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("RunChat = %v, want an error about the long line", err)
	}
}
