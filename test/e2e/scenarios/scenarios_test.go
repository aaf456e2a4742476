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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ciel-ci/ciel/interceptor/dedup"
	"github.com/ciel-ci/ciel/interceptor/engine"
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
func setUp(t *testing.T) *world {
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
	srv, err := server.New(server.Config{Engine: eng, Policies: pols, Dedup: dd,
		Secrets: secretsFromAPI{env: env}})
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
