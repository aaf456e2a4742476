// Package harness runs ciel's end-to-end environment: a real Kubernetes
// cluster on this machine — etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, kube-proxy, CoreDNS and real kubelets with containerd, an
// amd64 node and an arm64 node (an arm64 kubelet under qemu-user) —
// sealed in a network namespace with no route off the machine, with
// Tekton Pipelines and Triggers installed from their release
// configuration and ciel installed from its `make release`, as a user
// installs it. Every image a pod runs is built here and pulled by
// containerd from the cluster's registry.
//
// The suite runs in two phases. On the host, cmd/e2e-run prepares what
// needs the Go module proxy (binaries, module downloads; see Prepare),
// seals the network namespace (see SealHost) and runs the test binary
// inside it; there, a test binary's TestMain starts the cluster through a
// Suite:
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
// Every process is stopped when the test binary ends, however it ends
// (see Supervisor); cmd/e2e-run then restores the host.
package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	tektonclient "github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	triggersclient "github.com/tektoncd/triggers/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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

// ReleaseVersion is the VERSION the suite makes ciel's release with.
const ReleaseVersion = "v0.0.0-e2e"

// Env is a running end-to-end environment.
type Env struct {
	*Cluster
	// ModuleRoot is the e2e module's directory; RepoRoot the repository's.
	ModuleRoot, RepoRoot string
	// RunDir holds this run's files (logs under RunDir/logs).
	RunDir string
	// CacheDir persists across runs: registry storage, resolved releases.
	CacheDir string
	Prepared *Prepared
	Tekton   tektonclient.Interface
	Triggers triggersclient.Interface
	// Registry is the cluster's registry; Images what the suite pushed.
	Registry *NodeRegistry
	Images   *Images
	// Release is ciel's `make release`; ReleaseObjects its release.yaml.
	Release        *Release
	ReleaseObjects []*unstructured.Unstructured
	Installer      *Installer
	// GitLab is the suite's GitLab (API and repositories), which the
	// interceptor is configured with.
	GitLab *GitLab
	// Phases records how long each start-up phase took.
	Phases []Phase
	// StartupTime is how long Start took.
	StartupTime time.Duration

	sup      *Supervisor
	logger   *slog.Logger
	cleanups []func()

	baseOnce   sync.Once
	baseImages *baseImages
	baseErr    error
}

// NodeRegistry is the cluster's image registry (Debian's docker-registry
// on RegistryHost, plain HTTP; see StartRegistry).
type NodeRegistry struct {
	// Host is RegistryHost, the registry part of image references.
	Host    string
	Process *Process
}

// Cleanup registers f to run when the environment stops.
func (e *Env) Cleanup(f func()) { e.cleanups = append(e.cleanups, f) }

