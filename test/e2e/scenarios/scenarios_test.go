// Package scenarios runs ciel's product scenarios on the real control plane
// of the e2e harness: GitLab webhooks posted to Tekton Triggers' real
// EventListener sink, which calls the ciel interceptor over TLS as a
// ClusterInterceptor, and the PipelineRuns (or their absence) that follow.
package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"

	"github.com/ciel-ci/ciel/interceptor/dedup"
	"github.com/ciel-ci/ciel/interceptor/engine"
	"github.com/ciel-ci/ciel/interceptor/gitlabapi"
	"github.com/ciel-ci/ciel/interceptor/server"
	"github.com/ciel-ci/ciel/test/e2e/harness"
	"github.com/ciel-ci/ciel/test/e2e/podrunner"
)

var suite harness.Suite

func TestMain(m *testing.M) {
	os.Exit(suite.Main(m, harness.WithNodes(
		harness.Node{Name: "node-amd64", OS: "linux", Arch: "amd64"},
		harness.Node{Name: "node-arm64", OS: "linux", Arch: "arm64"},
	)))
}

// recorder wraps the interceptor and keeps every response it gave.
type recorder struct {
	h    http.Handler
	mu   sync.Mutex
	seen []triggersv1.InterceptorResponse
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	rec := &captureWriter{ResponseWriter: w}
	r.h.ServeHTTP(rec, req)
	var ir triggersv1.InterceptorResponse
	if json.Unmarshal(rec.buf.Bytes(), &ir) == nil {
		r.mu.Lock()
		r.seen = append(r.seen, ir)
		r.mu.Unlock()
	}
}

func (r *recorder) responses() []triggersv1.InterceptorResponse {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]triggersv1.InterceptorResponse(nil), r.seen...)
}

type captureWriter struct {
	http.ResponseWriter
	buf bytes.Buffer
}

func (c *captureWriter) Write(b []byte) (int, error) {
	c.buf.Write(b)
	return c.ResponseWriter.Write(b)
}

type world struct {
	env  *harness.Env
	ns   string
	sink *harness.Sink
	rec  *recorder
	pods *replicas
}

// setUp installs config/triggers (with the Tasks and Pipelines), the webhook
// Secret, ciel's interceptor as ClusterInterceptor "ciel", and starts the
// EventListener's sink.
func setUp(t *testing.T, api ...server.ChangedFilesAPI) *world {
	return setUpReplicas(t, 1, api...)
}

// replicas stands for the interceptor Deployment's pods behind its Service:
// each has its own in-memory dedup, and the test chooses which one the
// EventListener's next calls land on.
type replicas struct {
	pods   []http.Handler
	active atomic.Int32
}

func (r *replicas) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.pods[r.active.Load()].ServeHTTP(w, req)
}

