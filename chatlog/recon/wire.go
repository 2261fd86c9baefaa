package recon

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
)

// Wire format. A message is one header byte (headerBase + fingerprint
// length) followed by entries. Each entry covers the range from the previous
// entry's upper bound (the first from -inf) to its own upper bound; ranges
// after the last entry are implicitly skipped.
//
//	entry   = time mode [prefix] payload
//	time    = varint u: 0 = +inf; else v = u-1, s = v&31, q = v>>5:
//	          s < 31: delta = q<<s; s = 31: q = 0 and a varint delta follows.
//	          The bound's time is the previous bound's time (0 at first) + delta.
//	mode    = byte mode*33 + plen; plen (0..32) bytes of ID prefix follow.
//	          The bound is (time, prefix padded with zero bytes).
//
// Payloads by mode:
//
//	skip        nothing
//	fingerprint f bytes
//	list        varint count, byte width, count × width ID prefixes (width 32:
//	            full IDs), in the sender's order
//	reply       varint nExtra<<1|check, nExtra × 32 IDs the sender has and the
//	            list lacked, varint nMissing, nMissing delta-coded indices of
//	            list entries the sender lacks, then f bytes (check = 1): the
//	            fingerprint of the sender's items that matched the list
//	ids         varint count, count × 32 full IDs (the list entries reported
//	            missing)
const headerBase = 0x40

const (
	modeSkip = iota
	modeFingerprint
	modeList
	modeReply
	modeIDs
	numModes
)

// maxList bounds the items of any list, reply or ids entry, so that one
// entry always fits a message and a peer's entry costs bounded work.
const maxList = 128

// maxSkipEntry is the most bytes a bound entry with no payload can take.
const maxSkipEntry = 1 + binary.MaxVarintLen64 + 1 + 32

const (
	boundNegInf = iota
	boundFinite
	boundInf
)

// bound is a range boundary: an item key (time, id) where the id is a prefix
// padded with zero bytes, or ±infinity.
type bound struct {
	kind int
	time int64
	plen int
	id   [32]byte // bytes past plen are zero
}

// above reports whether it < b.
func (b *bound) above(it Item) bool {
	switch b.kind {
	case boundInf:
		return true
	case boundNegInf:
		return false
	}
	if it.Time != b.time {
		return it.Time < b.time
	}
	return bytes.Compare(it.ID[:], b.id[:]) < 0
}

func compareBounds(a, b *bound) int {
	if a.kind != b.kind || a.kind != boundFinite {
		return a.kind - b.kind
	}
	if a.time != b.time {
		if a.time < b.time {
			return -1
		}
		return 1
	}
	return bytes.Compare(a.id[:], b.id[:])
}

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadMessage}, args...)...)
}

type reader struct {
	buf  []byte
	base int64
}

func (r *reader) uvarint() (uint64, error) {
	v, n := binary.Uvarint(r.buf)
	if n <= 0 {
		return 0, badf("bad varint")
	}
	r.buf = r.buf[n:]
	return v, nil
}

func (r *reader) bytes(n int) ([]byte, error) {
	if n < 0 || n > len(r.buf) {
		return nil, badf("truncated")
	}
	b := r.buf[:n]
	r.buf = r.buf[n:]
	return b, nil
}

// count reads a varint that counts units of size bytes each, at most max.
func (r *reader) count(max, size int) (int, error) {
	v, err := r.uvarint()
	if err != nil {
		return 0, err
	}
	if v > uint64(max) || int(v)*size > len(r.buf) {
		return 0, badf("count %d out of range", v)
	}
	return int(v), nil
}

// entry reads an entry's bound and mode.
func (r *reader) entry() (b bound, mode int, err error) {
	u, err := r.uvarint()
	if err != nil {
		return b, 0, err
	}
	if u == 0 {
		b.kind = boundInf
	} else {
		b.kind = boundFinite
		v := u - 1
		s, q := uint(v&31), v>>5
		var d uint64
		if s == 31 {
			if q != 0 {
				return b, 0, badf("bad time")
			}
			if d, err = r.uvarint(); err != nil {
				return b, 0, err
			}
		} else {
			d = q << s
			if d>>s != q {
				return b, 0, badf("time overflow")
			}
		}
		b.time = int64(uint64(r.base) + d)
		r.base = b.time
	}
	m, err := r.bytes(1)
	if err != nil {
		return b, 0, err
	}
	mode, b.plen = int(m[0])/33, int(m[0])%33
	if mode >= numModes || (b.kind == boundInf && b.plen != 0) {
		return b, 0, badf("bad mode byte %d", m[0])
	}
	p, err := r.bytes(b.plen)
	if err != nil {
		return b, 0, err
	}
	copy(b.id[:], p)
	return b, mode, nil
}

type writer struct {
	buf  []byte
	base int64
	last bound // the upper bound of the last entry written
	ask  bool  // an entry asks the peer for an answer
}

func newWriter(f int) *writer {
	return &writer{buf: []byte{byte(headerBase + f)}}
}

func (w *writer) empty() bool { return len(w.buf) == 1 }

// put writes an entry for [lower, upper), preceded by a skip entry up to
// lower if the previous entry did not end there.
func (w *writer) put(lower, upper *bound, mode int) {
	if compareBounds(lower, &w.last) != 0 {
		w.bound(lower, modeSkip)
	}
	w.bound(upper, mode)
}

func (w *writer) bound(b *bound, mode int) {
	w.last = *b
	w.ask = w.ask || mode == modeFingerprint || mode == modeList || mode == modeReply
	if b.kind == boundInf {
		w.buf = append(w.buf, 0, byte(mode*33))
		return
	}
	d := uint64(b.time) - uint64(w.base)
	w.base = b.time
	s := min(bits.TrailingZeros64(d), 30)
	if d == 0 {
		s = 0
	}
	if q := d >> s; q < 1<<58 {
		w.buf = binary.AppendUvarint(w.buf, 1+(q<<5|uint64(s)))
	} else {
		w.buf = binary.AppendUvarint(w.buf, 1+31)
		w.buf = binary.AppendUvarint(w.buf, d)
	}
	w.buf = append(w.buf, byte(mode*33+b.plen))
	w.buf = append(w.buf, b.id[:b.plen]...)
}

// splitBound is the bound between adjacent items a < b that is cheapest to
// write after the writer's current base: the empty ID prefix and the time
// in (a.Time, b.Time] with the most trailing zero bits relative to the base
// when the times differ, else b's time and the shortest prefix of b.ID
// above a.ID.
func (w *writer) splitBound(a, b Item) bound {
	bd := bound{kind: boundFinite, time: b.Time}
	if a.Time == b.Time {
		c := 0
		for a.ID[c] == b.ID[c] {
			c++
		}
		bd.plen = c + 1
		copy(bd.id[:bd.plen], b.ID[:])
		return bd
	}
	if a.Time < w.base {
		return bd
	}
	lo := uint64(a.Time) - uint64(w.base)
	hi := uint64(b.Time) - uint64(w.base)
	s := min(bits.Len64(lo^hi)-1, 30)
	bd.time = int64(uint64(w.base) + hi>>s<<s)
	return bd
}
