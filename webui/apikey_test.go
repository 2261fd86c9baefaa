package webui

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/catnest/catnest/chatlog"
)

const testAPIKey = "KEYFORSCRIPTS0123456789ABC"

// keyFixture is a server with a fakeChat (see newChatFixture's channels)
// and an API key; token is its token, when it is off loopback.
type keyFixture struct {
	base string
	c    *http.Client
	chat *fakeChat
}

func newKeyFixture(t *testing.T, addr, token string) *keyFixture {
	t.Helper()
	node := newFakeNode("alpha")
	chat := newFakeChat(node.id)
	chat.addChannel(chatlog.ChannelInfo{ID: generalID, Name: "general", Owner: node.id, Joined: true})
	s, err := New(Config{Addr: addr, Token: token, APIKey: testAPIKey, Chat: chat}, node)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := serve(t, s)
	return &keyFixture{base: base, c: newClient(t), chat: chat}
}

// post sends a chat message with the headers given and nothing else, as
// curl does, and returns the status.
func (f *keyFixture) post(t *testing.T, text string, header map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", f.base+"/api/channels/"+generalID+"/messages", strings.NewReader(fmt.Sprintf(`{"text":%q}`, text)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "curl/8.5.0")
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, body := do(t, f.c, req)
	if resp.StatusCode >= 400 {
		wantJSONError(t, resp, body, resp.StatusCode)
	}
	return resp.StatusCode, body
}

func (f *keyFixture) texts() []string {
	var out []string
	f.chat.mu.Lock()
	defer f.chat.mu.Unlock()
	for _, m := range f.chat.channels[generalID].msgs {
		out = append(out, m.Text)
	}
	return out
}

// TestAPIKeyScripts checks that a script with the API key and no Origin can
// post, that a wrong key or none cannot, and that a browser request from
// another site is still refused, with or without cookies, and even with the
// key.
func TestAPIKeyScripts(t *testing.T) {
	checkGoroutines(t)
	for _, tc := range []struct {
		name, addr, token string
	}{
		{"loopback", "127.0.0.1:0", ""},
		// Off loopback the key stands in for the token. The listener is
		// still on loopback, which the server cannot tell apart.
		{"with token", "0.0.0.0:7070", "s3cret-token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newKeyFixture(t, tc.addr, tc.token)
			var want []string
			for i, h := range []map[string]string{
				{"X-API-Key": testAPIKey},
				{"Authorization": "Bearer " + testAPIKey},
				{"X-API-Key": testAPIKey, "Origin": f.base}, // a script may still say where it is
			} {
				text := fmt.Sprintf("from a script %d", i)
				if st, body := f.post(t, text, h); st != http.StatusCreated {
					t.Fatalf("%v: status %d, want 201; %s", h, st, body)
				}
				want = append(want, text)
			}
			// A script posting in a loop, as a bot does.
			for i := range 300 {
				text := fmt.Sprintf("bot line %d", i)
				if st, body := f.post(t, text, map[string]string{"X-API-Key": testAPIKey}); st != http.StatusCreated {
					t.Fatalf("bot line %d: status %d; %s", i, st, body)
				}
				want = append(want, text)
			}

			cookie := tokenCookie + "=" + tc.token
			noKey := http.StatusUnauthorized // the token is missing
			if tc.token == "" {
				cookie = "session=1"
				noKey = http.StatusForbidden // the Origin is missing
			}
			type refusal struct {
				name   string
				header map[string]string
				status int
			}
			refused := []refusal{
				{"no key", nil, noKey},
				{"wrong key", map[string]string{"X-API-Key": "NOTTHEKEY0123456789ABCDEFG"}, http.StatusUnauthorized},
				{"wrong bearer", map[string]string{"Authorization": "Bearer NOTTHEKEY0123456789ABCDEFG"}, http.StatusUnauthorized},
				{"key prefix", map[string]string{"X-API-Key": testAPIKey[:20]}, http.StatusUnauthorized},
				{"key with suffix", map[string]string{"X-API-Key": testAPIKey + "x"}, http.StatusUnauthorized},
				{"wrong key, right bearer", map[string]string{"X-API-Key": "nope", "Authorization": "Bearer " + testAPIKey}, http.StatusUnauthorized},
				{"cross-site with cookies", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Cookie": cookie}, http.StatusForbidden},
				{"cross-site claiming same-origin", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin", "Cookie": cookie}, http.StatusForbidden},
				{"cross-site with the key", map[string]string{"Origin": "http://evil.example", "X-API-Key": testAPIKey, "Cookie": cookie}, http.StatusForbidden},
				{"null origin with the key", map[string]string{"Origin": "null", "Authorization": "Bearer " + testAPIKey}, http.StatusForbidden},
			}
			if tc.token == "" {
				refused = append(refused, refusal{"foreign host with the key", map[string]string{"X-API-Key": testAPIKey, "Host": "evil.example"}, http.StatusForbidden})
			} else {
				// The token is for browsers: it does not excuse a missing Origin.
				refused = append(refused, refusal{"token without origin", map[string]string{"Authorization": "Bearer " + tc.token}, http.StatusForbidden})
			}
			for _, r := range refused {
				t.Run(r.name, func(t *testing.T) {
					if st, body := f.post(t, "refused: "+r.name, r.header); st != r.status {
						t.Fatalf("status %d, want %d; %s", st, r.status, body)
					}
				})
			}
			if got := f.texts(); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("stored %d messages, want the %d accepted ones; last %q", len(got), len(want), got[len(got)-1])
			}
		})
	}
}

