package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ciel-ci/ciel/test/e2e/harness"
)

// statusRecorder is a GitLab commit status API recording every call; the
// first failures calls answer 500.
type statusRecorder struct {
	mu       sync.Mutex
	posts    []map[string]string
	failures int
}

func (g *statusRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("PRIVATE-TOKEN") != "glpat-reporter" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodGet { // existing statuses of a commit
		fmt.Fprint(w, "[]")
		return
	}
	if !strings.Contains(r.URL.Path, "/statuses/") || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failures > 0 {
		g.failures--
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `{"message":"500 Internal Server Error"}`)
		return
	}
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	post := map[string]string{"path": r.URL.Path}
	for k, v := range body {
		post[k] = fmt.Sprint(v)
	}
	for k, v := range r.URL.Query() {
		post[k] = v[0]
	}
	g.posts = append(g.posts, post)
	fmt.Fprintf(w, `{"id":%d,"status":%q}`, len(g.posts), post["state"])
}

func (g *statusRecorder) states(sha string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, p := range g.posts {
		if strings.HasSuffix(p["path"], "/statuses/"+sha) {
			out = append(out, p["state"])
		}
	}
	return out
}

// TestReporterOnRealAPIServer runs the real reporter binary against the
// real apiserver and Tekton controller: PipelineRuns labelled as ciel's
// TriggerTemplates label them get commit statuses, posted once per state,
// retried through a GitLab 500, for a cluster added to the kubeconfig
// directory while the reporter runs.
func TestReporterOnRealAPIServer(t *testing.T) {
	env := suite.Env(t)
	ns := env.NewNamespace(t)
	gl := &statusRecorder{failures: 1}
	srv := httptest.NewServer(gl)
	defer srv.Close()

	dir := t.TempDir()
	kcDir := filepath.Join(dir, "clusters")
	if err := os.MkdirAll(kcDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "reporter")
	if err := harness.GoBuild(context.Background(), env.RepoRoot, "./cmd/reporter", bin); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--kubeconfig-dir", kcDir, "--gitlab-url", srv.URL, "--listen", "127.0.0.1:0",
		"--rescan", "1s", "--namespace", ns, "--log-format", "text")
	cmd.Env = append(os.Environ(), "GITLAB_TOKEN=glpat-reporter")
	logs, err := os.Create(filepath.Join(dir, "reporter.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			t.Logf("reporter log:\n%s", b)
		}
	}()

	// The cluster appears while the reporter runs.
	kc, err := os.ReadFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(kcDir, "e2e.yaml"), kc, 0o600); err != nil {
		t.Fatal(err)
	}

	const sha = "c95fc90a82e297e2b5fcd3722b931d149a388884"
	pr := &pipelinev1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "build-reported", Namespace: ns,
			Labels: map[string]string{"ciel.dev/gitlab-project-id": "42", "ciel.dev/gitlab-sha": sha, "ciel.dev/pipeline": "build-multiarch"},
			Annotations: map[string]string{"ciel.dev/gitlab-project": "acme/payments-api", "ciel.dev/gitlab-ref": "refs/heads/main",
				"ciel.dev/gitlab-url": "https://gitlab.example.com/acme/payments-api", "ciel.dev/gitlab-event": "push"}},
		Spec: pipelinev1.PipelineRunSpec{
			Status: pipelinev1.PipelineRunSpecStatusPending,
			PipelineSpec: &pipelinev1.PipelineSpec{Tasks: []pipelinev1.PipelineTask{{
				Name: "noop",
				TaskSpec: &pipelinev1.EmbeddedTask{TaskSpec: pipelinev1.TaskSpec{Steps: []pipelinev1.Step{{
					Name: "noop", Image: "ghcr.io/ciel-ci/ciel:v0.1.0", Command: []string{"ciel"}, Args: []string{"--help"}}}}},
			}}},
		},
	}
	ctx := context.Background()
	if _, err := env.Tekton.TektonV1().PipelineRuns(ns).Create(ctx, pr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitStates(t, gl, sha, []string{"pending"})

	// Touch it (a label change): no second post of the same state.
	patch := []byte(`{"metadata":{"labels":{"touched":"yes"}}}`)
	if _, err := env.Tekton.TektonV1().PipelineRuns(ns).Patch(ctx, pr.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	// Cancel it: the run ends canceled.
	cancel := []byte(`{"spec":{"status":"Cancelled"}}`)
	if _, err := env.Tekton.TektonV1().PipelineRuns(ns).Patch(ctx, pr.Name, types.MergePatchType, cancel, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitStates(t, gl, sha, []string{"pending", "canceled"})
	time.Sleep(2 * time.Second)
	if got := gl.states(sha); strings.Join(got, ",") != "pending,canceled" {
		t.Errorf("statuses %v, want pending then canceled, each once", got)
	}
	gl.mu.Lock()
	first := gl.posts[0]
	gl.mu.Unlock()
	if first["name"] != "ciel/build-multiarch" || first["ref"] != "main" || !strings.Contains(first["path"], "/projects/42/") {
		t.Errorf("first status %v", first)
	}

	// A run whose Pipeline does not exist fails, with the reason.
	const sha2 = "87b8ab59e1c2d3f4a5b6c7d8e9f0a1b2c3d4e5f6"
	bad := pr.DeepCopy()
	bad.Name, bad.ResourceVersion = "build-missing", ""
	bad.Labels["ciel.dev/gitlab-sha"] = sha2
	bad.Spec.Status = ""
	bad.Spec.PipelineSpec = nil
	bad.Spec.PipelineRef = &pipelinev1.PipelineRef{Name: "does-not-exist"}
	if _, err := env.Tekton.TektonV1().PipelineRuns(ns).Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if s := gl.states(sha2); len(s) > 0 && s[len(s)-1] == "failed" {
			gl.mu.Lock()
			last := gl.posts[len(gl.posts)-1]
			gl.mu.Unlock()
			if !strings.Contains(strings.ToLower(last["description"]), "pipeline") {
				t.Errorf("failure description %q does not say why", last["description"])
			}
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no failed status for the broken run: %v", gl.states(sha2))
}

func waitStates(t *testing.T, gl *statusRecorder, sha string, want []string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Join(gl.states(sha), ",") == strings.Join(want, ",") {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("statuses %v, want %v", gl.states(sha), want)
}
