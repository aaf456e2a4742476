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
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
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
}

// setUp installs config/triggers (with the Tasks and Pipelines), the webhook
// Secret, ciel's interceptor as ClusterInterceptor "ciel", and starts the
// EventListener's sink.
func setUp(t *testing.T, api ...server.ChangedFilesAPI) *world {
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
	rec := &recorder{h: srv}
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
	return &world{env: env, ns: ns, sink: sink, rec: rec}
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

// gitRepo makes a local repository with a Dockerfile and sources and
// returns its path and HEAD commit.
func gitRepo(t *testing.T) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "payments-api.git")
	run := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=ciel", "GIT_AUTHOR_EMAIL=ciel@example.com",
			"GIT_COMMITTER_NAME=ciel", "GIT_COMMITTER_EMAIL=ciel@example.com", "GIT_CONFIG_GLOBAL=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if err := os.MkdirAll(filepath.Join(dir, "cmd", "server"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY cmd /cmd\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "cmd", "server", "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644)
	run("init", "-q", "-b", "main")
	run("add", ".")
	run("commit", "-q", "-m", "first")
	return dir, run("rev-parse", "HEAD")
}

// pushFor rewrites the push fixture for a local repository and commit.
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

func TestSourcePushBuildsMultiArchIndex(t *testing.T) {
	w := setUp(t)
	reg := w.env.StartRegistry(t)
	// Images go to the test's registry.
	patch := fmt.Sprintf(`{"spec":{"params":[{"name":"registry","value":%q}]}}`, reg.Host)
	if _, err := w.env.Triggers.TriggersV1beta1().TriggerBindings(w.ns).Patch(context.Background(), "ciel-registry",
		types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	repo, sha := gitRepo(t)
	w.env.StartPodRunner(t, []string{w.ns}, harness.WithSandboxBind(repo))

	start := time.Now()
	w.post(t, "Push Hook", "s3cret", "delivery-build", pushFor(t, w.env, repo, sha))
	prs := w.env.WaitPipelineRuns(t, w.ns, 1, 90*time.Second)
	pr := w.env.WaitPipelineRunDone(t, w.ns, prs[0].Name, 10*time.Minute)
	if c := pr.Status.GetCondition(apis.ConditionSucceeded); c == nil || c.Status != corev1.ConditionTrue {
		t.Fatalf("PipelineRun %s: %+v", pr.Name, c)
	}
	t.Logf("push to finished multi-arch index: %s", time.Since(start).Round(time.Millisecond))

	// The index under the short SHA holds exactly linux/amd64 and linux/arm64,
	// each child's config saying so.
	ref, err := name.ParseReference(fmt.Sprintf("%s/acme/payments-api:%s", reg.Host, sha[:8]))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatalf("reading the index: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
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
		got = append(got, cf.OS+"/"+cf.Architecture)
	}
	if strings.Join(got, ",") != "linux/amd64,linux/arm64" {
		t.Errorf("index platforms %v, want linux/amd64 and linux/arm64", got)
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
	if builds != 2 {
		t.Errorf("%d pods pinned to an architecture, want the 2 builds", builds)
	}

	// Scenario 6: tag pushes release the index just built, without a rebuild.
	indexDigest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	repoRef := fmt.Sprintf("%s/acme/payments-api", reg.Host)
	release := func(tag string, want int) {
		t.Helper()
		w.post(t, "Tag Push Hook", "s3cret", "delivery-"+tag, tagPushFor(t, w.env, repo, sha, tag))
		prs := w.env.WaitPipelineRuns(t, w.ns, want, 90*time.Second)
		for _, p := range prs {
			if p.Spec.PipelineRef != nil && p.Spec.PipelineRef.Name == "release" && p.Annotations["ciel.dev/gitlab-ref"] == "refs/tags/"+tag {
				pr := w.env.WaitPipelineRunDone(t, w.ns, p.Name, 5*time.Minute)
				if c := pr.Status.GetCondition(apis.ConditionSucceeded); c == nil || c.Status != corev1.ConditionTrue {
					t.Fatalf("release %s: %+v", tag, c)
				}
				return
			}
		}
		t.Fatalf("no release PipelineRun for %s among %d", tag, len(prs))
	}
	digestOf := func(tag string) string {
		t.Helper()
		d, err := remote.Head(mustRef(t, repoRef+":"+tag))
		if err != nil {
			return "absent"
		}
		return d.Digest.String()
	}
	release("v1.2.3", 2)
	for _, tag := range []string{"v1.2.3", "v1.2", "v1", "latest"} {
		if got := digestOf(tag); got != indexDigest.String() {
			t.Errorf("after v1.2.3: %s is %s, want the built index %s", tag, got, indexDigest)
		}
	}
	release("v1.1.9", 3)
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
	if archPods != 2 {
		t.Errorf("%d build pods after the releases, want the 2 of the branch build", archPods)
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tagPushFor rewrites the tag push fixture for a tag of a local commit.
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
