package policy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ciel-ci/ciel/interceptor/engine"
	"github.com/ciel-ci/ciel/internal/filewatch"
	"github.com/ciel-ci/ciel/internal/logopt"
)

// ReloadRecorder counts the loads of a Store (the interceptor's Prometheus
// metrics implement it).
type ReloadRecorder interface {
	// PolicyReload records a load: ok with the size of the new serving
	// set, or a failure (n is 0).
	PolicyReload(ok bool, n int)
}

// Store serves the policy set of a directory and reloads it when the
// directory changes. A ConfigMap volume changes by swapping its ..data
// symlink, so the directory is watched (fsnotify) and, as a fallback for
// filesystems without events, polled; either way the content is hashed
// and only a real change reloads. A set that does not load is rejected
// and the previous one keeps serving.
type Store struct {
	dir      string
	eng      *engine.Engine
	logger   *slog.Logger
	recorder ReloadRecorder

	set     atomic.Pointer[Set]
	mu      sync.Mutex // serialises reloads
	hash    [32]byte
	lastErr atomic.Pointer[string]
}

// NewStore loads dir once; the error of a first load that fails is
// returned (the service is not ready then), but the store is usable and a
// later Reload may succeed. Loads and failed reloads are logged to logger
// (nil: silent) and recorded in rec (nil: not recorded).
func NewStore(eng *engine.Engine, dir string, logger *slog.Logger, rec ReloadRecorder) (*Store, error) {
	p := &Store{dir: dir, eng: eng, logger: logopt.Or(logger), recorder: rec}
	_, err := p.Reload()
	return p, err
}

// Set returns the serving set (nil before a first successful load).
func (p *Store) Set() *Set {
	if p == nil {
		return nil
	}
	return p.set.Load()
}

// LastError returns the error of the last failed reload, "" after a success.
func (p *Store) LastError() string {
	if s := p.lastErr.Load(); s != nil {
		return *s
	}
	return ""
}

// Reload loads the directory if its content changed; changed reports
// whether a new set is serving.
func (p *Store) Reload() (changed bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, err := hashDir(p.dir)
	if err != nil {
		p.fail(err)
		return false, err
	}
	if p.set.Load() != nil && h == p.hash {
		return false, nil
	}
	set, err := LoadDir(p.eng, p.dir)
	if err != nil {
		p.fail(err)
		return false, err
	}
	p.set.Store(set)
	p.hash = h
	empty := ""
	p.lastErr.Store(&empty)
	if p.recorder != nil {
		p.recorder.PolicyReload(true, len(set.Names()))
	}
	p.logger.Info("policies loaded", "dir", p.dir, "policies", set.Names())
	return true, nil
}

func (p *Store) fail(err error) {
	msg := err.Error()
	p.lastErr.Store(&msg)
	if p.recorder != nil {
		p.recorder.PolicyReload(false, 0)
	}
	p.logger.Error("policies not reloaded; the previous set keeps serving", "dir", p.dir, "error", err)
}

// Run watches the directory (package filewatch: fsnotify, a debounce that
// lets a ConfigMap's ..data swap finish, and a rescan every poll) and
// reloads on every sign of change until ctx ends; Reload's content hash
// keeps an unchanged directory from reloading.
func (p *Store) Run(ctx context.Context, poll time.Duration) {
	err := filewatch.Watch(ctx, []string{p.dir}, func(context.Context) { _, _ = p.Reload() },
		filewatch.WithRescanInterval(poll), filewatch.WithDebounce(100*time.Millisecond), filewatch.WithLogger(p.logger))
	if err != nil {
		p.logger.Error("watching policies failed", "dir", p.dir, "error", err)
	}
}

// hashDir hashes the names and contents of the policy files of dir.
func hashDir(dir string) ([32]byte, error) {
	var sum [32]byte
	entries, err := os.ReadDir(dir)
	if err != nil {
		return sum, fmt.Errorf("reading policies: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		if !IsPolicyFile(n) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}
