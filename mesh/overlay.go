package mesh

import (
	"cmp"
	"context"
	"math/rand/v2"
	"slices"
	"time"
)

// The overlay keeps each node at about TargetPeers random links and keeps
// exploring: every ReplaceInterval a node at its target dials one more
// random node and then drops its worst-scoring link, so the mesh does not
// settle on the first links it happened to make.

// Penalize scores a peer down for bad input: a malformed frame, a forged
// record or message, a flood. The mesh's own protocols call it, and so do
// services that reject a peer's input. A peer with many offences is the
// first link the node drops when it explores, and one that offends faster
// than Config.PenaltyThreshold per Config.PenaltyWindow is disconnected
// and banned for a while. A peer no longer linked is let go (the offence
// is logged at debug).
func (n *Node) Penalize(id ID, reason string) {
	if l := n.link(id); l != nil {
		l.offend(reason)
		return
	}
	n.log.Debug("offence from a peer no longer linked", "peer", id.Short(), "reason", reason)
}

// offend counts one offence of the link's peer and bans the peer when its
// offences outpace the threshold. The count leaks at PenaltyThreshold per
// PenaltyWindow, so only a peer that keeps offending faster than that
// fills it. It is kept by node, not by link, so that a peer cannot empty
// it by linking again.
func (l *link) offend(reason string) {
	n := l.n
	l.failures.Add(1)
	n.log.Debug("peer scored down", "peer", l.remote.Short(), "reason", reason)
	if n.cfg.PenaltyThreshold < 0 {
		return
	}
	n.mu.Lock()
	over := n.offences.add(l.remote, time.Now(), n.cfg.PenaltyThreshold, n.cfg.PenaltyWindow)
	n.mu.Unlock()
	if over {
		n.ban(l, reason)
	}
}

// offences holds, per node, the leaky count of its offences (see offend).
// It is bounded: when full, the counts that have leaked away are
// forgotten, then the lowest. The node's mutex guards it.
type offences map[ID]offenceCount

type offenceCount struct {
	level float64
	at    time.Time
}

// add counts one offence of id at now and reports whether its count is
// over limit.
func (o offences) add(id ID, now time.Time, limit int, window time.Duration) bool {
	level := func(c offenceCount) float64 {
		leak := float64(limit) * float64(now.Sub(c.at)) / float64(window)
		return max(0, c.level-leak)
	}
	c, ok := o[id]
	if !ok && len(o) >= maxBackoffs {
		var low ID
		for k, v := range o {
			if level(v) == 0 {
				delete(o, k)
			} else if low == "" || level(v) < level(o[low]) {
				low = k
			}
		}
		if len(o) >= maxBackoffs {
			delete(o, low)
		}
	}
	c = offenceCount{level: level(c) + 1, at: now}
	o[id] = c
	return c.level > float64(limit)
}

// ban cuts l's peer off: it closes the link, and for the ban's time the
// node neither dials the peer nor accepts its links or offers.
func (n *Node) ban(l *link, reason string) {
	now := time.Now()
	n.mu.Lock()
	_, already := n.bans.blocked(l.remote, now)
	var wait time.Duration
	if !already {
		wait = n.bans.add(l.remote, now, n.cfg.PenaltyBackoff, n.cfg.PenaltyBackoffMax)
	}
	n.mu.Unlock()
	if !already {
		n.log.Warn("peer banned for its offences", "peer", l.remote.Short(), "for", wait, "last", reason)
	}
	l.conn.Close()
}

// banned reports whether id is banned now.
func (n *Node) banned(id ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.bans.blocked(id, time.Now())
	return ok
}

// score rates a link: higher is better. Round-trip time and failures
// count against it, goodput for it. DESIGN §5 also counts whether the peer
// shares this node's channels or holds what it fetches; that term comes
// with the services that need it (shards), through the directory records.
func (n *Node) score(l *link) float64 {
	s := 0.0
	rttMS := float64(l.rtt.Load()) / 1e6
	s -= rttMS / 200
	s -= float64(l.failures.Load())
	if age := time.Since(l.since).Seconds(); age > 1 {
		mbps := float64(l.bytesIn.Load()) / age / 1e6
		s += min(mbps, 10) / 10
	}
	return s
}

// explore dials one random new node and, once it is linked, drops the
// worst link above the target.
func (n *Node) explore(ctx context.Context) {
	n.mu.Lock()
	count := len(n.links)
	n.mu.Unlock()
	if count < n.cfg.TargetPeers {
		return // fill is still at work
	}
	if count >= n.cfg.HighPeers {
		// No room to dial: make room first.
		n.trim(ctx, n.cfg.LowPeers)
	}
	cands := n.candidates()
	for _, id := range cands {
		if n.link(id) != nil || n.banned(id) {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, n.cfg.DialTimeout)
		err := n.Connect(dctx, id)
		cancel()
		if err != nil {
			n.log.Debug("explore: dial failed", "peer", id.Short(), "err", err)
			return
		}
		n.log.Debug("explore: new link", "peer", id.Short())
		n.trim(ctx, n.cfg.LowPeers)
		return
	}
}

