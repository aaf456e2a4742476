// Package kubeconfigs runs one worker per Kubernetes cluster described by a
// directory of kubeconfig files, and keeps the set of workers in line with
// the directory while the process runs: a new file starts a cluster, a
// changed file (compared by SHA-256 of its content) stops the old worker
// (its context is cancelled and it is waited for) before the new one starts,
// a removed file stops its cluster.
//
// The directory is followed with package filewatch: watched with fsnotify
// and, as a fallback for lost events and file systems without
// notifications, rescanned periodically. It works with Secret and
// ConfigMap volumes, whose files are symlinks through an atomically
// swapped "..data" directory: hidden entries are ignored and symlinks
// followed.
//
// A file that cannot be read or parsed is logged and counted, and does not
// disturb the other clusters; when it replaces a good kubeconfig, the
// cluster keeps running on the last good one until the file is fixed.
package kubeconfigs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ciel-ci/ciel/internal/filewatch"
	"github.com/ciel-ci/ciel/internal/logopt"
	"github.com/ciel-ci/ciel/internal/option"
	"github.com/ciel-ci/ciel/internal/promreg"
)

// Cluster is one cluster handed to a RunFunc.
type Cluster struct {
	// Name is the file name without its extension (.yaml, .yml, .json,
	// .conf, .config, .kubeconfig), or the name of a static cluster.
	Name string
	// File is the kubeconfig's path, empty for a static cluster.
	File string
	// Hash is the hex SHA-256 of the kubeconfig, empty for a static cluster.
	Hash   string
	Config *rest.Config
}

// RunFunc runs the worker of one cluster until ctx is cancelled. It calls
// ready once its caches are synced. An error (or a return before ctx is
// done) marks the cluster failed; it is run again after a backoff.
type RunFunc func(ctx context.Context, c Cluster, ready func()) error

// State is the state of a cluster.
type State string

// Cluster states.
const (
	// Starting: the worker runs and has not called ready yet.
	Starting State = "starting"
	// Ready: the worker called ready.
	Ready State = "ready"
	// Failed: the worker returned an error; it is retried after a backoff.
	Failed State = "failed"
	// Invalid: the file cannot be read or parsed. A worker started from an
	// earlier, valid version of the file keeps running.
	Invalid State = "invalid"
)

var allStates = []State{Starting, Ready, Failed, Invalid}

// Status describes one cluster.
type Status struct {
	Name  string
	File  string
	Hash  string // of the running kubeconfig
	State State
	// Running is true when a worker runs for the cluster, which is also
	// the case for an Invalid file that replaced a valid one.
	Running bool
	Err     string
}

type options struct {
	log         *slog.Logger
	watch       []filewatch.Option
	stopTimeout time.Duration
	backoffMin  time.Duration
	backoffMax  time.Duration
	reg         prometheus.Registerer
	static      []Cluster
}

// Option configures a Watcher.
type Option func(*options) error

// WithLogger sets the logger. Default: discard. Kubeconfig contents are
// never logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { return logopt.Set(&o.log, l) }
}

// WithRescanInterval sets how often the directory is read even without a
// notification. Default: 30s.
func WithRescanInterval(d time.Duration) Option { return watchOption(filewatch.WithRescanInterval(d)) }

// WithDebounce sets how long to wait after a notification before reading
// the directory, so that a burst of events (a Secret volume update is
// several) causes one scan. Default: 200ms.
func WithDebounce(d time.Duration) Option { return watchOption(filewatch.WithDebounce(d)) }

// watchOption passes a filewatch option to the directory watch.
func watchOption(fo filewatch.Option) Option {
	return option.Check(true, "", func(o *options) { o.watch = append(o.watch, fo) })
}

// WithStopTimeout bounds how long a restart waits for the old worker to
// return before starting the new one, and how long Run waits for all
// workers when it stops. Default: 30s.
func WithStopTimeout(d time.Duration) Option {
	return option.Check(d > 0, fmt.Sprintf("stop timeout must be positive, got %s", d), func(o *options) { o.stopTimeout = d })
}

// WithRetryBackoff sets the delay before running a failed worker again:
// min, doubling up to max. Default: 1s to 5m.
func WithRetryBackoff(min, max time.Duration) Option {
	return option.Check(min > 0 && max >= min, fmt.Sprintf("retry backoff must satisfy 0 < min <= max, got %s, %s", min, max),
		func(o *options) { o.backoffMin, o.backoffMax = min, max })
}

// WithNotify turns fsnotify on or off; off leaves the periodic rescan
// alone. Default: on.
func WithNotify(on bool) Option { return watchOption(filewatch.WithNotify(on)) }

