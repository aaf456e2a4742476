package reporter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"
	"knative.dev/pkg/apis"

	"github.com/ciel-ci/ciel/internal/gitlabtest"
	"github.com/ciel-ci/ciel/internal/waitfor"
	"github.com/ciel-ci/ciel/reporter/gitlabstatus"
	"github.com/ciel-ci/ciel/reporter/status"
)

const (
	shaA = "0123456789abcdef0123456789abcdef01234567"
	shaB = "89abcdef0123456789abcdef0123456789abcdef"
	ns   = "ci"
)

var t0 = time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitfor.True(t, 10*time.Second, what, cond)
}

// cluster is a fake Tekton API whose watches can be waited for.
type fakeCluster struct {
	client   *fake.Clientset
	mu       sync.Mutex
	watching map[string]int
}

func newFakeCluster(objs ...runtime.Object) *fakeCluster {
	c := &fakeCluster{client: fake.NewSimpleClientset(objs...), watching: map[string]int{}}
	// The default watch reactor, counting the watches once they exist.
	c.client.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		var opts metav1.ListOptions
		if wa, ok := a.(k8stesting.WatchActionImpl); ok {
			opts = wa.ListOptions
		}
		w, err := c.client.Tracker().Watch(a.GetResource(), a.GetNamespace(), opts)
		if err != nil {
			return true, nil, err
		}
		c.mu.Lock()
		c.watching[a.GetResource().Resource]++
		c.mu.Unlock()
		return true, w, nil
	})
	return c
}

func (c *fakeCluster) watches(resource string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watching[resource]
}

type env struct {
	t   *testing.T
	gl  *gitlabtest.Server
	fc  *fakeCluster
	r   *Reporter
	reg *prometheus.Registry

	stopCluster context.CancelFunc
	clusterDone chan error
	stop        func()
}

var dashboard, _ = status.ParseURLTemplate("https://tekton.example.com/#/namespaces/{{.Namespace}}/pipelineruns/{{.Name}}?cluster={{.Cluster}}")

func newEnv(t *testing.T, gl *gitlabtest.Server, fc *fakeCluster, opts ...Option) *env {
	t.Helper()
	if gl == nil {
		gl = gitlabtest.NewServer(t, "tok")
	}
	if fc == nil {
		fc = newFakeCluster()
	}
	poster, err := gitlabstatus.New(gl.URL, gitlabstatus.WithToken("tok"), gitlabstatus.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	r, err := New(poster, append([]Option{
		WithRegisterer(reg), WithTargetURL(dashboard), WithRetryBackoff(5*time.Millisecond, 50*time.Millisecond),
		WithDetailWait(100*time.Millisecond, 3), WithClock(func() time.Time { return t0.Add(time.Hour) }),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, gl: gl, fc: fc, r: r, reg: reg}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- r.Run(ctx) }()
	e.startCluster("test")
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		e.stopCluster()
		<-e.clusterDone
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("Run() = %v", err)
		}
	}
	t.Cleanup(e.stop)
	return e
}

func (e *env) startCluster(name string) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	e.stopCluster, e.clusterDone = cancel, make(chan error, 1)
	prWatches, trWatches := e.fc.watches("pipelineruns"), e.fc.watches("taskruns")
	go func() { e.clusterDone <- e.r.RunClusterClient(ctx, name, e.fc.client, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-e.clusterDone:
		e.t.Fatalf("RunClusterClient() = %v", err)
	case <-time.After(10 * time.Second):
		e.t.Fatal("caches did not sync")
	}
	// Objects created before the watches start would be missed by a fake
	// clientset, which has no resource versions to resume from.
	eventually(e.t, "watches started", func() bool {
		return e.fc.watches("pipelineruns") > prWatches && e.fc.watches("taskruns") > trWatches
	})
}

// idle reports whether the reporter has nothing left to do.
func (e *env) idle() bool {
	e.r.mu.Lock()
	defer e.r.mu.Unlock()
	for _, en := range e.r.entries {
		if e.r.needsWork(en) {
			return false
		}
	}
	return e.r.queue.Len() == 0
}

