package manifests

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ciel-ci/ciel/images/platform"
	"github.com/ciel-ci/ciel/interceptor/gitlab"
	"github.com/ciel-ci/ciel/internal/semver"
	"github.com/google/go-cmp/cmp"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/substitution"
	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	"github.com/tektoncd/triggers/pkg/template"
)

// The labels and annotations every PipelineRun carries for the status
// reporter (config/triggers/README.md).
const (
	labelProjectID      = "ciel.dev/gitlab-project-id"
	labelSHA            = "ciel.dev/gitlab-sha"
	labelPipeline       = "ciel.dev/pipeline"
	annotationProject   = "ciel.dev/gitlab-project"
	annotationRef       = "ciel.dev/gitlab-ref"
	annotationURL       = "ciel.dev/gitlab-url"
	annotationEvent     = "ciel.dev/gitlab-event"
	gitlabFixtures      = "../../interceptor/gitlab/testdata"
	registryFromBinding = "registry.example.com"
)

var sha40 = regexp.MustCompile(`^[0-9a-f]{40}$`)

// TestEventListenerCreatesPipelineRuns follows a real GitLab payload
// through the EventListener with Tekton Triggers' own resolution code: the
// extensions the ciel interceptor adds (computed by interceptor/gitlab, as
// the interceptor does, and sent as JSON), the TriggerBindings, the
// TriggerTemplate, down to the PipelineRun it creates, which must decode
// strictly, validate, carry the status reporter's labels and annotations,
// pass params the Pipeline declares, and schedule each matrix combination
// of the build on a node of its architecture (Tekton's own pod template
// substitution).
func TestEventListenerCreatesPipelineRuns(t *testing.T) {
	o := decodeAll(t)
	el, ok := o.listeners["ciel-gitlab"]
	if !ok {
		t.Fatal("no EventListener ciel-gitlab")
	}
	for _, tc := range []struct {
		trigger, header, fixture, pipeline, policy string
		params                                     func(f gitlab.Facts) map[string]string
	}{
		{
			trigger: "build-on-push", header: "Push Hook", fixture: "push.json", pipeline: "build-multiarch", policy: "build-on-change",
			params: func(f gitlab.Facts) map[string]string {
				return map[string]string{
					"git-url": f.GitHTTPURL, "revision": f.SHA, "image": registryFromBinding + "/" + f.ProjectPath,
					"tag": "sha-" + f.SHA, "extra-tags": `["branch-` + f.RefSlug + `"]`, "platforms": `["linux/amd64","linux/arm64"]`,
					"source-url": f.ProjectURL, "git-allow-http": "false",
				}
			},
		},
		{
			trigger: "release-on-tag", header: "Tag Push Hook", fixture: "tag_push.json", pipeline: "release", policy: "release-semver",
			params: func(f gitlab.Facts) map[string]string {
				return map[string]string{
					"git-url": f.GitHTTPURL, "revision": f.SHA, "commit-tag": "sha-" + f.SHA, "image": registryFromBinding + "/" + f.ProjectPath,
					"version": f.Tag, "platforms": `["linux/amd64","linux/arm64"]`, "source-url": f.ProjectURL, "git-allow-http": "false",
				}
			},
		},
	} {
		t.Run(tc.trigger, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join(gitlabFixtures, tc.fixture))
			if err != nil {
				t.Fatal(err)
			}
			ev, err := gitlab.Decode(tc.header, body)
			if err != nil {
				t.Fatal(err)
			}
			facts := ev.Push.Facts()
			elt := findTrigger(t, el, tc.trigger)
			checkInterceptor(t, elt, tc.header, tc.policy)
			pr := resolvePipelineRun(t, o, elt, tc.header, body)
			if !sha40.MatchString(pr.Labels[labelSHA]) {
				t.Errorf("label %s = %q, want the 40-hex commit %s", labelSHA, pr.Labels[labelSHA], facts.SHA)
			}
			checkTriggeredRun(t, o, pr, triggeredRun{
				name: tc.pipeline + "-" + testNameSuffix, pipeline: tc.pipeline,
				labels:      map[string]string{labelProjectID: fmt.Sprint(facts.ProjectID), labelSHA: facts.SHA, labelPipeline: tc.pipeline},
				annotations: map[string]string{annotationProject: facts.ProjectPath, annotationRef: facts.Ref, annotationURL: facts.ProjectURL, annotationEvent: facts.Event},
				params:      tc.params(facts),
			})
		})
	}
}

