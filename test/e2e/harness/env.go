// Package harness runs ciel's end-to-end environment: a real kube-apiserver,
// etcd and kube-controller-manager, Tekton's CRDs, configuration and
// controller, Tekton Triggers' EventListener sink, a real registry and fake
// Nodes whose pods the pod runner completes — all as plain processes on
// loopback, with no Docker and no kubelet.
//
// A test binary uses it through a Suite:
//
//	var suite harness.Suite
//
//	func TestMain(m *testing.M) { os.Exit(suite.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		env := suite.Env(t)
//		ns := env.NewNamespace(t)
//		...
//	}
//
// Binaries are built once from the nested modules under test/e2e/build and
// cached by content (see Builder). Every process is stopped when the test
// binary ends, however it ends (see Supervisor).
package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ciel-ci/ciel/internal/registrytest"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	tektonclient "github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	triggersv1alpha1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1alpha1"
	triggersclient "github.com/tektoncd/triggers/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"
)

// Environment variables the harness reads.
const (
	// EnvRequireReal makes missing prerequisites a failure instead of a skip.
	EnvRequireReal = "CIEL_REQUIRE_REAL"
	// EnvCache is the cache directory (default ~/.cache/ciel-e2e).
	EnvCache = "CIEL_E2E_CACHE"
	// EnvKeep keeps the run directory (logs, etcd data, pod directories)
	// after a successful run; it is always kept after a failure.
	EnvKeep = "CIEL_E2E_KEEP"
)

type options struct {
	featureFlags map[string]string
	nodes        []Node
	logger       *slog.Logger
	cacheDir     string
}

// Option configures Start and Suite.Main.
type Option func(*options) error

// WithFeatureFlags overrides keys of Tekton's feature-flags ConfigMap
// (default: the ConfigMap as Tekton ships it).
func WithFeatureFlags(flags map[string]string) Option {
	return func(o *options) error {
		for k := range flags {
			if k == "" {
				return errors.New("feature flag with an empty name")
			}
		}
		o.featureFlags = flags
		return nil
	}
}

// WithNodes registers these fake Nodes instead of DefaultNodes.
func WithNodes(nodes ...Node) Option {
	return func(o *options) error {
		seen := map[string]bool{}
		for _, n := range nodes {
			if n.Name == "" || n.OS == "" || n.Arch == "" {
				return fmt.Errorf("node %+v needs a name, an OS and an architecture", n)
			}
			if seen[n.Name] {
				return fmt.Errorf("node %s given twice", n.Name)
			}
			seen[n.Name] = true
		}
		o.nodes = nodes
		return nil
	}
}

// WithLogger sends the harness's progress messages to l (default: text on
// standard error).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("nil logger")
		}
		o.logger = l
		return nil
	}
}

// WithCacheDir caches binaries and pid files under dir (default:
// $CIEL_E2E_CACHE, else ~/.cache/ciel-e2e).
func WithCacheDir(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return errors.New("empty cache directory")
		}
		o.cacheDir = dir
		return nil
	}
}

// Env is a running end-to-end environment.
type Env struct {
	*ControlPlane
	// ModuleRoot is the e2e module's directory; RepoRoot the repository's.
	ModuleRoot, RepoRoot string
	// RunDir holds this run's files (logs under RunDir/logs).
	RunDir   string
	Tekton   tektonclient.Interface
	Triggers triggersclient.Interface
	// Builds says, per binary, whether it was built or reused.
	Builds []BuildRecord
	// StartupTime is how long Start took, builds included.
	StartupTime time.Duration
	// CacheDir persists across runs: built binaries, downloaded packages.
	CacheDir string

	binaries map[string]string
	logger   *slog.Logger

	cielOnce sync.Once
	cielPath string
	cielErr  error

	baseOnce   sync.Once
	baseImages *baseImages
	baseErr    error
}

