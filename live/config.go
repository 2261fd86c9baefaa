package live

import (
	"context"
	"log/slog"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/catnest/catnest/mesh"
)

// Node is what the live service needs of the mesh node. *mesh.Node has it.
type Node interface {
	ID() mesh.ID
	Name() string
	Handle(proto string, h mesh.Handler)
	Request(ctx context.Context, to mesh.ID, proto string, payload []byte, opts ...mesh.SendOption) ([]byte, error)
	Connect(ctx context.Context, id mesh.ID) error
	Peers() []mesh.PeerInfo
	Penalize(id mesh.ID, reason string)
	HandleBroadcast(topic string, h mesh.BroadcastHandler)
	ValidateBroadcast(topic string, check func(mesh.BroadcastMsg) error)
	Broadcast(ctx context.Context, topic string, payload []byte) (mesh.MsgID, error)
	SetResource(service string, summary any) error
	Directory() []mesh.Record
	Lookup(id mesh.ID) (mesh.Record, bool)
}

// Config configures a Service.
type Config struct {
	// Identity signs room records and tree requests; it must be the node's.
	Identity *mesh.Identity
	// Fanout is the most children a node forwards a room to (its own
	// viewers come on top).
	Fanout int
	// ICEServers are STUN and TURN servers for the media connections.
	ICEServers []webrtc.ICEServer
	// LoopbackOnly keeps media on 127.0.0.1 (tests, the demo).
	LoopbackOnly bool
	// RoomRefresh is how often a host re-announces its rooms; RoomTTL is how
	// long a room not re-announced stays in the index.
	RoomRefresh time.Duration
	RoomTTL     time.Duration
	// KeyframeInterval is the least time between two keyframe requests a
	// node sends upstream, however many of its outputs ask.
	KeyframeInterval time.Duration
	// Linger is how long a relay with no viewers and no children stays in
	// the tree before it detaches.
	Linger time.Duration
	// AttachTimeout bounds one attempt to attach to one parent.
	AttachTimeout time.Duration
	// ParentSilence is how long a media connection may go without a
	// packet from the other end before it counts as lost: a child then
	// attaches elsewhere. The default, 1.5 s, keeps re-attaching within
	// 2 s; a process that starves its connections of CPU for longer (a
	// benchmark of dozens of nodes on two cores) needs more, or parents
	// are dropped that are still there.
	ParentSilence time.Duration
	// MaxViewers is the most WHEP viewers a node serves at once, over all
	// rooms: each costs a connection and an encryption of every packet.
	// A viewer over it is refused with ErrBusy. It also bounds what a
	// child may claim per node of its subtree (see roomState.viewersLocked).
	MaxViewers int
	// Logger; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns the configuration of a personal node.
func DefaultConfig() Config {
	return Config{
		Fanout:           3,
		RoomRefresh:      5 * time.Second,
		RoomTTL:          20 * time.Second,
		KeyframeInterval: 500 * time.Millisecond,
		Linger:           10 * time.Second,
		AttachTimeout:    5 * time.Second,
		ParentSilence:    1500 * time.Millisecond,
		MaxViewers:       64,
	}
}

func (c *Config) fillDefaults() {
	d := DefaultConfig()
	if c.Fanout <= 0 {
		c.Fanout = d.Fanout
	}
	if c.RoomRefresh <= 0 {
		c.RoomRefresh = d.RoomRefresh
	}
	if c.RoomTTL <= 0 {
		c.RoomTTL = d.RoomTTL
	}
	if c.KeyframeInterval <= 0 {
		c.KeyframeInterval = d.KeyframeInterval
	}
	if c.Linger <= 0 {
		c.Linger = d.Linger
	}
	if c.AttachTimeout <= 0 {
		c.AttachTimeout = d.AttachTimeout
	}
	if c.ParentSilence <= 0 {
		c.ParentSilence = d.ParentSilence
	}
	if c.MaxViewers <= 0 {
		c.MaxViewers = d.MaxViewers
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}
