package live

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/catnest/catnest/internal/pubsub"
	"github.com/catnest/catnest/mesh"
)

// Service is a node's live rooms: the index, the rooms it hosts, relays and
// plays, and their WHIP and WHEP sessions.
type Service struct {
	cfg   Config
	node  Node
	log   *slog.Logger
	media *media

	// quit is closed when Serve ends; wg counts the goroutines that must
	// end before it returns.
	quit chan struct{}
	wg   sync.WaitGroup

	mu sync.Mutex
	// index holds the room records heard, ended ones too until they
	// expire, so that an older copy cannot bring a room back.
	index map[string]*indexEntry
	// own holds the rooms this node hosts.
	own map[string]*ownRoom
	// rooms holds the rooms this node carries: hosts, relays or plays.
	rooms map[string]*roomState
	// sessions are the WHIP and WHEP sessions, by ID.
	sessions map[string]*session
	// pending are the children that were offered a connection and have
	// not answered yet, by session ID.
	pending map[string]*childLink
	// summary is the directory summary last set.
	summary string
	// watching counts the WHEP requests in progress: with the viewer
	// sessions they count against Config.MaxViewers.
	watching int

	changes pubsub.Topic[struct{}]
	// parentsLost counts the parents this node lost, for benchmarks.
	parentsLost atomic.Uint64
}

type indexEntry struct {
	room  Room
	env   []byte
	heard time.Time
}

// ownRoom is a room this node hosts.
type ownRoom struct {
	token string
	cover []byte
	// dirty says the record changed since it was last announced.
	dirty bool
	sent  time.Time
}

// NewService makes the live service of node. Call Serve to run it.
func NewService(cfg Config, node Node) (*Service, error) {
	cfg.fillDefaults()
	if cfg.Identity == nil || cfg.Identity.ID != node.ID() {
		return nil, errors.New("live: Config.Identity must be the node's")
	}
	m, err := newMedia(cfg)
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg:      cfg,
		node:     node,
		log:      cfg.Logger.With("svc", "live"),
		media:    m,
		quit:     make(chan struct{}),
		index:    map[string]*indexEntry{},
		own:      map[string]*ownRoom{},
		rooms:    map[string]*roomState{},
		sessions: map[string]*session{},
		pending:  map[string]*childLink{},
	}
	node.ValidateBroadcast(roomTopic, func(m mesh.BroadcastMsg) error {
		r, err := decodeRoom(m.Payload)
		if err != nil {
			return err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.admitLocked(r)
	})
	node.HandleBroadcast(roomTopic, s.onRecord)
	node.Handle(treeProto, mesh.HandlerFunc(s.serveTree))
	return s, nil
}

// Fanout is the most children this node forwards a room to.
func (s *Service) Fanout() int { return s.cfg.Fanout }

// MaxViewers is the most WHEP viewers this node serves at once.
func (s *Service) MaxViewers() int { return s.cfg.MaxViewers }

// Serve announces the hosted rooms, expires the index and keeps the tree
// until ctx ends; then it closes every media connection.
func (s *Service) Serve(ctx context.Context) error {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.shutdown()
			return nil
		case now := <-t.C:
			s.countBelow()
			s.announce(ctx, now)
			s.tidy(now)
			s.advertise()
		}
	}
}

func (s *Service) shutdown() {
	s.mu.Lock()
	close(s.quit)
	var pcs []*webrtc.PeerConnection
	for _, rs := range s.rooms {
		pcs = append(pcs, rs.closeLocked()...)
	}
	for _, c := range s.pending {
		pcs = append(pcs, c.pc)
	}
	for _, ss := range s.sessions {
		pcs = append(pcs, ss.pc)
	}
	s.rooms = map[string]*roomState{}
	s.sessions = map[string]*session{}
	s.pending = map[string]*childLink{}
	s.mu.Unlock()
	closeAll(pcs)
	s.wg.Wait()
}

// closeAll closes peer connections in parallel (each close waits for its
// transports).
func closeAll(pcs []*webrtc.PeerConnection) {
	var wg sync.WaitGroup
	for _, pc := range pcs {
		if pc != nil {
			wg.Go(func() { _ = pc.Close() })
		}
	}
	wg.Wait()
}

// Subscribe returns a channel that receives a value when the index or a
// room's tree changes, and a function that ends the subscription.
func (s *Service) Subscribe() (<-chan struct{}, func()) {
	sub := s.changes.Subscribe(1)
	return sub.C(), sub.Close
}

func (s *Service) changed() { s.changes.Publish(struct{}{}) }

