package manifests

import (
	"fmt"
	"os"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/Masterminds/semver/v3"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
)

// catalogLabels and catalogAnnotations are what the Tekton catalog asks of
// every Task and Pipeline.
var (
	catalogLabels      = []string{"app.kubernetes.io/version"}
	catalogAnnotations = []string{"tekton.dev/pipelines.minVersion", "tekton.dev/platforms", "tekton.dev/displayName", "tekton.dev/tags"}
)

// builderParam is the param holding the Kaniko image: the one step allowed
// to run as root (Kaniko unpacks base images over its own root filesystem).
const builderParam = "BUILDER_IMAGE"

var variableRef = regexp.MustCompile(`\$\((params|tasks|context|workspaces|results|steps|step)\.`)

// linter collects lint findings, each prefixed with where it is.
type linter struct {
	where string
	found *[]string
}

func (l linter) errorf(format string, args ...any) {
	*l.found = append(*l.found, l.where+": "+fmt.Sprintf(format, args...))
}

func (l linter) at(where string) linter { return linter{where: l.where + " " + where, found: l.found} }

// TestLintTasks enforces the catalog conventions and this project's rules
// on every Task.
func TestLintTasks(t *testing.T) {
	o := decodeAll(t)
	lintEach(t, o, "Task", o.tasks, lintTask)
}

// lintEach lints every object of a kind (there must be some) with lint,
// given the file it is defined in.
func lintEach[T any](t *testing.T, o *objects, kind string, objs map[string]T, lint func(T, string) []string) {
	t.Helper()
	if len(objs) == 0 {
		t.Fatalf("no %ss found", kind)
	}
	for _, name := range sortedKeys(objs) {
		for _, f := range lint(objs[name], o.paths[kind+"/"+name]) {
			t.Error(f)
		}
	}
}

// lintTask returns what is wrong with task, defined in file.
func lintTask(task *pipelinev1.Task, file string) []string {
	var found []string
	name := task.Name
	l := linter{"Task " + name, &found}
	lintLayout(l, file, "tasks", name)
	lintCatalogMetadata(l, task.Labels, task.Annotations)
	lintDocumented(l, taskDocs(task))
	if task.Spec.StepTemplate != nil && task.Spec.StepTemplate.Image != "" {
		l.errorf("stepTemplate sets an image; give every step its own")
	}
	if len(task.Spec.Sidecars) > 0 {
		l.errorf("sidecars are not expected")
	}
	body := taskText(task)
	for _, p := range task.Spec.Params {
		if !strings.Contains(body, "$(params."+p.Name+")") && !strings.Contains(body, "$(params."+p.Name+"[*])") {
			l.errorf("param %s is declared but never used", p.Name)
		}
	}
	// A step may write every result into Tekton's documented results
	// directory (ciel release promote --results-dir).
	writesAll := strings.Contains(body, "--results-dir=/tekton/results\n")
	for _, r := range task.Spec.Results {
		if !writesAll && !strings.Contains(body, "$(results."+r.Name+".path)") {
			l.errorf("result %s is declared but no step writes it", r.Name)
		}
	}
	if len(task.Spec.Steps) == 0 {
		l.errorf("no steps")
	}
	for _, s := range task.Spec.Steps {
		for _, r := range s.Results {
			if strings.TrimSpace(r.Description) == "" {
				l.at("step "+s.Name).errorf("step result %s has no description", r.Name)
			}
		}
		lintStep(l.at("step "+s.Name), task, s)
	}
	return found
}

// lintStep checks one step: explicit command (so that Tekton's controller
// never fetches an image config to find the entrypoint, which fails on
// registries with a private CA), pinned image, no variables in a script,
// resource requests, and the strictest security context the tool allows.
func lintStep(l linter, task *pipelinev1.Task, s pipelinev1.Step) {
	if len(s.Command) == 0 {
		l.errorf("no command: Tekton's controller would read the image config from the registry to find the entrypoint")
	}
	if s.Script != "" {
		if m := variableRef.FindString(s.Script); m != "" {
			l.errorf("script references %s...: pass values through env", m)
		}
		l.errorf("has a script; use command and args (no shell)")
	}
	image, fromParam := resolveImage(task, s.Image)
	if image == "" {
		l.errorf("image %q resolves to nothing", s.Image)
	} else if err := pinned(image); err != nil {
		l.errorf("image %s: %v", image, err)
	}
	req := s.ComputeResources.Requests
	if req.Cpu().IsZero() || req.Memory().IsZero() {
		l.errorf("no cpu and memory requests")
	}
	sc := s.SecurityContext
	if sc == nil {
		l.errorf("no securityContext")
		return
	}
	if sc.Privileged != nil && *sc.Privileged {
		l.errorf("privileged")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		l.errorf("allowPrivilegeEscalation is not false")
	}
	if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		l.errorf("capabilities are not dropped (drop: [ALL])")
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		l.errorf("no RuntimeDefault seccomp profile")
	}
	if fromParam == builderParam {
		// Kaniko: root, but with the container runtime's default set of
		// capabilities at most, never privileged.
		allowed := map[corev1.Capability]bool{"CHOWN": true, "DAC_OVERRIDE": true, "FOWNER": true, "FSETID": true, "KILL": true,
			"SETGID": true, "SETUID": true, "SETFCAP": true, "SETPCAP": true, "NET_BIND_SERVICE": true, "SYS_CHROOT": true}
		if sc.Capabilities != nil {
			for _, c := range sc.Capabilities.Add {
				if !allowed[c] {
					l.errorf("adds capability %s, beyond the container runtime's default set", c)
				}
			}
		}
		return
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		l.errorf("does not run as a non-root user (runAsNonRoot: true, runAsUser: non-zero)")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		l.errorf("root filesystem is writable")
	}
	if sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
		l.errorf("adds capabilities %v", sc.Capabilities.Add)
	}
}

