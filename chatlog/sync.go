package chatlog

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/catnest/catnest/chatlog/recon"
	"github.com/catnest/catnest/mesh"
)

// History sync, initiator A and responder B, one channel:
//
//	A → B  open  {ch, lower: A's lower bound}      B → A {session, lower: B's}
//	both reconcile the messages with time ≥ max(lowerA, lowerB)
//	A → B  recon {session, msg}  (repeated)        B → A {msg}
//	A → B  get   {session, ids}  (what A needs)    B → A {msgs}
//	A → B  put   {session, msgs} (what B needs)    B → A {}
//
// So neither side ever receives a message older than its own range, and
// only the difference travels. Retracted messages are outside the sets and
// never served; burn channels are never synced.

const (
	maxSyncRounds  = 64
	maxGetIDs      = 4096
	sessionTTL     = time.Minute
	maxSyncRequest = 512 << 10
)

type syncMsg struct {
	Op      string   `json:"op"`
	Channel string   `json:"ch,omitempty"`
	Session string   `json:"s,omitempty"`
	Lower   int64    `json:"lower,omitempty"`
	Msg     []byte   `json:"msg,omitempty"`
	IDs     [][]byte `json:"ids,omitempty"`
	Msgs    [][]byte `json:"msgs,omitempty"`
	Done    bool     `json:"done,omitempty"`
}

// responder is B's side of one sync.
type responder struct {
	peer    mesh.ID
	ch      ChannelID
	lower   int64
	session *recon.Session
	expires time.Time
}

func toRecon(items []Item) []recon.Item {
	out := make([]recon.Item, len(items))
	for i, it := range items {
		out[i] = recon.Item{Time: it.Time, ID: it.ID}
	}
	return out
}

// syncWithPeer starts syncs of the channels this node shares with a peer
// that just linked. Only the end with the smaller ID starts, so that a new
// link is reconciled once.
func (s *Service) syncWithPeer(ctx context.Context, wg *sync.WaitGroup, peer mesh.ID) {
	if peer < s.mesh.ID() {
		return
	}
	wg.Go(func() {
		// The peer's directory record comes just after the link.
		t := time.NewTimer(time.Second)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		for _, ch := range s.shared(peer) {
			s.syncOnce(ctx, ch, peer)
		}
	})
}

// shared lists the joined, stored channels that peer advertises.
func (s *Service) shared(peer mesh.ID) []ChannelID {
	r, ok := s.mesh.Lookup(peer)
	if !ok {
		return nil
	}
	var out []ChannelID
	for _, a := range adverts(r) {
		id, err := ParseChannelID(a.ID)
		if err != nil {
			continue
		}
		if c, ok, _ := s.store.Channel(id); ok && c.Joined && !c.Burn {
			out = append(out, id)
		}
	}
	return out
}

// syncRound syncs each joined channel with one random linked peer that
// holds it.
func (s *Service) syncRound(ctx context.Context, wg *sync.WaitGroup) {
	peers := s.mesh.Peers()
	mrand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	done := map[ChannelID]bool{}
	for _, p := range peers {
		for _, ch := range s.shared(p.ID) {
			if !done[ch] {
				done[ch] = true
				wg.Go(func() { s.syncOnce(ctx, ch, p.ID) })
			}
		}
	}
}

// syncOnce runs syncChannel unless the same sync is already running.
func (s *Service) syncOnce(ctx context.Context, ch ChannelID, peer mesh.ID) {
	k := syncKey{ch, peer}
	s.mu.Lock()
	if s.syncing[k] {
		s.mu.Unlock()
		return
	}
	s.syncing[k] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.syncing, k)
		s.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SyncTimeout)
	defer cancel()
	if err := s.syncChannel(ctx, ch, peer); err != nil && ctx.Err() == nil {
		s.log.Info("sync failed", "channel", ch, "peer", peer.Short(), "err", err)
	}
}

// syncStats counts what one sync took, for the log.
type syncStats struct {
	rounds, received, sent int
}

func (s *Service) call(ctx context.Context, peer mesh.ID, req syncMsg, bulk bool) (syncMsg, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return syncMsg{}, err
	}
	var opts []mesh.SendOption
	if bulk {
		opts = append(opts, mesh.OverBulk())
	}
	out, err := s.mesh.Request(ctx, peer, syncProto, b, opts...)
	if err != nil {
		return syncMsg{}, err
	}
	var resp syncMsg
	if err := json.Unmarshal(out, &resp); err != nil {
		return syncMsg{}, fmt.Errorf("%w: sync answer: %v", ErrInvalidInput, err)
	}
	return resp, nil
}

