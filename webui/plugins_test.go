package webui

import (
	"context"
	"crypto/md5"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/pubsub"
	"github.com/catnest/catnest/plugins"
	"github.com/catnest/catnest/shards"
)

// fakePlugins is a Plugins with a fixed installed list, a market the test
// sets and data in memory.
type fakePlugins struct {
	mu        sync.Mutex
	installed []plugins.Installed
	market    []plugins.Listing
	data      map[shards.MD5]map[string]string
	sources   map[shards.MD5][]byte // an installed plugin's code; none is unknown
	events    pubsub.Topic[plugins.Event]
}

func (f *fakePlugins) Publish(ctx context.Context, src []byte) (plugins.Entry, error) {
	h, err := plugins.ParseHeader(src)
	if err != nil {
		return plugins.Entry{}, err
	}
	return plugins.Entry{ID: md5.Sum(src), Name: h.Name, Version: h.Version}, nil
}
func (f *fakePlugins) Market(ctx context.Context, q string) ([]plugins.Listing, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]plugins.Listing{}, f.market...), nil
}

// setMarket makes the market l and says so, as the service does when a
// node publishes.
func (f *fakePlugins) setMarket(l ...plugins.Listing) {
	f.mu.Lock()
	f.market = slices.Clone(l)
	f.mu.Unlock()
	f.events.Publish(plugins.Event{Market: true})
}
func (f *fakePlugins) Installed(ctx context.Context) ([]plugins.Installed, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.installed), nil
}

// setInstalled makes the installed list l and says so, as the service
// does when a plugin is installed, changed or removed.
func (f *fakePlugins) setInstalled(l ...plugins.Installed) {
	f.mu.Lock()
	f.installed = slices.Clone(l)
	f.mu.Unlock()
	f.events.Publish(plugins.Event{Installed: true})
}
func (f *fakePlugins) Install(ctx context.Context, id shards.MD5, grant []string) (plugins.Installed, error) {
	return plugins.Installed{}, plugins.ErrUnknown
}
func (f *fakePlugins) SetEnabled(ctx context.Context, id shards.MD5, on bool) error { return nil }
func (f *fakePlugins) Uninstall(ctx context.Context, id shards.MD5) error           { return nil }
func (f *fakePlugins) Source(ctx context.Context, id shards.MD5) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if src, ok := f.sources[id]; ok {
		return src, nil
	}
	return nil, plugins.ErrUnknown
}
func (f *fakePlugins) Data(ctx context.Context, id shards.MD5) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.data[id], nil
}
func (f *fakePlugins) SetData(ctx context.Context, id shards.MD5, key, value string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.data[id] == nil {
		f.data[id] = map[string]string{}
	}
	f.data[id][key] = value
	return nil
}
func (f *fakePlugins) SubscribePlugins() *pubsub.Subscription[plugins.Event] {
	return f.events.Subscribe(4)
}