// setUpReplicas is setUp with n interceptor replicas (n >= 1), the first
// one active.
func setUpReplicas(t *testing.T, n int, api ...server.ChangedFilesAPI) *world {
	env := suite.Env(t)
	ns := env.NewNamespace(t)
	root := env.RepoRoot

	eng, err := engine.New()
	if err != nil {
		t.Fatal(err)
	}
	pols, err := server.NewPolicies(eng, filepath.Join(root, "policies"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	pods := &replicas{}
	for range n {
		dd, err := dedup.New()
		if err != nil {
			t.Fatal(err)
		}
		cfg := server.Config{Engine: eng, Policies: pols, Dedup: dd, Secrets: secretsFromAPI{env: env}}
		if len(api) > 0 {
			cfg.API = api[0]
		}
		srv, err := server.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		pods.pods = append(pods.pods, srv)
	}
	rec := &recorder{h: pods}
	env.StartInterceptor(t, "ciel", rec)

	_, err = env.Kube.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "ciel-gitlab-webhook"},
		StringData: map[string]string{"token": "s3cret"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, pattern := range []string{"tasks/*/*.yaml", "pipelines/*/*.yaml", "config/triggers/*.yaml"} {
		m, _ := filepath.Glob(filepath.Join(root, pattern))
		for _, f := range m {
			if filepath.Base(f) != "kustomization.yaml" {
				files = append(files, f)
			}
		}
	}
	env.ApplyFiles(t, ns, files...)
	sink := env.StartSink(t, ns, "ciel-gitlab")
	return &world{env: env, ns: ns, sink: sink, rec: rec, pods: pods}
}

// secretsFromAPI reads Secrets through the real apiserver, as the
// interceptor does in a cluster.
type secretsFromAPI struct{ env *harness.Env }

func (s secretsFromAPI) GetSecret(ctx context.Context, ns, name, key string) ([]byte, error) {
	sec, err := s.env.Kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	v, ok := sec.Data[key]
	if !ok {
		return nil, fmt.Errorf("secret %s/%s has no key %s", ns, name, key)
	}
	return v, nil
}

func payload(t *testing.T, env *harness.Env, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.RepoRoot, "interceptor", "gitlab", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (w *world) post(t *testing.T, event, token, delivery string, body []byte) {
	t.Helper()
	h := http.Header{}
	h.Set("X-Gitlab-Event", event)
	h.Set("X-Gitlab-Token", token)
	h.Set("X-Gitlab-Event-UUID", delivery)
	h.Set("Idempotency-Key", delivery)
	code, resp, err := harness.Post(context.Background(), w.sink.URL, h, body)
	if err != nil {
		t.Fatal(err)
	}
	if code/100 != 2 {
		t.Fatalf("sink answered %d: %s", code, resp)
	}
}

// waitDecision waits for the interceptor's n-th response.
func (w *world) waitDecision(t *testing.T, n int) triggersv1.InterceptorResponse {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if r := w.rec.responses(); len(r) >= n {
			return r[n-1]
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the EventListener did not call the interceptor %d time(s)", n)
	return triggersv1.InterceptorResponse{}
}

func (w *world) pipelineRuns(t *testing.T) int {
	t.Helper()
	l, err := w.env.Tekton.TektonV1().PipelineRuns(w.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return len(l.Items)
}

// settle gives the sink time to create what it would create.
func (w *world) noPipelineRunFor(t *testing.T, d time.Duration) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if n := w.pipelineRuns(t); n != 0 {
			t.Fatalf("%d PipelineRun(s) created, want none", n)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func TestRejectedEventsStartNothing(t *testing.T) {
	w := setUp(t)
	cases := []struct {
		name, fixture, event, token, want string
	}{
		{"docs-only push (scenario 2)", "docs_only_push.json", "Push Hook", "s3cret", "policy build-on-change did not return true"},
		{"wrong token (scenario 3)", "push.json", "Push Hook", "wrong", "X-Gitlab-Token does not match"},
		{"branch deletion (scenario 7)", "branch_delete.json", "Push Hook", "s3cret", "policy build-on-change did not return true"},
	}
	n := 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(w.rec.responses())
			w.post(t, c.event, c.token, "d-"+strings.ReplaceAll(c.fixture, ".", "-"), payload(t, w.env, c.fixture))
			// The EventListener runs both triggers; find the build trigger's answer.
			deadline := time.Now().Add(60 * time.Second)
			var got []string
			for time.Now().Before(deadline) {
				rs := w.rec.responses()[before:]
				got = got[:0]
				for _, r := range rs {
					got = append(got, r.Status.Message)
					if strings.Contains(r.Status.Message, c.want) {
						w.noPipelineRunFor(t, 3*time.Second)
						n++
						return
					}
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Fatalf("interceptor answers %q, want one containing %q", got, c.want)
		})
	}
	if n == len(cases) {
		t.Logf("all %d rejected events started no PipelineRun", n)
	}
}

// TestRedeliveryOnAnotherReplicaStartsOneRun: GitLab redelivers a push and
// the second copy lands on the other interceptor replica, whose in-memory
// dedup has never seen it. Both replicas let it through with the same
// extensions.delivery.name_suffix, so the TriggerTemplate names both
// PipelineRuns alike and the real API server refuses the second one: one
// build per delivery across replicas and restarts (issue 21, item 7).
func TestRedeliveryOnAnotherReplicaStartsOneRun(t *testing.T) {
	w := setUpReplicas(t, 2)
	body := payload(t, w.env, "push.json")
	w.post(t, "Push Hook", "s3cret", "delivery-replicas", body)
	prs := w.env.WaitPipelineRuns(t, w.ns, 1, 90*time.Second)
	first := prs[0].Name
	suffixes := func() []string {
		var out []string
		for _, r := range w.rec.responses() {
			if d, ok := r.Extensions["delivery"].(map[string]any); ok && r.Continue {
				out = append(out, fmt.Sprint(d["name_suffix"]))
			}
		}
		return out
	}
	before := len(suffixes())
	if before != 1 || first != "build-multiarch-"+suffixes()[0] {
		t.Fatalf("first delivery: PipelineRun %s, accepted suffixes %q; want one, naming the run", first, suffixes())
	}

	w.pods.active.Store(1) // the redelivery lands on the other replica
	w.post(t, "Push Hook", "s3cret", "delivery-replicas", body)
	deadline := time.Now().Add(60 * time.Second)
	for len(suffixes()) < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	got := suffixes()
	if len(got) != 2 || got[0] != got[1] {
		t.Fatalf("accepted suffixes %q: want the redelivery accepted by the other replica with the same suffix", got)
	}
	time.Sleep(3 * time.Second)
	l, err := w.env.Tekton.TektonV1().PipelineRuns(w.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 1 || l.Items[0].Name != first {
		var names []string
		for _, pr := range l.Items {
			names = append(names, pr.Name)
		}
		t.Fatalf("PipelineRuns %q after a redelivery on another replica, want only %s", names, first)
	}
	t.Logf("redelivery on the other replica: accepted by both (suffix %s), one PipelineRun %s", got[0], first)
}

func TestSourcePushStartsOneBuild(t *testing.T) {
	w := setUp(t)
	body := payload(t, w.env, "push.json")
	w.post(t, "Push Hook", "s3cret", "delivery-1", body)
	prs := w.env.WaitPipelineRuns(t, w.ns, 1, 90*time.Second)
	pr := prs[0]
	if pr.Spec.PipelineRef == nil || pr.Spec.PipelineRef.Name != "build-multiarch" {
		t.Errorf("PipelineRun %s runs %+v, want build-multiarch", pr.Name, pr.Spec.PipelineRef)
	}
	params := map[string]string{}
	for _, p := range pr.Spec.Params {
		params[p.Name] = p.Value.StringVal
	}
	if params["revision"] != "c95fc90a82e297e2b5fcd3722b931d149a388884" {
		t.Errorf("revision %q, want the pushed commit", params["revision"])
	}
	if pr.Labels["ciel.dev/gitlab-sha"] == "" || pr.Labels["ciel.dev/pipeline"] != "build-multiarch" {
		t.Errorf("labels %v", pr.Labels)
	}

	// The same delivery again (scenario 5): exactly one PipelineRun.
	w.post(t, "Push Hook", "s3cret", "delivery-1", body)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		dup := false
		for _, r := range w.rec.responses() {
			if strings.Contains(r.Status.Message, "duplicate delivery") {
				dup = true
			}
		}
		if dup {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	if n := w.pipelineRuns(t); n != 1 {
		t.Errorf("%d PipelineRuns after a duplicate delivery, want 1", n)
	}
	_ = io.Discard
}

// gitRepo makes a local repository of the test project (testdata/hello,
// its bases under baseRegistry) and returns its path and HEAD commit.
func gitRepo(t *testing.T, env *harness.Env, baseRegistry string) (string, string) {
	t.Helper()
	// Under acme/ as on GitLab: the clone URL's path must be the payload's
	// project (path_with_namespace), which the interceptor checks.
	dir := filepath.Join(t.TempDir(), "acme", "payments-api.git")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=ciel", "GIT_AUTHOR_EMAIL=ciel@example.com",
			"GIT_COMMITTER_NAME=ciel", "GIT_COMMITTER_EMAIL=ciel@example.com", "GIT_CONFIG_GLOBAL=/dev/null",
			"GIT_AUTHOR_DATE=2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE=2026-01-01T00:00:00Z")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	helloProject(t, env, dir, baseRegistry)
	run("init", "-q", "-b", "main")
	run("add", ".")
	run("commit", "-q", "-m", "first")
	return dir, run("rev-parse", "HEAD")
}

// gitHTTPServer serves the repository dir with git's own smart HTTP server
// (git http-backend, as CGI) on loopback and returns its clone URL.
func gitHTTPServer(t *testing.T, dir string) string {
	t.Helper()
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	h := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(filepath.Dir(dir)), "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + t.TempDir()},
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	// https://gitlab/acme/payments-api.git's shape: <root>/acme/payments-api.git.
	return srv.URL + "/" + filepath.Base(filepath.Dir(dir)) + "/" + filepath.Base(dir)
}

// pushFor rewrites the push fixture for a repository URL and commit.
func pushFor(t *testing.T, env *harness.Env, repo, sha string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(payload(t, env, "push.json"), &m); err != nil {
		t.Fatal(err)
	}
	m["after"], m["checkout_sha"] = sha, sha
	m["project"].(map[string]any)["git_http_url"] = repo
	commits := m["commits"].([]any)
	commits[len(commits)-1].(map[string]any)["id"] = sha
	b, _ := json.Marshal(m)
	return b
}

// TestSourcePushBuildsMultiArchIndex follows a push of the test project
// (testdata/hello) through the whole product: the real Kaniko executor
// builds linux/amd64 and linux/arm64 on nodes of those architectures, the
// merge pushes the OCI index; a second delivery of the push rebuilds from
// the per-platform Kaniko caches and gets the same digests, as does a
// rebuild with an empty cache (--reproducible); tag pushes then release
// the index without a rebuild.
func TestSourcePushBuildsMultiArchIndex(t *testing.T) {
	w := setUp(t)
	reg := w.env.StartRegistry(t)
	// Images go to the test's registry.
	// The test project is served over plain HTTP on loopback (git's own
	// smart HTTP server), which kaniko-build lets git use only with
	// git-allow-http "true": set through the binding, as a cluster with a
	// GitLab without TLS would. The ciel steps' image is given as an
	// installation from a release gives it (make release
	// KO_DOCKER_REPO=registry.example.com/ciel), through the TriggerTemplates'
	// ciel-image param: the pod runner refuses the Tasks' unresolved ko://
	// defaults as a kubelet would, so every Pipeline must pass it on.
	patch := fmt.Sprintf(`{"spec":{"params":[{"name":"registry","value":%q},{"name":"git-allow-http","value":"true"},{"name":"ciel-image","value":%q}]}}`,
		reg.Host, cielImage)
	if _, err := w.env.Triggers.TriggersV1beta1().TriggerBindings(w.ns).Patch(context.Background(), "ciel-registry",
		types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	base := w.env.PushBaseImages(t, reg.Host)
	repo, sha := gitRepo(t, w.env, base)
	runner := w.env.StartPodRunner(t, []string{w.ns}, harness.WithSandboxBind(repo))
	image := reg.Host + "/acme/payments-api"
	gitURL := gitHTTPServer(t, repo)
	push := pushFor(t, w.env, gitURL, sha)

	start := time.Now()
	w.post(t, "Push Hook", "s3cret", "delivery-build", push)
	first := w.waitNewRun(t, nil)
	t.Logf("push to finished multi-arch index (cold Kaniko caches): %s", time.Since(start).Round(time.Millisecond))
	cold := kanikoBuilds(t, w.env, runner, w.ns, first.Name)

	// The index under the commit tag sha-<SHA> holds exactly linux/amd64 and linux/arm64,
	// each child's config saying so, with the program built for it; the
	// amd64 child holds what its RUN wrote.
	idx, err := remote.Index(mustRef(t, image+":sha-"+sha))
	if err != nil {
		t.Fatalf("reading the index: %v", err)
	}
	indexDigest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got := pipelineResult(first, "IMAGE_DIGEST"); got != indexDigest.String() {
		t.Errorf("the PipelineRun's IMAGE_DIGEST is %q, the tag points at %s", got, indexDigest)
	}
	children := indexChildren(t, idx)
	if len(children) != 2 || children["linux/amd64"] == "" || children["linux/arm64"] == "" {
		t.Fatalf("index children %v, want linux/amd64 and linux/arm64", children)
	}
	for plat, d := range children {
		arch := strings.TrimPrefix(plat, "linux/")
		img, err := idx.Image(mustHash(t, d))
		if err != nil {
			t.Fatal(err)
		}
		checkHelloImage(t, img, arch)
	}

	// Cold builds look up their own platform's cache repository only, and
	// find nothing there.
	for arch, b := range cold {
		repos, hits := cacheLookups(b.log)
		if want := image + "/cache-linux-" + arch; len(repos) != 1 || repos[0] != want {
			t.Errorf("cold %s build looked up cached layers in %v, want only %s", arch, repos, want)
		}
		if hits != 0 {
			t.Errorf("cold %s build used %d cached layers", arch, hits)
		}
	}

	// A second delivery of the push (a new webhook, same commit) runs the
	// pipeline again: every platform's build hits its own cache, and the
	// result is the same images and index.
	start = time.Now()
	w.post(t, "Push Hook", "s3cret", "delivery-build-again", push)
	second := w.waitNewRun(t, []string{first.Name})
	t.Logf("push to finished multi-arch index (warm Kaniko caches): %s", time.Since(start).Round(time.Millisecond))
	cached := kanikoBuilds(t, w.env, runner, w.ns, second.Name)
	for arch, b := range cached {
		repos, hits := cacheLookups(b.log)
		if want := image + "/cache-linux-" + arch; len(repos) != 1 || repos[0] != want {
			t.Errorf("cached %s build looked up cached layers in %v, want only %s", arch, repos, want)
		}
		if hits == 0 {
			t.Errorf("the second %s build used no cached layer:\n%s", arch, b.log)
		}
		t.Logf("kaniko build linux/%s: cold %s, cached %s (%d cached layers)", arch,
			cold[arch].took.Round(time.Millisecond), b.took.Round(time.Millisecond), hits)
	}
	if got := pipelineResult(second, "IMAGE_DIGEST"); got != indexDigest.String() {
		t.Errorf("the cached rebuild's index is %s, want the first run's %s", got, indexDigest)
	}
	// Neither platform's cache holds a layer of the other's.
	amdLayers := cacheLayers(t, image+"/cache-linux-amd64")
	armLayers := cacheLayers(t, image+"/cache-linux-arm64")
	if len(amdLayers) == 0 || len(armLayers) == 0 {
		t.Errorf("cache layers: %d for amd64, %d for arm64; want some for both", len(amdLayers), len(armLayers))
	}
	for l := range amdLayers {
		if armLayers[l] {
			t.Errorf("layer %s is cached for both platforms", l)
		}
	}

	// --reproducible: the same commit rebuilt from scratch (an empty cache
	// repository) gives the same images, hence the same index.
	fresh := first.DeepCopy()
	fresh.ObjectMeta = metav1.ObjectMeta{Name: "rebuild-without-cache", Namespace: w.ns, Labels: first.Labels, Annotations: first.Annotations}
	fresh.Status = pipelinev1.PipelineRunStatus{}
	setParam(fresh, "cache-repo", image+"/fresh-cache")
	if _, err := w.env.Tekton.TektonV1().PipelineRuns(w.ns).Create(context.Background(), fresh, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	third := w.env.WaitPipelineRunDone(t, w.ns, fresh.Name, 10*time.Minute)
	if c := third.Status.GetCondition(apis.ConditionSucceeded); c == nil || c.Status != corev1.ConditionTrue {
		t.Fatalf("PipelineRun %s: %+v", third.Name, c)
	}
	for arch, b := range kanikoBuilds(t, w.env, runner, w.ns, third.Name) {
		if _, hits := cacheLookups(b.log); hits != 0 {
			t.Errorf("the rebuild without cache used %d cached layers for %s", hits, arch)
		}
		t.Logf("kaniko build linux/%s without cache: %s", arch, b.took.Round(time.Millisecond))
	}
	if got := pipelineResult(third, "IMAGE_DIGEST"); got != indexDigest.String() {
		t.Errorf("the rebuild without cache made index %s, want %s", got, indexDigest)
	}
	idx3, err := remote.Index(mustRef(t, pipelineResult(third, "IMAGE_URL")))
	if err != nil {
		t.Fatal(err)
	}
	if got := indexChildren(t, idx3); fmt.Sprint(got) != fmt.Sprint(children) {
		t.Errorf("rebuilt children %v, want %v", got, children)
	}

	// Each build pod ran on a node of its architecture.
	pods, err := w.env.Kube.CoreV1().Pods(w.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	builds := 0
	for _, p := range pods.Items {
		arch := p.Spec.NodeSelector["kubernetes.io/arch"]
		if arch == "" {
			continue
		}
		builds++
		if p.Spec.NodeName != "node-"+arch {
			t.Errorf("pod %s wants %s but ran on %s", p.Name, arch, p.Spec.NodeName)
		}
	}
	if builds != 6 {
		t.Errorf("%d pods pinned to an architecture, want the 2 builds of 3 runs", builds)
	}

	// Scenario 6: tag pushes release the index just built, without a rebuild.
	repoRef := image
	release := func(tag string) {
		t.Helper()
		before, err := w.env.Tekton.TektonV1().PipelineRuns(w.ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var seen []string
		for _, p := range before.Items {
			seen = append(seen, p.Name)
		}
		w.post(t, "Tag Push Hook", "s3cret", "delivery-"+tag, tagPushFor(t, w.env, gitURL, sha, tag))
		pr := w.waitNewRun(t, seen)
		if pr.Spec.PipelineRef == nil || pr.Spec.PipelineRef.Name != "release" || pr.Annotations["ciel.dev/gitlab-ref"] != "refs/tags/"+tag {
			t.Fatalf("tag %s started %s (%+v, ref %q), want the release pipeline", tag, pr.Name, pr.Spec.PipelineRef, pr.Annotations["ciel.dev/gitlab-ref"])
		}
	}
	digestOf := func(tag string) string {
		t.Helper()
		d, err := remote.Head(mustRef(t, repoRef+":"+tag))
		if err != nil {
			return "absent"
		}
		return d.Digest.String()
	}
	release("v1.2.3")
	for _, tag := range []string{"v1.2.3", "v1.2", "v1", "latest"} {
		if got := digestOf(tag); got != indexDigest.String() {
			t.Errorf("after v1.2.3: %s is %s, want the built index %s", tag, got, indexDigest)
		}
	}
	release("v1.1.9")
	if got := digestOf("v1.1"); got != indexDigest.String() {
		t.Errorf("after v1.1.9: v1.1 is %s, want %s", got, indexDigest)
	}
	for _, tag := range []string{"v1", "latest", "v1.2"} {
		if got := digestOf(tag); got != indexDigest.String() {
			t.Errorf("after v1.1.9: %s moved to %s", tag, got)
		}
	}
	// No rebuild: the release pipelines ran no build pod.
	pods, err = w.env.Kube.CoreV1().Pods(w.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	archPods := 0
	for _, p := range pods.Items {
		if p.Spec.NodeSelector["kubernetes.io/arch"] != "" {
			archPods++
		}
	}
	if archPods != builds {
		t.Errorf("%d build pods after the releases, want the %d of the branch builds", archPods, builds)
	}
}

// cielImage is the ciel image the scenarios install with, shaped as a
// release names it; the pod runner runs the ciel binary built from this
// repository for it (harness.CielImage).
const cielImage = "registry.example.com/ciel/ciel:e2e"

// waitNewRun waits for a PipelineRun not named in seen, then for it to
// succeed, and returns it.
func (w *world) waitNewRun(t *testing.T, seen []string) *pipelinev1.PipelineRun {
	t.Helper()
	prs := w.env.WaitPipelineRuns(t, w.ns, len(seen)+1, 90*time.Second)
	for _, p := range prs {
		if slices.Contains(seen, p.Name) {
			continue
		}
		pr := w.env.WaitPipelineRunDone(t, w.ns, p.Name, 10*time.Minute)
		if c := pr.Status.GetCondition(apis.ConditionSucceeded); c == nil || c.Status != corev1.ConditionTrue {
			t.Fatalf("PipelineRun %s: %+v", pr.Name, c)
		}
		return pr
	}
	t.Fatalf("no new PipelineRun besides %v", seen)
	return nil
}

func pipelineResult(pr *pipelinev1.PipelineRun, name string) string {
	for _, r := range pr.Status.Results {
		if r.Name == name {
			return r.Value.StringVal
		}
	}
	return ""
}

func setParam(pr *pipelinev1.PipelineRun, name, value string) {
	for i, p := range pr.Spec.Params {
		if p.Name == name {
			pr.Spec.Params[i].Value = *pipelinev1.NewStructuredValues(value)
			return
		}
	}
	pr.Spec.Params = append(pr.Spec.Params, pipelinev1.Param{Name: name, Value: *pipelinev1.NewStructuredValues(value)})
}

// indexChildren maps each child's platform (as its config states it,
// checked against the index's descriptor) to its digest.
func indexChildren(t *testing.T, idx v1.ImageIndex) map[string]string {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if d.Platform == nil || d.Platform.OS != cf.OS || d.Platform.Architecture != cf.Architecture {
			t.Errorf("child %s: index says %v, config says %s/%s", d.Digest, d.Platform, cf.OS, cf.Architecture)
		}
		out[cf.OS+"/"+cf.Architecture] = d.Digest.String()
	}
	return out
}

func mustHash(t *testing.T, s string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// kanikoBuild is one kaniko-build pod's Kaniko step, as the pod runner ran it.
type kanikoBuild struct {
	took time.Duration
	log  string
}

// kanikoBuilds returns the Kaniko steps of a PipelineRun's pods by the
// architecture of the node they ran on; it fails unless there is exactly
// one for amd64 and one for arm64.
func kanikoBuilds(t *testing.T, env *harness.Env, runner *podrunner.Runner, ns, pipelineRun string) map[string]kanikoBuild {
	t.Helper()
	pods, err := env.Kube.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "tekton.dev/pipelineRun=" + pipelineRun})
	if err != nil {
		t.Fatal(err)
	}
	mine := map[string]bool{}
	for _, p := range pods.Items {
		mine[p.Name] = true
	}
	out := map[string]kanikoBuild{}
	for _, rec := range runner.Records() {
		if rec.Namespace != ns || !mine[rec.Name] {
			continue
		}
		for _, c := range rec.Containers {
			if c.Rule != "kaniko" {
				continue
			}
			b, err := os.ReadFile(c.LogFile)
			if err != nil {
				t.Fatal(err)
			}
			if c.Duration <= 0 || c.ExitCode != 0 {
				t.Errorf("%s: Kaniko step of %s: exit code %d after %s", pipelineRun, rec.Name, c.ExitCode, c.Duration)
			}
			if _, dup := out[rec.Arch]; dup {
				t.Errorf("%s: two Kaniko builds on %s nodes", pipelineRun, rec.Arch)
			}
			out[rec.Arch] = kanikoBuild{took: c.Duration, log: ansi.ReplaceAllString(string(b), "")}
		}
	}
	if len(out) != 2 || out["amd64"].log == "" || out["arm64"].log == "" {
		t.Fatalf("%s: Kaniko ran on %d nodes' architectures, want amd64 and arm64", pipelineRun, len(out))
	}
	return out
}

var (
	ansi          = regexp.MustCompile(`\x1b\[[0-9;]*m`)
	cacheCheckLog = regexp.MustCompile(`Checking for cached layer (\S+)\.\.\.`)
)

// cacheLookups returns the cache repositories a Kaniko log shows lookups
// in, and how many commands it took from the cache.
func cacheLookups(log string) (repos []string, hits int) {
	for _, m := range cacheCheckLog.FindAllStringSubmatch(log, -1) {
		repo := m[1]
		if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
			repo = repo[:i]
		}
		if !slices.Contains(repos, repo) {
			repos = append(repos, repo)
		}
	}
	return repos, strings.Count(log, "Using caching version of cmd")
}

// cacheLayers returns the digests of the layers Kaniko cached in repo.
func cacheLayers(t *testing.T, repo string) map[string]bool {
	t.Helper()
	r, err := name.NewRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	tags, err := remote.List(r)
	if err != nil {
		t.Fatalf("listing %s: %v", repo, err)
	}
	out := map[string]bool{}
	for _, tag := range tags {
		img, err := remote.Image(r.Tag(tag))
		if err != nil {
			t.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				t.Fatal(err)
			}
			out[d.String()] = true
		}
	}
	return out
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tagPushFor rewrites the tag push fixture for a tag of a commit of the
// repository served at repo (its clone URL, as in the branch push).
func tagPushFor(t *testing.T, env *harness.Env, repo, sha, tag string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(payload(t, env, "tag_push.json"), &m); err != nil {
		t.Fatal(err)
	}
	m["ref"] = "refs/tags/" + tag
	m["checkout_sha"] = sha
	m["project"].(map[string]any)["git_http_url"] = repo
	if commits, ok := m["commits"].([]any); ok && len(commits) > 0 {
		commits[0].(map[string]any)["id"] = sha
	}
	b, _ := json.Marshal(m)
	return b
}

// TestTruncatedPushAsksGitLabOnce is scenario 4: GitLab lists 20 of a
// push's 25 commits; the interceptor completes the changed files from the
// GitLab API (a stub serving the compare API's shapes) once, and decides on
// the complete list.
func TestTruncatedPushAsksGitLabOnce(t *testing.T) {
	var calls atomic.Int32
	gl := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/repository/compare") || r.Header.Get("PRIVATE-TOKEN") != "glpat-e2e" {
			http.NotFound(w, r)
			return
		}
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"commits":[],"compare_timeout":false,"compare_same_ref":false,"diffs":[`+
			`{"old_path":"src/ledger/export.go","new_path":"src/ledger/export.go","new_file":false,"renamed_file":false,"deleted_file":false,"diff":""}]}`)
	}))
	defer gl.Close()
	api, err := gitlabapi.New(gl.URL, "glpat-e2e")
	if err != nil {
		t.Fatal(err)
	}
	w := setUp(t, api)
	w.post(t, "Push Hook", "s3cret", "delivery-truncated", payload(t, w.env, "truncated_push.json"))
	prs := w.env.WaitPipelineRuns(t, w.ns, 1, 90*time.Second)
	if got := prs[0].Annotations["ciel.dev/changed-files-source"]; got != "api" {
		t.Errorf("changed files source %q, want api", got)
	}
	if got := prs[0].Annotations["ciel.dev/changed-files-count"]; got != "1" {
		t.Errorf("changed files count %q, want the API's 1", got)
	}
	// The release trigger also saw the push (and refused it by event type)
	// without asking GitLab: one compare in all.
	time.Sleep(2 * time.Second)
	if n := calls.Load(); n != 1 {
		t.Errorf("GitLab compare API called %d times, want 1", n)
	}
}
