// Package waitfor is how ciel's tests wait for something that happens in
// another goroutine or process (an informer's watch, a reloaded file): poll
// a condition every few milliseconds, bounded by a timeout, instead of
// sleeping a fixed time.
package waitfor

import (
	"testing"
	"time"
)

// Interval is how often True checks its condition.
const Interval = 5 * time.Millisecond

// True waits until cond returns true; after timeout it fails t with
// "timed out waiting for " + what.
func True(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(Interval)
	}
}
