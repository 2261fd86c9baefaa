package webui

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
)

func TestNew(t *testing.T) {
	node := newFakeNode("alpha")
	tests := []struct {
		name    string
		cfg     Config
		wantErr error
	}{
		{"default", Config{}, nil},
		{"loopback v4", Config{Addr: "127.0.0.1:0"}, nil},
		{"loopback v6", Config{Addr: "[::1]:7070"}, nil},
		{"localhost", Config{Addr: "localhost:7070"}, nil},
		{"all interfaces without token", Config{Addr: ":7070"}, ErrNoToken},
		{"LAN without token", Config{Addr: "192.168.1.5:7070"}, ErrNoToken},
		{"LAN with token", Config{Addr: "0.0.0.0:7070", Token: "t"}, nil},
		{"no port", Config{Addr: "127.0.0.1"}, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.cfg, node)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("New: %v", err)
			case tt.wantErr == errAny && err == nil,
				tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("New: err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && s.Handler() == nil {
				t.Fatal("nil handler")
			}
		})
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Error("New with nil node: no error")
	}
}

// get does a request and returns the status and body; it fails the test on
// transport errors.
func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return resp, body
}

func newRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// wantJSONError checks that a response is an API error with status.
func wantJSONError(t *testing.T, resp *http.Response, body []byte, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var e struct{ Error string }
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Errorf("body %s is not {\"error\": ...} (%v)", body, err)
	}
}

