package calls

import (
	"container/list"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/catnest/catnest/mesh"
)

// Message numbers: a call message may reach its destination more than
// once. Its sender sends it again when a try fails on the way (askRetry),
// and over a link of its own when a route fails; a route's failure notice
// is unsigned, so any node on the route can claim one while it passes the
// message on all the same, or hold it and pass it on later. A leave taken
// twice would free the seat the page took again in between; a signal
// taken twice would make the page negotiate twice. So every call message
// carries a number (request.Seq), counted per destination by its sender
// and kept across the tries of one message, and the destination acts on
// each sender's number once: a copy that comes again gets the first one's
// answer (it waits for it while the first is being served), whichever way
// each came. A failure notice then only makes the sender try again, which
// the destination answers from its record: it changes nothing on its own.
//
// The destination keeps, per sender, the highest number taken and which
// of the seqWindow numbers below it were taken (a bitmap), so messages
// that overtake each other are all taken once; a number below the window
// is refused (it may have been taken and forgotten), with the window's
// top, so that a sender that restarted with its clock set back counts on
// above it. The last
// maxAnswersPerSender answers are kept for copies that come again. A
// sender is forgotten once no copy of its messages can still arrive: its
// own tries end within RequestTimeouts, and a copy that a node on a route
// held back is refused once its signed time is routeMaxAge old.

const (
	// seqWindow is how far a sender's messages to one node may overtake
	// each other, in messages.
	seqWindow = 1024
	// maxAnswersPerSender bounds the answers kept per sender for copies
	// that come again.
	maxAnswersPerSender = 64
	// maxSeqSenders bounds the senders of routed messages remembered, and
	// maxSeqDirect those of messages over a link of their own, each up
	// to about 30 KiB with its answers kept (a join's answer takes about
	// 450 bytes with its record), so at most about 75 MiB. Two shares, so
	// that senders made up by the thousand behind hostile neighbours
	// never lock out this node's own neighbours, and nodes that link
	// briefly under fresh keys never lock out routed senders. The routed
	// share holds the senders that the replay memory (maxSeenSenders)
	// lets through in seqKeep: each stays in it 2*routeMaxAge after its
	// last message, so at most 2*maxSeenSenders of them sent in any
	// seqKeep.
	maxSeqSenders = 2 * maxSeenSenders
	maxSeqDirect  = 512
	// seqKeep is how long a sender that sent nothing is remembered.
	seqKeep = 3 * routeMaxAge
	// maxSeqDests bounds the destinations a sender counts for; beyond,
	// it starts again, from the clock (see seqs.take).
	maxSeqDests = 4096
)

var (
	// errSeqTooLate is refused a message below the window; the refusal
	// (a seqTooLate) says where the window is, so that a sender whose
	// count fell behind (it restarted with its clock set back) counts on
	// from there.
	errSeqTooLate = errors.New("calls: call message number below the window of its sender's later ones")
	errSeqFull    = errors.New("calls: too many nodes sending call messages")
	// errSeqForgotten answers a copy of a message served so long ago
	// that its answer is no longer kept: the destination does not act
	// on it again.
	errSeqForgotten = errors.New("calls: call message taken before; its answer is forgotten")
)

// seqs counts a sender's messages per destination.
type seqs struct {
	mu   sync.Mutex
	next map[mesh.ID]uint64
}

// take returns the number of the next message to dst. A destination's
// count starts from the clock in nanoseconds, so a node that restarts (or
// forgets a destination) goes on above the numbers it used before: it
// sends far fewer than one message a nanosecond.
func (q *seqs) take(dst mesh.ID) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.next == nil || len(q.next) >= maxSeqDests {
		q.next = make(map[mesh.ID]uint64)
	}
	n := q.next[dst]
	if n == 0 {
		n = uint64(time.Now().UnixNano())
	}
	q.next[dst] = n + 1
	return n
}

// raise makes the count for dst go on above top, and reports whether it
// was behind.
func (q *seqs) raise(dst mesh.ID, top uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.next == nil || top == math.MaxUint64 || q.next[dst] > top {
		return false
	}
	q.next[dst] = top + 1
	return true
}

// seqTooLate refuses a message below the window whose top is top.
type seqTooLate struct{ top uint64 }

const seqTooLatePrefix = "; count on above "

func (e *seqTooLate) Error() string {
	return errSeqTooLate.Error() + seqTooLatePrefix + strconv.FormatUint(e.top, 10)
}

func (e *seqTooLate) Is(target error) bool { return target == errSeqTooLate }

