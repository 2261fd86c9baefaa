package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
	"github.com/catnest/catnest/webui"
)

const fakeKey = "FAKEKEY0123456789ABCDEFGHI"

// fakeNodeAPI is a node's HTTP API as far as `catnest share` and `catnest
// get` use it, speaking the contract of issue 9: it shares files by path
// and serves one resource, whose download goes through the steps a test
// gives (each a transfer sent as a "shards" event).
type fakeNodeAPI struct {
	t       *testing.T
	srv     *httptest.Server
	node    mesh.ID
	content []byte
	id      shards.MD5
	name    string // the name the node gives the resource
	steps   []shards.Transfer
	corrupt bool // serve content with a byte flipped
	// stalled, if set, makes content send half the bytes, then receive
	// a value, then wait for the client to go away.
	stalled chan struct{}
	// dropAfter, if above 0, ends each event stream after that many
	// events, as a node that stops does.
	dropAfter int
	// refuseDir answers a fetch with a "dir" as a node that cannot write
	// there does (400).
	refuseDir bool

	mu     sync.Mutex
	shared []string
	dirs   []string // the "dir" of each fetch
	copies int      // content requests
	// streams are the open event streams; each gets every event, so
	// that a stream of an earlier command that the server has not yet
	// seen closing takes none from the next one.
	streams map[chan any]bool
	wg      sync.WaitGroup
	stop    chan struct{}
}

func newFakeNodeAPI(t *testing.T, content []byte, name string) *fakeNodeAPI {
	f := &fakeNodeAPI{t: t, node: mesh.ID(strings.Repeat("b", 32)), content: content, id: md5.Sum(content), name: name,
		streams: map[chan any]bool{}, stop: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/shards", f.share)
	mux.HandleFunc("POST /api/shards/fetch", f.fetch)
	mux.HandleFunc("GET /api/shards", f.list)
	mux.HandleFunc("GET /api/shards/{id}/content", f.serveContent)
	mux.HandleFunc("GET /api/events", f.stream)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(webui.APIKeyHeader) != fakeKey {
			writeErr(w, 401, "bad API key")
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		close(f.stop)
		f.wg.Wait()
		f.srv.Close()
	})
	return f
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func (f *fakeNodeAPI) transfer(have int64, state shards.State) shards.Transfer {
	return shards.Transfer{ID: f.id, Name: f.name, Size: int64(len(f.content)), Have: have, State: state,
		Sources: map[mesh.ID]int64{}}
}

func (f *fakeNodeAPI) share(w http.ResponseWriter, r *http.Request) {
	var req struct{ Path string }
	json.NewDecoder(r.Body).Decode(&req)
	if !filepath.IsAbs(req.Path) {
		writeErr(w, 400, "the path is not absolute")
		return
	}
	b, err := os.ReadFile(req.Path)
	if err != nil {
		writeErr(w, 400, "shards: not a readable regular file")
		return
	}
	f.mu.Lock()
	f.shared = append(f.shared, req.Path)
	f.mu.Unlock()
	id := shards.MD5(md5.Sum(b))
	t := shards.Transfer{ID: id, Name: filepath.Base(req.Path), Size: int64(len(b)), State: shards.StateSeeding}
	t.Link = shards.Link{Node: f.node, Rendezvous: "127.0.0.1:9000", Channel: "files", ID: id, Name: t.Name, Size: t.Size}.String()
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(t)
}

func (f *fakeNodeAPI) fetch(w http.ResponseWriter, r *http.Request) {
	var req struct{ Link, ID, Dir string }
	json.NewDecoder(r.Body).Decode(&req)
	f.mu.Lock()
	f.dirs = append(f.dirs, req.Dir)
	f.mu.Unlock()
	if f.refuseDir && req.Dir != "" {
		writeErr(w, 400, shards.ErrBadDir.Error()+": the node cannot write to it: open "+req.Dir+"/.catnest-probe-1: permission denied")
		return
	}
	var l shards.Link
	var err error
	if req.ID != "" {
		l.ID, err = shards.ParseMD5(req.ID)
	} else {
		l, err = shards.ParseLink(req.Link)
	}
	if err != nil {
		writeErr(w, 400, err.Error())
		return
	}
	if l.ID != f.id {
		writeErr(w, 404, "shards: no online node holds the resource")
		return
	}
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(f.transfer(0, shards.StateDownloading))
	f.wg.Go(func() {
		for _, s := range f.steps {
			f.mu.Lock()
			for c := range f.streams {
				select {
				case c <- shards.Event{Transfer: &s}:
				default:
					f.t.Error("fake node: a stream is full")
				}
			}
			f.mu.Unlock()
		}
	})
}

func (f *fakeNodeAPI) list(w http.ResponseWriter, r *http.Request) {
	json.NewEncoder(w).Encode([]shards.Transfer{f.steps[len(f.steps)-1]})
}

func (f *fakeNodeAPI) serveContent(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.copies++
	f.mu.Unlock()
	b := bytes.Clone(f.content)
	if f.corrupt {
		b[len(b)/2] ^= 1
	}
	if f.stalled != nil {
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		f.stalled <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-f.stop:
		}
		return
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
}

func (f *fakeNodeAPI) stream(w http.ResponseWriter, r *http.Request) {
	events := make(chan any, 64)
	f.mu.Lock()
	f.streams[events] = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.streams, events)
		f.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(200)
	w.(http.Flusher).Flush()
	for sent := 0; ; {
		select {
		case ev := <-events:
			b, _ := json.Marshal(ev)
			fmt.Fprintf(w, "event: peers\ndata: []\n\nevent: shards\ndata: %s\n\n", b)
			w.(http.Flusher).Flush()
			if sent++; sent == f.dropAfter {
				return
			}
		case <-r.Context().Done():
			return
		case <-f.stop:
			return
		}
	}
}