// settle waits until the reporter saw the latest version of every run and
// has nothing left to do.
func (e *env) settle() {
	e.t.Helper()
	eventually(e.t, "reporter idle", func() bool {
		list, err := e.fc.client.TektonV1().PipelineRuns(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false
		}
		e.r.mu.Lock()
		seen := map[types.UID]string{}
		for _, en := range e.r.entries {
			seen[en.uid] = en.pr.Annotations["test/step"]
		}
		e.r.mu.Unlock()
		for _, pr := range list.Items {
			if s, ok := seen[pr.UID]; ok && s != pr.Annotations["test/step"] {
				return false
			}
		}
		return e.idle()
	})
}

func newPR(name string, created time.Time, sha string) *v1.PipelineRun {
	return &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns, UID: types.UID("uid-" + name),
			CreationTimestamp: metav1.NewTime(created),
			Labels: map[string]string{
				status.LabelProjectID: "42", status.LabelSHA: sha, status.LabelPipeline: "build",
			},
			Annotations: map[string]string{
				status.AnnotationRef: "refs/heads/main", status.AnnotationProject: "group/app",
				status.AnnotationProjectURL: "https://gitlab.example.com/group/app", "test/step": "0",
			},
		},
		Spec: v1.PipelineRunSpec{PipelineRef: &v1.PipelineRef{Name: "build"}},
	}
}

// createRunning creates the running PipelineRun name, for commit sha,
// created at t0.
func (e *env) createRunning(name, sha string) {
	e.t.Helper()
	pr := newPR(name, t0, sha)
	running(pr)
	e.create(pr)
}

// wantCalls compares the calls GitLab received with want.
func (e *env) wantCalls(want []gitlabtest.Call) {
	e.t.Helper()
	if diff := cmp.Diff(want, e.gl.Calls()); diff != "" {
		e.t.Errorf("GitLab calls (-want +got):\n%s", diff)
	}
}

func (e *env) create(pr *v1.PipelineRun) {
	e.t.Helper()
	if _, err := e.fc.client.TektonV1().PipelineRuns(pr.Namespace).Create(context.Background(), pr, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// update reads the run, changes it and writes it back, as the Tekton
// controller does (so the reporter's annotation is kept).
func (e *env) update(name string, change func(pr *v1.PipelineRun)) {
	e.t.Helper()
	c := e.fc.client.TektonV1().PipelineRuns(ns)
	pr, err := c.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	change(pr)
	var step int
	fmt.Sscan(pr.Annotations["test/step"], &step)
	pr.Annotations["test/step"] = fmt.Sprint(step + 1)
	if _, err := c.Update(context.Background(), pr, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) createTaskRun(name, task string, cond corev1.ConditionStatus, reason, message string, done time.Time) {
	e.t.Helper()
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID("uid-" + name), Labels: map[string]string{
			status.LabelProjectID: "42", status.LabelSHA: shaA, status.LabelPipeline: "build", "tekton.dev/pipelineTask": task,
		}},
	}
	tr.Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: cond, Reason: reason, Message: message})
	tr.Status.CompletionTime = &metav1.Time{Time: done}
	if _, err := e.fc.client.TektonV1().TaskRuns(ns).Create(context.Background(), tr, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) annotation(name string) string {
	pr, err := e.fc.client.TektonV1().PipelineRuns(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return pr.Annotations[status.AnnotationReported]
}

// waitForgotten waits until the reporter tracks no status.
func (e *env) waitForgotten() {
	e.t.Helper()
	eventually(e.t, "entries forgotten", func() bool { e.r.mu.Lock(); defer e.r.mu.Unlock(); return len(e.r.entries) == 0 })
}

func (e *env) waitAccepted(n int) {
	e.t.Helper()
	eventually(e.t, fmt.Sprintf("%d accepted posts", n), func() bool { return len(e.gl.Accepted()) >= n })
}

func cond(s corev1.ConditionStatus, reason, message string) func(pr *v1.PipelineRun) {
	return func(pr *v1.PipelineRun) {
		pr.Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: s, Reason: reason, Message: message})
		if pr.Status.StartTime == nil {
			pr.Status.StartTime = &metav1.Time{Time: t0}
		}
		if s != corev1.ConditionUnknown {
			pr.Status.CompletionTime = &metav1.Time{Time: t0.Add(3*time.Minute + 12*time.Second)}
		}
	}
}

