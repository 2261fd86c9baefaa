package calls

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/catnest/catnest/mesh"
)

// resourceName is the service's entry in a node's directory record: the
// nodes that have it are the candidates to own rooms.
const resourceName = "calls"

// rank orders nodes for a room: rendezvous hashing, highest first. Every
// node that knows the same online nodes ranks them the same way, and a
// node coming or going moves only the rooms it ranks first for.
func rank(room string, ids []mesh.ID) []mesh.ID {
	type scored struct {
		id    mesh.ID
		score [32]byte
	}
	s := make([]scored, len(ids))
	for i, id := range ids {
		s[i] = scored{id, sha256.Sum256([]byte(room + "\x00" + string(id)))}
	}
	slices.SortFunc(s, func(a, b scored) int { return bytes.Compare(b.score[:], a.score[:]) })
	out := make([]mesh.ID, len(s))
	for i, x := range s {
		out[i] = x.id
	}
	return out
}

// seat is a member's place in a room at its owner.
type seat struct {
	Member
	// by is the node on whose word the seat is held, in whose count of
	// seats (MaxSeatsPerNode) it is: the member's node, or for a
	// reserved seat the other member's, so that a node cannot use up
	// another's count by naming it as its peer.
	by mesh.ID
	// seq is the number of the member's latest join (dedup.go), 0 for a
	// seat taken on another's word or this node's own: a leave its node
	// sent before that join is late, and does not free the seat.
	seq     uint64
	renewed time.Time
	// reserved: taken on the word of the other member, which moved here
	// from an earlier owner and named this one as its peer; it waits for
	// this member's own renewal.
	reserved bool
	// probing: the lease ran out while the member's node is online, and
	// the owner is asking that node whether it still holds the seat.
	probing bool
}

// room is a room at its owner: at most two seats, the first to come
// first.
type room struct {
	seats []seat
	epoch uint64
}

func (r *room) find(m Member) int {
	return slices.IndexFunc(r.seats, func(s seat) bool { return s.Member == m })
}

// notice is a state notice an owner owes a member's node.
type notice struct {
	to  mesh.ID
	req request
}

// owner holds the rooms this node owns. All of its methods are called
// with its lock taken by themselves and return the notices to send, which
// the caller sends without the lock.
type owner struct {
	mu     sync.Mutex
	rooms  map[string]*room
	byNode map[mesh.ID]int // seats per node
	last   uint64          // last epoch given
	cfg    *Config
	// overdue counts the seats found past their lease, for tests.
	overdue int
	// left holds the number of each session's latest leave, so that a
	// join its node sent before the leave, arriving late, is refused;
	// oldest first in leftOrder, kept seqKeep and at most maxLeft.
	left      map[Member]leftMark
	leftOrder []leftEntry
}

type leftMark struct {
	seq uint64
	at  time.Time
}

type leftEntry struct {
	m  Member
	at time.Time
}

// maxLeft bounds the leaves an owner remembers. A node that sends leaves
// by the thousand pushes out the older ones: a late join of theirs then
// takes a seat that the lease and the probe free again.
const maxLeft = 4096

// errStale answers a join that its node sent before the session's leave.
var errStale = errors.New("calls: join sent before the session's leave")

// probe is a seat whose lease ran out while its node is online: the
// owner asks that node before it frees the seat.
type probe struct {
	room string
	m    Member
}

func newOwner(cfg *Config) *owner {
	return &owner{rooms: make(map[string]*room), byNode: make(map[mesh.ID]int), cfg: cfg}
}

// nextEpoch orders the states of a room. It starts from the clock, so
// that a room that moves to another owner goes on from later epochs.
func (o *owner) nextEpoch(now time.Time) uint64 {
	o.last = max(o.last+1, uint64(now.UnixNano()))
	return o.last
}

