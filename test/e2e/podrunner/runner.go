// Package podrunner is a test-only stand-in for kube-scheduler and a kubelet
// in the end-to-end harness: it watches the Pods Tekton's controller creates
// in the test namespaces, binds each to a fake Node whose labels satisfy the
// pod's nodeSelector, node affinity, pod affinity and tolerations (a pod that
// fits no node is a loud failure), runs the pod's init containers and step
// containers in order the way Tekton's entrypoint and a kubelet would, and
// reports container states, Tekton termination messages (results,
// StartedAt) and the pod phase through the API.
//
// Step programs are run by Executors chosen by the step's image from a
// table of Rules; an image no rule claims fails the pod and the test. It
// never fakes success.
package podrunner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/result"
	"github.com/tektoncd/pipeline/pkg/termination"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

const (
	// timeFormat is the StartedAt format of Tekton's entrypoint.
	timeFormat = "2006-01-02T15:04:05.000Z07:00"

	readyAnnotation         = "tekton.dev/ready"
	affinityAssistantLabel  = "app.kubernetes.io/component"
	affinityAssistantValue  = "affinity-assistant"
	reasonSkipped           = "Skipped"
	reasonTimeoutExceeded   = "TimeoutExceeded"
	defaultReadyTimeout     = 2 * time.Minute
	defaultParallelPods     = 4
	containerIDPrefix       = "ciel-e2e://"
	internalResultsDir      = "/tekton/results"
	internalStepsDir        = "/tekton/steps"
	stepContainerNamePrefix = "step-"
)

// Config configures a Runner.
type Config struct {
	// Kube is the client of the control plane.
	Kube kubernetes.Interface
	// Namespaces are watched for pods; at least one.
	Namespaces []string
	// WorkDir holds the per-pod directories (volumes, logs, sandboxes).
	WorkDir string
	// Rules choose the Executor of each container by image; first match
	// wins.
	Rules []Rule
	// BaseEnv is every container's environment before the Pod's own
	// (what a runtime and image would provide: PATH, HOME,
	// KUBERNETES_SERVICE_HOST, ...). HOSTNAME is always the pod's name.
	BaseEnv []string
	// ReadyTimeout bounds the wait for Tekton's ready annotation before the
	// first step (default 2m).
	ReadyTimeout time.Duration
	// ParallelPods is how many pods run at once (default 4).
	ParallelPods int
	// Logger receives progress messages (default: discard).
	Logger *slog.Logger
}

// Runner schedules and runs pods. Create it with New, then Start it.
type Runner struct {
	cfg    Config
	logger *slog.Logger

	mu       sync.Mutex
	seen     map[types.UID]bool
	cancels  map[types.UID]context.CancelFunc
	placed   []PlacedPod
	records  []*PodRecord
	problems []error

	nodes   listersv1.NodeLister
	podList map[string]listersv1.PodLister
	sem     chan struct{}
	wg      sync.WaitGroup
	cancel  context.CancelFunc
}

// PodRecord is what the runner did with one pod.
type PodRecord struct {
	Namespace, Name string
	UID             types.UID
	// Node is the node the pod was bound to ("" if none fit).
	Node string
	// OS and Arch are the node's platform.
	OS, Arch string
	// Phase is the final phase the runner reported.
	Phase corev1.PodPhase
	// Containers are the init and step containers in the order they ran.
	Containers []ContainerRecord
}

// ContainerRecord is one container's run.
type ContainerRecord struct {
	Name, Image string
	Init        bool
	// Rule names the executor rule that ran it ("tekton-internal" for
	// Tekton's own init containers, "" when skipped).
	Rule               string
	ExitCode           int
	TerminationMessage string
	// LogFile holds the container's output.
	LogFile string
	// Duration is how long the step's program ran (zero when it did not).
	Duration time.Duration
}