// Start builds (or reuses) the binaries and starts the environment. The
// caller must Stop it.
func Start(ctx context.Context, opts ...Option) (_ *Env, err error) {
	start := time.Now()
	o := options{logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("configuring the e2e harness: %w", err)
		}
	}
	if o.cacheDir == "" {
		o.cacheDir, err = defaultCacheDir()
		if err != nil {
			return nil, err
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	root, err := FindModuleRoot(wd)
	if err != nil {
		return nil, err
	}
	pidDir := filepath.Join(o.cacheDir, "pids")
	if swept, err := SweepStale(pidDir); err != nil {
		return nil, err
	} else if len(swept) > 0 {
		o.logger.Warn("removed processes left by a previous run that was killed", "pidfiles", swept)
	}
	etcd, err := LookupEtcd()
	if err != nil {
		return nil, err
	}
	bins, err := BuildModules(root)
	if err != nil {
		return nil, err
	}
	builder := &Builder{Dir: filepath.Join(o.cacheDir, "bin"), Logger: o.logger}
	env := &Env{ModuleRoot: root, RepoRoot: filepath.Dir(filepath.Dir(root)), CacheDir: o.cacheDir, binaries: map[string]string{"etcd": etcd}, logger: o.logger}
	for _, b := range bins {
		path, rec, err := builder.Ensure(ctx, b)
		if err != nil {
			return nil, err
		}
		env.binaries[b.Name] = path
		env.Builds = append(env.Builds, rec)
	}
	tektonDir := filepath.Join(root, "build", "tekton")
	pipelineVersion, err := requiredVersion(tektonDir, "github.com/tektoncd/pipeline")
	if err != nil {
		return nil, err
	}
	pipelineDir, err := moduleDir(ctx, tektonDir, "github.com/tektoncd/pipeline")
	if err != nil {
		return nil, err
	}
	triggersDir, err := moduleDir(ctx, tektonDir, "github.com/tektoncd/triggers")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(os.TempDir(), 0o755); err != nil {
		return nil, err
	}
	env.RunDir, err = os.MkdirTemp("", "ciel-e2e-run-")
	if err != nil {
		return nil, err
	}
	o.logger.Info("starting the control plane", "run", env.RunDir)
	cp, err := StartControlPlane(ctx, ControlPlaneConfig{
		RunDir: env.RunDir, PidDir: pidDir, Binaries: env.binaries,
		PipelineDir: pipelineDir, TriggersDir: triggersDir, PipelineVersion: pipelineVersion,
		FeatureFlags: o.featureFlags, Nodes: o.nodes, Logger: o.logger,
	})
	if err != nil {
		return nil, fmt.Errorf("%w (logs in %s)", err, filepath.Join(env.RunDir, "logs"))
	}
	env.ControlPlane = cp
	defer func() {
		if err != nil {
			env.Stop()
		}
	}()
	if env.Tekton, err = tektonclient.NewForConfig(cp.RESTConfig); err != nil {
		return nil, err
	}
	if env.Triggers, err = triggersclient.NewForConfig(cp.RESTConfig); err != nil {
		return nil, err
	}
	if err := env.keepSinksAlive(ctx); err != nil {
		return nil, err
	}
	env.StartupTime = time.Since(start)
	o.logger.Info("e2e environment up", "took", env.StartupTime.Round(time.Millisecond), "kubeconfig", cp.Kubeconfig)
	return env, nil
}

func defaultCacheDir() (string, error) {
	if d := os.Getenv(EnvCache); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding a cache directory (set %s): %w", EnvCache, err)
	}
	return filepath.Join(d, "ciel-e2e"), nil
}

// moduleDir returns the module cache directory of mod at the version the
// build module in dir requires (downloading it if needed).
func moduleDir(ctx context.Context, dir, mod string) (string, error) {
	v, err := requiredVersion(dir, mod)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", mod+"@"+v)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating %s@%s in the module cache: %w", mod, v, err)
	}
	var info struct{ Dir string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		return "", fmt.Errorf("locating %s@%s in the module cache: no directory in %s", mod, v, out)
	}
	return info.Dir, nil
}

// keepaliveInterceptor is a ClusterInterceptor that exists only so that an
// EventListener sink can start and keep running: the sink exits unless at
// least one ClusterInterceptor labelled server/type=https exists and all of
// them carry a caBundle (it re-checks every minute). Nothing listens at its
// URL.
const keepaliveInterceptor = "ciel-e2e-keepalive"

