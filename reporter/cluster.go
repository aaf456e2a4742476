package reporter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	"github.com/tektoncd/pipeline/pkg/client/informers/externalversions"
	listers "github.com/tektoncd/pipeline/pkg/client/listers/pipeline/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/ciel-ci/ciel/reporter/status"
)

// cluster is one running set of informers: one per watched namespace, or
// one for all namespaces.
type cluster struct {
	name   string
	client versioned.Interface
	// taskRuns maps a namespace to the lister of its TaskRun cache
	// (metav1.NamespaceAll when every namespace is watched).
	taskRuns map[string]listers.TaskRunLister
	stopped  atomic.Bool
}

// TaskRun implements status.TaskRunGetter over the cluster's cache.
func (c *cluster) TaskRun(namespace, name string) (*v1.TaskRun, bool) {
	l, ok := c.taskRuns[namespace]
	if !ok {
		if l, ok = c.taskRuns[metav1.NamespaceAll]; !ok {
			return nil, false
		}
	}
	tr, err := l.TaskRuns(namespace).Get(name)
	if err != nil {
		return nil, false
	}
	return tr, true
}

var _ status.TaskRunGetter = (*cluster)(nil)

// RunCluster watches the cluster cfg points to until ctx is cancelled,
// calling ready once its caches are synced. Its signature fits
// kubeconfigs.RunFunc once adapted.
func (r *Reporter) RunCluster(ctx context.Context, name string, cfg *rest.Config, ready func()) error {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "ciel-reporter"
	if cfg.QPS == 0 {
		// Recording states patches up to three times per run.
		cfg.QPS, cfg.Burst = 20, 40
	}
	client, err := versioned.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating tekton client for cluster %s: %w", name, err)
	}
	return r.RunClusterClient(ctx, name, client, ready)
}

// RunClusterClient is RunCluster with a ready-made Tekton clientset (tests
// use the fake one).
func (r *Reporter) RunClusterClient(ctx context.Context, name string, client versioned.Interface, ready func()) error {
	if client == nil {
		return errors.New("tekton client must not be nil")
	}
	log := r.opts.log.With("cluster", name)
	namespaces := r.opts.namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	cl := &cluster{name: name, client: client, taskRuns: map[string]listers.TaskRunLister{}}

	watchErr := func(kind, ns string) cache.WatchErrorHandler {
		return func(_ *cache.Reflector, err error) {
			r.m.watchErrors.WithLabelValues(name).Inc()
			switch {
			case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
				log.Error("watching "+kind+" is not allowed; check the RBAC of the reporter's identity", "namespace", ns, "error", err)
			default:
				log.Warn("watching "+kind, "namespace", ns, "error", err)
			}
		}
	}
	var factories []externalversions.SharedInformerFactory
	defer func() {
		cl.stopped.Store(true)
		for _, f := range factories {
			f.Shutdown()
		}
	}()
	for _, ns := range namespaces {
		factory := externalversions.NewSharedInformerFactoryWithOptions(client, r.opts.resync,
			externalversions.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = status.Selector }),
			externalversions.WithNamespace(ns))
		prs := factory.Tekton().V1().PipelineRuns()
		trs := factory.Tekton().V1().TaskRuns()
		cl.taskRuns[ns] = trs.Lister()
		if err := prs.Informer().SetWatchErrorHandler(watchErr("pipelineruns", ns)); err != nil {
			return fmt.Errorf("cluster %s: %w", name, err)
		}
		if err := trs.Informer().SetWatchErrorHandler(watchErr("taskruns", ns)); err != nil {
			return fmt.Errorf("cluster %s: %w", name, err)
		}
		handle, err := prs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { r.observe(cl, obj, false) },
			UpdateFunc: func(_, obj any) { r.observe(cl, obj, false) },
			DeleteFunc: func(obj any) { r.observe(cl, obj, true) },
		})
		if err != nil {
			return fmt.Errorf("cluster %s: adding event handler: %w", name, err)
		}
		defer prs.Informer().RemoveEventHandler(handle)
		factories = append(factories, factory)
	}

	for _, f := range factories {
		f.Start(ctx.Done())
	}
	log.Info("syncing caches", "namespaces", namespaces)
	for _, f := range factories {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("cluster %s: cache of %v did not sync", name, typ)
			}
		}
	}
	log.Info("caches synced")
	if ready != nil {
		ready()
	}
	<-ctx.Done()
	log.Info("stopping")
	return nil
}