// New validates cfg and returns a Runner.
func New(cfg Config) (*Runner, error) {
	if cfg.Kube == nil {
		return nil, errors.New("pod runner: no Kubernetes client")
	}
	if len(cfg.Namespaces) == 0 {
		return nil, errors.New("pod runner: no namespaces to watch")
	}
	if cfg.WorkDir == "" {
		return nil, errors.New("pod runner: no work directory")
	}
	for i, r := range cfg.Rules {
		if r.Name == "" || r.Match == nil || r.Executor == nil {
			return nil, fmt.Errorf("pod runner: rule %d needs a name, a matcher and an executor", i)
		}
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = defaultReadyTimeout
	}
	if cfg.ParallelPods <= 0 {
		cfg.ParallelPods = defaultParallelPods
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Runner{
		cfg: cfg, logger: logger,
		seen: map[types.UID]bool{}, cancels: map[types.UID]context.CancelFunc{},
		podList: map[string]listersv1.PodLister{},
		sem:     make(chan struct{}, cfg.ParallelPods),
	}, nil
}

// Start watches the namespaces and runs pods until Stop. It returns once
// the watches are established.
func (r *Runner) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	nodeFactory := informers.NewSharedInformerFactory(r.cfg.Kube, 0)
	nodeInformer := nodeFactory.Core().V1().Nodes()
	r.nodes = nodeInformer.Lister()
	_ = nodeInformer.Informer()
	nodeFactory.Start(ctx.Done())
	synced := []cache.InformerSynced{nodeInformer.Informer().HasSynced}
	for _, ns := range r.cfg.Namespaces {
		f := informers.NewSharedInformerFactoryWithOptions(r.cfg.Kube, 0, informers.WithNamespace(ns))
		pi := f.Core().V1().Pods()
		r.podList[ns] = pi.Lister()
		_, err := pi.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { r.onPod(ctx, obj) },
			UpdateFunc: func(_, obj any) { r.onPod(ctx, obj) },
			DeleteFunc: r.onDelete,
		})
		if err != nil {
			cancel()
			return fmt.Errorf("pod runner: watching pods in %s: %w", ns, err)
		}
		f.Start(ctx.Done())
		synced = append(synced, pi.Informer().HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		cancel()
		return errors.New("pod runner: the pod and node watches did not sync")
	}
	return nil
}

// Stop stops watching, cancels the pods still running and waits for them.
func (r *Runner) Stop() {
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
}

// Problems returns what went wrong that a real cluster would not have
// allowed to pass silently: pods that fit no node, images no rule claims,
// steps the runner could not run faithfully, API errors.
func (r *Runner) Problems() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.problems...)
}

// Records returns a copy of what the runner did, in the order pods started.
func (r *Runner) Records() []PodRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]PodRecord, 0, len(r.records))
	for _, rec := range r.records {
		c := *rec
		c.Containers = append([]ContainerRecord(nil), rec.Containers...)
		out = append(out, c)
	}
	return out
}

func (r *Runner) problem(err error) {
	r.mu.Lock()
	r.problems = append(r.problems, err)
	r.mu.Unlock()
	r.logger.Error("pod runner problem", "error", err)
}

func (r *Runner) onDelete(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	r.mu.Lock()
	cancel := r.cancels[pod.UID]
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

func (r *Runner) onPod(ctx context.Context, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName != "" || pod.Status.Phase != corev1.PodPending || pod.DeletionTimestamp != nil {
		return
	}
	r.mu.Lock()
	if r.seen[pod.UID] {
		r.mu.Unlock()
		return
	}
	r.seen[pod.UID] = true
	podCtx, cancel := context.WithCancel(ctx)
	r.cancels[pod.UID] = cancel
	rec := &PodRecord{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
	r.records = append(r.records, rec)
	r.mu.Unlock()

	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer cancel()
		select {
		case r.sem <- struct{}{}:
		case <-podCtx.Done():
			return
		}
		defer func() { <-r.sem }()
		defer func() {
			if p := recover(); p != nil {
				r.problem(fmt.Errorf("pod %s/%s: pod runner panic: %v\n%s", pod.Namespace, pod.Name, p, debug.Stack()))
			}
		}()
		r.runPod(podCtx, pod.DeepCopy(), rec)
	}()
}

// podRun is the state of one pod being run.
type podRun struct {
	r      *Runner
	pod    *corev1.Pod
	node   *corev1.Node
	rec    *PodRecord
	dir    string
	vols   *podVolumes
	status corev1.PodStatus
}

func (r *Runner) runPod(ctx context.Context, pod *corev1.Pod, rec *PodRecord) {
	id := pod.Namespace + "/" + pod.Name
	isTekton := ownedByKind(pod, "TaskRun")
	isAssistant := pod.Labels[affinityAssistantLabel] == affinityAssistantValue
	if !isTekton && !isAssistant {
		r.problem(fmt.Errorf("pod %s was not created by Tekton for a TaskRun; the pod runner does not run it", id))
		return
	}
	node, err := r.schedule(ctx, pod)
	if err != nil {
		r.problem(err)
		return
	}
	r.mu.Lock()
	rec.Node, rec.OS, rec.Arch = node.Name, node.Labels[corev1.LabelOSStable], node.Labels[corev1.LabelArchStable]
	r.mu.Unlock()
	r.logger.Info("pod bound", "pod", id, "node", node.Name)

	pr := &podRun{r: r, pod: pod, node: node, rec: rec,
		dir: filepath.Join(r.cfg.WorkDir, "pods", pod.Namespace, pod.Name+"-"+string(pod.UID)[:8])}
	now := metav1.Now()
	pr.status = corev1.PodStatus{
		Phase: corev1.PodPending, HostIP: "127.0.0.1", PodIP: "127.0.0.1",
		HostIPs: []corev1.HostIP{{IP: "127.0.0.1"}}, PodIPs: []corev1.PodIP{{IP: "127.0.0.1"}},
		StartTime: &now, QOSClass: pod.Status.QOSClass, // set by the apiserver at creation; immutable
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionFalse, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionFalse, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: now},
		},
	}
	for _, c := range pod.Spec.InitContainers {
		pr.status.InitContainerStatuses = append(pr.status.InitContainerStatuses, waitingStatus(c, "PodInitializing"))
	}
	for _, c := range pod.Spec.Containers {
		pr.status.ContainerStatuses = append(pr.status.ContainerStatuses, waitingStatus(c, "PodInitializing"))
	}
	if isAssistant {
		// The affinity assistant only anchors other pods to its node.
		pr.markRunning()
		pr.push(ctx)
		return
	}
	phase, err := pr.run(ctx)
	if err != nil {
		r.problem(fmt.Errorf("pod %s on node %s: %w", id, node.Name, err))
		phase = corev1.PodFailed
	}
	if ctx.Err() != nil && phase != corev1.PodSucceeded {
		// The pod was deleted (Tekton cancels and times out TaskRuns that
		// way) or the runner stopped: there is nobody to report to.
		r.logger.Info("pod stopped", "pod", id, "reason", ctx.Err())
		return
	}
	pr.finish(phase)
	pr.push(context.WithoutCancel(ctx))
	r.mu.Lock()
	rec.Phase = phase
	r.mu.Unlock()
	r.logger.Info("pod done", "pod", id, "phase", phase)
}