// TestPluginCapabilities: the node lets a plugin's call through only with
// the capability of that plugin, enabled, granted the permission the call
// needs; the page's own check is not the only one.
func TestPluginCapabilities(t *testing.T) {
	checkGoroutines(t)
	f := newChatFixture(t)
	fp := &fakePlugins{data: map[shards.MD5]map[string]string{}}
	mk := func(name string, enabled bool, granted ...string) plugins.Installed {
		return plugins.Installed{ID: md5.Sum([]byte(name)), Name: name, Enabled: enabled, Granted: granted, Permissions: []string{"chat-read", "chat-write", "storage"}}
	}
	writer, reader, off := mk("writer", true, "chat-read", "chat-write"), mk("reader", true, "chat-read", "storage"), mk("off", false, "chat-write")
	fp.installed = []plugins.Installed{writer, reader, off}
	s, err := New(Config{Addr: "127.0.0.1:0", Chat: f.chat, Plugins: fp}, f.node)
	if err != nil {
		t.Fatal(err)
	}
	f.base, _ = serve(t, s)

	list := decode[[]map[string]any](t, f.want(200, "GET", "/api/plugins", ""))
	caps := map[string]string{}
	for _, p := range list {
		c, _ := p["capability"].(string)
		caps[p["name"].(string)] = c
	}
	if caps["writer"] == "" || caps["reader"] == "" || caps["off"] != "" || caps["writer"] == caps["reader"] {
		t.Fatalf("capabilities %v: want one per enabled plugin", caps)
	}
	post := func(p plugins.Installed, capability string) (int, string) {
		req, _ := http.NewRequest("POST", f.base+"/api/plugins/"+p.ID.String()+"/chat", strings.NewReader(`{"channel":"`+generalID+`","text":"from a plugin"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", f.base)
		if capability != "" {
			req.Header.Set(capabilityHeader, capability)
		}
		resp, b := do(t, f.c, req)
		return resp.StatusCode, string(b)
	}
	for _, tt := range []struct {
		name   string
		p      plugins.Installed
		cap    string
		status int
		why    string
	}{
		{"no capability", writer, "", 403, "no plugin capability"},
		{"forged", writer, strings.Repeat("0", 64), 403, "bad plugin capability"},
		{"another plugin's", writer, caps["reader"], 403, "bad plugin capability"},
		{"not granted", reader, caps["reader"], 403, "not granted chat-write"},
		{"disabled", off, caps["writer"], 403, "disabled"},
		{"granted", writer, caps["writer"], 200, "from a plugin"},
	} {
		if status, body := post(tt.p, tt.cap); status != tt.status || !strings.Contains(body, tt.why) {
			t.Errorf("%s: %d %s, want %d saying %q", tt.name, status, body, tt.status, tt.why)
		}
	}
	ms, _ := f.chat.Messages(context.Background(), generalID, time.Time{}, 100)
	n := 0
	for _, m := range ms {
		if m.Text == "from a plugin" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d posts, want the granted one", n)
	}
	// Storage wants its own permission.
	put := func(p plugins.Installed, capability string) int {
		req, _ := http.NewRequest("PUT", f.base+"/api/plugins/"+p.ID.String()+"/data/k", strings.NewReader(`{"value":"v"}`))
		req.Header.Set("Origin", f.base)
		req.Header.Set(capabilityHeader, capability)
		resp, _ := do(t, f.c, req)
		return resp.StatusCode
	}
	if st := put(writer, caps["writer"]); st != 403 {
		t.Errorf("storage without the permission: %d", st)
	}
	if st := put(reader, caps["reader"]); st != 204 || fp.data[reader.ID]["k"] != "v" {
		t.Errorf("storage with it: %d, %v", st, fp.data)
	}
}

// TestPluginPublishAndFrame: publish answers 400 with the reason for a
// file that is not a plugin or is too big; the sandbox document forbids
// the network and same-origin access on its own.
func TestPluginPublishAndFrame(t *testing.T) {
	checkGoroutines(t)
	f := newChatFixture(t)
	s, err := New(Config{Addr: "127.0.0.1:0", Plugins: &fakePlugins{}}, f.node)
	if err != nil {
		t.Fatal(err)
	}
	f.base, _ = serve(t, s)
	good := "// ==CatnestPlugin==\n// @name x\n// @version 1.0.0\n// @permissions storage\n// ==/CatnestPlugin==\nexport default class X {}\n"
	for _, tt := range []struct {
		body, want string
		status     int
	}{
		{good, `"name":"x"`, 200},
		{"export default 1", "no header", 400},
		{strings.Replace(good, "storage", "root", 1), "unknown permission", 400},
		{strings.Replace(good, "1.0.0", "one", 1), "not a semantic version", 400},
		{good + strings.Repeat(" ", plugins.MaxFile), "512 KiB", 400},
	} {
		got, b := f.call("POST", "/api/plugins/publish", tt.body)
		if got != tt.status || !strings.Contains(string(b), tt.want) {
			t.Errorf("publish %.30q: %d %s, want %d with %q", tt.body, got, b, tt.status, tt.want)
		}
	}
	resp, err := f.c.Get(f.base + "/api/plugins/frame")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "connect-src 'none'", "sandbox allow-scripts", "frame-ancestors 'self'", "form-action 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("frame CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "allow-same-origin") || resp.Header.Get("X-Frame-Options") != "SAMEORIGIN" {
		t.Errorf("frame headers: %v", resp.Header)
	}
}
