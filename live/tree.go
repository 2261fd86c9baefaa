package live

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/catnest/catnest/mesh"
)

// The tree: a node that wants a room asks a parent to attach it with a
// signed request over their mesh link; the parent answers with an SDP
// offer for a media PeerConnection of their own that carries the room's
// tracks and a "tree" data channel, and the child sends its answer in a
// second request. A parent that is full answers with its children, so the
// child walks down from the host when the directory has not told it of a
// relay with spare room yet.

const (
	treeProto   = "live/tree/1"
	treeContext = "catnest live tree v1"
	// maxTreeMsg bounds a tree request or answer (an SDP offer and a
	// cover image fit).
	maxTreeMsg = 200 << 10
	// maxPathLen bounds a path from the host; a longer one is refused.
	maxPathLen = 64
	// treeClockSkew is how far a request's time may be from ours.
	treeClockSkew = 2 * time.Minute
)

const (
	opAttach = "attach"
	opAnswer = "answer"
	opCover  = "cover"
)

type treeReq struct {
	Op      string  `json:"op"`
	Room    string  `json:"room"`
	From    mesh.ID `json:"from"`
	To      mesh.ID `json:"to"`
	Time    int64   `json:"t"`
	Session string  `json:"session,omitempty"`
	SDP     string  `json:"sdp,omitempty"`
}

type treeResp struct {
	Session string `json:"session,omitempty"`
	Offer   string `json:"offer,omitempty"`
	// Path runs from the host to the parent, both included.
	Path []mesh.ID `json:"path,omitempty"`
	// Full says the parent has no room; Children are where to try next.
	Full     bool      `json:"full,omitempty"`
	Children []mesh.ID `json:"children,omitempty"`
	Cover    []byte    `json:"cover,omitempty"`
}

// roomState is a room this node carries. The service's mutex guards it.
type roomState struct {
	id   string
	host bool
	hub  *hub
	// parent is the upstream of a relay; nil while it attaches.
	parent *parentLink
	// path runs from the host to the parent; empty at the host.
	path      []mesh.ID
	attaching bool
	children  map[mesh.ID]*childLink
	// reserved counts children offered a connection that have not
	// answered yet: they count against the fanout.
	reserved int
	viewers  map[string]*session
	pub      *session
	// stopSource stops a file source publishing into the room.
	stopSource func()
	// idle is when the room last had neither viewers nor children.
	idle time.Time
	// parentDC is the tree channel to the parent.
	parentDC treeSender
	// lastErr is why the last attach failed.
	lastErr error
	// reported is the viewer count last sent to the parent, reportedAt
	// when, and reportTimer sends the latest count once viewerReport has
	// passed since.
	reported    int
	reportedAt  time.Time
	reportTimer *time.Timer
	// waiting counts WHEP requests waiting for the room's media here: the
	// room stays while they wait, though it has no viewer yet.
	waiting int
	// nodesBelow is how many nodes the directory shows carrying the room
	// deeper than this node: the bound of its subtree's size.
	nodesBelow int
	// noMedia holds the parents that took this node and sent no media
	// (or went) within the attach timeout, and when: an attach tries them
	// last for a while, so that one node that advertises the room and
	// never delivers it (broken or hostile) does not cost every re-attach
	// an attach timeout.
	noMedia map[mesh.ID]time.Time
}

// Bounds of roomState.noMedia.
const (
	noMediaFor = time.Minute
	maxNoMedia = 64
)

// noMediaLocked records that p took this node and sent nothing; s.mu is
// held.
func (rs *roomState) noMediaLocked(p mesh.ID, now time.Time) {
	if rs.noMedia == nil {
		rs.noMedia = map[mesh.ID]time.Time{}
	}
	for id, t := range rs.noMedia {
		if now.Sub(t) >= noMediaFor || len(rs.noMedia) >= maxNoMedia {
			delete(rs.noMedia, id)
		}
	}
	rs.noMedia[p] = now
}

type parentLink struct {
	id   mesh.ID
	pc   *webrtc.PeerConnection
	ssrc atomic.Uint32 // of the video track, for keyframe requests
	// flowing is closed when the first packet from the parent was
	// forwarded; lost when the node let go of the parent.
	flowing  chan struct{}
	flowOnce sync.Once
	lost     chan struct{}
}

