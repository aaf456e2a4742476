package celenv

import (
	"strings"

	"github.com/ciel-ci/ciel/internal/lru"
)

// cache keeps compiled values (pattern lists, regular expressions) and
// their compile errors, so a constant argument is compiled once rather than
// on every evaluation.
type cache[V any] struct {
	c *lru.Cache[cacheEntry[V]]
}

type cacheEntry[V any] struct {
	val V
	err error
}

func newLRU[V any](max int) *cache[V] { return &cache[V]{c: lru.New[cacheEntry[V]](max)} }

// get returns the cached value for key, building and caching it on a miss.
// build runs outside the lock: two callers missing the same key at once may
// both build it, and the last one wins.
func (c *cache[V]) get(key string, build func() (V, error)) (V, error) {
	if e, ok := c.c.Get(key); ok {
		return e.val, e.err
	}
	val, err := build()
	// The key may be a slice of a request's body (a pattern read from the
	// payload): keep a copy, not the whole request buffer.
	c.c.Add(strings.Clone(key), cacheEntry[V]{val: val, err: err})
	return val, err
}

// len returns the number of cached entries.
func (c *cache[V]) len() int { return c.c.Len() }