func waitingStatus(c corev1.Container, reason string) corev1.ContainerStatus {
	return corev1.ContainerStatus{
		Name: c.Name, Image: c.Image, ImageID: c.Image,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}},
	}
}

func ownedByKind(pod *corev1.Pod, kind string) bool {
	for _, o := range pod.OwnerReferences {
		if o.Kind == kind && strings.HasPrefix(o.APIVersion, "tekton.dev/") {
			return true
		}
	}
	return false
}

// schedule picks the first node (by name) the pod fits and binds the pod to
// it through the Binding subresource, as kube-scheduler does.
func (r *Runner) schedule(ctx context.Context, pod *corev1.Pod) (*corev1.Node, error) {
	id := pod.Namespace + "/" + pod.Name
	nodes, err := r.nodes.List(everything())
	if err != nil {
		return nil, fmt.Errorf("pod %s: listing nodes: %w", id, err)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	r.mu.Lock()
	placed := append([]PlacedPod(nil), r.placed...)
	r.mu.Unlock()
	reasons := map[string][]string{}
	var chosen *corev1.Node
	for _, n := range nodes {
		why := Unfit(pod, n, placed)
		if len(why) == 0 {
			chosen = n
			break
		}
		reasons[n.Name] = why
	}
	if chosen == nil {
		msg := fmt.Sprintf("0/%d nodes are available:%s", len(nodes), describeUnfit(reasons))
		_ = r.updateStatus(ctx, pod, func(st *corev1.PodStatus) {
			setCondition(st, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
				Reason: corev1.PodReasonUnschedulable, Message: msg, LastTransitionTime: metav1.Now()})
		})
		return nil, fmt.Errorf("pod %s is unschedulable: %s", id, msg)
	}
	binding := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: chosen.Name},
	}
	if err := r.cfg.Kube.CoreV1().Pods(pod.Namespace).Bind(ctx, binding, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("pod %s: binding to node %s: %w", id, chosen.Name, err)
	}
	pod.Spec.NodeName = chosen.Name
	r.mu.Lock()
	r.placed = append(r.placed, PlacedPod{Namespace: pod.Namespace, Labels: pod.Labels, Node: chosen})
	r.mu.Unlock()
	return chosen, nil
}

func setCondition(st *corev1.PodStatus, c corev1.PodCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == c.Type {
			st.Conditions[i] = c
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}

// updateStatus applies mutate to the latest version of the pod's status.
func (r *Runner) updateStatus(ctx context.Context, pod *corev1.Pod, mutate func(*corev1.PodStatus)) error {
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		latest, err := r.cfg.Kube.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if latest.UID != pod.UID {
			return apierrors.NewNotFound(corev1.Resource("pods"), pod.Name)
		}
		mutate(&latest.Status)
		_, err = r.cfg.Kube.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, latest, metav1.UpdateOptions{})
		return err
	})
}