// triggeredRun is what a PipelineRun created by a trigger must be.
type triggeredRun struct {
	name, pipeline      string
	labels, annotations map[string]string // the status reporter's contract
	params              map[string]string // array params as JSON; the images are the Pipeline's defaults
}

// checkTriggeredRun checks a PipelineRun a trigger created: it validates;
// it has a name per trigger and delivery (not generateName: the API server
// refuses a second PipelineRun for a redelivery); it carries the status
// reporter's labels and annotations; it runs the Pipeline with params the
// Pipeline declares, every required one set, to the values wanted; its
// workspaces are bound as a shipped template must bind them; each matrix
// combination of the build runs on a node of its architecture; and no pod
// gets a ServiceAccount token.
func checkTriggeredRun(t *testing.T, o *objects, pr *pipelinev1.PipelineRun, want triggeredRun) {
	t.Helper()
	ctx := validationContext(t)
	pr.SetDefaults(ctx)
	if err := pr.Validate(ctx); err != nil {
		t.Fatalf("PipelineRun: %v", err)
	}
	if pr.Name != want.name || pr.GenerateName != "" {
		t.Errorf("PipelineRun name %q (generateName %q), want %q", pr.Name, pr.GenerateName, want.name)
	}
	for k, v := range want.labels {
		if pr.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, pr.Labels[k], v)
		}
	}
	for k, v := range want.annotations {
		if v == "" || pr.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, pr.Annotations[k], v)
		}
	}

	// The params, against what the Pipeline declares.
	if pr.Spec.PipelineRef == nil || pr.Spec.PipelineRef.Name != want.pipeline {
		t.Fatalf("pipelineRef = %+v, want %s", pr.Spec.PipelineRef, want.pipeline)
	}
	p, ok := o.pipelines[want.pipeline]
	if !ok {
		t.Fatalf("Pipeline %s is not in pipelines/", want.pipeline)
	}
	got := map[string]string{}
	for _, prm := range pr.Spec.Params {
		if findParamSpec(p.Spec.Params, prm.Name) == nil {
			t.Errorf("param %s is not declared by Pipeline %s", prm.Name, p.Name)
		}
		got[prm.Name] = prm.Value.StringVal
		if prm.Value.Type == pipelinev1.ParamTypeArray {
			b, _ := json.Marshal(prm.Value.ArrayVal)
			got[prm.Name] = string(b)
		}
	}
	for _, spec := range p.Spec.Params {
		if spec.Default == nil && got[spec.Name] == "" {
			t.Errorf("required param %s of Pipeline %s is not set", spec.Name, p.Name)
		}
	}
	wantParams := maps.Clone(want.params)
	// The images: the TriggerTemplate passes its defaults, which are the
	// Pipeline's own (TestImageDefaultsAgree).
	for _, n := range []string{"ciel-image", "builder-image", "git-image"} {
		if spec := findParamSpec(p.Spec.Params, n); spec != nil && spec.Default != nil {
			wantParams[n] = spec.Default.StringVal
		}
	}
	if diff := cmp.Diff(wantParams, got); diff != "" {
		t.Errorf("PipelineRun params (-want +got):\n%s", diff)
	}
	checkWorkspaceBindings(t, pr, p, true)
	checkMatrixScheduling(t, o, pr, p)
	// The build pods get no ServiceAccount token: the Dockerfile's RUN
	// lines could read it.
	templates := []*pod.PodTemplate{pr.Spec.TaskRunTemplate.PodTemplate}
	for _, s := range pr.Spec.TaskRunSpecs {
		templates = append(templates, s.PodTemplate)
	}
	for _, tpl := range templates {
		if tpl == nil || tpl.AutomountServiceAccountToken == nil || *tpl.AutomountServiceAccountToken {
			t.Errorf("pod template %+v mounts the ServiceAccount token", tpl)
		}
	}
}

// testNameSuffix stands for extensions.delivery.name_suffix, which the
// interceptor derives from the trigger and the delivery ID (16 lowercase
// hex characters).
const testNameSuffix = "0123456789abcdef"

// resolvePipelineRun resolves trigger tr for a GitLab delivery with Tekton
// Triggers' own code, from the extensions the ciel interceptor adds down
// to the PipelineRun the template creates, decoded strictly.
func resolvePipelineRun(t *testing.T, o *objects, tr triggersv1.EventListenerTrigger, event string, body []byte) *pipelinev1.PipelineRun {
	t.Helper()
	ev, err := gitlab.Decode(event, body)
	if err != nil {
		t.Fatal(err)
	}
	ext := interceptorExtensions(t, ev.Push)
	header := http.Header{"X-Gitlab-Event": {event}, "Content-Type": {"application/json"}}
	return resolveWith(t, o, tr, body, header, ext, "e2a6a1d2-delivery")
}

