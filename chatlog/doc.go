// Package chatlog is channel chat for catnest: signed messages, their
// storage in the node's bbolt file, retention ranges, marks, retraction
// and burn-after-read.
//
// # Basics
//
// A Message is signed by its author's node key (ECDSA P-256). Its ID is
// the SHA-256 of its encoding without the signature (see Encode for the
// wire format), so equal messages have equal IDs wherever they come from.
// NewMessage makes and signs one; Decode parses one from a peer and
// verifies its form, key and signature; Check applies the rules that
// depend on the receiver's clock (time skew) and on the kind (UTF-8 text,
// a retract's Ref, a setting's JSON). Rules that depend on state — only
// the author may retract, only the channel owner may change settings —
// are the caller's.
//
// A Channel is named by a ChannelID derived from its owner, name and a
// random nonce (NewChannelID), so anyone can check that a channel record
// is what its ID says (Channel.Verify).
//
// Store keeps channels and messages in buckets of a bbolt database that
// the node shares with other services; their names start with "chat/".
// Messages of a channel are kept in (Time, ID) order, which is the order of
// List pages and of the Items that range reconciliation compares. Put is
// durable when it returns and lets concurrent callers share one fsync.
//
// # Caveats
//
//   - A *Message from Decode or from the Store owns its byte slices; Decode
//     does not keep the input. Treat Messages as immutable: Put refuses a
//     message whose fields no longer match its ID.
//   - Put trusts that messages were verified by Decode or made by
//     NewMessage; it does not verify signatures again.
//   - A channel stored with Burn set is never written to: Put refuses its
//     messages with ErrBurn, and PutChannel, when it sets Burn, deletes what
//     was stored before (but the owner's settings) and overwrites the free
//     pages of the file, so that the deleted bytes are gone from the disk
//     (Store.Scrub; the service runs it in the background, and a scrub cut
//     short stays due across restarts).
//   - Put, PutChannel and SetMark apply the channel's stored Range and the
//     store's Quota in their transaction, from the oldest end; PruneAll
//     applies day ranges as time passes. Per-channel counts (Usage) are
//     kept with every change, so none of this scans a channel.
//   - A retract takes effect only on a text message of the same channel
//     and author. A retract that arrives before its message is kept
//     pending and applied when the message is stored (see Store.Put).
//   - Store methods are safe for concurrent use. The bbolt database is the
//     caller's: close it after the last use of the Store.
package chatlog
