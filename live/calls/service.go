package calls

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/catnest/catnest/mesh"
)

// Event is what a page hears about its call, in order.
type Event struct {
	// Type is "joined" (the session holds a seat and waits), "other_joined"
	// (the other member is in: Peer, and whether this page makes the
	// offer), "other_left", "full" (the room had no seat for it, or it lost
	// its seat), or "offer", "answer" or "candidate" from the other page.
	Type      string     `json:"type"`
	Room      string     `json:"room"`
	Peer      *PeerInfo  `json:"peer,omitempty"`
	Initiator bool       `json:"initiator,omitempty"`
	SDP       string     `json:"sdp,omitempty"`
	Candidate *Candidate `json:"candidate,omitempty"`
}

// PeerInfo names the other member of a room.
type PeerInfo struct {
	Node mesh.ID `json:"node"`
	Name string  `json:"name"`
}

// JoinResult is the answer to Join.
type JoinResult struct {
	// State is "joined" or "full".
	State string `json:"state"`
	Room  string `json:"room"`
	// Peer is the other member, if it is in already; this page then waits
	// for its offer.
	Peer      *PeerInfo `json:"peer,omitempty"`
	Initiator bool      `json:"initiator"`
}

// ICEServer is an RTCIceServer as a page's RTCPeerConnection takes it.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Session is one page's part in calls: it is in at most one room at a
// time, and its events go to that page. It ends with Close.
type Session struct {
	id     string
	svc    *Service
	events chan Event
	// op serializes the session's joins, leaves and renewals.
	op sync.Mutex

	// The rest is guarded by svc.mu.
	closed bool
	room   string
	joined bool
	// owner is the node that seated the session; asking, the node it is
	// asking now (whose notices count already, as they may come before
	// its answer).
	owner, asking mesh.ID
	epoch         uint64
	// renewing: a renewal of this session is under way.
	renewing  bool
	peer      *Member
	initiator bool
	// described is the number of the latest offer or answer taken from
	// peer (its node's count, dedup.go): an older one, held back on the
	// way, is refused. 0 when peer changes.
	described uint64
	// changed is closed and replaced when peer changes, for signals that
	// wait for the owner's word.
	changed chan struct{}
}

// ID is the session's id, which the page names in its requests.
func (s *Session) ID() string { return s.id }

// Events delivers the session's events. It is never closed; stop reading
// after Close. When the page reads too slowly, events are dropped.
func (s *Session) Events() <-chan Event { return s.events }

// Close ends the session: it leaves its room (in the background) and is
// forgotten. It may be called more than once.
func (s *Session) Close() { s.svc.close(s) }

// Service runs call rooms on one node: the sessions of its pages, the
// rooms it owns, and the signaling between them. It is safe for
// concurrent use.
type Service struct {
	cfg  Config
	node Node
	self mesh.ID
	log  *slog.Logger
	own  *owner
	seen seen
	// seqs numbers this node's call messages; taken records the numbers
	// of the messages it took, so that it acts on each once.
	seqs  seqs
	taken taken
	// relay queues the routed messages this node passes on; pending
	// holds its own routed calls waiting for answers; serving counts the
	// routed calls it serves.
	relay   *relay
	pending pending
	serving serving
	// routed and expanded count the messages sent along a route and those
	// for which a link of their own was made, for tests.
	routed, expanded atomic.Int64
	// out holds notices, probes and leaves to send (outbox.go).
	out *outbox

	mu       sync.Mutex
	sessions map[string]*Session
}

