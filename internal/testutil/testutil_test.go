package testutil

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitForReturnsOnceTrue(t *testing.T) {
	var calls atomic.Int32
	WaitFor(t, 10*time.Second, "third call", func() bool { return calls.Add(1) >= 3 })
	if n := calls.Load(); n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
}

// fakeTB records Fatalf instead of ending the test.
type fakeTB struct {
	testing.TB
	failed bool
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(string, ...any) {
	f.failed = true
	panic(f) // Fatalf does not return
}

func TestWaitForFailsAfterTimeout(t *testing.T) {
	f := &fakeTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != nil && r != any(f) {
				panic(r)
			}
		}()
		WaitFor(f, 50*time.Millisecond, "never", func() bool { return false })
	}()
	if !f.failed {
		t.Fatal("WaitFor returned without failing for a condition that never holds")
	}
}

func TestWaitProgressWaitsWhileProgressing(t *testing.T) {
	// Progress every 20 ms for 100 polls: far longer than the 300 ms
	// stall bound, never a stall.
	n := 0
	WaitProgress(t, 300*time.Millisecond, "a slow count", func() (bool, int) {
		n++
		return n >= 100, n
	})
}

func TestWaitProgressFailsOnStall(t *testing.T) {
	f := &fakeTB{TB: t}
	n := 0
	func() {
		defer func() {
			if r := recover(); r != nil && r != any(f) {
				panic(r)
			}
		}()
		WaitProgress(f, 100*time.Millisecond, "a count stuck at 5", func() (bool, int) {
			n = min(n+1, 5)
			return false, n
		})
	}()
	if !f.failed {
		t.Fatal("WaitProgress returned without failing for a count that stopped")
	}
}