// syncChannel reconciles one channel with a linked peer, as the initiator.
func (s *Service) syncChannel(ctx context.Context, ch ChannelID, peer mesh.ID) error {
	st, err := s.reconcile(ctx, ch, peer)
	if err == nil && st.received+st.sent > 0 {
		s.log.Debug("synced", "channel", ch, "peer", peer.Short(), "rounds", st.rounds, "received", st.received, "sent", st.sent)
	}
	return err
}

func (s *Service) reconcile(ctx context.Context, ch ChannelID, peer mesh.ID) (syncStats, error) {
	var st syncStats
	c, ok, err := s.store.Channel(ch)
	if err != nil || !ok || !c.Joined || c.Burn {
		return st, err
	}
	lower, err := s.store.Lower(ch, c.Range, time.Now())
	if err != nil {
		return st, err
	}
	open, err := s.call(ctx, peer, syncMsg{Op: "open", Channel: ch.String(), Lower: lower}, false)
	if err != nil {
		return st, err
	}
	window := max(lower, open.Lower)
	items, err := s.store.Items(ch, window)
	if err != nil {
		return st, err
	}
	x := recon.NewSession(recon.NewSet(toRecon(items)), recon.Options{})
	out, err := x.Start()
	if err != nil {
		return st, err
	}
	for {
		if st.rounds++; st.rounds > maxSyncRounds {
			return st, errors.New("reconciliation did not finish")
		}
		resp, err := s.call(ctx, peer, syncMsg{Op: "recon", Session: open.Session, Msg: out}, false)
		if err != nil {
			return st, err
		}
		if x.Done() {
			break // that was our last word
		}
		if len(resp.Msg) == 0 {
			return st, errors.New("the peer stopped reconciling early")
		}
		if out, err = x.Next(resp.Msg); err != nil {
			s.reject(peer, err)
			return st, err
		}
		if out == nil {
			if x.Done() {
				break
			}
			return st, errors.New("reconciliation stalled")
		}
	}

	// Fetch what we lack.
	need := x.Need()
	for len(need) > 0 {
		k := min(len(need), maxGetIDs)
		ids := make([][]byte, k)
		for i := range k {
			ids[i] = need[i][:]
		}
		resp, err := s.call(ctx, peer, syncMsg{Op: "get", Session: open.Session, IDs: ids}, true)
		if err != nil {
			return st, err
		}
		got := map[ID]bool{}
		var ms []*Message
		for _, b := range resp.Msgs {
			m, err := Decode(b)
			if err != nil {
				s.reject(peer, err)
				return st, err
			}
			got[m.ID] = true
			ms = append(ms, m)
		}
		if err := s.acceptMany(ctx, ch, ms); err != nil {
			s.reject(peer, err)
			return st, err
		}
		st.received += len(ms)
		if len(resp.Msgs) == 0 {
			break // the peer serves no more of these
		}
		// What did not fit in the answer is asked for again; what the
		// peer did not serve (retracted meanwhile) is not.
		var rest [][32]byte
		if !resp.Done {
			for _, id := range need[:k] {
				if !got[ID(id)] {
					rest = append(rest, id)
				}
			}
		}
		need = append(rest, need[k:]...)
	}

	// Send what the peer lacks.
	have := x.Have()
	var batch [][]byte
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := s.call(ctx, peer, syncMsg{Op: "put", Session: open.Session, Msgs: batch}, true)
		st.sent += len(batch)
		batch, size = nil, 0
		return err
	}
	for _, id := range have {
		m, ok, err := s.store.Get(ID(id))
		if err != nil || !ok || m.Time < window {
			continue
		}
		if r, _ := s.store.Retracted(m.ID); r {
			continue
		}
		b := m.Encode()
		if size+len(b) > syncBatch {
			if err := flush(); err != nil {
				return st, err
			}
		}
		batch = append(batch, b)
		size += len(b)
	}
	if err := flush(); err != nil {
		return st, err
	}
	s.call(ctx, peer, syncMsg{Op: "close", Session: open.Session}, false)
	return st, nil
}