func TestNodeEndpoint(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	base := startServer(t, Config{Version: "v1.2.3"}, node)
	c := newClient(t)

	resp, body := do(t, c, newRequest(t, "GET", base+"/api/node"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	want := map[string]any{"id": string(node.id), "name": "alpha", "version": "v1.2.3"}
	if !maps.Equal(got, want) {
		t.Errorf("GET /api/node = %v, want %v", got, want)
	}

	resp, body = do(t, c, newRequest(t, "HEAD", base+"/api/node"))
	if resp.StatusCode != http.StatusOK || len(body) != 0 {
		t.Errorf("HEAD /api/node: status %d, body %q", resp.StatusCode, body)
	}
}

func TestPeersEndpoint(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	base := startServer(t, Config{}, node)
	c := newClient(t)

	resp, body := do(t, c, newRequest(t, "GET", base+"/api/peers"))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("no peers: status %d, body %q, want []", resp.StatusCode, body)
	}

	since := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	node.add(fakePeer("charlie", 12500*time.Microsecond, true, since))
	node.add(fakePeer("bravo", 3*time.Millisecond, false, since.Add(time.Minute)))
	// Two peers with the same name are ordered by ID.
	twin1 := mesh.PeerInfo{ID: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", Name: "bravo", Since: since}
	twin0 := mesh.PeerInfo{ID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Name: "bravo", Since: since}
	node.add(twin1)
	node.add(twin0)

	resp, body = do(t, c, newRequest(t, "GET", base+"/api/peers"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var got []map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	var ids []string
	for _, p := range got {
		ids = append(ids, p["id"].(string))
	}
	wantIDs := append(
		slices.Sorted(slices.Values([]string{string(twin0.ID), string(twin1.ID), string(fakeID("bravo"))})),
		string(fakeID("charlie")))
	if !slices.Equal(ids, wantIDs) {
		t.Errorf("order %v, want %v (by name, then id)", ids, wantIDs)
	}
	want := map[string]any{
		"id":       string(fakeID("charlie")),
		"name":     "charlie",
		"rtt_ms":   12.5,
		"outbound": true,
		"since":    "2025-03-04T05:06:07Z",
		// A link that does not say its route is direct.
		"route":     "direct",
		"relayed":   false,
		"bytes_in":  0.0,
		"bytes_out": 0.0,
	}
	if len(got) == 4 && !maps.Equal(got[3], want) {
		t.Errorf("peer = %v, want %v", got[3], want)
	}
}

func TestAPIErrors(t *testing.T) {
	checkGoroutines(t)
	base := startServer(t, Config{}, newFakeNode("alpha"))
	c := newClient(t)

	resp, body := do(t, c, newRequest(t, "GET", base+"/api/nope"))
	wantJSONError(t, resp, body, http.StatusNotFound)

	req := newRequest(t, "POST", base+"/api/peers")
	req.Header.Set("Origin", base)
	resp, body = do(t, c, req)
	wantJSONError(t, resp, body, http.StatusMethodNotAllowed)
	if allow := resp.Header.Get("Allow"); allow != "GET, HEAD" {
		t.Errorf("Allow %q, want %q", allow, "GET, HEAD")
	}
}

func TestStatic(t *testing.T) {
	checkGoroutines(t)
	base := startServer(t, Config{}, newFakeNode("alpha"))
	c := newClient(t)

	tests := []struct {
		path, contentType, contains string
	}{
		{"/", "text/html", `<script type="module" src="app.js">`},
		{"/app.js", "text/javascript", "const views = ["},
		{"/style.css", "text/css", "prefers-color-scheme: dark"},
		{"/i18n/zh.js", "text/javascript", "简体中文"},
		{"/favicon.svg", "image/svg+xml", "<svg"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := do(t, c, newRequest(t, "GET", base+tt.path))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
				t.Errorf("Content-Type %q, want %s", ct, tt.contentType)
			}
			if !strings.Contains(string(body), tt.contains) {
				t.Errorf("body does not contain %q", tt.contains)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			etag := resp.Header.Get("ETag")
			if etag == "" {
				t.Fatal("no ETag")
			}
			req := newRequest(t, "GET", base+tt.path)
			req.Header.Set("If-None-Match", etag)
			if resp, _ := do(t, c, req); resp.StatusCode != http.StatusNotModified {
				t.Errorf("If-None-Match: status %d, want 304", resp.StatusCode)
			}
		})
	}

	resp, _ := do(t, c, newRequest(t, "POST", base+"/"))
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST / without Origin: status %d, want 403", resp.StatusCode)
	}
}

func TestHostCheck(t *testing.T) {
	checkGoroutines(t)
	base := startServer(t, Config{}, newFakeNode("alpha"))
	u, _ := url.Parse(base)
	port := u.Port()
	c := newClient(t)

	tests := []struct {
		host string
		want int
	}{
		{"127.0.0.1:" + port, http.StatusOK},
		{"localhost:" + port, http.StatusOK},
		{"LocalHost:" + port, http.StatusOK},
		{"[::1]:" + port, http.StatusOK},
		{"127.0.0.2:" + port, http.StatusOK},
		{"evil.example:" + port, http.StatusForbidden},
		{"localhost.evil.example:" + port, http.StatusForbidden},
		{"evil.example", http.StatusForbidden},
		{"127.0.0.1", http.StatusForbidden}, // port 80, not ours
		{"127.0.0.1:1", http.StatusForbidden},
		{"[::1]:1", http.StatusForbidden},
		{"0.0.0.0:" + port, http.StatusForbidden},
	}
	for _, tt := range tests {
		for _, path := range []string{"/api/node", "/"} {
			t.Run(tt.host+path, func(t *testing.T) {
				req := newRequest(t, "GET", base+path)
				req.Host = tt.host
				resp, body := do(t, c, req)
				if resp.StatusCode != tt.want {
					t.Fatalf("Host %q: status %d, want %d", tt.host, resp.StatusCode, tt.want)
				}
				if tt.want == http.StatusForbidden {
					wantJSONError(t, resp, body, tt.want)
				}
			})
		}
	}
}

func TestToken(t *testing.T) {
	checkGoroutines(t)
	const token = "s3cret-token"
	// A non-loopback address: the Host check is off, the token is on. The
	// listener is still on loopback, which the server cannot tell apart.
	s, err := New(Config{Addr: "0.0.0.0:7070", Token: token}, newFakeNode("alpha"))
	if err != nil {
		t.Fatal(err)
	}
	base, _ := serve(t, s)
	c := newClient(t)

	tests := []struct {
		name   string
		path   string
		header map[string]string
		host   string
		want   int
	}{
		{"none", "/api/node", nil, "", http.StatusUnauthorized},
		{"bearer", "/api/node", map[string]string{"Authorization": "Bearer " + token}, "", http.StatusOK},
		{"bearer, any host", "/api/node", map[string]string{"Authorization": "Bearer " + token}, "catnest.lan:7070", http.StatusOK},
		{"bad bearer", "/api/node", map[string]string{"Authorization": "Bearer nope"}, "", http.StatusUnauthorized},
		{"empty bearer", "/api/node", map[string]string{"Authorization": "Bearer "}, "", http.StatusUnauthorized},
		{"basic", "/api/node", map[string]string{"Authorization": "Basic " + token}, "", http.StatusUnauthorized},
		{"prefix of token", "/api/node", map[string]string{"Authorization": "Bearer " + token[:5]}, "", http.StatusUnauthorized},
		{"query", "/api/node?token=" + token, nil, "", http.StatusOK},
		{"bad query", "/api/node?token=nope", nil, "", http.StatusUnauthorized},
		{"cookie", "/api/node", map[string]string{"Cookie": tokenCookie + "=" + token}, "", http.StatusOK},
		{"bad cookie", "/api/node", map[string]string{"Cookie": tokenCookie + "=nope"}, "", http.StatusUnauthorized},
		{"page without token", "/", nil, "", http.StatusUnauthorized},
		{"page with cookie", "/", map[string]string{"Cookie": tokenCookie + "=" + token}, "", http.StatusOK},
		{"page with query", "/?token=" + token + "&x=1", nil, "", http.StatusSeeOther},
		{"events without token", "/api/events", nil, "", http.StatusUnauthorized},
		{"events with bad cookie", "/api/events", map[string]string{"Cookie": tokenCookie + "=x"}, "", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newRequest(t, "GET", base+tt.path)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			resp, body := do(t, c, req)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.want, body)
			}
			if tt.want == http.StatusUnauthorized {
				wantJSONError(t, resp, body, tt.want)
			}
		})
	}

	t.Run("query sets cookie", func(t *testing.T) {
		for _, path := range []string{"/api/node?token=" + token, "/?token=" + token + "&x=1"} {
			resp, _ := do(t, c, newRequest(t, "GET", base+path))
			var ck *http.Cookie
			for _, k := range resp.Cookies() {
				if k.Name == tokenCookie {
					ck = k
				}
			}
			if ck == nil {
				t.Fatalf("%s: no %s cookie", path, tokenCookie)
			}
			if ck.Value != token || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" {
				t.Errorf("%s: cookie %+v, want HttpOnly SameSite=Strict Path=/ with the token", path, ck)
			}
			if resp.StatusCode == http.StatusSeeOther {
				if loc := resp.Header.Get("Location"); loc != "/?x=1" {
					t.Errorf("%s: redirect to %q, want /?x=1 (token removed)", path, loc)
				}
			}
		}
	})

	t.Run("loopback with token", func(t *testing.T) {
		s, err := New(Config{Addr: "127.0.0.1:0", Token: token}, newFakeNode("alpha"))
		if err != nil {
			t.Fatal(err)
		}
		base, stop := serve(t, s)
		defer stop()
		resp, _ := do(t, c, newRequest(t, "GET", base+"/api/node"))
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("no token: status %d, want 401", resp.StatusCode)
		}
		req := newRequest(t, "GET", base+"/api/node")
		req.Header.Set("Authorization", "Bearer "+token)
		req.Host = "evil.example"
		if resp, _ := do(t, c, req); resp.StatusCode != http.StatusForbidden {
			t.Errorf("token but foreign Host: status %d, want 403", resp.StatusCode)
		}
	})
}