// New makes the service and registers its protocol on cfg.Node. It does
// nothing on its own until Serve runs.
func New(cfg Config) (*Service, error) {
	if cfg.Node == nil || cfg.Identity == nil {
		return nil, errors.New("calls: Config.Node and Config.Identity are required")
	}
	cfg.fillDefaults()
	s := &Service{
		cfg:      cfg,
		node:     cfg.Node,
		self:     cfg.Node.ID(),
		log:      cfg.Logger.With("service", "calls"),
		out:      newOutbox(),
		sessions: make(map[string]*Session),
		relay:    newRelay(),
	}
	s.serving.kick = make(chan struct{}, 1)
	s.own = newOwner(&s.cfg)
	if err := cfg.Node.SetResource(resourceName, map[string]int{"v": 1}); err != nil {
		return nil, fmt.Errorf("calls: %w", err)
	}
	cfg.Node.Handle(Protocol, mesh.HandlerFunc(s.serveMesh))
	cfg.Node.Handle(RouteProtocol, mesh.HandlerFunc(s.serveRoute))
	return s, nil
}

// Serve renews this node's seats, expires the seats of the rooms it owns,
// sends notices, passes on routed messages and serves those addressed to
// this node, until ctx ends.
func (s *Service) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	renew := time.NewTicker(s.cfg.Refresh)
	defer renew.Stop()
	expire := time.NewTicker(min(s.cfg.Refresh, s.cfg.Lease/4))
	defer expire.Stop()
	for {
		select {
		case <-s.out.kick:
			for _, to := range s.out.idle() {
				wg.Go(func() { s.sendOut(ctx, to) })
			}
		case <-s.serving.kick:
			s.serveQueued(ctx, &wg)
		case <-s.relay.kick:
			for _, hop := range s.relay.idle() {
				wg.Go(func() { s.drain(ctx, hop) })
			}
		case <-renew.C:
			s.renewAll(ctx, &wg)
		case now := <-expire.C:
			s.expire(now, s.linked)
		case <-ctx.Done():
			return nil
		}
	}
}

// expire frees the seats of the rooms this node owns whose lease ran out
// and whose node is gone (not online), and asks the nodes of the others.
func (s *Service) expire(now time.Time, online func(mesh.ID) bool) {
	ns, probes := s.own.expire(now, online)
	s.send(ns)
	for _, p := range probes {
		if !s.enqueue(p.m.Node, func(ctx context.Context) { s.probe(ctx, p) }) {
			// Not asked: ask at the next round (the seat would
			// otherwise wait for an answer forever).
			s.own.probed(p, false, true, now)
		}
	}
}

// probe asks the node of a seat whose lease ran out whether its session
// still holds the seat here, and frees the seat if not.
func (s *Service) probe(ctx context.Context, p probe) {
	b, err := s.ask(ctx, p.m.Node, &request{Op: opCheck, Room: p.room, Session: p.m.Session})
	var rep *reply
	if err == nil {
		if rep, err = decodeReply(b); err != nil && p.m.Node != s.self {
			s.node.Penalize(p.m.Node, "call: "+err.Error())
		}
	}
	if err != nil {
		s.log.Debug("seat's node did not answer; asking again", "node", p.m.Node.Short(), "room", p.room, "err", err)
		s.own.probed(p, false, true, time.Now())
		return
	}
	s.send(s.own.probed(p, rep.State == stateJoined, false, time.Now()))
}

// ICEServers returns the STUN and TURN servers for pages.
func (s *Service) ICEServers() []ICEServer {
	out := []ICEServer{}
	if s.cfg.ICEServers == nil {
		return out
	}
	for _, v := range s.cfg.ICEServers() {
		srv := ICEServer{URLs: slices.Clone(v.URLs), Username: v.Username}
		if c, ok := v.Credential.(string); ok {
			srv.Credential = c
		}
		out = append(out, srv)
	}
	return out
}

// Open starts a session for a page.
func (s *Service) Open() (*Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sessions) >= s.cfg.MaxSessions {
		return nil, ErrTooManySessions
	}
	sess := &Session{
		id:      rand.Text(),
		svc:     s,
		events:  make(chan Event, s.cfg.EventBuffer),
		changed: make(chan struct{}),
	}
	s.sessions[sess.id] = sess
	return sess, nil
}