func (pl *parentLink) flow() { pl.flowOnce.Do(func() { close(pl.flowing) }) }

type childLink struct {
	id      mesh.ID
	room    string
	session string
	pc      *webrtc.PeerConnection
	out     *output
	dc      *webrtc.DataChannel
	viewers int
	// timer drops the child if it does not answer, and then if its
	// connection is not up within Config.AttachTimeout of its answer.
	timer *time.Timer
	// up is set once its connection is up and forwarding started.
	up atomic.Bool
}

// treeSender is the tree data channel to the parent, as reportViewers
// uses it (a *webrtc.DataChannel; tests record what it sends).
type treeSender interface {
	Send([]byte) error
}

// viewerReport is the least time between two viewer counts a node sends
// its parent: a viewer or child that comes and goes many times a second
// costs each hop up to the host one message a second, not one per change.
const viewerReport = time.Second

// treeMsg is a message on the tree data channel: the parent sends its
// path, the child its viewer count.
type treeMsg struct {
	Path    []mesh.ID `json:"path,omitempty"`
	Viewers *int      `json:"viewers,omitempty"`
}

func newRoomState(id string, host bool, interval time.Duration) *roomState {
	return &roomState{id: id, host: host, hub: newHub(id, interval), children: map[mesh.ID]*childLink{}, viewers: map[string]*session{}}
}

// carriesLocked reports whether the node can forward the room now.
func (rs *roomState) carriesLocked() bool {
	return (rs.host || rs.parent != nil) && rs.hub.isReady()
}

// viewersLocked counts the room's viewers here and below. What children
// report is taken up to a plausible bound: no node serves more than
// perNode viewers, and the subtree below this node has no more nodes than
// the directory shows carrying the room deeper than this node (and at
// least the children). A hostile child can claim that many, not billions.
func (rs *roomState) viewersLocked(perNode int) int {
	bound := perNode * max(rs.nodesBelow, len(rs.children))
	below := 0
	for _, c := range rs.children {
		below += min(c.viewers, bound)
	}
	return len(rs.viewers) + min(below, bound)
}

// closeLocked stops the room here and returns the connections to close.
func (rs *roomState) closeLocked() []*webrtc.PeerConnection {
	rs.hub.close()
	if rs.reportTimer != nil {
		rs.reportTimer.Stop()
		rs.reportTimer = nil
	}
	var pcs []*webrtc.PeerConnection
	if rs.parent != nil {
		pcs = append(pcs, rs.parent.pc)
		rs.parent = nil
	}
	for _, c := range rs.children {
		pcs = append(pcs, c.pc)
		if c.timer != nil {
			c.timer.Stop()
		}
	}
	for _, v := range rs.viewers {
		pcs = append(pcs, v.pc)
	}
	if rs.pub != nil {
		pcs = append(pcs, rs.pub.pc)
	}
	if rs.stopSource != nil {
		rs.stopSource()
	}
	rs.children = map[mesh.ID]*childLink{}
	rs.viewers = map[string]*session{}
	return pcs
}

// request sends a signed tree request to node to, linking to it first,
// and opens its signed answer.
func (s *Service) request(ctx context.Context, to mesh.ID, req treeReq) (treeResp, error) {
	req.From, req.To, req.Time = s.node.ID(), to, time.Now().UnixMilli()
	b, err := seal(s.cfg.Identity, treeContext, req)
	if err != nil {
		return treeResp{}, err
	}
	if err := s.node.Connect(ctx, to); err != nil {
		return treeResp{}, fmt.Errorf("live: link to %s: %w", to.Short(), err)
	}
	ans, err := s.node.Request(ctx, to, treeProto, b)
	if err != nil {
		return treeResp{}, fmt.Errorf("live: %s %s: %w", req.Op, to.Short(), err)
	}
	var resp treeResp
	signer, err := open(ans, maxTreeMsg, treeContext, &resp)
	if err != nil {
		return treeResp{}, err
	}
	if signer != to {
		return treeResp{}, fmt.Errorf("%w: answer signed by %s, not %s", errBadRecord, signer.Short(), to.Short())
	}
	return resp, nil
}

