package webui

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/catnest/catnest/internal/pubsub"
	"github.com/catnest/catnest/plugins"
	"github.com/catnest/catnest/shards"
)

// Plugins is what the web UI needs of the plugins service
// (*plugins.Service): the market, the installed plugins, publishing, and
// each plugin's data. Its methods are called from request goroutines,
// several at a time.
type Plugins interface {
	// Publish signs a plugin file and offers it in the market;
	// plugins.ErrBadPlugin (saying why) for a file that is not one.
	Publish(ctx context.Context, src []byte) (plugins.Entry, error)
	Market(ctx context.Context, query string) ([]plugins.Listing, error)
	Installed(ctx context.Context) ([]plugins.Installed, error)
	// Install fetches, checks and installs a market plugin with the
	// permissions of grant it asks for.
	Install(ctx context.Context, id shards.MD5, grant []string) (plugins.Installed, error)
	SetEnabled(ctx context.Context, id shards.MD5, on bool) error
	Uninstall(ctx context.Context, id shards.MD5) error
	// Source returns the file of a plugin published or installed here.
	Source(ctx context.Context, id shards.MD5) ([]byte, error)
	Data(ctx context.Context, id shards.MD5) (map[string]string, error)
	// SetData keeps value under key; an empty value deletes it.
	SetData(ctx context.Context, id shards.MD5, key, value string) error
	SubscribePlugins() *pubsub.Subscription[plugins.Event]
}

// The plugin sandbox. Each enabled plugin runs in an <iframe
// sandbox="allow-scripts"> (never allow-same-origin: its origin is opaque,
// so it reads neither the page, its storage nor its cookies) whose
// document, GET /api/plugins/frame, is this runtime under frameCSP: no
// network at all, scripts only the runtime (by hash) and the blob: module
// it makes of the plugin's code, no forms, no frames, and a sandbox of its
// own should the document be opened by itself. The page posts the code
// and a MessagePort in; every call a plugin makes comes back over that
// port, and the page checks it against the permissions granted. Calls
// that change the node (chat posts, storage) go to /api/plugins/{id}/…
// with the plugin's capability, which the node checks again here: a
// capability names one plugin, its version and its grants, and is valid
// while that plugin is enabled.

//go:embed sandbox/runtime.js
var frameRuntime string

// frameCSP is the policy of the sandbox document; the page's own CSP
// (default-src 'self') keeps the frame from being navigated elsewhere.
var frameCSP = func() string {
	sum := sha256.Sum256([]byte(frameRuntime))
	return "default-src 'none'; script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "' blob:; " +
		"style-src 'unsafe-inline'; img-src data: blob:; font-src data:; media-src 'none'; connect-src 'none'; " +
		"frame-src 'none'; worker-src 'none'; object-src 'none'; manifest-src 'none'; base-uri 'none'; " +
		"form-action 'none'; frame-ancestors 'self'; sandbox allow-scripts"
}()

var frameDocument = []byte(`<!doctype html>
<html><head><meta charset="utf-8"><meta name="color-scheme" content="light dark">
<style>html,body{margin:0;padding:6px;font:14px/1.4 system-ui,sans-serif;background:transparent}</style>
</head><body><script type="module">` + frameRuntime + `</script></body></html>
`)

// Limits of the plugin API.
const (
	// maxPluginBody bounds a published file's request body.
	maxPluginBody = plugins.MaxFile
	// maxTrySessions bounds the plugins tried at once; the oldest goes.
	maxTrySessions = 4
	// capabilityHeader carries a plugin's capability.
	capabilityHeader = "X-Plugin-Capability"
	// tryPrefix starts the id of a tried (not installed) plugin.
	tryPrefix = "try-"
)

// pluginRuntime is the server's part of the sandbox: the key that makes
// capabilities, and the plugins being tried.
type pluginRuntime struct {
	key []byte // HMAC key of capabilities, new on every start

	mu    sync.Mutex
	tries []*trySession
}

// trySession is a plugin run from the editor: not installed, its grants
// and data kept in memory until it is replaced.
type trySession struct {
	ID      string         `json:"id"`
	Header  plugins.Header `json:"header"`
	Granted []string       `json:"granted"`
	data    map[string]string
}

func newPluginRuntime() *pluginRuntime {
	return &pluginRuntime{key: []byte(rand.Text())}
}

// capability is the token of plugin id (an MD5 or a try id) with grants.
func (pr *pluginRuntime) capability(id string, granted []string) string {
	m := hmac.New(sha256.New, pr.key)
	m.Write([]byte(id))
	for _, g := range slices.Sorted(slices.Values(granted)) {
		m.Write([]byte{0})
		m.Write([]byte(g))
	}
	return hex.EncodeToString(m.Sum(nil))
}

