package scenarios

import (
	"bytes"
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
	"google.golang.org/grpc/codes"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

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
// (policy build-mr-on-change), the MR's changed files coming from the
// suite's GitLab (merge request diffs API, every request counted), one
// after another on the same cluster:
//
//   - the MR opened, touching src/ → one build-multiarch PipelineRun of the
//     MR head tagged mr-<iid>-<sha8> and nothing else; one diffs request;
//   - a label edit of the same MR → nothing, and no request;
//   - the same MR from a fork → FailedPrecondition naming the fork, nothing,
//     no request.
//
// The push and tag triggers see every MR event too and refuse it by event
// type, without asking GitLab.
func TestMergeRequestBuildsCodeChangesOnly(t *testing.T) {
	w := setUp(t)
	gl := w.env.GitLab
	gl.SetMergeRequestDiffs(mrProject, mrIID, []gitlabtest.Diff{
		{OldPath: "src/refunds/api.go", NewPath: "src/refunds/api.go"},
		{OldPath: "src/refunds/routes.go", NewPath: "src/refunds/routes.go", NewFile: true},
		{OldPath: "README.md", NewPath: "README.md"},
	})
	diffs0, compares0 := gl.Requests()

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
			event, body := mrDelivery(t, w.env, c.fixture)
			start := time.Now()
			delivery := "mr-delivery-" + strings.ReplaceAll(c.fixture, ".", "-")
			w.post(t, event, harness.WebhookToken, delivery, body)

			got := w.decisions(t, delivery, "build-on-merge-request", 1)[0]
			if got.Continue != c.wantContinue || (!got.Continue && got.Code != c.wantCode.String()) || !strings.Contains(got.Reason, c.wantMessage) {
				t.Fatalf("build-on-merge-request answered continue %v, %s %q; want continue %v, %s containing %q",
					got.Continue, got.Code, got.Reason, c.wantContinue, c.wantCode, c.wantMessage)
			}
			// The push and release triggers refused it by its type.
			for _, d := range w.decisions(t, delivery, "", 3) {
				if d.Continue && !strings.HasSuffix(d.Trigger, "/build-on-merge-request") {
					t.Errorf("trigger %s let a merge request event through", d.Trigger)
				}
			}
			if c.wantContinue {
				pr := w.env.WaitPipelineRuns(t, w.ns, c.wantRuns, 90*time.Second)[0]
				t.Logf("MR event to PipelineRun %s: %s", pr.Name, time.Since(start).Round(time.Millisecond))
				checkMergeRequestRun(t, w.env.BuildRegistry(w.ns), w.env, &pr)
				w.tektonStarted(t, pr.Name)
				cancelRun(t, w, pr.Name)
			}
			w.pipelineRunsStay(t, c.wantRuns, 3*time.Second)

			diffs, compares := gl.Requests()
			if diffs-diffs0 != c.wantDiffRequests || compares != compares0 {
				t.Errorf("GitLab received %d MR diffs and %d compare requests after event %d, want %d and 0",
					diffs-diffs0, compares-compares0, i+1, c.wantDiffRequests)
			}
		})
	}
}

// mrDelivery returns the X-Gitlab-Event and the body of a merge request
// payload of policies/testdata, its URLs moved to the suite's GitLab: a
// .http file is a whole recorded request (read as cel-eval and the policy
// cases read it), a .json file a Merge Request Hook body.
func mrDelivery(t *testing.T, env *harness.Env, fixture string) (string, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.RepoRoot, "policies", "testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	rehost := func(b []byte) []byte {
		return bytes.ReplaceAll(b, []byte("gitlab.example.com"), []byte(env.GitLab.Host))
	}
	if filepath.Ext(fixture) != ".http" {
		return "Merge Request Hook", rehost(b)
	}
	req, err := policy.ParseRequest(b)
	if err != nil {
		t.Fatalf("%s: %v", fixture, err)
	}
	return req.Header.Get("X-Gitlab-Event"), rehost(req.Body)
}

func checkMergeRequestRun(t *testing.T, registry string, env *harness.Env, pr *pipelinev1.PipelineRun) {
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
		"param image":      registry + "/acme/payments-api",
		"param git-url":    env.GitLab.BaseURL + "/acme/payments-api.git",

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
