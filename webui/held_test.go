package webui

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/catnest/catnest/internal/browsertest"
)

// heldGET holds one GET of an API path the page makes: the server answers
// it when it comes in, but the answer's body reaches the page only when
// the test lets it go. The page then reads an answer older than the events it had
// since, which is how a slow GET meets a busy event stream.
type heldGET struct {
	next    http.Handler
	path    string
	mu      sync.Mutex
	armed   bool          // hold the next GET of path
	every   bool          // and those after it, until letGo
	gets    int           // GETs of path since armed
	entered chan struct{} // closed once that GET has its answer
	release chan struct{} // closed to send it
	once    sync.Once
	entry   sync.Once
}

// holdGET puts a heldGET for path (as the server sees it, "/api/...") in
// front of s; nothing is held until arm. The hold ends with the test.
func holdGET(t *testing.T, s *Server, path string) *heldGET {
	t.Helper()
	h := &heldGET{next: s.handler, path: path, entered: make(chan struct{}), release: make(chan struct{})}
	s.handler = h
	t.Cleanup(h.letGo)
	return h
}

// arm holds the next GET of the path; only one is ever held, unless
// armEvery.
func (h *heldGET) arm() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.armed = true
	h.gets = 0
}

// armEvery holds every GET of the path from now on until letGo: a view
// that reads the path again on its own gets no answer meanwhile either.
func (h *heldGET) armEvery() {
	h.arm()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.every = true
}

// getCount returns how many GETs of the path came since arm.
func (h *heldGET) getCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gets
}

func (h *heldGET) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hold := false
	if r.Method == http.MethodGet && r.URL.Path == h.path {
		h.mu.Lock()
		hold, h.armed = h.armed, h.armed && h.every
		h.gets++
		h.mu.Unlock()

	}
	if !hold {
		h.next.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	h.next.ServeHTTP(rec, r)
	// The status and headers go at once, as when a long body is on its
	// way: Chromium makes a second GET of the same URL wait until they
	// have come, but not for the body.
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	http.NewResponseController(w).Flush()
	h.entry.Do(func() { close(h.entered) })
	select {
	case <-h.release:
	case <-r.Context().Done():
		return
	}
	w.Write(rec.Body.Bytes())
}

// wait returns once the (first) held GET has been answered (and not yet
// sent).
func (h *heldGET) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-h.entered:
	case <-time.After(timeout):
		t.Fatalf("the page did not GET %s within %v", h.path, timeout)
	}
}

// letGo sends the held answer.
func (h *heldGET) letGo() { h.once.Do(func() { close(h.release) }) }

// letGoAndWait sends the held answer and waits until the view has read
// every answer of the path since arm, the held one included: data-WHAT on
// the view's root (see countRead in dom.js) counts them. Another GET that
// came meanwhile may be read before the held one, so one more read is not
// enough.
func (h *heldGET) letGoAndWait(t *testing.T, ctx context.Context, what string, timeout time.Duration) {
	t.Helper()
	h.letGo()
	browsertest.Until(t, ctx, timeout, fmt.Sprintf(`Number(%s || 0) >= %d`, viewRead(what), h.getCount()))
}

// holdingPage starts the web UI of node with cfg, a heldGET in front of
// it for each of paths, and a browser that speaks lang; it opens the page
// and goes to view, arming the holds just before when armAtOpen is set
// (the page's own first GETs, such as its probes, are over by then). The
// stream does not resend snapshots every few seconds: a stale one a view
// keeps stays.
func holdingPage(t *testing.T, node Node, cfg Config, lang, view string, armAtOpen bool, paths ...string) (context.Context, map[string]*heldGET) {
	t.Helper()
	return holdingPageFor(t, browsertest.DefaultTimeout, node, cfg, lang, view, armAtOpen, paths...)
}

// holdingPageFor is holdingPage with a browser that lives up to timeout
// (browsertest.NewFor), for a test longer than DefaultTimeout.
func holdingPageFor(t *testing.T, timeout time.Duration, node Node, cfg Config, lang, view string, armAtOpen bool, paths ...string) (context.Context, map[string]*heldGET) {
	t.Helper()
	cfg.Addr, cfg.Version = "127.0.0.1:0", "test"
	s, err := New(cfg, node)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) > 0 {
		s.timing.refresh = time.Hour
	}
	holds := map[string]*heldGET{}
	for _, p := range paths {
		holds[p] = holdGET(t, s, p)
	}
	base, _ := serve(t, s)
	ctx := browsertest.NewFor(t, timeout)
	if err := browsertest.SetLanguage(ctx, lang); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	// Once the stream is open and the probes it started are over, the
	// page reads nothing more for its opening: the GETs the test counts
	// are the view's.
	nav := `.nav-link[data-view="` + view + `"]`
	browsertest.Until(t, ctx, 10*time.Second, `document.querySelector('`+nav+`') !== null
		&& document.querySelector("#conn").dataset.state === "open"
		&& document.documentElement.dataset.probed === "true"`)
	if armAtOpen {
		for _, h := range holds {
			h.arm()
		}
	}
	click(t, ctx, nav)
	return ctx, holds
}

// viewRead returns the JS for how many answers of one kind of GET the
// view has read (data-WHAT on its root, see countRead in dom.js).
func viewRead(what string) string {
	return `document.querySelector("#view").dataset.` + what
}

// checkJS fails the test with msg unless the JS expression is true now.
func checkJS(t *testing.T, ctx context.Context, expr, msg string) {
	t.Helper()
	ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatal(msg)
	}
}
