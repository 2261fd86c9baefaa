package mesh

import "sync"

// queueBudget bounds the bytes a node holds for all its peers at once in
// its links' queues: one-way messages that wait for their handler, and
// requests that wait for a handler slot or are in one (Config.QueueBytes).
// Each link's own caps (MessageQueue, RequestQueue, maxQueuedBytes,
// maxWaitingBytes) bound one peer; without a bound across links, peers
// that send and never read the answers could make a node with HighPeers +
// MaxTemporary links hold 24 MiB for each.
//
// Half the budget is split into equal shares, one for each link the node
// may keep (HighPeers + MaxTemporary), which a registered link may always
// fill with the services' bytes. About an eighth, out of the other half,
// is split into reserves (64 KiB to one Ctl frame each), one for each
// link the node may keep, that only the mesh's own
// traffic (meshProto: broadcast, directory, routed signals, bridge
// opens) draws on: a peer's service load, or this node's slow services,
// never leave the mesh without room to hear that peer's records and
// broadcasts and open bridges through it. Beyond its reserve the mesh's
// traffic counts as the services' does, so a peer gains nothing by
// sending under the mesh's protocols.
//
// The rest is a pool that any link draws on beyond its share and
// reserve, first come first served. So peers that flood can fill the pool and their own shares, never an
// honest peer's share: its requests are still served and its messages
// still handled, only without the pool's slack. A link in its hello or
// past its end has no share nor reserve: it draws on the pool only, so
// that the shares in use never outnumber the links the node keeps (the
// slots, see Node.reserve) and the bytes held never exceed the budget.
type queueBudget struct {
	share   int64 // each registered link's own part
	reserve int64 // each registered link's part for the mesh's own traffic
	pool    int64 // the part links share beyond their own
	limit   int64 // the most bytes held: a share and a reserve for each link, and the pool

	mu     sync.Mutex
	used   int64 // bytes held, in all
	pooled int64 // bytes held beyond their links' shares and reserves
}

// account is one link's part of the budget; the budget's mutex guards it.
type account struct {
	held   int64 // the services' bytes
	mesh   int64 // the mesh's own bytes
	own    int64 // its share while the link is registered, else 0
	res    int64 // its reserve while the link is registered, else 0
	closed bool  // the link is gone: it takes nothing more
}

// pooled is what a holds beyond its share and reserve: the mesh's bytes
// fill the reserve first, and beyond it count as the services' do.
func (a *account) pooled() int64 { return over(a.held+over(a.mesh, a.res), a.own) }

// queuedOverhead is what a queued message costs beyond its payload and
// protocol name (the Message, its place in a queue), so that a flood of
// empty messages counts too.
const queuedOverhead = 128

// queuedCost is what m counts against the budget.
func queuedCost(m *Message) int64 {
	return int64(len(m.Payload) + len(m.Protocol) + queuedOverhead)
}

// Bounds of a link's reserve for the mesh's own traffic: at least room
// for a few records and broadcasts, at most for a message of the largest
// size the mesh sends (a directory snapshot).
const (
	minMeshReserve = 64 << 10
	maxMeshReserve = MaxCtlFrame + queuedOverhead
)

// newQueueBudget sizes the budget for cfg. A share holds at least one
// message of the largest size, and a reserve at least minMeshReserve, so
// a budget too small for that many links is raised to it.
func newQueueBudget(cfg *Config) *queueBudget {
	links := int64(cfg.HighPeers + max(cfg.MaxTemporary, 0))
	total := int64(cfg.QueueBytes)
	// The reserves come out of the pool's half, so that they cost no
	// honest peer's share anything.
	share := max(total/(2*links), int64(MaxBulkFrame+queuedOverhead))
	reserve := min(max(total/(8*links), minMeshReserve), maxMeshReserve)
	pool := max(total-links*(share+reserve), 0)
	return &queueBudget{share: share, reserve: reserve, pool: pool, limit: links*(share+reserve) + pool}
}

// over is how much of held lies beyond own.
func over(held, own int64) int64 { return max(held-own, 0) }

// take counts size more bytes of the services' held by a, and reports
// false (counting nothing) when neither a's share nor the pool has room
// for them.
func (b *queueBudget) take(a *account, size int64) bool { return b.change(a, size, 0) }

// takeMesh is take for the mesh's own traffic, which a's reserve takes
// first.
func (b *queueBudget) takeMesh(a *account, size int64) bool { return b.change(a, 0, size) }

// change adds held and mesh (neither negative) to what a holds, unless
// the pool has no room for what lies beyond a's share and reserve then.
func (b *queueBudget) change(a *account, held, mesh int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.closed {
		return false
	}
	was := a.pooled()
	a.held += held
	a.mesh += mesh
	more := a.pooled() - was
	if more > 0 && b.pooled+more > b.pool {
		a.held -= held
		a.mesh -= mesh
		return false
	}
	b.pooled += more
	b.used += held + mesh
	return true
}

// give counts size bytes of the services' held by a no longer held.
func (b *queueBudget) give(a *account, size int64) { b.release(a, size, false) }

// giveMesh is give for the mesh's own traffic.
func (b *queueBudget) giveMesh(a *account, size int64) { b.release(a, size, true) }

func (b *queueBudget) release(a *account, size int64, mesh bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.closed {
		return // close gave back all it held
	}
	was := a.pooled()
	if mesh {
		size = min(size, a.mesh)
		a.mesh -= size
	} else {
		size = min(size, a.held)
		a.held -= size
	}
	b.pooled += a.pooled() - was
	b.used -= size
}

// setOwn gives a its share and reserve (registered) or takes them back.
// Taken back, the bytes a holds beyond nothing are the pool's: the pool
// may then be over its size for a while, and lends nothing until it is
// back under.
func (b *queueBudget) setOwn(a *account, registered bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	was := a.pooled()
	a.own, a.res = 0, 0
	if registered && !a.closed {
		a.own, a.res = b.share, b.reserve
	}
	b.pooled += a.pooled() - was
}

// close gives back all that a holds, once its link's goroutines have
// ended: what is left in its queues is never handled.
func (b *queueBudget) close(a *account) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.closed {
		return
	}
	b.pooled -= a.pooled()
	b.used -= a.held + a.mesh
	*a = account{closed: true}
}

// held reports the bytes held in all and beyond the links' shares and
// reserves.
func (b *queueBudget) held() (used, pooled int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.pooled
}