// push writes the run's status to the API.
func (pr *podRun) push(ctx context.Context) {
	st := pr.status.DeepCopy()
	err := pr.r.updateStatus(ctx, pr.pod, func(s *corev1.PodStatus) {
		qos := s.QOSClass // immutable once set by the apiserver
		*s = *st
		s.QOSClass = qos
	})
	if err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
		pr.r.problem(fmt.Errorf("pod %s/%s: updating status: %w", pr.pod.Namespace, pr.pod.Name, err))
	}
}

func (pr *podRun) markRunning() {
	now := metav1.Now()
	pr.status.Phase = corev1.PodRunning
	for _, t := range []corev1.PodConditionType{corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		setCondition(&pr.status, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	started := true
	for i := range pr.status.ContainerStatuses {
		cs := &pr.status.ContainerStatuses[i]
		cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}
		cs.Ready, cs.Started = true, &started
		cs.ContainerID = containerIDPrefix + string(pr.pod.UID) + "/" + cs.Name
	}
}

func (pr *podRun) finish(phase corev1.PodPhase) {
	now := metav1.Now()
	pr.status.Phase = phase
	for _, t := range []corev1.PodConditionType{corev1.ContainersReady, corev1.PodReady} {
		setCondition(&pr.status, corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: "PodCompleted", LastTransitionTime: now})
	}
	for i := range pr.status.ContainerStatuses {
		cs := &pr.status.ContainerStatuses[i]
		cs.Ready = false
		if cs.State.Terminated == nil {
			// Containers that never ran (after an init failure).
			cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 1, Reason: "Error", Message: "not started", StartedAt: now, FinishedAt: now}}
		}
	}
}

func (pr *podRun) terminate(statuses []corev1.ContainerStatus, name string, code int, message string, started, finished time.Time) {
	for i := range statuses {
		if statuses[i].Name != name {
			continue
		}
		reason := "Completed"
		if code != 0 {
			reason = "Error"
		}
		statuses[i].Ready = false
		statuses[i].ContainerID = containerIDPrefix + string(pr.pod.UID) + "/" + name
		statuses[i].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: int32(code), Reason: reason, Message: message,
			StartedAt: metav1.NewTime(started), FinishedAt: metav1.NewTime(finished),
			ContainerID: statuses[i].ContainerID,
		}}
	}
}

func (pr *podRun) record(c ContainerRecord) {
	pr.r.mu.Lock()
	pr.rec.Containers = append(pr.rec.Containers, c)
	pr.r.mu.Unlock()
}

// run runs the init containers, then the steps, and returns the pod's phase.
// An error means the pod could not be run faithfully.
func (pr *podRun) run(ctx context.Context) (corev1.PodPhase, error) {
	vols, err := prepareVolumes(ctx, pr.r.cfg.Kube, pr.pod, pr.dir, pr.r.cfg.WorkDir)
	if err != nil {
		return corev1.PodFailed, err
	}
	pr.vols = vols
	if err := os.MkdirAll(filepath.Join(pr.dir, "logs"), 0o755); err != nil {
		return corev1.PodFailed, err
	}
	if err := os.MkdirAll(filepath.Join(pr.dir, "termination"), 0o755); err != nil {
		return corev1.PodFailed, err
	}
	pr.push(ctx)

	for i := range pr.pod.Spec.InitContainers {
		c := &pr.pod.Spec.InitContainers[i]
		code, err := pr.runInit(ctx, c)
		if err != nil {
			return corev1.PodFailed, fmt.Errorf("init container %s: %w", c.Name, err)
		}
		if code != 0 {
			return corev1.PodFailed, nil
		}
	}
	pr.markRunning()
	pr.push(ctx)

	failed := false
	for i := range pr.pod.Spec.Containers {
		c := &pr.pod.Spec.Containers[i]
		code, err := pr.runStep(ctx, i, c)
		if err != nil {
			return corev1.PodFailed, fmt.Errorf("container %s: %w", c.Name, err)
		}
		if code != 0 {
			failed = true
		}
		pr.push(ctx)
	}
	if failed {
		return corev1.PodFailed, nil
	}
	return corev1.PodSucceeded, nil
}