// serveTree answers a tree request from a linked node.
func (s *Service) serveTree(ctx context.Context, m *mesh.Message) ([]byte, error) {
	if !m.Request {
		return nil, nil
	}
	var req treeReq
	signer, err := open(m.Payload, maxTreeMsg, treeContext, &req)
	if err == nil && (signer != m.From || req.From != m.From || req.To != s.node.ID()) {
		err = fmt.Errorf("%w: request not signed by its sender or not for this node", errBadRecord)
	}
	if err != nil {
		s.node.Penalize(m.From, err.Error())
		return nil, err
	}
	if d := time.Since(time.UnixMilli(req.Time)); d > treeClockSkew || d < -treeClockSkew {
		return nil, errors.New("live: request too old or from the future")
	}
	var resp treeResp
	switch req.Op {
	case opAttach:
		resp, err = s.serveAttach(ctx, m.From, req.Room)
	case opAnswer:
		err = s.serveAnswer(m.From, req)
	case opCover:
		resp.Cover, err = s.ownCover(req.Room)
	default:
		err = fmt.Errorf("%w: unknown op %q", ErrBadInput, req.Op)
	}
	if err != nil {
		return nil, err
	}
	return seal(s.cfg.Identity, treeContext, resp)
}

// serveAttach offers a media connection to a child, if this node carries
// the room, has spare room and the child is not above it.
func (s *Service) serveAttach(ctx context.Context, child mesh.ID, room string) (treeResp, error) {
	s.mu.Lock()
	rs := s.rooms[room]
	switch {
	case rs == nil || !rs.carriesLocked():
		s.mu.Unlock()
		return treeResp{}, fmt.Errorf("%w: %s does not carry room %s", ErrNotLive, s.node.ID().Short(), room)
	case slices.Contains(rs.path, child):
		s.mu.Unlock()
		return treeResp{}, errLoop
	case rs.children[child] != nil:
		// The child attaches again (it lost us first): replace.
		old := rs.children[child]
		delete(rs.children, child)
		rs.hub.removeOutput(old.out)
		go old.pc.Close()
	}
	// A child has one offer pending at a time: a peer that asks again and
	// again without answering holds one place, not the whole fanout.
	for sid, c := range s.pending {
		if c.id == child && c.room == room {
			delete(s.pending, sid)
			c.timer.Stop()
			rs.reserved--
			go c.pc.Close()
		}
	}
	if len(rs.children)+rs.reserved >= s.cfg.Fanout {
		kids := make([]mesh.ID, 0, len(rs.children))
		for id := range rs.children {
			kids = append(kids, id)
		}
		slices.Sort(kids)
		s.mu.Unlock()
		return treeResp{Full: true, Children: kids}, nil
	}
	rs.reserved++
	path := append(slices.Clone(rs.path), s.node.ID())
	s.mu.Unlock()

	c, offer, err := s.offerChild(ctx, rs, child)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || s.rooms[room] != rs {
		rs.reserved--
		if c != nil {
			go c.pc.Close()
		}
		return treeResp{}, cmp.Or(err, ErrUnknownRoom)
	}
	s.pending[c.session] = c
	c.timer = time.AfterFunc(s.cfg.AttachTimeout, func() { s.dropPending(c) })
	return treeResp{Session: c.session, Offer: offer, Path: path}, nil
}

// offerChild makes the media connection to a child and its offer.
func (s *Service) offerChild(ctx context.Context, rs *roomState, child mesh.ID) (*childLink, string, error) {
	pc, err := s.media.newPC()
	if err != nil {
		return nil, "", err
	}
	c := &childLink{id: child, room: rs.id, session: newSessionID(childSession), pc: pc}
	ordered := true
	if c.dc, err = pc.CreateDataChannel("tree", &webrtc.DataChannelInit{Ordered: &ordered}); err != nil {
		return c, "", fmt.Errorf("live: tree channel: %w", err)
	}
	if c.out, err = rs.hub.addOutput(pc, nil); err != nil {
		return c, "", err
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return c, "", fmt.Errorf("live: offer: %w", err)
	}
	sdp, err := complete(ctx, pc, offer)
	return c, sdp, err
}

// dropPending forgets a child that did not answer in time.
func (s *Service) dropPending(c *childLink) {
	s.mu.Lock()
	if s.pending[c.session] != c {
		s.mu.Unlock()
		return
	}
	delete(s.pending, c.session)
	if rs := s.rooms[c.room]; rs != nil {
		rs.reserved--
	}
	s.mu.Unlock()
	c.pc.Close()
}

