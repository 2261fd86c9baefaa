package shards

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/catnest/catnest/mesh"
)

// Routed push messages (span plan). The source of a span push links to
// the first group only; what it says to a receiver further down (offer,
// order, probe, end) goes through one member of each group before it,
// and a receiver's report goes back up the same way: to the member it
// was offered through, which passes it to its own, and so on. So the
// source needs about spanGroup links whatever the number of receivers,
// and a receiver no more than the plan's relays give it.
//
//	route: source id, count, path (member indices), seq, expiry, signature, inner   down
//	up:    origin (member index), signature, inner report                   up
//
// A down message's path starts with the member it is sent to and ends
// with its target; each member takes itself off and sends the rest on.
// Its answer is a routeStatus: which member failed, and how, so that the
// source counts a failure against the member at fault, not the target.
// An up message goes only to a member of an earlier group (or the
// source), so it cannot loop.
//
// Trust: a forwarder sees what it passes on, and would forge it if it
// could: tell the source that a receiver after it holds the whole file
// (the source stops serving it), end the push for it, or blame an honest
// member as corrupt. So each routed message is signed end to end with the
// node keys (Node.Sign, mesh.CheckSigned): the source signs what it sends
// down over the push id, its target's member index, a sequence number,
// an expiry and the message (sigDown), a receiver what it sends up over the push
// id, its own index and the report (sigUp). Every member on the way
// checks the signature before it passes a message on, as the target
// does: so a forged or altered message is caught by the first honest
// member it reaches, which scores down the member that passed it, drops
// it and leaves that member out from then on (a receiver sends its
// reports around it, the source drops it from the push and routes
// around it: onUp, distrust). A target takes each down message once
// (seqWindow): an order replayed would have it upload its pieces again.
// A report needs no sequence: what a receiver holds and whom it caught
// only grow within a push, so an earlier report of the same push says
// nothing that is no longer true, and one of another push does not check
// out (the push id, a fresh random nonce per push, is signed). A routed
// offer passes Accept on its signer, the source, as a direct one does:
// the forwarder can neither make it nor alter it, so a receiver that
// takes pushes from the source alone (--accept-push SOURCE) is reached
// through the groups before it and the source links to the first group
// only. That the source signed an offer once does not say it still
// offers it: a routed offer is taken only before its signed expiry
// (routeTTL), and not again for a push this node received and forgot
// (ended, or idle) unless its sequence number is newer than every one
// taken then (pushes.forgotten): an offer replayed after the end would
// start the push again for nothing.
const (
	pushRoute byte = 0x10 + iota
	pushUp
)

// The contexts of the signatures on routed push messages (Node.Sign).
const (
	sigDown   = "catnest shards push down 3"
	sigUp     = "catnest shards push report 3"
	sigAnswer = "catnest shards push answer 3"
)

// maxRouteHops bounds a route's path: one member a group.
const maxRouteHops = (MaxPushReceivers + spanGroup - 1) / spanGroup

// What a routed message's answer says. The target's own answers, that it
// took the message or declined it, are signed by it (answer): a member on
// the way could otherwise say the target took what it swallowed (a
// receiver that never got the offer counted in, the push never ending
// for it) or declined it (a receiver that declines an offer leaves the
// push at once). What a member says of the member after it (unreachable,
// refused) it cannot prove: it counts as a failed call, which leaves a
// receiver only after GoneAfter, never as the target's refusal.
const (
	routeUnreachable byte = 1 // the member named could not be reached
	routeRefused     byte = 2 // the member named answered with an error
	routeTaken       byte = 3 // the target took it, signed
	routeDeclined    byte = 4 // the target declined it, signed
)

// errPushBusy is a receiver's refusal of an offer because it receives
// MaxIncoming pushes already: the source tries it again later.
var errPushBusy = errors.New("shards: push refused: busy")

// errStaleOffer is a receiver's refusal of a routed offer past its
// expiry: a replayed one, or the receiver's clock is ahead of the
// source's by more than routeTTL; the source offers it directly then.
var errStaleOffer = errors.New("shards: push refused: routed offer expired")

// routeTTL is how long after the source signed it a routed message is
// taken as an offer. Each offer is signed anew (callMember), so it is
// only the clock difference between the nodes it must cover, and the
// time a message takes down the groups.
const routeTTL = 10 * time.Minute