func (s *Service) close(sess *Session) {
	s.mu.Lock()
	if sess.closed {
		s.mu.Unlock()
		return
	}
	sess.closed = true
	delete(s.sessions, sess.id)
	room, to := sess.room, cmpOr(sess.owner, sess.asking)
	s.mu.Unlock()
	if room != "" && to != "" {
		s.enqueue(to, func(ctx context.Context) { s.leaveAt(ctx, to, room, sess.id) })
	}
}

func cmpOr(a, b mesh.ID) mesh.ID {
	if a != "" {
		return a
	}
	return b
}

func (s *Service) session(id string) (*Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[id]
	if sess == nil {
		return nil, ErrNoSession
	}
	return sess, nil
}

// Join puts session sessionID in room: it waits for the other member
// ("joined", with Peer set when that one is in already), or finds the
// room full. Joining the room it is in again only reports its state.
func (s *Service) Join(ctx context.Context, sessionID, room string) (JoinResult, error) {
	if err := CheckRoom(room); err != nil {
		return JoinResult{}, err
	}
	sess, err := s.session(sessionID)
	if err != nil {
		return JoinResult{}, err
	}
	sess.op.Lock()
	defer sess.op.Unlock()
	s.mu.Lock()
	switch {
	case sess.closed:
		s.mu.Unlock()
		return JoinResult{}, ErrNoSession
	case sess.room == room && sess.joined:
		res := s.resultLocked(sess)
		s.mu.Unlock()
		return res, nil
	case sess.room != "":
		s.mu.Unlock()
		return JoinResult{}, fmt.Errorf("%w: %s", ErrInOtherRoom, sess.room)
	}
	sess.room, sess.joined, sess.owner, sess.asking, sess.epoch = room, false, "", "", 0
	s.mu.Unlock()

	rep, from, err := s.claim(ctx, sess, room, false, nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if asked := sess.asking; asked != "" && !sess.closed {
			// The owner may have seated it before the answer was lost.
			// In turn with the session's own joins: a leave that came
			// after the page joined the room again would free its new
			// seat.
			s.enqueue(asked, func(ctx context.Context) {
				sess.op.Lock()
				defer sess.op.Unlock()
				s.mu.Lock()
				back := !sess.closed && sess.room == room
				s.mu.Unlock()
				if !back {
					s.leaveAt(ctx, asked, room, sess.id)
				}
			})
		}
		if sess.room == room && !sess.joined {
			sess.room, sess.asking = "", ""
		}
		return JoinResult{}, err
	}
	if sess.closed {
		return JoinResult{}, ErrNoSession
	}
	s.applyLocked(sess, from, room, rep.State, rep.Epoch, rep.Peer, rep.Initiator, true)
	if sess.room == room && sess.joined {
		return s.resultLocked(sess), nil
	}
	return JoinResult{State: stateFull, Room: room}, nil
}

func (s *Service) resultLocked(sess *Session) JoinResult {
	return JoinResult{State: stateJoined, Room: sess.room, Peer: s.peerInfo(sess.peer), Initiator: sess.initiator}
}

func (s *Service) peerInfo(m *Member) *PeerInfo {
	if m == nil {
		return nil
	}
	p := &PeerInfo{Node: m.Node}
	if r, ok := s.node.Lookup(m.Node); ok {
		p.Name = r.Name
	}
	return p
}

// Leave takes session sessionID out of room; the other member is told. A
// session that is not in room is left as it is.
func (s *Service) Leave(ctx context.Context, sessionID, room string) error {
	if err := CheckRoom(room); err != nil {
		return err
	}
	sess, err := s.session(sessionID)
	if err != nil {
		return err
	}
	sess.op.Lock()
	defer sess.op.Unlock()
	s.mu.Lock()
	if sess.room != room {
		s.mu.Unlock()
		return nil
	}
	to := cmpOr(sess.owner, sess.asking)
	s.resetLocked(sess)
	s.mu.Unlock()
	if to != "" {
		s.leaveAt(ctx, to, room, sess.id)
	}
	return nil
}

