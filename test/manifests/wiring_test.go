package manifests

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// taskResultRef matches $(tasks.NAME.results.RESULT) and the [*] form.
var taskResultRef = regexp.MustCompile(`\$\(tasks\.([a-z0-9-]+)\.results\.([A-Za-z0-9_-]+)(\[\*\])?\)`)

// TestPipelinesMatchTasks checks each Pipeline against the Tasks it runs,
// what Tekton only finds out when a PipelineRun starts: the Tasks exist;
// every param passed is declared, with the right type, and every param
// without a default is passed; the workspaces line up; every result
// referenced exists, and [*] is used exactly for array results and for the
// string results of a matrixed task (which arrive as an array).
func TestPipelinesMatchTasks(t *testing.T) {
	o := decodeAll(t)
	tasks := defaulted(validationContext(t), o.tasks)
	for _, pname := range sortedKeys(o.pipelines) {
		for _, f := range wiringFindings(o.pipelines[pname], tasks) {
			t.Error(f)
		}
	}
}

// TestWiringFindsMistakes runs the checks above on a Pipeline with every
// kind of mistake they look for.
func TestWiringFindsMistakes(t *testing.T) {
	o := decodeAll(t)
	p := &pipelinev1.Pipeline{}
	decodeFile(t, "testdata/bad-pipeline.yaml", p)
	goldenFindings(t, "testdata/bad-pipeline.wiring", wiringFindings(p, defaulted(validationContext(t), o.tasks)))
}

type findings []string

func (f *findings) errorf(format string, args ...any) { *f = append(*f, fmt.Sprintf(format, args...)) }

// wiringFindings checks Pipeline p against tasks.
func wiringFindings(p *pipelinev1.Pipeline, tasks map[string]*pipelinev1.Task) []string {
	var f findings
	pname := p.Name
	tasksOf := map[string]*pipelinev1.Task{}
	matrixed := map[string]bool{}
	for _, pt := range p.Spec.Tasks {
		where := "Pipeline " + pname + " task " + pt.Name
		if pt.TaskRef == nil || pt.TaskRef.Kind != "" && pt.TaskRef.Kind != pipelinev1.NamespacedTaskKind {
			f.errorf("%s: want a taskRef to a namespaced Task", where)
			continue
		}
		task, ok := tasks[pt.TaskRef.Name]
		if !ok {
			f.errorf("%s: Task %q is not in tasks/", where, pt.TaskRef.Name)
			continue
		}
		tasksOf[pt.Name] = task
		matrixed[pt.Name] = pt.IsMatrixed()
		checkParams(&f, where, p, pt, task)
		checkWorkspaces(&f, where, p, pt, task)
	}
	// Result references, wherever they are.
	check := func(where, text string) {
		for _, m := range taskResultRef.FindAllStringSubmatch(text, -1) {
			task, ok := tasksOf[m[1]]
			if !ok {
				f.errorf("%s: %s refers to no task of the Pipeline", where, m[0])
				continue
			}
			i := slices.IndexFunc(task.Spec.Results, func(r pipelinev1.TaskResult) bool { return r.Name == m[2] })
			if i < 0 {
				f.errorf("%s: %s: Task %s has no result %s", where, m[0], task.Name, m[2])
				continue
			}
			isArray := task.Spec.Results[i].Type == pipelinev1.ResultsTypeArray || matrixed[m[1]]
			if (m[3] != "") != isArray {
				f.errorf("%s: %s: result %s of %s is %s; [*] is for array results (and the results of matrixed tasks)",
					where, m[0], m[2], m[1], typeWord(isArray))
			}
		}
	}
	for _, pt := range p.Spec.Tasks {
		where := "Pipeline " + pname + " task " + pt.Name
		for _, prm := range allParams(pt) {
			check(where+" param "+prm.Name, paramText(prm.Value))
		}
		for _, w := range pt.When {
			check(where+" when", w.Input+" "+strings.Join(w.Values, " "))
		}
	}
	for _, r := range p.Spec.Results {
		check("Pipeline "+pname+" result "+r.Name, paramText(r.Value))
	}
	return f
}

