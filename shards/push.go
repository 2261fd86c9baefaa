package shards

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/catnest/catnest/mesh"
)

// ProtoPush carries pushes (DESIGN §7): a source offers a resource to a
// group, sends each piece about once, striped over the receivers, and the
// receivers relay what they got to one another (plan.go).
//
// Every push message is a request over the bulk channel whose answer is an
// empty acknowledgement or an error. Requests rather than one-way messages,
// because one-way messages from a peer wait in a bounded queue and are
// dropped when it is full: a receiver whose disk or relays are slow would
// lose pieces. An answered block is also a receipt: the source knows which
// pieces each receiver holds without waiting for its reports, and the
// number of blocks a sender has unanswered is its window.
//
// The first byte of a message is its kind; then the push id (16 bytes):
//
//	offer: id, plan, name, members (node ids), manifest   source -> receiver
//	block: piece, offset, flags, bytes                    sender -> receiver
//	have:  encodeHave of what it holds                    receiver -> source
//	order: member index, pieces                           source -> receiver
//	end:   (nothing)                                      source -> receiver
//
// and in a span push the routed ones of pushroute.go, signed end to end.
const ProtoPush = "shards/push/3"

const (
	pushOffer byte = 1 + iota
	pushBlock
	pushHave
	pushOrder
	pushEnd
)

// Push limits.
const (
	// MaxPushReceivers bounds the receivers of one push: the matrix plan
	// links every receiver to every other one.
	MaxPushReceivers = 256
	// maxPushMsg bounds a push message: one bulk frame's payload.
	maxPushMsg = mesh.MaxBulkFrame - 128
	// maxOrderPieces bounds the pieces one order lists.
	maxOrderPieces = (maxPushMsg - pushHeader - 2 - 2) / 4
	pushHeader     = 1 + 16
	blockHeader    = pushHeader + 4 + 4 + 1
	idSize         = 32 // a mesh.ID's length
)

// relayFlag on a block asks its receiver to pass the piece on to its relay
// targets; the source sets it on the first sending of each piece.
const relayFlag byte = 1

// pushID names a push.
type pushID [16]byte

func (p pushID) String() string { return hex.EncodeToString(p[:]) }

func parsePushID(s string) (pushID, error) {
	var p pushID
	if len(s) != 2*len(p) {
		return p, fmt.Errorf("%w: push id %.40q is not 32 hex digits", ErrBadID, s)
	}
	if _, err := hex.Decode(p[:], []byte(s)); err != nil {
		return p, fmt.Errorf("%w: push id %.40q is not 32 hex digits", ErrBadID, s)
	}
	return p, nil
}

// PushConfig is how a node takes part in pushes.
type PushConfig struct {
	// Accept decides whether to take a push a peer offers: it is called
	// with the source and what it offers, on the handler's goroutine, and
	// must not block. Nil refuses every push: a node stores nothing it
	// did not ask for unless its user said whom to take pushes from
	// (AcceptFrom, or the members of the channels it joined).
	Accept func(from mesh.ID, id MD5, name string, size int64) bool
	// MaxBytes bounds the size of a push this node accepts.
	MaxBytes int64
	// MaxIncoming bounds the pushes this node receives at once.
	MaxIncoming int
	// Window is how many pieces a sender (source or relay) has in flight
	// at once, each sending its blocks one after the other; large pieces
	// are fewer, so that no more than windowBytes are unanswered.
	Window int
	// Repair is how often the source looks for receivers that stopped
	// making progress after its first pass, to have their missing pieces
	// sent by a receiver that holds them, or by itself if none does.
	Repair time.Duration
	// Idle: a push received whose source neither sent anything nor
	// answered a report (runReceiver) for this long is forgotten (its
	// pieces stay in the sink).
	Idle time.Duration
	// BlockTimeout bounds the sending of one block (one call): a receiver
	// that does not answer within it has failed that call.
	BlockTimeout time.Duration
	// GoneAfter: a receiver counts as gone when every call to it failed
	// (unreachable, timed out, busy) for this long, over at least
	// goneAttempts tries spaced with backoff. One failure is not enough:
	// a temporary link not up yet, a node busy under load or a link the
	// overlay replaced fail a call and answer the next. Meanwhile the
	// first pass and repair route around it. A receiver that refuses
	// the offer is gone at once.
	GoneAfter time.Duration
	// Keep is how many finished pushes PushStatus still reports.
	Keep int
}

// DefaultPushConfig refuses pushes (see Accept) and sends with a window of
// 8 pieces.
func DefaultPushConfig() PushConfig {
	return PushConfig{
		MaxBytes:     4 << 30,
		MaxIncoming:  4,
		Window:       8,
		Repair:       500 * time.Millisecond,
		Idle:         2 * time.Minute,
		BlockTimeout: 30 * time.Second,
		GoneAfter:    20 * time.Second,
		Keep:         64,
	}
}

// AcceptFrom is an Accept that takes pushes from the given nodes only.
func AcceptFrom(ids ...mesh.ID) func(from mesh.ID, id MD5, name string, size int64) bool {
	set := make(map[mesh.ID]bool, len(ids))
	for _, id := range ids {
		set[id] = true
	}
	return func(from mesh.ID, _ MD5, _ string, _ int64) bool { return set[from] }
}

// pieceSink is where a receiver of a push keeps the pieces: a download
// (DOWNLOAD's downloads make one per offer). Pieces reach it verified.
type pieceSink interface {
	// putPiece stores piece i, whose MD5 the caller has checked; from
	// is the node that sent it (the source or a relaying member).
	putPiece(ctx context.Context, from mesh.ID, i int, data []byte) error
	// have returns which pieces it holds (a copy).
	have() Bitfield
	// readBlock reads the block r of a piece it holds, to relay it.
	readBlock(ctx context.Context, r blockReq, p []byte) error
}

// offer is what a source proposes: the push, the resource and the group.
type offer struct {
	Push     pushID
	ID       MD5
	Plan     Plan
	Name     string
	Members  []mesh.ID
	Manifest *Manifest
}

// openSink makes the sink a receiver stores an accepted push in.
type openSink func(ctx context.Context, from mesh.ID, o offer) (pieceSink, error)

// pushes runs this node's pushes, as source and as receiver. Its handler
// is ServeMesh for ProtoPush; serve runs its workers.
type pushes struct {
	node    Node
	log     *slog.Logger
	cfg     PushConfig
	sources []pieceSource
	open    openSink
	// waitUpload paces every block this node sends (Config.UploadRate).
	waitUpload func(ctx context.Context, n int) error
	// publish, if set, is told of a push's progress (Event.Push).
	publish func(Event)
	// maxBuffered: see the constant; tests lower it.
	maxBuffered int64

	mu     sync.Mutex
	runCtx context.Context // set while serve runs; workers start under it
	wg     sync.WaitGroup
	out    map[pushID]*outPush
	done   []pushID // finished outgoing pushes, oldest first
	in     map[pushID]*inPush
	// forgotten holds the pushes received that ended or went idle
	// here, with the highest sequence number of a routed message taken
	// (onRoute: a routed offer replayed does not start one again), the
	// latest maxForgotten; forgetOrder is their order.
	forgotten   map[pushID]uint64
	forgetOrder []pushID
	// joined is closed, and made anew, when this node takes a push
	// (awaitJoin).
	joined  chan struct{}
	started chan struct{}
}

func newPushes(node Node, log *slog.Logger, cfg PushConfig, sources []pieceSource, open openSink) *pushes {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := DefaultPushConfig()
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = d.MaxBytes
	}
	if cfg.MaxIncoming <= 0 {
		cfg.MaxIncoming = d.MaxIncoming
	}
	if cfg.Window <= 0 {
		cfg.Window = d.Window
	}
	if cfg.Repair <= 0 {
		cfg.Repair = d.Repair
	}
	if cfg.Idle <= 0 {
		cfg.Idle = d.Idle
	}
	if cfg.BlockTimeout <= 0 {
		cfg.BlockTimeout = d.BlockTimeout
	}
	if cfg.GoneAfter <= 0 {
		cfg.GoneAfter = d.GoneAfter
	}
	if cfg.Keep <= 0 {
		cfg.Keep = d.Keep
	}
	return &pushes{
		node: node, log: log, cfg: cfg, sources: sources, open: open,
		waitUpload:  func(context.Context, int) error { return nil },
		maxBuffered: maxBuffered,
		out:         make(map[pushID]*outPush),
		in:          make(map[pushID]*inPush),
		forgotten:   make(map[pushID]uint64),
		joined:      make(chan struct{}),
		started:     make(chan struct{}),
	}
}

// serve registers the handler and runs until ctx ends; then every push
// worker has stopped.
func (p *pushes) serve(ctx context.Context) error {
	p.mu.Lock()
	p.runCtx = ctx
	p.mu.Unlock()
	p.node.Handle(ProtoPush, p)
	close(p.started)
	<-ctx.Done()
	p.mu.Lock()
	p.runCtx = nil
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// spawn runs f on a worker goroutine under the serving context, unless
// serve is not running.
func (p *pushes) spawn(f func(ctx context.Context)) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.runCtx == nil || p.runCtx.Err() != nil {
		return false
	}
	ctx := p.runCtx
	p.wg.Go(func() { f(ctx) })
	return true
}

// findSource returns a source that holds all of id.
func (p *pushes) findSource(id MD5) (pieceSource, *Manifest, bool) {
	for _, s := range p.sources {
		m, ok := s.manifestOf(id)
		if !ok {
			continue
		}
		if h := s.haveOf(id); h != nil && h.Count() == m.NumPieces() {
			return s, m, true
		}
	}
	return nil, nil, false
}

