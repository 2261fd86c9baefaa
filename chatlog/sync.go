package chatlog

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/chatlog/recon"
	"github.com/catnest/catnest/mesh"
)

// History sync, initiator A and responder B, one channel (wire format in
// syncwire.go):
//
//	A → B  open  {ch, lower: A's lower bound}      B → A {session, lower: B's}
//	both reconcile the messages with time ≥ max(lowerA, lowerB)
//	A → B  recon {session, msg}  (repeated)        B → A {msg}
//	A → B  get   {session, ids}  (what A needs)    B → A {consumed, msgs}
//	A → B  put   {session, msgs} (what B needs)    B → A {}
//	A → B  close {session}                         B → A {}
//
// So neither side ever receives a message older than its own range, and
// only the difference travels. Retracted messages are outside the sets and
// never served; burn channels are never synced.
//
// Both directions move the newest messages first, in batches that walk
// back in time, each stored in one commit: a newcomer shows the recent
// history after the first answer. A newcomer that knows several holders
// (fetchHistory) reconciles with one and gets the messages from all of
// them at once: each takes the next batch of IDs, newest first, from a
// shared queue; what a helper does not hold is asked of the first.

const (
	maxSyncRounds = 64
	sessionTTL    = time.Minute
	// firstGet is how many IDs the first get of a source asks for; later
	// gets ask for about what the last answer had room for.
	firstGet = 256
	// peerBuilds is how many reconciliation sets this node builds for one
	// peer per SyncInterval, and at once: twice what an honest peer with
	// the same interval asks for (a sync of each channel it shares, at
	// most maxAdvertised).
	peerBuilds = 2 * maxAdvertised
	// maxBuildPeers bounds the peers whose builds are counted.
	maxBuildPeers = 256
	// maxPeerSessions bounds the sessions of one peer, so that it cannot
	// hold all maxSessions: an honest one opens at most one for each
	// channel this node advertises.
	maxPeerSessions = maxAdvertised
)

// reconOptions are the recon options of both sides of a sync: the message
// limit must agree, and both derive it from the frame limit.
func reconOptions() recon.Options { return recon.Options{MaxMessage: maxReconMessage} }

// responder is B's side of one sync.
type responder struct {
	peer    mesh.ID
	ch      ChannelID
	lower   int64
	expires time.Time // guarded by Service.mu; each request extends it

	mu      sync.Mutex // one recon step at a time
	session *recon.Session
	over    bool // the reconciliation is over; session is released
}

func toRecon(items []Item) []recon.Item {
	out := make([]recon.Item, len(items))
	for i, it := range items {
		out[i] = recon.Item{Time: it.Time, ID: it.ID}
	}
	return out
}

// Requester carries the history sync: this node answers peers' requests
// (Handle) and asks its own (Request).
type Requester interface {
	Handle(proto string, h mesh.Handler)
	Request(ctx context.Context, to mesh.ID, proto string, payload []byte, opts ...mesh.SendOption) ([]byte, error)
}

// Neighbours are the peers this node is linked to, which it syncs with:
// those linked now, those that link later, and the temporary links that
// fetching a history asks for (Expand).
type Neighbours interface {
	Peers() []mesh.PeerInfo
	SubscribePeers() (<-chan mesh.PeerEvent, func())
	Expand(ctx context.Context, ids ...mesh.ID) error
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

// syncOnce runs syncChannel unless a sync of the channel with the peer is
// already running.
func (s *Service) syncOnce(ctx context.Context, ch ChannelID, peer mesh.ID, helpers ...mesh.ID) error {
	k := syncKey{ch, peer}
	s.mu.Lock()
	if s.syncing[k] {
		s.mu.Unlock()
		return nil
	}
	s.syncing[k] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.syncing, k)
		s.mu.Unlock()
	}()
	err := s.syncChannel(ctx, ch, peer, helpers...)
	if err != nil && ctx.Err() == nil {
		s.log.Info("sync failed", "channel", ch, "peer", peer.Short(), "err", err)
	}
	return err
}

