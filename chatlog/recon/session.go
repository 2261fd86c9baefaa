package recon

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
)

// Options tune a session. Zero fields take the defaults; out-of-range
// values are clamped. Only FingerprintLen and MaxMessage must agree between
// the two sides; the others are local choices (each side splits and lists
// by its own counts). The defaults come from BenchmarkReconcile (see
// BENCHMARKS.md, "Chat history reconciliation"): at n = 100,000 they
// reconcile d = 10 differences in 4 round trips and about 4 KB.
type Options struct {
	// MaxMessage bounds every message, sent or received, in bytes
	// (default 256 KiB, at least 8 KiB). Work that does not fit is deferred
	// to later rounds; a received message larger than this is rejected.
	MaxMessage int
	// Branch is how many sub-ranges a differing range is split into
	// (default 8, 2..16). Fewer means fewer bytes per level but more levels,
	// hence more round trips.
	Branch int
	// LeafSize is the largest range, in this side's items, that is sent as
	// a list of ID prefixes instead of being split (default 32, 1..128).
	LeafSize int
	// PrefixLen is how many bytes of each ID a list carries (default 4,
	// 1..32). Shorter prefixes are cheaper; a prefix that matches a
	// different ID is caught by a fingerprint and the range is sent again
	// with full IDs, so correctness does not depend on it. With 32, lists
	// carry full IDs and the last confirming message is not needed.
	PrefixLen int
	// FingerprintLen is the length of range fingerprints in bytes
	// (default 8, 4..32). Two differing ranges are taken as equal with
	// probability 2^-(8×FingerprintLen) per comparison. Both sides must use
	// the same value.
	FingerprintLen int
	// MaxRounds bounds the messages a session accepts (default 64), so
	// that a peer cannot keep it busy forever. Each message carries up to
	// about MaxMessage/33 missing IDs, so with the defaults a session can
	// settle up to roughly 250,000 differences.
	MaxRounds int
	// SkipNeed makes the session keep no list of the IDs the peer has and
	// this side lacks ([Session.Need] returns none): for a side that is
	// sent what it lacks rather than fetching it, so that the IDs a peer
	// lists cost it no memory. Without it a session holds up to about
	// 100 bytes for each ID it is sent, MaxRounds × MaxMessage / 35 IDs.
	SkipNeed bool
}

func clamp(v, def, lo, hi int) int {
	if v == 0 {
		return def
	}
	return max(lo, min(v, hi))
}

func (o Options) normalize() Options {
	o.MaxMessage = clamp(o.MaxMessage, 256<<10, 8<<10, 1<<30)
	o.Branch = clamp(o.Branch, 8, 2, 16)
	o.LeafSize = clamp(o.LeafSize, 32, 1, maxList)
	o.PrefixLen = clamp(o.PrefixLen, 4, 1, 32)
	o.FingerprintLen = clamp(o.FingerprintLen, 8, 4, 32)
	o.MaxRounds = clamp(o.MaxRounds, 64, 1, 1<<20)
	return o
}

// Session is one side of a reconciliation. It is not safe for concurrent
// use. Messages returned by Start and Next are fresh slices owned by the
// caller; Next does not keep msg.
type Session struct {
	set     *Set
	opt     Options
	started bool
	done    bool
	rounds  int
	err     error
	have    map[[32]byte]struct{}
	// need maps each ID the peer has and this side lacks to where it was
	// learned: the range (an index into needRanges, by its lower bound)
	// and the order within the range. Ranges that yield IDs are disjoint
	// and list their IDs in the peer's order, so (range, seq) is the
	// peer's (time, ID) order without knowing the times.
	need       map[[32]byte]needAt
	needRanges []bound
	needSeq    int
	own        map[[32]byte]struct{} // scratch: this side's IDs in one range
}

type needAt struct {
	rng, seq int
}

// NewSession starts one side of a reconciliation of s.
func NewSession(s *Set, opts Options) *Session {
	return &Session{
		set:  s,
		opt:  opts.normalize(),
		have: make(map[[32]byte]struct{}),
		need: make(map[[32]byte]needAt),
		own:  make(map[[32]byte]struct{}),
	}
}

// Start returns the initiator's first message: the fingerprint of the
// whole set. Only the initiator calls it, once, before any Next.
func (x *Session) Start() ([]byte, error) {
	if x.started || x.rounds > 0 {
		return nil, errStarted
	}
	x.started = true
	w := newWriter(x.opt.FingerprintLen)
	neg, inf := bound{kind: boundNegInf}, bound{kind: boundInf}
	x.putFingerprint(w, &neg, &inf, 0, x.set.Len())
	return w.buf, nil
}

