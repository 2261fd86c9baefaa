package main

import (
	"io"
	"testing"
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
