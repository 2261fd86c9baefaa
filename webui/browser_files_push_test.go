package webui

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// The Files view's push panel follows a push with events and, for a push
// it started, a poll. These tests make the poll fail, hold it until an
// event is newer, send an event older than the poll's answer, and cut the
// event stream while the push ends: the panel must end showing what the
// node has, and never take a receiver back from done.

// streamGate sits in front of a Server: it can end the page's event
// streams (EventSource then reconnects, as after a network error) and fail
// the next GETs of a path with 503.
type streamGate struct {
	next     http.Handler
	mu       sync.Mutex
	cancels  []context.CancelFunc
	streams  int // event streams opened
	failPath string
	failLeft int // GETs of failPath still to fail
	failed   int
	paused   chan struct{} // while set, writes of the event streams wait for it to close
}

// pausedWriter is an event stream's writer: its writes wait while the
// gate pauses the streams, as a client that does not read.
type pausedWriter struct {
	http.ResponseWriter
	g   *streamGate
	ctx context.Context
}

func (w pausedWriter) Write(b []byte) (int, error) {
	w.g.mu.Lock()
	p := w.g.paused
	w.g.mu.Unlock()
	if p != nil {
		select {
		case <-p:
		case <-w.ctx.Done():
			return 0, w.ctx.Err()
		}
	}
	return w.ResponseWriter.Write(b)
}

func (w pausedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// pause makes the event streams' writes wait until the func it returns
// is called.
func (g *streamGate) pause() (resume func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := make(chan struct{})
	g.paused = p
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.paused = nil
		close(p)
	}
}

func (g *streamGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/api/events" {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		g.mu.Lock()
		g.cancels = append(g.cancels, cancel)
		g.streams++
		g.mu.Unlock()
		g.next.ServeHTTP(pausedWriter{w, g, ctx}, r.WithContext(ctx))
		return
	}
	g.mu.Lock()
	fail := r.Method == http.MethodGet && r.URL.Path == g.failPath && g.failLeft > 0
	if fail {
		g.failLeft--
		g.failed++
	}
	g.mu.Unlock()
	if fail {
		writeError(w, http.StatusServiceUnavailable, "busy")
		return
	}
	g.next.ServeHTTP(w, r)
}

// cut ends the event streams open now.
func (g *streamGate) cut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.cancels {
		c()
	}
	g.cancels = nil
}

func (g *streamGate) opened() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.streams
}

// failNext fails the next n GETs of path.
func (g *streamGate) failNext(path string, n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failPath, g.failLeft = path, n
}

func (g *streamGate) failedGETs() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failed
}

// gatedFilesPage opens the Files view of node with files behind a
// streamGate and a heldGET for each of paths (armed by the test).
func gatedFilesPage(t *testing.T, node Node, files *fakeFiles, paths ...string) (context.Context, *streamGate, map[string]*heldGET) {
	t.Helper()
	s, err := New(Config{Addr: "127.0.0.1:0", Version: "test", Files: files}, node)
	if err != nil {
		t.Fatal(err)
	}
	s.timing.refresh = time.Hour // no directory resent: the events are the test's
	holds := map[string]*heldGET{}
	for _, p := range paths {
		holds[p] = holdGET(t, s, p)
	}
	g := &streamGate{next: s.handler}
	s.handler = g
	base, _ := serve(t, s)
	ctx := browsertest.New(t)
	if err := browsertest.SetLanguage(ctx, "en-US"); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	nav := `.nav-link[data-view="files"]`
	browsertest.Until(t, ctx, 10*time.Second, `document.querySelector('`+nav+`') !== null
		&& document.querySelector("#conn").dataset.state === "open"`)
	click(t, ctx, nav)
	browsertest.Until(t, ctx, 10*time.Second, `document.querySelector("#files-push-none") !== null
		&& Number(`+viewRead("readTransfers")+` || 0) >= 1`)
	return ctx, g, holds
}

// pushThreeNodes is a node alpha that sees bravo and charlie, and shares
// album.flac (1 MiB).
func pushThreeNodes(t *testing.T) (*fakeNode, *fakeFiles, shards.File, mesh.ID, mesh.ID) {
	t.Helper()
	node := newFakeNode("alpha")
	bravo, charlie := fakeID("bravo"), fakeID("charlie")
	node.setRecords(mesh.Record{ID: node.id, Name: "alpha"}, mesh.Record{ID: bravo, Name: "bravo"},
		mesh.Record{ID: charlie, Name: "charlie"})
	files := newFakeFiles(node.id)
	album := files.seed("album.flac", make([]byte, 1<<20))
	return node, files, album, bravo, charlie
}