// fetchHistory syncs a newly joined channel with up to three of the nodes
// that hold it, asking the mesh for temporary links to those not linked:
// with the first, fetching from all of them at once; then with each of the
// others, for what only they hold.
func (s *Service) fetchHistory(ctx context.Context, ch ChannelID, holders []mesh.ID) {
	mrand.Shuffle(len(holders), func(i, j int) { holders[i], holders[j] = holders[j], holders[i] })
	holders = holders[:min(len(holders), 3)]
	xctx, cancel := context.WithTimeout(ctx, s.cfg.SyncTimeout)
	err := s.mesh.Expand(xctx, holders...)
	cancel()
	if err != nil {
		s.log.Debug("history: extra links", "err", err)
	}
	for i, h := range holders {
		var helpers []mesh.ID
		if i == 0 {
			helpers = holders[1:]
		}
		s.syncOnce(ctx, ch, h, helpers...)
		if ctx.Err() != nil {
			return
		}
	}
}

// syncStats counts what one sync took, for the log.
type syncStats struct {
	mu                     sync.Mutex
	rounds, received, sent int
}

func (st *syncStats) add(received, sent int) {
	st.mu.Lock()
	st.received += received
	st.sent += sent
	st.mu.Unlock()
}

// call sends one sync request. SyncTimeout bounds each request, not a
// whole sync, whose length grows with the history.
func (s *Service) call(ctx context.Context, peer mesh.ID, req []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SyncTimeout)
	defer cancel()
	return s.mesh.Request(ctx, peer, syncProto, req, mesh.OverBulk())
}

// source is a responder this node fetches from: a peer and its session.
type source struct {
	peer    mesh.ID
	session sessionID
}

// open starts a sync session with peer and returns it with the window:
// the later of the two lower bounds.
func (s *Service) open(ctx context.Context, ch ChannelID, peer mesh.ID, lower int64) (source, int64, error) {
	ans, err := s.call(ctx, peer, openRequest(ch, lower))
	if err != nil {
		return source{}, 0, err
	}
	sid, theirs, err := decodeOpenAnswer(ans)
	if err != nil {
		s.reject(peer, err)
		return source{}, 0, err
	}
	return source{peer: peer, session: sid}, max(lower, theirs), nil
}

// closeSession ends a session at the responder; it also expires by itself.
// It is sent even when ctx has ended, unless the link is gone.
func (s *Service) closeSession(ctx context.Context, src source) {
	s.call(context.WithoutCancel(ctx), src.peer, appendSyncHeader(nil, opClose, src.session))
}

// syncChannel reconciles one channel with a linked peer, as the initiator,
// fetching what this node lacks from the peer and from helpers (other
// holders of the channel), and sending the peer what it lacks.
func (s *Service) syncChannel(ctx context.Context, ch ChannelID, peer mesh.ID, helpers ...mesh.ID) error {
	var st syncStats
	start := time.Now()
	err := s.reconcile(ctx, ch, peer, helpers, &st)
	if err == nil && st.received+st.sent > 0 {
		s.log.Debug("synced", "channel", ch, "peer", peer.Short(), "helpers", len(helpers), "rounds", st.rounds,
			"received", st.received, "sent", st.sent, "took", time.Since(start).Round(time.Millisecond))
	}
	return err
}

func (s *Service) reconcile(ctx context.Context, ch ChannelID, peer mesh.ID, helpers []mesh.ID, st *syncStats) error {
	c, ok, err := s.store.Channel(ch)
	if err != nil || !ok || !c.Joined || c.Burn {
		return err
	}
	lower, err := s.store.Lower(ch, c.Range, time.Now())
	if err != nil {
		return err
	}
	src, window, err := s.open(ctx, ch, peer, lower)
	if err != nil {
		return err
	}
	defer s.closeSession(ctx, src)
	items, err := s.store.Items(ch, window)
	if err != nil {
		return err
	}
	x := recon.NewSession(recon.NewSet(toRecon(items)), reconOptions())
	items = nil
	out, err := x.Start()
	if err != nil {
		return err
	}
	for {
		if st.rounds++; st.rounds > maxSyncRounds {
			return errors.New("reconciliation did not finish")
		}
		ans, err := s.call(ctx, peer, append(appendSyncHeader(make([]byte, 0, syncHeader+len(out)), opRecon, src.session), out...))
		if err != nil {
			return err
		}
		if x.Done() {
			break // that was our last word
		}
		if len(ans) == 0 {
			return errors.New("the peer stopped reconciling early")
		}
		if out, err = x.Next(ans); err != nil {
			s.reject(peer, err)
			return err
		}
		if out == nil {
			break // Next returned nil: Done, and nothing to say
		}
	}
	if need := newestFirst(x.Need()); len(need) > 0 {
		if err := s.fetch(ctx, ch, need, src, lower, helpers, st); err != nil {
			return err
		}
	}
	return s.push(ctx, ch, window, src, newestFirst(x.Have()), st)
}

