// Package mesh is catnest's peer-to-peer layer: node identity, WebRTC
// links, signaling through a PeerServer-compatible rendezvous, and
// messages and requests between linked nodes. It knows nothing of chat,
// music or files: services register protocols on a Node and the mesh
// carries their bytes.
//
// # Basics
//
// A node's identity is an ECDSA P-256 key kept in its data dir
// ([LoadOrCreateIdentity]); its [ID] is derived from the public key. The
// same key signs the node's DTLS certificate, and after the handshake each
// end checks that the other's certificate hashes to the ID it meant to
// reach, so a rendezvous server that lies cannot make a node link to an
// impostor ([ErrIdentityMismatch]).
//
// [NewNode] makes a node from a [Config]; [Node.Serve] runs it until its
// context ends. The node keeps about Config.TargetPeers links, dialing
// random candidates that the rendezvous lists (or Config.Bootstrap), and
// accepts links up to Config.HighPeers (and Config.MaxTemporary more for
// temporary links); a link counts from before its hello, whichever end
// dialed, so a peer never counts a link the node then drops. There is
// one link per pair of nodes: when two nodes dial each other at once, both
// keep the link dialed by the smaller ID. The two ends of a new link first exchange a hello
// that carries the link protocol version; nodes of different versions do
// not link, and the dialer's error says so.
//
// A link has two channels: [Ctl] for control traffic and requests, and
// [Bulk] for large transfers ([OverBulk]), so a transfer never delays a
// control message. Each message is one frame, at most [MaxCtlFrame] or
// [MaxBulkFrame] bytes; a peer that sends malformed or oversized frames,
// forged records or signals, or floods is scored down and, when its
// offences outpace Config.PenaltyThreshold, cut off and banned for a while.
// A service that rejects a peer's input scores it down the same way with
// [Node.Penalize].
//
// Services use [Node.Handle] to serve a protocol, [Node.Send] for one-way
// messages, [Node.Request] for a request with an answer, and
// [Node.Peers] / [Node.SubscribePeers] to follow the set of links (a
// subscriber that falls behind misses events; re-read Peers). Package
// meshtest provides an in-memory [Transport] so that tests can run whole
// networks of nodes without WebRTC, and meshtest.Fast, short timers for
// them.
//
// Nodes that cannot link directly still link: through the TURN relays the
// rendezvous hands out credentials for (fetched on registration and
// renewed before they expire), or, when ICE finds no path
// ([ErrNoPath]), through a neighbour both link to, which relays their
// end-to-end sealed frames (a bridge, see bridge.go). [PeerInfo.Route]
// tells the three apart.
//
// # Caveats
//
// Send returns once the frame is handed to the link; a frame in flight
// when a link closes is lost, so services must tolerate lost messages
// (retry a request, reconcile state on the next link). Senders block while
// the link's send buffer is full, so memory stays bounded whatever the
// peer's speed; pass a context with a deadline to bound the wait.
//
// Handlers own the payload they receive. One-way messages from one peer
// are handled in order, one at a time; while a handler is slow, later ones
// wait in a bounded queue and beyond it are dropped (PeerInfo.Dropped), so
// a slow handler never holds back answers. Requests run concurrently, up
// to Config.MaxConcurrentRequests per link (see [Handler]). Request keeps
// a node's requests on a link within what the peer takes at once
// (announced in the hello): more wait in Request. A request that finds
// the peer full all the same (its handlers still serve requests whose
// callers gave up) is answered at once with ErrBusy: slow down and retry.
// What a node holds for all its peers in those queues and handlers is
// bounded too (Config.QueueBytes), with a share for each link that
// peers flooding the others cannot take, and a reserve for each link that
// the mesh's own traffic alone draws on, so that services that keep a
// node busy never make it miss its peers' records and broadcasts.
//
// A [Node] is safe for concurrent use. Serve may be called once.
package mesh
