package shards

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/catnest/catnest/internal/reslist"
)

// The request protocols nodes serve one another (mesh.Node.Handle). Every
// request is small and goes on the ctl channel unless said otherwise; an
// error answer is the mesh's RemoteError with the reason.
const (
	// ProtoManifest: request = a resource id (16 bytes); answer = the
	// manifest's encoding, over the bulk channel. The asker checks it
	// against the hash it knows before use.
	ProtoManifest = "shards/manifest/1"
	// ProtoHave: request = a resource id; answer = what the node holds of
	// it (encodeHave): none, all, or a bitfield.
	ProtoHave = "shards/have/1"
	// ProtoBlock: request = encodeBlockReq; answer = exactly the bytes
	// asked for, over the bulk channel.
	ProtoBlock = "shards/block/1"
	// ProtoSpan: request = encodeBlockReq, the block may run on past the
	// end of its piece into the pieces that follow (blockSpan), each of
	// which the server must hold; answer = exactly the bytes asked for,
	// over the bulk channel. A file of small pieces (64 KiB up to 128 MB)
	// is fetched in blocks of up to BlockSize this way: with a block per
	// piece, the 16 requests a peer may have in flight held 1 MiB, too
	// little to keep a fast link busy, and every piece cost a request and
	// an answer of its own. It is a protocol of its own, not a wider
	// ProtoBlock, so that a node that predates it answers "no handler"
	// (and is asked piece by piece) instead of scoring the asker down for
	// a block outside its piece.
	ProtoSpan = "shards/span/1"
	// ProtoList: request = encodeListReq; answer = encodeListPage: a page
	// of the node's catalog, in resource id order.
	ProtoList = "shards/list/1"
)

// Wire limits.
const (
	// MaxListPage bounds the entries of one catalog page, so that a page
	// always fits a bulk frame (MaxListPage * maxEntrySize < 256 KiB).
	MaxListPage = 500
	// MaxTypeLen bounds an entry's MIME type.
	MaxTypeLen   = 100
	maxEntrySize = 16 + 32 + 8 + 2 + MaxNameLen + 1 + MaxTypeLen
	listHeader   = 8 + 2 + 1
	// MaxListPageSize bounds an encoded catalog page.
	MaxListPageSize = listHeader + MaxListPage*maxEntrySize
)

// Entry is one resource in a node's catalog.
type Entry struct {
	ID       MD5
	Manifest Hash
	Size     int64
	Name     string
	Type     string
	// Internal marks a resource a service shares for its peers on other
	// nodes (music's covers and lyrics, plugins' sources), not the user:
	// Files leaves it out unless some holder lists it as the user's, and
	// lookups by id find it all the same. On the wire it is internalParam
	// after the type, so that nodes that predate it still decode the
	// page (and list such entries, as they always did).
	Internal bool
}

// internalParam is the MIME parameter that marks an Internal entry on the
// wire; it ends the type's bytes.
const internalParam = "; catnest=internal"

// maxBaseType bounds the type of an entry this node lists, so that the
// marker always fits in MaxTypeLen.
const maxBaseType = MaxTypeLen - len(internalParam)

// wireType is e's type as a catalog page carries it.
func wireType(e Entry) string {
	if e.Internal {
		return e.Type + internalParam
	}
	return e.Type
}

// What a have answer says.
const (
	haveNone byte = 0
	haveAll  byte = 1
	haveSome byte = 2
)

// encodeHave encodes a holder's bitfield; all and none are one byte.
func encodeHave(b Bitfield, n int) []byte {
	switch c := b.Count(); {
	case c == 0:
		return []byte{haveNone}
	case c == n:
		return []byte{haveAll}
	default:
		return append([]byte{haveSome}, b...)
	}
}

