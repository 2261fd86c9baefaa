package webui

import (
	"bytes"
	"crypto/md5"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// filesFixture is a server with a fakeFiles: bravo and charlie share
// cat.png, bravo shares notes.txt and big.bin (4 MiB).
type filesFixture struct {
	t     *testing.T
	base  string
	c     *http.Client
	files *fakeFiles
	node  *fakeNode
	cat   shards.File
	notes shards.File
	big   shards.File
	bigB  []byte
}

// testPNG is a w×h PNG image in colour c.
func testPNG(t testing.TB, w, h int, c color.RGBA) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{c.R, uint8(int(c.G) + y*60/h), uint8(int(c.B) + x*60/w), 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func newFilesFixture(t *testing.T) *filesFixture {
	t.Helper()
	node := newFakeNode("alpha")
	node.setRecords(mesh.Record{ID: fakeID("bravo"), Name: "bravo"}, mesh.Record{ID: fakeID("charlie"), Name: "charlie"})
	files := newFakeFiles(node.id)
	f := &filesFixture{t: t, files: files, node: node}
	f.cat = files.addRemote("cat.png", testPNG(t, 64, 48, color.RGBA{200, 120, 60, 255}), fakeID("bravo"), fakeID("charlie"))
	f.notes = files.addRemote("notes.txt", []byte("hello from bravo\n"), fakeID("bravo"))
	f.bigB = make([]byte, 4<<20)
	rand.NewChaCha8([32]byte{1}).Read(f.bigB)
	f.big = files.addRemote("big.bin", f.bigB, fakeID("bravo"))
	f.base = startServer(t, Config{APIKey: testAPIKey, Files: files}, node)
	f.c = newClient(t)
	return f
}

// call does a request from our own page (Origin set) with body as JSON
// when it is not empty, and returns the status and body.
func (f *filesFixture) call(method, path, body string, header ...string) (*http.Response, []byte) {
	f.t.Helper()
	return pageCall(f.t, f.c, f.base, method, path, body, header...)
}

// want does a request and fails the test unless it gets status; it
// returns the body.
func (f *filesFixture) want(status int, method, path, body string) []byte {
	f.t.Helper()
	resp, b := f.call(method, path, body)
	if resp.StatusCode != status {
		f.t.Fatalf("%s %s %s: status %d, want %d; body %s", method, path, body, resp.StatusCode, status, b)
	}
	return b
}

// badInput is a request the API must refuse with status, saying why.
type badInput struct {
	name, method, path, body string
	status                   int
	says                     string // in the error message
}

func (f *filesFixture) refuses(tests []badInput) {
	f.t.Helper()
	for _, tt := range tests {
		f.t.Run(tt.name, func(t *testing.T) {
			resp, b := f.call(tt.method, tt.path, tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, b)
			}
			if e := decode[errorJSON](t, b); !strings.Contains(e.Error, tt.says) {
				t.Errorf("error %q does not say %q", e.Error, tt.says)
			}
		})
	}
}

func TestFilesDisabled(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	base := startServer(t, Config{}, node)
	c := newClient(t)
	id := shards.MD5{1}.String()
	for _, r := range [][2]string{
		{"GET", "/api/shards"}, {"POST", "/api/shards"}, {"POST", "/api/shards/fetch"},
		{"POST", "/api/shards/" + id + "/pause"}, {"POST", "/api/shards/" + id + "/resume"},
		{"DELETE", "/api/shards/" + id}, {"POST", "/api/shards/push"}, {"GET", "/api/shards/push/p1"},
		{"GET", "/api/shards/" + id + "/content"}, {"GET", "/api/files"},
	} {
		req := newRequest(t, r[0], base+r[1])
		req.Header.Set("Origin", base)
		resp, b := do(t, c, req)
		wantJSONError(t, resp, b, http.StatusNotFound)
		if !strings.Contains(string(b), "not enabled") {
			t.Errorf("%s %s: %s, want it to say file sharing is not enabled", r[0], r[1], b)
		}
	}
}

// TestFilesShare shares a file by path and lists it with every field of
// the contract; bad paths and bodies get a 400 that says why.
func TestFilesShare(t *testing.T) {
	checkGoroutines(t)
	f := newFilesFixture(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "猫 photo.png")
	content := testPNG(t, 10, 10, color.RGBA{1, 2, 3, 255})
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}

	// No shares yet: [], not null.
	if b := f.want(200, "GET", "/api/shards", ""); strings.TrimSpace(string(b)) != "[]" {
		t.Fatalf("no shares: %s, want []", b)
	}
	created := decode[map[string]any](t, f.want(201, "POST", "/api/shards", fmt.Sprintf(`{"path": %q}`, path)))
	wantID := shards.MD5(md5.Sum(content)).String()
	if created["id"] != wantID || created["name"] != "猫 photo.png" || created["size"] != float64(len(content)) {
		t.Errorf("created %v, want id %s, the name and size", created, wantID)
	}
	for _, k := range []string{"link", "manifest"} {
		if s, _ := created[k].(string); s == "" {
			t.Errorf("created has no %q: %v", k, created)
		}
	}
	if l, err := shards.ParseLink(created["link"].(string)); err != nil || l.ID.String() != wantID {
		t.Errorf("link %v: %v", created["link"], err)
	}

	list := decode[[]map[string]any](t, f.want(200, "GET", "/api/shards", ""))
	if len(list) != 1 {
		t.Fatalf("GET /api/shards: %d entries, want 1", len(list))
	}
	for _, k := range []string{"id", "name", "size", "have", "state", "path", "uploaded", "sources", "rate", "type"} {
		if _, ok := list[0][k]; !ok {
			t.Errorf("share has no %q: %v", k, list[0])
		}
	}
	if src, ok := list[0]["sources"].(map[string]any); !ok || len(src) != 0 {
		t.Errorf("sources %v, want {}", list[0]["sources"])
	}
	if list[0]["state"] != "seeding" || list[0]["path"] != path || list[0]["type"] != "image/png" {
		t.Errorf("share %v, want seeding at %s, image/png", list[0], path)
	}

	f.refuses([]badInput{
		{"missing path", "POST", "/api/shards", `{}`, 400, `missing "path"`},
		{"empty path", "POST", "/api/shards", `{"path": ""}`, 400, `missing "path"`},
		{"relative path", "POST", "/api/shards", `{"path": "photos/cat.png"}`, 400, "not absolute"},
		{"control character", "POST", "/api/shards", `{"path": "/tmp/a\u0007b"}`, 400, "control characters"},
		{"long path", "POST", "/api/shards", `{"path": "/` + strings.Repeat("a", maxPath) + `"}`, 400, "too long"},
		{"a directory", "POST", "/api/shards", fmt.Sprintf(`{"path": %q}`, dir), 400, "not a readable regular file"},
		{"no such file", "POST", "/api/shards", fmt.Sprintf(`{"path": %q}`, filepath.Join(dir, "nope")), 400, "not a readable regular file"},
		{"no body", "POST", "/api/shards", ``, 400, "empty request body"},
		{"unknown field", "POST", "/api/shards", `{"path": "/x", "pth": 1}`, 400, "unknown field"},
		{"huge body", "POST", "/api/shards", `{"path": "/` + strings.Repeat("a", maxChatBody) + `"}`, 413, "too large"},
		{"wrong method", "PUT", "/api/shards", `{}`, 405, "not allowed"},
	})

	// A failure of the service is a 500 with its message; nothing more.
	f.files.failNext(fmt.Errorf("disk on fire"))
	if resp, b := f.call("GET", "/api/shards", ""); resp.StatusCode != 500 || !strings.Contains(string(b), "disk on fire") {
		t.Errorf("failing service: %d %s", resp.StatusCode, b)
	}

	// The Origin rules of every other endpoint: a page elsewhere cannot
	// share the user's files; a script with the key can.
	req, _ := http.NewRequest("POST", f.base+"/api/shards", strings.NewReader(fmt.Sprintf(`{"path": %q}`, path)))
	req.Header.Set("Origin", "http://evil.example")
	if resp, b := do(t, f.c, req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin share: %d %s, want 403", resp.StatusCode, b)
	}
	req, _ = http.NewRequest("POST", f.base+"/api/shards", strings.NewReader(fmt.Sprintf(`{"path": %q}`, path)))
	if resp, b := do(t, f.c, req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("share without Origin nor key: %d %s, want 403", resp.StatusCode, b)
	}
	req, _ = http.NewRequest("POST", f.base+"/api/shards", strings.NewReader(fmt.Sprintf(`{"path": %q}`, path)))
	req.Header.Set(APIKeyHeader, testAPIKey)
	if resp, b := do(t, f.c, req); resp.StatusCode != http.StatusCreated {
		t.Errorf("share with the API key: %d %s, want 201", resp.StatusCode, b)
	}
}

