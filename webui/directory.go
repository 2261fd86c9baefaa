package webui

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/catnest/catnest/mesh"
)

func (s *Server) directoryRoutes() []route {
	return []route{
		{http.MethodGet, "/api/directory", s.handleDirectory},
	}
}

// recordJSON is one element of GET /api/directory and of the "directory"
// event: a mesh.Record with slices and maps that are never null, and Self
// set on this node's own record.
type recordJSON struct {
	ID        mesh.ID                    `json:"id"`
	Name      string                     `json:"name"`
	Seq       uint64                     `json:"seq"`
	Neighbors []mesh.ID                  `json:"neighbors"`
	Resources map[string]json.RawMessage `json:"resources"`
	Heard     time.Time                  `json:"heard"`
	Self      bool                       `json:"self"`
}

// directoryList returns the directory sorted by name, then ID; never nil,
// so it encodes as [] and not null.
func (s *Server) directoryList() []recordJSON {
	self := s.node.ID()
	recs := s.node.Directory()
	out := make([]recordJSON, 0, len(recs))
	for _, r := range recs {
		res := make(map[string]json.RawMessage, len(r.Resources))
		for k, v := range r.Resources {
			// A summary that is not JSON would make the whole answer
			// unencodable; show it as null instead.
			if !json.Valid(v) {
				v = json.RawMessage("null")
			}
			res[k] = v
		}
		out = append(out, recordJSON{
			ID:        r.ID,
			Name:      r.Name,
			Seq:       r.Seq,
			Neighbors: append(make([]mesh.ID, 0, len(r.Neighbors)), r.Neighbors...),
			Resources: res,
			Heard:     r.Heard.UTC(),
			Self:      r.ID == self,
		})
	}
	slices.SortFunc(out, func(a, b recordJSON) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out
}

func (s *Server) handleDirectory(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.directoryList())
}