func children(tasks ...string) func(pr *v1.PipelineRun) {
	return func(pr *v1.PipelineRun) {
		pr.Status.ChildReferences = nil
		for _, task := range tasks {
			pr.Status.ChildReferences = append(pr.Status.ChildReferences, v1.ChildStatusReference{
				TypeMeta: runtime.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "TaskRun"},
				Name:     pr.Name + "-" + task, PipelineTaskName: task,
			})
		}
	}
}

func both(fs ...func(*v1.PipelineRun)) func(*v1.PipelineRun) {
	return func(pr *v1.PipelineRun) {
		for _, f := range fs {
			f(pr)
		}
	}
}

func call(sha, state, desc, run string) gitlabtest.Call {
	return gitlabtest.Call{ProjectID: "42", SHA: sha, State: state, Ref: "main", Name: "ciel/build", Description: desc,
		TargetURL: "https://tekton.example.com/#/namespaces/ci/pipelineruns/" + run + "?cluster=test", Code: 201}
}

var running = cond(corev1.ConditionUnknown, "Running", "Tasks Completed: 0 (Failed: 0, Cancelled 0), Incomplete: 2, Skipped: 0")

func TestFullLifecycle(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.create(newPR("build-1", t0, shaA))
	e.waitAccepted(1)
	e.update("build-1", running)
	e.waitAccepted(2)
	e.createTaskRun("build-1-fetch", "fetch", corev1.ConditionTrue, "Succeeded", "All Steps have completed executing", t0.Add(time.Minute))
	e.createTaskRun("build-1-build", "build", corev1.ConditionTrue, "Succeeded", "All Steps have completed executing", t0.Add(3*time.Minute))
	e.update("build-1", both(children("fetch", "build"), cond(corev1.ConditionTrue, "Succeeded", "Tasks Completed: 2 (Failed: 0, Cancelled 0), Skipped: 0")))
	e.waitAccepted(3)
	e.settle()

	want := []gitlabtest.Call{
		call(shaA, "pending", "queued: PipelineRun ci/build-1", "build-1"),
		call(shaA, "running", "running: PipelineRun ci/build-1", "build-1"),
		call(shaA, "success", "succeeded in 3m12s", "build-1"),
	}
	e.wantCalls(want)
	if got := e.annotation("build-1"); got != "success" {
		t.Errorf("reported-state annotation = %q, want success", got)
	}
	for _, s := range []string{"pending", "running", "success"} {
		if got := testutil.ToFloat64(e.r.m.posts.WithLabelValues(s, "posted")); got != 1 {
			t.Errorf("posts{%s,posted} = %v, want 1", s, got)
		}
	}
}

func TestFailureNamesTheTaskAndReason(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.createRunning("build-1", shaA)
	e.waitAccepted(1)
	e.createTaskRun("build-1-fetch", "fetch", corev1.ConditionTrue, "Succeeded", "All Steps have completed executing", t0.Add(time.Minute))
	e.createTaskRun("build-1-build", "build", corev1.ConditionFalse, "StepFailed", `"step-build" exited with code 1`, t0.Add(2*time.Minute))
	e.update("build-1", both(children("fetch", "build"), cond(corev1.ConditionFalse, "Failed", "Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 0")))
	e.waitAccepted(2)
	e.settle()
	want := []gitlabtest.Call{
		call(shaA, "running", "running: PipelineRun ci/build-1", "build-1"),
		call(shaA, "failed", `task build failed (StepFailed): "step-build" exited with code 1`, "build-1"),
	}
	e.wantCalls(want)
}