// resolveImage returns the image a step runs: a literal, or the default of
// the param it names.
func resolveImage(task *pipelinev1.Task, image string) (resolved, param string) {
	m := regexp.MustCompile(`^\$\(params\.([A-Za-z0-9_-]+)\)$`).FindStringSubmatch(image)
	if m == nil {
		return image, ""
	}
	for _, p := range task.Spec.Params {
		if p.Name == m[1] && p.Default != nil {
			return p.Default.StringVal, p.Name
		}
	}
	return "", m[1]
}

var digestRef = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)

// pinned accepts REPO:TAG (not latest) and REPO[:TAG]@sha256:DIGEST, and
// ko://github.com/ciel-ci/ciel/cmd/NAME: one of ours, which `make release`
// builds and replaces by its digest (TestRelease).
func pinned(image string) error {
	if path, ok := strings.CutPrefix(image, "ko://"); ok {
		if !strings.HasPrefix(path, "github.com/ciel-ci/ciel/cmd/") || strings.ContainsAny(path, ":@") {
			return fmt.Errorf("ko:// names a command of this module, github.com/ciel-ci/ciel/cmd/NAME")
		}
		return nil
	}
	if digestRef.MatchString(image) {
		image = image[:strings.LastIndex(image, "@")]
		if t := tagOf(image); t == "latest" {
			return fmt.Errorf("tag latest (pin a version tag next to the digest)")
		}
		return nil
	}
	if strings.Contains(image, "@") {
		return fmt.Errorf("malformed digest")
	}
	switch t := tagOf(image); t {
	case "":
		return fmt.Errorf("no tag and no digest")
	case "latest":
		return fmt.Errorf("tag latest")
	}
	return nil
}

func tagOf(image string) string {
	last := image[strings.LastIndex(image, "/")+1:]
	if i := strings.LastIndex(last, ":"); i >= 0 {
		return last[i+1:]
	}
	return ""
}

func TestPinned(t *testing.T) {
	for image, ok := range map[string]bool{
		"ghcr.io/ciel-ci/ciel:v0.1.0": true,
		"registry:5000/app:1.2":       true,
		"alpine/git:v2.49.1@sha256:c0280cf9572316299b08544065d3bf35db65043d5e3963982ec50647d2746e26": true,
		"alpine/git@sha256:c0280cf9572316299b08544065d3bf35db65043d5e3963982ec50647d2746e26":         true,
		"alpine/git:latest@sha256:c0280cf9572316299b08544065d3bf35db65043d5e3963982ec50647d2746e26":  false,
		"alpine/git":                                   false,
		"registry:5000/app":                            false,
		"alpine/git:latest":                            false,
		"alpine/git@sha256:abcd":                       false,
		"ko://github.com/ciel-ci/ciel/cmd/ciel":        true,
		"ko://github.com/google/ko":                    false,
		"ko://github.com/ciel-ci/ciel/cmd/ciel:v0.1.0": false,
	} {
		if err := pinned(image); (err == nil) != ok {
			t.Errorf("pinned(%q) = %v, want ok=%v", image, err, ok)
		}
	}
}

// TestLintPipelines enforces the catalog conventions on every Pipeline.
func TestLintPipelines(t *testing.T) {
	o := decodeAll(t)
	lintEach(t, o, "Pipeline", o.pipelines, lintPipeline)
}

func lintPipeline(p *pipelinev1.Pipeline, file string) []string {
	var found []string
	l := linter{"Pipeline " + p.Name, &found}
	lintLayout(l, file, "pipelines", p.Name)
	lintCatalogMetadata(l, p.Labels, p.Annotations)
	lintDocumented(l, pipelineDocs(p))
	for _, pt := range p.Spec.Tasks {
		if pt.TaskSpec != nil {
			l.errorf("task %s embeds a taskSpec; reference a Task of tasks/", pt.Name)
		}
	}
	return found
}

// TestLintTriggerTemplates: every TriggerTemplate param is described.
func TestLintTriggerTemplates(t *testing.T) {
	o := decodeAll(t)
	for _, name := range sortedKeys(o.templates) {
		for _, p := range o.templates[name].Spec.Params {
			if strings.TrimSpace(p.Description) == "" {
				t.Errorf("TriggerTemplate %s: param %s has no description", name, p.Name)
			}
		}
	}
}

