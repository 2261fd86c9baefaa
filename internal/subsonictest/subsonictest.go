// Package subsonictest runs a Subsonic client library from npm
// (subsonic-api, pinned in npm/package.json) against a node's /rest/
// endpoint, so that the API is checked by someone else's client and not
// only by our own requests.
//
// The npm package is installed once per checkout with
//
//	npm ci --prefix internal/subsonictest/npm
//
// Without it (or without node), Drive skips the calling test, unless the
// environment sets CATNEST_REQUIRE_INTEROP=1 (as CI does), in which case
// the test fails: an interop test never passes by silently not running.
package subsonictest

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// EnvRequire names the environment variable that turns a missing npm
// package or node binary from a skip into a failure.
const EnvRequire = "CATNEST_REQUIRE_INTEROP"

// Timeout bounds one run of the driver script.
const Timeout = 2 * time.Minute

// NPMDir is the directory of package.json, node_modules and the driver
// script, found from this file's location so that any package's tests
// can use it.
func NPMDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	return filepath.Join(filepath.Dir(file), "npm")
}

// Drive runs npm/drive.mjs, which walks the API at baseURL (the node's
// address, without /rest) as a Subsonic app does with user and password,
// using the facts in plan (ids to stream, search, …: see drive.mjs), and
// decodes what it observed (its JSON output) into out.
func Drive(t testing.TB, baseURL, user, password string, plan, out any) {
	t.Helper()
	dir := NPMDir()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "subsonic-api", "package.json")); err != nil {
		unavailable(t, "npm package subsonic-api not installed: run npm ci --prefix internal/subsonictest/npm")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable(t, "node not found in PATH: install Node.js to run the Subsonic interop test")
	}
	p, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "drive.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SUBSONIC_URL="+baseURL, "SUBSONIC_USER="+user, "SUBSONIC_PASS="+password, "SUBSONIC_PLAN="+string(p))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("subsonictest: node drive.mjs: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		t.Fatalf("subsonictest: drive.mjs output: %v\n%s", err, stdout.String())
	}
}

// unavailable skips the test, or fails it when EnvRequire is set.
func unavailable(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("%s (%s=1 requires the interop tests to run)", msg, EnvRequire)
	}
	t.Skip(msg)
}