// runCmd runs the catnest command line with args and returns its output.
func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, args, &out, &errOut)
	return out.String() + errOut.String(), err
}

func TestShareCommand(t *testing.T) {
	content := []byte("a file to share\n")
	f := newFakeNodeAPI(t, content, "x")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	out, err := runCmd(t, "share", "--node", f.srv.URL, "--api-key", fakeKey, "notes.txt")
	if err != nil {
		t.Fatalf("share: %v\n%s", err, out)
	}
	l, err := shards.ParseLink(strings.TrimSpace(out))
	if err != nil || l.ID != md5.Sum(content) || l.Name != "notes.txt" {
		t.Fatalf("share printed %q (%v), want the file's link", out, err)
	}
	if want := filepath.Join(dir, "notes.txt"); len(f.shared) != 1 || f.shared[0] != want {
		t.Errorf("node was asked to share %q, want the absolute path %q", f.shared, want)
	}

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"a folder", []string{"--node", f.srv.URL, "--api-key", fakeKey, dir}, "not a regular file"},
		{"no such file", []string{"--node", f.srv.URL, "--api-key", fakeKey, "nope.txt"}, "no such file"},
		{"no path", []string{"--node", f.srv.URL}, "want one PATH"},
		{"bad node", []string{"--node", "ftp://x", "notes.txt"}, "want an http URL"},
		{"wrong key", []string{"--node", f.srv.URL, "--api-key", "WRONG", "notes.txt"}, "bad API key"},
		{"node elsewhere without a key", []string{"--node", "http://192.0.2.1:7070", "notes.txt"}, "not on this machine"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CATNEST_API_KEY", "")
			out, err := runCmd(t, append([]string{"share"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("share %q = %v, want an error with %q\n%s", tt.args, err, tt.want, out)
			}
		})
	}
}

// steps are a download's progress in n equal steps, then done.
func steps(f *fakeNodeAPI, n int) []shards.Transfer {
	var out []shards.Transfer
	size := int64(len(f.content))
	for i := 1; i < n; i++ {
		tr := f.transfer(size*int64(i)/int64(n), shards.StateDownloading)
		tr.Rate = 1 << 20
		out = append(out, tr)
	}
	return append(out, f.transfer(size, shards.StateDone))
}

