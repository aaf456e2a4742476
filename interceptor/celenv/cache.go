package celenv

import (
	"container/list"
	"sync"
)

// lru is a bounded least-recently-used cache of compiled values (pattern
// lists, regular expressions) and of their compile errors, so a constant
// argument is compiled once rather than on every evaluation.
type lru[V any] struct {
	mu    sync.Mutex
	max   int
	order *list.List // front: most recently used
	items map[string]*list.Element
}

type lruEntry[V any] struct {
	key string
	val V
	err error
}

func newLRU[V any](max int) *lru[V] {
	return &lru[V]{max: max, order: list.New(), items: make(map[string]*list.Element)}
}

// get returns the cached value for key, building and caching it on a miss.
// build runs outside the lock: two callers missing the same key at once may
// both build it, and the last one wins.
func (c *lru[V]) get(key string, build func() (V, error)) (V, error) {
	c.mu.Lock()
	if el, ok := c.items[key]; ok {
		c.order.MoveToFront(el)
		e := el.Value.(*lruEntry[V])
		c.mu.Unlock()
		return e.val, e.err
	}
	c.mu.Unlock()
	val, err := build()
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.order.MoveToFront(el)
		el.Value = &lruEntry[V]{key: key, val: val, err: err}
		return val, err
	}
	c.items[key] = c.order.PushFront(&lruEntry[V]{key: key, val: val, err: err})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*lruEntry[V]).key)
	}
	return val, err
}

// len returns the number of cached entries.
func (c *lru[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