// TestFilesFetchAndControl fetches by link and by id, pauses, resumes and
// removes; bad links and ids get a 400 that says why, unknown ones 404.
func TestFilesFetchAndControl(t *testing.T) {
	checkGoroutines(t)
	f := newFilesFixture(t)
	link := shards.Link{Node: fakeID("bravo"), Rendezvous: "127.0.0.1:9000", Channel: "files", ID: f.cat.ID,
		Name: f.cat.Name, Size: f.cat.Size}.String()
	tr := decode[shards.Transfer](t, f.want(201, "POST", "/api/shards/fetch", fmt.Sprintf(`{"link": %q}`, link)))
	if tr.ID != f.cat.ID || tr.State != shards.StateDownloading || tr.Sources == nil {
		t.Errorf("fetch by link: %+v", tr)
	}
	tr = decode[shards.Transfer](t, f.want(201, "POST", "/api/shards/fetch", `{"id": "`+strings.ToUpper(f.notes.ID.String())+`"}`))
	if tr.ID != f.notes.ID || tr.Name != "notes.txt" {
		t.Errorf("fetch by id: %+v", tr)
	}

	one := "/api/shards/" + f.cat.ID.String()
	f.want(204, "POST", one+"/pause", "")
	if got, _ := f.files.transfer(f.cat.ID); got.State != shards.StatePaused {
		t.Errorf("after pause: %s", got.State)
	}
	f.want(204, "POST", one+"/resume", "")
	if got, _ := f.files.transfer(f.cat.ID); got.State != shards.StateDownloading {
		t.Errorf("after resume: %s", got.State)
	}
	f.want(204, "DELETE", one, "")
	if _, ok := f.files.transfer(f.cat.ID); ok {
		t.Error("removed transfer still there")
	}
	wantCalls := []string{"pause " + f.cat.ID.String(), "resume " + f.cat.ID.String(), "remove " + f.cat.ID.String()}
	if got := f.files.callLog(); !slices.Equal(got, wantCalls) {
		t.Errorf("calls %q, want %q", got, wantCalls)
	}

	unknown := shards.MD5{0xfe}.String()
	f.refuses([]badInput{
		{"link: wrong scheme", "POST", "/api/shards/fetch", `{"link": "http://x/y"}`, 400, "bad link"},
		{"link: no node", "POST", "/api/shards/fetch", `{"link": "webrtc://127.0.0.1:9000/files/` + unknown + `"}`, 400, "bad link"},
		{"link: bad md5", "POST", "/api/shards/fetch", `{"link": "webrtc://` + string(fakeID("bravo")) + `@127.0.0.1:9000/files/xyz"}`, 400, "bad link"},
		{"link: too long", "POST", "/api/shards/fetch", `{"link": "webrtc://` + strings.Repeat("a", shards.MaxLinkLen) + `"}`, 400, "bad link"},
		{"link: name with a slash", "POST", "/api/shards/fetch", `{"link": "webrtc://` + string(fakeID("bravo")) + `@127.0.0.1:9000/files/` + unknown + `?n=..%2Fx"}`, 400, "bad link"},
		{"id: not hex", "POST", "/api/shards/fetch", `{"id": "zz"}`, 400, "bad id"},
		{"both", "POST", "/api/shards/fetch", `{"id": "` + unknown + `", "link": "webrtc://x"}`, 400, "not both"},
		{"neither", "POST", "/api/shards/fetch", `{}`, 400, `missing "link"`},
		{"no holders", "POST", "/api/shards/fetch", `{"id": "` + unknown + `"}`, 404, "no online node holds"},
		{"pause: bad id", "POST", "/api/shards/nope/pause", ``, 400, "bad id"},
		{"pause: unknown", "POST", "/api/shards/" + unknown + "/pause", ``, 404, "unknown resource"},
		{"resume: unknown", "POST", "/api/shards/" + unknown + "/resume", ``, 404, "unknown resource"},
		{"remove: bad id", "DELETE", "/api/shards/" + unknown[:31], ``, 400, "bad id"},
		{"remove: unknown", "DELETE", "/api/shards/" + unknown, ``, 404, "unknown resource"},
		{"no such action", "POST", "/api/shards/" + unknown + "/explode", ``, 404, "no such endpoint"},
		{"pause: GET", "GET", one + "/pause", ``, 404, "no such endpoint"},
		{"fetch: GET", "GET", "/api/shards/fetch", ``, 405, "not allowed"},
	})
}

