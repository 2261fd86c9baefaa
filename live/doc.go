// Package live runs live rooms: a host's camera, screen or OBS stream is
// relayed down a tree of nodes to every viewer, with a mesh-wide room index.
//
// # Basics
//
// A host creates a room ([Service.Create]) and publishes into it over WHIP
// ([Service.Publish]): its own browser page, OBS, or any WHIP client; the
// demo publishes a looped test pattern ([Service.PublishFiles]). The room
// index is a set of signed room records that the host broadcasts over the
// mesh and refreshes; a record that is not refreshed expires, and only the
// host's key can end a room or change its metadata.
//
// A viewer watches over WHEP ([Service.Watch]) from any node. A node that
// has viewers (or children) and is not the host attaches to a parent in the
// room's tree: a node that carries the room and has fewer than Fanout
// children, preferring shallow depth and low round-trip time. Each
// parent→child edge is a PeerConnection of its own, signalled by a signed
// request over the mesh link between the two nodes; the data links are left
// untouched. A parent forwards RTP without decoding it, one
// TrackLocalStaticRTP per output, so NACKs are answered on each hop by
// pion's interceptors and a keyframe request from any number of outputs goes
// upstream at most once per KeyframeInterval. Each hub keeps the last whole
// keyframe (VP8, VP9, AV1, or H.264 IDR with its SPS and PPS; keyframe.go)
// and sends it to a new output first, so that a new viewer sees a sharp
// picture at once. An attach counts only once media flows: a parent that
// sends nothing within AttachTimeout is dropped and the next candidate
// tried, and a child whose connection is not up within AttachTimeout of its
// answer gives its place back. A child whose parent goes away attaches
// again at once.
// A node serves at most MaxViewers WHEP viewers, and counts a child's
// reported viewers up to MaxViewers per node of the subtree.
//
// # Caveats
//
// Media PeerConnections use their own DTLS certificates; what binds them to
// node identities is that their SDP travels in requests signed by the node
// keys over authenticated mesh links.

// Media is not signed end to end: a relay can send its subtree anything,
// and its keyframe cache too. What a relay cached is dropped when the node
// takes another parent, so a hostile relay's frames go no further than its
// own subtree and not past the time it is their parent.
//
// A Service is safe for concurrent use. Serve may be called once.
package live
