package manifests

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

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
	checkTriggeredRun(t, o, pr, triggeredRun{
		name: "build-mr-" + testNameSuffix, pipeline: "build-multiarch",
		labels: map[string]string{labelProjectID: "42", labelSHA: facts.SHA, labelPipeline: "build-multiarch"},
		annotations: map[string]string{annotationProject: "acme/payments-api", annotationRef: facts.SourceBranch,
			annotationURL: "https://gitlab.example.com/acme/payments-api", annotationEvent: "merge_request"},
		params: map[string]string{
			"git-url": "https://gitlab.example.com/acme/payments-api.git", "revision": facts.SHA,
			"image": registryFromBinding + "/acme/payments-api", "tag": "mr-57-" + facts.SHA[:8], "extra-tags": "[]",
			"platforms": `["linux/amd64","linux/arm64"]`, "source-url": "https://gitlab.example.com/acme/payments-api",
			"git-allow-http": "false",
		},
	})
}
