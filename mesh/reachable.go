package mesh

// Reachable keeps the records of recs whose node is still linked to self
// through the mesh, as the records themselves say.
//
// A record stays in the directory until it expires (Config.RecordTTL, a
// minute by default), but a node that stopped, crashed or lost its links
// is gone long before: each of its neighbours issues, within
// Config.RecordDebounce of losing the link, a record that no longer lists
// it. So a link between two nodes is believed only when both their
// records list each other: the dead node's last word still names its
// neighbours, their newer records no longer name it. Both ends must
// agree because a record is its node's word alone: a hostile node may
// list any node it likes, and if one end's word sufficed it could keep
// a node that stopped (or never linked to it) in the mesh until that
// node's record expires. Nodes reached from self over believed links are
// online; the rest are kept out, so that what they offer leaves at once
// instead of a minute later.
//
// A record that lists MaxNeighbors nodes may have been cut short, so its
// silence about a link proves nothing: the other end's word counts then.
// A node that joins is left out until the records of both ends of its
// first link are heard (a debounce after the link comes up). A node that
// hears every record at once (a snapshot when it joins) may keep a dead
// node until its neighbours' next refresh.
func Reachable(self ID, recs []Record) []Record {
	byID := make(map[ID]*Record, len(recs))
	for i := range recs {
		byID[recs[i].ID] = &recs[i]
	}
	lists := func(r *Record, id ID) bool {
		for _, nb := range r.Neighbors {
			if nb == id {
				return true
			}
		}
		return false
	}
	// linked reports whether the link a-b is believed: each end lists
	// the other, or its list is full and the other lists it.
	linked := func(a, b *Record) bool {
		ab, ba := lists(a, b.ID), lists(b, a.ID)
		return (ab || ba) &&
			(ab || len(a.Neighbors) >= MaxNeighbors) &&
			(ba || len(b.Neighbors) >= MaxNeighbors)
	}
	seen := map[ID]bool{self: true}
	queue := []ID{self}
	// A link can be named by either end: each node's own list, and the
	// lists that name it.
	namedBy := make(map[ID][]ID)
	for _, r := range recs {
		for _, nb := range r.Neighbors {
			if nb != r.ID {
				namedBy[nb] = append(namedBy[nb], r.ID)
			}
		}
	}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		a := byID[id]
		if a == nil {
			continue
		}
		visit := func(other ID) {
			if seen[other] {
				return
			}
			if b := byID[other]; b != nil && linked(a, b) {
				seen[other] = true
				queue = append(queue, other)
			}
		}
		for _, nb := range a.Neighbors {
			visit(nb)
		}
		for _, nb := range namedBy[id] {
			visit(nb)
		}
	}
	out := make([]Record, 0, len(seen))
	for _, r := range recs {
		if seen[r.ID] {
			out = append(out, r)
		}
	}
	return out
}
