package mesh

import (
	"crypto/rand"
	"time"
)

// Exports for the external tests, which forge what a hostile peer sends.

type WireRecord = wireRecord

var SignRecord = signRecord

const (
	BcastProto = bcastProto
	DirTopic   = dirTopic
)

// EncodeGossip builds a broadcast GOSSIP frame.
func EncodeGossip(origin ID, topic string, payload []byte, sent time.Time) []byte {
	m := &bcMsg{origin: origin, topic: topic, payload: payload, sent: sent.UnixMilli()}
	rand.Read(m.id[:])
	return encodeGossip(m)
}

// EncodeIHave builds an IHAVE frame.
func EncodeIHave(ids ...MsgID) []byte { return encodeIHave(ids) }