// Start starts the environment inside the sealed network namespace. The
// caller must Stop it.
func Start(ctx context.Context, logger *slog.Logger) (_ *Env, err error) {
	start := time.Now()
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	prep, err := ReadPrepared()
	if err != nil {
		return nil, err
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	root, err := FindModuleRoot(wd)
	if err != nil {
		return nil, err
	}
	e := &Env{ModuleRoot: root, RepoRoot: prep.CielRoot, CacheDir: prep.CacheDir, Prepared: prep, logger: logger}
	defer func() {
		if err != nil {
			e.Stop()
		}
	}()
	pidDir := filepath.Join(e.CacheDir, "pids")
	if swept, err := SweepStale(pidDir); err != nil {
		return nil, err
	} else if len(swept) > 0 {
		logger.Warn("removed processes left by a previous run that was killed", "pidfiles", swept)
	}
	if e.RunDir, err = os.MkdirTemp("", "ciel-e2e-run-"); err != nil {
		return nil, err
	}
	if e.sup, err = NewSupervisor(e.RunDir, pidDir, logger); err != nil {
		return nil, err
	}
	err = runPhases(ctx, logger, "e2e", &e.Phases, []phase{
		{"registry", func(context.Context) (err error) {
			p, err := StartRegistry(ctx, e.sup, filepath.Join(e.CacheDir, "registry"))
			e.Registry = &NodeRegistry{Host: RegistryHost, Process: p}
			return err
		}},
		{"images", func(context.Context) (err error) {
			e.Images, err = BuildImages(ctx, ImagesConfig{Registry: e.Registry.Host, Prepared: prep, ModuleRoot: root, Logger: logger})
			return err
		}},
		{"cluster", func(context.Context) (err error) {
			cfg := ClusterConfigFromPrepared(prep, e.Images.Pause.String())
			cfg.Logger = logger
			e.Cluster, err = StartCluster(ctx, cfg)
			if err != nil {
				return err
			}
			e.Installer = &Installer{Kube: e.Kube, Dynamic: e.Dynamic, Disc: e.Kube.Discovery(), Logf: func(f string, a ...any) { logger.Info(fmt.Sprintf(f, a...)) }}
			if e.Tekton, err = tektonclient.NewForConfig(e.RESTConfig); err != nil {
				return err
			}
			e.Triggers, err = triggersclient.NewForConfig(e.RESTConfig)
			return err
		}},
		{"tekton", e.installTekton},
		{"make release", func(context.Context) (err error) {
			e.Release, err = MakeRelease(ctx, e.RepoRoot, e.Registry.Host+"/ciel", e.Images.Static.String(), ReleaseVersion, filepath.Join(e.RunDir, "dist"))
			return err
		}},
		{"gitlab", func(context.Context) (err error) {
			reposDir := filepath.Join(e.RunDir, "repos")
			if err := os.MkdirAll(reposDir, 0o755); err != nil {
				return err
			}
			e.GitLab, err = StartGitLab(e, NodeIP, reposDir)
			return err
		}},
		{"install ciel", e.installCiel},
	})
	if err != nil {
		return nil, fmt.Errorf("%w (logs in %s)", err, filepath.Join(e.RunDir, "logs"))
	}
	e.StartupTime = time.Since(start)
	logger.Info("e2e environment up", "took", e.StartupTime.Round(time.Millisecond), "kubeconfig", e.Kubeconfig)
	return e, nil
}

// installTekton applies Tekton Pipelines' and Triggers' release files (as
// the images phase resolved them) and waits for their Deployments and the
// core interceptors' caBundles.
func (e *Env) installTekton(ctx context.Context) error {
	for _, f := range []string{e.Images.PipelineYAML, e.Images.TriggersYAML} {
		objs, err := e.Installer.ApplyFile(ctx, f)
		if err != nil {
			return err
		}
		if err := e.Installer.WaitDeployments(ctx, 5*time.Minute, objs); err != nil {
			return err
		}
	}
	return e.Installer.WaitCABundles(ctx, 3*time.Minute)
}

// installCiel applies dist/release.yaml and makes docs/install.md's
// edits for the interceptor (step 7: the GitLab API token Secret, the
// GitLab's CA, --gitlab-url), then waits for the interceptor to be ready
// and its ClusterInterceptor's caBundle.
func (e *Env) installCiel(ctx context.Context) error {
	objs, err := e.Installer.ApplyFile(ctx, e.Release.File)
	if err != nil {
		return err
	}
	e.ReleaseObjects = objs
	kube := e.Kube.CoreV1()
	if _, err := kube.Secrets(InterceptorNamespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "ciel-gitlab-api"}, StringData: map[string]string{"token": GitLabToken},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if _, err := kube.ConfigMaps(InterceptorNamespace).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "ciel-gitlab-ca"}, Data: map[string]string{"ca.crt": string(e.GitLab.CAPEM)},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if err := e.PatchDeploymentArgs(ctx, InterceptorNamespace, "ciel-interceptor", "--gitlab-url="+e.GitLab.BaseURL); err != nil {
		return err
	}
	return e.Installer.WaitCABundles(ctx, 2*time.Minute, "ciel")
}

func defaultCacheDir() (string, error) {
	if d := os.Getenv(EnvCache); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding the cache directory (set %s): %w", EnvCache, err)
	}
	return filepath.Join(home, ".cache", "ciel-e2e"), nil
}

// Stop stops every process (the cluster's last) and runs the cleanups.
func (e *Env) Stop() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
	e.cleanups = nil
	if e.Cluster != nil {
		e.Cluster.Stop()
	}
	if e.sup != nil {
		e.sup.StopAll(5 * time.Second)
	}
}

// Report summarises the start-up: phases, total.
func (e *Env) Report() string {
	var b strings.Builder
	for _, p := range e.Phases {
		fmt.Fprintf(&b, "  phase  %-24s %s\n", p.Name, p.Duration.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "  start-up total %s\n", e.StartupTime.Round(time.Millisecond))
	return b.String()
}

// DumpLogs writes the tail of every process log to w.
func (e *Env) DumpLogs(w io.Writer, perLog int) {
	var procs []*Process
	if e.sup != nil {
		procs = append(procs, e.sup.Processes()...)
	}
	if e.Cluster != nil && e.Cluster.Supervisor != nil {
		procs = append(procs, e.Cluster.Supervisor.Processes()...)
	}
	for _, p := range procs {
		fmt.Fprintf(w, "\n===== %s (pid %d, %s) =====\n%s\n", p.Name, p.Pid, p.LogFile, p.Tail(perLog))
	}
}

// Suite runs the environment for one test binary.
type Suite struct {
	env  *Env
	skip string
}

// Main starts the environment, runs the tests and stops everything; use it
// as `os.Exit(suite.Main(m))` in TestMain. Outside the sealed network
// namespace (the binary not run through cmd/e2e-run) the tests skip with
// the reason — or, with CIEL_REQUIRE_REAL=1, the run fails.
func (s *Suite) Main(m *testing.M) int {
	if os.Getenv(EnvNetNS) == "" {
		msg := "the e2e suite runs inside its sealed network namespace: run it with `make -C test/e2e e2e` (cmd/e2e-run)"
		if os.Getenv(EnvRequireReal) == "1" {
			fmt.Fprintf(os.Stderr, "FAIL: %s, and %s=1 requires the e2e suite to run\n", msg, EnvRequireReal)
			return 1
		}
		s.skip = msg
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

	e, err := Start(ctx, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: starting the e2e environment: %v\n", err)
		if errors.Is(err, context.Canceled) {
			return 1
		}
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

// moduleDir returns the directory of module mod as the build module in dir
// requires it (downloading it into the module cache when needed).
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