// WithRegisterer registers the watcher's metrics:
//
//	ciel_reporter_clusters{state}                       clusters per state
//	ciel_reporter_cluster_state{cluster,state}          1 for each cluster's current state
//	ciel_reporter_kubeconfig_errors_total{cluster}      invalid kubeconfig files seen
//	ciel_reporter_cluster_failures_total{cluster}       worker failures
//	ciel_reporter_cluster_starts_total{cluster}         worker starts (incl. restarts)
//
// Default: not registered.
func WithRegisterer(r prometheus.Registerer) Option {
	return option.Check(r != nil, "registerer must not be nil", func(o *options) { o.reg = r })
}

// WithStaticCluster adds a cluster that is not read from the directory,
// such as the one the process runs in (rest.InClusterConfig).
func WithStaticCluster(name string, cfg *rest.Config) Option {
	return func(o *options) error {
		if !nameRE.MatchString(name) {
			return fmt.Errorf("invalid static cluster name %q", name)
		}
		if cfg == nil {
			return fmt.Errorf("static cluster %s: config must not be nil", name)
		}
		o.static = append(o.static, Cluster{Name: name, Config: cfg})
		return nil
	}
}

// Watcher keeps one worker per cluster running. Create it with New and
// call Run once.
type Watcher struct {
	dir  string
	run  RunFunc
	opts options

	errorsTotal   *prometheus.CounterVec
	failuresTotal *prometheus.CounterVec
	startsTotal   *prometheus.CounterVec

	mu       sync.Mutex
	members  map[string]*member
	scanned  bool
	scanErr  error
	everDone map[string]bool   // clusters that were ready at least once
	clashes  map[string]string // files named like a static cluster, by content hash
}

type member struct {
	name, file string
	static     bool
	hash       string // of the running config
	badHash    string // of the invalid file content, "" when valid
	fileErr    error
	runState   State
	runErr     error
	gen        uint64
	cancel     context.CancelFunc
	done       chan struct{}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)

// maxFileSize bounds a kubeconfig; real ones with embedded certificates are
// a few KiB.
const maxFileSize = 1 << 20

