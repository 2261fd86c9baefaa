// Package testutil holds the helpers that every package's tests share:
// waiting for a condition instead of sleeping for a guess. It is imported
// only by tests.
package testutil

import (
	"runtime"
	"testing"
	"time"
)

// poll is how often WaitFor checks its condition.
const poll = 20 * time.Millisecond

// WaitFor polls cond until it holds and returns how long that took, or
// fails the test once timeout has passed. Choose a timeout that a loaded
// 2-core machine meets with room to spare: it bounds a failure, it does not
// measure speed.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(poll)
	}
	return time.Since(start)
}

// WaitProgress polls cond until it reports done, failing the test once
// progress (a count that only grows while the work goes on: items listed,
// bytes received) has not grown for stall. It is for work whose whole
// length scales with the machine's load (content a demo makes node after
// node on a busy CPU): a stall is a failure, slowness is not.
func WaitProgress(t testing.TB, stall time.Duration, what string, cond func() (done bool, progress int)) {
	t.Helper()
	best, since := -1, time.Now()
	for {
		done, p := cond()
		if done {
			return
		}
		if p > best {
			best, since = p, time.Now()
		} else if time.Since(since) > stall {
			t.Fatalf("no progress for %v (at %d) waiting for %s", stall, best, what)
		}
		time.Sleep(poll)
	}
}

// CheckGoroutines fails the test if goroutines started during it are still
// running once its cleanups are done (it waits up to 20 s for them to end,
// printing every stack if they do not). Call it first in the test, so that
// its cleanup runs last.
func CheckGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(20 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("%d goroutines left running (%d before):\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(poll)
		}
	})
}