// maxForgotten bounds pushes.forgotten: the pushes this node received
// and forgot, which it does not start again from a routed offer
// replayed (older ones expired, routeTTL, unless a node takes more
// than this many pushes within it).
const maxForgotten = 256

// spanBounds are the members [lo, hi) of group g of a span push to n.
func spanBounds(g, n int) (lo, hi int) {
	_, w, extra := spanGroups(n)
	lo = g*w + min(g, extra)
	hi = lo + w
	if g < extra {
		hi++
	}
	return lo, hi
}

// route is the path of a message from the source to receiver k: k alone,
// or in a span one usable member of each group before k's (the one at
// k's place in its group if it can), from the first group down. A group
// with none usable is skipped. Each routed call to k that failed moves
// the route on by one member in every group (turn), and it stays there
// once a call answers: a member on the way that says k, or another
// member after it, failed may be lying (it cannot prove it,
// checkAnswer), and the next call goes around it too. Moved on by k's
// own failures only, a route kept its liar when the lie blamed a member
// between: that member was left out of the route a while, and once it
// answered a probe the liar blamed it again, so that k was never
// reached. An offer (offering) may go through members
// that have not taken the push yet, but are not failing: they are
// offered it at the same time (offerAll, awaitJoin). op.mu is held.
func (op *outPush) route(k int, offering bool) []int {
	n := len(op.Members)
	if op.Plan != PlanSpan {
		return []int{k}
	}
	g, lo, _ := spanGroupOf(k, n)
	path := []int{k}
	for gg := g - 1; gg >= 0; gg-- {
		glo, ghi := spanBounds(gg, n)
		first := glo + (min(k-lo, ghi-glo-1)+op.turn[k])%(ghi-glo)
		for t := range ghi - glo {
			h := glo + (first-glo+t)%(ghi-glo)
			if op.usable(h) || offering && op.live(h) && op.fails[h] == 0 {
				path = append(path, h)
				break
			}
		}
	}
	slices.Reverse(path)
	return path
}

// callMember sends a push message to receiver k, along op.route(k). It
// returns the member at fault when it fails: k, or a member on the way.
func (p *pushes) callMember(ctx context.Context, op *outPush, k int, msg []byte) (int, error) {
	op.mu.Lock()
	path := op.route(k, msg[0] == pushOffer)
	turn := op.turn[k]
	var seq uint64
	if len(path) > 1 {
		op.seq[k]++
		seq = op.seq[k]
	}
	op.mu.Unlock()
	if len(path) == 1 {
		return k, p.call(ctx, op.Members[k], msg)
	}
	expires := time.Now().Add(routeTTL).Unix()
	sig, err := p.node.Sign(sigDown, downSigned(op.Push, k, seq, expires, msg))
	if err != nil {
		return -1, fmt.Errorf("shards: push: %w", err)
	}
	r := routed{source: p.node.ID(), path: path, seq: seq, expires: expires, sig: sig, inner: msg}
	ans, err := p.request(ctx, op.Members[path[0]], r.encode(op.Push), p.routeTimeout(len(path)))
	at := path[0]
	if err == nil {
		at, err = checkAnswer(op.Push, path, seq, ans, op.Members)
		if errors.Is(err, ErrBadFrame) {
			// Forged or garbled on the way back, and the members
			// after the first check what they pass back: the first
			// passed it.
			p.node.Penalize(op.Members[path[0]], "bad routed push answer")
			at = path[0]
		}
	}
	if err != nil && ctx.Err() == nil {
		// Calls that went the same way and failed together move it
		// on once: each, it would come round to the same liar.
		op.mu.Lock()
		if op.turn[k] == turn {
			op.turn[k]++
		}
		op.mu.Unlock()
	}
	return at, err
}

// routeTimeout is how long a routed call along hops members waits for
// its answer: BlockTimeout for the last hop, and a quarter of it more for
// each hop before. Each member on the way waits less than the one before
// it, so when the target hangs it is the last forwarder's wait that runs
// out, and the answer blames the target; with one timeout for all, the
// source's would run out first and blame the first member on the way,
// and an honest member of the first group would be counted gone for a
// receiver further down that hangs.
func (p *pushes) routeTimeout(hops int) time.Duration {
	return p.cfg.BlockTimeout + time.Duration(hops-1)*p.cfg.BlockTimeout/4
}