// New returns a Watcher over dir, which may be empty when only static
// clusters are wanted.
func New(dir string, run RunFunc, opts ...Option) (*Watcher, error) {
	o := options{
		log:         logopt.Discard(),
		stopTimeout: 30 * time.Second,
		backoffMin:  time.Second,
		backoffMax:  5 * time.Minute,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if err := filewatch.Validate(o.watch...); err != nil {
		return nil, err
	}
	if run == nil {
		return nil, errors.New("run function must not be nil")
	}
	if dir == "" && len(o.static) == 0 {
		return nil, errors.New("a kubeconfig directory or a static cluster is required")
	}
	w := &Watcher{
		dir: dir, run: run, opts: o,
		members:  map[string]*member{},
		everDone: map[string]bool{},
		clashes:  map[string]string{},
		errorsTotal: promreg.CounterVec("ciel_reporter_kubeconfig_errors_total",
			"Kubeconfig files that could not be read or parsed, per cluster (file) name.", "cluster"),
		failuresTotal: promreg.CounterVec("ciel_reporter_cluster_failures_total",
			"Cluster workers that returned an error, per cluster.", "cluster"),
		startsTotal: promreg.CounterVec("ciel_reporter_cluster_starts_total",
			"Cluster workers started, restarts included, per cluster.", "cluster"),
	}
	seen := map[string]bool{}
	for _, c := range o.static {
		if seen[c.Name] {
			return nil, fmt.Errorf("static cluster %s given twice", c.Name)
		}
		seen[c.Name] = true
	}
	if o.reg != nil {
		if err := promreg.Register(o.reg, "kubeconfig watcher", w.errorsTotal, w.failuresTotal, w.startsTotal, (*stateCollector)(w)); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Run starts the static clusters and those of the directory, follows the
// directory until ctx is cancelled, then stops every worker, waiting for
// them up to the stop timeout. It fails only when the directory cannot be
// read at start.
func (w *Watcher) Run(ctx context.Context) error {
	var dirs []string
	if w.dir != "" {
		if _, err := os.ReadDir(w.dir); err != nil {
			return fmt.Errorf("reading kubeconfig directory: %w", err)
		}
		dirs = []string{w.dir}
	}
	for _, c := range w.opts.static {
		w.mu.Lock()
		m := &member{name: c.Name, static: true}
		w.members[c.Name] = m
		w.start(ctx, m, c)
		w.mu.Unlock()
	}
	// Watch scans once the directory is watched, then on every change.
	err := filewatch.Watch(ctx, dirs, w.scan, append([]filewatch.Option{filewatch.WithLogger(w.opts.log)}, w.opts.watch...)...)
	w.stopAll()
	return err
}

type file struct {
	name, path string
	data       []byte
	hash       string
	err        error
}

// readDir reads the candidate kubeconfigs of dir.
func (w *Watcher) readDir() (map[string]*file, error) {
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return nil, fmt.Errorf("reading kubeconfig directory: %w", err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	files := map[string]*file{}
	for _, e := range entries {
		base := e.Name()
		if strings.HasPrefix(base, ".") {
			continue // "..data", editors' swap files, dotfiles
		}
		path := filepath.Join(w.dir, base)
		fi, err := os.Stat(path) // follows the symlinks of Secret volumes
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // dangling symlink mid-update; the next scan sees it
			}
			return nil, fmt.Errorf("reading kubeconfig %s: %w", base, err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		name := clusterName(base)
		f := &file{name: name, path: path}
		switch {
		case !nameRE.MatchString(name):
			f.name = base
			f.err = fmt.Errorf("%q does not make a valid cluster name (letters, digits, '-', '_', '.', at most 63)", name)
		case files[name] != nil:
			f.name = base
			f.err = fmt.Errorf("cluster name %q is already used by %s", name, filepath.Base(files[name].path))
		case fi.Size() > maxFileSize:
			f.err = fmt.Errorf("kubeconfig is larger than %d bytes", maxFileSize)
		default:
			f.data, f.err = readFile(path)
			if f.err == nil {
				sum := sha256.Sum256(f.data)
				f.hash = hex.EncodeToString(sum[:])
			}
		}
		if f.err != nil && f.hash == "" {
			sum := sha256.Sum256([]byte(f.err.Error()))
			f.hash = "error:" + hex.EncodeToString(sum[:8])
		}
		files[f.name] = f
	}
	return files, nil
}

func readFile(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return io.ReadAll(io.LimitReader(fh, maxFileSize+1))
}

func clusterName(base string) string {
	for _, ext := range []string{".kubeconfig", ".yaml", ".yml", ".json", ".conf", ".config"} {
		if n, ok := strings.CutSuffix(base, ext); ok && n != "" {
			return n
		}
	}
	return base
}

// scan reconciles the workers with the directory.
func (w *Watcher) scan(ctx context.Context) {
	if w.dir == "" {
		w.mu.Lock()
		w.scanned = true
		w.mu.Unlock()
		return
	}
	files, err := w.readDir()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		// Keep what runs: a transient read error must not stop clusters.
		if w.scanErr == nil || w.scanErr.Error() != err.Error() {
			w.opts.log.Error("scanning kubeconfig directory", "dir", w.dir, "error", err)
		}
		w.scanErr = err
		return
	}
	w.scanErr = nil
	w.scanned = true
	for name, f := range files {
		m := w.members[name]
		if m != nil && m.static {
			if w.clashes[name] != f.hash {
				w.clashes[name] = f.hash
				w.errorsTotal.WithLabelValues(name).Inc()
				w.opts.log.Error("invalid kubeconfig, cluster not started", "cluster", name, "file", f.path,
					"error", fmt.Errorf("cluster name %q is taken by a static cluster", name))
			}
			continue
		}
		if m == nil {
			m = &member{name: name, file: f.path}
			w.members[name] = m
		}
		if f.err == nil && m.cancel != nil && m.hash == f.hash {
			if m.fileErr != nil {
				w.opts.log.Info("kubeconfig is valid again, unchanged from the running one", "cluster", name)
				m.fileErr, m.badHash = nil, ""
			}
			continue
		}
		if f.err == nil && m.badHash == f.hash {
			continue // already reported
		}
		var cfg *rest.Config
		if f.err == nil {
			cfg, err = clientcmd.RESTConfigFromKubeConfig(f.data)
			if err != nil {
				f.err = fmt.Errorf("parsing kubeconfig: %w", err)
			}
		}
		if f.err != nil {
			w.invalid(m, f.hash, f.err)
			continue
		}
		m.fileErr, m.badHash = nil, ""
		if m.cancel != nil {
			w.opts.log.Info("kubeconfig changed, restarting cluster", "cluster", name, "file", f.path)
		} else {
			w.opts.log.Info("kubeconfig added, starting cluster", "cluster", name, "file", f.path)
		}
		w.start(ctx, m, Cluster{Name: name, File: f.path, Hash: f.hash, Config: cfg})
	}
	for name := range w.clashes {
		if files[name] == nil {
			delete(w.clashes, name)
		}
	}
	for name, m := range w.members {
		if m.static || files[name] != nil {
			continue
		}
		w.opts.log.Info("kubeconfig removed, stopping cluster", "cluster", name, "file", m.file)
		if m.cancel != nil {
			m.cancel()
		}
		delete(w.members, name)
		delete(w.everDone, name)
	}
}

// invalid records a bad file. Called with w.mu held.
func (w *Watcher) invalid(m *member, hash string, err error) {
	if m.badHash == hash {
		return
	}
	m.badHash, m.fileErr = hash, err
	w.errorsTotal.WithLabelValues(m.name).Inc()
	if m.cancel != nil {
		w.opts.log.Error("invalid kubeconfig, the cluster keeps running on its previous one", "cluster", m.name, "file", m.file, "error", err)
	} else {
		w.opts.log.Error("invalid kubeconfig, cluster not started", "cluster", m.name, "file", m.file, "error", err)
	}
}

// start (re)starts m's worker. Called with w.mu held.
func (w *Watcher) start(ctx context.Context, m *member, c Cluster) {
	prev := m.done
	if m.cancel != nil {
		m.cancel() // the old informers stop before the new ones start
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	m.gen++
	m.cancel, m.done, m.hash = cancel, done, c.Hash
	m.runState, m.runErr = Starting, nil
	go w.supervise(rctx, m.gen, c, prev, done)
}

func (w *Watcher) supervise(ctx context.Context, gen uint64, c Cluster, prev <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	log := w.opts.log.With("cluster", c.Name)
	if prev != nil {
		select {
		case <-prev:
		case <-time.After(w.opts.stopTimeout):
			log.Warn("previous worker did not stop in time, starting the new one anyway", "timeout", w.opts.stopTimeout)
		}
	}
	backoff := w.opts.backoffMin
	for ctx.Err() == nil {
		w.startsTotal.WithLabelValues(c.Name).Inc()
		err := w.run(ctx, c, func() { w.setState(c.Name, gen, Ready, nil) })
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("worker returned before being stopped")
		}
		w.failuresTotal.WithLabelValues(c.Name).Inc()
		log.Error("cluster worker failed, retrying", "error", err, "backoff", backoff)
		w.setState(c.Name, gen, Failed, err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, w.opts.backoffMax)
		w.setState(c.Name, gen, Starting, nil)
	}
}

func (w *Watcher) setState(name string, gen uint64, s State, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.members[name]
	if m == nil || m.gen != gen {
		return // a stale worker
	}
	m.runState, m.runErr = s, err
	if s == Ready {
		w.everDone[name] = true
	}
}

func (w *Watcher) stopAll() {
	w.mu.Lock()
	var dones []chan struct{}
	for _, m := range w.members {
		if m.cancel != nil {
			m.cancel()
			dones = append(dones, m.done)
		}
	}
	w.mu.Unlock()
	deadline := time.NewTimer(w.opts.stopTimeout)
	defer deadline.Stop()
	for _, d := range dones {
		select {
		case <-d:
		case <-deadline.C:
			w.opts.log.Warn("cluster workers did not stop in time", "timeout", w.opts.stopTimeout)
			return
		}
	}
}

// Clusters returns the status of every cluster, sorted by name.
func (w *Watcher) Clusters() []Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Status, 0, len(w.members))
	for _, m := range w.members {
		s := Status{Name: m.name, File: m.file, Hash: m.hash, State: m.runState, Running: m.cancel != nil}
		if m.runErr != nil {
			s.Err = m.runErr.Error()
		}
		if m.fileErr != nil {
			s.State, s.Err = Invalid, m.fileErr.Error()
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Ready returns nil once the directory was read and every cluster with a
// valid kubeconfig has been ready at least once. Invalid files do not
// count: they are reported by metrics and logs, not by readiness.
func (w *Watcher) Ready() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.scanned {
		return errors.New("kubeconfig directory not read yet")
	}
	var waiting []string
	for name, m := range w.members {
		if m.cancel != nil && !w.everDone[name] {
			waiting = append(waiting, name)
		}
	}
	sort.Strings(waiting)
	if len(waiting) > 0 {
		return fmt.Errorf("clusters not synced yet: %s", strings.Join(waiting, ", "))
	}
	return nil
}

// stateCollector exports the cluster states as gauges.
type stateCollector Watcher

var (
	clustersDesc = prometheus.NewDesc("ciel_reporter_clusters",
		"Clusters per state (starting, ready, failed, invalid).", []string{"state"}, nil)
	clusterStateDesc = prometheus.NewDesc("ciel_reporter_cluster_state",
		"1 for the current state of each cluster.", []string{"cluster", "state"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- clustersDesc
	ch <- clusterStateDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[State]int{}
	for _, s := range (*Watcher)(c).Clusters() {
		counts[s.State]++
		ch <- prometheus.MustNewConstMetric(clusterStateDesc, prometheus.GaugeValue, 1, s.Name, string(s.State))
	}
	for _, s := range allStates {
		ch <- prometheus.MustNewConstMetric(clustersDesc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}