// serveAnswer completes a child's attach.
func (s *Service) serveAnswer(from mesh.ID, req treeReq) error {
	s.mu.Lock()
	c := s.pending[req.Session]
	if c == nil || c.id != from || c.room != req.Room {
		s.mu.Unlock()
		return ErrUnknownSession
	}
	delete(s.pending, req.Session)
	c.timer.Stop()
	rs := s.rooms[c.room]
	s.mu.Unlock()
	if rs == nil {
		c.pc.Close()
		return ErrUnknownRoom
	}
	// The child's reservation holds until it is a child or gone, so that
	// no other attach takes its place meanwhile (the fanout is a bound).
	added := false
	defer func() {
		if !added {
			s.mu.Lock()
			rs.reserved--
			s.mu.Unlock()
		}
	}()
	if len(req.SDP) > maxSDP {
		c.pc.Close()
		return ErrBadSDP
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: req.SDP}); err != nil {
		c.pc.Close()
		return fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	c.pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			s.startChild(c)
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed, webrtc.PeerConnectionStateDisconnected:
			s.dropChild(c)
		}
	})
	c.dc.OnOpen(func() { s.sendPath(c) })
	c.dc.OnMessage(func(m webrtc.DataChannelMessage) {
		var tm treeMsg
		if len(m.Data) > 4<<10 || json.Unmarshal(m.Data, &tm) != nil || tm.Viewers == nil || *tm.Viewers < 0 || *tm.Viewers > math.MaxInt32 {
			return
		}
		s.mu.Lock()
		c.viewers = *tm.Viewers
		s.mu.Unlock()
		s.reportViewers(c.room)
	})
	s.mu.Lock()
	if s.rooms[c.room] != rs {
		s.mu.Unlock()
		c.pc.Close()
		return ErrUnknownRoom
	}
	if old := rs.children[from]; old != nil {
		rs.hub.removeOutput(old.out)
		go old.pc.Close()
	}
	rs.children[from] = c
	rs.reserved--
	added = true
	up := c.pc.ConnectionState() == webrtc.PeerConnectionStateConnected
	// A child that answered holds a place of the fanout; one whose
	// connection never comes up (a hostile peer, or one that cannot reach
	// this node) would hold it until ICE gives up on it, which takes
	// several times ParentSilence, or for ever when ICE connects and DTLS
	// never does. It has the attach timeout, as it gives its parent.
	c.timer = time.AfterFunc(s.cfg.AttachTimeout, func() {
		if !c.up.Load() {
			s.log.Debug("child never came up", "room", c.room, "child", from.Short())
			s.dropChild(c)
		}
	})
	s.mu.Unlock()
	if up {
		s.startChild(c)
	}
	s.log.Debug("child attached", "room", c.room, "child", from.Short())
	s.changed()
	return nil
}

// startChild starts forwarding to a child whose connection is up.
func (s *Service) startChild(c *childLink) {
	s.mu.Lock()
	rs := s.rooms[c.room]
	ok := rs != nil && rs.children[c.id] == c
	s.mu.Unlock()
	if !ok {
		return
	}
	rs.hub.start(c.out)
	c.up.Store(true)
	// A child dropped meanwhile took its output away before the start
	// added it: take it away again, or the hub forwards to it for ever.
	s.mu.Lock()
	gone := rs.children[c.id] != c
	s.mu.Unlock()
	if gone {
		rs.hub.removeOutput(c.out)
	}
}

// dropChild forgets a child whose connection ended.
func (s *Service) dropChild(c *childLink) {
	s.mu.Lock()
	rs := s.rooms[c.room]
	if rs == nil || rs.children[c.id] != c {
		s.mu.Unlock()
		return
	}
	delete(rs.children, c.id)
	rs.hub.removeOutput(c.out)
	s.mu.Unlock()
	c.timer.Stop()
	go c.pc.Close()
	s.log.Debug("child left", "room", c.room, "child", c.id.Short())
	s.reportViewers(c.room)
	s.changed()
}

// sendPath tells a child the path from the host to this node.
func (s *Service) sendPath(c *childLink) {
	s.mu.Lock()
	rs := s.rooms[c.room]
	if rs == nil {
		s.mu.Unlock()
		return
	}
	b, _ := json.Marshal(treeMsg{Path: append(slices.Clone(rs.path), s.node.ID())})
	s.mu.Unlock()
	_ = c.dc.Send(b)
}