func TestGetCommand(t *testing.T) {
	content := bytes.Repeat([]byte("catnest "), 64000) // 500 KiB
	f := newFakeNodeAPI(t, content, "song.mp3")
	f.steps = steps(f, 10)
	link := shards.Link{Node: f.node, Rendezvous: "127.0.0.1:9000", Channel: "files", ID: f.id, Name: "song.mp3",
		Size: int64(len(content))}
	dir := t.TempDir()
	get := func(l shards.Link) (string, error) {
		return runCmd(t, "get", "--node", f.srv.URL, "--api-key", fakeKey, "-o", dir, l.String())
	}
	out, err := get(link)
	if err != nil {
		t.Fatalf("get: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "song.mp3")); err != nil || !bytes.Equal(b, content) {
		t.Fatalf("saved file: %v, %d bytes, want %d", err, len(b), len(content))
	}
	// Progress lines (not a terminal: plain lines), then where it went.
	for _, want := range []string{"song.mp3  10%  50.0 KiB of 500.0 KiB  1.0 MiB/s  ETA 0:00", " 50%", "100%  500.0 KiB of 500.0 KiB  done",
		"saved " + filepath.Join(dir, "song.mp3")} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\r") || strings.Contains(out, "\x1b") {
		t.Errorf("output to a file has terminal controls: %q", out)
	}

	// Again: the file is there, so the copy gets a name of its own.
	if out, err := get(link); err != nil || !strings.Contains(out, "song (1).mp3") {
		t.Fatalf("second get: %v\n%s", err, out)
	}
	// By its MD5 alone, as the Files view and GET /api/files list it
	// (the API takes an id; get said "bad link"): saved under the name
	// the node gives it.
	if out, err := runCmd(t, "get", "--node", f.srv.URL, "--api-key", fakeKey, "-o", dir, f.id.String()); err != nil ||
		!strings.Contains(out, "saved "+filepath.Join(dir, "song (2).mp3")) {
		t.Fatalf("get by MD5: %v\n%s", err, out)
	}

	// A node that names the resource "../x" cannot make get write
	// outside the folder: without a name in the link, the file is saved
	// under its id.
	f.name = "../../escape.mp3"
	f.steps = steps(f, 2)
	noName := link
	noName.Name = ""
	if out, err := get(noName); err != nil || !strings.Contains(out, "saved "+filepath.Join(dir, f.id.String())) {
		t.Fatalf("get with a hostile name: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "..", "..", "escape.mp3")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a file was written outside the folder: %v", err)
	}
	// A name as long as a file name may be is saved under that name.
	long := link
	long.Name = strings.Repeat("n", 251) + ".mp3"
	f.steps = steps(f, 2)
	if out, err := get(long); err != nil || !strings.Contains(out, "saved "+filepath.Join(dir, long.Name)) {
		t.Fatalf("get with a name of %d bytes: %v\n%s", len(long.Name), err, out)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 5 {
		t.Errorf("folder holds %d entries, want 5 (no partial files)", len(entries))
	}
}

// TestGetNodeCannotWriteDir: get asks a node on this machine to save the
// file in DIR itself; a node that cannot write there (another user's, a
// sandbox) keeps it in its downloads folder, and get says so and copies
// it out, with a bar of its own for the copy.
func TestGetNodeCannotWriteDir(t *testing.T) {
	content := bytes.Repeat([]byte("catnest "), 64000) // 500 KiB
	f := newFakeNodeAPI(t, content, "song.mp3")
	f.steps = steps(f, 4)
	f.refuseDir = true
	dir := t.TempDir()
	out, err := runCmd(t, "get", "--node", f.srv.URL, "--api-key", fakeKey, "-o", dir, f.id.String())
	if err != nil {
		t.Fatalf("get: %v\n%s", err, out)
	}
	checkFile(t, filepath.Join(dir, "song.mp3"), content)
	f.mu.Lock()
	dirs, copies := f.dirs, f.copies
	f.mu.Unlock()
	if len(dirs) != 2 || dirs[0] != dir || dirs[1] != "" || copies != 1 {
		t.Errorf("fetches with dirs %q and %d copies, want %q then none, and one copy", dirs, copies, dir)
	}
	for _, want := range []string{"the node cannot save into " + dir, "saving song.mp3", "saved " + filepath.Join(dir, "song.mp3")} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestGetCommandFails(t *testing.T) {
	content := []byte("some bytes that will not arrive")
	f := newFakeNodeAPI(t, content, "a.txt")
	link := shards.Link{Node: f.node, Channel: "files", ID: f.id, Name: "a.txt", Size: int64(len(content))}
	dir := t.TempDir()
	get := func(args ...string) (string, error) {
		return runCmd(t, append([]string{"get", "--node", f.srv.URL, "--api-key", fakeKey, "-o", dir}, args...)...)
	}

	// The transfer fails on the node: get says why and exits non-zero.
	failed := f.transfer(10, shards.StateFailed)
	failed.Error = "every holder went offline"
	f.steps = []shards.Transfer{f.transfer(10, shards.StateDownloading), failed}
	out, err := get(link.String())
	if err == nil || !strings.Contains(err.Error(), "the download failed: every holder went offline") || exitCode(err) == 0 {
		t.Fatalf("failing transfer: %v\n%s", err, out)
	}

	// A copy that does not match the MD5 is not saved.
	f.steps = steps(f, 1)
	f.corrupt = true
	out, err = get(link.String())
	if err == nil || !strings.Contains(err.Error(), "nothing saved") {
		t.Fatalf("corrupt copy: %v\n%s", err, out)
	}
	f.corrupt = false
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("folder holds %v after failures, want nothing", entries)
	}

	// Bad links and folders, told before anything is asked of the node.
	other := link
	other.ID = shards.MD5{1}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"not a link", []string{"http://example.com/a.txt"}, "bad link"},
		{"bad md5", []string{"webrtc://" + string(f.node) + "@127.0.0.1:9000/files/1234"}, "bad link"},
		{"name with a slash", []string{"webrtc://" + string(f.node) + "@127.0.0.1:9000/files/" + f.id.String() + "?n=..%2Fx"}, "bad link"},
		{"no link", nil, "want one LINK"},
		{"unknown resource", []string{other.String()}, "no online node holds"},
		{"-o not a folder", []string{"-o", filepath.Join(dir, "nope"), link.String()}, "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := get(tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) || exitCode(err) == 0 {
				t.Fatalf("get %q = %v, want an error with %q\n%s", tt.args, err, tt.want, out)
			}
		})
	}
}

