package webui

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/catnest/catnest/internal/pubsub"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// Files is what the web UI needs of the shards service (*shards.Service):
// this node's shares and transfers, the files every online node shares,
// pushes, and a resource's bytes. Its methods are called from request
// goroutines, several at a time.
type Files interface {
	// Shares lists this node's shares and transfers.
	Shares(ctx context.Context) ([]shards.Transfer, error)
	// SharesPage lists the user's shares and transfers newest first
	// (then by id) from offset, at most limit (limit < 0: all the rest),
	// and how many there are in all; a service's (For set: music's
	// covers) are in neither, so that a short page is the last.
	SharesPage(ctx context.Context, offset, limit int) ([]shards.Transfer, int, error)
	// Transfer returns one of this node's shares or transfers; an id it
	// has not is shards.ErrUnknown.
	Transfer(ctx context.Context, id shards.MD5) (shards.Transfer, error)
	// Share shares the regular file at path (absolute), in place.
	Share(ctx context.Context, path string) (shards.Transfer, error)
	// Fetch starts downloading a resource; a Link with only ID set finds
	// its holders in the catalog.
	Fetch(ctx context.Context, l shards.Link) (shards.Transfer, error)
	Pause(ctx context.Context, id shards.MD5) error
	Resume(ctx context.Context, id shards.MD5) error
	// Remove cancels a download and deletes its partial data, or stops
	// sharing a file; it never deletes a user's own file.
	Remove(ctx context.Context, id shards.MD5) error
	// Files lists every online node's shared resources with their holders.
	Files(ctx context.Context) ([]shards.File, error)
	// Push sends a resource this node holds to the nodes to with plan,
	// and returns the push's id.
	Push(ctx context.Context, id shards.MD5, to []mesh.ID, plan shards.Plan) (string, error)
	PushStatus(ctx context.Context, pid string) (shards.PushStatus, error)
	// Open returns a seekable reader over a resource, local or remote,
	// whose reads wait for the pieces they need until ctx ends.
	Open(ctx context.Context, id shards.MD5) (shards.Content, error)
	// SubscribeShards returns a subscription to progress and changes.
	// Events may be dropped when the reader is slow; Missed counts them.
	SubscribeShards() *pubsub.Subscription[shards.Event]
}

// Limits of the files API.
const (
	// maxPath bounds the path of a file to share, in bytes (Linux's
	// PATH_MAX).
	maxPath = 4096
	// maxPushTo bounds the receivers of one push.
	maxPushTo = 1024
	// maxPushID bounds a push id in a URL.
	maxPushID = 128
	// maxSharesPage bounds ?limit= of GET /api/shards and /api/files.
	maxSharesPage = 1000
)

// ShardsResync is the "shards" event sent in place of events that were
// dropped because the client was slow: fetch /api/shards and /api/files
// again.
type ShardsResync struct {
	Resync bool `json:"resync"`
}

// PushCreated is the body of POST /api/shards/push.
type PushCreated struct {
	ID string `json:"id"`
}

func (s *Server) filesRoutes() []route {
	const (
		list  = "/api/shards"
		one   = list + "/{id}"
		sub   = one + "/{sub}"
		files = "/api/files"
	)
	// /api/shards/push/{pid} and /api/shards/{id}/content overlap as mux
	// patterns ("/api/shards/push/content" matches both), so one pattern
	// takes every path of two elements under /api/shards and dispatches.
	routes := []route{
		{http.MethodGet, list, s.handleShares},
		{http.MethodPost, list, s.handleShare},
		{http.MethodPost, list + "/fetch", s.handleFetch},
		{http.MethodPost, list + "/push", s.handlePush},
		{http.MethodGet, one, s.handleTransfer},
		{http.MethodDelete, one, s.handleRemove},
		{http.MethodGet, sub, s.handleShardGet},
		{http.MethodPost, sub, s.handleShardPost},
		{http.MethodGet, files, s.handleFiles},
	}
	if s.cfg.Files == nil {
		// Same paths, so that a client learns "no files here" and not
		// "no such endpoint"; the UI hides its Files view on this 404.
		for i := range routes {
			routes[i].handle = func(w http.ResponseWriter, r *http.Request) {
				writeError(w, http.StatusNotFound, "file sharing is not enabled on this node")
			}
		}
	}
	return routes
}

