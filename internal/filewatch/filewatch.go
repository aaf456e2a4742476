// Package filewatch is ciel's one way to follow files that change while a
// process runs: policies and kubeconfigs in ConfigMap and Secret volumes,
// a certificate renewed by cert-manager, a rotated GitLab token.
//
// One behaviour everywhere: the directories holding the files are watched
// with fsnotify (a volume update swaps the "..data" symlink of the
// directory, so the directory is what changes), a burst of events is
// debounced into one check, and the files are rescanned periodically as a
// fallback for lost events and file systems without notifications. A check
// hashes the content (SHA-256): only a real change reloads, and a load that
// fails keeps the previous value serving.
//
// Watch is the loop alone, for a caller that reconciles a directory itself
// (reporter/kubeconfigs); Value is a value loaded from files and kept up to
// date by Reload (on demand) or Run (the loop).
package filewatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/ciel-ci/ciel/internal/logopt"
	"github.com/ciel-ci/ciel/internal/option"
)

// Defaults of the options.
const (
	DefaultRescanInterval = 30 * time.Second
	DefaultDebounce       = 200 * time.Millisecond
)

type options struct {
	log      *slog.Logger
	rescan   time.Duration
	debounce time.Duration
	notify   bool
	onLoad   func(error)
}

// Option configures Watch and New.
type Option func(*options) error

// WithLogger sets the logger. Default: discard. File contents are never
// logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { return logopt.Set(&o.log, l) }
}

// WithRescanInterval sets how often the files are checked without a
// notification. Default: DefaultRescanInterval.
func WithRescanInterval(d time.Duration) Option {
	return option.Check(d > 0, fmt.Sprintf("rescan interval must be positive, got %s", d), func(o *options) { o.rescan = d })
}

// WithDebounce sets how long to wait after a notification before checking,
// so that a burst of events (a volume update is several) makes one check.
// Default: DefaultDebounce.
func WithDebounce(d time.Duration) Option {
	return option.Check(d >= 0, fmt.Sprintf("debounce must not be negative, got %s", d), func(o *options) { o.debounce = d })
}

// WithNotify turns fsnotify on or off; off leaves the periodic rescan
// alone. Default: on.
func WithNotify(on bool) Option { return option.Check(true, "", func(o *options) { o.notify = on }) }

// WithOnLoad calls fn after each load of a Value that ran: err is nil when
// a new value serves, the failure otherwise (the previous value serves).
// It is not called when a check finds the content unchanged, and it is
// called before New returns for the first load. Only New takes it; Watch
// and Run refuse it. Default: none.
func WithOnLoad(fn func(err error)) Option {
	return option.Check(fn != nil, "load callback must not be nil", func(o *options) { o.onLoad = fn })
}

func build(opts []Option) (options, error) {
	o := options{log: logopt.Discard(), rescan: DefaultRescanInterval, debounce: DefaultDebounce, notify: true}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, fmt.Errorf("configuring the file watch: %w", err)
		}
	}
	return o, nil
}

// Validate reports the first invalid option, for a package that takes
// filewatch options through its own so that its constructor, not its Run,
// refuses them.
func Validate(opts ...Option) error {
	_, err := build(opts)
	return err
}

// Watch calls check whenever something may have changed in dirs: once
// when the watch is in place (so that a change between the caller's own
// load and the watch is not missed), after a debounced notification, after
// a lost event (an fsnotify error such as a queue overflow), and every
// rescan interval. It returns nil when ctx ends, and an error only for
// invalid options. A directory that cannot be watched is logged
// and left to the rescans.
func Watch(ctx context.Context, dirs []string, check func(context.Context), opts ...Option) error {
	o, err := build(opts)
	if err != nil {
		return err
	}
	if o.onLoad != nil {
		return errors.New("configuring the file watch: WithOnLoad applies to a Value, not to Watch")
	}
	return watch(ctx, o, dirs, check)
}

func watch(ctx context.Context, o options, dirs []string, check func(context.Context)) error {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if o.notify && len(dirs) > 0 {
		fw, err := fsnotify.NewWatcher()
		if err != nil {
			o.log.Warn("watching files failed, relying on rescans", "dirs", dirs, "error", err)
		} else {
			defer fw.Close()
			for _, d := range dirs {
				if err := fw.Add(d); err != nil {
					o.log.Warn("watching a directory failed, relying on rescans", "dir", d, "error", err)
				}
			}
			events, errs = fw.Events, fw.Errors
		}
	}
	check(ctx)
	ticker := time.NewTicker(o.rescan)
	defer ticker.Stop()
	var debounce *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if debounce != nil {
				debounce.Stop()
			}
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			o.log.Debug("watched directory changed", "event", ev.String())
			if fire == nil {
				debounce = time.NewTimer(o.debounce)
				fire = debounce.C
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// Typically an event queue overflow: events were lost.
			o.log.Warn("watching files", "dirs", dirs, "error", err)
			check(ctx)
		case <-fire:
			fire, debounce = nil, nil
			check(ctx)
		case <-ticker.C:
			check(ctx)
		}
	}
}
