package peerjstest

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestStart(t *testing.T) {
	tests := []struct {
		name      string
		opt       Options
		wantPath  string
		peersCode int
	}{
		{"defaults", Options{}, "", http.StatusUnauthorized},
		{"custom", Options{Key: "k", Path: "/app/", AllowDiscovery: true, ExpireTimeout: time.Second, AliveTimeout: 2 * time.Second}, "/app", http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := Start(t, tc.opt)
			if !strings.HasPrefix(base, "http://127.0.0.1:") || !strings.HasSuffix(base, tc.wantPath) || strings.HasSuffix(base, "/") {
				t.Fatalf("base URL %q", base)
			}
			key := tc.opt.Key
			if key == "" {
				key = "peerjs"
			}
			if code, body := get(t, base+"/"+key+"/id"); code != http.StatusOK || len(body) < 8 {
				t.Errorf("GET id: %d %q", code, body)
			}
			if code, body := get(t, base+"/"+key+"/peers"); code != tc.peersCode {
				t.Errorf("GET peers: %d %q, want %d", code, body, tc.peersCode)
			}
		})
	}
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