// filesError answers a failed call of the shards service, mapping its
// errors to statuses.
func (s *Server) filesError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, shards.ErrBadID), errors.Is(err, shards.ErrBadLink),
		errors.Is(err, shards.ErrNotFile), errors.Is(err, shards.ErrTooLarge), errors.Is(err, shards.ErrBadDir):
		status = http.StatusBadRequest
	case errors.Is(err, shards.ErrUnknown), errors.Is(err, shards.ErrNoHolders):
		status = http.StatusNotFound
	case r.Context().Err() != nil:
		return // the client is gone
	}
	if status == http.StatusInternalServerError {
		s.log.Warn("web UI: files request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, status, err.Error())
}

// resourceID reads the {id} path element; on failure it answers 400 and
// returns false.
func resourceID(w http.ResponseWriter, r *http.Request) (shards.MD5, bool) {
	id, err := shards.ParseMD5(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return id, false
	}
	return id, true
}

// transferJSON fills what the contract says is never null.
func transferJSON(t shards.Transfer) shards.Transfer {
	if t.Sources == nil {
		t.Sources = map[mesh.ID]int64{}
	}
	if t.Type == "" {
		t.Type = contentType(t.Name)
	}
	return t
}

// handleShares is GET /api/shards: the user's shares and transfers on
// this node (not a service's), newest first, as an array. ?offset=N&limit=M asks for a page of them (a
// node can share 100,000 files: 45 MB of JSON at once); without them it is
// the whole list, as before. Either way the X-Total-Count header says how
// many there are in all.
func (s *Server) handleShares(w http.ResponseWriter, r *http.Request) {
	offset, limit, ok := pageParams(w, r)
	if !ok {
		return
	}
	ts, total, err := s.cfg.Files.SharesPage(r.Context(), offset, limit)
	if err != nil {
		s.filesError(w, r, err)
		return
	}
	out := make([]shards.Transfer, 0, len(ts))
	for _, t := range ts {
		out = append(out, transferJSON(t))
	}
	w.Header().Set("X-Total-Count", strconv.Itoa(total))
	writeJSON(w, http.StatusOK, out)
}

// pageParams reads ?offset=N&limit=M (limit -1 when not given); on bad
// values it answers 400 and returns false.
func pageParams(w http.ResponseWriter, r *http.Request) (offset, limit int, ok bool) {
	q := r.URL.Query()
	offset, limit = 0, -1
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("offset %.20q: want a whole number, 0 or more", v))
			return 0, 0, false
		}
		offset = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxSharesPage {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %.20q: want a whole number from 1 to %d", v, maxSharesPage))
			return 0, 0, false
		}
		limit = n
	}
	return offset, limit, true
}

// handleTransfer is GET /api/shards/{id}: one share or transfer.
func (s *Server) handleTransfer(w http.ResponseWriter, r *http.Request) {
	id, ok := resourceID(w, r)
	if !ok {
		return
	}
	t, err := s.cfg.Files.Transfer(r.Context(), id)
	if err != nil {
		s.filesError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, transferJSON(t))
}

// checkPath says what is wrong with a path to share, or "". The node
// checks that it is a readable regular file; relative paths are refused
// because the node's working directory is not the caller's.
func checkPath(p string) string {
	switch {
	case p == "":
		return `missing "path": the absolute path of a file on the node's machine`
	case len(p) > maxPath:
		return fmt.Sprintf("the path is too long: %d bytes, at most %d", len(p), maxPath)
	case !utf8.ValidString(p) || strings.ContainsFunc(p, unicode.IsControl):
		return "the path has control characters or is not UTF-8"
	case !filepath.IsAbs(p):
		return fmt.Sprintf("the path %q is not absolute", p)
	}
	return ""
}

