package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
)

// TestServeHandsTURNToCallPages: the STUN and TURN servers given to serve
// reach the pages of the Call view, so that a call can relay through them.
func TestServeHandsTURNToCallPages(t *testing.T) {
	cfg, err := parseServe([]string{"--signal", "http://127.0.0.1:9/x", "--data", filepath.Join(t.TempDir(), "d"), "--http", "127.0.0.1:0",
		"--stun", "stun:stun.example.org:3478", "--turn", "turn:alice:s3cret@turn.example.org:3478"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	n, err := newNode(cfg, newLogger(false))
	if err != nil {
		t.Fatal(err)
	}
	defer n.db.Close()
	defer n.ln.Close()
	req := httptest.NewRequest(http.MethodGet, "/api/calls/ice", nil)
	req.Host = n.ln.Addr().String()
	rec := httptest.NewRecorder()
	n.ui.Handler().ServeHTTP(rec, req)
	var got struct {
		ICE []struct {
			URLs       []string `json:"urls"`
			Username   string   `json:"username"`
			Credential string   `json:"credential"`
		} `json:"ice_servers"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("GET /api/calls/ice: %d %s", rec.Code, rec.Body)
	}
	if len(got.ICE) != 2 || got.ICE[0].URLs[0] != "stun:stun.example.org:3478" ||
		got.ICE[1].URLs[0] != "turn:turn.example.org:3478" || got.ICE[1].Username != "alice" || got.ICE[1].Credential != "s3cret" {
		t.Fatalf("ICE servers for pages: %+v", got.ICE)
	}
}
