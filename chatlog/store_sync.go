package chatlog

import (
	"encoding/binary"

	"go.etcd.io/bbolt"
)

// appendEncoded appends to b, for ids in order, the encoding of each stored
// message as a sync entry (uvarint length, bytes), while b stays within
// limit. It leaves out ids that are not stored, not of ch, older than
// since, or retracted: what a sync does not serve. It returns b and how
// many of ids it went through; it stops at the first message that does not
// fit, which is then the first not gone through. A message too large for
// an empty b is gone through and left out, so that a caller always moves
// on.
//
// The stored encodings are served as they are, in one read transaction,
// without decoding them: the receiver verifies every message anyway.
func (s *Store) appendEncoded(b []byte, limit int, ch ChannelID, since int64, ids []ID) ([]byte, int, error) {
	start := len(b)
	done := 0
	err := s.db.View(func(tx *bbolt.Tx) error {
		cb := tx.Bucket(bucketMessages).Bucket(ch[:])
		if cb == nil {
			done = len(ids)
			return nil
		}
		index := tx.Bucket(bucketIndex)
		ret := tx.Bucket(bucketRetracted)
		for ; done < len(ids); done++ {
			id := ids[done]
			loc := index.Get(id[:])
			if len(loc) != indexLen || ChannelID(loc) != ch {
				continue
			}
			t := keyTime(loc[len(ChannelID{}):])
			if t < since || ret.Get(id[:]) != nil {
				continue
			}
			v := cb.Get(msgKey(t, id))
			if len(v) == 0 || len(v) < 1+int(v[0]) {
				continue // damaged: Get reports it
			}
			var ok bool
			if b, ok = appendEntry(b, limit, v[1+int(v[0]):]); !ok {
				if len(b) > start {
					return nil
				}
				continue
			}
		}
		return nil
	})
	return b, done, err
}

// getAnswer is a responder's answer to a get of ids in ch, serving what it
// holds from since on.
func (s *Store) getAnswer(ch ChannelID, since int64, ids []ID) ([]byte, error) {
	room := getAnswerRoom(len(ids))
	entries, n, err := s.appendEncoded(make([]byte, 0, room), room, ch, since, ids)
	if err != nil {
		return nil, err
	}
	ans := binary.AppendUvarint(make([]byte, 0, uvarintLen(uint64(n))+len(entries)), uint64(n))
	return append(ans, entries...), nil
}
