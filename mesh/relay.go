package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/catnest/catnest/mesh/signal"
)

// Signaling through the mesh: once a node is in, it reaches nodes it has
// no link to by sending its WebRTC offer, answer and candidates along a
// path of links, found in the directory's neighbour lists. The rendezvous
// server is then needed only to get in.

const sigProto = "mesh/sig/1"

// maxPath bounds a relay path, in nodes.
const maxPath = 10

var errNoRoute = errors.New("mesh: no route through the mesh")

type relayFrame struct {
	Path []ID            `json:"p"`
	Hop  int             `json:"h"`
	Msg  json.RawMessage `json:"m"`
}

// maxRelayFrame bounds a relay frame: a signal message and a path.
const maxRelayFrame = signal.MaxMessageSize*2 + maxPath*(idLen+4) + 64

// decodeRelay parses a relay frame that from passed to self.
func decodeRelay(b []byte, self, from ID) (relayFrame, error) {
	var f relayFrame
	if len(b) > maxRelayFrame {
		return f, errors.New("relay frame over the size limit")
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("bad relay frame: %w", err)
	}
	if len(f.Path) < 2 || len(f.Path) > maxPath || f.Hop < 1 || f.Hop >= len(f.Path) ||
		f.Path[f.Hop] != self || f.Path[f.Hop-1] != from {
		return f, errors.New("bad relay path")
	}
	for _, id := range f.Path {
		if _, err := ParseID(string(id)); err != nil {
			return f, fmt.Errorf("bad relay path: %w", err)
		}
	}
	return f, nil
}

// routes remembers, for nodes that signaled us through the mesh, the path
// back, so that the answer can follow it even before the directory knows
// the sender.
type routes struct {
	mu    sync.Mutex
	back  map[ID][]ID
	heard map[ID]time.Time
}

const maxRoutes = 256

func (r *routes) put(id ID, path []ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.back == nil {
		r.back, r.heard = make(map[ID][]ID), make(map[ID]time.Time)
	}
	if len(r.back) >= maxRoutes {
		var oldest ID
		for k, t := range r.heard {
			if oldest == "" || t.Before(r.heard[oldest]) {
				oldest = k
			}
		}
		delete(r.back, oldest)
		delete(r.heard, oldest)
	}
	r.back[id], r.heard[id] = path, time.Now()
}

func (r *routes) get(id ID) []ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.heard[id]) > time.Minute {
		return nil
	}
	return r.back[id]
}

// pathTo finds a shortest path of links from this node to dst: this
// node's own links, then each node's advertised neighbours.
func (n *Node) pathTo(dst ID) []ID {
	if p := n.routes.get(dst); p != nil && n.link(p[1]) != nil {
		return p
	}
	adj := make(map[ID][]ID)
	for _, r := range n.Directory() {
		adj[r.ID] = r.Neighbors
	}
	mine := n.Peers()
	adj[n.id] = make([]ID, 0, len(mine))
	for _, p := range mine {
		adj[n.id] = append(adj[n.id], p.ID)
	}
	prev := map[ID]ID{n.id: ""}
	queue := []ID{n.id}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		if u == dst {
			var path []ID
			for v := dst; v != ""; v = prev[v] {
				path = append([]ID{v}, path...)
			}
			if len(path) > maxPath {
				return nil
			}
			return path
		}
		for _, v := range adj[u] {
			if _, ok := prev[v]; !ok {
				prev[v] = u
				queue = append(queue, v)
			}
		}
	}
	return nil
}

// routeSignal sends a signaling message to dst through the mesh.
func (n *Node) routeSignal(ctx context.Context, dst ID, m signal.Message) error {
	path := n.pathTo(dst)
	if len(path) < 2 {
		return errNoRoute
	}
	m.Src, m.Dst = string(n.id), string(dst)
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	f, err := json.Marshal(relayFrame{Path: path, Hop: 1, Msg: b})
	if err != nil {
		return err
	}
	return n.Send(ctx, path[1], sigProto, f)
}

// handleRelay passes a relayed signal on, or hands it to the transport
// when this node is the destination.
func (n *Node) handleRelay(ctx context.Context, msg *Message) ([]byte, error) {
	f, err := decodeRelay(msg.Payload, n.id, msg.From)
	if err != nil {
		n.penalize(msg.From, err.Error())
		return nil, nil
	}
	if f.Hop < len(f.Path)-1 {
		next := f.Path[f.Hop+1]
		f.Hop++
		b, _ := json.Marshal(f)
		if err := n.Send(ctx, next, sigProto, b); err != nil {
			n.log.Debug("relay: cannot pass on", "next", next.Short(), "err", err)
		}
		return nil, nil
	}
	m, err := signal.DecodeMessage(f.Msg)
	if err != nil {
		n.penalize(msg.From, fmt.Sprintf("relayed signal: %v", err))
		return nil, nil
	}
	src := f.Path[0]
	m.Src, m.Dst = string(src), string(n.id)
	back := make([]ID, len(f.Path))
	for i, id := range f.Path {
		back[len(f.Path)-1-i] = id
	}
	n.routes.put(src, back)
	if d, ok := n.transport.(interface{ deliverSignal(signal.Message) }); ok {
		d.deliverSignal(m)
	}
	return nil, nil
}
