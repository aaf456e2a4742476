package dedup

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newCache(t *testing.T, opts ...Option) (*Cache, *clock) {
	t.Helper()
	clk := &clock{t: time.Unix(1700000000, 0)}
	c, err := New(append([]Option{WithClock(clk.now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c, clk
}

func TestAcceptedIsDuplicateUntilTTL(t *testing.T) {
	ctx := context.Background()
	c, clk := newCache(t, WithTTL(time.Minute))
	tk, err := c.Begin(ctx, "trigger-a/delivery-1")
	if err != nil {
		t.Fatal(err)
	}
	tk.Accept()
	tk.Accept() // no-op
	if _, err := c.Begin(ctx, "trigger-a/delivery-1"); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("second copy: %v, want ErrDuplicate", err)
	}
	// The same delivery for another trigger is not a duplicate.
	other, err := c.Begin(ctx, "trigger-b/delivery-1")
	if err != nil {
		t.Fatalf("other trigger: %v", err)
	}
	other.Forget()
	clk.add(61 * time.Second)
	again, err := c.Begin(ctx, "trigger-a/delivery-1")
	if err != nil {
		t.Fatalf("after TTL: %v", err)
	}
	again.Forget()
}

func TestForgottenIsEvaluatedAgain(t *testing.T) {
	ctx := context.Background()
	c, _ := newCache(t)
	tk, err := c.Begin(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	tk.Forget()
	tk.Accept() // no-op after Forget
	tk2, err := c.Begin(ctx, "k")
	if err != nil {
		t.Fatalf("retry after a failed evaluation: %v", err)
	}
	tk2.Accept()
	if c.Len() != 1 {
		t.Fatalf("Len() = %d, want 1", c.Len())
	}
}

func TestConcurrentCopiesWaitForTheFirst(t *testing.T) {
	ctx := context.Background()
	for _, accept := range []bool{true, false} {
		t.Run(fmt.Sprintf("first accepted=%v", accept), func(t *testing.T) {
			c, _ := newCache(t)
			first, err := c.Begin(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			var dups, started atomic.Int32
			var wg sync.WaitGroup
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					tk, err := c.Begin(ctx, "k")
					if errors.Is(err, ErrDuplicate) {
						dups.Add(1)
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
					started.Add(1)
					tk.Accept()
				}()
			}
			time.Sleep(10 * time.Millisecond) // let the copies block (correctness does not depend on it)
			if accept {
				first.Accept()
			} else {
				first.Forget()
			}
			wg.Wait()
			wantStarted := int32(0)
			if !accept {
				wantStarted = 1 // exactly one retry wins, the rest see it accepted
			}
			if started.Load() != wantStarted || dups.Load() != 8-wantStarted {
				t.Fatalf("started=%d dups=%d, want %d and %d", started.Load(), dups.Load(), wantStarted, 8-wantStarted)
			}
		})
	}
}

func TestWaitIsBoundedByContext(t *testing.T) {
	c, _ := newCache(t)
	first, err := c.Begin(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Forget()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Begin(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Begin() = %v, want deadline exceeded", err)
	}
}

func TestBounded(t *testing.T) {
	ctx := context.Background()
	c, _ := newCache(t, WithMaxEntries(3))
	for i := 0; i < 10; i++ {
		tk, err := c.Begin(ctx, fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		tk.Accept()
	}
	if c.Len() != 3 {
		t.Fatalf("Len() = %d, want 3", c.Len())
	}
	// The oldest were forgotten, the newest remembered.
	tk, err := c.Begin(ctx, "0")
	if err != nil {
		t.Fatalf("oldest should be forgotten: %v", err)
	}
	tk.Forget()
	if _, err := c.Begin(ctx, "9"); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("newest should be remembered: %v", err)
	}
}

func TestOptionsValidated(t *testing.T) {
	for _, o := range []Option{WithTTL(0), WithMaxEntries(-1), WithClock(nil)} {
		if _, err := New(o); err == nil {
			t.Errorf("invalid option accepted")
		}
	}
}

// TestMemoryBoundedInBytes: an entry costs the same whatever the length of
// its key, since only the key's hash is kept.
func TestMemoryBoundedInBytes(t *testing.T) {
	perEntry := func(keyLen int) float64 {
		c, _ := newCache(t)
		const n = 2000
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range n {
			tk, err := c.Begin(context.Background(), fmt.Sprintf("%0*d", keyLen, i))
			if err != nil {
				t.Fatal(err)
			}
			tk.Accept()
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(c)
		return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
	}
	short, long := perEntry(36), perEntry(64<<10)
	t.Logf("heap per entry: %.0f bytes with 36-byte keys, %.0f bytes with 64 KiB keys", short, long)
	if long > 4*short+1024 {
		t.Errorf("a 64 KiB key costs %.0f bytes per entry against %.0f for a UUID: keys are kept whole", long, short)
	}
}
