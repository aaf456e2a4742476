// Package reporter reports Tekton PipelineRuns started for GitLab events
// back to GitLab as commit statuses: pending, running, then success, failed
// or canceled, with the failing task and its reason in the description and a
// link to the run.
//
// # How it works
//
// Per cluster, shared informers watch the PipelineRuns and TaskRuns that
// carry ciel's labels (status.Selector). Event handlers only compute a key
// and the wanted state and add the key to a client-go work queue: they never
// do I/O and never block the informers. Workers take keys off the queue,
// compute the status from the latest object seen, post it to GitLab, and
// record what they posted.
//
// # Several clusters
//
// One reporter serves every cluster that runs ciel's PipelineRuns: builds
// are often spread over clusters (per architecture, per team, per
// environment) while GitLab, the token and the commit statuses are one.
// Each cluster gets its own set of informers (RunCluster, one per
// kubeconfig, run by package reporter/kubeconfigs); they all feed the one
// work queue, so that the ordering and idempotency below hold across
// clusters and GitLab sees one client with one rate. When a kubeconfig
// changes (rotated credentials, a new API server address), its informers
// are stopped and re-created from the new file. A status still to be
// posted is kept across the restart; the others are forgotten (sweep) and
// found again, with their recorded state, when the new informers list the
// runs: a rotation neither loses nor reposts a status. The cluster's name is
// in the target URL ({{.Cluster}}) and in the metrics.
//
// # Keys, idempotency and ordering
//
// A commit status is identified by (project, commit, ref, name): GitLab
// keeps one per pipeline and ref. Name is "ciel/<pipeline>". For each key the
// reporter follows one PipelineRun, the newest (re-runs for the same commit
// supersede older runs), and remembers the last state that landed. A state
// is posted only when it ranks above that one (pending < running < terminal),
// so a state is never posted twice and never goes backwards. A newer state
// supersedes one that is waiting for a retry: the queue holds keys, not
// states, and a worker always posts the latest.
//
// # Restarts
//
// After posting, the reporter records the state on the PipelineRun itself,
// in the annotation status.AnnotationReported, with a JSON merge patch. A
// restarted reporter lists the PipelineRuns, reads the annotations and posts
// only what is newer: no GitLab request at all for runs that did not change,
// and no need for GitLab's API to be up, or within rate limits, to start.
// Asking GitLab instead (Commits.GetCommitStatuses per commit) would cost one
// request per cached run at every start and could not tell a re-run from the
// run it replaced. The window between a post and its record is covered by
// GitLab itself: re-posting a pending or running state is refused with
// "Cannot transition status", which the reporter treats as done.
//
// # Failures
//
// A post that fails for a transient reason (network, timeout, 5xx, 429) is
// retried with per-key exponential backoff, capped, until it lands or is
// superseded; GitLab's Retry-After is honoured. A post GitLab rejects (404
// project, invalid field) is logged, counted and not retried. The queue is
// bounded: beyond WithMaxTracked statuses, new ones are dropped and counted,
// and picked up again by the informers' periodic resync. On shutdown the
// workers get a bounded time to make one last attempt at everything pending.
package reporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/util/workqueue"

	"github.com/ciel-ci/ciel/internal/logopt"
	"github.com/ciel-ci/ciel/internal/option"
	"github.com/ciel-ci/ciel/reporter/gitlabstatus"
	"github.com/ciel-ci/ciel/reporter/status"
)

// Poster posts a commit status. gitlabstatus.Client is the implementation;
// errors wrapping gitlabstatus.ErrStateReached mean done, those wrapping
// gitlabstatus.ErrRejected are not retried, any other error is.
type Poster interface {
	Post(ctx context.Context, s status.Status) error
}

var _ Poster = (*gitlabstatus.Client)(nil)

// Key identifies one commit status in GitLab.
type Key struct {
	ProjectID string
	SHA       string
	Ref       string
	Name      string
}

func (k Key) String() string { return k.ProjectID + "@" + k.SHA + "/" + k.Ref + "/" + k.Name }

type options struct {
	log          *slog.Logger
	reg          prometheus.Registerer
	url          *status.URLTemplate
	namePrefix   string
	resync       time.Duration
	namespaces   []string
	projects     map[string]bool
	workers      int
	backoffMin   time.Duration
	backoffMax   time.Duration
	maxTracked   int
	detailWait   time.Duration
	detailWaits  int
	drainTimeout time.Duration
	backfill     time.Duration
	record       bool
	now          func() time.Time
}

// Option configures a Reporter.
type Option func(*options) error

// WithLogger sets the logger. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { return logopt.Set(&o.log, l) }
}

// WithRegisterer registers the reporter's metrics (see Metrics in the
// package documentation of the command). Default: not registered.
func WithRegisterer(r prometheus.Registerer) Option {
	return option.Check(r != nil, "registerer must not be nil", func(o *options) { o.reg = r })
}