// runInit runs one init container: Tekton's own (prepare, place-scripts,
// working-dir-initializer) are carried out by the runner, others by the
// executor rules.
func (pr *podRun) runInit(ctx context.Context, c *corev1.Container) (int, error) {
	started := time.Now()
	term := filepath.Join(pr.dir, "termination", c.Name)
	if err := os.WriteFile(term, nil, 0o666); err != nil {
		return 1, err
	}
	mounts, err := pr.vols.containerMounts(c, term)
	if err != nil {
		return 1, err
	}
	logFile := filepath.Join(pr.dir, "logs", c.Name+".log")
	rec := ContainerRecord{Name: c.Name, Image: c.Image, Init: true, Rule: "tekton-internal", LogFile: logFile}
	code := 0
	switch c.Name {
	case containerPrepare:
		err = prepareSteps(c, mounts)
	case containerPlaceScripts:
		err = placeScripts(c, mounts)
	case containerWorkingDir:
		err = makeWorkingDirs(c, mounts)
	default:
		var rule string
		code, rule, err = pr.execute(ctx, c, c.Command, c.Args, mounts, logFile)
		rec.Rule = rule
	}
	if err != nil {
		return 1, err
	}
	rec.ExitCode = code
	pr.record(rec)
	pr.terminate(pr.status.InitContainerStatuses, c.Name, code, "", started, time.Now())
	pr.push(ctx)
	return code, nil
}

// execute runs a plain (non-entrypoint) container through the rules.
func (pr *podRun) execute(ctx context.Context, c *corev1.Container, command, args []string, mounts Mounts, logFile string) (int, string, error) {
	rule, err := pr.r.claim(c.Image)
	if err != nil {
		return 1, "", err
	}
	env, err := pr.env(ctx, c)
	if err != nil {
		return 1, rule.Name, err
	}
	full := expandAll(append(append([]string(nil), command...), args...), env)
	if len(command) == 0 {
		return 1, rule.Name, fmt.Errorf("container has no command (the pod runner cannot look up image entrypoints)")
	}
	code, err := pr.exec(ctx, rule, c, full, env, mounts, logFile, nil)
	return code, rule.Name, err
}

// claim returns the rule that runs image. Like a kubelet, which fails a
// container whose image is not a valid reference (InvalidImageName) before
// pulling anything, it refuses an image that is no registry reference, e.g.
// a ko:// reference that no release resolved.
func (r *Runner) claim(image string) (Rule, error) {
	if _, err := name.ParseReference(image); err != nil || strings.Contains(image, "://") {
		return Rule{}, fmt.Errorf("image %q is not a registry reference (a kubelet fails it as InvalidImageName)", image)
	}
	rl, ok := r.rule(image)
	if !ok {
		return Rule{}, fmt.Errorf("no executor rule claims image %q", image)
	}
	return rl, nil
}

func (r *Runner) rule(image string) (Rule, bool) {
	for _, rl := range r.cfg.Rules {
		if rl.Match(image) {
			return rl, true
		}
	}
	return Rule{}, false
}

func (pr *podRun) env(ctx context.Context, c *corev1.Container) ([]string, error) {
	base := append([]string{"PATH=" + defaultPath, "HOME=/root"}, pr.r.cfg.BaseEnv...)
	base = append(base, "HOSTNAME="+pr.pod.Name)
	return resolveEnv(ctx, pr.r.cfg.Kube, pr.pod, c, base)
}

func expandAll(words, env []string) []string {
	e := newEnvList(env)
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = ExpandVars(w, e.lookup)
	}
	return out
}

// exec runs the command with the rule's executor, writing the output to
// logFile (and to extra writers). A non-nil error means the executor could
// not run the step faithfully.
func (pr *podRun) exec(ctx context.Context, rule Rule, c *corev1.Container, command, env []string, mounts Mounts, logFile string, extra []io.Writer) (int, error) {
	logf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 1, err
	}
	defer logf.Close()
	scratch := filepath.Join(pr.dir, "scratch", c.Name)
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return 1, err
	}
	out := io.Writer(logf)
	if len(extra) > 0 {
		out = io.MultiWriter(append([]io.Writer{logf}, extra...)...)
	}
	step := &Step{
		Pod: pr.pod, Node: pr.node, Container: c, Command: command, Env: env,
		WorkingDir: c.WorkingDir, Mounts: mounts,
		OS: pr.node.Labels[corev1.LabelOSStable], Arch: pr.node.Labels[corev1.LabelArchStable],
		Variant: pr.node.Labels["ciel.dev/arch-variant"],
		Stdout:  out, Stderr: out, ScratchDir: scratch,
	}
	if step.WorkingDir == "" {
		step.WorkingDir = "/"
	}
	err = rule.Executor.Execute(ctx, step)
	var ee *ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		return ee.Code, nil
	default:
		fmt.Fprintf(out, "ciel e2e pod runner: %s executor: %v\n", rule.Name, err)
		return 1, err
	}
}

