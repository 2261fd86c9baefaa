package mesh

import (
	"context"
	"math/rand/v2"
	"time"
)

// The overlay keeps each node at about TargetPeers random links and keeps
// exploring: every ReplaceInterval a node at its target dials one more
// random node and then drops its worst-scoring link, so the mesh does not
// settle on the first links it happened to make.

// Penalize scores a peer down for bad input that a service rejected (a
// forged message, say): a peer with many offences is the first link the
// node drops when it explores.
func (n *Node) Penalize(id ID, reason string) { n.penalize(id, reason) }

// penalize scores a peer down for bad input: a malformed frame, a forged
// record, a flood.
func (n *Node) penalize(id ID, reason string) {
	if l := n.link(id); l != nil {
		l.failures.Add(1)
	}
	n.log.Debug("peer scored down", "peer", id.Short(), "reason", reason)
}

// SetInterest installs a function that says how much this node wants a
// link to the node of a record (e.g. it shares a channel, or holds a wanted
// file): 0 for none, 1 for strong. Links with more interest are kept over
// others. f is called with the node's lock not held; it must be fast.
func (n *Node) SetInterest(f func(Record) float64) {
	n.mu.Lock()
	n.interest = f
	n.mu.Unlock()
}

// score rates a link: higher is better. Round-trip time and failures
// count against it; goodput and interest for it.
func (n *Node) score(l *link, interest func(Record) float64) float64 {
	s := 0.0
	if interest != nil {
		if r, ok := n.Lookup(l.remote); ok {
			s += 2 * interest(r)
		}
	}
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
		n.trim(n.cfg.LowPeers)
	}
	cands := n.candidates(ctx)
	for _, id := range cands {
		if n.link(id) != nil {
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
		n.trim(n.cfg.LowPeers)
		return
	}
}

// trim drops the worst-scoring link when the node is above its target.
// It spares temporary links (dropIdle's business), links in use by a
// service, links younger than minLinkAge, and links whose peer advertises
// spare or fewer links, so that the peer does not fall below that count.
func (n *Node) trim(spare int) {
	n.mu.Lock()
	if len(n.links) <= n.cfg.TargetPeers {
		n.mu.Unlock()
		return
	}
	links := make([]*link, 0, len(n.links))
	for _, l := range n.links {
		links = append(links, l)
	}
	interest := n.interest
	n.mu.Unlock()

	var worst *link
	worstScore := 0.0
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
		if s := n.score(l, interest); worst == nil || s < worstScore {
			worst, worstScore = l, s
		}
	}
	if worst != nil {
		n.log.Debug("dropping worst link", "peer", worst.remote.Short(), "score", worstScore)
		worst.conn.Close()
	}
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
		if err := n.Connect(ctx, id); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		if l := n.link(id); l != nil {
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
func (n *Node) candidates(ctx context.Context) []ID {
	var ids []ID
	for _, r := range n.Directory() {
		if r.ID != n.id {
			ids = append(ids, r.ID)
		}
	}
	if more, err := n.transport.Candidates(ctx); err == nil {
		ids = append(ids, more...)
	} else {
		n.log.Debug("transport candidates", "err", err)
	}
	ids = append(ids, n.cfg.Bootstrap...)
	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	return ids
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
