package manifests

import (
	"context"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"knative.dev/pkg/apis"
)

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// readme is a README and its YAML examples.
type readme struct {
	path, text string
	examples   [][]byte
}

func readREADME(t *testing.T, file string) readme {
	t.Helper()
	dir := path.Dir(file)
	p := path.Join(dir, "README.md")
	b, err := os.ReadFile(path.Join(repoRoot, p))
	if err != nil {
		t.Errorf("%s: no README: %v", dir, err)
		return readme{path: p}
	}
	r := readme{path: p, text: string(b)}
	for _, m := range yamlBlock.FindAllStringSubmatch(r.text, -1) {
		r.examples = append(r.examples, []byte(m[1]))
	}
	return r
}

// mentions checks that the README names each of names as `NAME`.
func (r readme) mentions(t *testing.T, what string, names []string) {
	t.Helper()
	for _, n := range names {
		if !strings.Contains(r.text, "`"+n+"`") {
			t.Errorf("%s does not document %s `%s`", r.path, what, n)
		}
	}
}

// eachREADME reads the README of every object of kind, checks that it
// names each param, result and workspace, and that each of its example
// runs (runKind, see exampleRuns) references the object by name and passes
// its params as checkRunParams wants, then hands the run to check. runOf
// gives a run's reference ("" if none) and params.
func eachREADME[T any, R any, P runObject[R]](t *testing.T, ctx context.Context, o *objects, kind, runKind string, objs map[string]T,
	docsOf func(T) docs, runOf func(P) (string, pipelinev1.Params), check func(r readme, name string, obj T, run P)) {
	t.Helper()
	for _, name := range sortedKeys(objs) {
		r := readREADME(t, o.paths[kind+"/"+name])
		if r.text == "" {
			continue
		}
		d := docsOf(objs[name])
		r.mentions(t, "param", paramNames(d.params))
		r.mentions(t, "result", names(d.results))
		r.mentions(t, "workspace", names(d.workspaces))
		for _, run := range exampleRuns[R, P](t, ctx, r, runKind) {
			ref, params := runOf(run)
			if ref != name {
				t.Errorf("%s: example %s does not reference %s %s", r.path, runKind, kind, name)
				continue
			}
			checkRunParams(t, r.path, params, d.params)
			check(r, name, objs[name], run)
		}
	}
}

// TestTaskREADMEs: every Task has a README documenting each param, result
// and workspace by name, with an example TaskRun that decodes strictly,
// validates, references the Task, passes only declared params of the right
// type, every required param, and binds every required workspace.
func TestTaskREADMEs(t *testing.T) {
	o := decodeAll(t)
	ctx := validationContext(t)
	taskRunOf := func(tr *pipelinev1.TaskRun) (string, pipelinev1.Params) {
		if tr.Spec.TaskRef == nil {
			return "", tr.Spec.Params
		}
		return tr.Spec.TaskRef.Name, tr.Spec.Params
	}
	eachREADME(t, ctx, o, "Task", "TaskRun", defaulted(ctx, o.tasks), taskDocs, taskRunOf, func(r readme, name string, task *pipelinev1.Task, tr *pipelinev1.TaskRun) {
		var bound []string
		for _, w := range tr.Spec.Workspaces {
			bound = append(bound, w.Name)
			if !slices.ContainsFunc(task.Spec.Workspaces, func(d pipelinev1.WorkspaceDeclaration) bool { return d.Name == w.Name }) {
				t.Errorf("%s: example TaskRun binds workspace %s, which Task %s does not declare", r.path, w.Name, name)
			}
		}
		for _, d := range task.Spec.Workspaces {
			if !d.Optional && !slices.Contains(bound, d.Name) {
				t.Errorf("%s: example TaskRun does not bind the required workspace %s", r.path, d.Name)
			}
		}
	})
}

// TestPipelineREADMEs: the same for Pipelines and example PipelineRuns,
// which must also show the taskRunSpecs that put each matrixed task's
// TaskRuns on nodes of their architecture.
func TestPipelineREADMEs(t *testing.T) {
	o := decodeAll(t)
	ctx := validationContext(t)
	pipelineRunOf := func(pr *pipelinev1.PipelineRun) (string, pipelinev1.Params) {
		if pr.Spec.PipelineRef == nil {
			return "", pr.Spec.Params
		}
		return pr.Spec.PipelineRef.Name, pr.Spec.Params
	}
	eachREADME(t, ctx, o, "Pipeline", "PipelineRun", defaulted(ctx, o.pipelines), pipelineDocs, pipelineRunOf, func(r readme, name string, p *pipelinev1.Pipeline, pr *pipelinev1.PipelineRun) {
		checkWorkspaceBindings(t, pr, p, false)
		for _, pt := range p.Spec.Tasks {
			if !pt.IsMatrixed() {
				continue
			}
			ns := pr.GetTaskRunSpec(pt.Name).PodTemplate
			want := "$(params." + pt.Matrix.Params[0].Name + ")"
			if ns == nil || ns.NodeSelector["kubernetes.io/arch"] != want {
				t.Errorf("%s: example PipelineRun does not place the matrixed task %s with taskRunSpecs nodeSelector kubernetes.io/arch: %s", r.path, pt.Name, want)
			}
		}
	})
}