// The PipelineRun's failure can reach the reporter before the failed
// TaskRun does (two watches, no ordering between them): the reporter waits
// a little for it rather than posting a vague description.
func TestFailureWaitsForTheTaskRun(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.createRunning("build-1", shaA)
	e.waitAccepted(1)
	e.update("build-1", both(children("build"), cond(corev1.ConditionFalse, "Failed", "Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 0")))
	e.createTaskRun("build-1-build", "build", corev1.ConditionFalse, "TaskRunImagePullFailed",
		`the step "build" in TaskRun "build-1-build" failed to pull the image "". The pod errored with the message: "Back-off pulling image".`, t0.Add(time.Minute))
	e.waitAccepted(2)
	got := e.gl.Accepted()[1]
	if want := `task build failed (TaskRunImagePullFailed): the step "build" in TaskRun "build-1-build" failed to pull the image "". The pod errored with the message: "Back-off pulling image".`; got.Description != want {
		t.Errorf("description = %q, want %q", got.Description, want)
	}

	// Without the TaskRun at all, the run's own condition is posted after
	// the bounded wait.
	pr2 := newPR("build-2", t0, shaB)
	both(children("gone"), cond(corev1.ConditionFalse, "Failed", "Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 0"))(pr2)
	e.create(pr2)
	e.waitAccepted(3)
	if got, want := e.gl.Accepted()[2].Description, "failed: Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 0"; got != want {
		t.Errorf("description = %q, want %q", got, want)
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.createRunning("build-1", shaA)
	e.waitAccepted(1)
	e.update("build-1", func(pr *v1.PipelineRun) {
		pr.Spec.Status = v1.PipelineRunSpecStatusCancelled
		cond(corev1.ConditionFalse, "Cancelled", `PipelineRun "build-1" was cancelled`)(pr)
	})
	e.waitAccepted(2)
	e.settle()
	want := []gitlabtest.Call{
		call(shaA, "running", "running: PipelineRun ci/build-1", "build-1"),
		call(shaA, "canceled", `canceled: PipelineRun "build-1" was cancelled`, "build-1"),
	}
	e.wantCalls(want)
}

func TestDeletedWhileRunningIsCanceled(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.createRunning("build-1", shaA)
	e.waitAccepted(1)
	if err := e.fc.client.TektonV1().PipelineRuns(ns).Delete(context.Background(), "build-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitAccepted(2)
	e.waitForgotten()
	if got, want := e.gl.Accepted()[1], call(shaA, "canceled", "canceled: PipelineRun ci/build-1 was deleted before it finished", "build-1"); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}

	// Deleting a finished run posts nothing.
	done := newPR("build-2", t0, shaB)
	cond(corev1.ConditionTrue, "Succeeded", "")(done)
	e.create(done)
	e.waitAccepted(3)
	e.settle()
	e.fc.client.TektonV1().PipelineRuns(ns).Delete(context.Background(), "build-2", metav1.DeleteOptions{})
	e.waitForgotten()
	if n := len(e.gl.Calls()); n != 3 {
		t.Errorf("%d calls, want 3", n)
	}
}

func TestDuplicateUpdatesPostOnce(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.createRunning("build-1", shaA)
	e.waitAccepted(1)
	for i := range 5 {
		// The controller rewrites the status on every reconcile; only the
		// message changes.
		e.update("build-1", cond(corev1.ConditionUnknown, "Running", fmt.Sprintf("Tasks Completed: %d (Failed: 0, Cancelled 0), Incomplete: %d, Skipped: 0", i, 5-i)))
	}
	e.settle()
	// A resync delivers every object again.
	e.r.mu.Lock()
	var cached *v1.PipelineRun
	var cl *cluster
	for _, en := range e.r.entries {
		cached, cl = en.pr, en.cl
	}
	e.r.mu.Unlock()
	e.r.observe(cl, cached, false)
	e.r.observe(cl, cached, false)
	e.update("build-1", cond(corev1.ConditionTrue, "Succeeded", ""))
	e.update("build-1", func(pr *v1.PipelineRun) { pr.Labels["extra"] = "label" })
	e.update("build-1", func(pr *v1.PipelineRun) { pr.Annotations["another"] = "annotation" })
	e.settle()
	want := []gitlabtest.Call{
		call(shaA, "running", "running: PipelineRun ci/build-1", "build-1"),
		call(shaA, "success", "succeeded in 3m12s", "build-1"),
	}
	e.wantCalls(want)
}

func TestGitLabErrorsAreRetried(t *testing.T) {
	gl := gitlabtest.NewServer(t, "tok")
	gl.FailNext(500, 502, 429, 500)
	e := newEnv(t, gl, nil)
	e.createRunning("build-1", shaA)
	e.waitAccepted(1)
	e.settle()
	var want []gitlabtest.Call // the same post, failed four times, then stored
	for _, code := range []int{500, 502, 429, 500, 201} {
		want = append(want, gitlabtest.Call{ProjectID: "42", SHA: shaA, State: "running", Ref: "main", Name: "ciel/build", Code: code})
	}
	if diff := cmp.Diff(want, gl.Calls(), cmpopts.IgnoreFields(gitlabtest.Call{}, "Description", "TargetURL")); diff != "" {
		t.Errorf("GitLab calls (-want +got):\n%s", diff)
	}
	for code, n := range map[string]float64{"500": 2, "502": 1, "429": 1} {
		if got := testutil.ToFloat64(e.r.m.gitlabErrors.WithLabelValues(code)); got != n {
			t.Errorf("gitlab_errors{%s} = %v, want %v", code, got, n)
		}
	}
	if got := testutil.ToFloat64(e.r.m.posts.WithLabelValues("running", "error")); got != 4 {
		t.Errorf("posts{running,error} = %v, want 4", got)
	}
	if got := e.annotation("build-1"); got != "running" {
		t.Errorf("annotation = %q, want running", got)
	}
}

// A newer state supersedes one waiting for a retry: what lands is the
// latest, never an older state after a newer one.
func TestRetrySupersededByNewerState(t *testing.T) {
	gl := gitlabtest.NewServer(t, "tok")
	gl.FailNext(503, 503, 503, 503, 503, 503)
	e := newEnv(t, gl, nil, WithRetryBackoff(20*time.Millisecond, 40*time.Millisecond))
	e.create(newPR("build-1", t0, shaA))
	eventually(t, "first failure", func() bool { return len(gl.Calls()) >= 1 })
	e.update("build-1", running)
	e.update("build-1", cond(corev1.ConditionTrue, "Succeeded", ""))
	e.waitAccepted(1)
	e.settle()
	acc := gl.Accepted()
	if acc[len(acc)-1].State != "success" {
		t.Fatalf("last accepted state = %q, want success (%+v)", acc[len(acc)-1].State, acc)
	}
	rank := map[string]int{"pending": 1, "running": 2, "success": 3}
	for i := 1; i < len(acc); i++ {
		if rank[acc[i].State] <= rank[acc[i-1].State] {
			t.Errorf("state went backwards or repeated: %+v", acc)
		}
	}
	if n := len(gl.Statuses()); n != 1 {
		t.Errorf("%d statuses in GitLab, want 1", n)
	}
}

func TestRejectedIsNotRetried(t *testing.T) {
	gl := gitlabtest.NewServer(t, "tok")
	gl.FailNext(404)
	e := newEnv(t, gl, nil)
	e.createRunning("build-1", shaA)
	eventually(t, "first post", func() bool { return len(gl.Calls()) == 1 })
	e.settle()
	if n := len(gl.Calls()); n != 1 {
		t.Errorf("%d calls, want 1: a 404 is not retried", n)
	}
	if got := testutil.ToFloat64(e.r.m.posts.WithLabelValues("running", "rejected")); got != 1 {
		t.Errorf("posts{running,rejected} = %v, want 1", got)
	}
	// The next state is posted normally.
	e.update("build-1", cond(corev1.ConditionTrue, "Succeeded", ""))
	e.waitAccepted(1)
}

func TestRestartResyncsWithoutReposting(t *testing.T) {
	gl := gitlabtest.NewServer(t, "tok")
	fc := newFakeCluster()
	e := newEnv(t, gl, fc)
	done := newPR("build-done", t0, shaA)
	e.create(done)
	e.waitAccepted(1)
	e.update("build-done", running)
	e.waitAccepted(2)
	e.update("build-done", cond(corev1.ConditionTrue, "Succeeded", ""))
	e.waitAccepted(3)
	e.createRunning("build-mid", shaB)
	e.waitAccepted(4)
	e.settle()
	e.stop()
	before := len(gl.Calls())

	// While the reporter is down: one run finishes, another starts and
	// finishes.
	c := fc.client.TektonV1().PipelineRuns(ns)
	got, _ := c.Get(context.Background(), "build-mid", metav1.GetOptions{})
	cond(corev1.ConditionFalse, "PipelineRunTimeout", `PipelineRun "build-mid" failed to finish within "1h0m0s"`)(got)
	c.Update(context.Background(), got, metav1.UpdateOptions{})
	late := newPR("build-late", t0.Add(time.Minute), "fedcba9876543210fedcba9876543210fedcba98")
	cond(corev1.ConditionTrue, "Succeeded", "")(late)
	c.Create(context.Background(), late, metav1.CreateOptions{})

	e2 := newEnv(t, gl, fc)
	e2.waitAccepted(6)
	e2.settle()
	calls := gl.Calls()[before:]
	want := []gitlabtest.Call{
		call(shaB, "failed", `failed (PipelineRunTimeout): PipelineRun "build-mid" failed to finish within "1h0m0s"`, "build-mid"),
		call("fedcba9876543210fedcba9876543210fedcba98", "success", "succeeded in 3m12s", "build-late"),
	}
	sortCalls := cmpopts.SortSlices(func(a, b gitlabtest.Call) bool { return a.SHA < b.SHA })
	if diff := cmp.Diff(want, calls, sortCalls); diff != "" {
		t.Errorf("after restart (-want +got):\n%s", diff)
	}
	for name, state := range map[string]string{"build-done": "success", "build-mid": "failed", "build-late": "success"} {
		if got := e2.annotation(name); got != state {
			t.Errorf("%s: annotation %q, want %q", name, got, state)
		}
	}
}

func TestNewerRunSupersedesOlder(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.createRunning("build-old", shaA)
	e.waitAccepted(1)
	// A re-run of the same pipeline for the same commit and ref.
	e.create(newPR("build-new", t0.Add(time.Minute), shaA))
	e.update("build-new", running)
	e.update("build-old", cond(corev1.ConditionFalse, "Failed", "Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 0"))
	e.update("build-new", cond(corev1.ConditionTrue, "Succeeded", ""))
	e.waitAccepted(2)
	e.settle()
	// GitLab still shows the old run's running status when the new run
	// posts pending and running: it answers "Cannot transition status",
	// which means the status is already there.
	acc := e.gl.Accepted()
	want := []gitlabtest.Call{
		call(shaA, "running", "running: PipelineRun ci/build-old", "build-old"),
		call(shaA, "success", "succeeded in 3m12s", "build-new"),
	}
	if diff := cmp.Diff(want, acc); diff != "" {
		t.Errorf("accepted posts (-want +got):\n%s", diff)
	}
	if got := testutil.ToFloat64(e.r.m.ignored.WithLabelValues("superseded")); got < 1 {
		t.Errorf("ignored{superseded} = %v, want >= 1", got)
	}
	if got := e.annotation("build-old"); got != "running" {
		t.Errorf("old run annotation = %q, want running", got)
	}
}

func TestIgnored(t *testing.T) {
	e := newEnv(t, nil, nil, WithMaxTracked(2))
	foreign := newPR("not-ours", t0, shaA)
	foreign.Labels = map[string]string{"app": "other"}
	e.create(foreign)
	bad := newPR("bad-sha", t0, "main")
	e.create(bad)
	old := newPR("old", t0.Add(-72*time.Hour), shaA)
	cond(corev1.ConditionTrue, "Succeeded", "")(old)
	old.Status.CompletionTime = &metav1.Time{Time: t0.Add(-71 * time.Hour)}
	e.create(old)
	for i, sha := range []string{shaA, shaB, "1111111111111111111111111111111111111111"} {
		pr := newPR(fmt.Sprintf("run-%d", i), t0, sha)
		running(pr)
		e.create(pr)
	}
	e.waitAccepted(2)
	e.settle()
	eventually(t, "counters", func() bool {
		return testutil.ToFloat64(e.r.m.ignored.WithLabelValues("queue_full")) >= 1
	})
	if n := len(e.gl.Calls()); n != 2 {
		t.Errorf("%d calls, want 2 (two runs tracked, one over the bound): %+v", n, e.gl.Calls())
	}
	if got := testutil.ToFloat64(e.r.m.ignored.WithLabelValues("labels")); got < 1 {
		t.Errorf("ignored{labels} = %v", got)
	}
	if got := testutil.ToFloat64(e.r.m.ignored.WithLabelValues("too_old")); got != 1 {
		t.Errorf("ignored{too_old} = %v, want 1", got)
	}
}

func TestDrainOnShutdown(t *testing.T) {
	gl := gitlabtest.NewServer(t, "tok")
	gl.FailNext(500)
	e := newEnv(t, gl, nil, WithRetryBackoff(time.Hour, time.Hour))
	e.createRunning("build-1", shaA)
	eventually(t, "first attempt", func() bool { return len(gl.Calls()) == 1 })
	e.stop() // the retry would wait an hour: the drain tries now
	if diff := cmp.Diff([]int{500, 201}, codes(gl.Calls())); diff != "" {
		t.Errorf("codes (-want +got):\n%s", diff)
	}
}

func TestDrainIsBounded(t *testing.T) {
	gl := gitlabtest.NewServer(t, "tok")
	e := newEnv(t, gl, nil, WithDrainTimeout(50*time.Millisecond))
	gl.StallNext(5 * time.Second)
	e.createRunning("build-1", shaA)
	eventually(t, "post in flight", func() bool {
		e.r.mu.Lock()
		defer e.r.mu.Unlock()
		return len(e.r.entries) == 1 && e.r.queue.Len() == 0
	})
	start := time.Now()
	e.stop()
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("shutdown took %s with a 50ms drain timeout", d)
	}
}

