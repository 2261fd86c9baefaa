package shards

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/cpuid/v2"

	"github.com/catnest/catnest/internal/testutil"
)

// TestHashLanesMatchesBuildManifest: pieces hashed in SIMD lanes, by
// several files at once through one lanes, give the manifests and ids
// BuildManifest gives, at sizes on and around piece and chunk boundaries
// and with chunks that hold 4 (scalar), 8 and 16 pieces; once the lanes
// are closed the hasher goes on without them, and no goroutine is left.
func TestHashLanesMatchesBuildManifest(t *testing.T) {
	testutil.CheckGoroutines(t)
	ctx := context.Background()
	data := make([]byte, 9<<20+777)
	rand.NewChaCha8([32]byte{11}).Read(data)
	sizes := []int{0, 1, MinPieceSize - 1, MinPieceSize, MinPieceSize + 1, 3*MinPieceSize + 5, 8 * MinPieceSize,
		16*MinPieceSize - 1, 1 << 20, 1<<20 + 1, 5 << 20, len(data)}
	l := newLanes()
	check := func(t *testing.T, l *lanes, chunk, size int) {
		want, wantID, err := BuildManifest(ctx, bytes.NewReader(data[:size]), int64(size), nil)
		if err != nil {
			t.Error(err)
			return
		}
		got, id, err := hashLanes(ctx, bytes.NewReader(data[:size]), int64(size), chunk, l, nil)
		if err != nil {
			t.Error(err)
			return
		}
		if id != wantID || !reflect.DeepEqual(got, want) && !(len(got.Pieces) == 0 && len(want.Pieces) == 0) || got.Hash() != want.Hash() {
			t.Errorf("chunk %d size %d: lanes gave %s %d pieces, BuildManifest %s %d pieces", chunk, size, id, len(got.Pieces), wantID, len(want.Pieces))
		}
	}
	for _, chunk := range []int{4 * MinPieceSize, 8 * MinPieceSize, 16 * MinPieceSize} {
		t.Run(fmt.Sprintf("chunk %d", chunk), func(t *testing.T) {
			var wg sync.WaitGroup
			for _, size := range sizes {
				wg.Go(func() { check(t, l, chunk, size) })
			}
			wg.Wait()
		})
	}
	l.close()
	check(t, l, hashChunk, len(data))
}

// TestHashLanesWithoutAVX2: on a CPU without AVX2 md5-simd's server is its
// crypto/md5 fallback; the lanes give the same manifests through it.
// (Its AVX2 path, 8 lanes, is chosen when the package loads and cannot be
// forced on a CPU with AVX-512.)
func TestHashLanesWithoutAVX2(t *testing.T) {
	testutil.CheckGoroutines(t)
	had := cpuid.CPU.Supports(cpuid.AVX2)
	cpuid.CPU.Disable(cpuid.AVX2)
	l := newLanes()
	if had {
		cpuid.CPU.Enable(cpuid.AVX2)
	}
	defer l.close()
	if srv := fmt.Sprintf("%T", l.srv); !strings.Contains(srv, "fallback") {
		t.Fatalf("md5-simd server without AVX2: %s, want its fallback", srv)
	}
	ctx := context.Background()
	data := make([]byte, 5<<20+123)
	rand.NewChaCha8([32]byte{12}).Read(data)
	for _, size := range []int{16*MinPieceSize - 1, 1 << 20, len(data)} {
		want, wantID, err := BuildManifest(ctx, bytes.NewReader(data[:size]), int64(size), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, id, err := hashLanes(ctx, bytes.NewReader(data[:size]), int64(size), 16*MinPieceSize, l, nil)
		if err != nil {
			t.Fatal(err)
		}
		if id != wantID || !reflect.DeepEqual(got, want) {
			t.Errorf("size %d: lanes gave %s %d pieces, BuildManifest %s %d pieces", size, id, len(got.Pieces), wantID, len(want.Pieces))
		}
	}
}
