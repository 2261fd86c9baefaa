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
	// MaxGuests bounds the guest connections (PeerJS pages, see
	// HandleGuests) held at once; 0 means DefaultMaxGuests.
	MaxGuests int

	// Transport makes links. Nil means WebRTC through SignalURL.
	Transport Transport

	// TargetPeers is how many links the node aims to keep (D).
	TargetPeers int
	// LowPeers: below this the node dials at once, not only on its timer.
	LowPeers int
	// HighPeers is the most links the node holds, counting those in
	// their hello and those it dialed itself.
	HighPeers int
	// MaxTemporary is how many temporary links (Node.Expand: links made
	// for a transfer, such as a push's relays) a node makes or accepts
	// beyond HighPeers. They have a budget of their own so that a
	// transfer is not refused because the overlay's random links fill
	// HighPeers, and they are dropped again when idle (IdleTimeout).
	// Negative: none beyond HighPeers.
	MaxTemporary int
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
	// handlers at once; more wait in a queue of RequestQueue.
	MaxConcurrentRequests int
	// RequestQueue bounds the requests of one link that wait for a
	// handler slot (and their payload bytes, to 8 MiB), one more for each
	// answer still being sent after its slot was given up. A request beyond
	// it is answered at once with ErrBusy, unhandled: the link's reader
	// never waits for a slot, so a peer's busy handlers hold back none of
	// its answers, pings and one-way messages.
	RequestQueue int
	// MessageQueue bounds the one-way messages from one peer that wait
	// for their handler. The queue is what lets a slow handler hold back
	// only that peer's one-way messages, never its answers and requests;
	// when it is full, further messages are dropped (counted in
	// PeerInfo.Dropped), as a lost frame would be.
	MessageQueue int
	// QueueBytes bounds the bytes the node holds for all its peers at once
	// in those queues (MessageQueue, RequestQueue) and in request
	// handlers, whatever each link's own bounds allow, so that peers that
	// send and never read answers cannot make it hold hundreds of MiB.
	// Half is split in equal shares, one for each link it may keep
	// (HighPeers + MaxTemporary), that no other peer can take, so that an
	// honest peer is served while others flood; a share holds at least
	// one message of MaxBulkFrame, which may raise the bound. Beyond it,
	// requests are answered ErrBusy and one-way messages are dropped.
	// About an eighth, out of the other half, is a reserve for each link that
	// only the mesh's own traffic (broadcast, directory, routed signals,
	// bridges) draws on, so that services that fill a link's share never
	// cost the mesh that peer's records, broadcasts or bridges.
	QueueBytes int
	// CandidatesTimeout bounds one request for the transport's candidates
	// (a rendezvous's peer list). Maintenance never waits for it: it uses
	// the last list while a new one is fetched.
	CandidatesTimeout time.Duration

	// PenaltyThreshold and PenaltyWindow decide when a peer's offences
	// (malformed frames, forged records or signals, floods, input a
	// service rejected) cut it off: a peer is disconnected and banned
	// once it offends more than PenaltyThreshold times faster than
	// PenaltyThreshold per PenaltyWindow. Older offences decay, so an
	// honest peer with an occasional fault is kept. A negative threshold
	// disables bans (offences still score the link down).
	PenaltyThreshold int
	PenaltyWindow    time.Duration
	// PenaltyBackoff is how long a banned peer is neither dialed nor
	// accepted, nor are its offers answered; it doubles, up to
	// PenaltyBackoffMax, each time the peer is banned again before it has
	// behaved for as long as its last ban.
	PenaltyBackoff    time.Duration
	PenaltyBackoffMax time.Duration

	// ReplaceInterval is about how often a node at its target swaps its
	// worst link for a random new one (with jitter); negative disables it.
	ReplaceInterval time.Duration
	// IdleTimeout: a temporary link (see Node.Expand) idle this long is
	// dropped while the node is above its target.
	IdleTimeout time.Duration

	// RecordRefresh is the longest time between two records the node
	// advertises (see refreshAfter).
	RecordRefresh time.Duration
	// RecordTTL: a record not refreshed for this long leaves the directory.
	RecordTTL time.Duration
	// RecordDebounce lets a burst of changes settle before re-advertising.
	RecordDebounce time.Duration

	// BroadcastMode selects Plumtree (the default) or plain flooding,
	// which benchmarks compare against.
	BroadcastMode BroadcastMode
	// IHaveInterval batches lazy announcements.
	IHaveInterval time.Duration
	// GossipInterval is how often a node announces to all its peers the
	// ids of the messages that passed since the last time, so that one
	// that lost a frame in flight still hears of the message.
	GossipInterval time.Duration
	// GraftTimeout is how long a node that heard of a message by IHAVE
	// waits for it before asking for it; GraftRetry, before asking the
	// next announcer.
	GraftTimeout, GraftRetry time.Duration
	// BroadcastMaxAge: older messages are dropped, and seen ids are
	// remembered this long, so a message is never delivered twice.
	BroadcastMaxAge time.Duration
	// SeenCacheSize bounds the remembered message ids.
	SeenCacheSize int
	// MessageCacheAge and MessageCacheBytes bound the messages kept to
	// answer GRAFTs.
	MessageCacheAge   time.Duration
	MessageCacheBytes int
	// BroadcastRate and BroadcastBurst limit the broadcast frames a peer
	// may send per second, counted as they arrive (not as this node gets
	// round to them); beyond, frames are dropped and the peer scored down.
	BroadcastRate  float64
	BroadcastBurst int

	// BridgeRate caps the bytes per second this node relays for each
	// bridge it carries between two neighbours that cannot link
	// directly (see bridge.go); negative: it bridges for nobody.
	BridgeRate float64
	// MaxBridges bounds the bridges this node carries at once; negative:
	// none.
	MaxBridges int

	// SignatureCache, if set, is shared by the nodes of one process (a
	// simulation, see meshtest) so that each directory record's signature
	// is checked once in the process rather than once by every node: with
	// hundreds of nodes on a few cores, those checks, which grow with the
	// square of the node count, would otherwise be most of the work and
	// the simulation would measure the CPU rather than the protocol. Nil
	// (the default, and what a real node uses): every node checks.
	SignatureCache *SignatureCache

	// Logger receives the node's logs, and pion's. Nil discards them.
	Logger *slog.Logger
}