func codes(calls []gitlabtest.Call) []int {
	var out []int
	for _, c := range calls {
		out = append(out, c.Code)
	}
	return out
}

func TestClusterStopAndRestart(t *testing.T) {
	gl := gitlabtest.NewServer(t, "tok")
	fc := newFakeCluster()
	e := newEnv(t, gl, fc)
	e.createRunning("build-1", shaA)
	e.waitAccepted(1)
	e.settle()

	// A second cluster next to the first.
	other := newFakeCluster()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	synced := make(chan struct{})
	go e.r.RunClusterClient(ctx, "other", other.client, func() { close(synced) })
	<-synced
	eventually(t, "other watches", func() bool { return other.watches("pipelineruns") > 0 })
	opr := newPR("other-1", t0, shaB)
	running(opr)
	other.client.TektonV1().PipelineRuns(ns).Create(context.Background(), opr, metav1.CreateOptions{})
	e.waitAccepted(2)
	if got := gl.Accepted()[1].TargetURL; !strings.HasSuffix(got, "?cluster=other") {
		t.Errorf("target URL %q does not name the other cluster", got)
	}

	// Stop the first cluster (its kubeconfig changed) and start it again.
	e.stopCluster()
	<-e.clusterDone
	e.update("build-1", cond(corev1.ConditionTrue, "Succeeded", ""))
	e.r.sweep()
	e.startCluster("test")
	e.waitAccepted(3)
	e.settle()
	states := []string{}
	for _, c := range gl.Calls() {
		states = append(states, c.SHA[:4]+":"+c.State)
	}
	if diff := cmp.Diff([]string{"0123:running", "89ab:running", "0123:success"}, states); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

var errForbidden = apierrors.NewForbidden(schema.GroupResource{Group: "tekton.dev", Resource: "pipelineruns"}, "build-1",
	errors.New("cannot patch resource"))

func TestRecordForbidden(t *testing.T) {
	fc := newFakeCluster()
	fc.client.PrependReactor("patch", "pipelineruns", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errForbidden
	})
	e := newEnv(t, nil, fc)
	e.createRunning("build-1", shaA)
	e.waitAccepted(1)
	e.settle()
	if got := testutil.ToFloat64(e.r.m.recordErrors.WithLabelValues("test")); got != 1 {
		t.Errorf("record errors = %v, want 1 (not retried)", got)
	}
	e.update("build-1", cond(corev1.ConditionTrue, "Succeeded", ""))
	e.waitAccepted(2)
	e.settle()
	if n := len(e.gl.Calls()); n != 2 {
		t.Errorf("%d calls, want 2", n)
	}
}

