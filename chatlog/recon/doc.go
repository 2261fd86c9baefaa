// Package recon finds the differences between two devices' sets of chat
// items with range-based set reconciliation (Negentropy; A. Meyer, "Range-
// Based Set Reconciliation", arXiv 2212.13567), so that the bytes exchanged
// grow with the number of differences, not with the size of the sets. It is
// pure computation: it builds and reads messages, and the caller carries
// them.
//
// # Basics
//
// Each side builds a [Set] of its [Item]s (time, ID) and a [Session]. The
// initiator sends the message from [Session.Start]; from then on each side
// passes every message it receives to [Session.Next] and sends the reply,
// until Next returns nil or [Session.Done] reports true after a reply (the
// peer will not answer it). Then [Session.Have] lists the IDs this side has
// and the peer lacks, and [Session.Need] the IDs the peer has and this side
// lacks; both sides know both. Both lists are in (time, ID) order, oldest
// first, so that a caller can move the newest first; Need gets that order
// from the ranges its IDs came in, without the peer's times.
//
//	msg, _ := s.Start() // initiator only; the responder waits for a message
//	send(msg)
//	for !s.Done() {
//		reply, err := s.Next(recv())
//		if err != nil { ... }
//		if reply != nil {
//			send(reply)
//		}
//	}
//
// Options.MaxMessage must fit what carries the messages, with the caller's
// own framing: the default (256 KiB) is a ceiling, not a fit for any one
// transport.
//
// Both sides must build their sets over the same window: the caller agrees
// on the overlap of the two devices' storage ranges and puts only the items
// inside it in the Set. Items outside a shared window show up as
// differences.
//
// # Protocol
//
// Items are ordered by (Time, ID). A message is a sequence of ranges that
// tile the key space, each bounded above by a (time, ID prefix) key written
// compactly: the time as a varint delta from the previous bound, rounded to
// the value with the most trailing zero bits that still separates the two
// neighbouring items, and the ID prefix only when the neighbours share a
// time, then just long enough to separate them. For each range a side sends
// one of:
//
//   - a fingerprint: SHA-256 of the sum of the IDs mod 2^256 (little-endian)
//     and the varint count, truncated to FingerprintLen bytes. Prefix sums of
//     the 256-bit sums make any range's fingerprint O(1) after O(n) setup.
//     The receiver skips the range if its own fingerprint is equal; else it
//     answers with a list if it holds at most LeafSize items there, or with
//     the fingerprints of Branch sub-ranges split by its own counts.
//   - a list of the first PrefixLen bytes of its IDs. The receiver answers
//     with a reply: its IDs whose prefix is not listed (in full), the
//     indices of the listed prefixes it lacks, and the fingerprint of its
//     items whose prefix matched.
//   - a reply. The list's sender checks the fingerprint against its own
//     matched items: if they agree it sends the full IDs of the indices the
//     peer lacks; if not (a prefix matched a different ID), it sends the
//     range again as a list of full IDs. So short prefixes cost an extra
//     round only on a collision, never a wrong answer.
//
// A message that asks nothing (only IDs, or empty) gets no answer, which
// ends the exchange. Replies that would exceed MaxMessage stop early and
// end with the fingerprint of the rest, which the peer splits again in the
// next round.
//
// # Caveats
//
// A difference goes unnoticed when two differing ranges have equal
// fingerprints: with the default 8-byte fingerprints, probability 2^-64 per
// comparison. Splits depend only on the sets, so such a collision repeats
// until one of the sets changes. IDs are hashes of signed messages, so a
// peer cannot choose them freely, but it can grind them: fingerprints are
// not meant to resist a peer that wants to hide its own messages from the
// sync of two other devices.
//
// Next treats its input as hostile: messages over MaxMessage, ranges out of
// order, counts that do not match the bytes or the ranges, and IDs claimed
// missing that this side has are rejected with [ErrBadMessage]; a message
// never costs more than O(len(msg) + n) time and O(len(msg)) memory, and a
// session accepts at most MaxRounds messages ([ErrTooManyRounds]).
//
// A Set is immutable and safe for concurrent use; a Session is not. The
// messages Start and Next return belong to the caller; Next does not keep
// the message it is given.
package recon