// newestFirst turns recon's oldest-first IDs into IDs, newest first.
func newestFirst(ids [][32]byte) []ID {
	out := make([]ID, len(ids))
	for i, id := range ids {
		out[len(ids)-1-i] = id
	}
	return out
}

// push sends src the messages have (newest first), as many to a put as
// fit a frame.
func (s *Service) push(ctx context.Context, ch ChannelID, window int64, src source, have []ID, st *syncStats) error {
	for len(have) > 0 {
		head := appendSyncHeader(make([]byte, 0, maxSyncFrame), opPut, src.session)
		req, n, err := s.store.appendEncoded(head, maxSyncFrame, ch, window, have)
		if err != nil {
			return err
		}
		if len(req) > len(head) {
			if _, err := s.call(ctx, src.peer, req); err != nil {
				return err
			}
			st.add(0, countEntries(req[len(head):]))
		}
		have = have[n:]
	}
	return nil
}

func countEntries(b []byte) int {
	n := 0
	for len(b) > 0 {
		v, k := binary.Uvarint(b)
		b = b[k+int(v):]
		n++
	}
	return n
}

// fetchQueue hands out the IDs that a sync still needs, newest first, to
// the sources that fetch them. It is safe for concurrent use.
type fetchQueue struct {
	mu    sync.Mutex
	cond  sync.Cond
	again []ID // given back unread: newer than main, taken before it
	main  []ID
	first []ID // only for the first source: what a helper did not serve
	busy  int  // batches taken and not yet given back
}

func newFetchQueue(need []ID) *fetchQueue {
	q := &fetchQueue{main: need}
	q.cond.L = &q.mu
	return q
}

// take returns up to k IDs for a source, or nil when there is nothing left
// for it. The first source waits while others still have batches out,
// since what they do not serve comes to it.
func (q *fetchQueue) take(first bool, k int) []ID {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		for _, l := range []*[]ID{&q.first, &q.again, &q.main} {
			if l == &q.first && !first || len(*l) == 0 {
				continue
			}
			n := min(k, len(*l))
			ids := slices.Clone((*l)[:n])
			*l = (*l)[n:]
			q.busy++
			return ids
		}
		if !first || q.busy == 0 {
			return nil
		}
		q.cond.Wait()
	}
}

// giveBack returns a batch: rest was not gone through and goes back to the
// front; missing was gone through and not served, which only the first
// source is asked for again (and, if it does not serve it either, it was
// retracted or dropped meanwhile).
func (q *fetchQueue) giveBack(rest, missing []ID, first bool) {
	q.mu.Lock()
	q.again = append(slices.Clone(rest), q.again...)
	if !first {
		q.first = append(q.first, missing...)
	}
	q.busy--
	q.mu.Unlock()
	q.cond.Broadcast()
}

// fetch gets the messages need (newest first) from src, which holds them
// all, and from the helpers at once, storing each answer in one commit.
// The first batch comes from src alone, so that the first messages stored
// are the newest; after it the sources overlap.
func (s *Service) fetch(ctx context.Context, ch ChannelID, need []ID, src source, lower int64, helpers []mesh.ID, st *syncStats) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx) // ends the helpers when src fails
	defer cancel()
	q := newFetchQueue(need)
	firstStored := make(chan struct{})
	for _, h := range helpers {
		wg.Go(func() {
			hs, _, err := s.open(ctx, ch, h, lower)
			if err != nil {
				s.log.Debug("history: helper", "peer", h.Short(), "err", err)
				return
			}
			defer s.closeSession(ctx, hs)
			select {
			case <-firstStored:
			case <-ctx.Done():
				return
			}
			if err := s.fetchFrom(ctx, ch, q, hs, false, nil, st); err != nil && ctx.Err() == nil {
				s.log.Debug("history: helper", "peer", h.Short(), "err", err)
			}
		})
	}
	return s.fetchFrom(ctx, ch, q, src, true, firstStored, st)
}

// getAnswer is an answer to one get, read and checked.
type getAnswer struct {
	ids      []ID // asked for
	consumed int
	msgs     []*Message
	missing  []ID // gone through and not served
	err      error
}