// Next processes a message from the peer and returns the reply to send, or
// nil when this side has nothing more to say. After an error the session
// is unusable and returns the same error.
func (x *Session) Next(msg []byte) ([]byte, error) {
	if x.err != nil {
		return nil, x.err
	}
	x.rounds++
	if x.rounds > x.opt.MaxRounds {
		x.err = fmt.Errorf("%w: %d", ErrTooManyRounds, x.opt.MaxRounds)
		return nil, x.err
	}
	reply, err := x.next(msg)
	if err != nil {
		x.err = err
		return nil, err
	}
	return reply, nil
}

// Done reports whether the reconciliation is over for this side: Next has
// returned nil, or returned a reply that the peer will not answer. Once
// Done, Have and Need are complete.
func (x *Session) Done() bool { return x.done }

// Have returns the IDs this side has and the peer lacks, oldest first
// (in (Time, ID) order), so that a caller can send the newest first.
func (x *Session) Have() [][32]byte {
	ids := make([][32]byte, 0, len(x.have))
	for k := range x.set.items {
		if _, ok := x.have[x.set.items[k].ID]; ok {
			ids = append(ids, x.set.items[k].ID)
		}
	}
	return slices.CompactFunc(ids, func(a, b [32]byte) bool { return a == b })
}

// Need returns the IDs the peer has and this side lacks in the peer's
// (Time, ID) order, oldest first, although this side never learns their
// times: so that a caller can fetch the newest first.
func (x *Session) Need() [][32]byte {
	type entry struct {
		id [32]byte
		at needAt
	}
	es := make([]entry, 0, len(x.need))
	for id, at := range x.need {
		es = append(es, entry{id, at})
	}
	slices.SortFunc(es, func(a, b entry) int {
		if a.at.rng != b.at.rng {
			return compareBounds(&x.needRanges[a.at.rng], &x.needRanges[b.at.rng])
		}
		return a.at.seq - b.at.seq
	})
	ids := make([][32]byte, len(es))
	for k := range es {
		ids[k] = es[k].id
	}
	return ids
}

// addNeed records id, which the peer has in the range from lower on. IDs
// must come in the peer's order within a range. A range listed again
// (after a prefix collision) lists all its IDs again, so the later place
// wins: Need orders equal ranges by seq.
func (x *Session) addNeed(id [32]byte, lower *bound) {
	if x.opt.SkipNeed {
		return
	}
	r := len(x.needRanges) - 1
	if r < 0 || compareBounds(&x.needRanges[r], lower) != 0 {
		x.needRanges = append(x.needRanges, *lower)
		r++
	}
	x.needSeq++
	x.need[id] = needAt{rng: r, seq: x.needSeq}
}

// checkpoint lets the encoder undo an entry that does not fit.
type checkpoint struct {
	n    int
	base int64
	last bound
	ask  bool
}

func (w *writer) mark() checkpoint {
	return checkpoint{len(w.buf), w.base, w.last, w.ask}
}

func (w *writer) reset(c checkpoint) {
	w.buf, w.base, w.last, w.ask = w.buf[:c.n], c.base, c.last, c.ask
}

// errDeferred stops processing of a message once the reply is full.
var errDeferred = fmt.Errorf("deferred")

func (x *Session) next(msg []byte) ([]byte, error) {
	f := x.opt.FingerprintLen
	if len(msg) > x.opt.MaxMessage {
		return nil, badf("message of %d bytes exceeds %d", len(msg), x.opt.MaxMessage)
	}
	if len(msg) == 0 || int(msg[0]) != headerBase+f {
		return nil, badf("bad header")
	}
	r := &reader{buf: msg[1:]}
	w := newWriter(f)
	lower, i := bound{kind: boundNegInf}, 0
	asked := false // the peer expects an answer
	for len(r.buf) > 0 {
		if lower.kind == boundInf {
			return nil, badf("entry after +inf")
		}
		upper, mode, err := r.entry()
		if err != nil {
			return nil, err
		}
		if compareBounds(&lower, &upper) >= 0 {
			return nil, badf("ranges out of order")
		}
		j := x.set.search(upper, i)
		asked = asked || mode == modeFingerprint || mode == modeList || mode == modeReply
		cp := w.mark()
		err = x.entry(r, w, mode, &lower, &upper, i, j)
		if err == nil && !x.fits(w) {
			w.reset(cp)
			err = x.deferFrom(w, &lower, i)
		}
		if err == errDeferred {
			break
		}
		if err != nil {
			return nil, err
		}
		lower, i = upper, j
	}
	switch {
	case w.empty() && !asked:
		x.done = true
		return nil, nil
	case !w.ask:
		// The peer will not answer: either we have nothing to say (an
		// empty message tells it so) or only IDs it asked for.
		x.done = true
	}
	return w.buf, nil
}

