// Package dedup remembers webhook deliveries for a bounded time so that a
// delivery GitLab sends twice (a retry after a timeout, a manual "Resend")
// triggers at most one PipelineRun.
//
// A delivery is identified by its Idempotency-Key (or X-Gitlab-Event-UUID)
// together with the Trigger it is evaluated for: one EventListener may run
// several Triggers over the same delivery, and each must see it once.
//
// Only deliveries that were accepted are remembered. A delivery that failed
// (GitLab API unavailable, a transient error) is forgotten, so GitLab's retry
// is evaluated afresh and nothing is lost. A duplicate that arrives while the
// first copy is still being evaluated waits for its outcome instead of
// guessing.
//
// Memory is bounded in bytes, not only in entries: keys are remembered as
// their SHA-256 (32 bytes), whatever the length of the header they came
// from, so an entry costs the same ~200 bytes for any delivery.
package dedup

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ciel-ci/ciel/internal/option"
)

// ErrDuplicate is returned by Begin for a delivery already accepted.
var ErrDuplicate = errors.New("duplicate delivery")

type options struct {
	ttl time.Duration
	max int
	now func() time.Time
}

// Option configures a Cache.
type Option func(*options) error

// WithTTL sets how long an accepted delivery is remembered. Default: 1h.
func WithTTL(d time.Duration) Option {
	return option.Check(d > 0, fmt.Sprintf("dedup TTL must be positive, got %s", d), func(o *options) { o.ttl = d })
}

// WithMaxEntries bounds the number of remembered deliveries; the oldest are
// forgotten first. Default: 100000 (a few MiB).
func WithMaxEntries(n int) Option {
	return option.Check(n > 0, fmt.Sprintf("dedup max entries must be positive, got %d", n), func(o *options) { o.max = n })
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option {
	return option.Check(now != nil, "dedup clock must not be nil", func(o *options) { o.now = now })
}

// hashedKey is what the cache stores of a key.
type hashedKey = [sha256.Size]byte

type entry struct {
	key      hashedKey
	accepted time.Time     // zero while in flight
	done     chan struct{} // closed when the in-flight evaluation ends
	elem     *list.Element // position in the age list, once accepted
}

// Cache remembers accepted deliveries. The zero value is not usable; call New.
type Cache struct {
	opts    options
	mu      sync.Mutex
	entries map[hashedKey]*entry
	age     *list.List // accepted entries, oldest first
}

// New returns a Cache.
func New(opts ...Option) (*Cache, error) {
	o := options{ttl: time.Hour, max: 100000, now: time.Now}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	return &Cache{opts: o, entries: map[hashedKey]*entry{}, age: list.New()}, nil
}

// Ticket is an in-flight delivery. Exactly one of Accept or Forget must be
// called; later calls are no-ops.
type Ticket struct {
	c *Cache
	e *entry
}

// Begin starts evaluating the delivery id (any length; only its hash is
// kept). It returns ErrDuplicate if the
// delivery was accepted within the TTL. If another copy is in flight, Begin
// waits (bounded by ctx) for it to finish.
func (c *Cache) Begin(ctx context.Context, id string) (*Ticket, error) {
	key := sha256.Sum256([]byte(id))
	for {
		c.mu.Lock()
		c.expireLocked()
		e, ok := c.entries[key]
		if !ok {
			e = &entry{key: key, done: make(chan struct{})}
			c.entries[key] = e
			c.mu.Unlock()
			return &Ticket{c: c, e: e}, nil
		}
		if !e.accepted.IsZero() {
			at := e.accepted
			c.mu.Unlock()
			return nil, fmt.Errorf("%w: accepted %s ago", ErrDuplicate, c.opts.now().Sub(at).Round(time.Second))
		}
		done := e.done
		c.mu.Unlock()
		select {
		case <-done:
			// The other copy finished: look again.
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a concurrent copy of the same delivery: %w", ctx.Err())
		}
	}
}

// Accept records the delivery as accepted: copies arriving within the TTL
// are duplicates.
func (t *Ticket) Accept() { t.end(true) }

// Forget drops the in-flight delivery: a retry is evaluated afresh.
func (t *Ticket) Forget() { t.end(false) }

// end ends the in-flight delivery, accepted or forgotten, and wakes the
// copies waiting for it; only its first call does anything.
func (t *Ticket) end(accepted bool) {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.e.done == nil {
		return
	}
	if accepted {
		t.e.accepted = c.opts.now()
		t.e.elem = c.age.PushBack(t.e)
	} else {
		delete(c.entries, t.e.key)
	}
	close(t.e.done)
	t.e.done = nil
	for c.age.Len() > c.opts.max {
		c.removeLocked(c.age.Front().Value.(*entry))
	}
}

// Len returns the number of remembered and in-flight deliveries.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func (c *Cache) expireLocked() {
	cutoff := c.opts.now().Add(-c.opts.ttl)
	for f := c.age.Front(); f != nil; f = c.age.Front() {
		e := f.Value.(*entry)
		if e.accepted.After(cutoff) {
			return
		}
		c.removeLocked(e)
	}
}

func (c *Cache) removeLocked(e *entry) {
	c.age.Remove(e.elem)
	if c.entries[e.key] == e {
		delete(c.entries, e.key)
	}
}
