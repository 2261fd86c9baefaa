package webui

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
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
	entered chan struct{} // closed once that GET has its answer
	release chan struct{} // closed to send it
	once    sync.Once
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

// arm holds the next GET of the path; only one is ever held.
func (h *heldGET) arm() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.armed = true
}

func (h *heldGET) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hold := false
	if r.Method == http.MethodGet && r.URL.Path == h.path {
		h.mu.Lock()
		hold, h.armed = h.armed, false
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
	close(h.entered)
	select {
	case <-h.release:
	case <-r.Context().Done():
		return
	}
	w.Write(rec.Body.Bytes())
}

// wait returns once the held GET has been answered (and not yet sent).
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