// fits reports whether w still leaves room for a deferral entry.
func (x *Session) fits(w *writer) bool {
	return len(w.buf)+maxSkipEntry+2+x.opt.FingerprintLen <= x.opt.MaxMessage
}

// deferFrom ends a full reply with the fingerprint of everything from
// lower on; the peer will find it differs and split it again next round.
func (x *Session) deferFrom(w *writer, lower *bound, i int) error {
	inf := bound{kind: boundInf}
	x.putFingerprint(w, lower, &inf, i, x.set.Len())
	return errDeferred
}

func (x *Session) entry(r *reader, w *writer, mode int, lower, upper *bound, i, j int) error {
	f := x.opt.FingerprintLen
	switch mode {
	case modeSkip:
		return nil
	case modeFingerprint:
		theirs, err := r.bytes(f)
		if err != nil {
			return err
		}
		ours := x.set.fp(i, j)
		switch {
		case bytes.Equal(ours[:f], theirs):
		case j-i <= x.opt.LeafSize:
			x.putList(w, lower, upper, i, j, x.opt.PrefixLen)
		default:
			x.split(w, lower, upper, i, j)
		}
		return nil
	case modeList:
		return x.list(r, w, lower, upper, i, j)
	case modeReply:
		return x.reply(r, w, lower, upper, i, j)
	case modeIDs:
		return x.ids(r, lower, i, j)
	}
	return badf("bad mode %d", mode)
}

func (x *Session) putFingerprint(w *writer, lower, upper *bound, i, j int) {
	w.put(lower, upper, modeFingerprint)
	fp := x.set.fp(i, j)
	w.buf = append(w.buf, fp[:x.opt.FingerprintLen]...)
}

func (x *Session) putList(w *writer, lower, upper *bound, i, j, width int) {
	w.put(lower, upper, modeList)
	w.buf = binary.AppendUvarint(w.buf, uint64(j-i))
	w.buf = append(w.buf, byte(width))
	for k := i; k < j; k++ {
		w.buf = append(w.buf, x.set.items[k].ID[:width]...)
	}
}

// split sends the fingerprints of Branch sub-ranges of [i, j) of about
// equal counts.
func (x *Session) split(w *writer, lower, upper *bound, i, j int) {
	c := j - i
	nb := min(x.opt.Branch, c)
	lo, s := *lower, i
	for k := 1; k <= nb; k++ {
		e := i + c*k/nb
		up := *upper
		if k < nb {
			if compareBounds(&lo, &w.last) != 0 {
				w.bound(&lo, modeSkip) // the split bound is relative to it
			}
			up = w.splitBound(x.set.items[e-1], x.set.items[e])
		}
		x.putFingerprint(w, &lo, &up, s, e)
		lo, s = up, e
	}
}

// ownIDs fills x.own with this side's IDs in [i, j).
func (x *Session) ownIDs(i, j int) {
	clear(x.own)
	for k := i; k < j; k++ {
		x.own[x.set.items[k].ID] = struct{}{}
	}
}

func (x *Session) list(r *reader, w *writer, lower, upper *bound, i, j int) error {
	k, err := r.count(maxList, 0)
	if err != nil {
		return err
	}
	wb, err := r.bytes(1)
	if err != nil {
		return err
	}
	width := int(wb[0])
	if width < 1 || width > 32 {
		return badf("prefix width %d", width)
	}
	if k*width > len(r.buf) {
		return badf("list of %d truncated", k)
	}
	prefixes, _ := r.bytes(k * width)
	c := j - i
	if c > maxList {
		if k > 0 {
			x.split(w, lower, upper, i, j)
			return nil
		}
		return x.sendAll(w, lower, upper, i, j)
	}
	// matched maps each listed prefix to whether this side has an item
	// with it.
	matched := make(map[string]bool, k)
	for p := 0; p < k; p++ {
		matched[string(prefixes[p*width:(p+1)*width])] = false
	}
	var extras []int
	sum, count := sum256{}, 0
	for q := i; q < j; q++ {
		id := &x.set.items[q].ID
		if _, ok := matched[string(id[:width])]; ok {
			matched[string(id[:width])] = true
			sum = sum.add(idSum(id))
			count++
		} else {
			extras = append(extras, q)
			x.have[*id] = struct{}{}
		}
	}
	var missing []int
	for p := 0; p < k; p++ {
		if !matched[string(prefixes[p*width:(p+1)*width])] {
			missing = append(missing, p)
			if width == 32 {
				x.addNeed([32]byte(prefixes[p*32:]), lower)
			}
		}
	}
	check := width < 32 && k > 0
	if !check && len(extras) == 0 && len(missing) == 0 {
		return nil
	}
	w.put(lower, upper, modeReply)
	hdr := uint64(len(extras)) << 1
	if check {
		hdr |= 1
	}
	w.buf = binary.AppendUvarint(w.buf, hdr)
	for _, q := range extras {
		w.buf = append(w.buf, x.set.items[q].ID[:]...)
	}
	w.buf = binary.AppendUvarint(w.buf, uint64(len(missing)))
	prev := -1
	for _, p := range missing {
		w.buf = binary.AppendUvarint(w.buf, uint64(p-prev-1))
		prev = p
	}
	if check {
		fp := fingerprint(sum, count)
		w.buf = append(w.buf, fp[:x.opt.FingerprintLen]...)
	}
	return nil
}