// trim drops the worst-scoring link when the node is above its target.
// It spares temporary links (dropIdle's business), links in use by a
// service, links younger than minLinkAge, and links whose peer advertises
// spare or fewer links, so that the peer does not fall below that count.
// The advertised count lags, so the peer is asked before the drop
// (askTrim); when it says no, the next worst link is asked. It returns
// the peer it dropped, if any.
func (n *Node) trim(ctx context.Context, spare int) ID {
	n.mu.Lock()
	if len(n.links) <= n.cfg.TargetPeers {
		n.mu.Unlock()
		return ""
	}
	links := make([]*link, 0, len(n.links))
	for _, l := range n.links {
		links = append(links, l)
	}
	n.mu.Unlock()

	type scored struct {
		l *link
		s float64
	}
	var cands []scored
	for _, l := range links {
		if l.temporary.Load() || time.Since(l.since) < n.minLinkAge() {
			continue
		}
		if time.Duration(n.now()-l.lastActive.Load()) < n.cfg.IdleTimeout {
			continue // in use by a service (a transfer, a sync): not now
		}
		if r, ok := n.Lookup(l.remote); !ok || len(r.Neighbors) <= spare {
			continue // the peer needs this link more than we need to shed it
		}
		cands = append(cands, scored{l, n.score(l)})
	}
	slices.SortStableFunc(cands, func(a, b scored) int { return cmp.Compare(a.s, b.s) })
	// Each ask may wait trimAskTimeout, and the maintainer waits for trim.
	for i, c := range cands {
		if i == maxTrimAsks {
			break
		}
		if !n.askTrim(ctx, c.l, spare) {
			// A peer's no holds until its record catches up (the record
			// check above then spares it without asking); a peer that
			// keeps saying no while its record says it can spare the
			// link would keep its slot for good, so a run of noes holds
			// for trimRefuseLimit at most. A no after none for as long
			// starts a new run: an honest peer that said no once (to a
			// trim while others it had let go were leaving) must not
			// lose the link at its next no, however long after.
			now := time.Now().UnixNano()
			first, last := c.l.trimRefused.Load(), c.l.trimRefusedLast.Load()
			if first == 0 || time.Duration(now-last) >= trimRefuseLimit {
				first = now
				c.l.trimRefused.Store(now)
			}
			c.l.trimRefusedLast.Store(now)
			if time.Duration(now-first) < trimRefuseLimit {
				n.log.Debug("trim: the peer cannot spare the link", "peer", c.l.remote.Short())
				continue
			}
			n.log.Info("trim: the peer has said no for too long while its record lists enough links: dropped all the same", "peer", c.l.remote.Short())
		}
		n.log.Debug("dropping worst link", "peer", c.l.remote.Short(), "score", c.s)
		c.l.conn.Close()
		return c.l.remote
	}
	return ""
}

// minLinkAge: younger links are not trimmed, so that a burst of links
// made at once (every node starting together) is judged on settled
// neighbour counts.
func (n *Node) minLinkAge() time.Duration { return 5 * n.cfg.MaintainInterval }

// Expand asks for temporary links to the given nodes, for a transfer from
// them: the node may go up to HighPeers links, and drops the temporary
// ones again when they have been idle for IdleTimeout while it is above
// its target. It returns the first error, after trying every node.
func (n *Node) Expand(ctx context.Context, ids ...ID) error {
	var first error
	for _, id := range ids {
		if id == n.id {
			continue
		}
		if n.link(id) != nil {
			continue
		}
		ordinary, err := n.connectKind(ctx, id, true)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		if l := n.link(id); l != nil && !ordinary {
			l.temporary.Store(true)
			l.lastActive.Store(n.now())
		}
	}
	return first
}

// dropIdle closes temporary links idle past IdleTimeout while the node
// is above its target.
func (n *Node) dropIdle() {
	n.mu.Lock()
	defer n.mu.Unlock()
	extra := len(n.links) - n.cfg.TargetPeers
	for _, l := range n.links {
		if extra <= 0 {
			return
		}
		if l.temporary.Load() && time.Duration(n.now()-l.lastActive.Load()) > n.cfg.IdleTimeout {
			n.log.Debug("dropping idle temporary link", "peer", l.remote.Short())
			l.conn.Close()
			extra--
		}
	}
}

// candidates lists nodes that may be dialed, in random order: the online
// nodes of the directory, the transport's candidates and the bootstrap list.
// It does not wait for the transport: it takes the last list the
// transport gave and, when that is older than MaintainInterval, asks
// refreshCandidates for a new one.
func (n *Node) candidates() []ID {
	var ids []ID
	for _, r := range n.Directory() {
		if r.ID != n.id {
			ids = append(ids, r.ID)
		}
	}
	n.mu.Lock()
	ids = append(ids, n.cands...)
	stale := time.Since(n.candsAt) >= n.cfg.MaintainInterval
	n.mu.Unlock()
	if stale {
		select {
		case n.candsWant <- struct{}{}:
		default: // a refresh is already asked for
		}
	}
	ids = append(ids, n.cfg.Bootstrap...)
	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	return ids
}

// refreshCandidates renews the transport's candidate list when
// candidates asks, one request at a time, each bounded by
// CandidatesTimeout, until ctx ends. A failed request keeps the last list.
// A new list wakes the maintainer.
func (n *Node) refreshCandidates(ctx context.Context) {
	for {
		select {
		case <-n.candsWant:
		case <-ctx.Done():
			return
		}
		cctx, cancel := context.WithTimeout(ctx, n.cfg.CandidatesTimeout)
		ids, err := n.transport.Candidates(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		n.mu.Lock()
		n.candsAt = time.Now()
		changed := err == nil && !slices.Equal(ids, n.cands)
		if changed {
			n.cands = ids
		}
		n.mu.Unlock()
		if err != nil {
			n.log.Debug("transport candidates", "err", err)
			continue
		}
		if changed {
			select {
			case n.wake <- struct{}{}:
			default:
			}
		}
	}
}

// explorer runs explore every ReplaceInterval, with jitter so that the
// nodes do not all swap at once.
func (n *Node) explorer(ctx context.Context) {
	if n.cfg.ReplaceInterval < 0 {
		return
	}
	for {
		d := n.cfg.ReplaceInterval/2 + rand.N(n.cfg.ReplaceInterval)
		t := time.NewTimer(d)
		select {
		case <-t.C:
			n.explore(ctx)
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}
