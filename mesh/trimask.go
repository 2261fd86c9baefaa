package mesh

import (
	"context"
	"errors"
	"time"
)

// Asking before a trim: a node drops a link only when the peer keeps
// enough links without it, and it reads the peer's count from the peer's
// directory record, which lags the links. When every neighbour of a node
// read the same stale record at once, each dropped it, and the node fell
// from five links to none within a second (TestRTCTenNodesSurviveRendezvousLoss).
// So the trimming node asks the peer first, over the link, and the peer
// answers from its links as they are now, counting the drops it has
// granted and that have not happened yet: of the neighbours that ask at
// once, only as many as it can spare get a yes.
const trimProto = "mesh/trim/1"

const (
	// trimAskTimeout bounds the wait for a peer's answer; no answer in
	// time is a no: the link stays, and the next trim looks again.
	trimAskTimeout = 2 * time.Second
	// trimGrantAge is how long a granted drop counts against the peer's
	// links when the asker has not dropped the link by then.
	trimGrantAge = 10 * time.Second
	// maxTrimAsks bounds the peers one trim asks.
	maxTrimAsks = 3
	// trimRefuseLimit bounds how long a peer's no spares its link (see
	// trim).
	trimRefuseLimit = time.Minute
)

// Answers to a trim ask.
const (
	trimYes = 1
	trimNo  = 0
)

// askTrim asks l's peer whether it can spare the link, keeping more than
// spare links without it. A peer without the protocol (an older version)
// is not asked: its record's count, which trim checked, stands.
func (n *Node) askTrim(ctx context.Context, l *link, spare int) bool {
	ctx, cancel := context.WithTimeout(ctx, trimAskTimeout)
	defer cancel()
	resp, err := l.call(ctx, Ctl, trimProto, []byte{byte(min(spare, 255))})
	switch {
	case errors.Is(err, ErrNoHandler):
		return true
	case err != nil:
		n.log.Debug("trim: no answer from the peer: link kept", "peer", l.remote.Short(), "err", err)
		return false
	}
	return decodeTrimAnswer(resp)
}

// decodeTrimAnswer reads a peer's answer to a trim ask: anything but a
// plain yes is a no, which keeps the link.
func decodeTrimAnswer(b []byte) bool { return len(b) == 1 && b[0] == trimYes }

var errBadTrimAsk = errors.New("mesh: bad trim ask")

// decodeTrimAsk reads a trim ask: one byte, the links the asker would
// leave this node.
func decodeTrimAsk(b []byte) (spare int, err error) {
	if len(b) != 1 {
		return 0, errBadTrimAsk
	}
	return int(b[0]), nil
}

// handleTrimAsk answers a neighbour that would drop its link to this node:
// yes when this node keeps more than the spare it names (a byte) with
// that drop and those it granted others.
func (n *Node) handleTrimAsk(ctx context.Context, m *Message) ([]byte, error) {
	spare, err := decodeTrimAsk(m.Payload)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.links[m.From] == nil {
		return []byte{trimYes}, nil
	}
	if n.trimGrants == nil {
		n.trimGrants = make(map[ID]time.Time)
	}
	granted := 0
	for id, at := range n.trimGrants {
		if n.links[id] == nil || now.Sub(at) > trimGrantAge {
			delete(n.trimGrants, id)
			continue
		}
		if id != m.From {
			granted++
		}
	}
	if len(n.links)-granted-1 < spare {
		return []byte{trimNo}, nil
	}
	n.trimGrants[m.From] = now
	return []byte{trimYes}, nil
}
