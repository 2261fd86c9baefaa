package shards

import (
	"crypto/md5"
	"math/rand/v2"
	"testing"
)

// BenchmarkWholeFileLane asks whether the whole-file MD5 of a download
// (hashAhead, one crypto/md5 stream) would cost less fed through an
// md5-simd lane beside the piece lanes (sumRuns). It hashes one span batch's
// worth, 16 pieces of 64 KiB: the whole-file stream alone with crypto/md5,
// alone in a lane, the pieces alone in lanes, and the pieces with the
// whole-file stream as a 17th hasher in the same server. The figure is
// the process's CPU a GB of file (the lanes run on md5-simd's goroutine,
// so wall time would miss nothing but says less on a shared machine).
//
// A lane holds one stream: md5-simd gives each hasher at most one 32 KiB
// block a round, so the whole 1 MiB needs 32 rounds whatever the pieces
// do, and the pieces fill the other lanes of only two of them.
func BenchmarkWholeFileLane(b *testing.B) {
	const psize, pieces = 64 << 10, 16
	data := make([]byte, psize*pieces)
	rng := rand.NewChaCha8([32]byte{7})
	rng.Read(data)
	want := md5.Sum(data)
	l := newLanes()
	defer l.close()

	run := func(b *testing.B, f func()) {
		b.SetBytes(int64(len(data)))
		c0 := processCPU()
		for b.Loop() {
			f()
		}
		b.ReportMetric((processCPU()-c0).Seconds()/(float64(b.N)*float64(len(data))/1e9), "cpu-s/GB")
	}
	b.Run("whole-crypto-md5", func(b *testing.B) {
		run(b, func() {
			if md5.Sum(data) != want {
				b.Fatal("wrong sum")
			}
		})
	})
	b.Run("whole-lane-alone", func(b *testing.B) {
		h := l.srv.NewHash()
		defer h.Close()
		run(b, func() {
			h.Reset()
			h.Write(data)
			if MD5(h.Sum(nil)) != want {
				b.Fatal("wrong sum")
			}
		})
	})
	b.Run("pieces-in-lanes", func(b *testing.B) {
		run(b, func() {
			if got := l.sumRuns([][]byte{data}, psize); len(got[0]) != pieces {
				b.Fatal("wrong count")
			}
		})
	})
	b.Run("pieces-and-whole-lane", func(b *testing.B) {
		h := l.srv.NewHash()
		defer h.Close()
		run(b, func() {
			h.Reset()
			hs := l.writePieces(data, psize)
			h.Write(data)
			if got := l.sumWritten(hs, nil); len(got) != pieces {
				b.Fatal("wrong count")
			}
			if MD5(h.Sum(nil)) != want {
				b.Fatal("wrong sum")
			}
		})
	})
	b.Run("pieces-in-lanes-and-whole-crypto-md5", func(b *testing.B) {
		run(b, func() {
			hs := l.writePieces(data, psize)
			if md5.Sum(data) != want {
				b.Fatal("wrong sum")
			}
			if got := l.sumWritten(hs, nil); len(got) != pieces {
				b.Fatal("wrong count")
			}
		})
	})
}