// get asks src for ids and checks the answer: every message verifies and
// is one of the IDs gone through, in the order asked.
func (s *Service) get(ctx context.Context, src source, ids []ID) getAnswer {
	a := getAnswer{ids: ids}
	ans, err := s.call(ctx, src.peer, getRequest(src.session, ids))
	if err != nil {
		a.err = err
		return a
	}
	consumed, raw, err := decodeGetAnswer(ans, len(ids))
	if err == nil && consumed == 0 {
		err = badSync("get answer went through no ids")
	}
	if err != nil {
		s.reject(src.peer, err)
		a.err = err
		return a
	}
	a.consumed = consumed
	a.msgs = make([]*Message, 0, len(raw))
	ms, err := decodeAll(raw)
	if err != nil {
		s.reject(src.peer, err)
		a.err = err
		return a
	}
	k := 0
	for _, m := range ms {
		for k < consumed && ids[k] != m.ID {
			a.missing = append(a.missing, ids[k])
			k++
		}
		if k == consumed {
			a.err = badSync("served a message it was not asked for, or out of order")
			s.reject(src.peer, a.err)
			return a
		}
		k++
		a.msgs = append(a.msgs, m)
	}
	a.missing = append(a.missing, ids[k:consumed]...)
	return a
}

// decodeAll decodes and verifies messages on every core: signature checks
// are most of a newcomer's work.
func decodeAll(raw [][]byte) ([]*Message, error) {
	ms := make([]*Message, len(raw))
	errs := make([]error, len(raw))
	workers := min(runtime.GOMAXPROCS(0), (len(raw)+31)/32)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(raw); i += workers {
				ms[i], errs[i] = Decode(raw[i])
			}
		})
	}
	wg.Wait()
	return ms, errors.Join(errs...)
}

// fetchFrom fetches batches from one source until the queue has nothing
// left for it. While a batch is verified and stored, the next is already
// asked for, and batches are stored in the order taken, so one source
// alone stores strictly newest first. firstStored, if not nil, is closed
// after the first batch is stored (or when fetchFrom returns).
func (s *Service) fetchFrom(ctx context.Context, ch ChannelID, q *fetchQueue, src source, first bool, firstStored chan struct{}, st *syncStats) error {
	signal := func() {
		if firstStored != nil {
			close(firstStored)
			firstStored = nil
		}
	}
	defer signal()
	k := firstGet
	ids := q.take(first, k)
	if ids == nil {
		return nil
	}
	a := s.get(ctx, src, ids)
	for {
		if a.err != nil {
			q.giveBack(a.ids, nil, first)
			return a.err
		}
		q.giveBack(a.ids[a.consumed:], a.missing, first)
		// Ask for about as many as the last answer had room for.
		if a.consumed == len(a.ids) {
			k = min(2*len(a.ids), maxGetIDs)
		} else {
			k = max(a.consumed+a.consumed/8, 1)
		}
		var next chan getAnswer
		if ids := q.take(first, k); ids != nil {
			next = make(chan getAnswer, 1)
			go func() { next <- s.get(ctx, src, ids) }()
		}
		err := s.acceptMany(ctx, ch, a.msgs)
		if err != nil && ctx.Err() == nil && !errors.Is(err, errLocal) {
			// Not when the sync was called off (this node stops, or the
			// first source failed while a helper's batch was stored),
			// nor for a failure of this node's own.
			s.reject(src.peer, err)
		}
		if err == nil {
			st.add(len(a.msgs), 0)
			signal()
		}
		if next == nil {
			return err
		}
		a = <-next
		if err != nil {
			q.giveBack(a.ids, nil, first)
			return err
		}
	}
}

// handleSync answers a peer's sync requests, as the responder.
func (s *Service) handleSync(ctx context.Context, msg *mesh.Message) ([]byte, error) {
	req, err := decodeSyncRequest(msg.Payload)
	if err != nil {
		s.reject(msg.From, err)
		return nil, ErrInvalidInput
	}
	return s.respond(ctx, msg.From, req)
}