// leaveAt tells owner that session left room. Failures are only logged:
// the seat's lease runs out anyway.
func (s *Service) leaveAt(ctx context.Context, owner mesh.ID, room, session string) {
	if _, err := s.ask(ctx, owner, &request{Op: opLeave, Room: room, Session: session}); err != nil {
		s.log.Debug("leave not delivered; the seat expires", "owner", owner.Short(), "room", room, "err", err)
	}
}

func (s *Service) resetLocked(sess *Session) {
	sess.room, sess.joined, sess.owner, sess.asking, sess.epoch = "", false, "", "", 0
	s.setPeerLocked(sess, nil, false)
}

func (s *Service) setPeerLocked(sess *Session, p *Member, initiator bool) {
	sess.initiator = initiator
	if samePeer(sess.peer, p) {
		return
	}
	sess.peer = p
	sess.described = 0
	close(sess.changed)
	sess.changed = make(chan struct{})
}

func samePeer(a, b *Member) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// emitLocked queues ev for the page, or drops it if the page is behind.
func (s *Service) emitLocked(sess *Session, ev Event) {
	select {
	case sess.events <- ev:
	default:
		s.log.Warn("call event dropped: the page reads too slowly", "type", ev.Type, "room", ev.Room)
	}
}

// applyLocked takes the room's state for sess from node from, and tells
// the page what changed. An answer (to this node's own join) is taken
// from the node asked unless a newer notice came first; a notice, from
// the session's owner if it is newer than what the session has, or from
// the node it is asking, which may tell before it answers. A new owner's
// epochs count from its own clock. It reports whether it took the state.
func (s *Service) applyLocked(sess *Session, from mesh.ID, room, state string, epoch uint64, peer *Member, initiator, answer bool) bool {
	if sess.closed || sess.room != room {
		return false
	}
	switch {
	case answer && from == sess.asking && (from != sess.owner || epoch >= sess.epoch || state == stateFull):
	case !answer && from == sess.owner && epoch > sess.epoch:
	case !answer && from == sess.asking && from != sess.owner:
	default:
		return false
	}
	sess.owner, sess.epoch = from, epoch
	if state == stateFull {
		s.resetLocked(sess)
		s.emitLocked(sess, Event{Type: stateFull, Room: room})
		return true
	}
	if !sess.joined {
		sess.joined = true
		s.emitLocked(sess, Event{Type: "joined", Room: room})
	}
	if peer != nil && peer.Node == s.self && peer.Session == sess.id {
		peer = nil // a confused owner; never talk to oneself
	}
	old := sess.peer
	s.setPeerLocked(sess, peer, initiator)
	if samePeer(old, peer) {
		return true
	}
	if old != nil {
		s.emitLocked(sess, Event{Type: "other_left", Room: room})
	}
	if peer != nil {
		s.emitLocked(sess, Event{Type: "other_joined", Room: room, Peer: s.peerInfo(peer), Initiator: initiator})
	}
	return true
}

