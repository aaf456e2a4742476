package scenarios

import (
	"context"
	"strings"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ciel-ci/ciel/internal/gitlabtest"
	"github.com/ciel-ci/ciel/test/e2e/harness"
)

// TestReporterReportsStatuses runs the reporter as its Deployment from
// dist/reporter.yaml against the suite's GitLab (HTTPS, its own CA) and
// the real Tekton controller: PipelineRuns labelled as ciel's
// TriggerTemplates label them get commit statuses, posted once per state,
// retried through a GitLab 500; a run that cannot start fails, with the
// reason.
func TestReporterReportsStatuses(t *testing.T) {
	env := suite.Env(t)
	ns := env.NewNamespace(t)
	gl := env.GitLab
	env.InstallReporter(t, ns)
	gl.FailNext(500)

	base := env.PushBaseImages(t, env.Registry.Host)
	const sha = "c95fc90a82e297e2b5fcd3722b931d149a388884"
	pr := &pipelinev1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "build-reported", Namespace: ns,
			Labels: map[string]string{"ciel.dev/gitlab-project-id": "42", "ciel.dev/gitlab-sha": sha, "ciel.dev/pipeline": "build-multiarch"},
			Annotations: map[string]string{"ciel.dev/gitlab-project": "acme/payments-api", "ciel.dev/gitlab-ref": "refs/heads/main",
				"ciel.dev/gitlab-url": gl.BaseURL + "/acme/payments-api", "ciel.dev/gitlab-event": "push"}},
		Spec: pipelinev1.PipelineRunSpec{
			Status: pipelinev1.PipelineRunSpecStatusPending,
			PipelineSpec: &pipelinev1.PipelineSpec{Tasks: []pipelinev1.PipelineTask{{
				Name: "noop",
				TaskSpec: &pipelinev1.EmbeddedTask{TaskSpec: pipelinev1.TaskSpec{Steps: []pipelinev1.Step{{
					Name: "noop", Image: base + "/busybox:1.35", Command: []string{"true"}}}}},
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
	if got := states(gl, sha); strings.Join(got, ",") != "pending,canceled" {
		t.Errorf("statuses %v, want pending then canceled, each once", got)
	}
	var failed, first *gitlabtest.Call
	for _, c := range gl.Calls() {
		if c.SHA != sha {
			continue
		}
		c := c
		if c.Code >= 500 && failed == nil {
			failed = &c
		}
		if c.Code < 300 && first == nil {
			first = &c
		}
	}
	if failed == nil {
		t.Errorf("the reporter never met GitLab's 500")
	}
	if first == nil || first.Name != "ciel/build-multiarch" || first.Ref != "main" || first.ProjectID != "42" {
		t.Errorf("first status %+v", first)
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
	harness.Eventually(t, 90*time.Second, "a failed status for the broken run", func(context.Context) (bool, error) {
		for _, c := range gl.Calls() {
			if c.SHA == sha2 && c.State == "failed" && c.Code < 300 {
				if !strings.Contains(strings.ToLower(c.Description), "pipeline") {
					t.Errorf("failure description %q does not say why", c.Description)
				}
				return true, nil
			}
		}
		return false, nil
	})
}

// states lists the states GitLab accepted for a commit, in order.
func states(gl *harness.GitLab, sha string) []string {
	var out []string
	for _, c := range gl.Calls() {
		if c.SHA == sha && c.Code < 300 {
			out = append(out, c.State)
		}
	}
	return out
}

func waitStates(t *testing.T, gl *harness.GitLab, sha string, want []string) {
	t.Helper()
	harness.Eventually(t, 90*time.Second, "statuses "+strings.Join(want, ","), func(context.Context) (bool, error) {
		return strings.Join(states(gl, sha), ",") == strings.Join(want, ","), nil
	})
}
