package filewatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Value is a value loaded from a Source and reloaded when the Source's
// content changes. Get is safe for concurrent use; reloads are serialised.
type Value[T any] struct {
	src  Source
	load func(context.Context) (T, error)
	opts options

	cur     atomic.Pointer[T]
	lastErr atomic.Pointer[error]
	mu      sync.Mutex // serialises reloads
	sum     Sum
}

// New loads src once with load and returns the Value. When that first
// load fails, New returns the error together with a usable Value (Get
// reports nothing loaded; a later Reload may succeed), so that a caller may
// serve "not ready" rather than exit. It returns a nil Value only for
// invalid arguments.
func New[T any](ctx context.Context, src Source, load func(context.Context) (T, error), opts ...Option) (*Value[T], error) {
	if src == nil || load == nil {
		return nil, errors.New("configuring the file watch: source and load function are required")
	}
	o, err := build(opts)
	if err != nil {
		return nil, err
	}
	v := &Value[T]{src: src, load: load, opts: o}
	_, err = v.Reload(ctx)
	return v, err
}

// Get returns the serving value; ok is false before a first successful
// load.
func (v *Value[T]) Get() (val T, ok bool) {
	if p := v.cur.Load(); p != nil {
		return *p, true
	}
	return val, false
}

// Err returns the error of the last check, nil after a success or an
// unchanged content.
func (v *Value[T]) Err() error {
	if p := v.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Reload hashes the Source and loads it when the content changed since the
// last successful load; changed reports whether a new value serves. On an
// error the previous value keeps serving.
func (v *Value[T]) Reload(ctx context.Context) (changed bool, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	sum, err := v.src.Sum()
	if err == nil && v.cur.Load() != nil && sum == v.sum {
		v.lastErr.Store(nil)
		return false, nil
	}
	var val T
	if err == nil {
		val, err = v.load(ctx)
	}
	if err != nil {
		v.lastErr.Store(&err)
		if v.opts.onLoad != nil {
			v.opts.onLoad(err)
		}
		return false, err
	}
	v.cur.Store(&val)
	v.sum = sum
	v.lastErr.Store(nil)
	if v.opts.onLoad != nil {
		v.opts.onLoad(nil)
	}
	return true, nil
}

// Run follows the Source (see Watch) and reloads it until ctx ends. opts
// are applied over those given to New, for settings known only when the
// loop starts (a rescan interval); WithOnLoad is refused there. A failed
// reload is logged, unless a WithOnLoad callback given to New reports it;
// the previous value keeps serving. Run returns nil when
// ctx ends, an error only for invalid options.
func (v *Value[T]) Run(ctx context.Context, opts ...Option) error {
	o := v.opts
	reported := o.onLoad != nil
	o.onLoad = nil
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return fmt.Errorf("configuring the file watch: %w", err)
		}
	}
	if o.onLoad != nil {
		return errors.New("configuring the file watch: WithOnLoad is given to New, not to Run")
	}
	return watch(ctx, o, v.src.Dirs(), func(ctx context.Context) {
		if _, err := v.Reload(ctx); err != nil && !reported {
			o.log.Error("reloading files failed; the previous value keeps serving", "dirs", v.src.Dirs(), "error", err)
		}
	})
}
