package loopback

import "testing"

// TestIsHost: every spelling of this machine, and nothing else. The web
// UI and the CLI used to disagree on "LOCALHOST", and neither took "[::1]"
// or "localhost.".
func TestIsHost(t *testing.T) {
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"LOCALHOST", true},
		{"LocalHost", true},
		{"localhost.", true},
		{"127.0.0.1", true},
		{"127.1.2.3", true},
		{"::1", true},
		{"[::1]", true},
		{"::ffff:127.0.0.1", true},
		{"", false},
		{"0.0.0.0", false},
		{"::", false},
		{"[::]", false},
		{"localhost..", false},
		{"localhost.example.com", false},
		{"evil-localhost", false},
		{"192.168.1.10", false},
		{"128.0.0.1", false},
		// Names a DNS rebinding page can point at 127.0.0.1, and forms
		// that browsers normalise before they send a Host: none passes.
		{"127.0.0.1.nip.io", false},
		{"localhost.nip.io", false},
		{"0x7f.1", false},
		{"0x7f000001", false},
		{"2130706433", false},
		{"0177.0.0.1", false},
		{"127.1", false},
		{"localhost:80", false},
		{"[::1]:80", false},
		{"::1%lo", false},
		{"[::ffff:127.0.0.1]", true},
		{"[", false},
		{"]", false},
	} {
		t.Run(tc.host, func(t *testing.T) {
			if got := IsHost(tc.host); got != tc.want {
				t.Errorf("IsHost(%q) = %v, want %v", tc.host, got, tc.want)
			}
		})
	}
}