// BroadcastMode selects how broadcasts travel.
type BroadcastMode int

const (
	// PlumtreeMode: an epidemic broadcast tree, about one copy per node.
	PlumtreeMode BroadcastMode = iota
	// FloodMode: every node sends every message on every link.
	FloodMode
)

// RTCConfig tunes the WebRTC transport. Zero values take the defaults.
type RTCConfig struct {
	// LoopbackOnly restricts ICE to loopback addresses (tests, demo).
	LoopbackOnly bool
	// SCTPReceiveBuffer is the SCTP receive window in bytes; default 4 MiB.
	SCTPReceiveBuffer uint32
	// UDPBuffer is the kernel receive and send buffer asked for on the
	// transport's UDP sockets, in bytes; default 4 MiB (the kernel caps
	// it, at net.core.rmem_max and wmem_max on Linux); -1 leaves the
	// system default. The default (208 KiB on Linux) overflows whenever
	// the reading goroutine is late by a few ms at 100 MB/s: each drop
	// is an SCTP loss, and a link on loopback ran at 35 instead of 95
	// MB/s in about half of the transfers.
	UDPBuffer int
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
	// RelayOnly makes links only through TURN relays (ICE transport
	// policy "relay"), so that peers never learn this node's addresses;
	// tests use it to force relayed links on one host.
	RelayOnly bool
}