// observe handles an informer event. It never blocks and does no I/O.
func (r *Reporter) observe(cl *cluster, obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pr, ok := obj.(*v1.PipelineRun)
	if !ok || pr == nil {
		return
	}
	if len(r.opts.namespaces) > 0 && !slices.Contains(r.opts.namespaces, pr.Namespace) {
		// Cannot come from a namespaced informer; checked all the same.
		r.m.ignored.WithLabelValues("namespace").Inc()
		return
	}
	commit, err := status.CommitOf(pr)
	if err != nil {
		r.m.ignored.WithLabelValues("labels").Inc()
		r.opts.log.Debug("ignoring pipelinerun", "cluster", cl.name, "namespace", pr.Namespace, "name", pr.Name, "error", err)
		return
	}
	if r.opts.projects != nil && !r.opts.projects[commit.ProjectID] {
		r.m.ignored.WithLabelValues("project").Inc()
		r.opts.log.Debug("ignoring pipelinerun of a project not allowed", "cluster", cl.name, "namespace", pr.Namespace,
			"name", pr.Name, "project_id", commit.ProjectID)
		return
	}
	key := Key{ProjectID: commit.ProjectID, SHA: commit.SHA, Ref: commit.Ref, Name: status.Name(r.opts.namePrefix, commit.Pipeline)}
	recorded, _ := status.ParseState(pr.Annotations[status.AnnotationReported])

	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[key]
	switch {
	case e == nil || (e.uid != pr.UID && newer(pr, e)):
		if deleted {
			return
		}
		if e == nil && len(r.entries) >= r.opts.maxTracked {
			r.m.ignored.WithLabelValues("queue_full").Inc()
			return
		}
		if recorded == "" && r.tooOld(pr) {
			r.m.ignored.WithLabelValues("too_old").Inc()
			return
		}
		if e != nil {
			r.opts.log.Info("newer pipelinerun takes over the commit status", "key", key.String(),
				"cluster", cl.name, "namespace", pr.Namespace, "name", pr.Name, "previous", e.pr.Name)
		}
		e = &entry{cl: cl, commit: commit, uid: pr.UID, created: pr.CreationTimestamp.Time, pr: pr,
			posted: recorded, recorded: recorded}
		r.entries[key] = e
	case e.uid != pr.UID:
		r.m.ignored.WithLabelValues("superseded").Inc()
		return
	default:
		e.cl, e.pr, e.commit = cl, pr, commit
		if deleted {
			e.deleted = true
		}
		if recorded.Rank() > e.recorded.Rank() {
			e.recorded = recorded
		}
		if recorded.Rank() > e.posted.Rank() {
			e.posted = recorded
		}
	}
	if r.needsWork(e) {
		r.queue.Add(key)
	}
}

// newer reports whether pr is a later run than the one e follows.
func newer(pr *v1.PipelineRun, e *entry) bool {
	c := pr.CreationTimestamp.Time
	if !c.Equal(e.created) {
		return c.After(e.created)
	}
	if pr.Name != e.pr.Name {
		return pr.Name > e.pr.Name
	}
	return pr.UID > e.uid
}

// tooOld reports whether pr finished before the backfill window.
func (r *Reporter) tooOld(pr *v1.PipelineRun) bool {
	if r.opts.backfill == 0 || !status.StateOf(pr).Terminal() || pr.Status.CompletionTime == nil {
		return false
	}
	return r.opts.now().Sub(pr.Status.CompletionTime.Time) > r.opts.backfill
}
