package shards

import (
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"runtime"
	"sync"

	md5simd "github.com/minio/md5-simd"
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
	return hashLanes(ctx, r, size, chunk, nil, progress)
}

// hashLanes is hashChunked hashing the pieces of each chunk in l's SIMD
// lanes when they are small enough to fill them (l may be nil).
func hashLanes(ctx context.Context, r io.Reader, size int64, chunk int, l *lanes, progress func(done int64)) (*Manifest, MD5, error) {
	if size < 0 || size > MaxFileSize {
		return nil, MD5{}, fmt.Errorf("%w: %d bytes (the most is %d)", ErrTooLarge, size, MaxFileSize)
	}
	psize := PieceSizeFor(size)
	m := &Manifest{Size: size, PieceSize: psize, Pieces: make([]MD5, 0, (size+psize-1)/psize)}
	if size <= psize {
		return hashOnePiece(ctx, r, m, chunk, progress)
	}
	if size <= int64(chunk) {
		return hashOneChunk(ctx, r, m, chunk, l, progress)
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
		if int64(chunk)%psize == 0 && int64(chunk)/psize >= minLanes && l.acquire() {
			defer l.release()
			pieces <- l.hashPieces(full, free, psize, cap(m.Pieces))
			return
		}
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
		hashYield()
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

// hashYield lets the goroutines that wait for a processor run before the
// hasher reads its next chunk. Folders are hashed on a worker per core
// (hashWorkers), so every P may be hashing; a goroutine readied meanwhile
// (by a timer, the network poller, a channel) would otherwise wait until
// the hasher blocks or the scheduler preempts it, 10 ms on. A chunk is
// about 1.5 ms of MD5 and a yield well under a microsecond when nothing
// waits.
func hashYield() { runtime.Gosched() }

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

// hashOneChunk hashes a file of one chunk on the calling goroutine: the
// whole, and its pieces (in l's lanes, at the same time, when there are
// enough of them).
// Handing the chunk to a second goroutine costs a wake-up per file, and
// on a busy machine, where the OS gives the core to others in between,
// more than the hashing. Files are hashed hashWorkers() at once instead.
func hashOneChunk(ctx context.Context, r io.Reader, m *Manifest, chunk int, l *lanes, progress func(int64)) (*Manifest, MD5, error) {
	if err := ctx.Err(); err != nil {
		return nil, MD5{}, err
	}
	buf := getHashBuf(chunk)
	defer putHashBuf(buf)
	b := buf[:m.Size]
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, MD5{}, fmt.Errorf("shards: read at 0 of %d: %w", m.Size, err)
	}
	var id MD5
	if (m.Size+m.PieceSize-1)/m.PieceSize >= minLanes && l.acquire() {
		// The lanes hash the pieces on their own goroutine while this
		// one hashes the whole: the file costs one MD5 pass of wall
		// time, not one and the lanes' after it.
		hs := l.writePieces(b, m.PieceSize)
		id = md5.Sum(b)
		m.Pieces = l.sumWritten(hs, m.Pieces)
		l.release()
	} else {
		id = md5.Sum(b)
		for p := b; len(p) > 0; {
			k := min(int64(len(p)), m.PieceSize)
			m.Pieces = append(m.Pieces, md5.Sum(p[:k]))
			p = p[k:]
		}
	}
	if progress != nil {
		progress(m.Size)
	}
	hashYield()
	return m, id, nil
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
		hashYield()
	}
	var id MD5
	h.Sum(id[:0])
	if m.Size > 0 {
		m.Pieces = append(m.Pieces, id)
	}
	return m, id, nil
}

// minLanes is the fewest pieces a chunk must hold for hashLanes to hash
// them in lanes: a SIMD round costs about as much with one lane filled
// as with all, and with fewer than eight it is no cheaper than scalar
// MD5 (measured: 4 streams gave 756 MB/s on this machine's AVX-512, 8
// gave 1.6 GB/s, one 190 MB/s; crypto/md5 gives 740 MB/s a core).
const minLanes = 8