// resolveWith resolves trigger tr for a delivery of body and header whose
// interceptors added ext, with Tekton Triggers' own code, down to the one
// PipelineRun the template creates, decoded strictly.
func resolveWith(t *testing.T, o *objects, tr triggersv1.EventListenerTrigger, body []byte, header http.Header, ext map[string]any, eventID string) *pipelinev1.PipelineRun {
	t.Helper()
	var spec triggersv1.TriggerSpec
	roundTrip(t, tr, &spec)
	rt, err := template.ResolveTrigger(triggersv1.Trigger{Spec: spec},
		func(name string) (*triggersv1.TriggerBinding, error) {
			if b, ok := o.bindings[name]; ok {
				return b, nil
			}
			return nil, fmt.Errorf("no TriggerBinding %s", name)
		},
		func(name string) (*triggersv1.ClusterTriggerBinding, error) {
			return nil, fmt.Errorf("no ClusterTriggerBinding %s", name)
		},
		func(name string) (*triggersv1.TriggerTemplate, error) {
			if tt, ok := o.templates[name]; ok {
				return tt, nil
			}
			return nil, fmt.Errorf("no TriggerTemplate %s", name)
		})
	if err != nil {
		t.Fatal(err)
	}
	params, err := template.ResolveParams(rt, body, header, ext, template.NewTriggerContext(eventID))
	if err != nil {
		t.Fatal(err)
	}
	res := template.ResolveResources(rt.TriggerTemplate, params)
	if len(res) != 1 {
		t.Fatalf("the template creates %d resources, want one PipelineRun", len(res))
	}
	pr := &pipelinev1.PipelineRun{}
	if err := strict(res[0], pr); err != nil {
		t.Fatalf("strict decoding the PipelineRun: %v\n%s", err, res[0])
	}
	return pr
}

// interceptorExtensions is what the ciel interceptor adds for a push, as
// the EventListener receives it: JSON.
func interceptorExtensions(t *testing.T, push *gitlab.PushEvent) map[string]any {
	t.Helper()
	ext := map[string]any{"push": push.Facts().Map(), "changed_files": gitlab.PayloadChangedFiles(push).Map(),
		"delivery": map[string]any{"name_suffix": testNameSuffix}}
	var out map[string]any
	roundTrip(t, ext, &out)
	return out
}