// TestFilesPush starts a push and reads its status; bad requests get a
// 400 that says why.
func TestFilesPush(t *testing.T) {
	checkGoroutines(t)
	f := newFilesFixture(t)
	path := filepath.Join(t.TempDir(), "song.mp3")
	if err := os.WriteFile(path, []byte("not really music"), 0o644); err != nil {
		t.Fatal(err)
	}
	song := decode[shards.Transfer](t, f.want(201, "POST", "/api/shards", fmt.Sprintf(`{"path": %q}`, path)))
	if song.Type != "audio/mpeg" {
		t.Errorf("song.mp3 has type %q, want audio/mpeg", song.Type)
	}
	bravo, charlie := string(fakeID("bravo")), string(fakeID("charlie"))
	created := decode[PushCreated](t, f.want(201, "POST", "/api/shards/push",
		fmt.Sprintf(`{"id": %q, "to": [%q, %q], "plan": "chain"}`, song.ID, bravo, charlie)))
	if created.ID == "" {
		t.Fatal("push answered no id")
	}
	st := decode[map[string]any](t, f.want(200, "GET", "/api/shards/push/"+created.ID, ""))
	recv, _ := st["receivers"].([]any)
	if st["plan"] != "chain" || len(recv) != 2 || st["uploaded"] != 0.0 {
		t.Errorf("push status %v", st)
	}
	for _, k := range []string{"node", "have", "state"} {
		if _, ok := recv[0].(map[string]any)[k]; !ok {
			t.Errorf("receiver has no %q: %v", k, recv[0])
		}
	}
	// No plan is the matrix.
	f.want(201, "POST", "/api/shards/push", fmt.Sprintf(`{"id": %q, "to": [%q]}`, song.ID, bravo))
	wantCalls := []string{fmt.Sprintf("push %s chain 2", song.ID), fmt.Sprintf("push %s matrix 1", song.ID)}
	if got := f.files.callLog(); !slices.Equal(got, wantCalls) {
		t.Errorf("calls %q, want %q", got, wantCalls)
	}

	many := make([]string, maxPushTo+1)
	for i := range many {
		many[i] = string(fakeID(fmt.Sprint(i)))
	}
	manyJSON, _ := json.Marshal(map[string]any{"id": song.ID, "to": many})
	f.refuses([]badInput{
		{"no id", "POST", "/api/shards/push", fmt.Sprintf(`{"to": [%q]}`, bravo), 400, `missing "id"`},
		{"bad id", "POST", "/api/shards/push", fmt.Sprintf(`{"id": "abc", "to": [%q]}`, bravo), 400, "bad id"},
		{"bad plan", "POST", "/api/shards/push", fmt.Sprintf(`{"id": %q, "to": [%q], "plan": "star"}`, song.ID, bravo), 400, `want "matrix", "chain" or "span"`},
		{"no receivers", "POST", "/api/shards/push", fmt.Sprintf(`{"id": %q, "to": []}`, song.ID), 400, `missing "to"`},
		{"bad node id", "POST", "/api/shards/push", fmt.Sprintf(`{"id": %q, "to": ["NOT AN ID"]}`, song.ID), 400, "to:"},
		{"twice", "POST", "/api/shards/push", fmt.Sprintf(`{"id": %q, "to": [%q, %q]}`, song.ID, bravo, bravo), 400, "listed twice"},
		{"to self", "POST", "/api/shards/push", fmt.Sprintf(`{"id": %q, "to": [%q]}`, song.ID, f.node.id), 400, "source"},
		{"too many", "POST", "/api/shards/push", string(manyJSON), 400, "at most"},
		{"unknown resource", "POST", "/api/shards/push", fmt.Sprintf(`{"id": %q, "to": [%q]}`, shards.MD5{9}, bravo), 404, "unknown resource"},
		{"unknown push", "GET", "/api/shards/push/p99", ``, 404, "unknown resource"},
		{"push id with a space", "GET", "/api/shards/push/p%201", ``, 400, "push id"},
		{"long push id", "GET", "/api/shards/push/" + strings.Repeat("p", maxPushID+1), ``, 400, "push id"},
	})
}

