// Package guest serves web pages that talk to a node with the stock PeerJS
// client: a page registers with the node's rendezvous (catnest's or npm
// peer), calls peer.connect(nodeID, {serialization: "json"}) or the
// default binary serialization, and sends requests over that
// DataConnection. Through it a page (a guest) can list the node's public
// channels, read their history, follow new messages and, when the node
// allows it (serve --guests), post as a guest of the node. The wire
// protocol is in README.md ("PeerJS guests").
//
// # Caveats
//
// A guest is a stranger: every request is bounded in size and rate, and a
// malformed or oversized message gets an {error} answer and the
// connection closed. Public channels are the ones this node has joined,
// except burn-after-read channels, whose messages are for members only.
// A guest's post is this node's message (chatlog.KindGuest), signed by
// the node with the guest's chosen name: readers see it as that name,
// a guest of this node, never as a member.
package guest
