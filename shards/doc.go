// Package shards shares files across the mesh: a resource is a file named by
// the MD5 of its bytes, cut into pieces whose MD5s a manifest lists, served
// in place from the user's own files and downloaded from every node that
// holds it at once.
//
// # Basics
//
// A Manifest (BuildManifest) lists a resource's size, its piece size and the
// MD5 of every piece; its Hash travels in links and advertisements, so that a
// manifest fetched from any peer is checked before it is used. A Link names a
// resource as webrtc://NODE@HOST:PORT/CHANNEL/MD5?m=HASH&n=NAME&s=SIZE.
//
// Nodes speak four request protocols (see wire.go): a manifest, a holder's
// bitfield, one block of a piece (at most BlockSize bytes, over the bulk
// channel) and a page of a node's catalog. Every answer is checked: a piece
// whose MD5 does not match its manifest is never written nor passed on, and its
// sender is scored down.
//
// # Caveats
//
// Decoders of peer input (manifests, links, requests, answers, catalog pages)
// bound what they accept before they allocate; see the Max constants.
package shards
