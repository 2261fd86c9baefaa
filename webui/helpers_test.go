package webui

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startServer serves cfg for node on a loopback port until the test ends
// and returns its base URL.
func startServer(t *testing.T, cfg Config, node Node) string {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	s, err := New(cfg, node)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := serve(t, s)
	return base
}

// pageCall does a request from our own page (Origin set) with body as
// JSON when it is not empty, and header's name, value pairs; an error
// status must come with an API error body. It returns the response and
// body.
func pageCall(t *testing.T, c *http.Client, base, method, path, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Origin", base)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, b := do(t, c, req)
	if resp.StatusCode >= 400 {
		wantJSONError(t, resp, b, resp.StatusCode)
	}
	return resp, b
}

// nextEvent waits up to timeout for the next event named name that ok
// accepts (the first, if ok is nil), skipping comments and other events.
func nextEvent(t *testing.T, events <-chan sseEvent, name string, timeout time.Duration, ok func(sseEvent) bool) sseEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, open := <-events:
			if !open {
				t.Fatal("event stream ended")
			}
			if ev.name != name {
				continue
			}
			if ok == nil || ok(ev) {
				return ev
			}
		case <-deadline:
			if ok != nil {
				t.Fatalf("no such %s event within %v", name, timeout)
			}
			t.Fatalf("no %s event within %v", name, timeout)
		}
	}
}

// nextObject waits for the next event named name whose JSON object ok
// accepts, and returns it.
func nextObject(t *testing.T, events <-chan sseEvent, name string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	var v map[string]any
	nextEvent(t, events, name, 10*time.Second, func(ev sseEvent) bool {
		v = nil
		if err := json.Unmarshal([]byte(ev.data), &v); err != nil {
			t.Fatalf("%s event %q: %v", name, ev.data, err)
		}
		return ok(v)
	})
	return v
}

// nextArray waits for the next event named name and decodes it, a JSON
// array.
func nextArray[T any](t *testing.T, events <-chan sseEvent, name string, timeout time.Duration) []T {
	t.Helper()
	ev := nextEvent(t, events, name, timeout, nil)
	var vs []T
	if err := json.Unmarshal([]byte(ev.data), &vs); err != nil {
		t.Fatalf("%s event %q: %v", name, ev.data, err)
	}
	if vs == nil {
		t.Fatalf("%s event %q: want an array", name, ev.data)
	}
	return vs
}
