package manifests

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/Masterminds/semver/v3"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"golang.org/x/mod/modfile"
)

// supported reads the table of supported versions in docs/install.md, the
// one place that states them: component -> {minimum, tested}.
func supported(t *testing.T) map[string][2]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "install.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(`(?m)^\| (Tekton Pipelines|Tekton Triggers) \| (v\d+\.\d+\.\d+) \| (v\d+\.\d+\.\d+) \|$`)
	got := map[string][2]string{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		if _, dup := got[m[1]]; dup {
			t.Errorf("docs/install.md states the %s versions twice", m[1])
		}
		got[m[1]] = [2]string{m[2], m[3]}
	}
	if len(got) != 2 {
		t.Fatalf("docs/install.md: want one row per Tekton component in the supported versions table, got %v", got)
	}
	return got
}

// TestSupportedVersions: the versions docs/install.md supports agree with
// every other statement of them. The tested versions are the Tekton modules
// the manifests are validated with (go.mod); each Pipeline's minVersion
// annotation is the minimum, each Task's at most the minimum; the READMEs
// refer to docs/install.md, and any "Tekton … ≥ X" they still say is the
// minimum.
func TestSupportedVersions(t *testing.T) {
	sv := supported(t)
	pipelinesMin := semver.MustParse(sv["Tekton Pipelines"][0])

	b, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mf, err := modfile.ParseLax("go.mod", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	modules := map[string]string{"Tekton Pipelines": "github.com/tektoncd/pipeline", "Tekton Triggers": "github.com/tektoncd/triggers"}
	for component, path := range modules {
		found := false
		for _, r := range mf.Require {
			if r.Mod.Path == path {
				found = true
				if r.Mod.Version != sv[component][1] {
					t.Errorf("docs/install.md: %s tested %s, but go.mod validates with %s %s", component, sv[component][1], path, r.Mod.Version)
				}
			}
		}
		if !found {
			t.Errorf("go.mod does not require %s", path)
		}
		if semver.MustParse(sv[component][0]).GreaterThan(semver.MustParse(sv[component][1])) {
			t.Errorf("docs/install.md: %s minimum %s is above the tested %s", component, sv[component][0], sv[component][1])
		}
	}

	o := decodeAll(t)
	for _, name := range sortedKeys(o.pipelines) {
		mv := o.pipelines[name].Annotations["tekton.dev/pipelines.minVersion"]
		if v, err := semver.NewVersion(mv); err != nil || !v.Equal(pipelinesMin) {
			t.Errorf("Pipeline %s: tekton.dev/pipelines.minVersion %q, docs/install.md says %s", name, mv, pipelinesMin.Original())
		}
	}
	for _, name := range sortedKeys(o.tasks) {
		mv := o.tasks[name].Annotations["tekton.dev/pipelines.minVersion"]
		if v, err := semver.NewVersion(mv); err != nil || v.GreaterThan(pipelinesMin) {
			t.Errorf("Task %s: tekton.dev/pipelines.minVersion %q, above the supported minimum %s", name, mv, pipelinesMin.Original())
		}
	}

	// Prose: README.md and config/triggers/README.md point to the table;
	// no document states another minimum.
	for _, f := range []string{"README.md", "config/triggers/README.md"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "docs/install.md") {
			t.Errorf("%s does not refer to docs/install.md for the supported versions", f)
		}
	}
	claim := regexp.MustCompile(`Tekton( Pipelines| Triggers)?\s*(?:≥|>=)\s*v?(\d+\.\d+(?:\.\d+)?)`)
	docs, _ := filepath.Glob(filepath.Join(repoRoot, "*", "*", "README.md"))
	more, _ := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	docs = append(append(docs, filepath.Join(repoRoot, "README.md")), more...)
	checked := 0
	for _, f := range docs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range claim.FindAllStringSubmatch(string(b), -1) {
			checked++
			component := "Tekton Pipelines"
			if m[1] == " Triggers" {
				component = "Tekton Triggers"
			}
			v, err := semver.NewVersion(m[2])
			if err != nil || !v.Equal(semver.MustParse(sv[component][0])) {
				rel, _ := filepath.Rel(repoRoot, f)
				t.Errorf("%s says %q; docs/install.md supports %s %s", rel, m[0], component, sv[component][0])
			}
		}
	}
	t.Logf("%d version statements checked in %d documents", checked, len(docs))
}

