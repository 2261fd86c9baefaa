// Package testutil holds the helpers that every package's tests share:
// waiting for a condition instead of sleeping for a guess. It is imported
// only by tests.
package testutil

import (
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
