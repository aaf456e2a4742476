package manifests

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/ciel-ci/ciel/interceptor/engine"
	"github.com/ciel-ci/ciel/interceptor/gitlab"
	"github.com/ciel-ci/ciel/interceptor/policy"
)

// TestMergeRequestTriggerCreatesPipelineRun follows the documented MR
// payload (policies/testdata/mr-open.http) through the build-mr-on-change
// policy, as the interceptor evaluates it, then the EventListener's
// build-on-merge-request trigger with Triggers' own resolution: the
// PipelineRun builds the MR head under mr-<iid>-<sha8> only, and carries
// the reporter's labels with the head SHA and the target project.
func TestMergeRequestTriggerCreatesPipelineRun(t *testing.T) {
	o := decodeAll(t)
	ctx := validationContext(t)
	el := o.listeners["ciel-gitlab"]
	if el == nil {
		t.Fatal("no EventListener ciel-gitlab")
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot, "policies", "testdata", "mr-open.http"))
	if err != nil {
		t.Fatal(err)
	}
	req, err := policy.ParseRequest(raw)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New()
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(eng, filepath.Join(repoRoot, "policies", "build-mr-on-change.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	in := engine.Input{Body: req.Body, Header: req.Header, ChangedFiles: policy.Override([]string{"src/refunds/api.go"})}
	d, reason, err := pol.Decide(context.Background(), eng, in)
	if err != nil || !d.Continue {
		t.Fatalf("policy build-mr-on-change: %v %s", err, reason)
	}
	var ext map[string]any
	roundTrip(t, d.Extensions, &ext)
	ext["delivery"] = map[string]any{"name_suffix": testNameSuffix} // the interceptor's, after the policy
	facts := d.Event.MergeRequest.Facts()

	elt := findTrigger(t, el, "build-on-merge-request")
	checkInterceptor(t, elt, gitlab.HeaderMergeRequest, "build-mr-on-change")
	pr := resolveWith(t, o, elt, req.Body, http.Header(req.Header), ext, "mr-delivery")
	// A name per trigger and delivery (not generateName): the API server
	// refuses a second PipelineRun for a redelivery.
	if want := "build-mr-" + testNameSuffix; pr.Name != want || pr.GenerateName != "" {
		t.Errorf("PipelineRun name %q generateName %q, want name %q", pr.Name, pr.GenerateName, want)
	}
	pr.SetDefaults(ctx)
	if err := pr.Validate(ctx); err != nil {
		t.Fatalf("PipelineRun: %v", err)
	}

	wantLabels := map[string]string{labelProjectID: "42", labelSHA: facts.SHA, labelPipeline: "build-multiarch"}
	for k, v := range wantLabels {
		if pr.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, pr.Labels[k], v)
		}
	}
	wantAnnotations := map[string]string{annotationProject: "acme/payments-api", annotationRef: facts.SourceBranch,
		annotationURL: "https://gitlab.example.com/acme/payments-api", annotationEvent: "merge_request"}
	for k, v := range wantAnnotations {
		if pr.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, pr.Annotations[k], v)
		}
	}

	p := o.pipelines["build-multiarch"]
	if p == nil || pr.Spec.PipelineRef == nil || pr.Spec.PipelineRef.Name != "build-multiarch" {
		t.Fatalf("pipelineRef %+v", pr.Spec.PipelineRef)
	}
	got := map[string]string{}
	for _, prm := range pr.Spec.Params {
		if findParamSpec(p.Spec.Params, prm.Name) == nil {
			t.Errorf("param %s is not declared by Pipeline build-multiarch", prm.Name)
		}
		got[prm.Name] = prm.Value.StringVal
		if prm.Value.Type == pipelinev1.ParamTypeArray {
			got[prm.Name] = strings.Join(prm.Value.ArrayVal, ",")
		}
	}
	want := map[string]string{
		"git-url": "https://gitlab.example.com/acme/payments-api.git", "revision": facts.SHA,
		"image": registryFromBinding + "/acme/payments-api", "tag": "mr-57-" + facts.SHA[:8], "extra-tags": "",
		"platforms": "linux/amd64,linux/arm64", "source-url": "https://gitlab.example.com/acme/payments-api",
		"git-allow-http": "false",
	}
	// The images: the TriggerTemplate passes its defaults, which are the
	// Pipeline's own (TestImageDefaultsAgree).
	for _, n := range []string{"ciel-image", "builder-image", "git-image"} {
		if spec := findParamSpec(p.Spec.Params, n); spec != nil && spec.Default != nil {
			want[n] = spec.Default.StringVal
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PipelineRun params (-want +got):\n%s", diff)
	}
	checkWorkspaceBindings(t, pr, p, true)
	checkMatrixScheduling(t, o, pr, p)
}