// reportViewers tells the parent how many viewers this node and its
// subtree have, when that changed: at once when the last report is
// viewerReport old, else once it is, with the count of then (the latest
// wins; the changes between are never sent).
func (s *Service) reportViewers(room string) {
	s.mu.Lock()
	rs := s.rooms[room]
	if rs == nil || rs.host || rs.parent == nil {
		s.mu.Unlock()
		return
	}
	n := rs.viewersLocked(s.cfg.MaxViewers)
	if n == rs.reported {
		s.mu.Unlock()
		return
	}
	now := time.Now()
	if wait := viewerReport - now.Sub(rs.reportedAt); wait > 0 && rs.parentDC != nil {
		if rs.reportTimer == nil {
			rs.reportTimer = time.AfterFunc(wait, func() {
				s.mu.Lock()
				rs.reportTimer = nil
				s.mu.Unlock()
				s.reportViewers(room)
			})
		}
		s.mu.Unlock()
		return
	}
	rs.reported = n
	dc := rs.parentDC
	if dc != nil {
		rs.reportedAt = now
	}
	s.mu.Unlock()
	if dc != nil {
		b, _ := json.Marshal(treeMsg{Viewers: &n})
		_ = dc.Send(b)
	}
}

// want makes sure this node carries room: a relay attaches in the
// background and re-attaches whenever it loses its parent. The room is
// held until release is called.
func (s *Service) want(room string) (rs *roomState, release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.quit:
		return nil, nil, ErrUnknownRoom
	default:
	}
	e := s.index[room]
	if e == nil || !e.room.Live {
		return nil, nil, ErrUnknownRoom
	}
	rs = s.rooms[room]
	if rs == nil {
		rs = newRoomState(room, false, s.cfg.KeyframeInterval)
		s.rooms[room] = rs
	}
	rs.idle = time.Time{}
	rs.waiting++
	if !rs.host && rs.parent == nil && !rs.attaching {
		rs.attaching = true
		s.wg.Go(func() { s.attachLoop(rs) })
	}
	var once sync.Once
	return rs, func() {
		once.Do(func() {
			s.mu.Lock()
			rs.waiting--
			s.mu.Unlock()
		})
	}, nil
}

// attachLoop attaches rs to a parent, retrying until it has one or the
// room is no longer carried here.
func (s *Service) attachLoop(rs *roomState) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.quit:
		case <-ctx.Done():
		}
		cancel()
	}()
	wait := 50 * time.Millisecond
	for {
		s.mu.Lock()
		if s.rooms[rs.id] != rs {
			rs.attaching = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		err := s.attach(ctx, rs)
		if err == nil {
			return
		}
		s.log.Debug("attach failed", "room", rs.id, "err", err)
		s.mu.Lock()
		rs.lastErr = err
		s.mu.Unlock()
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			s.mu.Lock()
			rs.attaching = false
			s.mu.Unlock()
			return
		}
		wait = min(2*wait, time.Second)
	}
}

// unlinked is 1 for a candidate this node has no link to.
func unlinked(c candidate) int {
	if c.rtt == time.Hour {
		return 1
	}
	return 0
}

// candidate is a node that may take a child.
type candidate struct {
	id          mesh.ID
	depth, load int
	rtt         time.Duration
}

// candidates lists the nodes that carry room and have spare room, best
// first: shallow, then close; the host comes last as the start of a walk
// down the tree.
func (s *Service) candidates(room string, host mesh.ID) []mesh.ID {
	rtt := map[mesh.ID]time.Duration{}
	for _, p := range s.node.Peers() {
		rtt[p.ID] = p.RTT
	}
	self := s.node.ID()
	var cs []candidate
	for _, r := range s.node.Directory() {
		if r.ID == self {
			continue
		}
		raw, ok := r.Resources[resourceName]
		if !ok {
			continue
		}
		var sum struct {
			R map[string][3]int `json:"r"`
		}
		if json.Unmarshal(raw, &sum) != nil {
			continue
		}
		e, ok := sum.R[room]
		if !ok || e[1] >= e[2] || e[0] < 0 || e[0] > maxPathLen {
			continue
		}
		d, ok := rtt[r.ID]
		if !ok {
			d = time.Hour
		}
		cs = append(cs, candidate{id: r.ID, depth: e[0], load: e[1], rtt: d})
	}
	// Nodes already linked first: a new link costs a dial, and a node at
	// its link limit refuses it.
	slices.SortFunc(cs, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(unlinked(a), unlinked(b)), cmp.Compare(a.depth, b.depth), cmp.Compare(a.rtt, b.rtt), cmp.Compare(a.load, b.load), cmp.Compare(a.id, b.id))
	})
	out := make([]mesh.ID, 0, len(cs)+1)
	for _, c := range cs {
		out = append(out, c.id)
	}
	if !slices.Contains(out, host) && host != self {
		out = append(out, host)
	}
	return out
}

