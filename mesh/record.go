package mesh

import (
	"encoding/json"
	"time"
)

// Record is a node's advertisement as a directory holds it: who the node
// is, whom it links to, and what its services offer. Records travel
// signed by the node's key; a Record has passed that check.
type Record struct {
	ID   ID     `json:"id"`
	Name string `json:"name"`
	// Seq orders a node's records: a record with a lower Seq than one
	// already held is a replay and is dropped.
	Seq uint64 `json:"seq"`
	// Neighbors are the nodes this node holds links to.
	Neighbors []ID `json:"neighbors"`
	// Resources maps a service name (e.g. "chat", "music") to the summary
	// that service contributes with Node.SetResource.
	Resources map[string]json.RawMessage `json:"resources"`
	// Heard is when this node last received the record (or made it, for
	// its own).
	Heard time.Time `json:"heard"`
}
