package scenarios

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	"google.golang.org/grpc/codes"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/ciel-ci/ciel/interceptor/gitlabapi"
	"github.com/ciel-ci/ciel/interceptor/policy"
	"github.com/ciel-ci/ciel/internal/gitlabtest"
	"github.com/ciel-ci/ciel/test/e2e/harness"
)

// The merge request of the policies' test payloads (policies/testdata):
// !57 of project 42 (acme/payments-api), head 87b8ab59…; its fork twin
// comes from project 977.
const (
	mrProject = "42"
	mrIID     = 57
	mrHead    = "87b8ab59efd0b066aec5c7419999f9abea3db40e"
)

// TestMergeRequestBuildsCodeChangesOnly is scenario 8: merge request
// events through the EventListener's build-on-merge-request trigger
// (policy build-mr-on-change), the MR's changed files coming from
// gitlabtest's HTTPS GitLab (merge request diffs API, every request
// counted), one after another on the same cluster:
//
//   - the MR opened, touching src/ → one build-multiarch PipelineRun of the
//     MR head tagged mr-<iid>-<sha8> and nothing else; one diffs request;
//   - a label edit of the same MR → nothing, and no request (the files are
//     not even looked up in the interceptor's cache);
//   - the same MR from a fork → FailedPrecondition naming the fork, nothing,
//     no request.
//
// The push and tag triggers see every MR event too and refuse it by event
// type, without asking GitLab.
func TestMergeRequestBuildsCodeChangesOnly(t *testing.T) {
	const token = "glpat-e2e"
	gl := gitlabtest.NewTLSServer(t, token)
	gl.SetMergeRequestDiffs(mrProject, mrIID, []gitlabtest.Diff{
		{OldPath: "src/refunds/api.go", NewPath: "src/refunds/api.go"},
		{OldPath: "src/refunds/routes.go", NewPath: "src/refunds/routes.go", NewFile: true},
		{OldPath: "README.md", NewPath: "README.md"},
	})
	api, err := gitlabapi.New(gl.URL, token, gitlabapi.WithHTTPClient(gl.Client()))
	if err != nil {
		t.Fatal(err)
	}
	w := setUp(t, api)

	cases := []struct {
		name, fixture string
		// The build-on-merge-request trigger's answer.
		wantContinue bool
		wantCode     codes.Code
		wantMessage  string
		// After the event: PipelineRuns in the namespace and MR diffs
		// requests GitLab received, from the start.
		wantRuns, wantDiffRequests int
	}{
		{
			name: "opened, touching src/", fixture: "mr-open.http",
			wantContinue: true, wantCode: codes.OK,
			wantRuns: 1, wantDiffRequests: 1,
		},
		{
			name: "label edit of the same MR", fixture: "mr_label_edit.json",
			wantCode: codes.FailedPrecondition, wantMessage: "policy build-mr-on-change did not return true",
			wantRuns: 1, wantDiffRequests: 1,
		},
		{
			name: "from a fork", fixture: "mr_fork_open.json",
			wantCode:    codes.FailedPrecondition,
			wantMessage: "merge request !57 comes from a fork (project 977 into project 42): building it would run the fork's code with this project's credentials",
			wantRuns:    1, wantDiffRequests: 1,
		},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			event, body := mrDelivery(t, w.env.RepoRoot, c.fixture)
			before := len(w.rec.responses())
			start := time.Now()
			w.post(t, event, "s3cret", "mr-delivery-"+c.fixture, body)

			got := w.mergeRequestAnswer(t, before)
			if got.Continue != c.wantContinue || got.Status.Code != c.wantCode || !strings.Contains(got.Status.Message, c.wantMessage) {
				t.Fatalf("build-on-merge-request answered continue %v, %s %q; want continue %v, %s containing %q",
					got.Continue, got.Status.Code, got.Status.Message, c.wantContinue, c.wantCode, c.wantMessage)
			}
			if c.wantContinue {
				pr := w.env.WaitPipelineRuns(t, w.ns, c.wantRuns, 90*time.Second)[0]
				t.Logf("MR event to PipelineRun %s: %s", pr.Name, time.Since(start).Round(time.Millisecond))
				checkMergeRequestRun(t, &pr)
				w.tektonStarted(t, pr.Name)
			}
			w.pipelineRunsStay(t, c.wantRuns, 3*time.Second)

			diffs, compares := gl.Requests()
			if diffs != c.wantDiffRequests || compares != 0 {
				t.Errorf("GitLab received %d MR diffs and %d compare requests after event %d, want %d and 0",
					diffs, compares, i+1, c.wantDiffRequests)
			}
			t.Logf("GitLab API requests after this event: %d MR diffs, %d compare", diffs, compares)
		})
	}
	// Only the opened MR read its files: the label edit and the fork never
	// asked for them, not even from the interceptor's cache.
	if req, hits := api.Stats().Requests.Load(), api.Stats().CacheHits.Load(); req != 1 || hits != 0 {
		t.Errorf("the interceptor's GitLab client made %d requests and %d cache hits, want 1 and 0", req, hits)
	}
}

