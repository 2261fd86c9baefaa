// Package calls is catnest's 1v1 call rooms: two web pages, on any two
// nodes of the mesh, meet in a room by name and send each other audio and
// video browser to browser; the nodes carry only the signaling.
//
// # Basics
//
// A page opens a [Session] on its own node ([Service.Open]; the web UI ties
// it to the page's event stream) and joins a room with [Service.Join]. The
// first to join waits ("joined"); the second is let in and both are told
// ("other_joined"; the first negotiates: it makes the WebRTC offer); a third
// is refused ("full"); when one leaves or its page goes away the other is
// told ("other_left") and waits again. Offers, answers and ICE candidates go
// from a page to its node ([Service.Signal]), from that node straight to the
// node of the room's other member, and out as that session's [Event]s.
//
// # Who decides who is in
//
// Each room has one owner node, chosen by rendezvous hashing (highest
// SHA-256 of room name and node ID) among the online nodes that advertise
// this service. The owner alone admits and drops members, one request at
// a time, so that any number of joiners racing on any nodes end with
// exactly two in. A node asked to own a room that a higher-ranked node
// should own redirects the joiner there, so that nodes whose directories
// differ for a moment still meet at one owner. Only a node that no other
// node links to any more (gone, its record not yet expired) is skipped for
// the next one down; a live owner that does not answer fails the join
// with ErrNoOwner rather than let a second node seat members. Members
// renew their seat every Config.Refresh at the owner of the moment (when
// a node that ranks higher comes online, the seats move to it), and the
// owner frees a seat not renewed within Config.Lease only when its node
// is gone (no other node links to it any more) or, asked, says that it no
// longer holds the seat: renewals run late when links are busy, and
// freeing the seat of a member that still believes itself in would let a
// third joiner into the call. A member that moves to a new owner keeps
// its peer's seat there until the peer moves too, so that the call goes on
// and no newcomer takes the seat meanwhile; the reserved seat counts
// against the mover's Config.MaxSeatsPerNode, not the peer's.
//
// # Trust
//
// Call messages go over a direct link when there is one, whose DTLS
// handshake proved the sender's node key (mesh.Message.From). Otherwise
// they travel along a path of existing links found in the directory's
// neighbour lists (so an owner with members on many nodes needs no link
// to each), signed by the sender with its node key over the path, the
// time and a nonce, and answered with the destination's signature; the
// nodes in between can neither forge, bend nor replay them. Each hop
// passes a routed message on one way and forgets it, from a bounded
// queue per next hop taken in turns by neighbour and sender; the answer
// travels back on its own and the sender matches it by nonce. So a slow,
// hung or hostile node on or at the end of a route holds nothing at the
// nodes in between, and a sender that floods fills only its own share.
// A hop's notice that it could not pass a message on is unsigned (a hop
// could as well drop the message): it only makes the sender send the
// message again over a link of its own. Every call message carries a
// number, the same in each of its copies, and its destination acts on
// each sender's number once, answering a copy with the first one's
// answer; so neither a sender's retries nor a hop that claims a failure
// while it passes the message on, or holds it back for later, makes a
// destination act twice. An owner also takes a session's joins and leaves
// in the order its node numbered them: a leave held back does not free
// the seat the page took again after it, and a join held back does not
// seat a page that has left since; a page takes no offer or answer older
// than one it had from the same peer. A node sends its notices, probes
// and leaves in one lane per destination, so a node that never answers
// holds back only the messages to itself.
// An owner takes joins and leaves only for the sender's own sessions; a
// node takes a seat notice only from the owner it asked, and a signal only
// from the node and session the owner named as the other member of that
// room.
// Every field of a peer's message is bounded and checked (room names,
// session ids, SDP size and syntax) before use; a malformed message scores
// its sender down, and one node holds at most Config.MaxSeatsPerNode
// seats at an owner.
//
// # Caveats
//
// Media never touches the nodes: a page's browser must reach the other's
// directly or through a TURN server from Config.ICEServers. Rooms live in
// the owner's memory only; a restarted owner learns its rooms again from
// the members' refreshes.
package calls