func (e *Env) keepSinksAlive(ctx context.Context) error {
	ca, err := e.PKI.CAPEM()
	if err != nil {
		return err
	}
	_, err = e.Triggers.TriggersV1alpha1().ClusterInterceptors().Create(ctx, clusterInterceptor(keepaliveInterceptor, "https://127.0.0.1:1/", ca), metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating the keepalive ClusterInterceptor: %w", err)
	}
	return nil
}

func clusterInterceptor(name, url string, caBundle []byte) *triggersv1alpha1.ClusterInterceptor {
	u, _ := apis.ParseURL(url)
	return &triggersv1alpha1.ClusterInterceptor{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"server/type": "https"}},
		Spec: triggersv1alpha1.ClusterInterceptorSpec{ClientConfig: triggersv1alpha1.ClientConfig{
			URL: u, CaBundle: caBundle,
		}},
	}
}

// Stop stops every process and, unless EnvKeep is set, keeps the run
// directory only if keep is true.
func (e *Env) Stop() {
	if e.ControlPlane != nil {
		e.ControlPlane.Stop()
	}
}

// Binary returns the path of a program the harness built or found
// ("kube-apiserver", "eventlistenersink", "etcd", ...).
func (e *Env) Binary(name string) string { return e.binaries[name] }

// Report summarises the start-up: builds, phases, total.
func (e *Env) Report() string {
	var b strings.Builder
	for _, r := range e.Builds {
		how := "built in " + r.Duration.String()
		if r.Reused {
			how = "reused (built " + r.Built.Format(time.RFC3339) + " in " + r.Duration.String() + ")"
		}
		fmt.Fprintf(&b, "  binary %-24s %-8s %s\n", r.Name, r.Version, how)
	}
	for _, p := range e.Phases {
		fmt.Fprintf(&b, "  phase  %-24s %s\n", p.Name, p.Duration.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "  start-up total %s\n", e.StartupTime.Round(time.Millisecond))
	return b.String()
}

// DumpLogs writes the tail of every process log to w.
func (e *Env) DumpLogs(w io.Writer, perLog int) {
	if e.ControlPlane == nil || e.Supervisor == nil {
		return
	}
	for _, p := range e.Supervisor.Processes() {
		fmt.Fprintf(w, "\n===== %s (pid %d, %s) =====\n%s\n", p.Name, p.Pid, p.LogFile, p.Tail(perLog))
	}
}

// Suite runs the environment for one test binary.
type Suite struct {
	env  *Env
	skip string
}

// Main starts the environment, runs the tests and stops everything; use it
// as `os.Exit(suite.Main(m))` in TestMain. When a prerequisite (etcd, git,
// go) is missing, the tests skip with the reason — or, with
// CIEL_REQUIRE_REAL=1, the run fails.
func (s *Suite) Main(m *testing.M, opts ...Option) int {
	if missing := MissingPrerequisites(); len(missing) > 0 {
		msg := "the e2e environment needs " + strings.Join(missing, "; ")
		if os.Getenv(EnvRequireReal) == "1" {
			fmt.Fprintf(os.Stderr, "FAIL: %s, and %s=1 requires the e2e suite to run\n", msg, EnvRequireReal)
			return 1
		}
		s.skip = msg + "; set " + EnvRequireReal + "=1 to make this a failure"
		return m.Run()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// On SIGINT/SIGTERM stop everything before exiting; the processes'
	// parent-death signal covers the cases where this cannot run.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var (
		mu  sync.Mutex
		env *Env
	)
	go func() {
		sig, ok := <-sigs
		if !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "e2e: %v: stopping the environment\n", sig)
		cancel()
		mu.Lock()
		if env != nil {
			env.Stop()
		}
		mu.Unlock()
		os.Exit(1)
	}()

	e, err := Start(ctx, opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: starting the e2e environment: %v\n", err)
		return 1
	}
	mu.Lock()
	env = e
	mu.Unlock()
	s.env = e
	fmt.Fprintf(os.Stderr, "e2e environment (run directory %s):\n%s", e.RunDir, e.Report())

	code := m.Run()
	if code != 0 {
		e.DumpLogs(os.Stderr, 6000)
	}
	e.Stop()
	if code == 0 && os.Getenv(EnvKeep) == "" {
		_ = os.RemoveAll(e.RunDir)
	} else {
		fmt.Fprintf(os.Stderr, "e2e: run directory kept: %s\n", e.RunDir)
	}
	return code
}

