package waitfor

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestTrueReturnsOnceCondHolds(t *testing.T) {
	var n atomic.Int32
	True(t, 5*time.Second, "three checks", func() bool { return n.Add(1) == 3 })
	if got := n.Load(); got != 3 {
		t.Errorf("cond called %d times, want 3", got)
	}
}

// fatalRecorder records a Fatalf instead of ending the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = format
	if len(args) > 0 {
		r.msg = args[0].(string)
	}
	panic(r)
}

func TestTrueFailsAfterTimeout(t *testing.T) {
	r := &fatalRecorder{TB: t}
	start := time.Now()
	func() {
		defer func() {
			if p := recover(); p != r {
				t.Fatalf("recovered %v, want the recorder's Fatalf", p)
			}
		}()
		True(r, 20*time.Millisecond, "never", func() bool { return false })
	}()
	if r.msg != "never" {
		t.Errorf("failure names %q, want never", r.msg)
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Error("gave up before the timeout")
	}
}