// prepareSteps does what Tekton's "entrypoint init" does for the runner:
// create /tekton/steps with, for each step, a symlink by name and by index to
// /tekton/run/<index>/status. (Copying the entrypoint binary is moot: the
// runner plays the entrypoint.)
func prepareSteps(c *corev1.Container, mounts Mounts) error {
	cmd := append(append([]string(nil), c.Command...), c.Args...)
	if len(cmd) < 4 || cmd[1] != "init" {
		return fmt.Errorf("unexpected prepare command %q", cmd)
	}
	steps := cmd[4:]
	dir, err := mounts.HostPath(internalStepsDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	for i, s := range steps {
		target := "/tekton/run/" + strconv.Itoa(i) + "/status"
		for _, link := range []string{s, strconv.Itoa(i)} {
			if err := os.Symlink(target, filepath.Join(dir, link)); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
		}
	}
	return nil
}

func placeScripts(c *corev1.Container, mounts Mounts) error {
	scripts, err := ParsePlaceScripts(c.Command, c.Args)
	if err != nil {
		return err
	}
	for _, s := range scripts {
		host, err := mounts.HostPath(s.Path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(host, s.Content, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(host, 0o755); err != nil {
			return err
		}
	}
	return nil
}

func makeWorkingDirs(c *corev1.Container, mounts Mounts) error {
	cmd := append(append([]string(nil), c.Command...), c.Args...)
	if len(cmd) < 1 {
		return errors.New("empty working-dir-initializer command")
	}
	for _, d := range cmd[1:] {
		host, err := mounts.HostPath(d)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(host, 0o777); err != nil {
			return err
		}
	}
	return nil
}

// runStep runs step container i the way Tekton's entrypoint would inside a
// kubelet-run container, and records its termination state. It returns the
// container's exit code.
func (pr *podRun) runStep(ctx context.Context, i int, c *corev1.Container) (int, error) {
	inv, err := ParseInvocation(c.Command, c.Args)
	if errors.Is(err, ErrNotEntrypoint) {
		return 1, fmt.Errorf("not a Tekton step (sidecars and plain containers are not supported by the pod runner)")
	}
	if err != nil {
		return 1, err
	}
	if len(inv.Unsupported) > 0 {
		return 1, fmt.Errorf("entrypoint features the pod runner cannot honour: %s", strings.Join(inv.Unsupported, ", "))
	}
	term := filepath.Join(pr.dir, "termination", c.Name)
	if err := os.WriteFile(term, nil, 0o666); err != nil {
		return 1, err
	}
	mounts, err := pr.vols.containerMounts(c, term)
	if err != nil {
		return 1, err
	}
	hostTerm, err := mounts.HostPath(inv.TerminationPath)
	if err != nil {
		return 1, err
	}
	logFile := filepath.Join(pr.dir, "logs", c.Name+".log")
	rec := ContainerRecord{Name: c.Name, Image: c.Image, LogFile: logFile}
	started := time.Now()
	var output []result.RunResult
	startedAt := func() result.RunResult {
		return result.RunResult{Key: "StartedAt", Value: time.Now().Format(timeFormat), ResultType: result.InternalTektonResultType}
	}
	code := 0
	writeTerm := func() error {
		var err error
		if inv.CompressTerminationMessage {
			err = termination.WriteCompressedMessage(hostTerm, output)
		} else {
			err = termination.WriteMessage(hostTerm, output)
		}
		var tooLong termination.MessageLengthError
		if errors.As(err, &tooLong) {
			code = 1
			return nil
		}
		return err
	}
	finish := func() (int, error) {
		if err := writeTerm(); err != nil {
			return 1, err
		}
		msg, err := os.ReadFile(hostTerm)
		if err != nil {
			return 1, err
		}
		rec.ExitCode, rec.TerminationMessage = code, string(msg)
		pr.record(rec)
		pr.terminate(pr.status.ContainerStatuses, c.Name, code, string(msg), started, time.Now())
		return code, nil
	}
	postFile := func(failed bool) error {
		if inv.PostFile == "" {
			return nil
		}
		p := inv.PostFile
		if failed {
			p += ".err"
		}
		host, err := mounts.HostPath(p)
		if err != nil {
			return err
		}
		return os.WriteFile(host, nil, 0o666)
	}

	// Wait for the previous step (or Tekton's ready annotation).
	for _, wf := range inv.WaitFiles {
		skip, err := pr.wait(ctx, mounts, wf, inv.WaitFileContent)
		if err != nil {
			return 1, err
		}
		if skip {
			if err := postFile(true); err != nil {
				return 1, err
			}
			output = append(output, startedAt(), result.RunResult{Key: "Reason", Value: reasonSkipped, ResultType: result.InternalTektonResultType})
			code = 1
			return finish()
		}
	}
	metaDir, err := mounts.HostPath(inv.StepMetadataDir)
	if err != nil {
		return 1, err
	}
	for _, d := range []string{"results", "artifacts"} {
		if err := os.MkdirAll(filepath.Join(metaDir, d), 0o777); err != nil {
			return 1, err
		}
	}
	output = append(output, startedAt())

	// Step when expressions: a false one skips the step, successfully.
	if inv.WhenExpressions != "" {
		allow, err := allowExec(inv.WhenExpressions)
		if err != nil {
			_ = postFile(true)
			return 1, err
		}
		if !allow {
			if err := postFile(false); err != nil {
				return 1, err
			}
			if err := os.WriteFile(filepath.Join(metaDir, "exitCode"), []byte("0"), 0o666); err != nil {
				return 1, err
			}
			output = append(output, result.RunResult{Key: "Reason", Value: reasonSkipped, ResultType: result.InternalTektonResultType})
			return finish()
		}
	}

	rule, err := pr.r.claim(c.Image)
	if err != nil {
		_ = postFile(true)
		return 1, err
	}
	rec.Rule = rule.Name
	env, err := pr.env(ctx, c)
	if err != nil {
		return 1, err
	}
	command := expandAll(inv.Command, env)
	if command, env, err = pr.substituteStepResults(mounts, command, env); err != nil {
		return 1, err
	}
	var extra []io.Writer
	for _, p := range []string{inv.StdoutPath, inv.StderrPath} {
		if p == "" {
			continue
		}
		host, err := mounts.HostPath(p)
		if err != nil {
			return 1, err
		}
		if err := os.MkdirAll(filepath.Dir(host), 0o777); err != nil {
			return 1, err
		}
		f, err := os.Create(host)
		if err != nil {
			return 1, err
		}
		defer f.Close()
		extra = append(extra, f)
	}
	stepCtx := ctx
	if inv.Timeout > 0 {
		var cancel context.CancelFunc
		stepCtx, cancel = context.WithTimeout(ctx, inv.Timeout)
		defer cancel()
	}
	execStart := time.Now()
	exitCode, execErr := pr.exec(stepCtx, rule, c, command, env, mounts, logFile, extra)
	rec.Duration = time.Since(execStart)
	switch {
	case stepCtx.Err() != nil && ctx.Err() == nil:
		// The step's own timeout.
		if err := postFile(true); err != nil {
			return 1, err
		}
		output = append(output, result.RunResult{Key: "Reason", Value: reasonTimeoutExceeded, ResultType: result.InternalTektonResultType})
		code = 1
	case ctx.Err() != nil:
		return 1, ctx.Err()
	case execErr != nil:
		_ = postFile(true)
		return 1, execErr
	case exitCode == 0:
		if err := postFile(false); err != nil {
			return 1, err
		}
		if err := os.WriteFile(filepath.Join(metaDir, "exitCode"), []byte("0"), 0o666); err != nil {
			return 1, err
		}
	case inv.OnError == "continue":
		output = append(output, result.RunResult{Key: "ExitCode", Value: strconv.Itoa(exitCode), ResultType: result.InternalTektonResultType})
		if err := postFile(false); err != nil {
			return 1, err
		}
		if err := os.WriteFile(filepath.Join(metaDir, "exitCode"), []byte(strconv.Itoa(exitCode)), 0o666); err != nil {
			return 1, err
		}
	default:
		if err := postFile(true); err != nil {
			return 1, err
		}
		code = exitCode
	}

	// Results, as the entrypoint reads them after the step.
	var results []result.RunResult
	if len(inv.Results) > 0 {
		dir, err := mounts.HostPath(internalResultsDir)
		if err != nil {
			return 1, err
		}
		rs, err := readResults(dir, inv.Results, result.TaskRunResultType)
		if err != nil {
			return 1, err
		}
		results = append(results, rs...)
	}
	if len(inv.StepResults) > 0 {
		rs, err := readResults(filepath.Join(metaDir, "results"), inv.StepResults, result.StepResultType)
		if err != nil {
			return 1, err
		}
		results = append(results, rs...)
	}
	output = append(results, output...)
	return finish()
}

func readResults(dir string, names []string, typ result.ResultType) ([]result.RunResult, error) {
	var out []result.RunResult
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, result.RunResult{Key: n, Value: string(b), ResultType: typ})
	}
	return out, nil
}

// wait waits for a step's wait file. It returns skip=true when a previous
// step failed (the file's ".err" sibling exists). The downward API file of
// Tekton's ready annotation is refreshed from the pod as a kubelet would.
func (pr *podRun) wait(ctx context.Context, mounts Mounts, file string, wantContent bool) (bool, error) {
	host, err := mounts.HostPath(file)
	if err != nil {
		return false, err
	}
	deadline := time.Now().Add(pr.r.cfg.ReadyTimeout)
	for {
		if st, err := os.Stat(host); err == nil && (!wantContent || st.Size() > 0) {
			return false, nil
		}
		if _, err := os.Stat(host + ".err"); err == nil {
			return true, nil
		}
		if len(pr.vols.downward) == 0 || time.Now().After(deadline) {
			return false, fmt.Errorf("waiting for %s: never written (Tekton's %s annotation or the previous step's post file)", file, readyAnnotation)
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		latest, err := pr.r.cfg.Kube.CoreV1().Pods(pr.pod.Namespace).Get(ctx, pr.pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("waiting for %s: %w", file, err)
		}
		if err := pr.vols.refreshDownward(latest); err != nil {
			return false, err
		}
	}
}

var stepResultRef = regexp.MustCompile(`\$\(steps\.([^.)]+)\.results\.([^.)\[]+)\)`)

// substituteStepResults replaces $(steps.NAME.results.RESULT) in the command
// and env with the named step's string result, as Tekton's entrypoint does
// at run time.
func (pr *podRun) substituteStepResults(mounts Mounts, command, env []string) ([]string, []string, error) {
	var firstErr error
	fail := func(ref string, err error) {
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("substituting %s: %w", ref, err)
		}
	}
	replace := func(s string) string {
		return stepResultRef.ReplaceAllStringFunc(s, func(ref string) string {
			m := stepResultRef.FindStringSubmatch(ref)
			v, err := pr.stepResult(mounts, m[1], m[2])
			if err == nil && v.Type != v1.ParamTypeString {
				err = fmt.Errorf("an array result is substituted whole, as the only content of an argument: %s[*]", ref)
			}
			fail(ref, err)
			return v.StringVal
		})
	}
	var outCmd []string
	for _, c := range command {
		// "$(steps.S.results.R[*])" as a whole argument expands to the
		// array's elements, as Tekton's entrypoint does.
		if m := stepResultArrayRef.FindStringSubmatch(c); m != nil {
			v, err := pr.stepResult(mounts, m[1], m[2])
			if err == nil && v.Type != v1.ParamTypeArray {
				err = fmt.Errorf("%s is a %s, not an array", c, v.Type)
			}
			fail(c, err)
			outCmd = append(outCmd, v.ArrayVal...)
			continue
		}
		outCmd = append(outCmd, replace(c))
	}
	outEnv := make([]string, len(env))
	for i, e := range env {
		outEnv[i] = replace(e)
	}
	return outCmd, outEnv, firstErr
}

var stepResultArrayRef = regexp.MustCompile(`^\$\(steps\.([^.)]+)\.results\.([^.)\[]+)\[\*\]\)$`)

func (pr *podRun) stepResult(mounts Mounts, step, name string) (v1.ResultValue, error) {
	var v v1.ResultValue
	link, err := mounts.HostPath(internalStepsDir + "/" + stepContainerNamePrefix + step)
	if err != nil {
		return v, err
	}
	target, err := os.Readlink(link)
	if err != nil {
		return v, err
	}
	host, err := mounts.HostPath(target + "/results/" + name)
	if err != nil {
		return v, err
	}
	b, err := os.ReadFile(host)
	if err != nil {
		return v, err
	}
	if err := v.UnmarshalJSON(b); err != nil {
		return v, err
	}
	return v, nil
}

// allowExec evaluates a step's when expressions (input/operator/values, as
// the controller substituted them). CEL when expressions and inputs that
// still hold a reference (step results resolved at run time) are refused:
// the pod runner does not evaluate them.
func allowExec(raw string) (bool, error) {
	var when v1.StepWhenExpressions
	if err := json.Unmarshal([]byte(raw), &when); err != nil {
		return false, fmt.Errorf("reading the step's when expressions: %w", err)
	}
	for _, we := range when {
		if we.CEL != "" || strings.Contains(we.Input, "$(") {
			return false, fmt.Errorf("step when expression %+v: CEL and run-time references are not supported by the pod runner", we)
		}
	}
	return when.AllowsExecution(nil), nil
}
