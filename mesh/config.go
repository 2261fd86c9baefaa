package mesh

import (
	"log/slog"
	"time"

	"github.com/pion/webrtc/v4"
)

// Config holds the settings of a Node.
type Config struct {
	// Identity is the node's key and ID. Required.
	Identity *Identity
	// Name is the human name the node shows to others, e.g. "alice".
	Name string

	// SignalURL is the rendezvous server's base URL including its path,
	// e.g. http://127.0.0.1:9000/myapp. Used by the WebRTC transport.
	SignalURL string
	// SignalKey is the PeerServer API key; default "peerjs".
	SignalKey string
	// Bootstrap lists nodes to link to when the rendezvous does not allow
	// discovery of its peers.
	Bootstrap []ID
	// ICEServers are STUN and TURN servers; none is needed on one host or LAN.
	ICEServers []webrtc.ICEServer
	// RTC tunes the WebRTC transport.
	RTC RTCConfig

	// Transport makes links. Nil means WebRTC through SignalURL.
	Transport Transport

	// TargetPeers is how many links the node aims to keep (D).
	TargetPeers int
	// LowPeers: below this the node dials at once, not only on its timer.
	LowPeers int
	// HighPeers is the most links the node accepts.
	HighPeers int
	// ManualLinks stops the node from dialing on its own: links come only
	// from Connect and from other nodes' dials.
	ManualLinks bool
	// MaintainInterval is how often the node checks its link count.
	MaintainInterval time.Duration
	// DialTimeout bounds one attempt to open a link.
	DialTimeout time.Duration
	// PingInterval is how often each link is pinged to measure round-trip time.
	PingInterval time.Duration
	// PeerTimeout: a link that has received nothing for this long is closed.
	PeerTimeout time.Duration
	// HelloTimeout bounds the exchange of hellos on a new link.
	HelloTimeout time.Duration
	// MaxConcurrentRequests bounds the requests one link may have in
	// handlers at once; more wait, which holds back that peer.
	MaxConcurrentRequests int

	// Logger receives the node's logs, and pion's. Nil discards them.
	Logger *slog.Logger
}

// RTCConfig tunes the WebRTC transport. Zero values take the defaults.
type RTCConfig struct {
	// LoopbackOnly restricts ICE to loopback addresses (tests, demo).
	LoopbackOnly bool
	// SCTPReceiveBuffer is the SCTP receive window in bytes; default 4 MiB.
	SCTPReceiveBuffer uint32
	// DisableZeroChecksum turns off SCTP zero checksum (RFC 9653), which
	// pion peers negotiate when both support it: DTLS already protects
	// integrity, so the CRC32c is wasted work.
	DisableZeroChecksum bool
	// SendBufferHigh: senders wait while a channel has this many bytes
	// buffered; default 4 MiB.
	SendBufferHigh uint64
	// SendBufferLow: waiting senders resume when the buffer drains below
	// this; default 1 MiB.
	SendBufferLow uint64
	// UnorderedBulk makes the bulk channel unordered (still reliable).
	UnorderedBulk bool
}

// DefaultConfig returns the settings for a real node; set Identity, and
// SignalURL or Transport.
func DefaultConfig() Config {
	return Config{
		SignalKey:             "peerjs",
		TargetPeers:           4,
		LowPeers:              3,
		HighPeers:             8,
		MaintainInterval:      2 * time.Second,
		DialTimeout:           20 * time.Second,
		PingInterval:          5 * time.Second,
		PeerTimeout:           20 * time.Second,
		HelloTimeout:          10 * time.Second,
		MaxConcurrentRequests: 32,
	}
}

func (c *Config) fillDefaults() {
	d := DefaultConfig()
	if c.SignalKey == "" {
		c.SignalKey = d.SignalKey
	}
	if c.TargetPeers <= 0 {
		c.TargetPeers = d.TargetPeers
	}
	if c.LowPeers <= 0 || c.LowPeers > c.TargetPeers {
		c.LowPeers = min(d.LowPeers, c.TargetPeers)
	}
	if c.HighPeers < c.TargetPeers {
		c.HighPeers = max(d.HighPeers, c.TargetPeers)
	}
	if c.MaintainInterval <= 0 {
		c.MaintainInterval = d.MaintainInterval
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.PingInterval <= 0 {
		c.PingInterval = d.PingInterval
	}
	if c.PeerTimeout <= 0 {
		c.PeerTimeout = d.PeerTimeout
	}
	if c.HelloTimeout <= 0 {
		c.HelloTimeout = d.HelloTimeout
	}
	if c.MaxConcurrentRequests <= 0 {
		c.MaxConcurrentRequests = d.MaxConcurrentRequests
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RTC.SCTPReceiveBuffer == 0 {
		c.RTC.SCTPReceiveBuffer = 4 << 20
	}
	if c.RTC.SendBufferHigh == 0 {
		c.RTC.SendBufferHigh = 4 << 20
	}
	if c.RTC.SendBufferLow == 0 || c.RTC.SendBufferLow >= c.RTC.SendBufferHigh {
		c.RTC.SendBufferLow = c.RTC.SendBufferHigh / 4
	}
}