func (pr *pluginRuntime) try(id string) *trySession {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	for _, t := range pr.tries {
		if t.ID == id {
			return t
		}
	}
	return nil
}

func (s *Server) pluginsRoutes() []route {
	const (
		base   = "/api/plugins"
		plugin = base + "/{id}"
	)
	routes := []route{
		{http.MethodGet, base, s.handlePlugins},
		{http.MethodGet, base + "/market", s.handleMarket},
		{http.MethodPost, base + "/publish", s.handlePublish},
		{http.MethodPost, base + "/install", s.handleInstall},
		{http.MethodPost, base + "/try", s.handleTry},
		{http.MethodGet, base + "/frame", s.handleFrame},
		{http.MethodPost, plugin + "/enable", s.handleEnable(true)},
		{http.MethodPost, plugin + "/disable", s.handleEnable(false)},
		{http.MethodDelete, plugin, s.handleUninstall},
		{http.MethodGet, plugin + "/source", s.handleSource},
		{http.MethodPost, plugin + "/chat", s.handlePluginChat},
		{http.MethodGet, plugin + "/data", s.handlePluginData},
		{http.MethodPut, plugin + "/data/{key}", s.handlePluginSetData},
		{http.MethodDelete, plugin + "/data/{key}", s.handlePluginSetData},
	}
	if s.cfg.Plugins == nil {
		for i := range routes {
			routes[i].handle = func(w http.ResponseWriter, r *http.Request) {
				writeError(w, http.StatusNotFound, "plugins are not enabled on this node")
			}
		}
	}
	return routes
}

func (s *Server) pluginsRelays() []relay {
	if s.cfg.Plugins == nil {
		return nil
	}
	lost := plugins.Event{Market: true, Installed: true}
	return []relay{{
		event: "plugins",
		subscribe: func(push func(any)) func() {
			sub := s.cfg.Plugins.SubscribePlugins()
			return each(sub.C(), sub.Close)(func(ev plugins.Event) { push(ev) })
		},
		lost: lost,
	}}
}