func (s *Server) handleShare(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Path string `json:"path"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if msg := checkPath(req.Path); msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	t, err := s.cfg.Files.Share(r.Context(), filepath.Clean(req.Path))
	if err != nil {
		s.filesError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, transferJSON(t))
}

func (s *Server) handleFetch(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Link string `json:"link"`
		ID   string `json:"id"`
		// Dir (optional): the folder on the node's machine to save a new
		// download in (shards.Link.Dir).
		Dir string `json:"dir"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	var l shards.Link
	switch {
	case req.Link != "" && req.ID != "":
		writeError(w, http.StatusBadRequest, `give "link" or "id", not both`)
		return
	case req.Link != "":
		var err error
		if l, err = shards.ParseLink(req.Link); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	case req.ID != "":
		id, err := shards.ParseMD5(strings.TrimSpace(req.ID))
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		l = shards.Link{ID: id}
	default:
		writeError(w, http.StatusBadRequest, `missing "link" (webrtc://NODE@HOST:PORT/CHANNEL/MD5?...) or "id" (an MD5)`)
		return
	}
	l.Dir = req.Dir
	t, err := s.cfg.Files.Fetch(r.Context(), l)
	if err != nil {
		s.filesError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, transferJSON(t))
}

func (s *Server) handleRemove(w http.ResponseWriter, r *http.Request) {
	id, ok := resourceID(w, r)
	if !ok {
		return
	}
	s.filesDone(w, r, s.cfg.Files.Remove(r.Context(), id))
}

// filesDone answers a state change that has nothing to return.
func (s *Server) filesDone(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		s.filesError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// handleShardPost is POST /api/shards/{id}/pause and …/resume.
func (s *Server) handleShardPost(w http.ResponseWriter, r *http.Request) {
	var act func(context.Context, shards.MD5) error
	switch r.PathValue("sub") {
	case "pause":
		act = s.cfg.Files.Pause
	case "resume":
		act = s.cfg.Files.Resume
	default:
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
		return
	}
	id, ok := resourceID(w, r)
	if !ok {
		return
	}
	s.filesDone(w, r, act(r.Context(), id))
}

// handleShardGet is GET /api/shards/push/{pid} and
// /api/shards/{id}/content.
func (s *Server) handleShardGet(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.PathValue("id") == "push":
		s.handlePushStatus(w, r, r.PathValue("sub"))
	case r.PathValue("sub") == "content":
		s.handleContent(w, r)
	default:
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	}
}