func TestOptionsRefused(t *testing.T) {
	p := &gitlabstatus.Client{}
	tests := []struct {
		name string
		opt  Option
	}{
		{"nil logger", WithLogger(nil)},
		{"nil registerer", WithRegisterer(nil)},
		{"nil target URL", WithTargetURL(nil)},
		{"negative resync", WithResync(-1)},
		{"no workers", WithWorkers(0)},
		{"zero backoff", WithRetryBackoff(0, 1)},
		{"backoff max below min", WithRetryBackoff(2, 1)},
		{"no tracked statuses", WithMaxTracked(0)},
		{"negative detail wait", WithDetailWait(-1, 1)},
		{"negative drain timeout", WithDrainTimeout(-1)},
		{"negative backfill window", WithBackfillWindow(-1)},
		{"nil clock", WithClock(nil)},
		{"name prefix too long", WithNamePrefix(strings.Repeat("x", 101))},
		{"namespace not a DNS label", WithNamespaces("Not_A_Namespace")},
		{"empty namespace", WithNamespaces("")},
		{"project path instead of ID", WithProjects("group/app")},
		{"project ID zero", WithProjects("0")},
		{"negative project ID", WithProjects("-1")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(p, tc.opt); err == nil {
				t.Error("invalid option accepted")
			}
		})
	}
}

