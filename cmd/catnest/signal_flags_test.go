package main

import (
	"io"
	"slices"
	"testing"
	"time"
)

func TestParseSignalPerAddressLimit(t *testing.T) {
	def, err := parseSignal(nil, io.Discard)
	if err != nil || def.Server.PerAddressLimit != 64 {
		t.Fatalf("default per-address limit %d, %v; want 64", def.Server.PerAddressLimit, err)
	}
	cfg, err := parseSignal([]string{"--per-address-limit", "7"}, io.Discard)
	if err != nil || cfg.Server.PerAddressLimit != 7 {
		t.Fatalf("--per-address-limit 7: %d, %v", cfg.Server.PerAddressLimit, err)
	}
	if _, err := parseSignal([]string{"--per-address-limit", "0"}, io.Discard); err == nil {
		t.Fatal("--per-address-limit 0 was accepted")
	}
}

func TestParseSignalTURN(t *testing.T) {
	cfg, err := parseSignal([]string{"--turn", "--turn-public-ip", "203.0.113.5", "--turn-port", "3479", "--turn-secret", "s", "--turn-realm", "r"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"stun:203.0.113.5:3479", "turn:203.0.113.5:3479?transport=udp", "turn:203.0.113.5:3479?transport=tcp"}
	if !slices.Equal(cfg.Server.TURN.URLs, want) || cfg.Server.TURN.Secret != "s" || cfg.TURNRelay.Secret != "s" ||
		cfg.TURNRelay.Realm != "r" || cfg.TURNRelay.PublicIP.String() != "203.0.113.5" || cfg.Server.TURN.TTL != time.Hour || cfg.TURNRelay.AllowPrivate {
		t.Fatalf("parsed %+v", cfg)
	}
	made, err := parseSignal([]string{"--turn", "--turn-public-ip", "203.0.113.5"}, io.Discard)
	if err != nil || len(made.Server.TURN.Secret) < 16 || made.TURNRelay.Secret != made.Server.TURN.Secret {
		t.Fatalf("--turn without a secret: %q, %v; want one made up, shared by relay and rendezvous", made.Server.TURN.Secret, err)
	}
	coturn, err := parseSignal([]string{"--turn-secret", "s", "--turn-url", "turn:198.51.100.1:3478"}, io.Discard)
	if err != nil || coturn.TURN || !slices.Equal(coturn.Server.TURN.URLs, []string{"turn:198.51.100.1:3478"}) {
		t.Fatalf("--turn-url for a coturn: %+v, %v", coturn.Server.TURN, err)
	}
	for _, args := range [][]string{
		{"--turn"},
		{"--turn", "--turn-public-ip", "0.0.0.0"},
		{"--turn", "--turn-public-ip", "203.0.113.5", "--turn-port", "0"},
		{"--turn-url", "turn:198.51.100.1:3478"},
		{"--turn-secret", "s", "--turn-url", "http://x"},
		{"--turn", "--turn-public-ip", "203.0.113.5", "--turn-ttl", "10s"},
	} {
		if _, err := parseSignal(args, io.Discard); err == nil {
			t.Errorf("%q was accepted", args)
		}
	}
}