// push starts pushing resource id, which this node holds whole, to the
// receivers to under plan, and returns the push's id for status.
func (p *pushes) push(ctx context.Context, id MD5, to []mesh.ID, plan Plan, name string) (string, error) {
	switch plan {
	case PlanMatrix, PlanChain, PlanSpan:
	case "":
		plan = PlanMatrix
	default:
		return "", fmt.Errorf("%w: plan %q (matrix, chain or span)", ErrBadID, plan)
	}
	src, m, ok := p.findSource(id)
	if !ok {
		return "", fmt.Errorf("%w: %s is not held whole here", ErrUnknown, id)
	}
	members := make([]mesh.ID, 0, len(to))
	for _, r := range to {
		if r == p.node.ID() || slices.Contains(members, r) {
			continue
		}
		if _, err := mesh.ParseID(string(r)); err != nil {
			return "", fmt.Errorf("%w: receiver: %v", ErrBadID, err)
		}
		members = append(members, r)
	}
	if len(members) == 0 || len(members) > MaxPushReceivers {
		return "", fmt.Errorf("%w: %d receivers (1 to %d)", ErrBadID, len(members), MaxPushReceivers)
	}
	var pid pushID
	rand.Read(pid[:])
	o := offer{Push: pid, ID: id, Plan: plan, Name: name, Members: members, Manifest: m}
	msg, err := encodeOffer(o)
	if err != nil {
		return "", err
	}
	op := newOutPush(o, src)
	p.mu.Lock()
	p.out[pid] = op
	p.mu.Unlock()
	if !p.spawn(func(ctx context.Context) { p.runSource(ctx, op, msg) }) {
		p.mu.Lock()
		delete(p.out, pid)
		p.mu.Unlock()
		return "", fmt.Errorf("shards: push: %w", mesh.ErrClosed)
	}
	return pid.String(), nil
}

// status reports a push this node sends.
func (p *pushes) status(pid string) (PushStatus, error) {
	id, err := parsePushID(pid)
	if err != nil {
		return PushStatus{}, err
	}
	p.mu.Lock()
	op := p.out[id]
	p.mu.Unlock()
	if op == nil {
		return PushStatus{}, fmt.Errorf("%w: push %s", ErrUnknown, pid)
	}
	return op.status(), nil
}

// newOutPush is the source's state of push o, sending from src.
func newOutPush(o offer, src pieceSource) *outPush {
	members, m := o.Members, o.Manifest
	op := &outPush{offer: o, src: src, started: time.Now(), have: make([]Bitfield, len(members)),
		state: make([]string, len(members)), why: make([]string, len(members)), stalled: make([]int, len(members)), last: make([]int, len(members)),
		orders: make([]map[int]*pushOrderRec, len(members)), refused: make([]map[int]bool, len(members)),
		caught: make([]map[int]bool, len(members)), fed: make([][]int, len(members)),
		joined: make([]bool, len(members)), fails: make([]int, len(members)), hung: make([]int, len(members)),
		failedAt: make([]time.Time, len(members)), retryAt: make([]time.Time, len(members)),
		starved: make([]time.Time, len(members)), samples: make([]int, len(members)),
		seq: make([]uint64, len(members)), turn: make([]int, len(members)), changed: make(chan struct{}, 1),
		given: make([]Bitfield, len(members)), doubted: make(map[int][]int), sending: make([]bool, len(members)),
		progress: make([]time.Time, len(members)), flying: make(map[int]int)}
	for k := range members {
		op.orders[k] = make(map[int]*pushOrderRec)
		op.refused[k] = make(map[int]bool)
		op.caught[k] = make(map[int]bool)
		op.have[k] = NewBitfield(m.NumPieces())
		op.given[k] = NewBitfield(m.NumPieces())
		op.state[k] = "receiving"
	}
	return op
}

// outPush is a push this node is the source of.
type outPush struct {
	offer
	src     pieceSource
	started time.Time

	mu      sync.Mutex
	have    []Bitfield              // per receiver: answered sends and its reports
	state   []string                // "receiving", "done", "gone"
	why     []string                // per receiver that is gone: why (PushReceiver.Error)
	stalled []int                   // repair ticks without progress
	orders  []map[int]*pushOrderRec // per receiver: piece -> the repair order for it
	refused []map[int]bool          // per receiver: the members it caught sending corrupt pieces
	caught  []map[int]bool          // refused, as reported by the receiver itself (not forwarded)
	last    []int                   // have count at the last repair tick
	// joined: the receiver took the offer. fails counts the calls to it
	// that failed in a row since failedAt; it is not called again before
	// retryAt (backoff), and it is gone after GoneAfter of failures.
	joined   []bool
	fails    []int
	hung     []int // times it held spreadPieces unspread for BlockTimeout
	failedAt []time.Time
	retryAt  []time.Time
	// starved is when repair first ordered pieces for a receiver that
	// have not come since (zero once one does). One whose calls answer
	// (probes) while no piece reaches it (its disk full, its link
	// dropping large messages) must not be sent its pieces again at
	// every check for ever; but the holders' silence is no evidence
	// against it (they may lie about what they hold, or swallow orders).
	// So after BlockTimeout and GoneAfter of it, the source sends it one
	// missing piece itself each check (sample); samples is how many of
	// those failed since, and goneAttempts of them make it gone.
	starved []time.Time
	samples []int
	// seq numbers the routed messages to each receiver (seqWindow).
	seq []uint64
	// turn moves a receiver's route on (route): the routed calls to it
	// that failed, whoever was blamed.
	turn []int
	// fed lists, per receiver, the pieces the first pass sent it that no
	// other receiver was seen to hold yet (see awaitSpread).
	fed [][]int
	// given: per receiver, the pieces the source itself sent it in this
	// push. A receiver holds the others because it said so (at the
	// start, or in a report), which the source cannot check: a few
	// liars that claim a piece, asked in turn, would hold it
	// BlockTimeout each. So repair asks a holder it gave the piece to
	// first, and once an order for a piece lapses, doubted takes that
	// holder and every one it did not give the piece to: they are not
	// asked for it again, the source sends it itself (once) and the
	// others get it from whoever received that copy.
	given   []Bitfield
	doubted map[int][]int
	// sending: repair's sends from the source to the receiver are under
	// way (sendBatch); it is given no more until they end. sends counts
	// the batches, slots bounds their pieces in flight (the window).
	// Repair does not wait for them: a receiver whose link drops large
	// messages would hold every check, and the others' repair, for
	// BlockTimeout.
	sending []bool
	sends   sync.WaitGroup
	slots   chan struct{}
	// flying: the pieces of the batches under way, and to whom. A piece
	// is not given to another receiver while it flies to one that
	// answered a block of the source's lately (progress): it would come
	// twice. To one that did not (its link drops large messages), it is.
	flying   map[int]int
	progress []time.Time
	uploaded int64
	finished bool
	// changed is poked when a receiver's pieces or state change.
	changed chan struct{}
	// pieceTime is how long the source took per piece in its first pass
	// (its upload's piece time); 0 until the pass ends. See repair.
	pieceTime time.Duration
}

// pushOrderRec is a repair order: holder was asked to send a piece to a
// receiver at at; tried are the holders that were asked before and did
// not deliver within BlockTimeout.
type pushOrderRec struct {
	holder int
	at     time.Time
	tried  []int
}

func (op *outPush) poke() {
	select {
	case op.changed <- struct{}{}:
	default:
	}
}

// unspread is how many pieces of k's first-pass feed no other live
// receiver holds yet, 0 when no other receiver is left to take them; it
// drops those that spread from the feed. op.mu is held.
func (op *outPush) unspread(k int) int {
	others := false
	for h := range op.Members {
		others = others || (h != k && op.live(h))
	}
	if !others {
		op.fed[k] = op.fed[k][:0]
		return 0
	}
	kept := op.fed[k][:0]
	for _, i := range op.fed[k] {
		spread := false
		for h := range op.Members {
			if h != k && op.live(h) && op.have[h].Has(i) {
				spread = true
				break
			}
		}
		if !spread {
			kept = append(kept, i)
		}
	}
	op.fed[k] = kept
	return len(kept)
}

func (op *outPush) status() PushStatus {
	op.mu.Lock()
	defer op.mu.Unlock()
	st := PushStatus{ID: op.Push.String(), Resource: op.ID, Plan: op.Plan, Size: op.Manifest.Size,
		Uploaded: op.uploaded, Started: op.started, Done: op.finished}
	for k, id := range op.Members {
		var have int64
		for i := range op.Manifest.NumPieces() {
			if op.have[k].Has(i) {
				have += op.Manifest.PieceLen(i)
			}
		}
		st.Receivers = append(st.Receivers, PushReceiver{Node: id, Have: have, State: op.state[k], Error: op.why[k]})
	}
	return st
}

// live reports whether receiver k is still in the push; op.mu is held.
func (op *outPush) live(k int) bool { return op.state[k] != "gone" }

// usable reports whether receiver k may be sent pieces, orders and
// routed messages now: in the push, joined, and its last call answered.
// A receiver whose calls fail is left out (routed around) until a retry
// answers or it counts as gone. op.mu is held.
func (op *outPush) usable(k int) bool { return op.live(k) && op.joined[k] && op.fails[k] == 0 }

// due reports whether receiver k may be sent a piece of the first pass
// now: usable, or its calls failed and its backoff is over, so that the
// piece is the next try. Else one lost call would leave it out of the
// whole pass (nothing else calls it before repair begins), and the
// others would get its stripe from the source. op.mu is held.
func (op *outPush) due(k int, now time.Time) bool {
	return op.live(k) && op.joined[k] && (op.fails[k] == 0 || !now.Before(op.retryAt[k]))
}

// goneAttempts is the fewest failed calls, spaced by backoff, after which
// a receiver can count as gone (PushConfig.GoneAfter).
const goneAttempts = 3

// answered records that receiver k answered a call: its failures end.
func (op *outPush) answered(k int) {
	op.mu.Lock()
	op.fails[k] = 0
	op.mu.Unlock()
}

// failed records a failed call to receiver k: it is routed around until
// retryAt, and gone once its calls failed for GoneAfter, goneAttempts
// times at least. It reports whether k is gone now.
func (p *pushes) failed(op *outPush, k int, err error) bool {
	now := time.Now()
	op.mu.Lock()
	if op.fails[k] > 0 && now.Before(op.retryAt[k]) {
		// Calls made together fail together (a window of pieces
		// timing out at once): one try, not several.
		op.mu.Unlock()
		return false
	}
	if op.fails[k] == 0 {
		op.failedAt[k] = now
	}
	op.fails[k]++
	fails := op.fails[k]
	op.retryAt[k] = now.Add(min(p.cfg.Repair<<min(fails-1, 20), p.cfg.GoneAfter/4))
	// A receiver that holds the file stays done: it is only left out
	// as a holder until it answers again.
	gone := op.state[k] == "receiving" && fails >= goneAttempts && now.Sub(op.failedAt[k]) >= p.cfg.GoneAfter
	if gone {
		op.state[k], op.why[k] = "gone", goneWhy("its calls failed", err)
	}
	op.mu.Unlock()
	if gone {
		p.log.Info("push receiver gone: its calls failed", "push", op.Push, "peer", op.Members[k].Short(), "calls", fails, "err", err)
	} else {
		p.log.Debug("push call failed", "push", op.Push, "peer", op.Members[k].Short(), "calls", fails, "err", err)
	}
	op.poke()
	return gone
}