// TestAPIKeyGuessing sends many wrong keys: all are refused and nothing
// changes.
func TestAPIKeyGuessing(t *testing.T) {
	checkGoroutines(t)
	f := newKeyFixture(t, "127.0.0.1:0", "")
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := range 250 {
				guess := fmt.Sprintf("%s%03d%d", testAPIKey[:22], i, w)
				if i%2 == 0 {
					guess = testAPIKey[:len(testAPIKey)-1] + string(rune('a'+i%26))
				}
				req, _ := http.NewRequest("POST", f.base+"/api/channels/"+generalID+"/messages", strings.NewReader(`{"text":"guess"}`))
				req.Header.Set("X-API-Key", guess)
				resp, err := f.c.Do(req)
				if err != nil {
					errs <- err.Error()
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					errs <- fmt.Sprintf("guess %q: status %d, want 401", guess, resp.StatusCode)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := f.texts(); len(got) != 0 {
		t.Fatalf("%d messages stored by wrong keys", len(got))
	}
}

// TestAPIKeyEndpoint checks who may read GET /api/apikey: the node's own
// page and scripts that hold the key, nobody else.
func TestAPIKeyEndpoint(t *testing.T) {
	checkGoroutines(t)
	f := newKeyFixture(t, "127.0.0.1:0", "")
	tests := []struct {
		name   string
		header map[string]string
		host   string
		want   int
	}{
		{"own page", map[string]string{"Sec-Fetch-Site": "same-origin"}, "", http.StatusOK},
		{"own origin", map[string]string{"Origin": f.base}, "", http.StatusOK},
		{"script with the key", map[string]string{"X-API-Key": testAPIKey}, "", http.StatusOK},
		{"no headers", nil, "", http.StatusForbidden},
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}, "", http.StatusForbidden},
		{"cross-site script tag", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "script"}, "", http.StatusForbidden},
		{"same-site other port", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"}, "", http.StatusForbidden},
		{"foreign origin claiming same-origin", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://evil.example"}, "", http.StatusForbidden},
		{"DNS rebinding", map[string]string{"Sec-Fetch-Site": "same-origin"}, "evil.example", http.StatusForbidden},
		{"wrong key", map[string]string{"X-API-Key": "NOTTHEKEY0123456789ABCDEFG"}, "", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newRequest(t, "GET", f.base+"/api/apikey")
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			resp, body := do(t, f.c, req)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d; %s", resp.StatusCode, tt.want, body)
			}
			if tt.want != http.StatusOK {
				wantJSONError(t, resp, body, tt.want)
				if strings.Contains(string(body), testAPIKey) {
					t.Fatalf("refused answer holds the key: %s", body)
				}
				return
			}
			if got := decode[apiKeyJSON](t, body); got.Key != testAPIKey || got.Header != "X-API-Key" {
				t.Fatalf("got %+v", got)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			if corp := resp.Header.Get("Cross-Origin-Resource-Policy"); corp != "same-origin" {
				t.Errorf("Cross-Origin-Resource-Policy %q, want same-origin", corp)
			}
		})
	}

	t.Run("no key", func(t *testing.T) {
		s, err := New(Config{Addr: "127.0.0.1:0"}, newFakeNode("alpha"))
		if err != nil {
			t.Fatal(err)
		}
		base, stop := serve(t, s)
		defer stop()
		req := newRequest(t, "GET", base+"/api/apikey")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, body := do(t, f.c, req)
		wantJSONError(t, resp, body, http.StatusNotFound)
		// And a key sent to a node without one is wrong.
		req = newRequest(t, "GET", base+"/api/node")
		req.Header.Set("X-API-Key", testAPIKey)
		resp, body = do(t, f.c, req)
		wantJSONError(t, resp, body, http.StatusUnauthorized)
	})
}