// Env returns the running environment, or skips the test with the reason
// the environment could not run.
func (s *Suite) Env(t testing.TB) *Env {
	t.Helper()
	if s.env == nil {
		if s.skip != "" {
			t.Skip("skipping: " + s.skip)
		}
		t.Fatal("the e2e environment is not running: call Suite.Main from TestMain")
	}
	return s.env
}

// MissingPrerequisites lists the programs and privileges the environment
// needs but does not find.
func MissingPrerequisites() []string {
	var missing []string
	if _, err := LookupEtcd(); err != nil {
		missing = append(missing, err.Error())
	}
	for _, p := range []struct{ prog, why string }{
		{"go", "the Go toolchain (to build the control-plane binaries)"},
		{"git", "git (Debian: apt-get install git)"},
	} {
		if _, err := exec.LookPath(p.prog); err != nil {
			missing = append(missing, p.why)
		}
	}
	return missing
}

var unsafeName = regexp.MustCompile(`[^a-z0-9-]+`)

// NewNamespace creates a namespace for the test, waits for its default
// ServiceAccount (made by kube-controller-manager) and deletes it when the
// test ends (after dumping its objects if the test failed).
func (e *Env) NewNamespace(t testing.TB) string {
	t.Helper()
	slug := strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(slug) > 40 {
		slug = strings.Trim(slug[:40], "-")
	}
	name := "e2e-" + slug + "-" + randomSuffix()
	ctx := testContext(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"ciel.dev/e2e-test": "true"}}}
	if _, err := e.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			e.DumpNamespace(t, name)
		}
		bg := metav1.DeletePropagationBackground
		if err := e.Kube.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting namespace %s: %v", name, err)
		}
	})
	Eventually(t, 60*time.Second, "the default ServiceAccount of "+name, func(ctx context.Context) (bool, error) {
		_, err := e.Kube.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	return name
}

func randomSuffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// testContext returns a context that ends when the test's deadline is near.
func testContext(t testing.TB) context.Context {
	ctx := context.Background()
	if tt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := tt.Deadline(); ok {
			c, cancel := context.WithDeadline(ctx, d.Add(-10*time.Second))
			t.Cleanup(cancel)
			return c
		}
	}
	return ctx
}

// Eventually polls f every 200ms until it returns true, failing the test
// with f's last error after timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, f func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(testContext(t), timeout)
	defer cancel()
	if err := waitUntil(ctx, 200*time.Millisecond, what, f); err != nil {
		t.Fatal(err)
	}
}

// DumpNamespace logs the state of the namespace's PipelineRuns, TaskRuns,
// Pods and recent Events, for failing tests.
func (e *Env) DumpNamespace(t testing.TB, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var b strings.Builder
	fmt.Fprintf(&b, "namespace %s:\n", ns)
	if prs, err := e.Tekton.TektonV1().PipelineRuns(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, pr := range prs.Items {
			fmt.Fprintf(&b, "  PipelineRun %s: %s\n", pr.Name, conditionText(pr.Status.GetCondition(apis.ConditionSucceeded)))
		}
	}
	if trs, err := e.Tekton.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, tr := range trs.Items {
			fmt.Fprintf(&b, "  TaskRun %s: %s\n", tr.Name, conditionText(tr.Status.GetCondition(apis.ConditionSucceeded)))
		}
	}
	if pods, err := e.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "  Pod %s: phase %s node %q\n", p.Name, p.Status.Phase, p.Spec.NodeName)
			for _, c := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
				switch {
				case c.State.Terminated != nil:
					fmt.Fprintf(&b, "    %s: exit %d %s %q\n", c.Name, c.State.Terminated.ExitCode, c.State.Terminated.Reason, c.State.Terminated.Message)
				case c.State.Running != nil:
					fmt.Fprintf(&b, "    %s: running\n", c.Name)
				case c.State.Waiting != nil:
					fmt.Fprintf(&b, "    %s: waiting %s\n", c.Name, c.State.Waiting.Reason)
				}
			}
		}
	}
	if evs, err := e.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{}); err == nil {
		items := evs.Items
		sort.Slice(items, func(i, j int) bool { return items[i].LastTimestamp.Before(&items[j].LastTimestamp) })
		if len(items) > 40 {
			items = items[len(items)-40:]
		}
		for _, ev := range items {
			fmt.Fprintf(&b, "  Event %s %s/%s %s: %s\n", ev.Type, ev.InvolvedObject.Kind, ev.InvolvedObject.Name, ev.Reason, ev.Message)
		}
	}
	t.Log(b.String())
}

