package webui

import (
	"bytes"
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/catnest/catnest/mesh"
)

// apiRoutes is the route table of the JSON API. A service adds its group
// here, from a func in its own file.
func (s *Server) apiRoutes() []route {
	return slices.Concat(
		s.nodeRoutes(),
		s.directoryRoutes(),
		s.chatRoutes(),
		s.filesRoutes(),
		s.musicRoutes(),
		s.pluginsRoutes(),
		s.callsRoutes(),
		s.subsonicRoutes(),
		s.eventRoutes(),
		s.liveRoutes(),
	)
}

func (s *Server) nodeRoutes() []route {
	return []route{
		{http.MethodGet, "/api/node", s.handleNode},
		{http.MethodGet, "/api/peers", s.handlePeers},
		{http.MethodGet, "/api/apikey", s.handleAPIKey},
	}
}

// handleAPIKey shows the API key to the node's own page, for its settings.
// Only our page may read it: a browser tells where a request comes from
// (Origin, Sec-Fetch-Site), and without CORS headers it would not let a page
// elsewhere read the answer anyway; DNS rebinding is stopped by the Host
// check before this. A script that holds the key may ask too.
func (s *Server) handleAPIKey(w http.ResponseWriter, r *http.Request) {
	if s.apiKey == nil {
		writeError(w, http.StatusNotFound, "this node has no API key")
		return
	}
	if !sameOrigin(r) && !byScript(r) {
		writeError(w, http.StatusForbidden, "the API key is shown only to the node's own page; scripts read it from "+APIKeyFile+" in the node's data dir")
		return
	}
	w.Header().Set("Cross-Origin-Resource-Policy", "same-origin")
	writeJSON(w, http.StatusOK, apiKeyJSON{Key: s.cfg.APIKey, Header: APIKeyHeader})
}

// apiKeyJSON is the body of GET /api/apikey.
type apiKeyJSON struct {
	Key    string `json:"key"`
	Header string `json:"header"`
}

// nodeJSON is the body of GET /api/node.
type nodeJSON struct {
	ID      mesh.ID `json:"id"`
	Name    string  `json:"name"`
	Version string  `json:"version"`
}

func (s *Server) handleNode(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, nodeJSON{
		ID:      s.node.ID(),
		Name:    s.node.Name(),
		Version: s.cfg.Version,
	})
}

// peerJSON is one element of GET /api/peers and of the "peers" event.
type peerJSON struct {
	ID       mesh.ID   `json:"id"`
	Name     string    `json:"name"`
	RTTMs    float64   `json:"rtt_ms"`
	Outbound bool      `json:"outbound"`
	Since    time.Time `json:"since"`
	// Route is "direct", "turn" or "bridge"; Relayed is set when a TURN
	// relay or a bridging node carries the link.
	Route    string `json:"route"`
	Relayed  bool   `json:"relayed"`
	BytesIn  int64  `json:"bytes_in"`
	BytesOut int64  `json:"bytes_out"`
}

// peerList returns the node's peers sorted by name, then ID; never nil, so
// it encodes as [] and not null.
func (s *Server) peerList() []peerJSON {
	peers := s.node.Peers()
	out := make([]peerJSON, 0, len(peers))
	for _, p := range peers {
		if p.Route == "" {
			p.Route = mesh.RouteDirect
		}
		out = append(out, peerJSON{
			ID:       p.ID,
			Name:     p.Name,
			RTTMs:    float64(p.RTT) / float64(time.Millisecond),
			Outbound: p.Outbound,
			Since:    p.Since.UTC(),
			Route:    string(p.Route),
			Relayed:  p.Relayed,
			BytesIn:  p.BytesIn,
			BytesOut: p.BytesOut,
		})
	}
	slices.SortFunc(out, func(a, b peerJSON) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out
}

func (s *Server) handlePeers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.peerList())
}

// errorJSON is the body of every error response of the API.
type errorJSON struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorJSON{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		// Only a programming error (an unencodable type) gets here.
		http.Error(w, `{"error":"internal error"}`, http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}