func TestOriginCheck(t *testing.T) {
	checkGoroutines(t)
	base := startServer(t, Config{}, newFakeNode("alpha"))
	c := newClient(t)

	// A POST that passes the check reaches the route and gets 405: there
	// are no state-changing endpoints yet.
	const passed = http.StatusMethodNotAllowed
	tests := []struct {
		name   string
		method string
		header map[string]string
		want   int
	}{
		{"same origin", "POST", map[string]string{"Origin": base}, passed},
		{"same origin, DELETE", "DELETE", map[string]string{"Origin": base}, passed},
		{"no origin, same-origin fetch", "POST", map[string]string{"Sec-Fetch-Site": "same-origin"}, passed},
		{"no origin", "POST", nil, http.StatusForbidden},
		{"no origin, cross-site fetch", "POST", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"foreign origin", "POST", map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		{"foreign origin claiming same-origin", "POST", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin"}, http.StatusForbidden},
		{"null origin", "POST", map[string]string{"Origin": "null"}, http.StatusForbidden},
		{"other port", "PUT", map[string]string{"Origin": "http://127.0.0.1:1"}, http.StatusForbidden},
		{"https scheme", "POST", map[string]string{"Origin": strings.Replace(base, "http:", "https:", 1)}, http.StatusForbidden},
		{"GET from foreign origin", "GET", map[string]string{"Origin": "http://evil.example"}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newRequest(t, tt.method, base+"/api/peers")
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, body := do(t, c, req)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.want, body)
			}
		})
	}
}

// TestDictionaries checks that both languages have the same keys and that
// every key the UI uses exists.
func TestDictionaries(t *testing.T) {
	keyRe := regexp.MustCompile(`(?m)^\s*'([\w.]+)':`)
	keys := func(name string) map[string]bool {
		t.Helper()
		b, err := fs.ReadFile(staticFS(), name)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, k := range keyRe.FindAllStringSubmatch(string(b), -1) {
			m[k[1]] = true
		}
		if len(m) < 10 {
			t.Fatalf("%s: found only %d keys", name, len(m))
		}
		return m
	}
	en, zh := keys("i18n/en.js"), keys("i18n/zh.js")
	for k := range en {
		if !zh[k] {
			t.Errorf("key %q is in en.js but not in zh.js", k)
		}
	}
	for k := range zh {
		if !en[k] {
			t.Errorf("key %q is in zh.js but not in en.js", k)
		}
	}

	// Keys used in the code: t('key'), plural('key', ...), title: 'key',
	// data-i18n="key" and its -title and -aria-label forms.
	useRe := regexp.MustCompile(`(?:\bt\(|plural\(|title: )'([\w.]+)'|data-i18n(?:-title|-aria-label)?="([\w.]+)"`)
	err := fs.WalkDir(staticFS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(p, "i18n/") {
			return err
		}
		b, err := fs.ReadFile(staticFS(), p)
		if err != nil {
			return err
		}
		for _, m := range useRe.FindAllStringSubmatch(string(b), -1) {
			k := m[1] + m[2]
			if strings.HasPrefix(m[0], "plural(") {
				if !en[k+".one"] || !en[k+".other"] {
					t.Errorf("%s: plural key %q needs %s.one and %s.other", p, k, k, k)
				}
				continue
			}
			if !en[k] {
				t.Errorf("%s: key %q is not in the dictionaries", p, k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
