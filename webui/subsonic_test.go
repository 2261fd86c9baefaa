package webui

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/music"
	"github.com/catnest/catnest/subsonic"
)

// newSubsonic makes a real Subsonic service over m, with user "ann".
func newSubsonic(t *testing.T, m subsonic.Music) *subsonic.Service {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "catnest.db"), 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cfg := subsonic.DefaultConfig()
	cfg.Music, cfg.DB = m, db
	ss, err := subsonic.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close(); db.Close() })
	if err := ss.SetCredentials(context.Background(), "ann", "pw"); err != nil {
		t.Fatal(err)
	}
	return ss
}

// subsonicStatus is the status and error code of a Subsonic answer.
func subsonicStatus(t *testing.T, resp *http.Response, body []byte) (string, int) {
	t.Helper()
	var env struct {
		R struct {
			Status string
			Error  struct{ Code int }
		} `json:"subsonic-response"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &env) != nil {
		t.Fatalf("not a Subsonic answer: %d %s", resp.StatusCode, body)
	}
	return env.R.Status, env.R.Error.Code
}

// TestSubsonicMount: off loopback, /rest/ works with the Subsonic
// credentials alone (no token, any Origin, by GET or POST) while the rest
// of the API keeps its token rule; the Settings API changes the
// credentials (with the token and our Origin only) and shows what apps
// play. On a loopback node the Host check still guards /rest/.
func TestSubsonicMount(t *testing.T) {
	checkGoroutines(t)
	m := newFakeMusic()
	tr := m.add(music.Track{Title: "Song", Artist: "Band", Album: "LP", Format: "mp3", Duration: 200}, []byte("audio"))
	ss := newSubsonic(t, m)
	const token = "tok-123"
	s, err := New(Config{Addr: "0.0.0.0:7070", Token: token, Music: m, Subsonic: ss}, newFakeNode("alpha"))
	if err != nil {
		t.Fatal(err)
	}
	base, _ := serve(t, s)
	c := newClient(t)
	rest := func(method, path string, form url.Values, header map[string]string) (string, int) {
		t.Helper()
		var req *http.Request
		if method == http.MethodPost {
			req, _ = http.NewRequest(method, base+path, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req, _ = http.NewRequest(method, base+path+"?"+form.Encode(), nil)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, body := do(t, c, req)
		return subsonicStatus(t, resp, body)
	}
	creds := url.Values{"u": {"ann"}, "p": {"pw"}, "f": {"json"}, "v": {"1.16.1"}, "c": {"test"}}
	for _, tt := range []struct {
		name, method, path string
		header             map[string]string
	}{
		{"GET", http.MethodGet, "/rest/ping.view", nil},
		{"GET without .view", http.MethodGet, "/rest/ping", nil},
		// Apps add /rest/ to the server address a user types in.
		{"an app given the /rest address", http.MethodGet, "/rest/rest/ping.view", nil},
		{"POST from a web player", http.MethodPost, "/rest/ping.view", map[string]string{"Origin": "https://player.example"}},
		{"with a wrong API key", http.MethodGet, "/rest/ping", map[string]string{"X-API-Key": "wrong"}},
	} {
		if st, code := rest(tt.method, tt.path, creds, tt.header); st != "ok" {
			t.Errorf("%s: %s %d", tt.name, st, code)
		}
	}
	wrong := url.Values{"u": {"ann"}, "p": {"nope"}, "f": {"json"}}
	if st, code := rest(http.MethodGet, "/rest/ping", wrong, nil); st != "failed" || code != 40 {
		t.Errorf("wrong password: %s %d", st, code)
	}
	// The rest of the API keeps its token rule.
	resp, body := do(t, c, newRequest(t, http.MethodGet, base+"/api/subsonic"))
	wantJSONError(t, resp, body, http.StatusUnauthorized)
	resp, body = do(t, c, newRequest(t, http.MethodGet, base+"/api/node?"+creds.Encode()))
	wantJSONError(t, resp, body, http.StatusUnauthorized)

	// Settings: read, then change with the token and our Origin.
	api := func(method, path, body string, origin bool) (*http.Response, []byte) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		if origin {
			req.Header.Set("Origin", base)
		}
		return do(t, c, req)
	}
	var got SubsonicJSON
	resp, body = api(http.MethodGet, "/api/subsonic", "", false)
	if json.Unmarshal(body, &got) != nil || got.User != "ann" || !got.PasswordSet || got.Password != "" {
		t.Fatalf("GET /api/subsonic: %d %s", resp.StatusCode, body)
	}
	resp, body = api(http.MethodPut, "/api/subsonic", `{"user":"bo","password":"new pw"}`, false)
	wantJSONError(t, resp, body, http.StatusForbidden)
	resp, body = api(http.MethodPut, "/api/subsonic", `{"user":"bo","password":""}`, true)
	wantJSONError(t, resp, body, http.StatusBadRequest)
	resp, body = api(http.MethodPut, "/api/subsonic", `{"user":"bo","password":"new pw"}`, true)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &got) != nil || got.User != "bo" {
		t.Fatalf("PUT /api/subsonic: %d %s", resp.StatusCode, body)
	}
	if st, _ := rest(http.MethodGet, "/rest/ping", creds, nil); st != "failed" {
		t.Error("the old password still logs in")
	}
	bo := url.Values{"u": {"bo"}, "p": {"new pw"}, "f": {"json"}, "id": {tr.MD5.String()}, "submission": {"false"}, "c": {"DSub"}}
	if st, code := rest(http.MethodGet, "/rest/scrobble", bo, nil); st != "ok" {
		t.Fatalf("scrobble with the new password: %s %d", st, code)
	}
	var now []subsonic.NowPlaying
	resp, body = api(http.MethodGet, "/api/subsonic/nowplaying", "", false)
	if json.Unmarshal(body, &now) != nil || len(now) != 1 || now[0].Title != "Song" || now[0].Player != "DSub" || now[0].User != "bo" {
		t.Fatalf("now playing: %d %s", resp.StatusCode, body)
	}

	// A loopback node keeps its Host check for /rest/ too.
	s2, err := New(Config{Addr: "127.0.0.1:0", Music: m, Subsonic: ss}, newFakeNode("beta"))
	if err != nil {
		t.Fatal(err)
	}
	base2, _ := serve(t, s2)
	req := newRequest(t, http.MethodGet, base2+"/rest/ping?"+bo.Encode())
	req.Host = "evil.example"
	resp, body = do(t, c, req)
	wantJSONError(t, resp, body, http.StatusForbidden)
	resp, body = do(t, c, newRequest(t, http.MethodGet, base2+"/rest/ping?"+bo.Encode()))
	if st, _ := subsonicStatus(t, resp, body); st != "ok" {
		t.Error("loopback /rest/ping")
	}

	// Without a Subsonic service, /rest/ is the UI's (token required).
	s3, err := New(Config{Addr: "0.0.0.0:7070", Token: token}, newFakeNode("gamma"))
	if err != nil {
		t.Fatal(err)
	}
	base3, _ := serve(t, s3)
	resp, body = do(t, c, newRequest(t, http.MethodGet, base3+"/rest/ping?"+bo.Encode()))
	wantJSONError(t, resp, body, http.StatusUnauthorized)
	resp, body = do(t, c, newRequest(t, http.MethodGet, base3+"/api/subsonic?token="+token))
	wantJSONError(t, resp, body, http.StatusNotFound)
}