// attach tries the candidates, and the children of full ones, until one
// takes this node.
func (s *Service) attach(ctx context.Context, rs *roomState) error {
	s.mu.Lock()
	e := s.index[rs.id]
	if e == nil || !e.room.Live {
		s.mu.Unlock()
		return ErrUnknownRoom
	}
	host := e.room.Host
	s.mu.Unlock()
	queue := s.candidates(rs.id, host)
	// Parents that recently sent nothing go last, in their order.
	s.mu.Lock()
	now := time.Now()
	bad := func(id mesh.ID) bool { t, ok := rs.noMedia[id]; return ok && now.Sub(t) < noMediaFor }
	good := slices.DeleteFunc(slices.Clone(queue), bad)
	queue = append(good, slices.DeleteFunc(queue, func(id mesh.ID) bool { return !bad(id) })...)
	s.mu.Unlock()
	tried := map[mesh.ID]bool{s.node.ID(): true}
	var errs []error
	for len(queue) > 0 && len(tried) < 64 {
		p := queue[0]
		queue = queue[1:]
		if tried[p] {
			continue
		}
		tried[p] = true
		actx, cancel := context.WithTimeout(ctx, s.cfg.AttachTimeout)
		kids, err := s.attachTo(actx, rs, p)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, errFull) {
			queue = append(kids, queue...)
			continue
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("live: no parent for room %s: %w", rs.id, errors.Join(errs...))
}

// attachTo asks p to take this node as a child of room rs. A full parent's
// children come back with errFull.
func (s *Service) attachTo(ctx context.Context, rs *roomState, p mesh.ID) ([]mesh.ID, error) {
	resp, err := s.request(ctx, p, treeReq{Op: opAttach, Room: rs.id})
	if err != nil {
		return nil, err
	}
	if resp.Full {
		if len(resp.Children) > 64 {
			resp.Children = resp.Children[:64]
		}
		return resp.Children, errFull
	}
	s.mu.Lock()
	var host mesh.ID
	if e := s.index[rs.id]; e != nil {
		host = e.room.Host
	}
	s.mu.Unlock()
	if err := checkPath(resp.Path, host, p, s.node.ID()); err != nil {
		// Tried last for a while, as a parent that sends nothing is:
		// it would answer the next attach the same way.
		s.mu.Lock()
		rs.noMediaLocked(p, time.Now())
		s.mu.Unlock()
		return nil, err
	}
	if len(resp.Offer) > maxSDP {
		return nil, ErrBadSDP
	}
	pc, err := s.media.newPC()
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			pc.Close()
		}
	}()
	pl := &parentLink{id: p, pc: pc, flowing: make(chan struct{}), lost: make(chan struct{})}
	var tracks int
	if o, err := parseOffer(resp.Offer); err == nil {
		tracks = len(o.kinds)
	} else {
		return nil, err
	}
	gen := rs.hub.upstream(tracks, func() error {
		ssrc := pl.ssrc.Load()
		if ssrc == 0 {
			return nil
		}
		return pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if t.Kind() == webrtc.RTPCodecTypeVideo {
			pl.ssrc.Store(uint32(t.SSRC()))
		}
		dropped, ok := rs.hub.setSlot(gen, t.Kind(), t.Codec().RTPCodecCapability)
		if !ok {
			return
		}
		s.resetOutputs(rs, dropped)
		rs.hub.pump(gen, t, pl.flow)
	})
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		if dc.Label() != "tree" {
			return
		}
		s.mu.Lock()
		if rs.parent == pl {
			rs.parentDC = dc
			// A new parent hears the count at once.
			rs.reported, rs.reportedAt = -1, time.Time{}
		}
		s.mu.Unlock()
		dc.OnOpen(func() { s.reportViewers(rs.id) })
		dc.OnMessage(func(m webrtc.DataChannelMessage) { s.onParentMsg(rs, pl, m.Data) })
		dc.OnClose(func() { s.lostParent(rs, pl) })
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed || st == webrtc.PeerConnectionStateDisconnected {
			s.lostParent(rs, pl)
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: resp.Offer}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return nil, fmt.Errorf("live: answer: %w", err)
	}
	sdp, err := complete(ctx, pc, ans)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.rooms[rs.id] != rs {
		s.mu.Unlock()
		return nil, ErrUnknownRoom
	}
	// The node is still attaching (rs.attaching) until media flows: a
	// parent lost meanwhile is this attempt's failure, not a new attach.
	old := rs.parent
	rs.parent, rs.path = pl, resp.Path
	s.mu.Unlock()
	if old != nil {
		go old.pc.Close()
	}
	if _, err := s.request(ctx, p, treeReq{Op: opAnswer, Room: rs.id, Session: resp.Session, SDP: sdp}); err != nil {
		s.mu.Lock()
		if rs.parent == pl {
			rs.parent, rs.attaching = nil, true
		}
		s.mu.Unlock()
		return nil, err
	}
	// An attach is done when media comes, not when the parent answered:
	// a parent whose connection never comes up (ICE would give it up only
	// after its failure timeout) or that sends nothing is dropped when the
	// attempt's time is up, and the next candidate is tried.
	select {
	case <-pl.flowing:
	case <-pl.lost:
		s.mu.Lock()
		rs.noMediaLocked(p, time.Now())
		s.mu.Unlock()
		return nil, fmt.Errorf("live: %s went before any media came", p.Short())
	case <-ctx.Done():
		s.mu.Lock()
		if rs.parent == pl {
			rs.parent, rs.parentDC, rs.path = nil, nil, nil
		}
		rs.noMediaLocked(p, time.Now())
		s.mu.Unlock()
		s.changed()
		return nil, fmt.Errorf("live: no media from %s: %w", p.Short(), ctx.Err())
	}
	s.mu.Lock()
	if rs.parent != pl {
		s.mu.Unlock()
		return nil, fmt.Errorf("live: %s went before any media came", p.Short())
	}
	rs.attaching = false
	s.mu.Unlock()
	ok = true
	s.log.Debug("attached", "room", rs.id, "parent", p.Short(), "depth", len(resp.Path))
	s.changed()
	return nil, nil
}