// routed is a down message on its way: the inner message the source
// sent to the last member of path, and the source's signature over it
// (downSigned).
type routed struct {
	source mesh.ID
	path   []int
	seq    uint64
	// expires is when it stops being taken as an offer (Unix seconds,
	// the source's clock: routeTTL).
	expires int64
	sig     []byte
	inner   []byte
}

// routeFixed is the size of a routed message's fields of fixed size:
// kind and push id, source, hop count, seq, expiry and signature length.
const routeFixed = pushHeader + idSize + 1 + 8 + 8 + 2

// encode wraps r to go along r.path.
func (r routed) encode(pid pushID) []byte {
	b := make([]byte, 0, routeFixed+2*len(r.path)+len(r.sig)+len(r.inner))
	b = append(b, pushRoute)
	b = append(b, pid[:]...)
	b = append(b, r.source...)
	b = append(b, byte(len(r.path)))
	for _, h := range r.path {
		b = binary.BigEndian.AppendUint16(b, uint16(h))
	}
	b = binary.BigEndian.AppendUint64(b, r.seq)
	b = binary.BigEndian.AppendUint64(b, uint64(r.expires))
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.sig)))
	b = append(b, r.sig...)
	return append(b, r.inner...)
}

// downSigned is what the source signs of a down message: the push, the
// target, the sequence number, the expiry and the message.
func downSigned(pid pushID, target int, seq uint64, expires int64, inner []byte) []byte {
	b := make([]byte, 0, len(pid)+2+8+8+len(inner))
	b = append(b, pid[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(target))
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.BigEndian.AppendUint64(b, uint64(expires))
	return append(b, inner...)
}

// check checks the source's signature on r, a message of push pid.
func (r routed) check(pid pushID) error {
	target := r.path[len(r.path)-1]
	if err := mesh.CheckSigned(r.source, sigDown, downSigned(pid, target, r.seq, r.expires, r.inner), r.sig); err != nil {
		return fmt.Errorf("%w: routed push message: %w", ErrBadFrame, err)
	}
	return nil
}

// decodeRoute decodes a routed message of a push of members receivers
// (0: a push not known here, any member index up to MaxPushReceivers).
// It checks the form only, not the signature (routed.check).
func decodeRoute(b []byte, members int) (routed, error) {
	var r routed
	if members <= 0 {
		members = MaxPushReceivers
	}
	if len(b) < routeFixed+pushHeader || b[0] != pushRoute {
		return r, fmt.Errorf("%w: short routed push message", ErrBadFrame)
	}
	source, err := mesh.ParseID(string(b[pushHeader : pushHeader+idSize]))
	if err != nil {
		return r, fmt.Errorf("%w: routed push message: %v", ErrBadFrame, err)
	}
	b = b[pushHeader+idSize:]
	n := int(b[0])
	b = b[1:]
	if n == 0 || n > maxRouteHops || len(b) < 2*n+8+8+2 {
		return r, fmt.Errorf("%w: route of %d hops", ErrBadFrame, n)
	}
	path := make([]int, n)
	for i := range path {
		if path[i] = int(binary.BigEndian.Uint16(b[2*i:])); path[i] >= members {
			return r, fmt.Errorf("%w: route through member %d of %d", ErrBadFrame, path[i], members)
		}
	}
	b = b[2*n:]
	seq := binary.BigEndian.Uint64(b)
	expires := int64(binary.BigEndian.Uint64(b[8:]))
	sl := int(binary.BigEndian.Uint16(b[16:]))
	b = b[18:]
	if sl == 0 || sl > mesh.MaxSignature || len(b) < sl+pushHeader {
		return r, fmt.Errorf("%w: routed push message with a signature of %d bytes", ErrBadFrame, sl)
	}
	return routed{source: source, path: path, seq: seq, expires: expires, sig: b[:sl], inner: b[sl:]}, nil
}

// seqWindow remembers which of the last 64 sequence numbers of down
// messages a receiver took (the anti-replay window of RFC 4303 §3.4.3):
// each is taken once, and one older than the window not at all. The
// source numbers each receiver's messages in order; those it has under
// way at once (a few orders, a probe) are far fewer than 64, so an honest
// one that overtakes another is still taken.
type seqWindow struct {
	top  uint64 // the highest taken
	seen uint64 // bit d: top-d was taken
}

// take reports whether seq is new, and remembers it.
func (w *seqWindow) take(seq uint64) bool {
	switch {
	case seq > w.top:
		if d := seq - w.top; d < 64 {
			w.seen <<= d
		} else {
			w.seen = 0
		}
		w.top = seq
		w.seen |= 1
		return true
	case w.top-seq >= 64:
		return false
	}
	bit := uint64(1) << (w.top - seq)
	if w.seen&bit != 0 {
		return false
	}
	w.seen |= bit
	return true
}

// past makes every sequence number up to top count as taken: a receiver
// that takes an offer numbered top, or takes again a push it forgot,
// takes none of the source's earlier messages (a replayed order would
// have it upload its pieces again). The source numbers each receiver's
// messages in order, so an honest one it sends later is newer.
func (w *seqWindow) past(top uint64) {
	if top >= w.top {
		w.top, w.seen = top, ^uint64(0)
	}
}

// forget records that this node no longer receives ip: the source ended
// it, and sends no more to it, or it went idle, and the source may offer
// it again, with a newer sequence number than the last taken. p.mu is
// held.
func (p *pushes) forget(ip *inPush, ended bool) {
	ip.mu.Lock()
	top := ip.seqs.top
	ip.mu.Unlock()
	if ended {
		top = math.MaxUint64
	}
	if _, ok := p.forgotten[ip.Push]; !ok {
		p.forgetOrder = append(p.forgetOrder, ip.Push)
	}
	p.forgotten[ip.Push] = max(top, p.forgotten[ip.Push])
	for len(p.forgetOrder) > maxForgotten {
		delete(p.forgotten, p.forgetOrder[0])
		p.forgetOrder = p.forgetOrder[1:]
	}
}

// routeStatus is a member's answer to a routed message that failed
// after it: how, and at which member.
func routeStatus(kind byte, member int, err error) []byte {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	b := []byte{kind}
	b = binary.BigEndian.AppendUint16(b, uint16(member))
	return append(b, msg...)
}

// answerSigned is what a target signs of its answer to a routed message:
// the push, itself, the message's sequence number, taken or declined,
// and why.
func answerSigned(pid pushID, target int, seq uint64, kind byte, msg []byte) []byte {
	b := make([]byte, 0, len(pid)+2+8+1+len(msg))
	b = append(b, pid[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(target))
	b = binary.BigEndian.AppendUint64(b, seq)
	b = append(b, kind)
	return append(b, msg...)
}

// answer is this node's signed answer, as the target, to r: taken if err
// is nil, else declined for err.
func (p *pushes) answer(pid pushID, r routed, err error) ([]byte, error) {
	target := r.path[len(r.path)-1]
	kind, msg := routeTaken, ""
	if err != nil {
		kind, msg = routeDeclined, err.Error()
		if len(msg) > 200 {
			msg = msg[:200]
		}
	}
	sig, serr := p.node.Sign(sigAnswer, answerSigned(pid, target, r.seq, kind, []byte(msg)))
	if serr != nil {
		return nil, fmt.Errorf("shards: push answer: %w", serr)
	}
	b := make([]byte, 0, 5+len(sig)+len(msg))
	b = append(b, kind)
	b = binary.BigEndian.AppendUint16(b, uint16(target))
	b = binary.BigEndian.AppendUint16(b, uint16(len(sig)))
	b = append(b, sig...)
	return append(b, msg...), nil
}

// checkAnswer reads the answer to the routed message seq of push pid
// along path (from the reader's next hop to the target): the member at
// fault and an error, none if the target took it. The target's answer
// counts only with its signature; declined, the error is a
// *mesh.RemoteError (refusal, forgot). A member's claim about another on
// the path is a *mesh.RemoteError of that member if it refused, but of
// the target it is only a failed call. A malformed or forged answer is
// ErrBadFrame, at -1.
func checkAnswer(pid pushID, path []int, seq uint64, b []byte, members []mesh.ID) (int, error) {
	if len(b) < 3 || len(b) > maxPushMsg {
		return -1, fmt.Errorf("%w: routed push answer of %d bytes", ErrBadFrame, len(b))
	}
	kind, k := b[0], int(binary.BigEndian.Uint16(b[1:]))
	target := path[len(path)-1]
	if k >= len(members) || !slices.Contains(path, k) {
		return -1, fmt.Errorf("%w: routed push answer names member %d, not on the way", ErrBadFrame, k)
	}
	switch kind {
	case routeTaken, routeDeclined:
		if k != target || len(b) < 5 {
			return -1, fmt.Errorf("%w: routed push answer of member %d for %d", ErrBadFrame, k, target)
		}
		sl := int(binary.BigEndian.Uint16(b[3:]))
		if sl == 0 || sl > mesh.MaxSignature || len(b) < 5+sl {
			return -1, fmt.Errorf("%w: routed push answer with a signature of %d bytes", ErrBadFrame, sl)
		}
		sig, msg := b[5:5+sl], b[5+sl:]
		if err := mesh.CheckSigned(members[k], sigAnswer, answerSigned(pid, k, seq, kind, msg), sig); err != nil {
			return -1, fmt.Errorf("%w: routed push answer: %w", ErrBadFrame, err)
		}
		if kind == routeTaken {
			return k, nil
		}
		return k, &mesh.RemoteError{Peer: members[k], Msg: string(msg)}
	case routeRefused:
		if k != target {
			return k, &mesh.RemoteError{Peer: members[k], Msg: string(b[3:])}
		}
		return k, fmt.Errorf("shards: push route: %s refused, says the member before it: %s", members[k].Short(), b[3:])
	case routeUnreachable:
		return k, fmt.Errorf("shards: push route: %s unreachable: %s", members[k].Short(), b[3:])
	}
	return -1, fmt.Errorf("%w: routed push answer kind %d", ErrBadFrame, kind)
}

// refusal reports whether err is a receiver's final no: it answered with
// an error, and not that it is busy.
func refusal(err error) bool {
	var re *mesh.RemoteError
	return errors.As(err, &re) && !strings.Contains(re.Msg, errPushBusy.Error())
}

// forgot reports whether err is a receiver's answer that it does not know
// the push (it went idle, or restarted): it is offered the push again.
func forgot(err error) bool {
	var re *mesh.RemoteError
	return errors.As(err, &re) && strings.Contains(re.Msg, "no push ")
}

// onRoute handles a routed message: its target takes the inner message
// as from the source; a member on the way sends the rest on and answers
// for the rest of the way. Both check the source's signature first.
func (p *pushes) onRoute(ctx context.Context, from mesh.ID, pid pushID, b []byte) ([]byte, error) {
	p.mu.Lock()
	ip := p.in[pid]
	p.mu.Unlock()
	members := 0
	if ip != nil {
		members = len(ip.Members)
	}
	r, err := decodeRoute(b, members)
	if err != nil {
		p.node.Penalize(from, "bad routed push message")
		return nil, err
	}
	if string(r.inner[1:pushHeader]) != string(pid[:]) {
		p.node.Penalize(from, "bad routed push message")
		return nil, fmt.Errorf("%w: routed message of another push", ErrBadFrame)
	}
	if len(r.path) == 1 && r.inner[0] == pushOffer {
		// An offer: this node is not in the push yet.
		if err := r.check(pid); err != nil {
			p.node.Penalize(from, "forged routed push message")
			return nil, err
		}
		// Not scored down for a stale one or a replay: the member that
		// passed it may be an honest one that could not tell.
		if time.Now().Unix() > r.expires {
			return p.answer(pid, r, errStaleOffer)
		}
		p.mu.Lock()
		top, forgot := p.forgotten[pid]
		p.mu.Unlock()
		if forgot && r.seq <= top {
			return nil, fmt.Errorf("%w: routed offer %d of push %s, which ended or went idle here", ErrBadFrame, r.seq, pid)
		}
		if err := p.onOffer(ctx, r.source, from, r.path[0], r.inner); err != nil {
			return p.answer(pid, r, err)
		}
		p.mu.Lock()
		if ip := p.in[pid]; ip != nil {
			ip.mu.Lock()
			ip.seqs.past(r.seq)
			ip.mu.Unlock()
		}
		p.mu.Unlock()
		return p.answer(pid, r, nil)
	}
	checked := false
	if ip == nil && len(r.path) > 1 && r.inner[0] == pushOffer {
		// An offer to a member after this one: this node's own is on
		// its way (offerAll). Checked before the wait: a forged one,
		// for a push id made up, would hold this handler for it and
		// go unpunished.
		if err := r.check(pid); err != nil {
			p.node.Penalize(from, "forged routed push message")
			return nil, err
		}
		checked = true
		ip = p.awaitJoin(ctx, pid)
	}
	if ip == nil {
		err := fmt.Errorf("%w: no push %s here", ErrUnknown, pid)
		if len(r.path) == 1 && r.check(pid) == nil {
			// Signed, so that the source offers it again (forgot).
			return p.answer(pid, r, err)
		}
		return nil, err
	}
	if ip.source != r.source || r.path[0] != ip.self || !upstream(ip.offer, from, r.source, ip.self) {
		p.node.Penalize(from, "routed push message from outside the push")
		return nil, fmt.Errorf("%w: routed message not for this node, or from outside push %s", ErrBadFrame, pid)
	}
	if !checked {
		if err := r.check(pid); err != nil {
			p.node.Penalize(from, "forged routed push message")
			p.distrust(ip, from, err)
			return nil, err
		}
	}
	if len(r.path) == 1 {
		ip.mu.Lock()
		fresh := ip.seqs.take(r.seq)
		ip.mu.Unlock()
		if !fresh {
			// Not scored down: the member that passed it may be an
			// honest one that could not tell.
			return nil, fmt.Errorf("%w: routed push message %d taken before", ErrBadFrame, r.seq)
		}
		switch r.inner[0] {
		case pushOrder:
			err = p.onOrder(r.source, pid, r.inner)
		case pushEnd:
			p.onEnd(r.source, pid)
		default:
			p.node.Penalize(from, "bad routed push message")
			return nil, fmt.Errorf("%w: routed push message kind %d", ErrBadFrame, r.inner[0])
		}
		return p.answer(pid, r, err)
	}
	next := r.path[1]
	// The handler's wait ends with this node's pushes too, not only
	// with the link: a node that stops does not wait BlockTimeout for
	// the members after it.
	p.mu.Lock()
	run := p.runCtx
	p.mu.Unlock()
	if run == nil {
		return nil, fmt.Errorf("shards: push: %w", mesh.ErrClosed)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(run, cancel)()
	r.path = r.path[1:]
	ans, err := p.request(ctx, ip.Members[next], r.encode(pid), p.routeTimeout(len(r.path)))
	var re *mesh.RemoteError
	switch {
	case errors.As(err, &re):
		return routeStatus(routeRefused, next, err), nil
	case err != nil:
		return routeStatus(routeUnreachable, next, err), nil
	}
	if _, err := checkAnswer(pid, r.path, r.seq, ans, ip.Members); errors.Is(err, ErrBadFrame) {
		// The member after this one made it up, or passed on one
		// made up: the source counts a failure against it.
		p.node.Penalize(ip.Members[next], "bad routed push answer")
		return routeStatus(routeRefused, next, err), nil
	}
	return ans, nil
}

// awaitJoin waits for this node to take push pid, for at most
// min(BlockTimeout/8, 4·Repair): less than the BlockTimeout/4 each
// forwarder waits less than the one before it (routeTimeout), so that a
// wait that runs out still blames this node, not the member after it.
// It returns nil if it did not.
func (p *pushes) awaitJoin(ctx context.Context, pid pushID) *inPush {
	t := time.NewTimer(min(p.cfg.BlockTimeout/8, 4*p.cfg.Repair))
	defer t.Stop()
	for {
		p.mu.Lock()
		ip, joined := p.in[pid], p.joined
		p.mu.Unlock()
		if ip != nil {
			return ip
		}
		select {
		case <-joined:
		case <-t.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// distrust leaves member id out of ip's relays and of its reports' way up
// for good (but for the source's orders, onOrder): it passed on a routed
// message whose signature does not check out.
func (p *pushes) distrust(ip *inPush, id mesh.ID, err error) {
	k := ip.member(id)
	if k < 0 {
		return
	}
	p.log.Info("push member forges routed messages: left out", "push", ip.Push, "peer", id.Short(), "err", err)
	ip.mu.Lock()
	ip.downUntil[k] = time.Now().Add(24 * time.Hour)
	ip.mu.Unlock()
}

// upstream reports whether from may pass on messages between the source
// and member self of push o: the source itself, or a member of an
// earlier group of a span, as routes go. A member that could route to
// any other (its own group, an earlier one, any member of a matrix)
// could end the push there, or report for it that it is whole, and so
// stop the source serving every other receiver; this way a hostile
// member forges at most for those it forwards for anyway.
func upstream(o offer, from, source mesh.ID, self int) bool {
	if from == source {
		return true
	}
	k := slices.Index(o.Members, from)
	if o.Plan != PlanSpan || k < 0 || self < 0 || self >= len(o.Members) {
		return false
	}
	gf, _, _ := spanGroupOf(k, len(o.Members))
	gs, _, _ := spanGroupOf(self, len(o.Members))
	return gf < gs
}

// encodeUp wraps a report of member origin, signed by it (upSigned), to
// go up to the source.
func encodeUp(pid pushID, origin int, sig, report []byte) []byte {
	b := make([]byte, 0, pushHeader+4+len(sig)+len(report))
	b = append(b, pushUp)
	b = append(b, pid[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(origin))
	b = binary.BigEndian.AppendUint16(b, uint16(len(sig)))
	b = append(b, sig...)
	return append(b, report...)
}

// upSigned is what a receiver signs of a report it sends up: the push,
// its own member index and the report.
func upSigned(pid pushID, origin int, report []byte) []byte {
	b := make([]byte, 0, len(pid)+2+len(report))
	b = append(b, pid[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(origin))
	return append(b, report...)
}

// signUp makes the up message of a report of this node's, member self.
func (p *pushes) signUp(pid pushID, self int, report []byte) ([]byte, error) {
	sig, err := p.node.Sign(sigUp, upSigned(pid, self, report))
	if err != nil {
		return nil, fmt.Errorf("shards: push report: %w", err)
	}
	return encodeUp(pid, self, sig, report), nil
}

// decodeUp decodes an up message of push pid: its origin, the origin's
// signature and the report (a pushHave message of pid). It checks the
// form only, not the signature.
func decodeUp(b []byte, pid pushID) (origin int, sig, report []byte, err error) {
	if len(b) < pushHeader+4 || b[0] != pushUp || string(b[1:pushHeader]) != string(pid[:]) {
		return 0, nil, nil, fmt.Errorf("%w: short forwarded push report", ErrBadFrame)
	}
	origin = int(binary.BigEndian.Uint16(b[pushHeader:]))
	sl := int(binary.BigEndian.Uint16(b[pushHeader+2:]))
	b = b[pushHeader+4:]
	if sl == 0 || sl > mesh.MaxSignature || len(b) < sl+pushHeader {
		return 0, nil, nil, fmt.Errorf("%w: forwarded push report with a signature of %d bytes", ErrBadFrame, sl)
	}
	sig, report = b[:sl], b[sl:]
	if report[0] != pushHave || string(report[1:pushHeader]) != string(pid[:]) {
		return 0, nil, nil, fmt.Errorf("%w: forwarded push report of another push", ErrBadFrame)
	}
	return origin, sig, report, nil
}

// onUp handles a report on its way up: the source takes it as its
// origin's, a member sends it on towards the source (sendUp); both check
// the origin's signature first.
func (p *pushes) onUp(ctx context.Context, from mesh.ID, pid pushID, b []byte) error {
	origin, sig, report, err := decodeUp(b, pid)
	if err != nil {
		p.node.Penalize(from, "bad push report")
		return err
	}
	p.mu.Lock()
	op, ip := p.out[pid], p.in[pid]
	p.mu.Unlock()
	if op != nil {
		k := slices.Index(op.Members, from)
		if k < 0 || origin >= len(op.Members) || !upstream(op.offer, from, "", origin) {
			p.node.Penalize(from, "forwarded push report from outside the push")
			return fmt.Errorf("%w: forwarded report from %s", ErrBadFrame, from.Short())
		}
		if err := mesh.CheckSigned(op.Members[origin], sigUp, upSigned(pid, origin, report), sig); err != nil {
			p.node.Penalize(from, "forged push report")
			// It forges for those it forwards for: it forwards for
			// none from now on, nor is it fed.
			op.mu.Lock()
			live := op.live(k)
			op.mu.Unlock()
			if live {
				p.log.Info("push receiver forges reports: dropped", "push", op.Push, "peer", from.Short(), "err", err)
				op.setGone(k, "forged the others' reports")
			}
			return fmt.Errorf("%w: forwarded push report: %w", ErrBadFrame, err)
		}
		return p.onHave(op.Members[origin], pid, report[pushHeader:], true)
	}
	if ip == nil {
		return fmt.Errorf("%w: no push %s here", ErrUnknown, pid)
	}
	// Its own report, or one of a member after it: not one for a member
	// it does not forward for.
	k, n := ip.member(from), len(ip.Members)
	if k < 0 || origin >= n || ip.Plan != PlanSpan || origin != k && !upstream(ip.offer, from, "", origin) {
		p.node.Penalize(from, "forwarded push report from outside the push")
		return fmt.Errorf("%w: forwarded report from %s", ErrBadFrame, from.Short())
	}
	gf, _, _ := spanGroupOf(k, n)
	gs, _, _ := spanGroupOf(ip.self, n)
	if gf <= gs {
		// Up is to an earlier group only: nothing loops.
		p.node.Penalize(from, "push report forwarded sideways")
		return fmt.Errorf("%w: report forwarded from group %d to %d", ErrBadFrame, gf, gs)
	}
	if err := mesh.CheckSigned(ip.Members[origin], sigUp, upSigned(pid, origin, report), sig); err != nil {
		p.node.Penalize(from, "forged push report")
		p.distrust(ip, from, err)
		return fmt.Errorf("%w: forwarded push report: %w", ErrBadFrame, err)
	}
	// Sent on from a worker, answered at once: a handler that waited
	// would hold a request slot of the link it came on, and a link whose
	// slots are full stops reading, answers to this node included. Down
	// routes wait for the groups after, up ones would wait for the
	// groups before: together they could fill each other's slots and
	// stall both links until BlockTimeout. A report lost on the way is
	// sent again (runReceiver).
	ip.mu.Lock()
	full := ip.upFlight >= maxUpFlight
	if !full {
		ip.upFlight++
	}
	ip.mu.Unlock()
	if full {
		return fmt.Errorf("%w: %d reports on their way up here", errPushBusy, maxUpFlight)
	}
	msg := bytes.Clone(b)
	if !p.spawn(func(ctx context.Context) {
		defer func() {
			ip.mu.Lock()
			ip.upFlight--
			ip.mu.Unlock()
		}()
		_ = p.sendUp(ctx, ip, msg)
	}) {
		ip.mu.Lock()
		ip.upFlight--
		ip.mu.Unlock()
		return fmt.Errorf("shards: push: %w", mesh.ErrClosed)
	}
	return nil
}

// maxUpFlight bounds the reports a member sends on up at once: those of
// the members after it, about one each.
const maxUpFlight = 4 * spanGroup

// sendUp sends msg (this node's report, or one on its way up) towards
// the source: directly if this node was offered the push directly, else
// to the member it was offered through or, if that fails, another member
// of that group (three tries; the report is sent again later).
func (p *pushes) sendUp(ctx context.Context, ip *inPush, msg []byte) error {
	if ip.via < 0 {
		return p.call(ctx, ip.source, msg)
	}
	n := len(ip.Members)
	g, lo, hi := spanGroupOf(ip.via, n)
	var err error
	tries := 0
	for t := range hi - lo {
		h := lo + (ip.via-lo+t)%(hi-lo)
		if ip.isDown(h) {
			continue
		}
		if err = p.call(ctx, ip.Members[h], msg); err == nil {
			ip.up(h)
			return nil
		}
		ip.down(h, p.cfg)
		if tries++; tries == 3 || ctx.Err() != nil {
			break
		}
	}
	if err == nil {
		err = fmt.Errorf("shards: push report: every member of group %d failed lately", g)
	}
	return err
}

// isDown reports whether member k failed a call from this node lately:
// it is tried again after a backoff (down).
func (ip *inPush) isDown(k int) bool {
	ip.mu.Lock()
	defer ip.mu.Unlock()
	return time.Now().Before(ip.downUntil[k])
}

// down marks member k as failing a call: it is left out for a backoff
// that doubles with each failure in a row, up to GoneAfter/4. One failed
// call does not drop it for good (a link not up yet, a busy node). Calls
// that were under way together and fail while it is down already count
// once: with one lost call of a window counted each, a lossy link's
// backoff doubled several times at once.
func (ip *inPush) down(k int, cfg PushConfig) {
	ip.mu.Lock()
	defer ip.mu.Unlock()
	if time.Now().Before(ip.downUntil[k]) {
		return
	}
	ip.downs[k]++
	ip.downUntil[k] = time.Now().Add(min(cfg.Repair<<min(ip.downs[k]-1, 20), cfg.GoneAfter/4))
}

// up records that member k answered a call.
func (ip *inPush) up(k int) {
	ip.mu.Lock()
	defer ip.mu.Unlock()
	ip.downs[k] = 0
	ip.downUntil[k] = time.Time{}
}