func checkParams(t *findings, where string, p *pipelinev1.Pipeline, pt pipelinev1.PipelineTask, task *pipelinev1.Task) {
	passed := map[string]bool{}
	for _, prm := range pt.Params {
		passed[prm.Name] = true
		spec := findParamSpec(task.Spec.Params, prm.Name)
		if spec == nil {
			t.errorf("%s: param %s is not declared by Task %s", where, prm.Name, task.Name)
			continue
		}
		if got, want := valueType(prm.Value, p), spec.Type; got != want {
			t.errorf("%s: param %s is given as %s, Task %s declares %s", where, prm.Name, got, task.Name, want)
		}
	}
	if pt.Matrix != nil {
		for _, prm := range pt.Matrix.Params {
			passed[prm.Name] = true
			spec := findParamSpec(task.Spec.Params, prm.Name)
			if spec == nil {
				t.errorf("%s: matrix param %s is not declared by Task %s", where, prm.Name, task.Name)
				continue
			}
			if spec.Type != pipelinev1.ParamTypeString {
				t.errorf("%s: matrix param %s is of type %s; want a string param", where, prm.Name, spec.Type)
			}
		}
	}
	for _, spec := range task.Spec.Params {
		if spec.Default == nil && !passed[spec.Name] {
			t.errorf("%s: required param %s of Task %s is not passed", where, spec.Name, task.Name)
		}
	}
	for _, prm := range allParams(pt) {
		for _, m := range regexp.MustCompile(`\$\(params\.([a-z0-9-]+)(\[\*\])?\)`).FindAllStringSubmatch(paramText(prm.Value), -1) {
			if findParamSpec(p.Spec.Params, m[1]) == nil {
				t.errorf("%s: param %s uses $(params.%s), which the Pipeline does not declare", where, prm.Name, m[1])
			}
		}
	}
}

func checkWorkspaces(t *findings, where string, p *pipelinev1.Pipeline, pt pipelinev1.PipelineTask, task *pipelinev1.Task) {
	bound := map[string]bool{}
	for _, w := range pt.Workspaces {
		bound[w.Name] = true
		i := slices.IndexFunc(task.Spec.Workspaces, func(d pipelinev1.WorkspaceDeclaration) bool { return d.Name == w.Name })
		if i < 0 {
			t.errorf("%s: workspace %s is not declared by Task %s", where, w.Name, task.Name)
			continue
		}
		j := slices.IndexFunc(p.Spec.Workspaces, func(d pipelinev1.PipelineWorkspaceDeclaration) bool { return d.Name == w.Workspace })
		if j < 0 {
			t.errorf("%s: workspace %s binds pipeline workspace %s, which is not declared", where, w.Name, w.Workspace)
			continue
		}
		if p.Spec.Workspaces[j].Optional && !task.Spec.Workspaces[i].Optional {
			t.errorf("%s: optional pipeline workspace %s is bound to the required workspace %s", where, w.Workspace, w.Name)
		}
	}
	for _, d := range task.Spec.Workspaces {
		if !d.Optional && !bound[d.Name] {
			t.errorf("%s: required workspace %s of Task %s is not bound", where, d.Name, task.Name)
		}
	}
}

func allParams(pt pipelinev1.PipelineTask) pipelinev1.Params {
	out := append(pipelinev1.Params{}, pt.Params...)
	if pt.Matrix != nil {
		out = append(out, pt.Matrix.Params...)
	}
	return out
}

func findParamSpec(specs pipelinev1.ParamSpecs, name string) *pipelinev1.ParamSpec {
	for i := range specs {
		if specs[i].Name == name {
			return &specs[i]
		}
	}
	return nil
}

// valueType is the type a param value has once Tekton substitutes it: an
// array literal, a whole array param or array result ("$(x[*])") are
// arrays; everything else is a string.
func valueType(v pipelinev1.ParamValue, p *pipelinev1.Pipeline) pipelinev1.ParamType {
	switch v.Type {
	case pipelinev1.ParamTypeArray:
		return pipelinev1.ParamTypeArray
	case pipelinev1.ParamTypeObject:
		return pipelinev1.ParamTypeObject
	}
	if strings.HasSuffix(v.StringVal, "[*])") && strings.HasPrefix(v.StringVal, "$(") && strings.Count(v.StringVal, "$(") == 1 {
		return pipelinev1.ParamTypeArray
	}
	return pipelinev1.ParamTypeString
}

func paramText(v pipelinev1.ParamValue) string {
	return v.StringVal + " " + strings.Join(v.ArrayVal, " ")
}

func typeWord(array bool) string {
	if array {
		return "an array"
	}
	return "a string"
}