// checkPath checks the path from the room's host to parent that parent
// reports to self: it starts at host, ends at parent, is at most
// maxPathLen long, and holds no node twice, self not at all (that would be
// a loop). A node's depth is the length of its path, so a parent cannot
// claim to be the host or to sit above it. What lies between host and
// parent is not checkable: no node signs its link to its parent, so a
// relay can still name a shorter path of nodes that exist, and get the
// children of a shallower node; it cannot make self's depth less than 1
// or make a loop through self look like a tree.
func checkPath(path []mesh.ID, host, parent, self mesh.ID) error {
	switch {
	case len(path) == 0 || len(path) > maxPathLen:
		return fmt.Errorf("%w: a path of %d nodes, limit %d", errBadPath, len(path), maxPathLen)
	case host == "" || path[0] != host:
		return fmt.Errorf("%w: it starts at %s, not at the room's host", errBadPath, path[0].Short())
	case path[len(path)-1] != parent:
		return fmt.Errorf("%w: it ends at %s, not at the parent %s", errBadPath, path[len(path)-1].Short(), parent.Short())
	case slices.Contains(path, self):
		return errLoop
	}
	seen := make(map[mesh.ID]bool, len(path))
	for _, id := range path {
		if seen[id] {
			return fmt.Errorf("%w: %s is on it twice", errBadPath, id.Short())
		}
		seen[id] = true
	}
	return nil
}

