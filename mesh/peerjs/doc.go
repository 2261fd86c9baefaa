// Package peerjs speaks the data layer of PeerJS DataConnections, so that
// a node can exchange messages with a web page that uses the stock PeerJS
// client (npm peerjs 1.5.x): its serializations ("json" and "binary",
// which is BinaryPack with chunking) and its close message.
//
// # Basics
//
// A PeerJS page sends one value per data-channel message. With
// serialization "json" the message is UTF-8 JSON under ChunkMTU bytes.
// With "binary" (the client's default) it is BinaryPack, a MessagePack
// dialect; a packed value over ChunkMTU bytes travels as chunks
// {__peerData: id, n, total, data}, which a Decoder puts back together.
// Either way {__peerData: {type: "close"}} asks the other side to close.
//
// Values cross this package as JSON: a Decoder turns each complete
// message into JSON text whatever the serialization, and an Encoder takes
// JSON text, so that one JSON decoder checks what a page asks whatever
// its serialization. BinaryPack byte strings become base64 strings, as
// encoding/json writes []byte.
//
// # Caveats
//
// Everything a page sends is untrusted: Unpack and Decoder bound the size
// of a message, the nesting depth and the number of partial chunked
// messages they keep, and fail with an error wrapping ErrMalformed or
// ErrTooLarge rather than allocate beyond those bounds. A Decoder and an
// Encoder are not safe for concurrent use; the slices they return do not
// alias their input.
package peerjs