// TestTriggersREADME: config/triggers/README.md documents every ciel.dev/
// label and annotation the TriggerTemplates set, and nothing they do not.
func TestTriggersREADME(t *testing.T) {
	o := decodeAll(t)
	b, err := os.ReadFile(path.Join(repoRoot, "config/triggers/README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	used := map[string]bool{}
	for _, name := range sortedKeys(o.templates) {
		tt := o.templates[name]
		for _, raw := range placeholderResources(tt) {
			pr := &pipelinev1.PipelineRun{}
			if err := strict(raw, pr); err != nil {
				t.Fatal(err)
			}
			for k := range pr.Labels {
				used[k] = true
			}
			for k := range pr.Annotations {
				used[k] = true
			}
		}
	}
	for _, k := range []string{labelProjectID, labelSHA, labelPipeline, annotationProject, annotationRef, annotationURL, annotationEvent} {
		if !used[k] {
			t.Errorf("the TriggerTemplates do not set %s", k)
		}
	}
	for k := range used {
		if strings.HasPrefix(k, "ciel.dev/") && !strings.Contains(text, "`"+k+"`") {
			t.Errorf("config/triggers/README.md does not document %s", k)
		}
	}
	for _, m := range regexp.MustCompile("`(ciel\\.dev/[a-z-]+)`").FindAllStringSubmatch(text, -1) {
		if !used[m[1]] {
			t.Errorf("config/triggers/README.md documents %s, which no TriggerTemplate sets", m[1])
		}
	}
}

// checkRunParams: the params of a run are declared, of the declared type,
// and every param without a default is given.
func checkRunParams(t *testing.T, where string, given pipelinev1.Params, specs pipelinev1.ParamSpecs) {
	t.Helper()
	for _, prm := range given {
		spec := findParamSpec(specs, prm.Name)
		if spec == nil {
			t.Errorf("%s: example passes param %s, which is not declared", where, prm.Name)
			continue
		}
		if prm.Value.Type != spec.Type {
			t.Errorf("%s: example passes param %s as %s, declared %s", where, prm.Name, prm.Value.Type, spec.Type)
		}
	}
	for _, spec := range specs {
		if spec.Default == nil && !slices.ContainsFunc(given, func(p pipelinev1.Param) bool { return p.Name == spec.Name }) {
			t.Errorf("%s: example does not pass the required param %s", where, spec.Name)
		}
	}
}

// runObject is a pointer to a Tekton run type, R.
type runObject[R any] interface {
	*R
	SetDefaults(context.Context)
	Validate(context.Context) *apis.FieldError
	GetName() string
	GetGenerateName() string
	SetName(string)
}

// exampleRuns returns the README's examples of kind (there must be one),
// each decoded strictly into a new R, named as the API server names it,
// defaulted and validated; one that does not decode is an error and left
// out.
func exampleRuns[R any, P runObject[R]](t *testing.T, ctx context.Context, r readme, kind string) []P {
	t.Helper()
	var out []P
	found := 0
	for _, ex := range r.examples {
		if !strings.Contains(string(ex), "kind: "+kind) {
			continue
		}
		found++
		run := P(new(R))
		if err := strict(ex, run); err != nil {
			t.Errorf("%s: example %s: strict decoding: %v", r.path, kind, err)
			continue
		}
		if run.GetName() == "" {
			run.SetName(run.GetGenerateName() + "x7k2q") // as the API server does before admission
		}
		run.SetDefaults(ctx)
		if err := run.Validate(ctx); err != nil {
			t.Errorf("%s: example %s: %v", r.path, kind, err)
		}
		out = append(out, run)
	}
	if found == 0 {
		t.Errorf("%s: no example %s (a ```yaml block with kind: %s)", r.path, kind, kind)
	}
	return out
}

func paramNames(specs pipelinev1.ParamSpecs) []string {
	var out []string
	for _, s := range specs {
		out = append(out, s.Name)
	}
	return out
}
