package calls

import (
	"context"
	"log/slog"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/catnest/catnest/mesh"
)

// Node is what the service needs of the mesh node (*mesh.Node).
type Node interface {
	ID() mesh.ID
	Handle(proto string, h mesh.Handler)
	Request(ctx context.Context, to mesh.ID, proto string, payload []byte, opts ...mesh.SendOption) ([]byte, error)
	// Send carries routed call messages, one way at each hop.
	Send(ctx context.Context, to mesh.ID, proto string, payload []byte, opts ...mesh.SendOption) error
	// Directory and Lookup list the online nodes: the candidates to own a
	// room, and the names of the other members.
	Directory() []mesh.Record
	Lookup(id mesh.ID) (mesh.Record, bool)
	SetResource(service string, summary any) error
	// Peers lists this node's links: the first hops of routed messages.
	Peers() []mesh.PeerInfo
	// Expand links this node to an owner or a member it has no link to.
	Expand(ctx context.Context, ids ...mesh.ID) error
	Penalize(id mesh.ID, reason string)
}

var _ Node = (*mesh.Node)(nil)

// Config configures a Service.
type Config struct {
	// Node is the mesh node. Required.
	Node Node
	// Identity is the node's key, which signs the call messages that
	// travel through other nodes. Required.
	Identity *mesh.Identity
	// ICEServers returns the STUN and TURN servers that pages use for
	// their media (the node's own, from serve --stun and --turn). It is
	// called at each page's start, so that it may hand out fresh TURN
	// credentials. Nil: none (pages on one host or LAN need none).
	ICEServers func() []webrtc.ICEServer
	// Refresh is how often a member's node renews its seat at the room's
	// owner (and finds a new owner if the old one is gone).
	Refresh time.Duration
	// Lease: an owner frees a seat not renewed for this long once the
	// member's node is gone, or says it no longer holds the seat (its
	// page went and the leave was lost). Several Refreshes.
	Lease time.Duration
	// SignalWait is how long a signal from a node that the room's owner has
	// not yet named as the other member waits for that word: the owner
	// tells both members at once, and the other's first offer may come
	// first.
	SignalWait time.Duration
	// RequestTimeout bounds one call message to another node, link
	// included.
	RequestTimeout time.Duration
	// MaxSessions bounds the pages with a call session open on this node.
	MaxSessions int
	// MaxRooms bounds the rooms this node owns; MaxSeatsPerNode, the seats
	// one node may hold in them, so one node cannot take them all.
	MaxRooms        int
	MaxSeatsPerNode int
	// EventBuffer is how many events a session holds for a page that
	// reads slowly; beyond, events are dropped.
	EventBuffer int
	// Logger; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns the settings of a personal node.
func DefaultConfig() Config {
	return Config{
		Refresh:         5 * time.Second,
		Lease:           20 * time.Second,
		SignalWait:      3 * time.Second,
		RequestTimeout:  15 * time.Second,
		MaxSessions:     64,
		MaxRooms:        4096,
		MaxSeatsPerNode: 64,
		EventBuffer:     256,
	}
}

func (c *Config) fillDefaults() {
	d := DefaultConfig()
	if c.Refresh <= 0 {
		c.Refresh = d.Refresh
	}
	if c.Lease <= 0 {
		c.Lease = d.Lease
	}
	if c.SignalWait <= 0 {
		c.SignalWait = d.SignalWait
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = d.MaxSessions
	}
	if c.MaxRooms <= 0 {
		c.MaxRooms = d.MaxRooms
	}
	if c.MaxSeatsPerNode <= 0 {
		c.MaxSeatsPerNode = d.MaxSeatsPerNode
	}
	if c.EventBuffer <= 0 {
		c.EventBuffer = d.EventBuffer
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}