// pluginError answers a failed call of the plugins service.
func (s *Server) pluginError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, plugins.ErrBadPlugin), errors.Is(err, plugins.ErrDataFull):
		status = http.StatusBadRequest
	case errors.Is(err, plugins.ErrUnknown):
		status = http.StatusNotFound
	case errors.Is(err, plugins.ErrBadSignature), errors.Is(err, plugins.ErrTampered):
		status = http.StatusUnprocessableEntity
	case errors.Is(err, plugins.ErrOlder):
		status = http.StatusConflict
	case errors.Is(err, shards.ErrNoHolders):
		status = http.StatusBadGateway
	case r.Context().Err() != nil:
		return
	}
	if status == http.StatusInternalServerError {
		s.log.Warn("web UI: plugins request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, status, err.Error())
}

// installedJSON is an installed plugin in GET /api/plugins: with its
// capability while it is enabled, for the page's bridge.
type installedJSON struct {
	plugins.Installed
	Capability string `json:"capability,omitempty"`
}

func (s *Server) handlePlugins(w http.ResponseWriter, r *http.Request) {
	all, err := s.cfg.Plugins.Installed(r.Context())
	if err != nil {
		s.pluginError(w, r, err)
		return
	}
	out := make([]installedJSON, 0, len(all))
	for _, p := range all {
		j := installedJSON{Installed: p}
		if p.Enabled {
			j.Capability = s.plugins.capability(p.ID.String(), p.Granted)
		}
		out = append(out, j)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleMarket(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("q")
	if len(q) > 200 {
		writeError(w, http.StatusBadRequest, "search of more than 200 bytes")
		return
	}
	ls, err := s.cfg.Plugins.Market(r.Context(), q)
	if err != nil {
		s.pluginError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ls)
}

// publishJSON is the answer of POST /api/plugins/publish.
type publishJSON struct {
	ID        shards.MD5 `json:"id"`
	Name      string     `json:"name"`
	Version   string     `json:"version"`
	Publisher string     `json:"publisher"`
}

func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) {
	src, ok := readFile(w, r)
	if !ok {
		return
	}
	e, err := s.cfg.Plugins.Publish(r.Context(), src)
	if err != nil {
		s.pluginError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, publishJSON{ID: e.ID, Name: e.Name, Version: e.Version, Publisher: string(e.Publisher)})
}

// readFile reads a plugin file sent as the request body.
func readFile(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	src, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPluginBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%v: file over %d bytes (512 KiB)", plugins.ErrBadPlugin, plugins.MaxFile))
		return nil, false
	case err != nil:
		writeError(w, http.StatusBadRequest, "reading the file: "+err.Error())
		return nil, false
	}
	return src, true
}

// installReq is the body of POST /api/plugins/install.
type installReq struct {
	ID    shards.MD5 `json:"id"`
	Grant []string   `json:"grant"`
}

func (s *Server) handleInstall(w http.ResponseWriter, r *http.Request) {
	var req installReq
	if !readJSON(w, r, &req) {
		return
	}
	if req.ID.IsZero() {
		writeError(w, http.StatusBadRequest, "no plugin id")
		return
	}
	p, err := s.cfg.Plugins.Install(r.Context(), req.ID, req.Grant)
	if err != nil {
		s.pluginError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, installedJSON{Installed: p, Capability: s.plugins.capability(p.ID.String(), p.Granted)})
}

// pluginID reads the {id} of an installed plugin.
func pluginID(w http.ResponseWriter, r *http.Request) (shards.MD5, bool) {
	id, err := shards.ParseMD5(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return id, false
	}
	return id, true
}

func (s *Server) handleEnable(on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := pluginID(w, r)
		if !ok {
			return
		}
		if err := s.cfg.Plugins.SetEnabled(r.Context(), id, on); err != nil {
			s.pluginError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) handleUninstall(w http.ResponseWriter, r *http.Request) {
	id, ok := pluginID(w, r)
	if !ok {
		return
	}
	if err := s.cfg.Plugins.Uninstall(r.Context(), id); err != nil {
		s.pluginError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleSource serves a plugin's file as text, for the page to hand to the
// sandbox and to the editor; never as a script or a page of this origin.
func (s *Server) handleSource(w http.ResponseWriter, r *http.Request) {
	id, ok := pluginID(w, r)
	if !ok {
		return
	}
	src, err := s.cfg.Plugins.Source(r.Context(), id)
	if err != nil {
		s.pluginError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Disposition", "attachment")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	w.Write(src)
}

// handleFrame serves the sandbox document.
func (s *Server) handleFrame(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", frameCSP)
	// Our own page may frame it (frame-ancestors 'self'); nobody else.
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	w.Write(frameDocument)
}

// tryReq is the body of POST /api/plugins/try.
type tryReq struct {
	Source string   `json:"source"`
	Grant  []string `json:"grant"`
}

// tryJSON is the answer of POST /api/plugins/try.
type tryJSON struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Version     string   `json:"version"`
	Description string   `json:"description"`
	Permissions []string `json:"permissions"`
	Granted     []string `json:"granted"`
	Capability  string   `json:"capability"`
}

// handleTry starts a tried plugin: the editor's code, checked as a
// published file is, with the grants the user gave, for as long as the
// page keeps it (the oldest of more than maxTrySessions goes).
func (s *Server) handleTry(w http.ResponseWriter, r *http.Request) {
	var req tryReq
	if !readJSONMax(w, r, &req, 2*maxPluginBody) {
		return
	}
	h, err := plugins.ParseHeader([]byte(req.Source))
	if err != nil {
		s.pluginError(w, r, err)
		return
	}
	granted := []string{}
	for _, p := range h.Permissions {
		if slices.Contains(req.Grant, p) {
			granted = append(granted, p)
		}
	}
	t := &trySession{ID: tryPrefix + rand.Text()[:16], Header: h, Granted: granted, data: map[string]string{}}
	pr := s.plugins
	pr.mu.Lock()
	pr.tries = append(pr.tries, t)
	if len(pr.tries) > maxTrySessions {
		pr.tries = slices.Delete(pr.tries, 0, len(pr.tries)-maxTrySessions)
	}
	pr.mu.Unlock()
	writeJSON(w, http.StatusOK, tryJSON{ID: t.ID, Name: h.Name, Version: h.Version, Description: h.Description,
		Permissions: h.Permissions, Granted: granted, Capability: pr.capability(t.ID, granted)})
}

// pluginCaller is the plugin a call comes from, once its capability is
// checked: installed (id) or tried (try).
type pluginCaller struct {
	id  shards.MD5
	try *trySession
}

// authorize checks that the request carries the capability of the
// enabled plugin {id} (installed or tried) and that it was granted perm;
// otherwise it answers 403 and returns false. This is the node's own
// check, behind the page's: a page bug, or a script that never went
// through the page, gets no further than the grants.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, perm string) (pluginCaller, bool) {
	raw := r.PathValue("id")
	got := r.Header.Get(capabilityHeader)
	deny := func(msg string) (pluginCaller, bool) {
		s.log.Info("web UI: plugin call refused", "plugin", raw, "perm", perm, "why", msg)
		writeError(w, http.StatusForbidden, msg)
		return pluginCaller{}, false
	}
	if got == "" {
		return deny("no plugin capability: plugin calls carry " + capabilityHeader)
	}
	if strings.HasPrefix(raw, tryPrefix) {
		t := s.plugins.try(raw)
		if t == nil {
			return deny("this tried plugin has stopped")
		}
		if !hmac.Equal([]byte(got), []byte(s.plugins.capability(t.ID, t.Granted))) {
			return deny("bad plugin capability")
		}
		if !slices.Contains(t.Granted, perm) {
			return deny("the plugin was not granted " + perm)
		}
		return pluginCaller{try: t}, true
	}
	id, err := shards.ParseMD5(raw)
	if err != nil {
		return deny("bad plugin id")
	}
	all, err := s.cfg.Plugins.Installed(r.Context())
	if err != nil {
		s.pluginError(w, r, err)
		return pluginCaller{}, false
	}
	i := slices.IndexFunc(all, func(p plugins.Installed) bool { return p.ID == id })
	switch {
	case i < 0:
		return deny("the plugin is not installed")
	case !all[i].Enabled:
		return deny("the plugin is disabled")
	case !hmac.Equal([]byte(got), []byte(s.plugins.capability(id.String(), all[i].Granted))):
		return deny("bad plugin capability")
	case !slices.Contains(all[i].Granted, perm):
		return deny("the plugin was not granted " + perm)
	}
	return pluginCaller{id: id}, true
}

// pluginPostReq is the body of POST /api/plugins/{id}/chat.
type pluginPostReq struct {
	Channel string `json:"channel"`
	Text    string `json:"text"`
}

func (s *Server) handlePluginChat(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.authorize(w, r, "chat-write"); !ok {
		return
	}
	if s.cfg.Chat == nil {
		writeError(w, http.StatusNotFound, "chat is not enabled on this node")
		return
	}
	var req pluginPostReq
	if !readJSON(w, r, &req) {
		return
	}
	if msg := checkText(req.Text); msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	m, err := s.cfg.Chat.Post(r.Context(), req.Channel, req.Text)
	if err != nil {
		s.chatError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.messageJSON(m, s.names()))
}

func (s *Server) handlePluginData(w http.ResponseWriter, r *http.Request) {
	c, ok := s.authorize(w, r, "storage")
	if !ok {
		return
	}
	if c.try != nil {
		s.plugins.mu.Lock()
		out := make(map[string]string, len(c.try.data))
		for k, v := range c.try.data {
			out[k] = v
		}
		s.plugins.mu.Unlock()
		writeJSON(w, http.StatusOK, out)
		return
	}
	data, err := s.cfg.Plugins.Data(r.Context(), c.id)
	if err != nil {
		s.pluginError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, data)
}

// dataReq is the body of PUT /api/plugins/{id}/data/{key}.
type dataReq struct {
	Value string `json:"value"`
}

func (s *Server) handlePluginSetData(w http.ResponseWriter, r *http.Request) {
	c, ok := s.authorize(w, r, "storage")
	if !ok {
		return
	}
	key := r.PathValue("key")
	var req dataReq
	if r.Method == http.MethodPut && !readJSONMax(w, r, &req, 2*plugins.MaxData) {
		return
	}
	if c.try != nil {
		if err := c.try.set(&s.plugins.mu, key, req.Value); err != nil {
			s.pluginError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := s.cfg.Plugins.SetData(r.Context(), c.id, key, req.Value); err != nil {
		s.pluginError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// set is SetData for a tried plugin, in memory, within the same limits.
func (t *trySession) set(mu *sync.Mutex, key, value string) error {
	mu.Lock()
	defer mu.Unlock()
	if key == "" || len(key) > 128 {
		return fmt.Errorf("%w: key must be 1 to 128 bytes", plugins.ErrDataFull)
	}
	if value == "" {
		delete(t.data, key)
		return nil
	}
	size := len(key) + len(value)
	for k, v := range t.data {
		if k != key {
			size += len(k) + len(v)
		}
	}
	if size > plugins.MaxData {
		return fmt.Errorf("%w: %d bytes (at most %d per plugin)", plugins.ErrDataFull, size, plugins.MaxData)
	}
	t.data[key] = value
	return nil
}