func (s *Server) handlePush(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID      string   `json:"id"`
		To      []string `json:"to"`
		Channel string   `json:"channel"`
		Plan    string   `json:"plan"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.ID == "" {
		writeError(w, http.StatusBadRequest, `missing "id": the MD5 of a file this node holds`)
		return
	}
	id, err := shards.ParseMD5(req.ID)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	plan := shards.Plan(req.Plan)
	switch plan {
	case "":
		plan = shards.PlanMatrix
	case shards.PlanMatrix, shards.PlanChain, shards.PlanSpan:
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`plan %.40q: want "matrix", "chain" or "span"`, req.Plan))
		return
	}
	if req.Channel != "" {
		if len(req.To) > 0 {
			writeError(w, http.StatusBadRequest, `give "to" or "channel", not both`)
			return
		}
		var ok bool
		if req.To, ok = s.channelMembers(w, r, req.Channel); !ok {
			return
		}
	}
	switch {
	case len(req.To) == 0:
		writeError(w, http.StatusBadRequest, `missing "to": the node ids to push to (or "channel": a channel whose members to push to)`)
		return
	case len(req.To) > maxPushTo:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%d receivers, at most %d", len(req.To), maxPushTo))
		return
	}
	to := make([]mesh.ID, 0, len(req.To))
	seen := make(map[mesh.ID]bool, len(req.To))
	for _, v := range req.To {
		n, err := mesh.ParseID(strings.TrimSpace(v))
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("to: %v", err))
			return
		}
		switch {
		case n == s.node.ID():
			writeError(w, http.StatusBadRequest, "to: this node is the source; list the receivers only")
			return
		case seen[n]:
			writeError(w, http.StatusBadRequest, fmt.Sprintf("to: node %s is listed twice", n))
			return
		}
		seen[n] = true
		to = append(to, n)
	}
	pid, err := s.cfg.Files.Push(r.Context(), id, to, plan)
	if err != nil {
		s.filesError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, PushCreated{ID: pid})
}

func (s *Server) handlePushStatus(w http.ResponseWriter, r *http.Request, pid string) {
	if pid == "" || len(pid) > maxPushID || strings.ContainsFunc(pid, func(c rune) bool { return !unicode.IsPrint(c) || c == ' ' }) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("push id %.40q: want the id POST /api/shards/push returned", pid))
		return
	}
	st, err := s.cfg.Files.PushStatus(r.Context(), pid)
	if err != nil {
		s.filesError(w, r, err)
		return
	}
	if st.Receivers == nil {
		st.Receivers = []shards.PushReceiver{}
	}
	writeJSON(w, http.StatusOK, st)
}

// handleFiles is GET /api/files: every online node's files, by name.
// ?offset=N&limit=M asks for a page, as on GET /api/shards (the whole
// list of a mesh sharing 20,000 files is 4.7 MB of JSON; a script that
// paged got all of it on every page, and never a short last page), and
// X-Total-Count says how many there are in all.
func (s *Server) handleFiles(w http.ResponseWriter, r *http.Request) {
	offset, limit, ok := pageParams(w, r)
	if !ok {
		return
	}
	fs, err := s.cfg.Files.Files(r.Context())
	if err != nil {
		s.filesError(w, r, err)
		return
	}
	out := make([]shards.File, 0, len(fs))
	for _, f := range fs {
		if f.Holders == nil {
			f.Holders = []mesh.ID{}
		}
		if f.Type == "" {
			f.Type = contentType(f.Name)
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b shards.File) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.ID.String(), b.ID.String()))
	})
	w.Header().Set("X-Total-Count", strconv.Itoa(len(out)))
	out = out[min(offset, len(out)):]
	if limit >= 0 && limit < len(out) {
		out = out[:limit]
	}
	writeJSON(w, http.StatusOK, out)
}

// contentPolicy is the Content-Security-Policy of a resource's bytes. A
// resource comes from anyone in the mesh and is served from the UI's own
// origin: an HTML file (or an SVG opened on its own) would otherwise run
// its scripts, or load another shared file as a script ('self'), with the
// page's rights — read the API key, drive the node. sandbox puts such a
// document in an origin of its own with scripts off; images and media
// still show.
const contentPolicy = "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'"

// handleContent serves a resource's bytes through the seekable reader, with
// Range requests; reads wait for pieces still arriving.
//
// Opening a remote resource starts fetching it, so a request that a
// browser says comes from another site (an <img> on a page elsewhere) is
// refused: GETs are otherwise free of side effects and pass the Origin
// check. Cross-Origin-Resource-Policy keeps other sites from reading or
// embedding what is served.
func (s *Server) handleContent(w http.ResponseWriter, r *http.Request) {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		writeError(w, http.StatusForbidden, "cross-site request for a file's content refused")
		return
	}
	id, ok := resourceID(w, r)
	if !ok {
		return
	}
	c, err := s.cfg.Files.Open(r.Context(), id)
	if err != nil {
		s.filesError(w, r, err)
		return
	}
	defer c.Close()
	h := w.Header()
	h.Set("Content-Type", contentType(c.Name()))
	h.Set("Content-Security-Policy", contentPolicy)
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	disp := "inline"
	if r.URL.Query().Has("download") {
		disp = "attachment"
	}
	h.Set("Content-Disposition", mime.FormatMediaType(disp, map[string]string{"filename": c.Name()}))
	// The bytes of an id never change: its MD5 names them.
	h.Set("ETag", `"`+id.String()+`"`)
	h.Set("Cache-Control", "private, max-age=86400")
	http.ServeContent(&jsonErrors{ResponseWriter: w}, r, "", c.ModTime(), c)
}

// jsonErrors turns the plain-text errors of http.ServeContent (a Range
// that cannot be met, a failed read) into the API's JSON errors.
type jsonErrors struct {
	http.ResponseWriter
	failed bool
}

func (j *jsonErrors) WriteHeader(status int) {
	if status >= 400 {
		j.failed = true
		h := j.Header()
		h.Set("Content-Type", "application/json; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Del("Content-Disposition")
		h.Del("ETag")
	}
	j.ResponseWriter.WriteHeader(status)
}

func (j *jsonErrors) Write(b []byte) (int, error) {
	if !j.failed {
		return j.ResponseWriter.Write(b)
	}
	// http.Error writes its message once.
	msg, err := json.Marshal(errorJSON{Error: strings.TrimSpace(string(b))})
	if err != nil {
		return 0, err
	}
	if _, err := j.ResponseWriter.Write(append(msg, '\n')); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Unwrap lets http.ResponseController reach the connection.
func (j *jsonErrors) Unwrap() http.ResponseWriter { return j.ResponseWriter }

// extraTypes are the types of names whose extension Go's built-in table
// may not know (it falls back to the system's, which differs between
// machines): what the gallery and a music player need.
var extraTypes = map[string]string{
	".mp3":  "audio/mpeg",
	".m4a":  "audio/mp4",
	".aac":  "audio/aac",
	".ogg":  "audio/ogg",
	".oga":  "audio/ogg",
	".opus": "audio/ogg",
	".flac": "audio/flac",
	".wav":  "audio/wav",
	".mp4":  "video/mp4",
	".m4v":  "video/mp4",
	".webm": "video/webm",
	".ogv":  "video/ogg",
	".mkv":  "video/x-matroska",
	".txt":  "text/plain; charset=utf-8",
	".lrc":  "text/plain; charset=utf-8", // lyrics
	".md":   "text/markdown; charset=utf-8",
	".bmp":  "image/bmp",
	".ico":  "image/x-icon",
	".zip":  "application/zip",
	".gz":   "application/gzip",
	".tar":  "application/x-tar",
}

// contentType is the MIME type of a file from its name, or
// application/octet-stream.
func contentType(name string) string {
	ext := strings.ToLower(filepath.Ext(name))
	if t, ok := extraTypes[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}

// filesRelays is the shards service's part of the event stream: every
// shards.Event as a "shards" event, and ShardsResync when the service
// dropped some for this stream, as when the stream's own backlog does.
func (s *Server) filesRelays() []relay {
	if s.cfg.Files == nil {
		return nil
	}
	lost := ShardsResync{Resync: true}
	return []relay{{
		event: "shards",
		subscribe: func(push func(any)) func() {
			sub := s.cfg.Files.SubscribeShards()
			var missed uint64 // dropped, not yet followed by lost
			return each(sub.C(), sub.Close)(func(ev shards.Event) {
				if ev.Transfer != nil {
					t := transferJSON(*ev.Transfer)
					ev.Transfer = &t
				}
				// A service's transfers are not the user's, as in the list.
				if ev.Transfer == nil || ev.Transfer.For == "" {
					push(ev)
				}
				if missed += sub.Missed(); missed > 0 && len(sub.C()) == 0 {
					push(lost)
					missed = 0
				}
			})
		},
		lost: lost,
	}}
}