func (s *Service) respond(ctx context.Context, from mesh.ID, req syncReq) ([]byte, error) {
	now := time.Now()
	if req.op == opOpen {
		return s.openSession(from, req, now)
	}
	key := string(req.session[:])
	s.mu.Lock()
	r := s.sessions[key]
	if r != nil && (r.peer != from || now.After(r.expires)) {
		r = nil
	}
	if r != nil {
		r.expires = now.Add(sessionTTL)
	}
	if r != nil && req.op == opClose {
		delete(s.sessions, key)
	}
	s.mu.Unlock()
	if r == nil {
		return nil, errors.New("no such sync session")
	}
	switch req.op {
	case opRecon:
		out, err := r.next(s, req.msg)
		if err != nil {
			if errors.Is(err, recon.ErrBadMessage) || errors.Is(err, recon.ErrTooManyRounds) {
				s.reject(from, err)
				return nil, ErrInvalidInput
			}
			return nil, err
		}
		return out, nil
	case opGet:
		return s.store.getAnswer(r.ch, r.lower, req.ids)
	case opPut:
		ms := make([]*Message, 0, len(req.msgs))
		for _, b := range req.msgs {
			m, err := Decode(b)
			if err != nil {
				s.reject(from, err)
				return nil, ErrInvalidInput
			}
			ms = append(ms, m)
		}
		if err := s.acceptMany(ctx, r.ch, ms); errors.Is(err, errLocal) {
			return nil, err
		} else if err != nil {
			s.reject(from, err)
			return nil, ErrInvalidInput
		}
		return nil, nil
	}
	return nil, nil // close
}

// openSession answers an open: it agrees on the window and keeps a
// session for the peer and channel.
func (s *Service) openSession(from mesh.ID, req syncReq, now time.Time) ([]byte, error) {
	c, ok, err := s.store.Channel(req.channel)
	if err != nil || !ok || !c.Joined || c.Burn {
		return nil, ErrUnknownChannel // burn channels are never served
	}
	lower, err := s.store.Lower(req.channel, c.Range, now)
	if err != nil {
		return nil, err
	}
	var sid sessionID
	rand.Read(sid[:])
	r := &responder{peer: from, ch: req.channel, lower: max(lower, req.lower), expires: now.Add(sessionTTL)}
	s.mu.Lock()
	theirs := 0
	for k, o := range s.sessions {
		// One session per peer and channel: a new open ends the last.
		if now.After(o.expires) || (o.peer == from && o.ch == req.channel) {
			delete(s.sessions, k)
		} else if o.peer == from {
			theirs++
		}
	}
	if len(s.sessions) >= maxSessions || theirs >= maxPeerSessions {
		s.mu.Unlock()
		return nil, errors.New("busy: too many syncs")
	}
	s.sessions[string(sid[:])] = r
	s.mu.Unlock()
	return binary.AppendVarint(sid[:], lower), nil
}

// next answers one recon step. The set is built at the first step, so that
// a session only fetched from (a helper's) costs no set; it is released
// when the reconciliation is over.
func (r *responder) next(s *Service, msg []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.over {
		return nil, fmt.Errorf("%w: the reconciliation is over", recon.ErrBadMessage)
	}
	if r.session == nil {
		if !s.buildAllowed(r.peer) {
			return nil, errors.New("busy: too many syncs from this peer")
		}
		items, err := s.store.Items(r.ch, r.lower)
		if err != nil {
			return nil, err
		}
		// The initiator sends what this side lacks: keeping the IDs it
		// lists would only let a hostile one fill memory.
		opts := reconOptions()
		opts.SkipNeed = true
		r.session = recon.NewSession(recon.NewSet(toRecon(items)), opts)
	}
	out, err := r.session.Next(msg)
	if err != nil || out == nil || r.session.Done() {
		r.session, r.over = nil, true
	}
	return out, err
}

// syncBuilds holds each peer's budget of reconciliation sets.
type syncBuilds map[mesh.ID]*rate.Limiter

// buildAllowed reports whether this node may build one more reconciliation
// set for peer now. A set costs a load of the channel's items (40 ms and
// 36 MB at 100,000 messages, see BenchmarkSyncItems) for a few bytes from
// the peer; without a budget, a peer that opened and started syncs in a
// loop would keep a core busy.
func (s *Service) buildAllowed(peer mesh.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.builds[peer]
	if l == nil {
		if s.builds == nil {
			s.builds = make(syncBuilds)
		}
		if len(s.builds) >= maxBuildPeers {
			// A full budget is what a new peer gets anyway.
			for p, o := range s.builds {
				if o.Tokens() >= peerBuilds {
					delete(s.builds, p)
				}
			}
			if len(s.builds) >= maxBuildPeers {
				return false
			}
		}
		l = rate.NewLimiter(rate.Every(s.cfg.SyncInterval/peerBuilds), peerBuilds)
		s.builds[peer] = l
	}
	return l.Allow()
}