// DefaultConfig returns the settings for a real node; set Identity, and
// SignalURL or Transport.
func DefaultConfig() Config {
	return Config{
		SignalKey:             "peerjs",
		TargetPeers:           4,
		LowPeers:              3,
		HighPeers:             8,
		MaxTemporary:          32,
		MaintainInterval:      2 * time.Second,
		DialTimeout:           20 * time.Second,
		PingInterval:          5 * time.Second,
		PeerTimeout:           20 * time.Second,
		HelloTimeout:          10 * time.Second,
		MaxConcurrentRequests: 32,
		RequestQueue:          32,
		MessageQueue:          1024,
		QueueBytes:            64 << 20,
		CandidatesTimeout:     10 * time.Second,
		PenaltyThreshold:      32,
		PenaltyWindow:         time.Minute,
		PenaltyBackoff:        time.Minute,
		PenaltyBackoffMax:     time.Hour,
		ReplaceInterval:       30 * time.Second,
		IdleTimeout:           30 * time.Second,
		RecordRefresh:         20 * time.Second,
		RecordTTL:             65 * time.Second,
		RecordDebounce:        300 * time.Millisecond,
		IHaveInterval:         20 * time.Millisecond,
		GossipInterval:        time.Second,
		GraftTimeout:          250 * time.Millisecond,
		GraftRetry:            125 * time.Millisecond,
		BroadcastMaxAge:       10 * time.Minute,
		SeenCacheSize:         200000,
		MessageCacheAge:       time.Minute,
		MessageCacheBytes:     16 << 20,
		BroadcastRate:         2000,
		BroadcastBurst:        8000,
		BridgeRate:            2 << 20,
		MaxBridges:            8,
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
	if c.MaxTemporary == 0 {
		c.MaxTemporary = d.MaxTemporary
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
	if c.RequestQueue <= 0 {
		c.RequestQueue = d.RequestQueue
	}
	if c.MessageQueue <= 0 {
		c.MessageQueue = d.MessageQueue
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = d.QueueBytes
	}
	if c.CandidatesTimeout <= 0 {
		c.CandidatesTimeout = d.CandidatesTimeout
	}
	if c.PenaltyThreshold == 0 {
		c.PenaltyThreshold = d.PenaltyThreshold
	}
	if c.PenaltyWindow <= 0 {
		c.PenaltyWindow = d.PenaltyWindow
	}
	if c.PenaltyBackoff <= 0 {
		c.PenaltyBackoff = d.PenaltyBackoff
	}
	if c.PenaltyBackoffMax < c.PenaltyBackoff {
		c.PenaltyBackoffMax = max(d.PenaltyBackoffMax, c.PenaltyBackoff)
	}
	if c.ReplaceInterval == 0 {
		c.ReplaceInterval = d.ReplaceInterval
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.RecordRefresh <= 0 {
		c.RecordRefresh = d.RecordRefresh
	}
	if c.RecordTTL <= c.RecordRefresh {
		c.RecordTTL = max(d.RecordTTL, 3*c.RecordRefresh+5*time.Second)
	}
	if c.RecordDebounce <= 0 {
		c.RecordDebounce = d.RecordDebounce
	}
	if c.IHaveInterval <= 0 {
		c.IHaveInterval = d.IHaveInterval
	}
	if c.GossipInterval <= 0 {
		c.GossipInterval = d.GossipInterval
	}
	if c.GraftTimeout <= 0 {
		c.GraftTimeout = d.GraftTimeout
	}
	if c.GraftRetry <= 0 {
		c.GraftRetry = d.GraftRetry
	}
	if c.BroadcastMaxAge <= 0 {
		c.BroadcastMaxAge = d.BroadcastMaxAge
	}
	if c.SeenCacheSize <= 0 {
		c.SeenCacheSize = d.SeenCacheSize
	}
	if c.MessageCacheAge <= 0 {
		c.MessageCacheAge = d.MessageCacheAge
	}
	if c.MessageCacheBytes <= 0 {
		c.MessageCacheBytes = d.MessageCacheBytes
	}
	if c.BroadcastRate <= 0 {
		c.BroadcastRate = d.BroadcastRate
	}
	if c.BroadcastBurst <= 0 {
		c.BroadcastBurst = d.BroadcastBurst
	}
	if c.BridgeRate == 0 {
		c.BridgeRate = d.BridgeRate
	}
	if c.MaxBridges == 0 {
		c.MaxBridges = d.MaxBridges
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RTC.SCTPReceiveBuffer == 0 {
		c.RTC.SCTPReceiveBuffer = 4 << 20
	}
	if c.RTC.UDPBuffer == 0 {
		c.RTC.UDPBuffer = 4 << 20
	}
	if c.RTC.SendBufferHigh == 0 {
		c.RTC.SendBufferHigh = 4 << 20
	}
	if c.RTC.SendBufferLow == 0 || c.RTC.SendBufferLow >= c.RTC.SendBufferHigh {
		c.RTC.SendBufferLow = c.RTC.SendBufferHigh / 4
	}
}