// decodeHave decodes a have answer for a resource of n pieces.
func decodeHave(p []byte, n int) (Bitfield, error) {
	if len(p) == 0 {
		return nil, fmt.Errorf("%w: empty have", ErrBadFrame)
	}
	switch p[0] {
	case haveNone:
		if len(p) != 1 {
			return nil, fmt.Errorf("%w: have none with %d trailing bytes", ErrBadFrame, len(p)-1)
		}
		return NewBitfield(n), nil
	case haveAll:
		if len(p) != 1 {
			return nil, fmt.Errorf("%w: have all with %d trailing bytes", ErrBadFrame, len(p)-1)
		}
		b := NewBitfield(n)
		for i := range n {
			b.Set(i)
		}
		return b, nil
	case haveSome:
		b := Bitfield(append([]byte(nil), p[1:]...))
		if !b.Valid(n) {
			return nil, fmt.Errorf("%w: bitfield of %d bytes for %d pieces", ErrBadFrame, len(b), n)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: have kind %d", ErrBadFrame, p[0])
}

// blockReq asks for Len bytes at Off in piece Piece of resource ID.
type blockReq struct {
	ID    MD5
	Piece uint32
	Off   uint32
	Len   uint32
}

const blockReqSize = 16 + 4 + 4 + 4

func encodeBlockReq(r blockReq) []byte {
	b := make([]byte, blockReqSize)
	copy(b, r.ID[:])
	binary.BigEndian.PutUint32(b[16:], r.Piece)
	binary.BigEndian.PutUint32(b[20:], r.Off)
	binary.BigEndian.PutUint32(b[24:], r.Len)
	return b
}

// decodeBlockReq decodes a block request; whether the block lies inside the
// resource is for the server to check against its manifest (blockInPiece).
func decodeBlockReq(p []byte) (blockReq, error) {
	var r blockReq
	if len(p) != blockReqSize {
		return r, fmt.Errorf("%w: block request of %d bytes", ErrBadFrame, len(p))
	}
	copy(r.ID[:], p)
	r.Piece = binary.BigEndian.Uint32(p[16:])
	r.Off = binary.BigEndian.Uint32(p[20:])
	r.Len = binary.BigEndian.Uint32(p[24:])
	if r.Len == 0 || r.Len > BlockSize {
		return r, fmt.Errorf("%w: block of %d bytes (1 to %d)", ErrBadFrame, r.Len, BlockSize)
	}
	return r, nil
}

// blockInPiece reports whether r lies inside its piece of m.
func blockInPiece(m *Manifest, r blockReq) bool {
	if int64(r.Piece) >= int64(m.NumPieces()) {
		return false
	}
	return int64(r.Off)+int64(r.Len) <= m.PieceLen(int(r.Piece))
}

// blockSpan returns the pieces r covers as a ProtoSpan request: from
// r.Piece to last, r.Off inside the first and the end inside the file.
func blockSpan(m *Manifest, r blockReq) (last int, ok bool) {
	if int64(r.Piece) >= int64(m.NumPieces()) || int64(r.Off) >= m.PieceLen(int(r.Piece)) {
		return 0, false
	}
	end := m.PieceOffset(int(r.Piece)) + int64(r.Off) + int64(r.Len) // Len <= BlockSize: no overflow
	if end > m.Size {
		return 0, false
	}
	return int((end - 1) / m.PieceSize), true
}

// listReq asks for up to Limit catalog entries with ids after After.
type listReq struct {
	After MD5
	Limit uint16
}

const listReqSize = 16 + 2

func encodeListReq(r listReq) []byte {
	b := make([]byte, listReqSize)
	copy(b, r.After[:])
	binary.BigEndian.PutUint16(b[16:], r.Limit)
	return b
}

func decodeListReq(p []byte) (listReq, error) {
	var r listReq
	if len(p) != listReqSize {
		return r, fmt.Errorf("%w: list request of %d bytes", ErrBadFrame, len(p))
	}
	copy(r.After[:], p)
	r.Limit = binary.BigEndian.Uint16(p[16:])
	if r.Limit == 0 || r.Limit > MaxListPage {
		return r, fmt.Errorf("%w: list limit %d (1 to %d)", ErrBadFrame, r.Limit, MaxListPage)
	}
	return r, nil
}

// listPage is a page of a catalog: its version when the page was cut, its
// entries in id order, and whether more follow.
type listPage = reslist.Page[Entry]

func encodeListPage(p listPage) ([]byte, error) {
	if len(p.Entries) > MaxListPage {
		return nil, fmt.Errorf("%w: %d entries in a page", ErrBadFrame, len(p.Entries))
	}
	b := make([]byte, listHeader, listHeader+len(p.Entries)*80)
	binary.BigEndian.PutUint64(b, p.Version)
	binary.BigEndian.PutUint16(b[8:], uint16(len(p.Entries)))
	if p.More {
		b[10] = 1
	}
	for _, e := range p.Entries {
		typ := wireType(e)
		if len(e.Name) > MaxNameLen || len(typ) > MaxTypeLen || e.Size < 0 {
			return nil, fmt.Errorf("%w: entry %s out of bounds", ErrBadFrame, e.ID)
		}
		b = append(b, e.ID[:]...)
		b = append(b, e.Manifest[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(e.Size))
		b = binary.BigEndian.AppendUint16(b, uint16(len(e.Name)))
		b = append(b, e.Name...)
		b = append(b, byte(len(typ)))
		b = append(b, typ...)
	}
	return b, nil
}

// decodeListPage decodes a catalog page from a peer. Names are checked
// with CleanName; an entry that fails makes the whole page bad, since the
// peer made it.
func decodeListPage(p []byte) (listPage, error) {
	var lp listPage
	if len(p) > MaxListPageSize {
		return lp, fmt.Errorf("%w: list page of %d bytes", ErrBadFrame, len(p))
	}
	if len(p) < listHeader {
		return lp, fmt.Errorf("%w: short list page", ErrBadFrame)
	}
	lp.Version = binary.BigEndian.Uint64(p)
	n := int(binary.BigEndian.Uint16(p[8:]))
	switch p[10] {
	case 0:
	case 1:
		lp.More = true
	default:
		return lp, fmt.Errorf("%w: list page flag %d", ErrBadFrame, p[10])
	}
	if n > MaxListPage {
		return lp, fmt.Errorf("%w: %d entries in a page", ErrBadFrame, n)
	}
	p = p[listHeader:]
	lp.Entries = make([]Entry, 0, n)
	for range n {
		var e Entry
		if len(p) < 16+32+8+2 {
			return lp, fmt.Errorf("%w: short entry", ErrBadFrame)
		}
		copy(e.ID[:], p)
		copy(e.Manifest[:], p[16:])
		size := binary.BigEndian.Uint64(p[48:])
		if size > uint64(MaxFileSize) {
			return lp, fmt.Errorf("%w: entry size %d", ErrBadFrame, size)
		}
		e.Size = int64(size)
		nl := int(binary.BigEndian.Uint16(p[56:]))
		p = p[58:]
		if nl > MaxNameLen || len(p) < nl+1 {
			return lp, fmt.Errorf("%w: entry name of %d bytes", ErrBadFrame, nl)
		}
		name, err := CleanName(string(p[:nl]))
		if err != nil {
			return lp, fmt.Errorf("%w: %v", ErrBadFrame, err)
		}
		e.Name = name
		tl := int(p[nl])
		p = p[nl+1:]
		if tl > MaxTypeLen || len(p) < tl {
			return lp, fmt.Errorf("%w: entry type of %d bytes", ErrBadFrame, tl)
		}
		if e.Type = string(p[:tl]); !utf8.ValidString(e.Type) || !printable(e.Type) {
			return lp, fmt.Errorf("%w: entry type %q", ErrBadFrame, e.Type)
		}
		// The peer says whose the entry is; whatever it says, Files
		// lists a resource some holder (this node first) lists as the
		// user's, and lookups by id ignore the mark (mergeCatalogs).
		e.Type, e.Internal = strings.CutSuffix(e.Type, internalParam)
		p = p[tl:]
		if i := len(lp.Entries); i > 0 && string(lp.Entries[i-1].ID[:]) >= string(e.ID[:]) {
			return lp, fmt.Errorf("%w: entries out of order", ErrBadFrame)
		}
		lp.Entries = append(lp.Entries, e)
	}
	if len(p) != 0 {
		return lp, fmt.Errorf("%w: %d trailing bytes", ErrBadFrame, len(p))
	}
	return lp, nil
}