func TestProgressLine(t *testing.T) {
	tr := shards.Transfer{Name: "猫.png", Size: 100 << 20, Have: 25 << 20, State: shards.StateDownloading}
	got := progressLine("猫.png", tr, 5<<20, true)
	want := "猫.png [======>                 ]  25%  25.0 MiB of 100.0 MiB  5.0 MiB/s  ETA 0:15"
	if got != want {
		t.Errorf("progressLine\n got %q\nwant %q", got, want)
	}
	if got := progressLine("x", tr, 0, false); !strings.HasSuffix(got, "0 B/s  ETA --:--") {
		t.Errorf("no rate: %q", got)
	}
	tr.Have, tr.Waiting = 0, shards.WaitNoHolder
	if got := progressLine("x", tr, 0, false); !strings.HasSuffix(got, "0 B of 100.0 MiB  waiting: no node that has it is online") {
		t.Errorf("no holder online: %q", got)
	}
	tr.Waiting = shards.WaitManifest
	if got := progressLine("x", tr, 0, false); !strings.HasSuffix(got, "  waiting for a holder to answer") {
		t.Errorf("waiting for the manifest: %q", got)
	}
	// An id without a manifest yet: the size is not known, and 0 of 0
	// is not 100%.
	unknown := shards.Transfer{Name: "x", State: shards.StateDownloading, Waiting: shards.WaitManifest}
	if got, want := progressLine("x", unknown, 0, true), "x [>                       ]    ?%  0 B of ?  waiting for a holder to answer"; got != want {
		t.Errorf("size not known\n got %q\nwant %q", got, want)
	}
	// A saved file checked before it is taken: the bar is the check's.
	chk := shards.Transfer{Name: "x", Size: 100 << 20, State: shards.StateDownloading, Checking: "/home/u/film.mkv", Checked: 40 << 20}
	if got, want := progressLine("x", chk, 0, false), "x  40%  40.0 MiB of 100.0 MiB  checking the file already saved (film.mkv)"; got != want {
		t.Errorf("checking\n got %q\nwant %q", got, want)
	}
	tr.State = shards.StatePaused
	if got := progressLine("x", tr, 0, false); !strings.HasSuffix(got, "paused on the node") {
		t.Errorf("paused: %q", got)
	}
	for _, tt := range []struct {
		left, rate float64
		want       string
	}{{90, 1, "1:30"}, {3725, 1, "1:02:05"}, {1, 0, "--:--"}, {1e9, 1, "--:--"}} {
		if got := formatETA(tt.left, tt.rate); got != tt.want {
			t.Errorf("formatETA(%v, %v) = %q, want %q", tt.left, tt.rate, got, tt.want)
		}
	}

	// On a terminal the line is redrawn in place, and ends with a newline.
	var buf bytes.Buffer
	p := &progressBar{out: &buf, tty: true, name: "a", lastTick: -1, prevAt: time.Now()}
	now := time.Now()
	tr.State = shards.StateDownloading
	p.update(tr, now)
	p.update(tr, now.Add(10*time.Millisecond)) // too soon: not drawn
	tr.Have = tr.Size
	tr.State = shards.StateDone
	p.update(tr, now.Add(20*time.Millisecond)) // done: always drawn
	p.end()
	if got := buf.String(); strings.Count(got, "\r") != 2 || strings.Count(got, "\x1b[K") != 2 || !strings.HasSuffix(got, "done\x1b[K\n") {
		t.Errorf("terminal output %q", got)
	}

	// Not a terminal: the node reports every byte before it has checked
	// the file (the same tenth of the way), then done. The log ends
	// with "done", once.
	buf.Reset()
	p = &progressBar{out: &buf, name: "a", lastTick: -1, prevAt: now}
	tr.State, tr.Waiting = shards.StateDownloading, ""
	p.update(tr, now)
	tr.State = shards.StateDone
	p.update(tr, now.Add(time.Second))
	p.update(tr, now.Add(2*time.Second))
	p.end()
	if got := buf.String(); strings.Count(got, "\n") != 2 || !strings.HasSuffix(got, "100%  100.0 MiB of 100.0 MiB  done\n") {
		t.Errorf("log output %q, want the 100%% line and then one done line", got)
	}
}

