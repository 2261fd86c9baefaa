package shards

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"github.com/catnest/catnest/mesh"
)

// MD5 names a resource (the MD5 of the whole file) or checks a piece.
type MD5 [md5.Size]byte

// String is the lowercase hex form, as links and the API carry it.
func (m MD5) String() string { return hex.EncodeToString(m[:]) }

// IsZero reports whether m is the zero value (no resource).
func (m MD5) IsZero() bool { return m == MD5{} }

// MarshalText encodes m as lowercase hex.
func (m MD5) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText decodes hex (either case).
func (m *MD5) UnmarshalText(b []byte) error {
	v, err := ParseMD5(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// ParseMD5 decodes a resource id written as 32 hex digits.
func ParseMD5(s string) (MD5, error) {
	var m MD5
	if len(s) != 2*len(m) {
		return m, fmt.Errorf("%w: resource id %.40q is not 32 hex digits", ErrBadID, s)
	}
	if _, err := hex.Decode(m[:], []byte(s)); err != nil {
		return m, fmt.Errorf("%w: resource id %.40q is not 32 hex digits", ErrBadID, s)
	}
	return m, nil
}

// Hash names a manifest: the SHA-256 of its encoding.
type Hash [sha256.Size]byte

// String is the lowercase hex form.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the zero value (no manifest).
func (h Hash) IsZero() bool { return h == Hash{} }

// MarshalText encodes h as lowercase hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes hex (either case).
func (h *Hash) UnmarshalText(b []byte) error {
	v, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// ParseHash decodes a manifest hash written as 64 hex digits.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return h, fmt.Errorf("%w: manifest hash %.70q is not 64 hex digits", ErrBadID, s)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("%w: manifest hash %.70q is not 64 hex digits", ErrBadID, s)
	}
	return h, nil
}

// State is where a resource stands on this node.
type State string

// The states of a transfer, as GET /api/shards reports them.
const (
	StateSeeding     State = "seeding"     // a file of this node's, shared in place
	StateDownloading State = "downloading" // pieces are being fetched
	StatePaused      State = "paused"      // a download the user paused
	StateDone        State = "done"        // downloaded, checked and seeded
	StateFailed      State = "failed"      // a download that stopped; Error says why
)

// Transfer is one of this node's resources, shared or downloaded, as
// GET /api/shards lists it.
type Transfer struct {
	ID       MD5    `json:"id"`
	Name     string `json:"name"`
	Size     int64  `json:"size"`
	Type     string `json:"type"` // MIME type from the name
	Manifest Hash   `json:"manifest"`
	Link     string `json:"link"`
	// Have is the bytes verified so far (Size when seeding or done).
	Have  int64  `json:"have"`
	State State  `json:"state"`
	Error string `json:"error,omitempty"`
	// Waiting says why a download makes no progress: it waits for its
	// manifest, or for a holder of the pieces it lacks; empty otherwise.
	Waiting Wait `json:"waiting,omitempty"`
	// Checking is the path of a file already saved under the download's
	// name that it checks, piece by piece, before it takes that file
	// rather than fetch the resource again, and Checked the bytes of it
	// checked so far (a GiB takes seconds); empty while it does not. State
	// stays "downloading" meanwhile, so clients that know only the five
	// states show a download at its start, as before.
	Checking string `json:"checking,omitempty"`
	Checked  int64  `json:"checked,omitempty"`
	// Path is where the file is: the user's own file, or the download's
	// place in the data dir.
	Path string `json:"path"`
	// Uploaded is the bytes sent to peers since the resource was added.
	Uploaded int64 `json:"uploaded"`
	// Sources is the bytes received from each peer.
	Sources map[mesh.ID]int64 `json:"sources"`
	// Rate is bytes per second, received while downloading, else sent.
	Rate  float64   `json:"rate"`
	Added time.Time `json:"added"`
	// For is the service a download is for (Link.For); empty for the
	// user's own.
	For string `json:"for,omitempty"`
}

// File is one resource that online nodes share, as GET /api/files lists it.
type File struct {
	ID       MD5       `json:"id"`
	Name     string    `json:"name"`
	Size     int64     `json:"size"`
	Type     string    `json:"type"` // MIME type from the name
	Manifest Hash      `json:"manifest"`
	Holders  []mesh.ID `json:"holders"`
	// internal: every holder lists it as a service's (Entry.Internal),
	// so Files leaves it out.
	internal bool
}

// Plan is how a push spreads a file over a group.
type Plan string

// Push plans.
const (
	// PlanMatrix stripes the pieces across the receivers, which relay
	// their stripes to each other in a staggered order (DESIGN §7).
	PlanMatrix Plan = "matrix"
	// PlanChain passes every piece down a chain of receivers, one after
	// the other: the baseline matrix is measured against.
	PlanChain Plan = "chain"
	// PlanSpan is the matrix within groups of a few receivers, the groups
	// chained (plan.go): each receiver links to a few others whatever
	// the group's size, where the matrix links every receiver to all.
	PlanSpan Plan = "span"
)

// PushStatus is the progress of one push, as GET /api/shards/push/{pid}
// reports it.
type PushStatus struct {
	ID        string         `json:"id"`
	Resource  MD5            `json:"resource"`
	Plan      Plan           `json:"plan"`
	Size      int64          `json:"size"`
	Uploaded  int64          `json:"uploaded"` // bytes the source sent
	Receivers []PushReceiver `json:"receivers"`
	Started   time.Time      `json:"started"`
	Done      bool           `json:"done"`
}

// PushReceiver is one receiver of a push.
type PushReceiver struct {
	Node  mesh.ID `json:"node"`
	Have  int64   `json:"have"`  // bytes it has verified, as last reported
	State string  `json:"state"` // "receiving", "done" or "gone"
	// Error says why a receiver is gone: it refused the push (its
	// answer: not from this node, too large), its calls failed, it sent
	// corrupt pieces...; empty otherwise.
	Error string `json:"error,omitempty"`
}

// Event is published when a transfer or a push makes progress (at most a few
// times a second each), when one starts or ends, and when the online files
// change: the web UI's "shards" events.
type Event struct {
	Transfer *Transfer   `json:"transfer,omitempty"`
	Removed  *MD5        `json:"removed,omitempty"` // a transfer that went away
	Push     *PushStatus `json:"push,omitempty"`
	Files    bool        `json:"files,omitempty"` // the online files changed: re-read them
}

// Content is an open resource: a seekable reader whose reads wait for the
// pieces they need, so a file can be served (http.ServeContent) while it is
// still arriving. Reads end with the context it was opened with.
type Content interface {
	io.ReadSeekCloser
	Name() string
	Size() int64
	// ModTime is for http.ServeContent's Last-Modified; zero if unknown.
	ModTime() time.Time
}

// Wait is why a download waits (Transfer.Waiting).
type Wait string

// Reasons a download waits.
const (
	// WaitNoHolder: no node that holds the resource is online (the
	// catalogs list none and the link's node is offline), or, once the
	// download has its manifest, no peer online holds a piece it lacks
	// (its holders went offline or stopped sharing it); the linked
	// peers are asked now and then, and a holder that comes online at
	// once.
	WaitNoHolder Wait = "no_holder"
	// WaitManifest: holders are online but none has served the manifest
	// yet; they are asked again, ever more rarely while they fail to.
	WaitManifest Wait = "manifest"
)