func conditionText(c *apis.Condition) string {
	if c == nil {
		return "no Succeeded condition"
	}
	return fmt.Sprintf("%s %s %q", c.Status, c.Reason, c.Message)
}

// Apply server-side applies the YAML documents (namespaced objects without
// a namespace go into ns) and returns them as stored.
func (e *Env) Apply(t testing.TB, ns, yamlDocs string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := DecodeYAML(strings.NewReader(yamlDocs))
	if err != nil {
		t.Fatalf("decoding manifests: %v", err)
	}
	out, err := ApplyObjects(testContext(t), e.Dynamic, e.Kube.Discovery(), ns, objs)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ApplyFiles applies the YAML files (see Apply).
func (e *Env) ApplyFiles(t testing.TB, ns string, paths ...string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := DecodeFiles(paths...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ApplyObjects(testContext(t), e.Dynamic, e.Kube.Discovery(), ns, objs)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Sink is a running EventListener sink.
type Sink struct {
	// URL is http://127.0.0.1:PORT (the sink listens on all interfaces).
	URL     string
	Process *Process
}

// StartSink starts Tekton Triggers' EventListener sink for the EventListener
// ns/name (which must exist), publishes its address in the EventListener's
// status (no Triggers controller runs to do it), and stops it when the test
// ends.
func (e *Env) StartSink(t testing.TB, ns, name string) *Sink {
	t.Helper()
	ctx := testContext(t)
	if _, err := e.Triggers.TriggersV1beta1().EventListeners(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Fatalf("starting the sink of EventListener %s/%s: %v", ns, name, err)
	}
	ports, err := freePortList(3)
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ports[0])
	p, err := e.Supervisor.Start(ProcessSpec{
		Name: "sink-" + ns + "-" + name,
		Path: e.binaries["eventlistenersink"],
		Args: []string{"-kubeconfig", e.Kubeconfig, "-el-name", name, "-el-namespace", ns, "-port", port},
		Env: []string{
			"SYSTEM_NAMESPACE=" + SystemNamespace, "NAMESPACE=" + ns, "NAME=" + name,
			"METRICS_PROMETHEUS_PORT=" + strconv.Itoa(ports[1]), "PROFILING_PORT=" + strconv.Itoa(ports[2]),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("sink log (%s):\n%s", p.LogFile, p.Tail(8000))
		}
	})
	s := &Sink{URL: "http://127.0.0.1:" + port, Process: p}
	hc := &http.Client{Timeout: 2 * time.Second}
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := waitUntil(wctx, 200*time.Millisecond, "the EventListener sink /live", func(ctx context.Context) (bool, error) {
		return httpOK(ctx, hc, s.URL+"/live")
	}, p); err != nil {
		t.Fatal(err)
	}
	patch := map[string]any{"status": map[string]any{
		"address": map[string]any{"url": s.URL},
		"conditions": []map[string]any{{
			"type": "Ready", "status": "True", "lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
			"message": "sink started by the ciel e2e harness",
		}},
	}}
	body, _ := json.Marshal(patch)
	if _, err := e.Triggers.TriggersV1beta1().EventListeners(ns).Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{}, "status"); err != nil {
		t.Fatalf("publishing the sink address in EventListener %s/%s: %v", ns, name, err)
	}
	return s
}

// Interceptor is a Tekton Triggers interceptor served over TLS on loopback
// and registered as a ClusterInterceptor.
type Interceptor struct {
	Name string
	URL  string
}

// StartInterceptor serves h over HTTPS on a free loopback port with the
// harness's interceptor certificate, registers it as ClusterInterceptor
// name (with the harness CA as caBundle), and removes both when the test
// ends.
func (e *Env) StartInterceptor(t testing.TB, name string, h http.Handler) *Interceptor {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(e.PKI.InterceptorCert, e.PKI.InterceptorKey)
	if err != nil {
		t.Fatalf("loading the interceptor certificate: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	url := "https://" + l.Addr().String() + "/"
	e.RegisterClusterInterceptor(t, name, url)
	return &Interceptor{Name: name, URL: url}
}

// RegisterClusterInterceptor creates ClusterInterceptor name pointing at url
// (an interceptor serving the harness's interceptor certificate, see
// PKI.InterceptorCert) and deletes it when the test ends.
func (e *Env) RegisterClusterInterceptor(t testing.TB, name, url string) {
	t.Helper()
	ca, err := e.PKI.CAPEM()
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	if _, err := e.Triggers.TriggersV1alpha1().ClusterInterceptors().Create(ctx, clusterInterceptor(name, url, ca), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating ClusterInterceptor %s: %v", name, err)
	}
	t.Cleanup(func() {
		err := e.Triggers.TriggersV1alpha1().ClusterInterceptors().Delete(context.Background(), name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting ClusterInterceptor %s: %v", name, err)
		}
	})
}

// StartRegistry starts a real registry (docker-registry) on loopback for
// the test.
func (e *Env) StartRegistry(t testing.TB) *registrytest.Registry {
	t.Helper()
	return registrytest.Start(t)
}

// Post sends body to url with the given headers and returns the status and
// response body.
func Post(ctx context.Context, url string, header http.Header, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("posting to %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// WaitPipelineRunDone waits until the PipelineRun has finished (its
// Succeeded condition is True or False) and returns it.
func (e *Env) WaitPipelineRunDone(t testing.TB, ns, name string, timeout time.Duration) *pipelinev1.PipelineRun {
	t.Helper()
	var pr *pipelinev1.PipelineRun
	Eventually(t, timeout, "PipelineRun "+ns+"/"+name+" to finish", func(ctx context.Context) (bool, error) {
		got, err := e.Tekton.TektonV1().PipelineRuns(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		pr = got
		c := got.Status.GetCondition(apis.ConditionSucceeded)
		return c != nil && c.Status != corev1.ConditionUnknown, nil
	})
	return pr
}

// WaitPipelineRuns waits until the namespace holds at least n PipelineRuns
// and returns them, sorted by name.
func (e *Env) WaitPipelineRuns(t testing.TB, ns string, n int, timeout time.Duration) []pipelinev1.PipelineRun {
	t.Helper()
	var prs []pipelinev1.PipelineRun
	Eventually(t, timeout, fmt.Sprintf("%d PipelineRun(s) in %s", n, ns), func(ctx context.Context) (bool, error) {
		list, err := e.Tekton.TektonV1().PipelineRuns(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		prs = list.Items
		return len(prs) >= n, nil
	})
	sort.Slice(prs, func(i, j int) bool { return prs[i].Name < prs[j].Name })
	return prs
}

// CielBinary builds the ciel command from this repository (once per test
// binary) and returns its path.
func (e *Env) CielBinary() (string, error) {
	e.cielOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(e.RepoRoot, "cmd", "ciel")); err != nil {
			e.cielErr = fmt.Errorf("building ciel: %w", err)
			return
		}
		out := filepath.Join(e.RunDir, "bin", "ciel")
		e.cielErr = GoBuild(context.Background(), e.RepoRoot, "./cmd/ciel", out)
		e.cielPath = out
	})
	return e.cielPath, e.cielErr
}
