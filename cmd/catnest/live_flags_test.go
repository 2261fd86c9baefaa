package main

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/catnest/catnest/live"
)

// TestServeLiveMaxViewersFlag: --live-max-viewers sets the live service's
// viewer cap (default live's 64); a value out of range is refused.
func TestServeLiveMaxViewersFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{{nil, live.DefaultConfig().MaxViewers}, {[]string{"--live-max-viewers", "5"}, 5}} {
		args := append([]string{"--signal", "http://127.0.0.1:9/x", "--data", filepath.Join(t.TempDir(), "d"), "--http", "127.0.0.1:0"}, tc.args...)
		cfg, err := parseServe(args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		n, err := newNode(cfg, newLogger(false))
		if err != nil {
			t.Fatal(err)
		}
		got := n.live.MaxViewers()
		n.db.Close()
		n.ln.Close()
		if got != tc.want {
			t.Fatalf("serve %q: the live service serves %d viewers at most, want %d", tc.args, got, tc.want)
		}
	}
	for _, bad := range []string{"0", "-1", "100000"} {
		_, err := parseServe([]string{"--signal", "http://127.0.0.1:9/x", "--live-max-viewers", bad}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--live-max-viewers") {
			t.Fatalf("--live-max-viewers %s: %v, want an error naming the flag", bad, err)
		}
	}
}