// seqTooLateTop reads the top from a seqTooLate's text, as it comes back
// from the destination.
func seqTooLateTop(msg string) (uint64, bool) {
	rest, ok := strings.CutPrefix(msg, errSeqTooLate.Error()+seqTooLatePrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(rest, 10, 64)
	return n, err == nil
}

// taken is what a destination knows of the messages its senders numbered.
type taken struct {
	mu      sync.Mutex
	senders map[mesh.ID]*seqSender
	// direct counts the senders in the direct share.
	direct int
	// lru orders the senders by their last message, oldest first.
	lru list.List
}

type seqSender struct {
	id   mesh.ID
	top  uint64                 // the highest number taken
	bits [seqWindow / 64]uint64 // bit i: top-i was taken
	msgs map[uint64]*seqMessage // served now, or answered and kept
	kept []uint64               // the answered ones kept, oldest first
	last time.Time
	elem *list.Element

	// direct: counted in the share of senders over links of their own
	// (the share of its first message).
	direct bool
}

// seqMessage is a message being served, or its answer.
type seqMessage struct {
	sd   *seqSender
	seq  uint64
	done chan struct{}
	out  []byte
	err  error
}

func (sd *seqSender) has(seq uint64) bool {
	i := sd.top - seq
	return sd.bits[i/64]&(1<<(i%64)) != 0
}

func (sd *seqSender) set(seq uint64, on bool) {
	if seq > sd.top {
		shift := seq - sd.top
		sd.top = seq
		if shift >= seqWindow {
			sd.bits = [seqWindow / 64]uint64{}
		} else {
			// Shift the bitmap towards higher indexes by shift bits.
			words, bits := int(shift/64), shift%64
			for w := len(sd.bits) - 1; w >= 0; w-- {
				var v uint64
				if w-words >= 0 {
					v = sd.bits[w-words] << bits
					if bits > 0 && w-words-1 >= 0 {
						v |= sd.bits[w-words-1] >> (64 - bits)
					}
				}
				sd.bits[w] = v
			}
		}
	}
	i := sd.top - seq
	if on {
		sd.bits[i/64] |= 1 << (i % 64)
	} else {
		sd.bits[i/64] &^= 1 << (i % 64)
	}
}

// begin records message seq of sender from, which came over a link of
// its own (direct) or along a route. first: this copy is to be served,
// and end called with its answer. Otherwise the message was taken before:
// m.done closes when its answer, m.out and m.err, is ready.
func (t *taken) begin(from mesh.ID, seq uint64, direct bool, now time.Time) (m *seqMessage, first bool, err error) {
	if seq == 0 {
		return nil, false, errors.New("calls: call message without a number")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.senders == nil {
		t.senders = make(map[mesh.ID]*seqSender)
	}
	t.forget(now)
	sd := t.senders[from]
	if sd == nil {
		if direct && t.direct >= maxSeqDirect || !direct && len(t.senders)-t.direct >= maxSeqSenders {
			return nil, false, errSeqFull
		}
		sd = &seqSender{id: from, direct: direct, msgs: make(map[uint64]*seqMessage)}
		if direct {
			t.direct++
		}
		sd.elem = t.lru.PushBack(sd)
		t.senders[from] = sd
	}
	sd.last = now
	t.lru.MoveToBack(sd.elem)
	switch {
	case sd.top >= seqWindow && seq <= sd.top-seqWindow:
		return nil, false, &seqTooLate{top: sd.top}
	case seq <= sd.top && sd.has(seq):
		if m := sd.msgs[seq]; m != nil {
			return m, false, nil
		}
		return nil, false, errSeqForgotten
	}
	sd.set(seq, true)
	m = &seqMessage{sd: sd, seq: seq, done: make(chan struct{})}
	sd.msgs[seq] = m
	return m, true, nil
}

// end records the answer to a message begin let through. A message whose
// serving was cut short before it acted (undone) is forgotten, so that a
// copy that comes later is served.
func (t *taken) end(m *seqMessage, out []byte, err error, undone bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m.out, m.err = out, err
	close(m.done)
	sd := m.sd
	if undone {
		delete(sd.msgs, m.seq)
		if sd.top-m.seq < seqWindow {
			sd.set(m.seq, false)
		}
		return
	}
	sd.kept = append(sd.kept, m.seq)
	if len(sd.kept) > maxAnswersPerSender {
		delete(sd.msgs, sd.kept[0])
		sd.kept = sd.kept[1:]
	}
}

// forget drops the senders that sent nothing for seqKeep.
func (t *taken) forget(now time.Time) {
	for e := t.lru.Front(); e != nil; e = t.lru.Front() {
		sd := e.Value.(*seqSender)
		if now.Sub(sd.last) <= seqKeep {
			return
		}
		delete(t.senders, sd.id)
		if sd.direct {
			t.direct--
		}
		t.lru.Remove(e)
	}
}
