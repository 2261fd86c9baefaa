package shards

import (
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"sync"
)

// hashChunk is the unit the hasher reads. It divides every piece size from
// MinPieceSize up or is divided by it, so a chunk never straddles two
// pieces unevenly.
const hashChunk = 1 << 20

// hashBuffers is how many chunks are in flight between the reader and the
// piece hasher: enough that neither waits on the other for long.
const hashBuffers = 4

// hashFile reads size bytes from r and returns their manifest and the MD5 of
// the whole, as BuildManifest does, but at the speed of one MD5 pass on two
// cores: the whole-file MD5 runs on the calling goroutine (which also
// reads) and the piece MD5s on a second one. A file of one piece needs a
// single pass: its piece is the whole. progress, if not nil, is called from
// the calling goroutine with the bytes read so far, after each chunk.
func hashFile(ctx context.Context, r io.Reader, size int64, progress func(done int64)) (*Manifest, MD5, error) {
	return hashChunked(ctx, r, size, hashChunk, progress)
}

// hashChunked is hashFile reading chunk bytes at a time; chunk is a power
// of two, so that chunks and pieces line up.
func hashChunked(ctx context.Context, r io.Reader, size int64, chunk int, progress func(done int64)) (*Manifest, MD5, error) {
	if size < 0 || size > MaxFileSize {
		return nil, MD5{}, fmt.Errorf("%w: %d bytes (the most is %d)", ErrTooLarge, size, MaxFileSize)
	}
	psize := PieceSizeFor(size)
	m := &Manifest{Size: size, PieceSize: psize, Pieces: make([]MD5, 0, (size+psize-1)/psize)}
	if size <= psize {
		return hashOnePiece(ctx, r, m, chunk, progress)
	}

	// No more buffers than the file has chunks (a 1 MiB file needs one),
	// and those of hashChunk bytes reused across files: a folder of small
	// files would otherwise allocate and zero hashBuffers MiB per file.
	nbuf := int(min(int64(hashBuffers), (size+int64(chunk)-1)/int64(chunk)))
	free := make(chan []byte, nbuf)
	for range nbuf {
		free <- getHashBuf(chunk)
	}
	defer func() {
		for {
			select {
			case b := <-free:
				putHashBuf(b)
			default:
				return
			}
		}
	}()
	full := make(chan []byte, nbuf)
	pieces := make(chan []MD5, 1)
	go func() {
		// The piece hasher: chunks come in file order; a piece ends every
		// psize bytes and at the end of the file.
		out := make([]MD5, 0, cap(m.Pieces))
		h := md5.New()
		var inPiece int64
		for chunk := range full {
			b := chunk
			for len(b) > 0 {
				n := min(int64(len(b)), psize-inPiece)
				h.Write(b[:n])
				b = b[n:]
				if inPiece += n; inPiece == psize {
					var p MD5
					out = append(out, MD5(h.Sum(p[:0])))
					h.Reset()
					inPiece = 0
				}
			}
			free <- chunk[:cap(chunk)]
		}
		if inPiece > 0 {
			var p MD5
			out = append(out, MD5(h.Sum(p[:0])))
		}
		pieces <- out
	}()

	whole := md5.New()
	var done int64
	var err error
	for done < size {
		if err = ctx.Err(); err != nil {
			break
		}
		buf := <-free
		n := min(int64(chunk), size-done)
		if _, err = io.ReadFull(r, buf[:n]); err != nil {
			err = fmt.Errorf("shards: read at %d of %d: %w", done, size, err)
			break
		}
		// The piece hasher starts on the chunk while this goroutine hashes
		// it into the whole: both only read it, and it goes back to free
		// once the piece hasher is done, while this goroutine takes another
		// buffer only after its own Write. Hashing first and handing over
		// after would run a file of one chunk (the many small files of a
		// folder) on one core.
		full <- buf[:n]
		whole.Write(buf[:n])
		done += n
		if progress != nil {
			progress(done)
		}
	}
	close(full)
	m.Pieces = <-pieces
	if err != nil {
		return nil, MD5{}, err
	}
	var id MD5
	whole.Sum(id[:0])
	return m, id, nil
}

// hashBufs holds the hasher's buffers of hashChunk bytes between files.
var hashBufs = sync.Pool{New: func() any { b := make([]byte, hashChunk); return &b }}

// getHashBuf returns a buffer of chunk bytes, from hashBufs when chunk is
// hashChunk.
func getHashBuf(chunk int) []byte {
	if chunk != hashChunk {
		return make([]byte, chunk)
	}
	return *hashBufs.Get().(*[]byte)
}

// putHashBuf gives a buffer from getHashBuf back.
func putHashBuf(b []byte) {
	if cap(b) == hashChunk {
		b = b[:hashChunk]
		hashBufs.Put(&b)
	}
}

// hashOnePiece hashes a file of at most one piece: one MD5 is both its
// piece's and its id.
func hashOnePiece(ctx context.Context, r io.Reader, m *Manifest, chunk int, progress func(int64)) (*Manifest, MD5, error) {
	h := md5.New()
	buf := make([]byte, min(m.Size, int64(chunk)))
	var done int64
	for done < m.Size {
		if err := ctx.Err(); err != nil {
			return nil, MD5{}, err
		}
		n := min(int64(len(buf)), m.Size-done)
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return nil, MD5{}, fmt.Errorf("shards: read at %d of %d: %w", done, m.Size, err)
		}
		h.Write(buf[:n])
		done += n
		if progress != nil {
			progress(done)
		}
	}
	var id MD5
	h.Sum(id[:0])
	if m.Size > 0 {
		m.Pieces = append(m.Pieces, id)
	}
	return m, id, nil
}