func TestNewAndRunClusterClientRefuseNil(t *testing.T) {
	p := &gitlabstatus.Client{}
	if _, err := New(nil); err == nil {
		t.Error("nil poster accepted")
	}
	r, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	if r.Ready() == nil {
		t.Error("ready before Run")
	}
	if err := r.RunClusterClient(context.Background(), "x", nil, nil); err == nil {
		t.Error("nil client accepted")
	}
}

// TestScopedToNamespacesAndProjects: with WithNamespaces the reporter lists
// and watches only those namespaces (namespaced Roles suffice; a labelled
// PipelineRun created elsewhere is never seen), and with WithProjects it
// posts only for those project IDs.
func TestScopedToNamespacesAndProjects(t *testing.T) {
	fc := newFakeCluster()
	e := newEnv(t, nil, fc, WithNamespaces(ns, "ci-2", ns), WithProjects("42"))
	eventually(t, "watches of both namespaces", func() bool {
		return fc.watches("pipelineruns") >= 2 && fc.watches("taskruns") >= 2
	})
	pr := func(name, namespace, project, sha string) *v1.PipelineRun {
		p := newPR(name, t0, sha)
		p.Namespace, p.UID = namespace, types.UID("uid-"+namespace+"-"+name)
		p.Labels[status.LabelProjectID] = project
		return p
	}
	e.create(pr("build-1", ns, "42", shaA))
	e.create(pr("build-2", "ci-2", "42", shaB))
	e.create(pr("elsewhere", "attacker", "42", "2222222222222222222222222222222222222222"))
	e.create(pr("other-project", "ci-2", "43", "3333333333333333333333333333333333333333"))
	e.waitAccepted(2)
	eventually(t, "project ignored", func() bool {
		return testutil.ToFloat64(e.r.m.ignored.WithLabelValues("project")) >= 1
	})
	e.settle()
	var shas []string
	for _, c := range e.gl.Calls() {
		shas = append(shas, c.ProjectID+"@"+c.SHA)
	}
	slices.Sort(shas)
	if want := []string{"42@" + shaA, "42@" + shaB}; !slices.Equal(shas, want) {
		t.Errorf("posted %v, want only %v", shas, want)
	}
	for _, a := range fc.client.Actions() {
		if (a.GetVerb() == "list" || a.GetVerb() == "watch") && a.GetNamespace() != ns && a.GetNamespace() != "ci-2" {
			t.Errorf("%s %s in namespace %q: the reporter reads outside its namespaces", a.GetVerb(), a.GetResource().Resource, a.GetNamespace())
		}
	}
}
