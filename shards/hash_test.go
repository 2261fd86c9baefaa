package shards

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// TestHashFileMatchesBuildManifest: the two-goroutine hasher gives the
// manifest and id BuildManifest gives, at piece sizes below, equal to and
// above its chunk, at sizes on and around piece boundaries.
func TestHashFileMatchesBuildManifest(t *testing.T) {
	ctx := context.Background()
	data := make([]byte, 5<<20+777)
	rand.NewChaCha8([32]byte{9}).Read(data)
	for _, chunk := range []int{16 << 10, 64 << 10, 1 << 20} {
		for _, size := range []int{0, 1, MinPieceSize - 1, MinPieceSize, MinPieceSize + 1, 3*MinPieceSize + 5, 1 << 20, 5 << 20, len(data)} {
			t.Run(fmt.Sprintf("chunk %d size %d", chunk, size), func(t *testing.T) {
				want, wantID, err := BuildManifest(ctx, bytes.NewReader(data[:size]), int64(size), nil)
				if err != nil {
					t.Fatal(err)
				}
				var last int64
				got, id, err := hashChunked(ctx, bytes.NewReader(data[:size]), int64(size), chunk, func(d int64) { last = d })
				if err != nil {
					t.Fatal(err)
				}
				if id != wantID || !reflect.DeepEqual(got, want) && !(len(got.Pieces) == 0 && len(want.Pieces) == 0) {
					t.Fatalf("hashFile gave %s %d pieces, BuildManifest %s %d pieces", id, len(got.Pieces), wantID, len(want.Pieces))
				}
				if got.Hash() != want.Hash() {
					t.Fatal("manifest hashes differ")
				}
				if size > 0 && last != int64(size) {
					t.Fatalf("progress ended at %d", last)
				}
			})
		}
	}
}

func TestHashFileErrors(t *testing.T) {
	testutil.CheckGoroutines(t)
	data := make([]byte, 4<<20)
	// A file shorter than its stat said.
	for _, short := range []int{3 << 20, 3<<20 + 5} {
		if _, _, err := hashFile(context.Background(), bytes.NewReader(data[:short]), int64(len(data)), nil); !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			t.Fatalf("file of %d bytes, stat said %d: %v", short, len(data), err)
		}
	}
	// Cancelled half-way.
	ctx, cancel := context.WithCancel(context.Background())
	_, _, err := hashChunked(ctx, bytes.NewReader(data), int64(len(data)), 64<<10, func(done int64) {
		if done >= 1<<20 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if _, _, err := hashFile(context.Background(), bytes.NewReader(nil), MaxFileSize+1, nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
}

var hashBenchSize = flag.Int64("shards.hashsize", 128<<20, "bytes in the folder BenchmarkHashFolder hashes; 1073741824 for the 1 GiB run")

var hashBenchLanes = flag.Bool("shards.lanes", true, "BenchmarkHashFolder hashes small pieces in SIMD lanes, as serve does (false: crypto/md5 only)")

// BenchmarkHashFolder hashes a folder the way sharing it does (manifest and
// id of every file) and runs md5sum over the same files in the same run,
// both from the page cache. Half the bytes are in one file, a quarter in
// four, a quarter in 1 MiB files. x_md5sum is our speed over md5sum's
// (target >= 0.9).
func BenchmarkHashFolder(b *testing.B) {
	md5sum, err := exec.LookPath("md5sum")
	if err != nil {
		b.Skip("md5sum is not installed")
	}
	total := *hashBenchSize
	dir := b.TempDir()
	var paths []string
	write := func(name string, size int64) {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyN(f, rand.NewChaCha8([32]byte{byte(len(paths))}), size); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		paths = append(paths, p)
	}
	write("big.bin", total/2)
	for i := range 4 {
		write(fmt.Sprintf("medium-%d.bin", i), total/16)
	}
	for i := int64(0); i < total/4/(1<<20); i++ {
		write(fmt.Sprintf("small-%04d.bin", i), 1<<20)
	}
	var size int64
	for _, p := range paths {
		fi, _ := os.Stat(p)
		size += fi.Size()
	}
	// Warm the page cache, so both read from memory.
	for _, p := range paths {
		f, _ := os.Open(p)
		io.Copy(io.Discard, f)
		f.Close()
	}
	sh := &shares{}
	if *hashBenchLanes {
		l := newLanes()
		defer l.close()
		sh.lanes.Store(l)
	}
	ctx := context.Background()
	var ours, theirs, oursCPU, theirsCPU time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		cpu0 := processCPU()
		start := time.Now()
		for _, p := range paths {
			if _, _, _, _, err := sh.hashPath(ctx, p, true); err != nil {
				b.Fatal(err)
			}
		}
		ours += time.Since(start)
		oursCPU += processCPU() - cpu0
		start = time.Now()
		cmd := exec.Command(md5sum, paths...)
		cmd.Stdout = io.Discard
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		theirs += time.Since(start)
		theirsCPU += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	mb := float64(size) * float64(b.N) / 1e6
	b.ReportMetric(mb/ours.Seconds(), "MB/s")
	b.ReportMetric(mb/theirs.Seconds(), "md5sum_MB/s")
	b.ReportMetric(theirs.Seconds()/ours.Seconds(), "x_md5sum")
	// CPU time per byte against md5sum's: two MD5s per byte cost about
	// twice one; on two free cores they take the wall time of one.
	b.ReportMetric(oursCPU.Seconds()/theirsCPU.Seconds(), "cpu_x_md5sum")
}