// TestImageDefaultsAgree: the image params of the Pipelines and
// TriggerTemplates default to exactly the images the Tasks default to, so
// that the release pins one digest per image and a mirror is one value.
func TestImageDefaultsAgree(t *testing.T) {
	o := decodeAll(t)
	want := map[string]string{}
	for param, task := range map[string]string{"ciel-image": "kaniko-build", "builder-image": "kaniko-build", "git-image": "kaniko-build"} {
		taskParam := map[string]string{"ciel-image": "CIEL_IMAGE", "builder-image": "BUILDER_IMAGE", "git-image": "GIT_IMAGE"}[param]
		spec := findParamSpec(o.tasks[task].Spec.Params, taskParam)
		if spec == nil || spec.Default == nil {
			t.Fatalf("Task %s has no default for %s", task, taskParam)
		}
		want[param] = spec.Default.StringVal
	}
	for _, name := range sortedKeys(o.tasks) {
		if spec := findParamSpec(o.tasks[name].Spec.Params, "CIEL_IMAGE"); spec != nil && (spec.Default == nil || spec.Default.StringVal != want["ciel-image"]) {
			t.Errorf("Task %s: CIEL_IMAGE default %v, want %s", name, spec.Default, want["ciel-image"])
		}
	}
	for _, name := range sortedKeys(o.pipelines) {
		for _, param := range sortedKeys(want) {
			spec := findParamSpec(o.pipelines[name].Spec.Params, param)
			if spec == nil || spec.Default == nil || spec.Default.StringVal != want[param] {
				t.Errorf("Pipeline %s: param %s %v, want default %s", name, param, spec, want[param])
			}
		}
	}
	for _, name := range sortedKeys(o.templates) {
		got := map[string]string{}
		for _, p := range o.templates[name].Spec.Params {
			if p.Default != nil {
				got[p.Name] = *p.Default
			}
		}
		for _, param := range sortedKeys(want) {
			if got[param] != want[param] {
				t.Errorf("TriggerTemplate %s: param %s default %q, want %s", name, param, got[param], want[param])
			}
		}
	}
}

// TestPipelinesPassTheirImages: every Pipeline task gives each image param
// of its Task (CIEL_IMAGE, BUILDER_IMAGE, GIT_IMAGE) the Pipeline's own
// param, so that ciel-image, builder-image and git-image reach every step
// (a mirror is one value) and no step falls back to a Task default.
func TestPipelinesPassTheirImages(t *testing.T) {
	o := decodeAll(t)
	from := map[string]string{"CIEL_IMAGE": "ciel-image", "BUILDER_IMAGE": "builder-image", "GIT_IMAGE": "git-image"}
	checked := 0
	for _, name := range sortedKeys(o.pipelines) {
		p := o.pipelines[name]
		for _, pt := range append(append([]pipelinev1.PipelineTask(nil), p.Spec.Tasks...), p.Spec.Finally...) {
			if pt.TaskRef == nil {
				t.Errorf("Pipeline %s task %s: no taskRef", name, pt.Name)
				continue
			}
			task, ok := o.tasks[pt.TaskRef.Name]
			if !ok {
				t.Errorf("Pipeline %s task %s: no Task %s", name, pt.Name, pt.TaskRef.Name)
				continue
			}
			for _, taskParam := range sortedKeys(from) {
				if findParamSpec(task.Spec.Params, taskParam) == nil {
					continue
				}
				checked++
				want := "$(params." + from[taskParam] + ")"
				got := "(not set)"
				for _, v := range pt.Params {
					if v.Name == taskParam {
						got = v.Value.StringVal
					}
				}
				if got != want {
					t.Errorf("Pipeline %s task %s: %s is %s, want %s", name, pt.Name, taskParam, got, want)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no image params checked")
	}
}
