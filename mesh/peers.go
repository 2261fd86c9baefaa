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
	// Route is how the link's traffic travels: straight between the two
	// nodes, through a TURN relay, or bridged by a common neighbour.
	Route Route `json:"route"`
	// Relayed is set when a third party carries the link (Route is not
	// RouteDirect).
	Relayed bool `json:"relayed"`
	// BytesIn and BytesOut count the frame bytes received and sent on
	// the link.
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
}

// Route says how a link's traffic travels between its two nodes.
type Route string

const (
	// RouteDirect: the nodes reach each other directly (host or
	// server-reflexive ICE candidates, or an in-memory transport).
	RouteDirect Route = "direct"
	// RouteTURN: one end's selected ICE candidate is a TURN relay's.
	RouteTURN Route = "turn"
	// RouteBridge: a neighbour both nodes link to carries their frames
	// (see bridge.go).
	RouteBridge Route = "bridge"
)

// routed is a Conn that knows its route; a Conn that does not is direct.
type routed interface{ Route() Route }

func routeOf(c Conn) Route {
	if r, ok := c.(routed); ok {
		if rt := r.Route(); rt != "" {
			return rt
		}
	}
	return RouteDirect
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
