package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// TestServeSubsonic: serve --subsonic-user and --subsonic-password let
// a Subsonic app in at /rest and list the --music folder's track; the
// login is kept, so the node started again without the flags still takes
// it. One flag without the other is refused.
func TestServeSubsonic(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	if _, err := parseServe([]string{"--signal", "http://127.0.0.1:9000/x", "--subsonic-user", "ann"}, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "--subsonic-password") {
		t.Errorf("--subsonic-user alone: %v", err)
	}
	signalURL := startSignalProc(t)
	musicDir := t.TempDir()
	id, _ := writeChords(t, musicDir, "tune", shortChords("Tune", "Band", 0))
	data := filepath.Join(t.TempDir(), "node")
	n := serveNode(t, signalURL, "ann", data, "--music", musicDir, "--subsonic-user", "ann", "--subsonic-password", "pâss word")
	n.proc.expect(t, `^subsonic: server address `+regexp.QuoteMeta(strings.TrimSuffix(n.ui, "/"))+` \(user ann\)$`)
	call := func(n *servedNode, method string, q url.Values) map[string]any {
		t.Helper()
		q.Set("u", "ann")
		q.Set("p", "pâss word")
		q.Set("f", "json")
		resp, err := http.Get(n.ui + "rest/" + method + ".view?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var env struct {
			R map[string]any `json:"subsonic-response"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		return env.R
	}
	testutil.WaitFor(t, 60*time.Second, "the track in the Subsonic library", func() bool {
		r := call(n, "search3", url.Values{"query": {"tune"}})
		if songs, _ := r["searchResult3"].(map[string]any)["song"].([]any); len(songs) == 1 {
			return songs[0].(map[string]any)["id"] == id.String()
		}
		time.Sleep(100 * time.Millisecond)
		return false
	})
	n.stop(t)
	n = serveNode(t, signalURL, "ann", data)
	if r := call(n, "ping", url.Values{}); r["status"] != "ok" {
		t.Fatalf("ping after a restart without the flags: %v", r)
	}
}