// onParentMsg takes the parent's path: a path through this node means a
// loop, which this node breaks by leaving its parent.
func (s *Service) onParentMsg(rs *roomState, pl *parentLink, b []byte) {
	var tm treeMsg
	if len(b) > 8<<10 || json.Unmarshal(b, &tm) != nil || len(tm.Path) == 0 {
		return
	}
	s.mu.Lock()
	var host mesh.ID
	if e := s.index[rs.id]; e != nil {
		host = e.room.Host
	}
	s.mu.Unlock()
	if err := checkPath(tm.Path, host, pl.id, s.node.ID()); err != nil {
		s.log.Debug("parent's path refused", "room", rs.id, "parent", pl.id.Short(), "err", err)
		s.lostParent(rs, pl)
		return
	}
	s.mu.Lock()
	if rs.parent != pl {
		s.mu.Unlock()
		return
	}
	rs.path = tm.Path
	kids := make([]*childLink, 0, len(rs.children))
	for _, c := range rs.children {
		kids = append(kids, c)
	}
	s.mu.Unlock()
	for _, c := range kids {
		s.sendPath(c)
	}
}

// lostParent starts a new attach when pl was rs's parent. The children
// stay: their media resumes once this node has a parent again.
func (s *Service) lostParent(rs *roomState, pl *parentLink) {
	s.mu.Lock()
	if rs.parent != pl {
		s.mu.Unlock()
		return
	}
	rs.parent, rs.parentDC = nil, nil
	rs.path = nil
	close(pl.lost)
	if s.rooms[rs.id] == rs && !rs.attaching {
		// Started under s.mu, as want does: shutdown closes quit and
		// empties rooms under it before it waits for wg, so a loop is
		// either counted before that wait or never started.
		rs.attaching = true
		s.wg.Go(func() { s.attachLoop(rs) })
	}
	s.mu.Unlock()
	go pl.pc.Close()
	s.parentsLost.Add(1)
	s.log.Debug("parent lost", "room", rs.id, "parent", pl.id.Short())
	s.changed()
}

// resetOutputs closes the outputs of a hub whose codec changed: their
// viewers and children come back and get the new one.
func (s *Service) resetOutputs(rs *roomState, dropped []*output) {
	if len(dropped) == 0 {
		return
	}
	gone := map[*output]bool{}
	for _, o := range dropped {
		gone[o] = true
	}
	var pcs []*webrtc.PeerConnection
	s.mu.Lock()
	for id, c := range rs.children {
		if gone[c.out] {
			pcs = append(pcs, c.pc)
			delete(rs.children, id)
		}
	}
	for id, v := range rs.viewers {
		if gone[v.out] {
			pcs = append(pcs, v.pc)
			delete(rs.viewers, id)
			delete(s.sessions, id)
		}
	}
	s.mu.Unlock()
	go closeAll(pcs)
}

// TreeInfo is a room's relay tree as this node knows it.
type TreeInfo struct {
	Room     string    `json:"room"`
	Host     bool      `json:"host"`
	Parent   mesh.ID   `json:"parent,omitempty"`
	Path     []mesh.ID `json:"path"`
	Depth    int       `json:"depth"`
	Children []mesh.ID `json:"children"`
	// Viewers are this node's own WHEP viewers; Below counts those of its
	// subtree.
	Viewers int  `json:"viewers"`
	Below   int  `json:"below"`
	Fanout  int  `json:"fanout"`
	Live    bool `json:"live"`
	// PacketsIn and KeyframeRequests count what reached this node and the
	// keyframe requests it sent upstream.
	PacketsIn        uint64 `json:"packets_in"`
	KeyframeRequests uint64 `json:"keyframe_requests"`
}

// Tree returns a room's tree as this node knows it.
func (s *Service) Tree(room string) (TreeInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.index[room]
	if e == nil || !e.room.Live {
		return TreeInfo{}, ErrUnknownRoom
	}
	ti := TreeInfo{Room: room, Fanout: s.cfg.Fanout, Path: []mesh.ID{}, Children: []mesh.ID{}}
	rs := s.rooms[room]
	if rs == nil {
		return ti, nil
	}
	ti.Host = rs.host
	if rs.parent != nil {
		ti.Parent = rs.parent.id
	}
	ti.Path = append(ti.Path, rs.path...)
	ti.Depth = len(rs.path)
	for id := range rs.children {
		ti.Children = append(ti.Children, id)
	}
	slices.Sort(ti.Children)
	ti.Viewers = len(rs.viewers)
	ti.Below = rs.viewersLocked(s.cfg.MaxViewers) - ti.Viewers
	ti.Live = rs.carriesLocked()
	ti.PacketsIn = rs.hub.packetsIn.Load()
	ti.KeyframeRequests = rs.hub.keyframesUp.Load()
	return ti, nil
}