// lanes hashes many short streams at once with SIMD (minio/md5-simd:
// 16 MD5s in one instruction stream with AVX-512, 8 with AVX2, on one
// core): the pieces of a file up to 128 MB are 64 KiB, 16 to a chunk, and
// independent of each other. Hashing them in lanes makes the pieces' MD5
// a fraction of the whole file's, which stays scalar (one stream cannot
// be split). A folder scan does both passes over every file, and the
// pieces' pass was half its CPU.
//
// A lanes serves until close; acquire fails after it, and the hasher
// then hashes its pieces with crypto/md5.
type lanes struct {
	srv  md5simd.Server
	free chan md5simd.Hasher

	mu     sync.Mutex
	closed bool
	users  sync.WaitGroup
}

func newLanes() *lanes {
	return &lanes{srv: md5simd.NewServer(), free: make(chan md5simd.Hasher, 64)}
}

// acquire reports whether l may be used (release after); false for a nil
// or closed l.
func (l *lanes) acquire() bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.users.Add(1)
	return true
}

func (l *lanes) release() { l.users.Done() }

// close waits for l's users and stops its server.
func (l *lanes) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.users.Wait()
	for {
		select {
		case h := <-l.free:
			h.Close()
		default:
			l.srv.Close()
			return
		}
	}
}

// hashPieces is the piece hasher of hashLanes in lanes: each chunk from
// full holds whole pieces of psize bytes (the last maybe short), all
// written to hashers of their own before any is summed, so that the
// server fills its lanes with them; a chunk of fewer than minLanes
// pieces is hashed with crypto/md5. Chunks go back to free once hashed.
func (l *lanes) hashPieces(full <-chan []byte, free chan<- []byte, psize int64, n int) []MD5 {
	out := make([]MD5, 0, n)
	for chunk := range full {
		if (int64(len(chunk))+psize-1)/psize < minLanes {
			// A short chunk (a small file, a file's end) would fill a
			// few lanes of a round that costs as much as all.
			for b := chunk; len(b) > 0; {
				k := min(int64(len(b)), psize)
				out = append(out, md5.Sum(b[:k]))
				b = b[k:]
			}
			free <- chunk[:cap(chunk)]
			continue
		}
		out = l.sumPieces(chunk, psize, out)
		free <- chunk[:cap(chunk)]
	}
	return out
}

// sumPieces appends to out the MD5s of b's pieces of psize bytes (the
// last maybe short), each written to a hasher of its own before any is
// summed, so that the server fills its lanes with them.
func (l *lanes) sumPieces(b []byte, psize int64, out []MD5) []MD5 {
	return l.sumWritten(l.writePieces(b, psize), out)
}

// sumRuns returns for each of runs (nil, or pieces of psize bytes end to
// end, the last maybe short) the MD5s of its pieces (nil for a nil run).
// Every piece of every run is written to the lanes before any is summed,
// so that the pieces of several runs share the server's rounds.
func (l *lanes) sumRuns(runs [][]byte, psize int64) [][]MD5 {
	hs := make([][]md5simd.Hasher, len(runs))
	for i, b := range runs {
		if b != nil {
			hs[i] = l.writePieces(b, psize)
		}
	}
	sums := make([][]MD5, len(runs))
	for i, h := range hs {
		if h != nil {
			sums[i] = l.sumWritten(h, make([]MD5, 0, len(h)))
		}
	}
	return sums
}

// writePieces writes each of b's pieces of psize bytes (the last maybe
// short) to a hasher of its own and returns them, for sumWritten. The
// writes copy the bytes to the lanes' goroutine, which hashes them while
// the caller goes on.
func (l *lanes) writePieces(b []byte, psize int64) []md5simd.Hasher {
	var hs []md5simd.Hasher
	for len(b) > 0 {
		k := min(int64(len(b)), psize)
		var h md5simd.Hasher
		select {
		case h = <-l.free:
		default:
			h = l.srv.NewHash()
		}
		h.Write(b[:k])
		hs = append(hs, h)
		b = b[k:]
	}
	return hs
}

// sumWritten appends to out the MD5s of the hashers writePieces returned,
// in order, and keeps the hashers for reuse.
func (l *lanes) sumWritten(hs []md5simd.Hasher, out []MD5) []MD5 {
	for _, h := range hs {
		var p MD5
		out = append(out, MD5(h.Sum(p[:0])))
		h.Reset()
		select {
		case l.free <- h:
		default:
			h.Close()
		}
	}
	return out
}