func TestNewAPIKey(t *testing.T) {
	for _, key := range []string{"short", strings.Repeat("k", 300), "KEY WITH SPACE 0123456789", "KEY\nNEWLINE0123456789ABC", "KEYÜNICODE0123456789ABCDEF"} {
		if _, err := New(Config{APIKey: key}, newFakeNode("alpha")); err == nil {
			t.Errorf("New accepted API key %q", key)
		}
	}
}

// TestAPIKeyFile checks the key file: made on first use with mode 0600,
// the same after restarts, one key when many start at once, and refused
// when others can read it or it is damaged.
func TestAPIKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := ReadAPIKey(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadAPIKey before any: %v, want ErrNotExist", err)
	}
	key, err := LoadOrCreateAPIKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkAPIKey(key); err != nil || len(key) < 26 {
		t.Fatalf("made key %q: %v", key, err)
	}
	path := filepath.Join(dir, APIKeyFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("mode %#o, want 0600", perm)
	}
	for range 3 { // restarts
		again, err := LoadOrCreateAPIKey(dir)
		if err != nil || again != key {
			t.Fatalf("after a restart: %q, %v; want %q", again, err, key)
		}
	}
	if got, err := ReadAPIKey(dir); err != nil || got != key {
		t.Fatalf("ReadAPIKey = %q, %v", got, err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, APIKeyFile+".*"))
	if len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}

	t.Run("concurrent first start", func(t *testing.T) {
		dir := t.TempDir()
		keys := make([]string, 16)
		var wg sync.WaitGroup
		for i := range keys {
			wg.Go(func() {
				k, err := LoadOrCreateAPIKey(dir)
				if err != nil {
					t.Error(err)
				}
				keys[i] = k
			})
		}
		wg.Wait()
		for _, k := range keys {
			if k != keys[0] {
				t.Fatalf("different keys: %q", keys)
			}
		}
	})

	t.Run("readable by others", func(t *testing.T) {
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(path, 0o600)
		if _, err := LoadOrCreateAPIKey(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("mode 0644: %v, want a chmod hint", err)
		}
	})

	t.Run("damaged", func(t *testing.T) {
		for _, content := range []string{"", "\n", "short\n", strings.Repeat("x", 5000), "two words here in the key file\n"} {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, APIKeyFile), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if k, err := LoadOrCreateAPIKey(dir); err == nil {
				t.Errorf("content %.20q: key %q, want an error", content, k)
			}
		}
	})
}