// WithTargetURL sets the template of the statuses' target_url. Default:
// none, statuses carry no link.
func WithTargetURL(t *status.URLTemplate) Option {
	return option.Check(t != nil, "target URL template must not be nil", func(o *options) { o.url = t })
}

// WithNamePrefix sets the prefix of status names, prefix + pipeline.
// Default: "ciel/".
func WithNamePrefix(p string) Option {
	return option.Check(len(p) <= 100, "status name prefix is longer than 100 characters", func(o *options) { o.namePrefix = p })
}

// WithResync sets the informers' resync period: how often every cached
// PipelineRun is looked at again, which also recovers statuses dropped
// because the queue was full. Default: 10m.
func WithResync(d time.Duration) Option {
	return option.Check(d >= 0, fmt.Sprintf("resync period must not be negative, got %s", d), func(o *options) { o.resync = d })
}

// WithNamespaces restricts the reporter to PipelineRuns in these
// namespaces: one set of informers per namespace, so that namespaced RBAC
// (a Role and RoleBinding in each) suffices, and a PipelineRun anyone
// creates elsewhere is never reported. Duplicates are dropped. Default: all
// namespaces (a ClusterRole; anyone who can create a labelled PipelineRun
// anywhere can then post a status on any project the token reaches).
func WithNamespaces(namespaces ...string) Option {
	return func(o *options) error {
		o.namespaces = nil
		for _, ns := range namespaces {
			if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
				return fmt.Errorf("namespace %q: %s", ns, strings.Join(errs, "; "))
			}
			if !slices.Contains(o.namespaces, ns) {
				o.namespaces = append(o.namespaces, ns)
			}
		}
		return nil
	}
}

// WithProjects restricts the reporter to PipelineRuns of these GitLab
// project IDs (the label ciel.dev/gitlab-project-id, where statuses are
// posted); others are ignored and counted (reason "project"). IDs, not
// paths: the status goes to the ID, so only the ID can be checked. Default:
// every project.
func WithProjects(ids ...string) Option {
	return func(o *options) error {
		o.projects = nil
		for _, id := range ids {
			if n, err := strconv.ParseUint(id, 10, 63); err != nil || n == 0 {
				return fmt.Errorf("project %q: want a GitLab project ID, a positive integer", id)
			}
			if o.projects == nil {
				o.projects = map[string]bool{}
			}
			o.projects[id] = true
		}
		return nil
	}
}

// WithWorkers sets the number of workers posting to GitLab. Default: 4.
func WithWorkers(n int) Option {
	return option.Check(n >= 1, fmt.Sprintf("workers must be at least 1, got %d", n), func(o *options) { o.workers = n })
}

// WithRetryBackoff sets the per-status retry delay: min, doubling up to
// max. Default: 1s to 5m.
func WithRetryBackoff(min, max time.Duration) Option {
	return option.Check(min > 0 && max >= min, fmt.Sprintf("retry backoff must satisfy 0 < min <= max, got %s, %s", min, max),
		func(o *options) { o.backoffMin, o.backoffMax = min, max })
}

// WithMaxTracked bounds the number of commit statuses tracked at once, and
// so the queue. Beyond it, PipelineRuns for new keys are dropped, counted,
// and seen again at the next resync. Default: 50000.
func WithMaxTracked(n int) Option {
	return option.Check(n >= 1, fmt.Sprintf("max tracked statuses must be at least 1, got %d", n), func(o *options) { o.maxTracked = n })
}

// WithDetailWait sets how long, and how many times, a failed run's status
// waits for the TaskRun cache to hold the failing TaskRun, so that the
// description can name it. Default: 2s, 3 times.
func WithDetailWait(d time.Duration, times int) Option {
	return option.Check(d >= 0 && times >= 0, fmt.Sprintf("detail wait must not be negative, got %s x %d", d, times),
		func(o *options) { o.detailWait, o.detailWaits = d, times })
}

// WithDrainTimeout bounds how long Run spends, once its context is
// cancelled, on a last attempt at the statuses not posted yet. Default: 20s.
func WithDrainTimeout(d time.Duration) Option {
	return option.Check(d >= 0, fmt.Sprintf("drain timeout must not be negative, got %s", d), func(o *options) { o.drainTimeout = d })
}

// WithBackfillWindow sets how old a finished PipelineRun may be and still
// be reported when it has no record of a report: a first deployment does not
// post statuses for every old run in the cluster, while runs that finished
// during a short outage of the reporter are still reported. 0 reports all.
// Default: 24h.
func WithBackfillWindow(d time.Duration) Option {
	return option.Check(d >= 0, fmt.Sprintf("backfill window must not be negative, got %s", d), func(o *options) { o.backfill = d })
}