// fixtureJSON decodes a GitLab webhook fixture into a map, to be edited.
func fixtureJSON(t *testing.T, name string) map[string]any {
	t.Helper()
	body, err := os.ReadFile(filepath.Join(gitlabFixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	var payload map[string]any
	if err := json.Unmarshal(body, &payload); err != nil {
		t.Fatal(err)
	}
	return payload
}

// runParam returns the value of a PipelineRun's param (the zero value if
// it has none).
func runParam(pr *pipelinev1.PipelineRun, name string) pipelinev1.ParamValue {
	for _, p := range pr.Spec.Params {
		if p.Name == name {
			return p.Value
		}
	}
	return pipelinev1.ParamValue{}
}

func roundTrip(t *testing.T, in, out any) {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
}

func findTrigger(t *testing.T, el *triggersv1.EventListener, name string) triggersv1.EventListenerTrigger {
	t.Helper()
	for _, tr := range el.Spec.Triggers {
		if tr.Name == name {
			return tr
		}
	}
	t.Fatalf("EventListener %s has no trigger %s", el.Name, name)
	return triggersv1.EventListenerTrigger{}
}

// checkInterceptor: the trigger goes through the ciel ClusterInterceptor
// with its documented params.
func checkInterceptor(t *testing.T, tr triggersv1.EventListenerTrigger, eventType, policy string) {
	t.Helper()
	if len(tr.Interceptors) != 1 || tr.Interceptors[0].Ref.Name != "ciel" || tr.Interceptors[0].Ref.Kind != triggersv1.ClusterInterceptorKind {
		t.Fatalf("trigger %s: want exactly the ciel ClusterInterceptor, got %+v", tr.Name, tr.Interceptors)
	}
	params := map[string]any{}
	for _, p := range tr.Interceptors[0].Params {
		var v any
		if err := json.Unmarshal(p.Value.Raw, &v); err != nil {
			t.Fatalf("trigger %s: interceptor param %s: %v", tr.Name, p.Name, err)
		}
		params[p.Name] = v
	}
	want := map[string]any{
		"secretRef":    map[string]any{"secretName": "ciel-gitlab-webhook", "secretKey": "token"},
		"eventTypes":   []any{eventType},
		"policy":       policy,
		"changedFiles": params["changedFiles"],
	}
	if diff := cmp.Diff(want, params); diff != "" {
		t.Errorf("trigger %s: interceptor params (-want +got):\n%s", tr.Name, diff)
	}
	if cf := params["changedFiles"]; cf != "payload" && cf != "api" && cf != "off" {
		t.Errorf("trigger %s: changedFiles = %v, want payload, api or off", tr.Name, cf)
	}
}

// checkWorkspaceBindings: every required workspace is bound, and the
// source workspace is an emptyDir (per-arch builds run on different nodes:
// no shared ReadWriteOnce volume, and no affinity assistant pinning them to
// one node).
//
// With shipped set (the TriggerTemplates), Secrets must be optional: a
// cluster without them must still run.
func checkWorkspaceBindings(t *testing.T, pr *pipelinev1.PipelineRun, p *pipelinev1.Pipeline, shipped bool) {
	t.Helper()
	bound := map[string]pipelinev1.WorkspaceBinding{}
	for _, w := range pr.Spec.Workspaces {
		bound[w.Name] = w
	}
	for _, d := range p.Spec.Workspaces {
		if _, ok := bound[d.Name]; !ok && !d.Optional {
			t.Errorf("required workspace %s is not bound", d.Name)
		}
	}
	for name, w := range bound {
		if w.PersistentVolumeClaim != nil || w.VolumeClaimTemplate != nil {
			t.Errorf("workspace %s is a persistent volume: the per-arch builds run on different nodes", name)
		}
		if shipped && w.Secret != nil && (w.Secret.Optional == nil || !*w.Secret.Optional) {
			t.Errorf("workspace %s: Secret %s is not optional: a cluster without it could not start any run", name, w.Secret.SecretName)
		}
	}
	if src, ok := bound["source"]; !ok || src.EmptyDir == nil {
		t.Errorf("workspace source = %+v, want an emptyDir", src)
	}
}

// checkMatrixScheduling fans the build out as Tekton does, with the
// ARCHES the platform-plan step computes for the run's platforms, and
// checks that each combination's TaskRun gets a pod template selecting
// nodes of its architecture.
func checkMatrixScheduling(t *testing.T, o *objects, pr *pipelinev1.PipelineRun, p *pipelinev1.Pipeline) {
	t.Helper()
	var build *pipelinev1.PipelineTask
	for i := range p.Spec.Tasks {
		if p.Spec.Tasks[i].Name == "build" {
			build = &p.Spec.Tasks[i]
		}
	}
	if build == nil || !build.IsMatrixed() {
		t.Fatalf("Pipeline %s has no matrixed task build", p.Name)
	}
	platforms := runParam(pr, "platforms").ArrayVal
	plan, err := platform.NewPlan(platforms...)
	if err != nil {
		t.Fatal(err)
	}
	if len(build.Matrix.Params) != 1 || build.Matrix.Params[0].Value.StringVal != "$(tasks.plan.results.ARCHES[*])" {
		t.Fatalf("build matrix = %+v, want PLATFORM over $(tasks.plan.results.ARCHES[*])", build.Matrix.Params)
	}
	m := build.Matrix.DeepCopy()
	m.Params[0].Value = *pipelinev1.NewStructuredValues(plan.NodeArchs()[0], plan.NodeArchs()[1:]...)
	spec := pr.GetTaskRunSpec(build.Name)
	if spec.PodTemplate == nil {
		t.Fatalf("the PipelineRun has no pod template for task %s: add taskRunSpecs", build.Name)
	}
	var got []map[string]string
	for _, combo := range m.FanOut() {
		// What the TaskRun reconciler's ApplyPodTemplateReplacements does
		// to a node selector (pkg/reconciler/taskrun/resources, whose
		// imports are too heavy for this module): substitute the TaskRun's
		// string params, under Tekton's three spellings of a param
		// reference, in keys and values.
		repl := map[string]string{}
		for _, prm := range combo {
			for _, k := range []string{"params.%s", "params[%q]", "params['%s']"} {
				repl[fmt.Sprintf(k, prm.Name)] = prm.Value.StringVal
			}
		}
		ns := map[string]string{}
		for k, v := range spec.PodTemplate.NodeSelector {
			ns[substitution.ApplyReplacements(k, repl)] = substitution.ApplyReplacements(v, repl)
		}
		got = append(got, ns)
	}
	var want []map[string]string
	for _, arch := range plan.NodeArchs() {
		want = append(want, map[string]string{"kubernetes.io/os": "linux", "kubernetes.io/arch": arch})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("node selectors of the build TaskRuns (-want +got):\n%s", diff)
	}
	if tmpl := pr.Spec.TaskRunTemplate.PodTemplate; tmpl == nil || tmpl.NodeSelector["kubernetes.io/os"] != "linux" {
		t.Errorf("the other TaskRuns are not kept on linux nodes: %+v", tmpl)
	}
	for _, s := range pr.Spec.TaskRunSpecs {
		if strings.Contains(fmt.Sprint(s.PodTemplate), "$(params.") && s.PipelineTaskName != build.Name {
			t.Errorf("taskRunSpecs for %s substitute params, but only %s is matrixed", s.PipelineTaskName, build.Name)
		}
	}
}

// TestBranchTagsCannotNameReleaseOrCommitTags pushes branches named like
// the tags a release trusts through the shipped Triggers objects: each
// branch build's extra tag stays in the branch-<slug> namespace, which no
// version tag (vX.Y.Z, vX.Y, vX), latest, or commit tag (sha-<SHA>) can
// share; the commit tag is the full SHA.
func TestBranchTagsCannotNameReleaseOrCommitTags(t *testing.T) {
	o := decodeAll(t)
	tr := findTrigger(t, o.listeners["ciel-gitlab"], "build-on-push")
	payload := fixtureJSON(t, "push.json")
	sha := payload["checkout_sha"].(string)
	for _, branch := range []string{
		"latest", "LATEST", "v1", "v1.2", "v1.2.3", "1.2.3", "v2.0.0-rc.1", sha[:8], sha, "sha-" + sha, "SHA-" + sha[:12],
		"branch-main", "main", "feature/x", "---", "ünïcødé",
	} {
		t.Run(branch, func(t *testing.T) {
			payload["ref"] = "refs/heads/" + branch
			b, _ := json.Marshal(payload)
			pr := resolvePipelineRun(t, o, tr, "Push Hook", b)
			tag, extra := runParam(pr, "tag").StringVal, runParam(pr, "extra-tags").ArrayVal
			if tag != "sha-"+sha {
				t.Errorf("commit tag %q, want sha-%s", tag, sha)
			}
			if len(extra) != 1 {
				t.Fatalf("extra tags %q, want one branch tag", extra)
			}
			bt := extra[0]
			if !strings.HasPrefix(bt, "branch-") || !regexp.MustCompile(`^branch-[a-z0-9-]{0,63}$`).MatchString(bt) {
				t.Errorf("branch tag %q is not branch-<slug>", bt)
			}
			if _, err := semver.Parse(bt); err == nil || bt == "latest" || strings.HasPrefix(bt, "sha-") || bt == tag {
				t.Errorf("branch %q writes %q, a tag the release trusts", branch, bt)
			}
		})
	}
}

// TestImageRepositoryIgnoresPayloadURLs: the image a build pushes to is
// REGISTRY/<project path>, whatever URLs the payload carries (clone URLs,
// web URL, homepage): a URL naming another project or host changes the
// clone source (which the interceptor checks), never the destination.
func TestImageRepositoryIgnoresPayloadURLs(t *testing.T) {
	o := decodeAll(t)
	tr := findTrigger(t, o.listeners["ciel-gitlab"], "build-on-push")
	payload := fixtureJSON(t, "push.json")
	const evil = "https://evil.example.com/victim/app.git"
	for _, obj := range []string{"project", "repository"} {
		m := payload[obj].(map[string]any)
		for _, k := range []string{"git_http_url", "git_ssh_url", "web_url", "url", "homepage"} {
			m[k] = evil
		}
	}
	b, _ := json.Marshal(payload)
	pr := resolvePipelineRun(t, o, tr, "Push Hook", b)
	image := runParam(pr, "image").StringVal
	if want := registryFromBinding + "/acme/payments-api"; image != want {
		t.Errorf("image %q; want %s, from the project path only", image, want)
	}
}