// pushFromPage pushes f to nodes with the page's dialog and waits for its
// panel; it returns the push's id.
func pushFromPage(t *testing.T, ctx context.Context, f shards.File, nodes ...mesh.ID) string {
	t.Helper()
	click(t, ctx, `#files-transfers button[data-act="push"][data-id="`+f.ID.String()+`"]`)
	browsertest.Until(t, ctx, 10*time.Second, `document.querySelector("#files-push-dialog").open`)
	for _, n := range nodes {
		click(t, ctx, `#files-push-dialog input[name="to"][value="`+string(n)+`"]`)
	}
	click(t, ctx, "#files-push-btn")
	browsertest.Until(t, ctx, 10*time.Second, pushPanel+` !== null && `+pushPanel+`.querySelectorAll(".push-receivers li").length === `+strconv.Itoa(len(nodes)))
	pid, err := chromedp.Run(ctx, chromedp.Evaluate[string](pushPanel+`.dataset.id`))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

const pushPanel = `document.querySelector("#files-push-status li.push")`

// pushRecv is the JS for receiver n's row in the push panel.
func pushRecv(n mesh.ID) string {
	return pushPanel + `.querySelector('.push-receivers li[data-node="` + string(n) + `"]')`
}

// TestBrowserFilesPushPollRetries: polls of the push fail twice (the node
// busy); the push ends meanwhile, with no event. The panel must still come
// to done: a poll that gave up on one error froze it part-way.
func TestBrowserFilesPushPollRetries(t *testing.T) {
	checkGoroutines(t)
	node, files, album, bravo, charlie := pushThreeNodes(t)
	ctx, gate, _ := gatedFilesPage(t, node, files)
	const wait = 20 * time.Second
	pid := pushFromPage(t, ctx, album, bravo, charlie)
	browsertest.Until(t, ctx, wait, pushPanel+`.querySelector(".push-state").textContent === "0 of 2 done"`)

	gate.failNext("/api/shards/push/"+pid, 2)
	testutil.WaitFor(t, wait, "a poll of the push to fail", func() bool { return gate.failedGETs() >= 1 })
	files.setPush(pid, func(st *shards.PushStatus) {
		for i := range st.Receivers {
			st.Receivers[i].Have, st.Receivers[i].State = st.Size, "done"
		}
		st.Uploaded, st.Done = st.Size, true
	})
	if err := browsertest.Wait(ctx, wait, pushPanel+`.dataset.state === "done" && `+pushRecv(bravo)+`.dataset.state === "done"`); err != nil {
		t.Fatalf("the push panel did not come to done after a failed poll: %v", err)
	}
}

// watchBack installs an observer that records, in window.pushBack, every
// time receiver n of the panel shows less than done once it showed done.
func watchBack(t *testing.T, ctx context.Context, n mesh.ID) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
		window.pushBack = [];
		const check = () => {
			const li = `+pushRecv(n)+`;
			const pct = li && li.querySelector(".progress").getAttribute("aria-valuenow");
			if (!li || li.dataset.state !== "done" || pct !== "100") window.pushBack.push((li ? li.dataset.state : "none") + " " + pct);
		};
		check();
		new MutationObserver(check).observe(document.querySelector("#files-push-status"),
			{ subtree: true, childList: true, attributes: true, characterData: true });
		return true;
	})()`)); err != nil {
		t.Fatal(err)
	}
}

// TestBrowserFilesPushOrder: the page's poll of a push is on its way
// (answered: no one done) when an event says bravo is done; the poll's
// answer, read after, must not take bravo back. Then a poll shows
// charlie half-way and an event older than that (no one done, nothing
// sent) comes late: it must take back neither.
func TestBrowserFilesPushOrder(t *testing.T) {
	checkGoroutines(t)
	node, files, album, bravo, charlie := pushThreeNodes(t)
	marker := files.addRemote("marker.bin", make([]byte, 1000), bravo)
	startDownload(t, files, marker, 100, map[mesh.ID]int64{bravo: 100})
	path := "/api/shards/push/p1"
	ctx, _, holds := gatedFilesPage(t, node, files, path)
	const wait = 20 * time.Second
	pid := pushFromPage(t, ctx, album, bravo, charlie)
	if pid != "p1" {
		t.Fatalf("push id %q, want p1", pid)
	}
	old := files.pushNow(pid)
	reads := func() int {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`Number(`+viewRead("readPush")+` || 0)`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	browsertest.Until(t, ctx, wait, `Number(`+viewRead("readPush")+` || 0) >= 1`)

	held := holds[path]
	held.arm()
	held.wait(t, wait) // it has read no one done
	before := reads()
	files.setPush(pid, func(st *shards.PushStatus) {
		st.Receivers[0].Have, st.Receivers[0].State = st.Size, "done"
		st.Uploaded = st.Size / 2
	})
	files.sendPush(files.pushNow(pid))
	browsertest.Until(t, ctx, wait, pushRecv(bravo)+`.dataset.state === "done"`)
	watchBack(t, ctx, bravo)
	held.letGo()
	browsertest.Until(t, ctx, wait, fmt.Sprintf(`Number(%s || 0) > %d`, viewRead("readPush"), before))
	checkJS(t, ctx, `window.pushBack.length === 0 && `+pushPanel+`.querySelector(".push-state").textContent === "1 of 2 done"`,
		"a poll answered before the event that said bravo was done, read after it, took bravo back to receiving")

	// A poll brings charlie half-way; then the old event comes, and the
	// marker's after it (one stream: in order).
	files.setPush(pid, func(st *shards.PushStatus) { st.Receivers[1].Have = st.Size / 2 })
	charliePct := pushRecv(charlie) + `.querySelector(".progress").getAttribute("aria-valuenow")`
	browsertest.Until(t, ctx, wait, charliePct+` === "50"`)
	files.sendPush(old)
	files.advance(marker.ID, 700, 1<<20, map[mesh.ID]int64{bravo: 700})
	browsertest.Until(t, ctx, wait, `document.querySelector('#files-transfers li[data-id="`+marker.ID.String()+`"] .progress').getAttribute("aria-valuenow") === "70"`)
	checkJS(t, ctx, `window.pushBack.length === 0 && `+charliePct+` === "50"`,
		"an event older than the poll's answer, come after it, took the push back")
}

// TestBrowserFilesPushReconnect: a push the page knows from its events
// (started elsewhere: the page does not poll it) ends while the event
// stream is down, so its last event is lost. When the stream is back the
// page must read the push again, as it reads the transfers.
func TestBrowserFilesPushReconnect(t *testing.T) {
	checkGoroutines(t)
	node, files, album, bravo, charlie := pushThreeNodes(t)
	ctx, gate, _ := gatedFilesPage(t, node, files)
	const wait = 20 * time.Second
	pid, err := files.Push(context.Background(), album.ID, []mesh.ID{bravo, charlie}, shards.PlanMatrix)
	if err != nil {
		t.Fatal(err)
	}
	files.sendPush(files.pushNow(pid))
	browsertest.Until(t, ctx, wait, pushPanel+` !== null && `+pushPanel+`.dataset.state === "running"`)

	gate.cut()
	files.setPush(pid, func(st *shards.PushStatus) {
		for i := range st.Receivers {
			st.Receivers[i].Have, st.Receivers[i].State = st.Size, "done"
		}
		st.Uploaded, st.Done = st.Size, true
	})
	testutil.WaitFor(t, wait, "the page to open the event stream again", func() bool { return gate.opened() >= 2 })
	if err := browsertest.Wait(ctx, wait, pushPanel+`.dataset.state === "done" && `+pushRecv(charlie)+`.dataset.state === "done"`); err != nil {
		t.Fatalf("the push that ended while the stream was down still shows running after it reconnected: %v", err)
	}
}

// TestBrowserFilesPushGoneFinal: a receiver shown done can leave the push
// afterwards (its calls fail, it relays corrupt pieces): the node's status
// goes from done to gone, never back. An event older than the one that
// said gone, come late, must not show it done again.
func TestBrowserFilesPushGoneFinal(t *testing.T) {
	checkGoroutines(t)
	node, files, album, bravo, charlie := pushThreeNodes(t)
	marker := files.addRemote("marker.bin", make([]byte, 1000), bravo)
	startDownload(t, files, marker, 100, map[mesh.ID]int64{bravo: 100})
	ctx, _, _ := gatedFilesPage(t, node, files)
	const wait = 20 * time.Second
	pid, err := files.Push(context.Background(), album.ID, []mesh.ID{bravo, charlie}, shards.PlanMatrix)
	if err != nil {
		t.Fatal(err)
	}
	files.setPush(pid, func(st *shards.PushStatus) {
		st.Receivers[0].Have, st.Receivers[0].State = st.Size, "done"
		st.Uploaded = st.Size / 2
	})
	done := files.pushNow(pid)
	files.sendPush(done)
	browsertest.Until(t, ctx, wait, pushPanel+` !== null && `+pushRecv(bravo)+`?.dataset.state === "done"`)
	files.setPush(pid, func(st *shards.PushStatus) {
		st.Receivers[0].State, st.Receivers[0].Error = "gone", "its calls failed: timeout"
	})
	files.sendPush(files.pushNow(pid))
	browsertest.Until(t, ctx, wait, pushRecv(bravo)+`.dataset.state === "gone"`)
	checkJS(t, ctx, `(() => {
		window.pushBack = [];
		new MutationObserver(() => {
			const li = `+pushRecv(bravo)+`;
			if (!li || li.dataset.state !== "gone") window.pushBack.push(li ? li.dataset.state : "none");
		}).observe(document.querySelector("#files-push-status"), { subtree: true, childList: true, attributes: true, characterData: true });
		return true;
	})()`, "")

	files.sendPush(done) // late: older than gone
	files.advance(marker.ID, 700, 1<<20, map[mesh.ID]int64{bravo: 700})
	browsertest.Until(t, ctx, wait, `document.querySelector('#files-transfers li[data-id="`+marker.ID.String()+`"] .progress').getAttribute("aria-valuenow") === "70"`)
	checkJS(t, ctx, `window.pushBack.length === 0 && `+pushRecv(bravo)+`.dataset.state === "gone"`,
		"an event older than the one that said bravo was gone, come late, showed bravo done again")
}

// TestBrowserFilesPushResync: the page stops reading its event stream
// (the tab busy) while more events come than the server keeps for it, and
// the push ends among them. The server sends a resync in place of those it
// dropped, on the same stream: the page must read the push again then, as
// it does the transfers.
func TestBrowserFilesPushResync(t *testing.T) {
	checkGoroutines(t)
	node, files, album, bravo, charlie := pushThreeNodes(t)
	marker := files.addRemote("marker.bin", make([]byte, 1<<20), bravo)
	startDownload(t, files, marker, 1, map[mesh.ID]int64{bravo: 1})
	ctx, gate, _ := gatedFilesPage(t, node, files)
	const wait = 30 * time.Second
	pid, err := files.Push(context.Background(), album.ID, []mesh.ID{bravo, charlie}, shards.PlanMatrix)
	if err != nil {
		t.Fatal(err)
	}
	files.sendPush(files.pushNow(pid))
	browsertest.Until(t, ctx, wait, pushPanel+` !== null && `+pushPanel+`.dataset.state === "running"`)

	resume := gate.pause()
	files.setPush(pid, func(st *shards.PushStatus) {
		for i := range st.Receivers {
			st.Receivers[i].Have, st.Receivers[i].State = st.Size, "done"
		}
		st.Uploaded, st.Done = st.Size, true
	})
	// More than the stream's backlog (maxBacklog): some are dropped, and
	// the push's last event with them.
	for i := range maxBacklog + 100 {
		files.advance(marker.ID, int64(2+i), 1<<20, map[mesh.ID]int64{bravo: int64(2 + i)})
	}
	resume()
	if err := browsertest.Wait(ctx, wait, pushPanel+`.dataset.state === "done" && `+pushRecv(charlie)+`.dataset.state === "done"`); err != nil {
		t.Fatalf("the push that ended among dropped events still shows running after the resync: %v", err)
	}
	if n := gate.opened(); n != 1 {
		t.Fatalf("the event stream was opened %d times: the page reconnected, so this did not test the resync", n)
	}
}

// TestBrowserFilesPushForgotten: the node restarts during a push the page
// started (its pushes die with it); the page's poll is answered 404. The
// panel must say the push ended with the node's restart, not show it
// running for good.
func TestBrowserFilesPushForgotten(t *testing.T) {
	checkGoroutines(t)
	node, files, album, bravo, charlie := pushThreeNodes(t)
	ctx, _, _ := gatedFilesPage(t, node, files)
	const wait = 20 * time.Second
	pid := pushFromPage(t, ctx, album, bravo, charlie)
	browsertest.Until(t, ctx, wait, pushPanel+`.querySelector(".push-state").textContent === "0 of 2 done"`)
	files.forgetPush(pid)
	if err := browsertest.Wait(ctx, wait, pushPanel+`.dataset.state === "lost"
		&& `+pushPanel+`.querySelector(".push-state").textContent.startsWith("Ended")`); err != nil {
		t.Fatalf("a push the node no longer knows still shows running: %v", err)
	}
}