func TestServeShareFlag(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	file := filepath.Join(a, "f.txt")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"--signal", "http://127.0.0.1:9000/x"}
	cfg, err := parseServe(append(base, "--share", a, "--share", b), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Shares) != 2 || cfg.Shares[0] != a || cfg.Shares[1] != b {
		t.Fatalf("shares %q, want %q, %q", cfg.Shares, a, b)
	}
	t.Chdir(a)
	cfg, err = parseServe(append(base, "--share", "."), io.Discard)
	if err != nil || len(cfg.Shares) != 1 || cfg.Shares[0] != a {
		t.Fatalf("relative share: %q, %v; want %q", cfg.Shares, err, a)
	}
	locked := filepath.Join(b, "locked")
	if err := os.Mkdir(locked, 0o000); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(locked, 0o700) })
	for _, tt := range []struct{ dir, want string }{
		{filepath.Join(a, "nope"), "no such file"},
		{file, "not a directory"},
		{"", "empty"},
	} {
		if _, err := parseServe(append(base, "--share", tt.dir), io.Discard); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("--share %q: %v, want an error with %q", tt.dir, err, tt.want)
		}
	}
	// Folders that hold the node's data dir (keys, database, partial
	// downloads), or that overlap, are refused.
	home := t.TempDir()
	data := filepath.Join(home, "sub", "catnest") // not made yet: a first run
	link := filepath.Join(t.TempDir(), "home")
	inB := filepath.Join(b, "in")
	if err := os.Mkdir(inB, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(home, link); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--data", data, "--share", home}, "holds the node's data dir"},
		{[]string{"--data", data, "--share", link}, "holds the node's data dir"},
		{[]string{"--data", filepath.Join(link, "sub", "catnest"), "--share", home}, "holds the node's data dir"},
		{[]string{"--data", data, "--share", a, "--share", a}, "overlap"},
		{[]string{"--data", data, "--share", b, "--share", inB}, "overlap"},
		{[]string{"--data", data, "--share", inB, "--share", b}, "overlap"},
	} {
		if _, err := parseServe(append(base, tt.args...), io.Discard); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("serve %q: %v, want an error with %q", tt.args, err, tt.want)
		}
	}
	if err := os.MkdirAll(filepath.Join(home, "sub", "pictures"), 0o755); err != nil {
		t.Fatal(err)
	}
	if cfg, err := parseServe(append(base, "--data", data, "--share", filepath.Join(home, "sub", "pictures"), "--share", a), io.Discard); err != nil || len(cfg.Shares) != 2 {
		t.Errorf("a folder beside the data dir: %q, %v", cfg.Shares, err)
	}
	if os.Geteuid() != 0 { // root reads anything
		if _, err := parseServe(append(base, "--share", locked), io.Discard); err == nil || !strings.Contains(err.Error(), "cannot be read") {
			t.Errorf("unreadable --share: %v", err)
		}
	}
}