// TestFilesList lists every online node's files, sorted by name, with
// holders and types.
func TestFilesList(t *testing.T) {
	checkGoroutines(t)
	f := newFilesFixture(t)
	got := decode[[]map[string]any](t, f.want(200, "GET", "/api/files", ""))
	var names []string
	for _, g := range got {
		names = append(names, g["name"].(string))
		for _, k := range []string{"id", "name", "size", "type", "holders", "manifest"} {
			if _, ok := g[k]; !ok {
				t.Errorf("file has no %q: %v", k, g)
			}
		}
	}
	if !slices.Equal(names, []string{"big.bin", "cat.png", "notes.txt"}) {
		t.Errorf("names %q", names)
	}
	if got[1]["type"] != "image/png" || len(got[1]["holders"].([]any)) != 2 || got[2]["type"] != "text/plain; charset=utf-8" {
		t.Errorf("files %v", got)
	}
	// A file without holders (a race with a node leaving) lists [].
	f.files.addRemote("orphan.txt", []byte("x"))
	got = decode[[]map[string]any](t, f.want(200, "GET", "/api/files", ""))
	if h, ok := got[3]["holders"].([]any); !ok || len(h) != 0 {
		t.Errorf("orphan holders %v, want []", got[3]["holders"])
	}
}

// TestFilesContent serves a resource's bytes: whole, by Range (206), with
// a Content-Type from its name and a sandbox policy; a read of bytes still
// arriving waits for them.
func TestFilesContent(t *testing.T) {
	checkGoroutines(t)
	f := newFilesFixture(t)
	cat := "/api/shards/" + f.cat.ID.String() + "/content"

	resp, b := f.call("GET", cat, "")
	catBytes := f.files.bytes[f.cat.ID]
	if resp.StatusCode != 200 || !bytes.Equal(b, catBytes) {
		t.Fatalf("GET content: %d, %d bytes, want 200 and %d", resp.StatusCode, len(b), len(catBytes))
	}
	h := resp.Header
	if h.Get("Content-Type") != "image/png" || h.Get("Accept-Ranges") != "bytes" ||
		!strings.HasPrefix(h.Get("Content-Security-Policy"), "sandbox") ||
		h.Get("Cross-Origin-Resource-Policy") != "same-origin" || h.Get("ETag") != `"`+f.cat.ID.String()+`"` ||
		h.Get("Content-Disposition") != `inline; filename=cat.png` || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("headers %v", h)
	}
	if _, err := png.Decode(bytes.NewReader(b)); err != nil {
		t.Errorf("served image does not decode: %v", err)
	}
	resp, _ = f.call("GET", cat+"?download=1", "")
	if d := resp.Header.Get("Content-Disposition"); d != "attachment; filename=cat.png" {
		t.Errorf("download disposition %q", d)
	}
	resp, b = f.call("GET", cat, "", "If-None-Match", `"`+f.cat.ID.String()+`"`)
	if resp.StatusCode != http.StatusNotModified || len(b) != 0 {
		t.Errorf("revalidation: %d with %d bytes, want 304", resp.StatusCode, len(b))
	}

	// Ranges of a large file, at random places.
	big := "/api/shards/" + f.big.ID.String() + "/content"
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		from := rng.IntN(len(f.bigB))
		to := min(from+rng.IntN(300<<10), len(f.bigB)-1)
		resp, b := f.call("GET", big, "", "Range", fmt.Sprintf("bytes=%d-%d", from, to))
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, f.bigB[from:to+1]) ||
			resp.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", from, to, len(f.bigB)) {
			t.Fatalf("range %d-%d: %d, %d bytes, Content-Range %q", from, to, resp.StatusCode, len(b), resp.Header.Get("Content-Range"))
		}
	}
	resp, b = f.call("GET", big, "", "Range", "bytes=-100")
	if resp.StatusCode != 206 || !bytes.Equal(b, f.bigB[len(f.bigB)-100:]) {
		t.Errorf("suffix range: %d, %d bytes", resp.StatusCode, len(b))
	}
	resp, _ = f.call("GET", big, "", "Range", fmt.Sprintf("bytes=%d-", len(f.bigB)+10))
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("range past the end: %d, want 416", resp.StatusCode)
	}
	resp, b = f.call("HEAD", big, "")
	if resp.StatusCode != 200 || len(b) != 0 || resp.Header.Get("Content-Length") != fmt.Sprint(len(f.bigB)) {
		t.Errorf("HEAD: %d, %d bytes, length %q", resp.StatusCode, len(b), resp.Header.Get("Content-Length"))
	}

	// A download in progress: a range not there yet waits for it.
	f.want(201, "POST", "/api/shards/fetch", `{"id": "`+f.big.ID.String()+`"}`)
	type answer struct {
		status int
		b      []byte
	}
	got := make(chan answer, 1)
	from, to := 3<<20, 3<<20+999
	go func() {
		req, _ := http.NewRequest("GET", f.base+big, nil)
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, to))
		resp, err := f.c.Do(req)
		if err != nil {
			got <- answer{status: -1, b: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- answer{resp.StatusCode, b}
	}()
	testutil.WaitFor(t, 10*time.Second, "the range request to open the resource", func() bool { return f.files.openReaders() == 1 })
	f.files.advance(f.big.ID, 2<<20, 1e6, nil) // not far enough
	select {
	case a := <-got:
		t.Fatalf("answered before the bytes arrived: %d", a.status)
	case <-time.After(50 * time.Millisecond):
	}
	f.files.advance(f.big.ID, int64(to+1), 1e6, nil)
	select {
	case a := <-got:
		if a.status != 206 || !bytes.Equal(a.b, f.bigB[from:to+1]) {
			t.Fatalf("range of a download: %d, %d bytes", a.status, len(a.b))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer once the bytes arrived")
	}
	testutil.WaitFor(t, 10*time.Second, "the reader to be closed", func() bool { return f.files.openReaders() == 0 })

	f.refuses([]badInput{
		{"bad id", "GET", "/api/shards/cat.png/content", ``, 400, "bad id"},
		{"unknown", "GET", "/api/shards/" + shards.MD5{7}.String() + "/content", ``, 404, "unknown resource"},
		{"POST", "POST", cat, ``, 404, "no such endpoint"},
	})
	// A page elsewhere cannot make the node fetch, nor read, a file.
	for _, site := range []string{"cross-site", "same-site"} {
		resp, b := f.call("GET", cat, "", "Sec-Fetch-Site", site)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("Sec-Fetch-Site %s: %d %s, want 403", site, resp.StatusCode, b)
		}
	}
	if resp, _ := f.call("GET", cat, "", "Sec-Fetch-Site", "same-origin"); resp.StatusCode != 200 {
		t.Errorf("our own page: %d", resp.StatusCode)
	}
}

