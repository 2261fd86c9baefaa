// Package signal is catnest's rendezvous: a PeerJS PeerServer-compatible
// server and a Go client for it. Nodes use it only to get into the mesh;
// after that, new links are signaled through the mesh itself.
//
// # Basics
//
// The protocol is that of the npm package peer (1.0.x) and the peerjs
// browser client (1.5.x), so catnest nodes, PeerJS pages and either server
// can be mixed. A client registers an id over a WebSocket at
// {path}peerjs?key=K&id=ID&token=T and then exchanges Messages
// ({type, src, dst, payload}) with other ids: the server sets src to the
// sender's id and relays OFFER, ANSWER, CANDIDATE, LEAVE and EXPIRE to dst,
// holding them for a while (ExpireTimeout) if dst is offline. HTTP routes
// give a fresh id ({path}{key}/id) and, if allowed, the list of ids
// ({path}{key}/peers).
//
// Server serves it all: run Serve with a listener, or mount it with
// ServeHTTP and run Maintain for its timers. Client keeps one id
// registered, reconnecting with backoff, and passes relayed messages to a
// callback.
//
// # Proof of id
//
// An id of the form of a catnest node ID (32 characters of [a-z2-7]) can
// be held on our server only with the node key: its token must be a
// proof of id, a signature by the key whose SPKI hashes to the id over
// the server's key, the id, a time and a nonce (see proof.go). A new
// session needs a proof made within 5 minutes of the server's clock; a
// reconnect with the token the server holds re-attaches as in PeerJS; a
// newer proof takes the id over at once (a restarted node), an older one
// gets ID-TAKEN (a replay). A Client with a Signer makes and renews these
// proofs; to the npm peer server a proof is an opaque token. Ids of every
// other form keep PeerJS's plain tokens, so PeerJS clients work as before.
//
// # TURN
//
// With ServerConfig.TURN set, the server hands each registered client
// short-lived credentials for TURN servers at GET {path}{key}/turn?id=&token=
// (Client.TURN), in coturn's use-auth-secret scheme, so that any TURN
// server sharing the secret takes them. TURNServer is such a server, built
// on pion/turn, that `catnest signal --turn` runs beside the rendezvous; it
// refuses to relay into loopback and private networks other than to its
// own address unless told otherwise.
//
// # Caveats
//
// Server: each WebSocket has a reading goroutine (the HTTP handler) and a
// writing one; both end before Serve or Maintain returns. Messages to a
// client go through a bounded queue, of which one sender may fill a
// quarter of what the other senders leave: a message that does not fit is
// not delivered and its sender gets EXPIRE at once, so nobody can flood a
// client off the server, nor a handful of ids crowd out the others. A
// client whose socket does not take a write within 10 s is dropped.
// Malformed or oversized input (over MaxMessageSize), unknown types and a
// missing dst get an ERROR and a close for that client alone. Every close
// ends within a few seconds, even when the client stops mid-message. One
// address (IPv6: one /64) may hold PerAddressLimit sockets, and with
// Serve four times that in TCP connections; Serve also times out slow
// requests and idle keep-alive connections. Messages held
// for offline peers are bounded per peer, per sender and in total; past
// the bound the sender gets EXPIRE at once.
// When a client goes away the server tells no one, like the reference; its
// peers learn it from their links or from a LEAVE when sending to it. A
// Server serves once: when Serve or Maintain returns it is closed for good.
//
// Client: Serve runs its callbacks, OnMessage and OnState, on its own
// goroutine, one at a time and in order; they must not block for long, as
// heartbeats wait for them, but they may call Send. A server that
// re-attaches a known token sends no OPEN, so a client that hears no
// refusal within a second of connecting counts itself registered. Send
// returns ErrNotConnected between sockets; callers retry or wait for
// OnState(true).
//
// Messages hold no reference to the buffers they were decoded from.
package signal
