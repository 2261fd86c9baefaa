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
// Half the budget is split into equal shares, one for each link the
// node may keep (HighPeers + MaxTemporary), which a registered link may
// always fill; the other half is a pool that any link draws on beyond its
// share, first come first served. So peers that flood can fill the pool
// and their own shares, never an honest peer's share: its requests are
// still served and its messages still handled, only without the pool's
// slack. A link in its hello or past its end has no share: it draws on
// the pool only, so that the shares in use never outnumber the links the
// node keeps (the slots, see Node.reserve) and the bytes held never
// exceed the budget.
type queueBudget struct {
	share int64 // each registered link's own part
	pool  int64 // the part links share beyond their own
	limit int64 // the most bytes held: a share for each link, and the pool

	mu     sync.Mutex
	used   int64 // bytes held, in all
	pooled int64 // bytes held beyond their links' shares
}

// account is one link's part of the budget; the budget's mutex guards it.
type account struct {
	held   int64
	own    int64 // its share while the link is registered, else 0
	closed bool  // the link is gone: it takes nothing more
}

// queuedOverhead is what a queued message costs beyond its payload and
// protocol name (the Message, its place in a queue), so that a flood of
// empty messages counts too.
const queuedOverhead = 128

// queuedCost is what m counts against the budget.
func queuedCost(m *Message) int64 {
	return int64(len(m.Payload) + len(m.Protocol) + queuedOverhead)
}

// newQueueBudget sizes the budget for cfg. A share holds at least one
// message of the largest size, so a budget too small for that many links
// is raised to it.
func newQueueBudget(cfg *Config) *queueBudget {
	links := int64(cfg.HighPeers + max(cfg.MaxTemporary, 0))
	total := int64(cfg.QueueBytes)
	share := max(total/(2*links), int64(MaxBulkFrame+queuedOverhead))
	pool := max(total-links*share, 0)
	return &queueBudget{share: share, pool: pool, limit: links*share + pool}
}

// over is how much of held lies beyond own.
func over(held, own int64) int64 { return max(held-own, 0) }

// take counts size more bytes held by a, and reports false (counting
// nothing) when neither a's share nor the pool has room for them.
func (b *queueBudget) take(a *account, size int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.closed {
		return false
	}
	more := over(a.held+size, a.own) - over(a.held, a.own)
	if more > 0 && b.pooled+more > b.pool {
		return false
	}
	a.held += size
	b.pooled += more
	b.used += size
	return true
}

// give counts size bytes of a's no longer held.
func (b *queueBudget) give(a *account, size int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.closed {
		return // close gave back all it held
	}
	size = min(size, a.held)
	b.pooled -= over(a.held, a.own) - over(a.held-size, a.own)
	a.held -= size
	b.used -= size
}

// setOwn gives a its share (registered) or takes it back. Taken back, the
// bytes a holds beyond nothing are the pool's: the pool may then be over
// its size for a while, and lends nothing until it is back under.
func (b *queueBudget) setOwn(a *account, registered bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	own := int64(0)
	if registered && !a.closed {
		own = b.share
	}
	b.pooled += over(a.held, own) - over(a.held, a.own)
	a.own = own
}

// close gives back all that a holds, once its link's goroutines have
// ended: what is left in its queues is never handled.
func (b *queueBudget) close(a *account) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.closed {
		return
	}
	b.pooled -= over(a.held, a.own)
	b.used -= a.held
	a.held, a.own, a.closed = 0, 0, true
}

// held reports the bytes held in all and beyond the links' shares.
func (b *queueBudget) held() (used, pooled int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.pooled
}