// claim asks the room's owner to seat sess: the node that ranks first
// for the room, or the one it redirects to, skipping nodes that cannot be
// reached. It returns the answer and the node that gave it.
func (s *Service) claim(ctx context.Context, sess *Session, room string, refresh bool, peer *Member) (*reply, mesh.ID, error) {
	ranked := s.ranking(room)
	failed := map[mesh.ID]bool{}
	var skip []mesh.ID
	var back mesh.ID // the node that redirected to target
	next := func() mesh.ID {
		for _, id := range ranked {
			if !failed[id] {
				return id
			}
		}
		return ""
	}
	target := next()
	var lastErr error
	for range maxHops {
		if target == "" {
			break
		}
		s.mu.Lock()
		if sess.closed || sess.room != room {
			s.mu.Unlock()
			return nil, "", ErrNoSession
		}
		sess.asking = target
		s.mu.Unlock()
		b, err := s.askRetry(ctx, target, &request{Op: opJoin, Room: room, Session: sess.id, Refresh: refresh, Peer: peer, Skip: skip})
		var rep *reply
		if err == nil {
			rep, err = decodeReply(b)
			if err != nil && target != s.self {
				s.node.Penalize(target, "call: "+err.Error())
			}
		}
		var remote *mesh.RemoteError
		switch {
		case ctx.Err() != nil:
			return nil, "", ctx.Err()
		case errors.As(err, &remote) && remote.Msg == errBusy.Error():
			return nil, "", fmt.Errorf("calls: owner %s: %w", target.Short(), errBusy)
		case err != nil && s.linked(target):
			// It is online: a lower node must not take its room.
			return nil, "", fmt.Errorf("%w: %s owns the room and is online, but: %w", ErrNoOwner, target.Short(), err)
		case err != nil:
			lastErr = err
			s.log.Debug("room owner unreachable; trying the next", "owner", target.Short(), "room", room, "err", err)
			failed[target] = true
			if len(skip) < maxSkip {
				skip = append(skip, target)
			}
			if back != "" && !failed[back] {
				target, back = back, ""
			} else {
				target = next()
			}
		case rep.State == stateRedirect:
			if failed[rep.Owner] || rep.Owner == target {
				failed[target] = true
				target = next()
				continue
			}
			back, target = target, rep.Owner
		default:
			return rep, target, nil
		}
	}
	if lastErr != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrNoOwner, lastErr)
	}
	return nil, "", ErrNoOwner
}

// askRetry is ask that tries again, a few times with growing pauses, when
// a node that is online fails to answer: its link may have closed under
// the message (links come and go as the overlay adapts), or be at its
// limit for a moment.
func (s *Service) askRetry(ctx context.Context, to mesh.ID, req *request) ([]byte, error) {
	pause := 50 * time.Millisecond
	for try := 0; ; try++ {
		b, err := s.ask(ctx, to, req)
		var remote *mesh.RemoteError
		if err == nil || errors.As(err, &remote) || try == retries || !s.linked(to) {
			return b, err
		}
		s.log.Debug("call message failed; trying again", "to", to.Short(), "err", err)
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return nil, err
		}
		pause *= 2
	}
}

// retries is how many times askRetry tries again.
const retries = 5

// maxHops bounds the owners a claim asks.
const maxHops = 8

// ranking lists the nodes that may own room, best first.
func (s *Service) ranking(room string) []mesh.ID {
	ids := []mesh.ID{s.self}
	for _, r := range s.node.Directory() {
		if _, ok := r.Resources[resourceName]; ok && r.ID != s.self {
			ids = append(ids, r.ID)
		}
	}
	return rank(room, ids)
}

// higher returns the node that should own room rather than this one: the
// best ranked above it that the joiner did not skip, or did skip though it
// is online. "" means this node.
func (s *Service) higher(room string, skip []mesh.ID) mesh.ID {
	for _, id := range s.ranking(room) {
		if id == s.self {
			return ""
		}
		if !slices.Contains(skip, id) || s.linked(id) {
			return id
		}
	}
	return ""
}

// linked reports whether another node's record lists id among its
// neighbours: id is online, though this node may fail to reach it (it may
// be at its link limit, or a path be slow). Only a node that no one links
// to any more, gone but for its record that has yet to expire, is
// skipped, so that nodes never own a room that a live node ranks first
// for.
func (s *Service) linked(id mesh.ID) bool {
	for _, r := range s.node.Directory() {
		if r.ID != id && slices.Contains(r.Neighbors, id) {
			return true
		}
	}
	return false
}

// ask sends a call message to node to, or handles it here when to is
// this node, and returns the answer.
func (s *Service) ask(ctx context.Context, to mesh.ID, req *request) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	if to == s.self {
		return s.serve(ctx, s.self, req)
	}
	if req.Seq == 0 {
		// Every try of this message goes with this number.
		req.Seq = s.seqs.take(to)
	}
	out, err := s.askOnce(ctx, to, req)
	var remote *mesh.RemoteError
	if errors.As(err, &remote) {
		if top, ok := seqTooLateTop(remote.Msg); ok && s.seqs.raise(to, top) {
			// to took later numbers from this node's last run (its clock
			// was set back since): count on from there.
			s.log.Info("calls: message numbers behind; counting on from the destination's", "to", to.Short())
			req.Seq = s.seqs.take(to)
			out, err = s.askOnce(ctx, to, req)
		}
	}
	return out, err
}