// decodeSyncRequest parses a peer's sync request and checks its form:
// size, op, and the sizes of its ids and messages.
func decodeSyncRequest(b []byte) (syncMsg, error) {
	var req syncMsg
	if len(b) > maxSyncRequest {
		return req, fmt.Errorf("%w: sync request of %d bytes", ErrInvalidInput, len(b))
	}
	if err := json.Unmarshal(b, &req); err != nil {
		return req, fmt.Errorf("%w: sync request: %v", ErrInvalidInput, err)
	}
	switch req.Op {
	case "open", "recon", "get", "put", "close":
	default:
		return req, fmt.Errorf("%w: sync op %q", ErrInvalidInput, req.Op)
	}
	if len(req.IDs) > maxGetIDs {
		return req, fmt.Errorf("%w: %d ids", ErrInvalidInput, len(req.IDs))
	}
	for _, id := range req.IDs {
		if len(id) != len(ID{}) {
			return req, fmt.Errorf("%w: id of %d bytes", ErrInvalidInput, len(id))
		}
	}
	for _, m := range req.Msgs {
		if len(m) > MaxEncoded {
			return req, fmt.Errorf("%w: message of %d bytes", ErrInvalidInput, len(m))
		}
	}
	return req, nil
}

// handleSync answers a peer's sync requests, as the responder.
func (s *Service) handleSync(ctx context.Context, msg *mesh.Message) ([]byte, error) {
	req, err := decodeSyncRequest(msg.Payload)
	if err != nil {
		s.reject(msg.From, err)
		return nil, ErrInvalidInput
	}
	resp, err := s.respond(ctx, msg.From, req)
	if err != nil {
		return nil, err
	}
	return json.Marshal(resp)
}

func (s *Service) respond(ctx context.Context, from mesh.ID, req syncMsg) (syncMsg, error) {
	now := time.Now()
	if req.Op == "open" {
		ch, err := ParseChannelID(req.Channel)
		if err != nil {
			return syncMsg{}, ErrUnknownChannel
		}
		c, ok, err := s.store.Channel(ch)
		if err != nil || !ok || !c.Joined || c.Burn {
			return syncMsg{}, ErrUnknownChannel // burn channels are never served
		}
		lower, err := s.store.Lower(ch, c.Range, now)
		if err != nil {
			return syncMsg{}, err
		}
		window := max(lower, req.Lower)
		items, err := s.store.Items(ch, window)
		if err != nil {
			return syncMsg{}, err
		}
		var sid [12]byte
		rand.Read(sid[:])
		r := &responder{peer: from, ch: ch, lower: window, expires: now.Add(sessionTTL),
			session: recon.NewSession(recon.NewSet(toRecon(items)), recon.Options{})}
		s.mu.Lock()
		for k, o := range s.sessions {
			// One session per peer and channel: a new open ends the last.
			if now.After(o.expires) || (o.peer == from && o.ch == ch) {
				delete(s.sessions, k)
			}
		}
		if len(s.sessions) >= maxSessions {
			s.mu.Unlock()
			return syncMsg{}, errors.New("busy: too many syncs")
		}
		key := fmt.Sprintf("%x", sid)
		s.sessions[key] = r
		s.mu.Unlock()
		return syncMsg{Session: key, Lower: lower}, nil
	}

	s.mu.Lock()
	r := s.sessions[req.Session]
	if r != nil && r.peer != from {
		r = nil
	}
	if r != nil && req.Op == "close" {
		delete(s.sessions, req.Session)
	}
	s.mu.Unlock()
	if r == nil {
		return syncMsg{}, errors.New("no such sync session")
	}
	switch req.Op {
	case "recon":
		out, err := r.session.Next(req.Msg)
		if err != nil {
			s.reject(from, err)
			return syncMsg{}, ErrInvalidInput
		}
		return syncMsg{Msg: out}, nil
	case "get":
		var msgs [][]byte
		size := 0
		done := true
		for _, raw := range req.IDs {
			id := ID(raw)
			m, ok, err := s.store.Get(id)
			if err != nil || !ok || m.Channel != r.ch || m.Time < r.lower {
				continue
			}
			if retracted, _ := s.store.Retracted(id); retracted {
				continue
			}
			b := m.Encode()
			if size+len(b) > syncBatch {
				done = false
				break
			}
			msgs = append(msgs, b)
			size += len(b)
		}
		return syncMsg{Msgs: msgs, Done: done}, nil
	case "put":
		ms := make([]*Message, 0, len(req.Msgs))
		for _, b := range req.Msgs {
			m, err := Decode(b)
			if err != nil {
				s.reject(from, err)
				return syncMsg{}, ErrInvalidInput
			}
			ms = append(ms, m)
		}
		if err := s.acceptMany(ctx, r.ch, ms); err != nil {
			s.reject(from, err)
			return syncMsg{}, ErrInvalidInput
		}
		return syncMsg{}, nil
	case "close":
		return syncMsg{}, nil
	}
	return syncMsg{}, ErrInvalidInput
}