func TestFilesHelp(t *testing.T) {
	for _, cmd := range []string{"share", "get"} {
		out, err := runCmd(t, cmd, "--help")
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(out, "-node") || !strings.Contains(out, "catnest "+cmd) {
			t.Errorf("%s --help: %v\n%s", cmd, err, out)
		}
	}
	if out, _ := runCmd(t, "serve", "--help"); !strings.Contains(out, "-share") {
		t.Errorf("serve --help lacks --share:\n%s", out)
	}
}

// TestGetNodeStops: the node stops half-way (its event stream ends): get
// says so and what to do, not only that a stream was lost.
func TestGetNodeStops(t *testing.T) {
	content := bytes.Repeat([]byte("catnest "), 64000)
	f := newFakeNodeAPI(t, content, "big.bin")
	f.steps = steps(f, 4)[:2]
	f.dropAfter = 2
	link := shards.Link{Node: f.node, Channel: "files", ID: f.id, Name: "big.bin", Size: int64(len(content))}
	dir := t.TempDir()
	out, err := runCmd(t, "get", "--node", f.srv.URL, "--api-key", fakeKey, "-o", dir, link.String())
	if err == nil || !strings.Contains(err.Error(), "closed its event stream (did it stop?)") ||
		!strings.Contains(err.Error(), "run the same command again") || exitCode(err) == 0 {
		t.Fatalf("get = %v, want it to say the node stopped and to run it again\n%s", err, out)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("folder holds %v, want nothing", entries)
	}
}

// TestGetInterruptedWhileSaving: Ctrl-C while the file is copied out of
// the node stops the copy and leaves nothing in the folder.
func TestGetInterruptedWhileSaving(t *testing.T) {
	content := bytes.Repeat([]byte("catnest "), 64000)
	f := newFakeNodeAPI(t, content, "big.bin")
	f.steps = steps(f, 2)
	f.stalled = make(chan struct{}, 1)
	link := shards.Link{Node: f.node, Channel: "files", ID: f.id, Name: "big.bin", Size: int64(len(content))}
	dir := t.TempDir()
	cfg, err := parseGet([]string{"--node", f.srv.URL, "--api-key", fakeKey, "-o", dir, link.String()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	done := make(chan error, 1)
	go func() { done <- RunGet(ctx, cfg, io.Discard) }()
	select {
	case <-f.stalled:
	case err := <-done:
		t.Fatalf("get ended before the copy: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the copy did not start")
	}
	interrupt() // Ctrl-C
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "interrupted while saving") {
			t.Fatalf("get = %v, want interrupted while saving", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("get went on copying after Ctrl-C")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("folder holds %v after an interrupted save, want nothing", entries)
	}
}