// setGone drops receiver k from the push; why says so to the user.
func (op *outPush) setGone(k int, why string) {
	op.mu.Lock()
	op.state[k], op.why[k] = "gone", why
	op.mu.Unlock()
	op.poke()
}

// maxGoneWhy caps a receiver's reason, which quotes its own answer.
const maxGoneWhy = 256

// goneWhy is why a receiver left: what happened and the error, its own
// message when it answered one (a refusal says "this node does not take
// pushes from ..." there), capped and on one printable line: a peer's
// bytes, shown to the user as they are (escape sequences, line breaks,
// bidi overrides that turn what follows around).
func goneWhy(what string, err error) string {
	if err == nil {
		return what
	}
	msg := err.Error()
	var re *mesh.RemoteError
	if errors.As(err, &re) {
		// Its own words, without the package prefixes that repeat
		// what says.
		msg = strings.TrimPrefix(strings.TrimPrefix(re.Msg, "shards: "), "push refused: ")
	}
	msg = strings.Map(func(r rune) rune {
		switch {
		case unicode.IsPrint(r):
			return r
		case unicode.IsSpace(r):
			return ' '
		}
		return -1
	}, msg)
	why := what + ": " + msg
	if len(why) > maxGoneWhy {
		why = strings.ToValidUTF8(why[:maxGoneWhy], "") + "…"
	}
	return why
}

// got records that receiver k holds the pieces in b.
func (op *outPush) got(k int, b Bitfield) {
	op.mu.Lock()
	defer op.mu.Unlock()
	before := op.have[k].Count()
	for i := range b {
		op.have[k][i] |= b[i]
	}
	c := op.have[k].Count()
	if c > before {
		op.starved[k], op.samples[k] = time.Time{}, 0
	}
	if op.state[k] == "receiving" && c == op.Manifest.NumPieces() {
		op.state[k] = "done"
	}
	op.poke()
}

func (p *pushes) notify(op *outPush) {
	if p.publish != nil {
		st := op.status()
		p.publish(Event{Push: &st})
	}
}