// Rooms lists the live rooms of the mesh, newest first.
func (s *Service) Rooms() []Room {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Room{}
	for _, e := range s.index {
		if e.room.Live {
			out = append(out, e.room)
		}
	}
	slices.SortFunc(out, func(a, b Room) int {
		return cmp.Or(b.Since.Compare(a.Since), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// Room returns one live room.
func (s *Service) Room(id string) (Room, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.index[id]
	if !ok || !e.room.Live {
		return Room{}, false
	}
	return e.room, true
}

// Created is a new room with what its publisher needs.
type Created struct {
	Room
	// Token is the WHIP bearer token; only the host knows it.
	Token string `json:"whip_token"`
}

// Create starts a room hosted by this node. chat is the room's chat
// channel, if the caller made one.
func (s *Service) Create(ctx context.Context, title, description, chat string) (Created, error) {
	if err := checkMeta(title, description); err != nil {
		return Created{}, err
	}
	nonce := make([]byte, 16)
	rand.Read(nonce)
	tok := make([]byte, 24)
	rand.Read(tok)
	now := time.Now()
	r := Room{
		Nonce: nonce, Host: s.node.ID(), HostName: s.node.Name(), Title: title, Description: description,
		Since: now.UTC().Truncate(time.Millisecond), Seq: uint64(now.UnixNano()), Live: true, Chat: chat,
	}
	r.ID = roomID(r.Host, nonce)
	s.mu.Lock()
	if err := s.admitLocked(r); err != nil {
		s.mu.Unlock()
		return Created{}, fmt.Errorf("%w: this node hosts %d rooms at most (ended ones count until they expire)", ErrBadInput, maxRoomsPerHost)
	}
	s.own[r.ID] = &ownRoom{token: hex.EncodeToString(tok), dirty: true}
	s.rooms[r.ID] = newRoomState(r.ID, true, s.cfg.KeyframeInterval)
	s.index[r.ID] = &indexEntry{room: r, heard: now}
	s.mu.Unlock()
	s.announce(ctx, now)
	s.changed()
	s.log.Info("room created", "room", r.ID, "title", title)
	return Created{Room: r, Token: hex.EncodeToString(tok)}, nil
}

// Update changes a hosted room's title and description.
func (s *Service) Update(ctx context.Context, id, title, description string) (Room, error) {
	if err := checkMeta(title, description); err != nil {
		return Room{}, err
	}
	s.mu.Lock()
	o, e, err := s.ownLocked(id)
	if err != nil {
		s.mu.Unlock()
		return Room{}, err
	}
	e.room.Title, e.room.Description = title, description
	o.dirty = true
	r := e.room
	s.mu.Unlock()
	s.announce(ctx, time.Now())
	s.changed()
	return r, nil
}

// ownLocked returns a hosted room; s.mu is held.
func (s *Service) ownLocked(id string) (*ownRoom, *indexEntry, error) {
	o := s.own[id]
	e := s.index[id]
	if e == nil || !e.room.Live {
		return nil, nil, ErrUnknownRoom
	}
	if o == nil {
		return nil, nil, ErrNotHost
	}
	return o, e, nil
}

// SetCover sets a hosted room's cover image (nil removes it).
func (s *Service) SetCover(ctx context.Context, id string, img []byte) error {
	if len(img) > MaxCover {
		return fmt.Errorf("%w: cover of %d bytes, limit %d", ErrBadInput, len(img), MaxCover)
	}
	s.mu.Lock()
	o, e, err := s.ownLocked(id)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	o.cover = slices.Clone(img)
	e.room.HasCover = len(img) > 0
	o.dirty = true
	s.mu.Unlock()
	s.announce(ctx, time.Now())
	s.changed()
	return nil
}

// Cover returns a room's cover image, fetched from its host when this node
// is not the host.
func (s *Service) Cover(ctx context.Context, id string) ([]byte, error) {
	s.mu.Lock()
	e := s.index[id]
	if e == nil || !e.room.Live {
		s.mu.Unlock()
		return nil, ErrUnknownRoom
	}
	if o := s.own[id]; o != nil {
		img := o.cover
		s.mu.Unlock()
		return img, nil
	}
	host := e.room.Host
	s.mu.Unlock()
	resp, err := s.request(ctx, host, treeReq{Op: opCover, Room: id})
	if err != nil {
		return nil, err
	}
	return resp.Cover, nil
}

// ownCover returns the cover of a room this node hosts.
func (s *Service) ownCover(id string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, _, err := s.ownLocked(id)
	if err != nil {
		return nil, err
	}
	return o.cover, nil
}

// End ends a hosted room: its record says so, and its media stops.
func (s *Service) End(ctx context.Context, id string) error {
	s.mu.Lock()
	o, e, err := s.ownLocked(id)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	e.room.Live = false
	e.room.Seq = max(e.room.Seq+1, uint64(time.Now().UnixNano()))
	o.dirty = true
	var pcs []*webrtc.PeerConnection
	if rs := s.rooms[id]; rs != nil {
		pcs = rs.closeLocked()
		delete(s.rooms, id)
	}
	s.dropSessionsLocked(id)
	s.mu.Unlock()
	closeAll(pcs)
	s.announce(ctx, time.Now())
	s.changed()
	s.log.Info("room ended", "room", id)
	return nil
}

// dropSessionsLocked forgets a room's sessions (their connections are
// closed with the room's state); s.mu is held.
func (s *Service) dropSessionsLocked(room string) {
	for id, ss := range s.sessions {
		if ss.room == room {
			delete(s.sessions, id)
		}
	}
}

// announce broadcasts the hosted rooms whose record changed or is due.
func (s *Service) announce(ctx context.Context, now time.Time) {
	type out struct {
		id  string
		env []byte
	}
	var sends []out
	s.mu.Lock()
	for id, o := range s.own {
		e := s.index[id]
		if e == nil {
			delete(s.own, id)
			continue
		}
		// A new viewer count goes out with the next record that is due
		// anyway, or viewerAnnounce after the last: a viewer or a child
		// coming and going (a flapping link) must not have every node
		// of the mesh check a signed record of the room 4 times a second.
		if rs := s.rooms[id]; rs != nil && (o.dirty || now.Sub(o.sent) >= min(viewerAnnounce, s.cfg.RoomRefresh)) {
			if v := rs.viewersLocked(s.cfg.MaxViewers); v != e.room.Viewers {
				e.room.Viewers = v
				o.dirty = true
			}
		}
		if !o.dirty && now.Sub(o.sent) < s.cfg.RoomRefresh {
			continue
		}
		if o.dirty {
			e.room.Seq = max(e.room.Seq+1, uint64(now.UnixNano()))
		}
		env, err := seal(s.cfg.Identity, roomContext, e.room)
		if err != nil {
			s.log.Warn("room record", "room", id, "err", err)
			continue
		}
		e.env, e.heard = env, now
		o.dirty, o.sent = false, now
		sends = append(sends, out{id, env})
		if !e.room.Live {
			delete(s.own, id) // the end record goes out once; the index keeps it until it expires
		}
	}
	s.mu.Unlock()
	for _, o := range sends {
		if _, err := s.node.Broadcast(ctx, roomTopic, o.env); err != nil && ctx.Err() == nil {
			s.log.Debug("room record not broadcast", "room", o.id, "err", err)
		}
	}
}

// viewerAnnounce is the least time between two records of a room that
// only change its viewer count. A room's start, end and metadata go out
// at once.
const viewerAnnounce = 3 * time.Second

// Bounds of the index: records are signed, but keys cost nothing, so a
// peer could otherwise fill memory with rooms until they expire.
const (
	maxIndex        = 1024
	maxRoomsPerHost = 16
)

// admitLocked says whether a record of a room not in the index yet may
// enter it (and be passed on): a host has at most maxRoomsPerHost rooms,
// the index at most maxIndex. s.mu is held.
func (s *Service) admitLocked(r Room) error {
	if s.index[r.ID] != nil {
		return nil
	}
	if len(s.index) >= maxIndex {
		return fmt.Errorf("%w: the index holds %d rooms already", errBadRecord, len(s.index))
	}
	n := 0
	for _, e := range s.index {
		if e.room.Host == r.Host {
			n++
		}
	}
	if n >= maxRoomsPerHost {
		return fmt.Errorf("%w: host %s has %d rooms already", errBadRecord, r.Host.Short(), n)
	}
	return nil
}

// onRecord takes a room record from the mesh.
func (s *Service) onRecord(m mesh.BroadcastMsg) {
	r, err := decodeRoom(m.Payload)
	if err != nil {
		return // ValidateBroadcast let only valid records through
	}
	s.mu.Lock()
	if s.admitLocked(r) != nil {
		s.mu.Unlock()
		return
	}
	e := s.index[r.ID]
	if e != nil && e.room.Seq >= r.Seq {
		if e.room.Seq == r.Seq {
			e.heard = time.Now()
		}
		s.mu.Unlock()
		return
	}
	if s.own[r.ID] != nil {
		s.mu.Unlock()
		return // our own record, echoed
	}
	s.index[r.ID] = &indexEntry{room: r, env: m.Payload, heard: time.Now()}
	var pcs []*webrtc.PeerConnection
	if !r.Live {
		if rs := s.rooms[r.ID]; rs != nil {
			pcs = rs.closeLocked()
			delete(s.rooms, r.ID)
			s.dropSessionsLocked(r.ID)
		}
	}
	s.mu.Unlock()
	closeAll(pcs)
	s.changed()
}

// tidy expires the index and lets go of rooms nobody here watches.
func (s *Service) tidy(now time.Time) {
	var pcs []*webrtc.PeerConnection
	changed := false
	s.mu.Lock()
	for id, e := range s.index {
		if s.own[id] != nil || now.Sub(e.heard) < s.cfg.RoomTTL {
			continue
		}
		delete(s.index, id)
		changed = true
		if rs := s.rooms[id]; rs != nil {
			pcs = append(pcs, rs.closeLocked()...)
			delete(s.rooms, id)
			s.dropSessionsLocked(id)
		}
	}
	for id, rs := range s.rooms {
		if rs.host || len(rs.viewers) > 0 || len(rs.children) > 0 || rs.waiting > 0 {
			rs.idle = time.Time{}
			continue
		}
		if rs.idle.IsZero() {
			rs.idle = now
			continue
		}
		if now.Sub(rs.idle) >= s.cfg.Linger {
			pcs = append(pcs, rs.closeLocked()...)
			delete(s.rooms, id)
			changed = true
		}
	}
	s.mu.Unlock()
	closeAll(pcs)
	if changed {
		s.changed()
	}
}

// advertise puts the rooms this node can forward into its directory
// record: depth, children and fanout, so that nodes that want a room find
// parents with spare room.
func (s *Service) advertise() {
	type entry [3]int
	sum := map[string]entry{}
	s.mu.Lock()
	for id, rs := range s.rooms {
		if len(sum) >= maxAdvertised {
			break
		}
		if rs.carriesLocked() {
			sum[id] = entry{len(rs.path), len(rs.children) + rs.reserved, s.cfg.Fanout}
		}
	}
	key := fmt.Sprint(sum)
	if key == s.summary {
		s.mu.Unlock()
		return
	}
	s.summary = key
	s.mu.Unlock()
	var v any
	if len(sum) > 0 {
		v = map[string]any{"r": sum}
	}
	if err := s.node.SetResource(resourceName, v); err != nil {
		s.log.Debug("live summary", "err", err)
	}
}

// countBelow sets each relayed room's nodesBelow from the directory: the
// nodes that advertise the room at a depth greater than this node's.
func (s *Service) countBelow() {
	s.mu.Lock()
	relays := false
	for _, rs := range s.rooms {
		relays = relays || len(rs.children) > 0
	}
	s.mu.Unlock()
	if !relays {
		return
	}
	self := s.node.ID()
	depths := map[string][]int{}
	for _, r := range s.node.Directory() {
		raw, ok := r.Resources[resourceName]
		if !ok || r.ID == self {
			continue
		}
		var sum struct {
			R map[string][3]int `json:"r"`
		}
		if json.Unmarshal(raw, &sum) != nil {
			continue
		}
		for room, e := range sum.R {
			depths[room] = append(depths[room], e[0])
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, rs := range s.rooms {
		n := 0
		for _, d := range depths[id] {
			if d > len(rs.path) {
				n++
			}
		}
		rs.nodesBelow = n
	}
}

const (
	resourceName = "live"
	// maxAdvertised bounds the rooms in the directory summary (2 KiB).
	maxAdvertised = 24
)

// newSessionID returns a random session ID; kind is its first letter.
func newSessionID(kind byte) string {
	b := make([]byte, 12)
	rand.Read(b)
	return string(kind) + hex.EncodeToString(b)
}

// Session kinds, the first letter of their IDs.
const (
	publisherSession = 'p'
	viewerSession    = 'v'
	childSession     = 'c'
)

// viewersLocked counts this node's WHEP viewers and the WHEP requests in
// progress; s.mu is held.
func (s *Service) viewersLocked() int {
	n := s.watching
	for id := range s.sessions {
		if id[0] == viewerSession {
			n++
		}
	}
	return n
}

// IsPublisher reports whether a session ID is a WHIP publisher's.
func IsPublisher(id string) bool { return len(id) > 0 && id[0] == publisherSession }
