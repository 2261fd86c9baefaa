package mesh

import "time"

// PeerInfo describes one live link as the node sees it.
type PeerInfo struct {
	ID       ID            `json:"id"`
	Name     string        `json:"name"`
	RTT      time.Duration `json:"-"`
	Outbound bool          `json:"outbound"` // this node dialed
	Since    time.Time     `json:"since"`
	// Failures counts the peer's offences on this link: malformed frames,
	// forged records, floods.
	Failures int `json:"failures"`
	// Dropped counts the peer's one-way messages dropped because this
	// node's handlers fell behind (see Config.MessageQueue).
	Dropped int `json:"dropped"`
	// Temporary is set for a link made for a transfer (Node.Expand).
	Temporary bool `json:"temporary"`
}

// PeerEventKind says whether a link came up or went down.
type PeerEventKind int

const (
	// PeerUp: a link to the peer is ready for traffic.
	PeerUp PeerEventKind = iota + 1
	// PeerDown: the link to the peer is gone.
	PeerDown
)

func (k PeerEventKind) String() string {
	switch k {
	case PeerUp:
		return "up"
	case PeerDown:
		return "down"
	}
	return "unknown"
}

// PeerEvent reports a change in the node's set of links.
type PeerEvent struct {
	Kind PeerEventKind
	Peer PeerInfo
}