// docs is what a Task or a Pipeline documents: its description, its
// params, and its results and workspaces, each with a description.
type docs struct {
	description         string
	params              pipelinev1.ParamSpecs
	results, workspaces []described
}

type described struct{ name, description string }

func describe[T any](items []T, f func(T) described) []described {
	var out []described
	for _, it := range items {
		out = append(out, f(it))
	}
	return out
}

func taskDocs(task *pipelinev1.Task) docs {
	return docs{description: task.Spec.Description, params: task.Spec.Params,
		results: describe(task.Spec.Results, func(r pipelinev1.TaskResult) described { return described{r.Name, r.Description} }),
		workspaces: describe(task.Spec.Workspaces, func(w pipelinev1.WorkspaceDeclaration) described {
			return described{w.Name, w.Description}
		}),
	}
}

func pipelineDocs(p *pipelinev1.Pipeline) docs {
	return docs{description: p.Spec.Description, params: p.Spec.Params,
		results: describe(p.Spec.Results, func(r pipelinev1.PipelineResult) described { return described{r.Name, r.Description} }),
		workspaces: describe(p.Spec.Workspaces, func(w pipelinev1.PipelineWorkspaceDeclaration) described {
			return described{w.Name, w.Description}
		}),
	}
}

func names(items []described) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.name)
	}
	return out
}

// lintDocumented: the description, and every param's, result's and
// workspace's, are given (and the params are well-formed).
func lintDocumented(l linter, d docs) {
	if strings.TrimSpace(d.description) == "" {
		l.errorf("no description")
	}
	lintParamSpecs(l, d.params)
	for _, kind := range []struct {
		what  string
		items []described
	}{{"result", d.results}, {"workspace", d.workspaces}} {
		for _, it := range kind.items {
			if strings.TrimSpace(it.description) == "" {
				l.errorf("%s %s has no description", kind.what, it.name)
			}
		}
	}
}

func lintLayout(l linter, file, dir, name string) {
	if want := path.Join(dir, name, name+".yaml"); file != want {
		l.errorf("defined in %s, want %s", file, want)
	}
}

func lintCatalogMetadata(l linter, labels, annotations map[string]string) {
	for _, k := range catalogLabels {
		if strings.TrimSpace(labels[k]) == "" {
			l.errorf("no label %s", k)
		}
	}
	for _, k := range catalogAnnotations {
		if strings.TrimSpace(annotations[k]) == "" {
			l.errorf("no annotation %s", k)
		}
	}
	if v := annotations["tekton.dev/pipelines.minVersion"]; v != "" {
		if _, err := semver.StrictNewVersion(v); err != nil {
			l.errorf("tekton.dev/pipelines.minVersion %q is not a version: %v", v, err)
		}
	}
	for _, p := range strings.Split(annotations["tekton.dev/platforms"], ",") {
		if !regexp.MustCompile(`^[a-z0-9]+/[a-z0-9]+(/v[0-9.]+)?$`).MatchString(strings.TrimSpace(p)) {
			l.errorf("tekton.dev/platforms entry %q is not os/arch[/variant]", p)
		}
	}
}

func lintParamSpecs(l linter, params pipelinev1.ParamSpecs) {
	for _, p := range params {
		if strings.TrimSpace(p.Description) == "" {
			l.errorf("param %s has no description", p.Name)
		}
	}
}

// taskText is the text of every field a Task references params and
// results in.
func taskText(task *pipelinev1.Task) string {
	var b strings.Builder
	for _, s := range task.Spec.Steps {
		b.WriteString(s.Image + "\n" + s.Script + "\n" + s.WorkingDir + "\n")
		for _, a := range append(append([]string{}, s.Command...), s.Args...) {
			b.WriteString(a + "\n")
		}
		for _, e := range s.Env {
			b.WriteString(e.Value + "\n")
		}
		for _, w := range s.When {
			b.WriteString(w.Input + "\n" + strings.Join(w.Values, "\n") + "\n")
		}
	}
	return b.String()
}

// TestLintFindsViolations runs the Task lint on a Task that breaks every
// rule, so that a lint which silently passes everything cannot go unnoticed.
func TestLintFindsViolations(t *testing.T) {
	task := &pipelinev1.Task{}
	decodeFile(t, "testdata/bad-task.yaml", task)
	goldenFindings(t, "testdata/bad-task.lint", lintTask(task, "tasks/elsewhere.yaml"))
}

// decodeFile decodes a YAML file strictly into v.
func decodeFile(t *testing.T, file string, v any) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := strict(raw, v); err != nil {
		t.Fatal(err)
	}
}

// goldenFindings compares findings, one a line, with the golden file
// (rewritten with -update).
func goldenFindings(t *testing.T, file string, findings []string) {
	t.Helper()
	got := strings.Join(findings, "\n") + "\n"
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("findings of %s (-want +got):\n%s", file, diff)
	}
}
