// Package peerjstest starts the reference PeerJS server (the npm package
// peer, pinned in npm/package.json) for interop tests, and hands browser
// tests the reference PeerJS client (the npm package peerjs, pinned there
// too) with ClientScript.
//
// The npm packages are installed once per checkout with
//
//	npm ci --prefix internal/peerjstest/npm
//
// Without them, Start and ClientScript skip the calling test, unless the
// environment sets CATNEST_REQUIRE_INTEROP=1 (as CI does), in which case the
// test fails, so an interop test can never pass by silently not running.
package peerjstest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options configure the reference server. Zero values leave the CLI defaults.
type Options struct {
	// Key is the connection key (--key); empty: "peerjs".
	Key string
	// Path is the mount path (--path); empty: "/".
	Path string
	// AllowDiscovery enables GET {path}/{key}/peers (--allow_discovery).
	AllowDiscovery bool
	// ExpireTimeout is how long queued messages wait for an offline peer
	// (--expire_timeout); zero: the CLI default, 5 s.
	ExpireTimeout time.Duration
	// AliveTimeout is how long a client may stay silent (--alive_timeout);
	// zero: the CLI default, 60 s.
	AliveTimeout time.Duration
}

// EnvRequire names the environment variable that turns a missing npm
// package or node binary from a skip into a failure.
const EnvRequire = "CATNEST_REQUIRE_INTEROP"

// startTimeout bounds how long the node process may take to answer.
const startTimeout = 15 * time.Second

// NPMDir returns the directory holding package.json and node_modules,
// found from this source file's location so that it works from the tests of
// any package.
func NPMDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	return filepath.Join(filepath.Dir(file), "npm")
}

// Start runs the reference PeerJS server on a free loopback port until the
// test ends and returns its base URL: "http://127.0.0.1:PORT" followed by
// the path without a trailing slash (so "http://127.0.0.1:PORT" for "/").
func Start(t testing.TB, opt Options) (baseURL string) {
	t.Helper()
	dir := NPMDir()
	bin := filepath.Join(dir, "node_modules", "peer", "dist", "bin", "peerjs.js")
	if _, err := os.Stat(bin); err != nil {
		unavailable(t, "npm package peer not installed: run npm ci --prefix internal/peerjstest/npm")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable(t, "node not found in PATH: install Node.js to run the PeerJS interop tests")
	}

	port, err := freePort()
	if err != nil {
		t.Fatalf("peerjstest: pick a port: %v", err)
	}
	key := opt.Key
	if key == "" {
		key = "peerjs"
	}
	path := opt.Path
	if path == "" {
		path = "/"
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	args := []string{bin,
		"--host", "127.0.0.1",
		"--port", strconv.Itoa(port),
		"--key", key,
		"--path", path,
	}
	if opt.AllowDiscovery {
		args = append(args, "--allow_discovery")
	}
	if opt.ExpireTimeout > 0 {
		args = append(args, "--expire_timeout", strconv.FormatInt(opt.ExpireTimeout.Milliseconds(), 10))
	}
	if opt.AliveTimeout > 0 {
		args = append(args, "--alive_timeout", strconv.FormatInt(opt.AliveTimeout.Milliseconds(), 10))
	}

	cmd := exec.Command(node, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PORT=", "PEERSERVER_PATH=")
	var out lockedBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("peerjstest: start node: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// SIGTERM would wait for open WebSockets to end; kill outright.
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("peerjstest: peer server output:\n%s", out.String())
		}
	})

	base := "http://127.0.0.1:" + strconv.Itoa(port) + strings.TrimSuffix(path, "/")
	probe := base + "/"
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		if ok := answers(ctx, probe); ok {
			return base
		}
		select {
		case err := <-exited:
			exited <- err // let Cleanup's receive finish
			t.Fatalf("peerjstest: peer server exited early (%v):\n%s", err, out.String())
		case <-ctx.Done():
			t.Fatalf("peerjstest: peer server did not answer GET %s within %v:\n%s", probe, startTimeout, out.String())
		case <-time.After(50 * time.Millisecond):
		}
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

func answers(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return 0, fmt.Errorf("unexpected address %v", ln.Addr())
	}
	return addr.Port, nil
}

// lockedBuffer collects the process output, written from exec's copying
// goroutines and read from the test's.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ClientScript returns the PeerJS browser client (the npm package peerjs,
// pinned in npm/package.json) as the script dist/peerjs.min.js, for a test
// page to load. Without it, it skips the calling test, or fails it when
// EnvRequire is set.
func ClientScript(t testing.TB) []byte {
	t.Helper()
	p := filepath.Join(NPMDir(), "node_modules", "peerjs", "dist", "peerjs.min.js")
	b, err := os.ReadFile(p)
	if err != nil {
		unavailable(t, "npm package peerjs not installed: run npm ci --prefix internal/peerjstest/npm ("+err.Error()+")")
	}
	return b
}