// runSource runs a push from this node: the offers, one pass over the
// pieces, and repair until every receiver still there holds every piece.
func (p *pushes) runSource(ctx context.Context, op *outPush, offerMsg []byte) {
	n := len(op.Members)
	op.slots = make(chan struct{}, p.window(op.Manifest))
	defer op.sends.Wait()
	// Offers: a receiver that fails one (a link not up yet, a busy node)
	// is offered again after a backoff, a few times before the first
	// pass and then by repair, until it counts as gone.
	for attempt := 0; ; attempt++ {
		p.offerAll(ctx, op, offerMsg)
		op.mu.Lock()
		waiting := false
		for k := range n {
			waiting = waiting || op.live(k) && !op.joined[k]
		}
		op.mu.Unlock()
		if !waiting || attempt == goneAttempts {
			break
		}
		select {
		case <-time.After(p.cfg.Repair << attempt):
		case <-ctx.Done():
			return
		}
	}
	p.notify(op)
	// The first pass: each piece once, to its owner (or, if the owner
	// is gone or failing, to the next receiver in sourceTarget order),
	// in order, Window pieces at once, and no faster than the owner
	// passes them on.
	var wg sync.WaitGroup
	sem := make(chan struct{}, p.window(op.Manifest))
	lastNotify := time.Now()
	// The pass's own time makes the piece time: the offers before it
	// (retried after backoffs) are no upload, nor are the waits for a
	// receiver that passed nothing on (awaitSpread's BlockTimeout).
	passStart := lastNotify
	var hung time.Duration
	for i := range op.Manifest.NumPieces() {
		owner := pieceOwner(op.Plan, i, n)
		first, err := p.firstTarget(ctx, op, owner)
		if err != nil {
			wg.Wait()
			return
		}
		if first < 0 {
			continue // nobody to send it to: repair sends it
		}

		held, err := p.awaitSpread(ctx, op, first)
		if err != nil {
			wg.Wait()
			return
		}
		hung += held
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		// Counted as fed now, before the next awaitSpread looks.
		op.mu.Lock()
		if op.due(first, time.Now()) && !op.have[first].Has(i) {
			op.fed[first] = append(op.fed[first], i)
		}
		op.mu.Unlock()
		wg.Go(func() {
			defer func() { <-sem }()
			for t := range n {
				k := sourceTarget(op.Plan, owner, t, n)
				op.mu.Lock()
				usable, has := op.due(k, time.Now()), op.have[k].Has(i)
				if usable && !has && k != first {
					op.fed[k] = append(op.fed[k], i)
				}
				op.mu.Unlock()
				if has {
					return
				}
				if usable {
					if p.sendSource(ctx, op, k, i, relayFlag) == nil || ctx.Err() != nil {
						return
					}
				}
			}
		})
		if time.Since(lastNotify) > 250*time.Millisecond {
			lastNotify = time.Now()
			p.notify(op)
		}
	}
	wg.Wait()
	op.mu.Lock()
	op.pieceTime = max(0, time.Since(passStart)-hung) / time.Duration(max(1, op.Manifest.NumPieces()))
	op.mu.Unlock()
	p.notify(op)
	t := time.NewTicker(p.cfg.Repair)
	defer t.Stop()
	for {
		if p.repair(ctx, op, offerMsg) {
			break
		}
		p.notify(op)
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
	op.sends.Wait()
	op.mu.Lock()
	op.finished = true
	op.mu.Unlock()
	p.notify(op)
	// The end, to the last group first: a routed end goes through
	// members of the groups before, which must still be in the push.
	end := append([]byte{pushEnd}, op.Push[:]...)
	waves := offerWaves(op.Plan, n)
	for w := len(waves) - 1; w >= 0; w-- {
		for _, k := range waves[w] {
			op.mu.Lock()
			live := op.live(k)
			op.mu.Unlock()
			if live {
				wg.Go(func() { _, _ = p.callMember(ctx, op, k, end) })
			}
		}
		wg.Wait()
	}
	p.mu.Lock()
	p.done = append(p.done, op.Push)
	for len(p.done) > p.cfg.Keep {
		delete(p.out, p.done[0])
		p.done = p.done[1:]
	}
	p.mu.Unlock()
}

// offerWaves are the receivers of a push to n in the order they are told
// its end: a span group by group (members of a group forward to the
// next), other plans all at once.
func offerWaves(plan Plan, n int) [][]int {
	if plan != PlanSpan {
		all := make([]int, n)
		for k := range all {
			all[k] = k
		}
		return [][]int{all}
	}
	count, _, _ := spanGroups(n)
	waves := make([][]int, count)
	for g := range waves {
		lo, hi := spanBounds(g, n)
		for k := lo; k < hi; k++ {
			waves[g] = append(waves[g], k)
		}
	}
	return waves
}

// offerAll offers the push to every receiver still in it that has not
// taken it, each not before its retryAt, all at once: a span's offers to
// later groups go through members of the groups before, which take their
// own offers meanwhile (awaitJoin). Wave by wave, the source waited for
// each group's offers to come back before it sent the next's: G waves of
// routes growing a hop each, seconds at N = 64, before the first piece.
func (p *pushes) offerAll(ctx context.Context, op *outPush, msg []byte) {
	now := time.Now()
	var wg sync.WaitGroup
	for k := range op.Members {
		op.mu.Lock()
		due := op.live(k) && !op.joined[k] && !now.Before(op.retryAt[k])
		op.mu.Unlock()
		if due {
			wg.Go(func() { p.offerTo(ctx, op, k, msg) })
		}
	}
	wg.Wait()
}

// offerTo offers the push to receiver k: a refusal makes it gone, any
// other failure counts against the member at fault (failed).
func (p *pushes) offerTo(ctx context.Context, op *outPush, k int, msg []byte) {
	at, err := p.callMember(ctx, op, k, msg)
	switch {
	case err == nil:
		op.mu.Lock()
		op.joined[k], op.fails[k] = true, 0
		op.mu.Unlock()
		op.poke()
	case ctx.Err() != nil:
	case at == k && refusal(err) && strings.Contains(err.Error(), errStaleOffer.Error()):
		// Its clock is ahead of this node's by more than routeTTL:
		// offered directly, it reports directly, and the source
		// links to it as to the first group.
		if err = p.call(ctx, op.Members[k], msg); err == nil {
			op.mu.Lock()
			op.joined[k], op.fails[k] = true, 0
			op.mu.Unlock()
			op.poke()
			return
		}
		if refusal(err) {
			p.log.Info("push receiver refused", "push", op.Push, "peer", op.Members[k].Short(), "err", err)
			op.setGone(k, goneWhy("refused", err))
			return
		}
		p.failed(op, k, err)
	case at == k && refusal(err):
		p.log.Info("push receiver refused", "push", op.Push, "peer", op.Members[k].Short(), "err", err)
		op.setGone(k, goneWhy("refused", err))
	case at >= 0:
		p.failed(op, at, err)
		if at != k {
			// Not its fault; try again soon, by another way.
			op.mu.Lock()
			op.retryAt[k] = time.Now().Add(p.cfg.Repair)
			op.mu.Unlock()
		}
	}
}

// sourceTarget is the t-th receiver the source tries for a piece whose
// owner is owner: the owner, then the others of the owner's group in a
// span (the source links to the first group only) and the receivers
// after, else the receivers after the owner, round.
func sourceTarget(plan Plan, owner, t, n int) int {
	if plan != PlanSpan {
		return (owner + t) % n
	}
	_, lo, hi := spanGroupOf(owner, n)
	if t < hi-lo {
		return lo + (owner-lo+t)%(hi-lo)
	}
	return (hi + t - (hi - lo)) % n
}

// firstTarget is the receiver the first pass sends a piece whose owner is
// owner to: the first due in sourceTarget order. When every receiver in
// the push is backing off after a failed call, it waits for the first
// backoff to end: skipped, the pieces would be left to repair, which
// sends those nobody holds from the source one receiver a check. It is
// -1 when none has joined the push or is left in it.
func (p *pushes) firstTarget(ctx context.Context, op *outPush, owner int) (int, error) {
	n := len(op.Members)
	for {
		op.mu.Lock()
		now := time.Now()
		var wake time.Time
		for t := range n {
			k := sourceTarget(op.Plan, owner, t, n)
			if op.due(k, now) {
				op.mu.Unlock()
				return k, nil
			}
			if op.live(k) && op.joined[k] && (wake.IsZero() || op.retryAt[k].Before(wake)) {
				wake = op.retryAt[k]
			}
		}
		op.mu.Unlock()
		if wake.IsZero() {
			return -1, nil
		}
		t := time.NewTimer(wake.Sub(now))
		select {
		case <-t.C:
		case <-op.changed:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return -1, ctx.Err()
		}
	}
}

// awaitSpread holds the first pass back while receiver k holds
// spreadPieces pieces it was fed that no other receiver holds yet. So a
// receiver that leaves takes at most that many pieces only the source can
// give again, whatever the load: the source's extra upload for a leaver is
// bounded by construction, not by how fast the others notice. A receiver
// that spreads none of them within BlockTimeout (it hangs, is too busy, or
// swallows what it should relay) is routed around as a failed call is;
// the second time it is dropped from the push, so that a receiver that
// swallows what it should relay costs the source at most twice
// spreadPieces. It returns how long it held the pass when k spread
// nothing in time: no measure of the upload (pieceTime).
func (p *pushes) awaitSpread(ctx context.Context, op *outPush, k int) (time.Duration, error) {
	limit := p.spreadPieces(op.Manifest)
	begin := time.Now()
	deadline := begin.Add(p.cfg.BlockTimeout)
	t := time.NewTicker(p.cfg.Repair)
	defer t.Stop()
	for {
		op.mu.Lock()
		open := !op.live(k) || op.unspread(k) < limit
		op.mu.Unlock()
		if open {
			return 0, nil
		}
		if time.Now().After(deadline) {
			op.mu.Lock()
			op.hung[k]++
			again := op.hung[k] > 1
			op.mu.Unlock()
			if again {
				p.log.Info("push receiver passes nothing on: dropped", "push", op.Push, "peer", op.Members[k].Short())
				op.setGone(k, "passed nothing on to the others")
				return time.Since(begin), nil
			}
			p.failed(op, k, errors.New("shards: push receiver passed nothing on"))
			return time.Since(begin), nil
		}
		select {
		case <-op.changed:
		case <-t.C:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// spreadPieces is how many pieces of m a receiver may hold from the first
// pass before any other receiver has them: what a leaver costs the source
// at most. About spreadBytes, and at least a window, so that the source
// is not held back by the receivers' report period (see runReceiver).
func (p *pushes) spreadPieces(m *Manifest) int {
	return max(p.window(m), int(spreadBytes/m.PieceSize))
}

// sendSource sends piece i from the source to receiver k; a failure
// counts against it (failed).
func (p *pushes) sendSource(ctx context.Context, op *outPush, k, i int, flags byte) error {
	to := op.Members[k]
	err := p.sendPiece(ctx, to, op.Push, op.Manifest, op.ID, i, flags, op.src.readBlock, func(n int) {
		op.src.sentBlock(op.ID, to, n)
		op.mu.Lock()
		op.uploaded += int64(n)
		op.progress[k] = time.Now()
		op.mu.Unlock()
	})
	if err != nil {
		if ctx.Err() == nil {
			if forgot(err) {
				op.mu.Lock()
				op.joined[k] = false // offered again by repair
				op.mu.Unlock()
			}
			p.failed(op, k, err)
		}
		return err
	}
	op.answered(k)
	op.mu.Lock()
	op.given[k].Set(i)
	op.mu.Unlock()
	b := NewBitfield(op.Manifest.NumPieces())
	b.Set(i)
	op.got(k, b)
	return nil
}

// repair checks the receivers once: it reports true when every receiver
// still there holds every piece. A receiver not in the push yet is
// offered it again, and one whose calls failed is probed, each after its
// backoff (failed). A receiver that made no progress for two checks, or
// for as long as its relays may take (stallChecks), is probed, and has each missing piece ordered from a receiver that holds
// it, leaving out those the receiver caught sending corrupt pieces. The
// order stands (it is sent again, which costs nothing) until the piece
// arrives, the holder leaves, fails or is caught, or BlockTimeout
// passes; then another holder is asked, one the source gave the piece
// to first, and none that only claims it (given, doubted). The source
// sends a piece itself only when no holder is left to ask: so what it uploads again does not
// depend on how fast the receivers are, only on which pieces no honest
// receiver holds. In a span it sends it to the first member on the
// receiver's route, whose relays pass it on, so as to keep to its links.
func (p *pushes) repair(ctx context.Context, op *outPush, offerMsg []byte) bool {
	n, np := len(op.Members), op.Manifest.NumPieces()
	type job struct{ holder, to int }
	orders := make(map[job][]uint32)
	var mine []job    // pieces (in holder) the source sends itself to receiver to
	var samples []job // likewise, to a starved receiver (see starved)
	var probes []int
	now := time.Now()
	sentHere := make(map[int]bool) // pieces the source sends in this check
	reoffer := false
	var gone []int
	op.mu.Lock()
	// A receiver waits for a relay up to a sender's whole fan-out and
	// window of piece times (a matrix owner's last target gets the piece
	// N-1 piece times after the first): ordered again before that, the
	// piece would come twice, and the copies take the upload the others
	// wait for (a matrix at 256 KiB/s sent 8% of its pieces twice, 1.37x
	// the bound instead of 1.25x, when two checks without progress were
	// a stall).
	fanout := len(relayTargets(op.Plan, 0, n, 0)) + p.window(op.Manifest)
	stallChecks := max(2, int(time.Duration(fanout)*op.pieceTime/p.cfg.Repair)+1)
	// A piece flying to a receiver is left to it while a block of the
	// source's reached it within a few block times of the source's
	// upload, at the whole window (or a few checks).
	m := op.Manifest
	blockTime := op.pieceTime * time.Duration(min(BlockSize, m.PieceSize)) / time.Duration(max(1, m.PieceSize))
	hold := 2*p.cfg.Repair + 2*time.Duration(p.window(m))*blockTime
	flying := func(i int) bool {
		to, ok := op.flying[i]
		return ok && now.Sub(op.progress[to]) < hold
	}
	all := true
	for k := range n {
		if op.state[k] == "done" && op.fails[k] > 0 && !now.Before(op.retryAt[k]) {
			// A holder whose call failed is left out of the orders
			// until it answers: probed, or it would be for good, and
			// the source would send its pieces itself.
			probes = append(probes, k)
		}
		if op.state[k] != "receiving" {
			continue
		}
		all = false
		if !op.joined[k] {
			reoffer = true
			continue
		}
		if op.fails[k] > 0 {
			if !now.Before(op.retryAt[k]) {
				probes = append(probes, k)
			}
			continue
		}
		c := op.have[k].Count()
		if c != op.last[k] {
			op.last[k], op.stalled[k] = c, 0
			continue
		}
		if op.stalled[k]++; op.stalled[k] < stallChecks {
			continue
		}
		op.stalled[k] = 0
		if op.starved[k].IsZero() {
			op.starved[k] = now
		} else if now.Sub(op.starved[k]) > p.cfg.BlockTimeout+p.cfg.GoneAfter {
			if op.samples[k] >= goneAttempts {
				op.state[k], op.why[k] = "gone", "no piece reached it"
				gone = append(gone, k)
				continue
			}
			for i := range np {
				if !op.have[k].Has(i) && !op.sending[k] {
					samples = append(samples, job{i, k})
					sentHere[i] = true // not sent it twice (mine)
					break
				}
			}
		}
		// Stalled: is it still there? (It may have left, and the
		// holders' relays to it fail where the source does not see.)
		probes = append(probes, k)
		for i := range np {
			if op.have[k].Has(i) {
				delete(op.orders[k], i)
				continue
			}
			rec := op.orders[k][i]
			if rec == nil {
				rec = &pushOrderRec{holder: -1}
				op.orders[k][i] = rec
			}
			h := rec.holder
			if h >= 0 && (!op.live(h) || op.refused[k][h] || now.Sub(rec.at) > p.cfg.BlockTimeout) {
				if now.Sub(rec.at) > p.cfg.BlockTimeout && !op.given[h].Has(i) {
					// Lapsed, from one that only claims it: doubt
					// all who only claim it (see given).
					for g := range n {
						if op.have[g].Has(i) && !op.given[g].Has(i) && !slices.Contains(op.doubted[i], g) {
							op.doubted[i] = append(op.doubted[i], g)
						}
					}
				}
				rec.tried = append(rec.tried, h)
				h = -1
			}
			if h >= 0 && (!op.usable(h) || slices.Contains(op.doubted[i], h)) {
				h = -1 // failing now (another holder, this one again later), or doubted
			}
			if h < 0 {
				var holders []int
				for g := range n {
					if g != k && op.usable(g) && op.have[g].Has(i) && !op.refused[k][g] && !slices.Contains(rec.tried, g) && !slices.Contains(op.doubted[i], g) {
						holders = append(holders, g)
					}
				}
				if near := spanNear(op.Plan, k, n, holders); len(near) > 0 {
					holders = near
				}
				if given := slices.DeleteFunc(slices.Clone(holders), func(g int) bool { return !op.given[g].Has(i) }); len(given) > 0 {
					holders = given
				}
				if len(holders) > 0 {
					h = holders[(i+k)%len(holders)]
					rec.holder, rec.at = h, now
				}
			}
			if h >= 0 {
				rec.holder = h
				if len(orders[job{h, k}]) < maxOrderPieces {
					orders[job{h, k}] = append(orders[job{h, k}], uint32(i))
				}
				continue
			}
			rec.holder = -1
			// Nobody left holds it: the source sends it, once per
			// check, to one receiver; the others get it from that one
			// at a later check.
			to := k
			if r := op.route(k, false); len(r) > 1 {
				to = r[0]
			}
			if !sentHere[i] && !flying(i) && !op.sending[to] {
				sentHere[i] = true
				mine = append(mine, job{i, to})
			}
		}
	}
	op.mu.Unlock()
	for _, k := range gone {
		p.log.Info("push receiver gone: no piece reached it", "push", op.Push, "peer", op.Members[k].Short())
		op.poke()
	}
	if all {
		return true
	}
	var wg sync.WaitGroup
	if reoffer {
		wg.Go(func() { p.offerAll(ctx, op, offerMsg) })
	}
	// A few calls at once: a routed one holds a request slot at each
	// member on its way until its target answers, and those of the
	// first group are what the source's pieces need too.
	calls := make(chan struct{}, repairCalls)
	call := func(k int, msg []byte) {
		select {
		case calls <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Go(func() {
			defer func() { <-calls }()
			p.callOrFail(ctx, op, k, msg)
		})
	}
	// A probe is an order to the receiver itself: it asks for nothing.
	for _, k := range probes {
		call(k, encodeOrder(op.Push, k, nil))
	}
	for j, pieces := range orders {
		call(j.holder, encodeOrder(op.Push, j.to, pieces))
	}
	batches := make(map[int][]int)
	for _, j := range mine {
		batches[j.to] = append(batches[j.to], j.holder)
	}
	op.mu.Lock()
	for to, pieces := range batches {
		op.sending[to], op.progress[to] = true, now
		for _, i := range pieces {
			op.flying[i] = to
		}
	}
	for _, j := range samples {
		op.sending[j.to] = true
	}
	op.mu.Unlock()
	for to, pieces := range batches {
		op.sends.Go(func() { p.sendBatch(ctx, op, to, pieces) })
	}
	for _, j := range samples {
		op.sends.Go(func() {
			defer op.doneSending(j.to)
			if p.slot(ctx, op) {
				p.sample(ctx, op, j.to, j.holder)
				<-op.slots
			}
		})
	}
	wg.Wait()
	return false
}

// sendBatch sends the pieces repair gave receiver k, half the window at
// once: a receiver that takes none holds no more than that of the
// source's window. It stops at the first failure: k is left out then
// (failed) until it answers, and the rest would fail too.
func (p *pushes) sendBatch(ctx context.Context, op *outPush, k int, pieces []int) {
	defer func() {
		op.mu.Lock()
		for _, i := range pieces {
			if op.flying[i] == k {
				delete(op.flying, i)
			}
		}
		op.mu.Unlock()
	}()
	defer op.doneSending(k)
	var wg sync.WaitGroup
	defer wg.Wait()
	lanes := make(chan struct{}, max(1, cap(op.slots)/2))
	var failed atomic.Bool
	for _, i := range pieces {
		select {
		case lanes <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if failed.Load() || !p.slot(ctx, op) {
			<-lanes
			return
		}
		wg.Go(func() {
			defer func() { <-op.slots; <-lanes }()
			if p.sendSource(ctx, op, k, i, relayFlag) != nil {
				failed.Store(true)
			}
		})
	}
}

// slot takes one of the source's repair send slots.
func (p *pushes) slot(ctx context.Context, op *outPush) bool {
	select {
	case op.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (op *outPush) doneSending(k int) {
	op.mu.Lock()
	op.sending[k] = false
	op.mu.Unlock()
}

// sample sends piece i to starved receiver k from the source itself,
// directly: only a failure of the source's own call counts against k
// (starved). Every failure does, busy or "forgot the push" too: none
// came for BlockTimeout+GoneAfter, so nothing holds its buffer that
// would free it, and a receiver could answer either for ever to keep
// the push (and the source's upload to it) going.
func (p *pushes) sample(ctx context.Context, op *outPush, k, i int) {
	if err := p.sendSource(ctx, op, k, i, 0); err == nil || ctx.Err() != nil {
		return
	}
	op.mu.Lock()
	op.samples[k]++
	op.mu.Unlock()
}

// repairCalls bounds the orders and probes a repair check has under way.
const repairCalls = 2 * spanGroup

// callOrFail sends an order (or a probe) to receiver k: an answer counts
// as k's, a failure against the member at fault; a receiver that no
// longer knows the push is offered it again.
func (p *pushes) callOrFail(ctx context.Context, op *outPush, k int, msg []byte) {
	at, err := p.callMember(ctx, op, k, msg)
	switch {
	case err == nil:
		op.answered(k)
	case ctx.Err() != nil || at < 0:
	default:
		if forgot(err) {
			op.mu.Lock()
			op.joined[at] = false
			op.mu.Unlock()
		}
		p.failed(op, at, err)
	}
}

// window is how many pieces of m a sender has in flight: Window, fewer
// for large pieces, so that a sender has about windowBytes unanswered
// (what a receiver holds half-assembled for it).
func (p *pushes) window(m *Manifest) int {
	return max(1, min(p.cfg.Window, int(windowBytes/m.PieceSize)))
}

// call sends one push message to a peer and waits for its answer, linking
// to it first if need be.
func (p *pushes) call(ctx context.Context, to mesh.ID, msg []byte) error {
	_, err := p.request(ctx, to, msg, p.cfg.BlockTimeout)
	return err
}

// request is call that returns the answer, and waits up to timeout.
func (p *pushes) request(ctx context.Context, to mesh.ID, msg []byte, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ans, err := requestPatient(ctx, p.node, to, ProtoPush, msg, mesh.OverBulk())
	if errors.Is(err, mesh.ErrNotConnected) || errors.Is(err, mesh.ErrLinkClosed) {
		// Not linked, or the link closed under the call (the overlay
		// replaced it): once more, on a new link.
		if err = p.node.Expand(ctx, to); err == nil {
			ans, err = requestPatient(ctx, p.node, to, ProtoPush, msg, mesh.OverBulk())
		}
	}
	return ans, err
}

// sendPiece sends piece i of resource id, read by read, to a peer as
// blocks one after the other, each paced by waitUpload; sent is told of
// each block answered.
func (p *pushes) sendPiece(ctx context.Context, to mesh.ID, pid pushID, m *Manifest, id MD5, i int, flags byte,
	read func(context.Context, blockReq, []byte) error, sent func(n int)) error {
	plen := m.PieceLen(i)
	buf := make([]byte, blockHeader+min(plen, BlockSize))
	for off := int64(0); off < plen; off += BlockSize {
		n := min(plen-off, BlockSize)
		r := blockReq{ID: id, Piece: uint32(i), Off: uint32(off), Len: uint32(n)}
		msg := buf[:blockHeader+n]
		msg[0] = pushBlock
		copy(msg[1:], pid[:])
		binary.BigEndian.PutUint32(msg[17:], r.Piece)
		binary.BigEndian.PutUint32(msg[21:], r.Off)
		msg[25] = flags
		if err := read(ctx, r, msg[blockHeader:]); err != nil {
			return fmt.Errorf("shards: read piece %d: %w", i, err)
		}
		if err := p.waitUpload(ctx, int(n)); err != nil {
			return err
		}
		if err := p.call(ctx, to, msg); err != nil {
			return fmt.Errorf("shards: push piece %d to %s: %w", i, to.Short(), err)
		}
		sent(int(n))
	}
	return nil
}

// inPush is a push this node receives.
type inPush struct {
	offer
	source mesh.ID
	self   int
	sink   pieceSink
	cancel context.CancelFunc

	// via is the member the offer came through (span), whom reports go
	// to; -1 if the source offered it directly.
	via int

	mu   sync.Mutex
	have Bitfield
	// downUntil: a member whose call from this node failed is left out
	// of relays until then (down); downs counts its failures in a row.
	downUntil []time.Time
	downs     []int

	bad     map[int]bool // senders that sent a corrupt piece: refused since
	asm     map[asmKey]*assembly
	perPeer map[int]int // assemblies per sender (-1 the source)
	// expired: pieces dropStale took from a sender (at most
	// maxAssemblies each, expiredN), until its next block of them. An
	// honest sender whose upload held its next block past BlockTimeout
	// gets a refusal then, not a penalty for a block out of order.
	expired  map[asmKey]bool
	expiredN map[int]int
	asmBytes int64 // the bytes of all of them
	queue    []relayJob
	queued   map[relayJob]bool
	// deferred holds, per member, the relays to it that wait for its
	// backoff (down) to end; tries counts a relay's failed calls.
	deferred map[int][]relayJob
	tries    map[relayJob]int
	wake     chan struct{} // relay work or a have change
	lastSeen time.Time

	// reportFailed: the last report did not reach the source; reporting
	// says whether one is under way.
	reportFailed, reporting bool
	// upFlight counts the reports of others it sends on (onUp).
	upFlight int
	// seqs are the routed messages from the source it took.
	seqs seqWindow
}

// asmKey is a piece being assembled from one sender's blocks.
type asmKey struct {
	from  int // member index, -1 the source
	piece int
}

type assembly struct {
	buf  []byte
	next int64
	at   time.Time // its last block
}

// maxAssemblies and maxAssemblyBytes bound the pieces one sender may have
// half-sent to this node: an honest sender has at most a window of them.
const (
	maxAssemblies    = 16
	windowBytes      = 2 << 20
	maxAssemblyBytes = 2 * windowBytes
	// spreadBytes: see spreadPieces.
	spreadBytes = 1 << 20
	// maxBuffered bounds the half-sent pieces of one incoming push, all
	// senders together: a receiver holds at most MaxIncoming times this.
	maxBuffered = 64 << 20
)

type relayJob struct{ to, piece int }

// ServeMesh handles ProtoPush requests.
func (p *pushes) ServeMesh(ctx context.Context, m *mesh.Message) ([]byte, error) {
	if !m.Request {
		return nil, fmt.Errorf("%w: push messages are requests", ErrBadFrame)
	}
	b := m.Payload
	if len(b) > maxPushMsg || len(b) < pushHeader {
		return nil, fmt.Errorf("%w: push message of %d bytes", ErrBadFrame, len(b))
	}
	var pid pushID
	copy(pid[:], b[1:])
	switch b[0] {
	case pushOffer:
		return nil, p.onOffer(ctx, m.From, "", -1, b)
	case pushBlock:
		return nil, p.onBlock(ctx, m.From, pid, b)
	case pushHave:
		return nil, p.onHave(m.From, pid, b[pushHeader:], false)
	case pushOrder:
		return nil, p.onOrder(m.From, pid, b)
	case pushEnd:
		p.onEnd(m.From, pid)
		return nil, nil
	case pushRoute:
		return p.onRoute(ctx, m.From, pid, b)
	case pushUp:
		return nil, p.onUp(ctx, m.From, pid, b)
	}
	p.node.Penalize(m.From, "push message of unknown kind")
	return nil, fmt.Errorf("%w: push message kind %d", ErrBadFrame, b[0])
}

// onEnd ends a push received from source.
func (p *pushes) onEnd(source mesh.ID, pid pushID) {
	p.mu.Lock()
	ip := p.in[pid]
	if ip != nil && ip.source == source {
		delete(p.in, pid)
		p.forget(ip, true)
		ip.cancel()
	}
	p.mu.Unlock()
}

// onOffer takes an offer from source, sent directly (fwd "", target -1)
// or routed through member fwd to member target (pushroute.go).
func (p *pushes) onOffer(ctx context.Context, from, fwd mesh.ID, target int, b []byte) error {
	penalize := from
	if fwd != "" {
		penalize = fwd
	}
	o, err := decodeOffer(b)
	if err != nil {
		p.node.Penalize(penalize, "bad push offer")
		return err
	}
	self := slices.Index(o.Members, p.node.ID())
	via := slices.Index(o.Members, fwd)
	if self < 0 || slices.Contains(o.Members, from) || fwd != "" && (target != self || !upstream(o, fwd, from, self)) {
		p.node.Penalize(penalize, "bad push offer")
		return fmt.Errorf("%w: offer's members leave this node or its forwarder out, or name its source", ErrBadFrame)
	}
	if o.Manifest.Size > p.cfg.MaxBytes {
		return fmt.Errorf("%w: push of %d bytes (this node takes up to %d)", ErrTooLarge, o.Manifest.Size, p.cfg.MaxBytes)
	}
	if p.cfg.Accept == nil || !p.cfg.Accept(from, o.ID, o.Name, o.Manifest.Size) {
		return errors.New("shards: push refused: this node does not take pushes from " + from.Short())
	}
	p.mu.Lock()
	if ip := p.in[o.Push]; ip != nil {
		p.mu.Unlock()
		if ip.source == from {
			return nil // the same offer again
		}
		return fmt.Errorf("%w: push id taken", ErrBadFrame)
	}
	busy := len(p.in) >= p.cfg.MaxIncoming
	p.mu.Unlock()
	if busy {
		return fmt.Errorf("%w: %d pushes under way", errPushBusy, p.cfg.MaxIncoming)
	}
	sink, err := p.open(ctx, from, o)
	if err != nil {
		return fmt.Errorf("shards: push refused: %w", err)
	}
	ip := &inPush{offer: o, source: from, self: self, via: via, sink: sink, have: sink.have(),
		downUntil: make([]time.Time, len(o.Members)), downs: make([]int, len(o.Members)),
		bad: make(map[int]bool), asm: make(map[asmKey]*assembly), perPeer: make(map[int]int),
		queued: make(map[relayJob]bool), deferred: make(map[int][]relayJob), tries: make(map[relayJob]int),
		wake: make(chan struct{}, 1), lastSeen: time.Now()}
	p.mu.Lock()
	if top, ok := p.forgotten[o.Push]; ok {
		// Taken before and forgotten: the routed messages of then
		// are not taken again (onRoute).
		ip.seqs.past(top)
	}
	p.mu.Unlock()
	if !ip.have.Valid(o.Manifest.NumPieces()) {
		return fmt.Errorf("shards: push refused: sink holds a bitfield of %d bytes", len(ip.have))
	}
	p.mu.Lock()
	if p.runCtx == nil || len(p.in) >= p.cfg.MaxIncoming || p.in[o.Push] != nil {
		p.mu.Unlock()
		return errPushBusy
	}
	wctx, cancel := context.WithCancel(p.runCtx)
	ip.cancel = cancel
	p.in[o.Push] = ip
	close(p.joined)
	p.joined = make(chan struct{})
	p.wg.Go(func() { p.runReceiver(wctx, ip) })
	p.mu.Unlock()
	ip.poke()
	return nil
}

func (ip *inPush) poke() {
	select {
	case ip.wake <- struct{}{}:
	default:
	}
}

// member is the index of a node among the senders of ip: -1 the source,
// -2 a stranger.
func (ip *inPush) member(id mesh.ID) int {
	if id == ip.source {
		return -1
	}
	if k := slices.Index(ip.Members, id); k >= 0 && k != ip.self {
		return k
	}
	return -2
}

func (p *pushes) onBlock(ctx context.Context, from mesh.ID, pid pushID, b []byte) error {
	p.mu.Lock()
	ip := p.in[pid]
	p.mu.Unlock()
	if ip == nil {
		return fmt.Errorf("%w: no push %s here", ErrUnknown, pid)
	}
	k := ip.member(from)
	if k == -2 {
		p.node.Penalize(from, "pushed block from outside the push")
		return fmt.Errorf("%w: %s is not in push %s", ErrBadFrame, from.Short(), pid)
	}
	if len(b) <= blockHeader {
		p.node.Penalize(from, "bad pushed block")
		return fmt.Errorf("%w: pushed block of %d bytes", ErrBadFrame, len(b))
	}
	r := blockReq{ID: ip.ID, Piece: binary.BigEndian.Uint32(b[17:]), Off: binary.BigEndian.Uint32(b[21:]),
		Len: uint32(len(b) - blockHeader)}
	flags, data := b[25], b[blockHeader:]
	if r.Len > BlockSize || !blockInPiece(ip.Manifest, r) || flags&^relayFlag != 0 {
		p.node.Penalize(from, "bad pushed block")
		return fmt.Errorf("%w: pushed block %d+%d of piece %d", ErrBadFrame, r.Off, r.Len, r.Piece)
	}
	// Only the source asks for relays, and in a chain the members before
	// this one, in a span the previous group: a member that could would
	// have this node upload every piece it is sent to all the others
	// again.
	if flags&relayFlag != 0 && k >= 0 && !relayAsker(ip.Plan, k, ip.self, len(ip.Members)) {
		p.node.Penalize(from, "pushed block asks for a relay")
		return fmt.Errorf("%w: member %s may not ask for relays", ErrBadFrame, from.Short())
	}
	i := int(r.Piece)
	key := asmKey{k, i}
	ip.mu.Lock()
	ip.lastSeen = time.Now()
	if ip.bad[k] {
		ip.mu.Unlock()
		return fmt.Errorf("%w: %s sent a corrupt piece of this push before", ErrCorrupt, from.Short())
	}
	wasExpired := ip.forgetExpired(key)
	if ip.have.Has(i) {
		ip.dropAssembly(key) // a copy it holds already: nothing to do
		ip.mu.Unlock()
		return nil
	}
	a := ip.asm[key]
	switch {
	case r.Off == 0:
		// A first block: a piece begun again (its sender's request timed
		// out half-way) starts over.
		ip.dropAssembly(key)
		peerFull := func() bool {
			return ip.perPeer[k] >= maxAssemblies || int64(ip.perPeer[k]+1)*ip.Manifest.PieceSize > max(maxAssemblyBytes, 2*ip.Manifest.PieceSize)
		}
		if peerFull() || ip.asmBytes+ip.Manifest.PieceLen(i) > p.maxBuffered {
			ip.dropStale(ip.lastSeen.Add(-p.cfg.BlockTimeout))
		}
		if peerFull() {
			ip.mu.Unlock()
			p.node.Penalize(from, "too many pushed pieces at once")
			return fmt.Errorf("%w: %d pieces half-sent at once", ErrBadFrame, maxAssemblies)
		}
		// All senders together: a source may name up to
		// MaxPushReceivers members, each within its own bound. Not an
		// offence: honest senders of large pieces reach it too; the
		// sender gives up this piece and repair sends it again later.
		if ip.asmBytes+ip.Manifest.PieceLen(i) > p.maxBuffered {
			ip.mu.Unlock()
			return fmt.Errorf("%w: %d bytes of pushed pieces half-sent here already", ErrTooLarge, ip.asmBytes)
		}
		a = &assembly{buf: make([]byte, ip.Manifest.PieceLen(i))}
		ip.asm[key] = a
		ip.perPeer[k]++
		ip.asmBytes += int64(len(a.buf))
	case a == nil && wasExpired:
		ip.mu.Unlock()
		return fmt.Errorf("%w: piece %d was half-sent here too long ago, begin it again", ErrTooLarge, i)
	case a == nil || int64(r.Off) != a.next:
		ip.mu.Unlock()
		p.node.Penalize(from, "pushed block out of order")
		return fmt.Errorf("%w: block at %d of piece %d out of order", ErrBadFrame, r.Off, i)
	}
	copy(a.buf[r.Off:], data)
	a.next = int64(r.Off) + int64(r.Len)
	a.at = ip.lastSeen
	if a.next < int64(len(a.buf)) {
		ip.mu.Unlock()
		return nil
	}
	ip.dropAssembly(key)
	ip.mu.Unlock()
	if !ip.Manifest.Verify(i, a.buf) {
		ip.mu.Lock()
		ip.bad[k] = true
		ip.mu.Unlock()
		p.node.Penalize(from, "pushed piece does not match its md5")
		return fmt.Errorf("%w: pushed piece %d", ErrCorrupt, i)
	}
	if err := ip.sink.putPiece(ctx, from, i, a.buf); err != nil {
		return fmt.Errorf("shards: store pushed piece %d: %w", i, err)
	}
	ip.mu.Lock()
	ip.have.Set(i)
	if flags&relayFlag != 0 {
		targets := relayTargets(ip.Plan, ip.self, len(ip.Members), i)
		for _, to := range targets {
			ip.enqueue(relayJob{to, i})
		}
	}
	ip.mu.Unlock()
	ip.poke()
	return nil
}

// dropAssembly forgets a half-built piece, if there is one, so that it no
// longer counts against its sender's bound; ip.mu is held.
func (ip *inPush) dropAssembly(key asmKey) {
	if a := ip.asm[key]; a != nil {
		delete(ip.asm, key)
		ip.perPeer[key.from]--
		ip.asmBytes -= int64(len(a.buf))
	}
}

// forgetExpired says whether dropStale took key, and forgets that it
// did; ip.mu is held.
func (ip *inPush) forgetExpired(key asmKey) bool {
	if !ip.expired[key] {
		return false
	}
	delete(ip.expired, key)
	ip.expiredN[key.from]--
	return true
}

// dropStale forgets the pieces half-sent that had no block since before:
// their senders gave up on them (their calls time out after
// BlockTimeout), or never meant to finish them, and would hold the
// buffer so that every sender is told it is full for good. ip.mu is
// held.
func (ip *inPush) dropStale(before time.Time) {
	for key, a := range ip.asm {
		if a.at.Before(before) {
			ip.dropAssembly(key)
			if ip.expiredN[key.from] < maxAssemblies {
				if ip.expired == nil {
					ip.expired, ip.expiredN = make(map[asmKey]bool), make(map[int]int)
				}
				ip.expired[key] = true
				ip.expiredN[key.from]++
			}
		}
	}
}

// enqueue adds a relay unless it waits already; ip.mu is held.
func (ip *inPush) enqueue(j relayJob) {
	if !ip.queued[j] {
		ip.queued[j] = true
		ip.queue = append(ip.queue, j)
	}
}

func (p *pushes) onOrder(from mesh.ID, pid pushID, b []byte) error {
	p.mu.Lock()
	ip := p.in[pid]
	p.mu.Unlock()
	if ip == nil {
		return fmt.Errorf("%w: no push %s here", ErrUnknown, pid)
	}
	if from != ip.source {
		p.node.Penalize(from, "push order from outside the push")
		return fmt.Errorf("%w: order from %s, not the source", ErrBadFrame, from.Short())
	}
	to, pieces, err := decodeOrder(b, len(ip.Members), ip.Manifest.NumPieces())
	if err != nil {
		p.node.Penalize(from, "bad push order")
		return err
	}
	ip.mu.Lock()
	ip.lastSeen = time.Now()
	if to != ip.self {
		ip.downs[to], ip.downUntil[to] = 0, time.Time{} // the source still counts it in
		// Orders go before the plan's relays: they are what a stalled
		// receiver waits for, and the source sends them itself if they
		// wait too long.
		// An ordered relay that waits in the queue already (the plan's,
		// behind many others) moves to the front too; one in flight is
		// left alone.
		var front []relayJob
		want := make(map[relayJob]bool, len(pieces))
		for _, i := range pieces {
			j := relayJob{to, int(i)}
			if !ip.have.Has(int(i)) || want[j] {
				continue
			}
			want[j] = true
			if !ip.queued[j] {
				ip.queued[j] = true
				front = append(front, j)
			}
		}
		rest := make([]relayJob, 0, len(ip.queue))
		for _, j := range ip.queue {
			if want[j] {
				front = append(front, j)
			} else {
				rest = append(rest, j)
			}
		}
		ip.queue = append(front, rest...)
	}
	ip.mu.Unlock()
	ip.poke()
	return nil
}

// onHave takes a report of member from; forwarded, it came through other
// members (onUp), who checked its signature, as this node did: it counts
// as from's own, but not as its answer (that a report came up says
// nothing of whether calls down to it get through).
func (p *pushes) onHave(from mesh.ID, pid pushID, b []byte, forwarded bool) error {
	p.mu.Lock()
	op := p.out[pid]
	p.mu.Unlock()
	if op == nil {
		return fmt.Errorf("%w: no push %s from here", ErrUnknown, pid)
	}
	k := slices.Index(op.Members, from)
	if k < 0 {
		p.node.Penalize(from, "push report from outside the push")
		return fmt.Errorf("%w: %s is not in push %s", ErrBadFrame, from.Short(), pid)
	}
	bad, h, err := decodeReport(b, len(op.Members), op.Manifest.NumPieces())
	if err != nil {
		p.node.Penalize(from, "bad push report")
		return err
	}
	op.mu.Lock()
	finished := op.finished
	op.mu.Unlock()
	if finished {
		// An error, so that a receiver that missed the end does not
		// take the answer for a push still on (runReceiver).
		return fmt.Errorf("%w: push %s has ended", ErrUnknown, pid)
	}
	op.got(k, h)
	if !forwarded {
		op.answered(k)
	}
	op.mu.Lock()
	op.joined[k] = true // it reports: it has the push
	for _, r := range bad {
		op.refused[k][r] = true
		op.caught[k][r] = true
		// A member that half the others caught sending corrupt pieces
		// leaves the push: the source stops feeding it, so a receiver
		// that poisons what it relays cannot have the source upload the
		// file to it again. A liar's own reports cannot reach half.
		live, caught := 0, 0
		for j := range op.Members {
			if j != r && op.live(j) {
				live++
				if op.caught[j][r] {
					caught++
				}
			}
		}
		if 2*caught >= live && op.state[r] != "gone" {
			p.log.Info("push receiver sends corrupt pieces: dropped", "push", op.Push, "peer", op.Members[r].Short())
			op.state[r], op.why[r] = "gone", "sent corrupt pieces"
		}
	}
	op.mu.Unlock()
	return nil
}

// runReceiver relays and reports for a push this node receives, until
// the source ends it, it goes idle, or the node stops.
func (p *pushes) runReceiver(ctx context.Context, ip *inPush) {
	defer func() {
		ip.cancel()
		p.mu.Lock()
		if p.in[ip.Push] == ip {
			delete(p.in, ip.Push)
			p.forget(ip, false)
		}
		p.mu.Unlock()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, p.window(ip.Manifest))
	idle := time.NewTicker(100 * time.Millisecond)
	defer idle.Stop()
	reported := -1
	var lastReport time.Time
	// Reports even when nothing changed: every Idle/4, so that the
	// source's answers keep the push alive here; and every 10 repair
	// checks when they go through other members, which answer before
	// they pass a report on and may lose it (onUp): the source must see
	// the last one, which says this node is whole.
	every := p.cfg.Idle / 4
	// A change is reported at most every 100 ms, and at most twice a
	// repair check when it goes through other members: the source looks
	// at it once a check, and each member on its way checks its
	// signature (pushroute.go).
	gap := 100 * time.Millisecond
	if ip.via >= 0 {
		every = min(every, 10*p.cfg.Repair)
		gap = max(gap, p.cfg.Repair/2)
	}
	for {
		ip.mu.Lock()
		j, ok := ip.next(time.Now())
		count := ip.have.Count() + len(ip.bad)<<20 // a new corrupt sender is news too
		seen := ip.lastSeen
		ip.mu.Unlock()
		// Report what it holds to the source when it changed, at most
		// every 100 ms, and at once when it is whole; and every Idle/4
		// even when nothing changed: the source's answer says the push
		// is still on, so that a receiver that hears nothing for a
		// while (a slow source, a stall waiting for repair) does not
		// forget it.
		// A report that did not reach the source is sent again as if
		// something changed (its last one may be the one saying the
		// receiver is whole), one at a time.
		ip.mu.Lock()
		retry := ip.reportFailed
		if retry {
			ip.reportFailed, reported = false, -1
		}
		busy := ip.reporting
		ip.mu.Unlock()
		changed := count != reported && (count == ip.Manifest.NumPieces() && !retry || time.Since(lastReport) > gap)
		if !busy && (changed || time.Since(lastReport) > every) {
			reported, lastReport = count, time.Now()
			ip.mu.Lock()
			msg := encodeReport(ip.Push, ip.bad, ip.have, ip.Manifest.NumPieces())
			ip.reporting = true
			ip.mu.Unlock()
			wg.Go(func() {
				var err error
				if ip.via >= 0 {
					// Through other members: signed, so that they
					// can neither forge nor alter it.
					msg, err = p.signUp(ip.Push, ip.self, msg)
				}
				if err == nil {
					err = p.sendUp(ctx, ip, msg)
				}
				ip.mu.Lock()
				ip.reporting = false
				if err == nil {
					ip.lastSeen = time.Now()
				} else {
					ip.reportFailed = true
				}
				ip.mu.Unlock()
				ip.poke()
			})
		}
		if ok {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				defer func() { <-sem }()
				p.relay(ctx, ip, j)
			})
			continue
		}
		if time.Since(seen) > p.cfg.Idle {
			return
		}
		select {
		case <-ip.wake:
		case <-idle.C:
		case <-ctx.Done():
			return
		}
	}
}

// next takes the relay to send now off the queue: the first whose member
// is not down. The relays to a member that is down wait aside until its
// backoff ends, then go first (they are the oldest). ip.mu is held.
func (ip *inPush) next(now time.Time) (relayJob, bool) {
	for to, js := range ip.deferred {
		if !now.Before(ip.downUntil[to]) {
			ip.queue = append(js, ip.queue...)
			delete(ip.deferred, to)
		}
	}
	for len(ip.queue) > 0 {
		j := ip.queue[0]
		ip.queue = ip.queue[1:]
		if now.Before(ip.downUntil[j.to]) {
			ip.deferred[j.to] = append(ip.deferred[j.to], j)
			continue
		}
		return j, true
	}
	return relayJob{}, false
}

// maxRelayTries is how many failed calls a relay gets before it is
// dropped: a member lost for good is left to the source's repair, which
// knows who is still in the push.
const maxRelayTries = goneAttempts

// relay sends one piece to one member; a chain skips members after this
// one that are gone, a span another member of the next group. A relay
// that has no other member to go to waits for its member's backoff and is
// sent again, up to maxRelayTries calls: a call lost on a lossy link
// (dropped, the answer timed out) must not leave a piece the plan gives
// that member to the source's repair, which only notices seconds later,
// while the source's first pass waits for this node's pieces to spread
// (awaitSpread). A repair order to a member before this one in a chain
// is sent to that member alone: skipping on would come round to this node
// itself.
func (p *pushes) relay(ctx context.Context, ip *inPush, j relayJob) {
	again := false
	defer func() {
		ip.mu.Lock()
		if again && ip.tries[j] < maxRelayTries {
			ip.deferred[j.to] = append(ip.deferred[j.to], j)
		} else {
			delete(ip.queued, j)
			delete(ip.tries, j)
		}
		ip.mu.Unlock()
		ip.poke() // its report may be due
	}()
	n := len(ip.Members)
	to := j.to
	for range n {
		if !ip.isDown(to) {
			err := p.sendPiece(ctx, ip.Members[to], ip.Push, ip.Manifest, ip.ID, j.piece, relayFlagFor(ip.Plan, ip.self, to, n),
				ip.sink.readBlock, func(int) {})
			if err == nil {
				ip.up(to)
				return
			}
			if ctx.Err() != nil {
				return
			}
			if to == j.to {
				ip.mu.Lock()
				ip.tries[j]++
				ip.mu.Unlock()
			}
			// Left out for a backoff, not for good: the source's
			// orders and this node's next relays try it again. But
			// a member that refuses this node's pieces as corrupt
			// will always: it is left out until the source orders
			// otherwise.
			p.log.Debug("push relay failed", "push", ip.Push, "peer", ip.Members[to].Short(), "err", err)
			ip.down(to, p.cfg)
			var re *mesh.RemoteError
			if errors.As(err, &re) && strings.Contains(re.Msg, ErrCorrupt.Error()) {
				ip.mu.Lock()
				ip.downUntil[to] = time.Now().Add(24 * time.Hour)
				ip.mu.Unlock()
			}
		}
		if ip.Plan == PlanSpan && relayFlagFor(ip.Plan, ip.self, to, n) != 0 {
			// The next group's owner of the stripe is gone: another
			// member of that group takes its place, once round.
			_, lo, hi := spanGroupOf(to, n)
			if to = lo + (to-lo+1)%(hi-lo); to == j.to {
				return
			}
			continue
		}
		if ip.Plan != PlanChain || to < ip.self {
			again = to == j.to
			return
		}
		if to = to + 1; to >= n {
			return
		}
	}
}

// relayFlagFor is the flag of a relay from member from to member to: in a
// chain every member but the last passes on what a member before it sends
// it. A member after it may not ask that (onBlock refuses the block and
// scores its sender down), so a repair order to a member before this one
// goes without the flag; the source orders each member's missing pieces
// itself.
func relayFlagFor(plan Plan, from, to, n int) byte {
	switch plan {
	case PlanChain:
		if from < to && to+1 < n {
			return relayFlag
		}
	case PlanSpan:
		// Into the next group: the piece goes on through it.
		if relayAsker(plan, from, to, n) {
			return relayFlag
		}
	}
	return 0
}

// spanNear keeps, of holders, those in receiver k's group of a span push
// of n receivers, or if none, those of the group before: ordered from
// them, a repair uses the links the plan makes anyway (a receiver far
// down the groups waits for its first pieces longer than a repair check,
// and orders from any holder would link it to half the push). Other
// plans: none.
func spanNear(plan Plan, k, n int, holders []int) []int {
	if plan != PlanSpan {
		return nil
	}
	gk, _, _ := spanGroupOf(k, n)
	var same, before []int
	for _, h := range holders {
		switch g, _, _ := spanGroupOf(h, n); g {
		case gk:
			same = append(same, h)
		case gk - 1:
			before = append(before, h)
		}
	}
	if len(same) > 0 {
		return same
	}
	return before
}

// relayAsker reports whether member from may ask member self of a push
// of n receivers under plan to relay a piece: in a chain a member before
// it, in a span one of the previous group. A piece is relayed once
// whoever asks (one held already is dropped), so an asker costs the
// relays of the pieces it sends, no more.
func relayAsker(plan Plan, from, self, n int) bool {
	switch plan {
	case PlanChain:
		return from < self
	case PlanSpan:
		gf, _, _ := spanGroupOf(from, n)
		gs, _, _ := spanGroupOf(self, n)
		return gf+1 == gs
	}
	return false
}

// encodeOffer is the offer's wire form; an offer that does not fit one
// bulk frame (a manifest of over ~15,000 pieces, a file over ~120 GiB) is
// ErrTooLarge.
func encodeOffer(o offer) ([]byte, error) {
	if len(o.Name) > MaxNameLen || len(o.Members) == 0 || len(o.Members) > MaxPushReceivers {
		return nil, fmt.Errorf("%w: offer with a name of %d bytes and %d members", ErrBadFrame, len(o.Name), len(o.Members))
	}
	man := o.Manifest.Encode()
	b := make([]byte, 0, pushHeader+16+1+2+len(o.Name)+2+idSize*len(o.Members)+len(man))
	b = append(b, pushOffer)
	b = append(b, o.Push[:]...)
	b = append(b, o.ID[:]...)
	var plan byte
	switch o.Plan {
	case PlanChain:
		plan = 1
	case PlanSpan:
		plan = 2
	}
	b = append(b, plan)
	b = binary.BigEndian.AppendUint16(b, uint16(len(o.Name)))
	b = append(b, o.Name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(o.Members)))
	for _, id := range o.Members {
		if len(id) != idSize {
			return nil, fmt.Errorf("%w: member %q", ErrBadID, id)
		}
		b = append(b, id...)
	}
	b = append(b, man...)
	if len(b) > maxPushMsg {
		return nil, fmt.Errorf("%w: a push offer of %d pieces to %d receivers does not fit a frame", ErrTooLarge, len(o.Manifest.Pieces), len(o.Members))
	}
	return b, nil
}

// decodeOffer decodes an offer from a peer: every member must be a node
// id, once; the name must pass CleanName; the manifest must decode.
func decodeOffer(b []byte) (offer, error) {
	var o offer
	if len(b) > maxPushMsg {
		return o, fmt.Errorf("%w: offer of %d bytes", ErrBadFrame, len(b))
	}
	if len(b) < pushHeader+16+1+2 || b[0] != pushOffer {
		return o, fmt.Errorf("%w: short offer", ErrBadFrame)
	}
	copy(o.Push[:], b[1:])
	copy(o.ID[:], b[pushHeader:])
	b = b[pushHeader+16:]
	switch b[0] {
	case 0:
		o.Plan = PlanMatrix
	case 1:
		o.Plan = PlanChain
	case 2:
		o.Plan = PlanSpan
	default:
		return o, fmt.Errorf("%w: offer plan %d", ErrBadFrame, b[0])
	}
	nl := int(binary.BigEndian.Uint16(b[1:]))
	b = b[3:]
	if nl > MaxNameLen || len(b) < nl+2 {
		return o, fmt.Errorf("%w: offer name of %d bytes", ErrBadFrame, nl)
	}
	name, err := CleanName(string(b[:nl]))
	if err != nil {
		return o, fmt.Errorf("%w: offer name: %v", ErrBadFrame, err)
	}
	o.Name = name
	nm := int(binary.BigEndian.Uint16(b[nl:]))
	b = b[nl+2:]
	if nm == 0 || nm > MaxPushReceivers || len(b) < nm*idSize {
		return o, fmt.Errorf("%w: offer of %d members", ErrBadFrame, nm)
	}
	seen := make(map[mesh.ID]bool, nm)
	for range nm {
		id, err := mesh.ParseID(string(b[:idSize]))
		if err != nil {
			return o, fmt.Errorf("%w: offer member: %v", ErrBadFrame, err)
		}
		if seen[id] {
			return o, fmt.Errorf("%w: offer names %s twice", ErrBadFrame, id.Short())
		}
		seen[id] = true
		o.Members = append(o.Members, id)
		b = b[idSize:]
	}
	if o.Manifest, err = DecodeManifest(b); err != nil {
		return o, fmt.Errorf("%w: offer: %w", ErrBadFrame, err)
	}
	return o, nil
}

// encodeOrder asks a receiver to send pieces to member to.
func encodeOrder(pid pushID, to int, pieces []uint32) []byte {
	b := make([]byte, 0, pushHeader+4+4*len(pieces))
	b = append(b, pushOrder)
	b = append(b, pid[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(to))
	b = binary.BigEndian.AppendUint16(b, uint16(len(pieces)))
	for _, i := range pieces {
		b = binary.BigEndian.AppendUint32(b, i)
	}
	return b
}

// decodeOrder decodes an order for a push of members receivers and np
// pieces.
func decodeOrder(b []byte, members, np int) (int, []uint32, error) {
	if len(b) < pushHeader+4 || b[0] != pushOrder {
		return 0, nil, fmt.Errorf("%w: short order", ErrBadFrame)
	}
	to := int(binary.BigEndian.Uint16(b[pushHeader:]))
	n := int(binary.BigEndian.Uint16(b[pushHeader+2:]))
	b = b[pushHeader+4:]
	if to >= members || n > maxOrderPieces || len(b) != 4*n {
		return 0, nil, fmt.Errorf("%w: order of %d pieces to member %d", ErrBadFrame, n, to)
	}
	pieces := make([]uint32, n)
	for i := range pieces {
		if pieces[i] = binary.BigEndian.Uint32(b[4*i:]); int(pieces[i]) >= np {
			return 0, nil, fmt.Errorf("%w: order of piece %d of %d", ErrBadFrame, pieces[i], np)
		}
	}
	return to, pieces, nil
}

// encodeReport is a receiver's report to the source: the members it caught
// sending corrupt pieces (the source counts them out as holders for it),
// then what it holds (encodeHave).
func encodeReport(pid pushID, bad map[int]bool, have Bitfield, np int) []byte {
	b := append([]byte{pushHave}, pid[:]...)
	var idx []int
	for k := range bad {
		if k >= 0 {
			idx = append(idx, k)
		}
	}
	slices.Sort(idx)
	b = binary.BigEndian.AppendUint16(b, uint16(len(idx)))
	for _, k := range idx {
		b = binary.BigEndian.AppendUint16(b, uint16(k))
	}
	return append(b, encodeHave(have, np)...)
}

// decodeReport decodes a report (after the push header) of a push of
// members receivers and np pieces.
func decodeReport(b []byte, members, np int) ([]int, Bitfield, error) {
	if len(b) < 2 {
		return nil, nil, fmt.Errorf("%w: short push report", ErrBadFrame)
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if n > members || len(b) < 2*n {
		return nil, nil, fmt.Errorf("%w: push report names %d members", ErrBadFrame, n)
	}
	bad := make([]int, n)
	for i := range bad {
		if bad[i] = int(binary.BigEndian.Uint16(b[2*i:])); bad[i] >= members {
			return nil, nil, fmt.Errorf("%w: push report names member %d of %d", ErrBadFrame, bad[i], members)
		}
	}
	h, err := decodeHave(b[2*n:], np)
	if err != nil {
		return nil, nil, err
	}
	return bad, h, nil
}