// TestContentType checks the types of the names the gallery and a player
// need, whatever the machine's mime.types says.
func TestContentType(t *testing.T) {
	for name, want := range map[string]string{
		"a.PNG": "image/png", "b.jpg": "image/jpeg", "c.webp": "image/webp", "d.gif": "image/gif",
		"e.mp3": "audio/mpeg", "f.flac": "audio/flac", "g.txt": "text/plain; charset=utf-8",
		"noext": "application/octet-stream", "h.mp4": "video/mp4", "i.lrc": "text/plain; charset=utf-8",
	} {
		if got := contentType(name); got != want {
			t.Errorf("contentType(%q) = %q, want %q", name, got, want)
		}
	}
}

// nextShards waits for the next "shards" event that ok accepts and returns
// it, skipping others.
func nextShards(t *testing.T, events <-chan sseEvent, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	return nextObject(t, events, "shards", ok)
}

// TestFilesEvents follows a download on the event stream: it starts, makes
// progress with its sources, ends and is removed.
func TestFilesEvents(t *testing.T) {
	checkGoroutines(t)
	f := newFilesFixture(t)
	events, _ := openEvents(t, f.c, f.base)
	testutil.WaitFor(t, 10*time.Second, "the stream to subscribe", func() bool { return f.files.events.Len() == 1 })

	f.want(201, "POST", "/api/shards/fetch", `{"id": "`+f.big.ID.String()+`"}`)
	transfer := func(state string, have float64) func(map[string]any) bool {
		return func(v map[string]any) bool {
			tr, _ := v["transfer"].(map[string]any)
			return tr != nil && tr["state"] == state && tr["have"] == have
		}
	}
	ev := nextShards(t, events, transfer("downloading", 0))
	if src, ok := ev["transfer"].(map[string]any)["sources"].(map[string]any); !ok || len(src) != 0 {
		t.Errorf("sources %v, want {}", ev["transfer"])
	}
	bravo := fakeID("bravo")
	f.files.advance(f.big.ID, 1<<20, 5e5, map[mesh.ID]int64{bravo: 1 << 20})
	ev = nextShards(t, events, transfer("downloading", 1<<20))
	if tr := ev["transfer"].(map[string]any); tr["rate"] != 5e5 || tr["sources"].(map[string]any)[string(bravo)] != float64(1<<20) {
		t.Errorf("progress event %v", tr)
	}
	f.files.advance(f.big.ID, f.big.Size, 0, map[mesh.ID]int64{bravo: f.big.Size})
	nextShards(t, events, transfer("done", float64(f.big.Size)))
	f.want(204, "DELETE", "/api/shards/"+f.big.ID.String(), "")
	nextShards(t, events, func(v map[string]any) bool { return v["removed"] == f.big.ID.String() })
	f.files.addRemote("new.txt", []byte("new"), bravo)
	nextShards(t, events, func(v map[string]any) bool { return v["files"] == true })
}

// TestFilesEventsResync checks that a stream the service dropped events
// for gets a resync after those it did get.
func TestFilesEventsResync(t *testing.T) {
	checkGoroutines(t)
	f := newFilesFixture(t)
	for range fakeFilesBuffer + 10 {
		f.files.stalled = append(f.files.stalled, shards.Event{Files: true})
	}
	events, _ := openEvents(t, f.c, f.base)
	n := 0
	nextShards(t, events, func(v map[string]any) bool {
		if v["resync"] == true {
			return true
		}
		n++
		return false
	})
	if n != fakeFilesBuffer {
		t.Errorf("resync after %d events, want after the %d buffered", n, fakeFilesBuffer)
	}
}