func (s *Service) askOnce(ctx context.Context, to mesh.ID, req *request) ([]byte, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	out, err := s.node.Request(ctx, to, Protocol, b)
	if !errors.Is(err, mesh.ErrNotConnected) {
		return out, err
	}
	if path := s.pathTo(to); len(path) >= 3 {
		s.routed.Add(1)
		out, err := s.route(ctx, path, b)
		if !errors.Is(err, errNoRoute) {
			return out, err
		}
		s.log.Debug("routed call failed; linking directly", "to", to.Short(), "err", err)
	}
	// No route known (a directory still filling) or the route broke: a
	// link of its own.
	s.expanded.Add(1)
	if err := s.node.Expand(ctx, to); err != nil {
		return nil, fmt.Errorf("calls: no route or link to %s: %w", to.Short(), err)
	}
	return s.node.Request(ctx, to, Protocol, b)
}

// enqueue queues a message to node to for Serve to send (outbox.go);
// when too many wait it is dropped, and enqueue reports false.
func (s *Service) enqueue(to mesh.ID, job func(ctx context.Context)) bool {
	if !s.out.push(to, job) {
		s.log.Warn("calls: send queue full; a message is dropped", "to", to.Short())
		return false
	}
	return true
}

// send sends an owner's notices.
func (s *Service) send(ns []notice) {
	for _, n := range ns {
		s.enqueue(n.to, func(ctx context.Context) {
			if _, err := s.ask(ctx, n.to, &n.req); err != nil {
				s.log.Debug("room notice not delivered; the member renews", "to", n.to.Short(), "room", n.req.Room, "err", err)
			}
		})
	}
}

// renewAll renews the seat of every session in a room, at the room's
// owner of the moment, and takes the owner's word on its state. Each
// session renews on its own, so that one slow or hung owner holds back
// only the renewals of its own rooms, and a session whose renewal is
// still under way is skipped.
func (s *Service) renewAll(ctx context.Context, wg *sync.WaitGroup) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.sessions {
		if sess.joined && !sess.renewing {
			sess.renewing = true
			wg.Go(func() {
				s.renew(ctx, sess)
				s.mu.Lock()
				sess.renewing = false
				s.mu.Unlock()
			})
		}
	}
}