// WithRecord turns recording the posted state on the PipelineRun
// (status.AnnotationReported, needs the patch verb on pipelineruns) on or
// off. Off, a restarted reporter posts the current state of every run once
// more; GitLab ignores repeated pending and running states but stores
// repeated final ones again. Default: on.
func WithRecord(on bool) Option { return option.Check(true, "", func(o *options) { o.record = on }) }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option {
	return option.Check(now != nil, "clock must not be nil", func(o *options) { o.now = now })
}

// Reporter reports PipelineRuns as GitLab commit statuses. Create it with
// New, call Run once, and RunCluster (or RunClusterClient) once per
// cluster; clusters can come and go while Run runs.
type Reporter struct {
	poster  Poster
	opts    options
	limiter workqueue.TypedRateLimiter[Key]
	queue   workqueue.TypedRateLimitingInterface[Key]
	m       *metrics

	mu      sync.Mutex
	entries map[Key]*entry

	running  atomic.Bool
	stopping atomic.Bool
}

// entry is what the reporter knows about one commit status.
type entry struct {
	cl      *cluster
	commit  status.Commit
	uid     types.UID
	created time.Time
	pr      *v1.PipelineRun // latest seen; informer objects are read-only
	deleted bool
	// posted is the last state GitLab has for this run, as far as the
	// reporter knows; recorded is the state in the run's annotation.
	posted   status.State
	recorded status.State
	waits    int
}

// New returns a Reporter posting through p.
func New(p Poster, opts ...Option) (*Reporter, error) {
	o := options{
		log:          logopt.Discard(),
		namePrefix:   "ciel/",
		resync:       10 * time.Minute,
		workers:      4,
		backoffMin:   time.Second,
		backoffMax:   5 * time.Minute,
		maxTracked:   50000,
		detailWait:   2 * time.Second,
		detailWaits:  3,
		drainTimeout: 20 * time.Second,
		backfill:     24 * time.Hour,
		record:       true,
		now:          time.Now,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if p == nil {
		return nil, errors.New("poster must not be nil")
	}
	r := &Reporter{poster: p, opts: o, entries: map[Key]*entry{}}
	r.limiter = workqueue.NewTypedItemExponentialFailureRateLimiter[Key](o.backoffMin, o.backoffMax)
	r.queue = workqueue.NewTypedRateLimitingQueueWithConfig(r.limiter, workqueue.TypedRateLimitingQueueConfig[Key]{})
	r.m = newMetrics(r)
	if o.reg != nil {
		if err := r.m.register(o.reg); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Run runs the workers until ctx is cancelled, then gives every status not
// posted yet one last attempt, for at most the drain timeout, and returns.
func (r *Reporter) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("reporter is already running")
	}
	// In-flight posts outlive ctx during the drain; they are cut off when
	// the drain times out.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var wg sync.WaitGroup
	for range r.opts.workers {
		wg.Go(func() {
			for r.processNext(work) {
			}
		})
	}
	sweep := time.NewTicker(max(r.opts.resync, time.Minute))
	defer sweep.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-sweep.C:
			r.sweep()
		}
	}

	r.stopping.Store(true)
	pending := 0
	r.mu.Lock()
	for k, e := range r.entries {
		if r.needsWork(e) {
			r.queue.Add(k) // now, not after its backoff
			pending++
		}
	}
	r.mu.Unlock()
	r.queue.ShutDown() // workers empty the queue, retries are not queued again
	r.opts.log.Info("draining", "pending", pending, "timeout", r.opts.drainTimeout)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(r.opts.drainTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		r.opts.log.Warn("drain timed out, abandoning in-flight posts", "timeout", r.opts.drainTimeout)
		cancelWork()
		<-done
	}
	if n := r.pendingCount(); n > 0 {
		r.opts.log.Warn("statuses not posted at shutdown; the next start posts them", "count", n)
	}
	return nil
}

// Ready returns nil while the workers run.
func (r *Reporter) Ready() error {
	switch {
	case !r.running.Load():
		return errors.New("reporter workers not started")
	case r.stopping.Load():
		return errors.New("reporter is shutting down")
	}
	return nil
}

// desired is the state to report for e.
func desired(e *entry) status.State {
	s := status.StateOf(e.pr)
	if e.deleted && !s.Terminal() {
		return status.Canceled
	}
	return s
}

// needsWork reports whether a worker has something to do for e. Called
// with r.mu held.
func (r *Reporter) needsWork(e *entry) bool {
	return e.deleted || desired(e).Rank() > e.posted.Rank() ||
		(r.opts.record && e.recorded.Rank() < e.posted.Rank())
}

func (r *Reporter) pendingCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.entries {
		if desired(e).Rank() > e.posted.Rank() {
			n++
		}
	}
	return n
}

// sweep forgets statuses of clusters that stopped (a removed or changed
// kubeconfig) when nothing is left to do for them; a restarted cluster's
// informers bring back the runs that still exist.
func (r *Reporter) sweep() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, e := range r.entries {
		if e.cl != nil && e.cl.stopped.Load() && !r.needsWork(e) {
			delete(r.entries, k)
		}
	}
}
