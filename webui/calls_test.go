package webui

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// callAPI posts body as JSON from our own page and returns the status and
// the decoded answer.
func callAPI(t *testing.T, base, path string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	if raw, ok := body.([]byte); ok {
		b = raw
	}
	req, _ := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(b))
	req.Header.Set("Origin", base)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

// callStream opens a call event stream and returns its events, one per
// receive, and the session it holds.
func callStream(t *testing.T, ctx context.Context, base string) (<-chan map[string]any, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/calls/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("call events: %s", res.Status)
	}
	ch := make(chan map[string]any, 16)
	go func() {
		defer res.Body.Close()
		defer close(ch)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var ev map[string]any
				json.Unmarshal([]byte(data), &ev)
				ch <- ev
			}
		}
	}()
	select {
	case ev := <-ch:
		if ev["type"] != "session" {
			t.Fatalf("first call event %v", ev)
		}
		return ch, ev["session"].(string)
	case <-time.After(10 * time.Second):
		t.Fatal("no session event")
		return nil, ""
	}
}

// TestCallsAPI: the call endpoints' answers, and their clear errors for
// bad room names, unknown sessions, oversized and malformed signals; a
// page whose stream ends leaves its room.
func TestCallsAPI(t *testing.T) {
	checkGoroutines(t)
	nodes := startCallNodes(t, 1, nil)
	base := strings.TrimSuffix(nodes[0].url, "/")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, sess := callStream(t, ctx, base)

	for _, tt := range []struct {
		path string
		body any
		want int
		msg  string
	}{
		{"/api/calls/a%20b/join", map[string]string{"session": sess}, 400, "bad room name"},
		{"/api/calls/..%2Fx/join", map[string]string{"session": sess}, 400, "bad room name"},
		{"/api/calls/kitchen/join", map[string]string{"session": "nosuch"}, 404, "api/calls/events"},
		{"/api/calls/kitchen/join", map[string]string{"session": sess, "extra": "x"}, 400, "unknown field"},
		{"/api/calls/kitchen/signal", map[string]any{"session": sess, "type": "offer", "sdp": strings.Repeat("x", 200<<10)}, 413, "too large"},
		{"/api/calls/kitchen/signal", map[string]any{"session": sess, "type": "offer", "sdp": "not sdp"}, 400, "SDP"},
		{"/api/calls/kitchen/signal", map[string]any{"session": sess, "type": "bye"}, 400, "bad signal"},
	} {
		status, out := callAPI(t, base, tt.path, tt.body)
		if status != tt.want || !strings.Contains(out["error"].(string), tt.msg) {
			t.Errorf("POST %s: %d %v, want %d with %q", tt.path, status, out, tt.want, tt.msg)
		}
	}
	status, out := callAPI(t, base, "/api/calls/%E7%8C%AB%E7%AA%9D/join", map[string]string{"session": sess})
	if status != 200 || out["state"] != "joined" || out["room"] != "猫窝" || out["ice_servers"] == nil {
		t.Fatalf("join: %d %v", status, out)
	}
	if ev := <-events; ev["type"] != "joined" || ev["room"] != "猫窝" {
		t.Fatalf("event %v", ev)
	}
	status, out = callAPI(t, base, "/api/calls/%E7%8C%AB%E7%AA%9D/signal", map[string]any{"session": sess, "type": "candidate", "candidate": map[string]any{"candidate": ""}})
	if status != http.StatusConflict {
		t.Fatalf("signal with no one to send to: %d %v", status, out)
	}

	// The page goes away: its session and its seat go with it.
	cancel()
	for range events {
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _ = callAPI(t, base, "/api/calls/%E7%8C%AB%E7%AA%9D/join", map[string]string{"session": sess})
		if status == http.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the session outlived its stream: %d", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	_, other := callStream(t, ctx2, base)
	for {
		// The seat is freed in the background: join until it is.
		status, out := callAPI(t, base, "/api/calls/%E7%8C%AB%E7%AA%9D/join", map[string]string{"session": other})
		if status != 200 {
			t.Fatalf("join: %d %v", status, out)
		}
		if out["peer"] == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the room still holds the gone page: %v", out)
		}
		callAPI(t, base, "/api/calls/%E7%8C%AB%E7%AA%9D/leave", map[string]string{"session": other})
		time.Sleep(20 * time.Millisecond)
	}
	cancel2()

	// Without the service there is no call API.
	s, err := New(Config{Addr: "127.0.0.1:0"}, newFakeNode("alpha"))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := serve(t, s)
	res, err := http.Get(plain + "/api/calls/ice")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /api/calls/ice without the service: %s", res.Status)
	}
}