// mrDelivery returns the X-Gitlab-Event and the body of a merge request
// payload of policies/testdata: a .http file is a whole recorded request
// (read as cel-eval and the policy cases read it), a .json file a Merge
// Request Hook body.
func mrDelivery(t *testing.T, root, fixture string) (string, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "policies", "testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Ext(fixture) != ".http" {
		return "Merge Request Hook", b
	}
	req, err := policy.ParseRequest(b)
	if err != nil {
		t.Fatalf("%s: %v", fixture, err)
	}
	return req.Header.Get("X-Gitlab-Event"), req.Body
}

// mergeRequestAnswer waits for the three triggers' answers to the delivery
// posted after the before-th response: the push and tag triggers refuse a
// merge request by event type; it returns the merge request trigger's.
func (w *world) mergeRequestAnswer(t *testing.T, before int) triggersv1.InterceptorResponse {
	t.Helper()
	rs := w.waitAnswers(t, before+3)[before:]
	var mine []triggersv1.InterceptorResponse
	for _, r := range rs {
		if r.Status.Code == codes.FailedPrecondition && strings.Contains(r.Status.Message, `event type "Merge Request Hook" is not allowed`) {
			continue
		}
		mine = append(mine, r)
	}
	if len(mine) != 1 {
		t.Fatalf("answers to one merge request event %+v: want two refusals by event type and one other", rs)
	}
	return mine[0]
}

// waitAnswers waits until the interceptor has given n responses.
func (w *world) waitAnswers(t *testing.T, n int) []triggersv1.InterceptorResponse {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if rs := w.rec.responses(); len(rs) >= n {
			return rs
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the interceptor gave %d responses in 60s, want %d", len(w.rec.responses()), n)
	return nil
}

// pipelineRunsStay fails if the namespace's PipelineRuns are not exactly
// n for d.
func (w *world) pipelineRunsStay(t *testing.T, n int, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if got := w.pipelineRuns(t); got != n {
			t.Fatalf("%d PipelineRun(s) in the namespace, want %d", got, n)
		}
	}
}

// checkMergeRequestRun checks the PipelineRun config/triggers made of the
// opened MR: build-multiarch of the MR head, tagged mr-<iid>-<sha8> and
// nothing else, with the reporter's labels on the head SHA and the changed
// files the GitLab stub listed.
func checkMergeRequestRun(t *testing.T, pr *pipelinev1.PipelineRun) {
	t.Helper()
	if !strings.HasPrefix(pr.Name, "build-mr-") || pr.Spec.PipelineRef == nil || pr.Spec.PipelineRef.Name != "build-multiarch" {
		t.Errorf("PipelineRun %s runs %+v, want build-mr-… running build-multiarch", pr.Name, pr.Spec.PipelineRef)
	}
	got := map[string]string{}
	for _, p := range pr.Spec.Params {
		v := p.Value.StringVal
		if p.Value.Type == pipelinev1.ParamTypeArray {
			v = fmt.Sprintf("%q", p.Value.ArrayVal)
		}
		got["param "+p.Name] = v
	}
	for k, v := range pr.Labels {
		got["label "+k] = v
	}
	for k, v := range pr.Annotations {
		got["annotation "+k] = v
	}
	want := map[string]string{
		"param revision":   mrHead,
		"param tag":        fmt.Sprintf("mr-%d-%s", mrIID, mrHead[:8]),
		"param extra-tags": "[]",
		"param image":      "registry.example.com/acme/payments-api",
		"param git-url":    "https://gitlab.example.com/acme/payments-api.git",

		"label ciel.dev/gitlab-sha":        mrHead,
		"label ciel.dev/gitlab-mr-iid":     strconv.Itoa(mrIID),
		"label ciel.dev/gitlab-project-id": mrProject,
		"label ciel.dev/pipeline":          "build-multiarch",

		"annotation ciel.dev/gitlab-event":         "merge_request",
		"annotation ciel.dev/gitlab-project":       "acme/payments-api",
		"annotation ciel.dev/gitlab-ref":           "feature/Refunds-API",
		"annotation ciel.dev/gitlab-target-branch": "main",
		"annotation ciel.dev/changed-files-source": "api",
		"annotation ciel.dev/changed-files-count":  "3",
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			delete(got, k)
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("PipelineRun %s (-want +got):\n%s", pr.Name, d)
	}
}

// tektonStarted waits until the Tekton controller has accepted the
// PipelineRun (its params against build-multiarch's) and created the
// TaskRun of its first task, plan; a PipelineRun that fails first fails
// the test with Tekton's reason.
func (w *world) tektonStarted(t *testing.T, name string) {
	t.Helper()
	harness.Eventually(t, 60*time.Second, "TaskRun "+name+"-plan", func(ctx context.Context) (bool, error) {
		pr, err := w.env.Tekton.TektonV1().PipelineRuns(w.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if c := pr.Status.GetCondition(apis.ConditionSucceeded); c != nil && c.IsFalse() {
			return false, fmt.Errorf("PipelineRun %s failed: %s: %s", name, c.Reason, c.Message)
		}
		trs, err := w.env.Tekton.TektonV1().TaskRuns(w.ns).List(ctx, metav1.ListOptions{LabelSelector: "tekton.dev/pipelineRun=" + name})
		if err != nil {
			return false, err
		}
		for _, tr := range trs.Items {
			if tr.Labels["tekton.dev/pipelineTask"] == "plan" {
				return true, nil
			}
		}
		return false, nil
	})
}