// join seats req's session of node from in req.Room, or says the room is
// full, or, when higher names a node that should own the room rather than
// this one, redirects the joiner there.
func (o *owner) join(from mesh.ID, req *request, higher mesh.ID, now time.Time) (reply, []notice, error) {
	if higher != "" {
		return reply{State: stateRedirect, Owner: higher}, nil, nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	me := Member{Node: from, Session: req.Session}
	if lm, ok := o.left[me]; ok && req.Seq != 0 && req.Seq < lm.seq {
		return reply{}, nil, errStale
	}
	r := o.rooms[req.Room]
	if r == nil {
		if len(o.rooms) >= o.cfg.MaxRooms {
			return reply{}, nil, errBusy
		}
		r = &room{}
	}
	if i := r.find(me); i >= 0 {
		st := &r.seats[i]
		if st.by != from {
			// The member takes up the seat reserved for it.
			o.release(st.by)
			o.byNode[from]++
			st.by = from
		}
		st.renewed, st.reserved, st.seq = now, false, max(st.seq, req.Seq)
		return o.stateOf(r, i), nil, nil
	}
	if len(r.seats) >= 2 {
		return reply{State: stateFull}, nil, nil
	}
	if o.byNode[from] >= o.cfg.MaxSeatsPerNode {
		return reply{}, nil, errBusy
	}
	o.rooms[req.Room] = r
	r.seats = append(r.seats, seat{Member: me, by: from, seq: req.Seq, renewed: now})
	o.byNode[from]++
	if p := req.Peer; req.Refresh && p != nil && len(r.seats) < 2 && p.Node != from && o.byNode[from] < o.cfg.MaxSeatsPerNode {
		// A member moving here from an earlier owner keeps its peer's
		// seat, so that no newcomer takes it before the peer moves too.
		// It counts as the mover's until the peer comes.
		r.seats = append(r.seats, seat{Member: *p, by: from, renewed: now, reserved: true})
		o.byNode[from]++
	}
	r.epoch = o.nextEpoch(now)
	var out []notice
	for i, s := range r.seats {
		if s.Member != me && !s.reserved {
			out = append(out, o.noticeFor(req.Room, r, i))
		}
	}
	return o.stateOf(r, r.find(me)), out, nil
}

// stateOf is the room's state for seat i: the other member, and whether i
// negotiates (the first seat does).
func (o *owner) stateOf(r *room, i int) reply {
	rep := reply{State: stateJoined, Epoch: r.epoch}
	if len(r.seats) == 2 {
		p := r.seats[1-i].Member
		rep.Peer, rep.Initiator = &p, i == 0
	}
	return rep
}

func (o *owner) noticeFor(name string, r *room, i int) notice {
	st := o.stateOf(r, i)
	return notice{to: r.seats[i].Node, req: request{
		Op: opState, Room: name, Session: r.seats[i].Session,
		State: st.State, Epoch: st.Epoch, Peer: st.Peer, Initiator: st.Initiator,
	}}
}

// leave frees the seat of session of node from in name, if it has one
// and the leave, numbered seq, was sent after the join that holds it.
func (o *owner) leave(from mesh.ID, name, session string, seq uint64, now time.Time) []notice {
	o.mu.Lock()
	defer o.mu.Unlock()
	me := Member{Node: from, Session: session}
	if seq != 0 {
		o.rememberLeave(me, seq, now)
	}
	r := o.rooms[name]
	if r == nil {
		return nil
	}
	i := r.find(me)
	if i < 0 || seq != 0 && seq < r.seats[i].seq {
		return nil
	}
	return o.drop(name, r, i, now)
}

// rememberLeave records leave seq of m, and forgets the leaves older than
// seqKeep, or the oldest beyond maxLeft.
func (o *owner) rememberLeave(m Member, seq uint64, now time.Time) {
	if o.left == nil {
		o.left = make(map[Member]leftMark)
	}
	for len(o.leftOrder) > 0 && (len(o.leftOrder) >= maxLeft || now.Sub(o.leftOrder[0].at) > seqKeep) {
		e := o.leftOrder[0]
		o.leftOrder = o.leftOrder[1:]
		if o.left[e.m].at.Equal(e.at) {
			delete(o.left, e.m)
		}
	}
	if lm, ok := o.left[m]; ok && lm.seq > seq {
		return
	}
	o.left[m] = leftMark{seq: seq, at: now}
	o.leftOrder = append(o.leftOrder, leftEntry{m: m, at: now})
}

// drop frees seat i of room r and tells the one left, if any.
func (o *owner) drop(name string, r *room, i int, now time.Time) []notice {
	o.release(r.seats[i].by)
	r.seats = slices.Delete(r.seats, i, i+1)
	if len(r.seats) == 0 {
		delete(o.rooms, name)
		return nil
	}
	r.epoch = o.nextEpoch(now)
	if r.seats[0].reserved {
		return nil
	}
	return []notice{o.noticeFor(name, r, 0)}
}

// release takes a seat off node's count.
func (o *owner) release(node mesh.ID) {
	if o.byNode[node]--; o.byNode[node] <= 0 {
		delete(o.byNode, node)
	}
}

// expire deals with the seats not renewed within the lease. The seat of
// a node that no other node links to any more (gone without a word) is
// freed. The seat of an online node is not: renewals can run late when
// links are busy, and freeing a seat whose member still believes itself
// in would let a third joiner into the call. That node is asked instead
// (the probes returned), and the seat is freed only when it says that it
// no longer holds it (probed), or once it is gone.
func (o *owner) expire(now time.Time, online func(mesh.ID) bool) ([]notice, []probe) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []notice
	var probes []probe
	for name, r := range o.rooms {
		for i := len(r.seats) - 1; i >= 0; i-- {
			s := &r.seats[i]
			if now.Sub(s.renewed) <= o.cfg.Lease {
				continue
			}
			o.overdue++
			switch {
			case !online(s.Node):
				out = append(out, o.drop(name, r, i, now)...)
			case !s.probing:
				s.probing = true
				probes = append(probes, probe{room: name, m: s.Member})
			}
		}
	}
	return out, probes
}

// probed takes the answer of a member's node to a probe: held renews the
// seat, !held frees it; failed (no answer) leaves it for the next expire,
// which asks again while the node is online.
func (o *owner) probed(p probe, held, failed bool, now time.Time) []notice {
	o.mu.Lock()
	defer o.mu.Unlock()
	r := o.rooms[p.room]
	if r == nil {
		return nil
	}
	i := r.find(p.m)
	if i < 0 {
		return nil
	}
	r.seats[i].probing = false
	switch {
	case failed:
		return nil
	case held:
		r.seats[i].renewed = now
		return nil
	}
	return o.drop(p.room, r, i, now)
}

// members returns the seats of a room, for tests.
func (o *owner) members(name string) []Member {
	o.mu.Lock()
	defer o.mu.Unlock()
	r := o.rooms[name]
	if r == nil {
		return nil
	}
	out := make([]Member, len(r.seats))
	for i, s := range r.seats {
		out[i] = s.Member
	}
	return out
}
