package shards

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
)

// Piece and block sizes. A piece is the unit a manifest checks; a block is
// the unit a request carries (one bulk frame). Pieces are powers of two from
// MinPieceSize up, chosen so that a file has at most TargetPieces of them,
// up to MaxPieceSize; a larger file has more pieces, up to MaxPieces.
const (
	MinPieceSize = 64 << 10
	MaxPieceSize = 8 << 20
	TargetPieces = 2048
	// MaxPieces bounds a manifest so that it fits one bulk frame.
	MaxPieces = 16 << 10
	// BlockSize is the most bytes one block request asks for.
	BlockSize = 256 << 10
	// MaxFileSize is the largest file that can be shared: 128 GiB.
	MaxFileSize = int64(MaxPieces) * MaxPieceSize
	// MaxManifestSize bounds an encoded manifest.
	MaxManifestSize = manifestHeader + MaxPieces*md5.Size
)

const (
	manifestMagic  = "CNM1"
	manifestHeader = 4 + 8 + 4 + 4 // magic, size, piece size, piece count
)

// PieceSizeFor is the piece size of a file of size bytes.
func PieceSizeFor(size int64) int64 {
	p := int64(MinPieceSize)
	for p < MaxPieceSize && size > p*TargetPieces {
		p *= 2
	}
	return p
}

// Manifest lists the pieces of a resource and their MD5s. There is one
// manifest per content: the piece size follows from the size, so two nodes
// that share the same bytes build the same manifest with the same Hash.
type Manifest struct {
	Size      int64
	PieceSize int64
	Pieces    []MD5
}

// NumPieces is the number of pieces.
func (m *Manifest) NumPieces() int { return len(m.Pieces) }

// PieceLen is the length of piece i (the last may be short).
func (m *Manifest) PieceLen(i int) int64 {
	if i < 0 || i >= len(m.Pieces) {
		return 0
	}
	if i == len(m.Pieces)-1 {
		return m.Size - int64(i)*m.PieceSize
	}
	return m.PieceSize
}

// PieceOffset is where piece i starts in the file.
func (m *Manifest) PieceOffset(i int) int64 { return int64(i) * m.PieceSize }

// Verify reports whether data is piece i.
func (m *Manifest) Verify(i int, data []byte) bool {
	return i >= 0 && i < len(m.Pieces) && int64(len(data)) == m.PieceLen(i) && md5.Sum(data) == m.Pieces[i]
}

// Encode is the manifest's wire form, which its Hash covers.
func (m *Manifest) Encode() []byte {
	b := make([]byte, manifestHeader, manifestHeader+len(m.Pieces)*md5.Size)
	copy(b, manifestMagic)
	binary.BigEndian.PutUint64(b[4:], uint64(m.Size))
	binary.BigEndian.PutUint32(b[12:], uint32(m.PieceSize))
	binary.BigEndian.PutUint32(b[16:], uint32(len(m.Pieces)))
	for _, p := range m.Pieces {
		b = append(b, p[:]...)
	}
	return b
}

// Hash is the SHA-256 of the manifest's encoding.
func (m *Manifest) Hash() Hash { return sha256.Sum256(m.Encode()) }

// DecodeManifest decodes and checks a manifest: its piece size must be the
// one its size calls for and its piece count must cover the size exactly.
func DecodeManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%w: %d bytes, over %d", ErrBadManifest, len(b), MaxManifestSize)
	}
	if len(b) < manifestHeader || string(b[:4]) != manifestMagic {
		return nil, fmt.Errorf("%w: no manifest header", ErrBadManifest)
	}
	size := binary.BigEndian.Uint64(b[4:])
	psize := int64(binary.BigEndian.Uint32(b[12:]))
	n := int64(binary.BigEndian.Uint32(b[16:]))
	if size > uint64(MaxFileSize) {
		return nil, fmt.Errorf("%w: size %d over %d", ErrBadManifest, size, MaxFileSize)
	}
	if want := PieceSizeFor(int64(size)); psize != want {
		return nil, fmt.Errorf("%w: piece size %d for a size of %d (want %d)", ErrBadManifest, psize, size, want)
	}
	if want := (int64(size) + psize - 1) / psize; n != want {
		return nil, fmt.Errorf("%w: %d pieces for a size of %d (want %d)", ErrBadManifest, n, size, want)
	}
	if int64(len(b)) != manifestHeader+n*md5.Size {
		return nil, fmt.Errorf("%w: %d bytes for %d pieces", ErrBadManifest, len(b), n)
	}
	m := &Manifest{Size: int64(size), PieceSize: psize, Pieces: make([]MD5, n)}
	for i := range m.Pieces {
		copy(m.Pieces[i][:], b[manifestHeader+i*md5.Size:])
	}
	return m, nil
}

// BuildManifest reads size bytes from r and returns their manifest and the
// MD5 of the whole, the resource id. It stops when ctx ends. progress, if
// not nil, is called after each piece with the bytes read so far.
func BuildManifest(ctx context.Context, r io.Reader, size int64, progress func(done int64)) (*Manifest, MD5, error) {
	if size < 0 || size > MaxFileSize {
		return nil, MD5{}, fmt.Errorf("%w: %d bytes (the most is %d)", ErrTooLarge, size, MaxFileSize)
	}
	psize := PieceSizeFor(size)
	m := &Manifest{Size: size, PieceSize: psize, Pieces: make([]MD5, 0, (size+psize-1)/psize)}
	whole := md5.New()
	buf := make([]byte, psize)
	var done int64
	for done < size {
		if err := ctx.Err(); err != nil {
			return nil, MD5{}, err
		}
		n := min(psize, size-done)
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return nil, MD5{}, fmt.Errorf("shards: read at %d of %d: %w", done, size, err)
		}
		m.Pieces = append(m.Pieces, md5.Sum(buf[:n]))
		whole.Write(buf[:n])
		done += n
		if progress != nil {
			progress(done)
		}
	}
	var id MD5
	whole.Sum(id[:0])
	return m, id, nil
}