func (s *Service) renew(ctx context.Context, sess *Session) {
	sess.op.Lock()
	defer sess.op.Unlock()
	s.mu.Lock()
	if sess.closed || !sess.joined {
		s.mu.Unlock()
		return
	}
	room, old := sess.room, sess.owner
	var peer *Member
	if sess.peer != nil {
		p := *sess.peer
		peer = &p
	}
	s.mu.Unlock()
	rep, from, err := s.claim(ctx, sess, room, true, peer)
	if err != nil {
		s.log.Debug("seat not renewed", "room", room, "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if from != old && sess.room == room {
		s.log.Debug("room moved to a new owner", "room", room, "from", old.Short(), "to", from.Short())
	}
	s.applyLocked(sess, from, room, rep.State, rep.Epoch, rep.Peer, rep.Initiator, true)
}

// Signal sends an offer, answer or candidate from session sessionID to the
// other member of room.
func (s *Service) Signal(ctx context.Context, sessionID, room string, sig Signal) error {
	if err := CheckRoom(room); err != nil {
		return err
	}
	if err := sig.Check(); err != nil {
		return err
	}
	sess, err := s.session(sessionID)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if sess.room != room || !sess.joined || sess.peer == nil {
		s.mu.Unlock()
		return ErrNoPeer
	}
	p := *sess.peer
	s.mu.Unlock()
	_, err = s.ask(ctx, p.Node, &request{Op: opSignal, Room: room, Session: p.Session, From: sess.id, Signal: &sig})
	if err != nil {
		return fmt.Errorf("calls: signal to %s: %w", p.Node.Short(), err)
	}
	return nil
}

// serveMesh handles a call message from another node.
func (s *Service) serveMesh(ctx context.Context, m *mesh.Message) ([]byte, error) {
	req, err := decodeRequest(m.Payload)
	if err != nil {
		s.node.Penalize(m.From, "call: "+err.Error())
		return nil, err
	}
	return s.serveOnce(ctx, m.From, req, true)
}

// serveOnce serves a call message from another node, which came over a
// link of its own (direct) or along a route, unless a copy of it came
// before: that copy's answer is the answer (dedup.go).
func (s *Service) serveOnce(ctx context.Context, from mesh.ID, req *request, direct bool) ([]byte, error) {
	m, first, err := s.taken.begin(from, req.Seq, direct, time.Now())
	if err != nil {
		return nil, err
	}
	if !first {
		select {
		case <-m.done:
			return m.out, m.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	out, err := s.serve(ctx, from, req)
	// Only a signal waits, and one cut short delivered nothing.
	undone := errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
	s.taken.end(m, out, err, undone)
	return out, err
}

// serve handles a checked call message from node from (maybe this one).
func (s *Service) serve(ctx context.Context, from mesh.ID, req *request) ([]byte, error) {
	now := time.Now()
	switch req.Op {
	case opJoin:
		rep, ns, err := s.own.join(from, req, s.higher(req.Room, req.Skip), now)
		if err != nil {
			return nil, err
		}
		s.send(ns)
		return json.Marshal(rep)
	case opLeave:
		s.send(s.own.leave(from, req.Room, req.Session, req.Seq, now))
		return nil, nil
	case opState:
		s.mu.Lock()
		defer s.mu.Unlock()
		sess := s.sessions[req.Session]
		if sess == nil || !s.applyLocked(sess, from, req.Room, req.State, req.Epoch, req.Peer, req.Initiator, false) {
			return nil, errors.New("calls: stale notice, or not from the session's room owner")
		}
		return nil, nil
	case opSignal:
		return nil, s.deliver(ctx, from, req)
	case opCheck:
		// The owner asks before it frees a seat whose lease ran out: held
		// while the session is in the room with from as its owner (or
		// the node it is asking).
		s.mu.Lock()
		sess := s.sessions[req.Session]
		held := sess != nil && !sess.closed && sess.room == req.Room && (sess.owner == from || sess.asking == from)
		s.mu.Unlock()
		rep := reply{State: stateFull}
		if held {
			rep.State = stateJoined
		}
		return json.Marshal(rep)
	}
	return nil, fmt.Errorf("calls: unknown operation %q", req.Op)
}

// errStaleSignal refuses an offer or answer older than one the session
// took from the same peer.
var errStaleSignal = errors.New("calls: offer or answer older than the peer's latest")

// deliver hands a signal from session req.From of node from to session
// req.Session, if the owner named that one as the other member of the
// room; it waits up to SignalWait for the owner's word.
func (s *Service) deliver(ctx context.Context, from mesh.ID, req *request) error {
	want := Member{Node: from, Session: req.From}
	wait := time.NewTimer(s.cfg.SignalWait)
	defer wait.Stop()
	for {
		s.mu.Lock()
		sess := s.sessions[req.Session]
		if sess == nil || sess.room != req.Room {
			s.mu.Unlock()
			return ErrNotMember
		}
		if samePeer(sess.peer, &want) {
			sig := req.Signal
			if sig.Type != "candidate" && req.Seq != 0 {
				if req.Seq < sess.described {
					s.mu.Unlock()
					return errStaleSignal
				}
				sess.described = req.Seq
			}
			s.emitLocked(sess, Event{Type: sig.Type, Room: req.Room, SDP: sig.SDP, Candidate: sig.Candidate})
			s.mu.Unlock()
			return nil
		}
		changed := sess.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-wait.C:
			return ErrNotMember
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNotMember, ctx.Err())
		}
	}
}