// sendAll answers an empty list over a range too large for one reply with
// replies of at most maxList IDs each, as many as fit.
func (x *Session) sendAll(w *writer, lower, upper *bound, i, j int) error {
	lo, s := *lower, i
	for s < j {
		e := min(s+maxList, j)
		cp := w.mark()
		up := *upper
		if e < j {
			if compareBounds(&lo, &w.last) != 0 {
				w.bound(&lo, modeSkip)
			}
			up = w.splitBound(x.set.items[e-1], x.set.items[e])
		}
		w.put(&lo, &up, modeReply)
		w.buf = binary.AppendUvarint(w.buf, uint64(e-s)<<1)
		for q := s; q < e; q++ {
			w.buf = append(w.buf, x.set.items[q].ID[:]...)
		}
		w.buf = append(w.buf, 0) // nothing missing
		if !x.fits(w) {
			w.reset(cp)
			return x.deferFrom(w, &lo, s)
		}
		for q := s; q < e; q++ {
			x.have[x.set.items[q].ID] = struct{}{}
		}
		lo, s = up, e
	}
	return nil
}

func (x *Session) reply(r *reader, w *writer, lower, upper *bound, i, j int) error {
	hdr, err := r.uvarint()
	if err != nil {
		return err
	}
	nExtra, check := hdr>>1, hdr&1 == 1
	if nExtra > maxList || int(nExtra)*32 > len(r.buf) {
		return badf("reply with %d extra IDs", nExtra)
	}
	extras, _ := r.bytes(int(nExtra) * 32)
	c := j - i
	if c > maxList {
		return badf("reply over a range of %d items", c)
	}
	nMissing, err := r.count(c, 1)
	if err != nil {
		return err
	}
	missing := make([]int, nMissing)
	prev := -1
	for k := range missing {
		d, err := r.uvarint()
		if err != nil {
			return err
		}
		if d >= uint64(c-prev-1) {
			return badf("missing index out of range")
		}
		prev += int(d) + 1
		missing[k] = prev
	}
	var theirs []byte
	if check {
		if theirs, err = r.bytes(x.opt.FingerprintLen); err != nil {
			return err
		}
	}
	x.ownIDs(i, j)
	for k := 0; k < len(extras); k += 32 {
		id := [32]byte(extras[k:])
		if _, ok := x.own[id]; ok {
			return badf("reply lists an ID this side has")
		}
		x.addNeed(id, lower)
	}
	sum := x.set.sums[j].sub(x.set.sums[i])
	for _, q := range missing {
		id := &x.set.items[i+q].ID
		x.have[*id] = struct{}{}
		sum = sum.sub(idSum(id))
	}
	if !check {
		return nil
	}
	if fp := fingerprint(sum, c-len(missing)); !bytes.Equal(fp[:x.opt.FingerprintLen], theirs) {
		// Some prefixes matched different IDs: settle the range with full IDs.
		x.putList(w, lower, upper, i, j, 32)
		return nil
	}
	if len(missing) > 0 {
		w.put(lower, upper, modeIDs)
		w.buf = binary.AppendUvarint(w.buf, uint64(len(missing)))
		for _, q := range missing {
			w.buf = append(w.buf, x.set.items[i+q].ID[:]...)
		}
	}
	return nil
}

func (x *Session) ids(r *reader, lower *bound, i, j int) error {
	k, err := r.count(maxList, 32)
	if err != nil {
		return err
	}
	if j-i > maxList {
		return badf("ids over a range of %d items", j-i)
	}
	b, _ := r.bytes(k * 32)
	x.ownIDs(i, j)
	for p := 0; p < len(b); p += 32 {
		id := [32]byte(b[p:])
		if _, ok := x.own[id]; ok {
			return badf("ids entry lists an ID this side has")
		}
		x.addNeed(id, lower)
	}
	return nil
}
