package command

import (
	"context"
	"fmt"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/substitution"
	"sigs.k8s.io/yaml"
)

// This file holds what a unit test needs of the Tasks in tasks/: each step
// rendered as Tekton's controller renders it (params, results and
// workspaces substituted with Tekton's own substitution functions, step
// `when` expressions evaluated), each ciel step's command line parsed by
// the real command tree, and the clone steps run with the real git. Running
// the Tasks — pods, Kaniko, results passed between Tasks, a registry — is
// the end-to-end suite's job (test/e2e/scenarios); Tekton's type
// validation and the Pipelines' wiring are test/manifests'.

const tasksDir = "../../../tasks"

func loadTask(t *testing.T, name string) *pipelinev1.Task {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tasksDir, name, name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	task := &pipelinev1.Task{}
	if err := yaml.UnmarshalStrict(b, task); err != nil {
		t.Fatal(err)
	}
	task.SetDefaults(context.Background())
	return task
}

// taskRun is one run of a Task: its params, workspaces and the directories
// standing in for /tekton/results and the step results.
type taskRun struct {
	task       *pipelinev1.Task
	params     map[string]pipelinev1.ParamValue
	workspaces map[string]string // name -> path; unbound optional ones absent
	results    string
	steps      string
}

func newTaskRun(t *testing.T, task *pipelinev1.Task, params map[string]any, workspaces map[string]string) *taskRun {
	t.Helper()
	tr := &taskRun{task: task, params: map[string]pipelinev1.ParamValue{}, workspaces: workspaces,
		results: t.TempDir(), steps: t.TempDir()}
	for _, spec := range task.Spec.Params {
		v, given := params[spec.Name]
		switch {
		case !given && spec.Default == nil:
			t.Fatalf("Task %s: required param %s not given", task.Name, spec.Name)
		case !given:
			tr.params[spec.Name] = *spec.Default
		default:
			switch v := v.(type) {
			case string:
				tr.params[spec.Name] = *pipelinev1.NewStructuredValues(v)
			case []string:
				tr.params[spec.Name] = pipelinev1.ParamValue{Type: pipelinev1.ParamTypeArray, ArrayVal: v}
			}
			if tr.params[spec.Name].Type != spec.Type {
				t.Fatalf("Task %s: param %s given as %s, declared %s", task.Name, spec.Name, tr.params[spec.Name].Type, spec.Type)
			}
		}
	}
	for name := range params {
		if !slices.ContainsFunc(task.Spec.Params, func(s pipelinev1.ParamSpec) bool { return s.Name == name }) {
			t.Fatalf("Task %s has no param %s", task.Name, name)
		}
	}
	return tr
}

// replacements are what Tekton's controller substitutes before the pod
// starts, for step.
func (tr *taskRun) replacements(step string) (map[string]string, map[string][]string) {
	str, arr := map[string]string{}, map[string][]string{}
	for name, v := range tr.params {
		if v.Type == pipelinev1.ParamTypeArray {
			arr["params."+name] = v.ArrayVal
		} else {
			str["params."+name] = v.StringVal
		}
	}
	for _, r := range tr.task.Spec.Results {
		str["results."+r.Name+".path"] = filepath.Join(tr.results, r.Name)
	}
	for _, w := range tr.task.Spec.Workspaces {
		path, bound := tr.workspaces[w.Name]
		str["workspaces."+w.Name+".path"] = path
		str["workspaces."+w.Name+".bound"] = fmt.Sprint(bound)
	}
	for _, s := range tr.task.Spec.Steps {
		if s.Name == step {
			for _, r := range s.Results {
				str["step.results."+r.Name+".path"] = filepath.Join(tr.steps, step, r.Name)
			}
		}
	}
	return str, arr
}

var stepResultRef = regexp.MustCompile(`\$\(steps\.([a-z0-9-]+)\.results\.([a-z0-9-]+)(\[\*\])?\)`)

// render returns a step's command line and environment as the controller
// renders them; references to step results, which Tekton's entrypoint
// resolves at run time, are left as written.
func (tr *taskRun) render(s pipelinev1.Step) ([]string, map[string]string) {
	str, arr := tr.replacements(s.Name)
	var argv []string
	for _, a := range append(append([]string{}, s.Command...), s.Args...) {
		argv = append(argv, substitution.ApplyArrayReplacements(a, str, arr)...)
	}
	env := map[string]string{}
	for _, e := range s.Env {
		env[e.Name] = substitution.ApplyReplacements(e.Value, str)
	}
	return argv, env
}

// runs evaluates a step's when expressions (input in/notin values).
func (tr *taskRun) runs(s pipelinev1.Step) bool {
	str, _ := tr.replacements(s.Name)
	for _, w := range s.When {
		in := slices.Contains(w.Values, substitution.ApplyReplacements(w.Input, str))
		if (w.Operator == "in") != in {
			return false
		}
	}
	return true
}

func (tr *taskRun) step(t *testing.T, name string) pipelinev1.Step {
	t.Helper()
	i := slices.IndexFunc(tr.task.Spec.Steps, func(s pipelinev1.Step) bool { return s.Name == name })
	if i < 0 {
		t.Fatalf("Task %s has no step %s", tr.task.Name, name)
	}
	return tr.task.Spec.Steps[i]
}

// stepResultArgs checks each step result a step's args refer to: a whole
// argument, naming an array result declared by an earlier step (what the
// entrypoint expands into several arguments). It returns the args without
// those references.
func (tr *taskRun) stepResultArgs(t *testing.T, s pipelinev1.Step, argv []string) []string {
	t.Helper()
	var out []string
	for _, a := range argv {
		m := stepResultRef.FindStringSubmatch(a)
		if m == nil {
			out = append(out, a)
			continue
		}
		if a != m[0] || m[3] == "" {
			t.Errorf("step %s: step result %q must be a whole [*] argument", s.Name, a)
		}
		i := slices.IndexFunc(tr.task.Spec.Steps, func(p pipelinev1.Step) bool { return p.Name == m[1] })
		self := slices.IndexFunc(tr.task.Spec.Steps, func(p pipelinev1.Step) bool { return p.Name == s.Name })
		if i < 0 || i >= self {
			t.Errorf("step %s: %s names no earlier step", s.Name, a)
			continue
		}
		j := slices.IndexFunc(tr.task.Spec.Steps[i].Results, func(r pipelinev1.StepResult) bool { return r.Name == m[2] })
		if j < 0 || tr.task.Spec.Steps[i].Results[j].Type != pipelinev1.ResultsTypeArray {
			t.Errorf("step %s: %s is not an array result of step %s", s.Name, a, m[1])
		}
	}
	return out
}

// parseCiel parses a rendered ciel command line with the real command
// tree, as the binary would before running it, and returns the command
// with its flags set and the positional arguments.
func parseCiel(t *testing.T, argv []string) (*cobra.Command, []string) {
	t.Helper()
	if len(argv) == 0 || argv[0] != "ciel" {
		t.Fatalf("not a ciel command line: %q", argv)
	}
	root := newRootCmd(func(string) string { return "" })
	cmd, rest, err := root.Find(argv[1:])
	if err != nil || cmd == root || !cmd.Runnable() {
		t.Fatalf("%q names no ciel command (%v)", argv, err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatalf("%q: %v", argv, err)
	}
	args := cmd.Flags().Args()
	if cmd.Args != nil {
		if err := cmd.Args(cmd, args); err != nil {
			t.Fatalf("%q: %v", argv, err)
		}
	}
	return cmd, args
}

// kanikoFlags maps the --key=value arguments of the Kaniko command line to
// their values; a key given twice fails.
func kanikoFlags(t *testing.T, argv []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, a := range argv[1:] {
		k, v, _ := strings.Cut(a, "=")
		if _, dup := out[k]; dup {
			t.Errorf("kaniko: %s given twice in %q", k, argv)
		}
		out[k] = v
	}
	return out
}

// TestTaskSteps renders each step of the Tasks with a run's params and
// checks its command line: ciel steps parse with the real command tree (the
// YAML and the CLI agree on every subcommand and flag), and the flags that
// carry a defence or a Pipeline's wiring hold the params' values. Every
// ciel step of every Task is a row.
func TestTaskSteps(t *testing.T) {
	const (
		image = "registry.example.com/group/app"
		sha   = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
		tag   = "sha-" + sha
	)
	index := "sha256:" + strings.Repeat("0c", 32)
	src := "/workspace/source"
	build := map[string]any{"IMAGE": image, "TAG": tag, "PLATFORM": "arm64", "PLATFORMS": "linux/amd64,linux/arm64",
		"REVISION": sha, "GIT_URL": "https://gitlab.example.com/group/app.git", "BUILD_ARGS": []string{"GO_VERSION=1.26"}}
	rows := []struct {
		task, step string
		params     map[string]any
		workspaces map[string]string
		flags      map[string]string // flag -> value, for the flags checked
		args       []string          // positional arguments, when checked
		env        map[string]string
	}{
		{task: "platform-plan", step: "plan", params: map[string]any{"PLATFORMS": []string{"linux/amd64", "aarch64"}},
			args: []string{"linux/amd64", "aarch64"}},
		{task: "kaniko-build", step: "prepare", params: build, workspaces: map[string]string{"source": src},
			flags: map[string]string{"image": image, "tag": tag, "platform": "arm64", "platforms": "linux/amd64,linux/arm64",
				"revision": sha, "source": "https://gitlab.example.com/group/app.git", "ca-dir": ""},
			args: []string{"GO_VERSION=1.26"}},
		{task: "kaniko-build", step: "build", params: build, workspaces: map[string]string{"source": src},
			flags: map[string]string{"--cache": "true", "--reproducible": "true", "--context": "dir://" + src + "/."},
			env:   map[string]string{"DOCKER_CONFIG": "/kaniko/.docker"}},
		{task: "kaniko-build", step: "results", params: build, workspaces: map[string]string{"source": src},
			flags: map[string]string{"image": image}},
		{task: "merge-index", step: "tags",
			params: map[string]any{"IMAGE": image, "TAG": tag, "EXTRA_TAGS": []string{"branch-main", ""}, "IMAGES": []string{image + "@" + index}},
			flags:  map[string]string{"image": image}, args: []string{tag, "branch-main", ""}},
		{task: "merge-index", step: "create",
			params: map[string]any{"IMAGE": image, "TAG": tag, "IMAGES": []string{image + "@" + index}, "PLATFORMS": "linux/amd64,linux/arm64", "REVISION": sha},
			flags:  map[string]string{"require-platforms": "linux/amd64,linux/arm64", "revision": sha}, args: []string{image + "@" + index}},
		{task: "find-index", step: "find",
			params: map[string]any{"IMAGE": image, "TAG": tag, "PLATFORMS": "linux/amd64,linux/arm64", "REVISION": sha, "REQUIRED": "true"},
			flags:  map[string]string{"image": image, "tag": tag, "revision": sha, "required": "true", "require-platforms": "linux/amd64,linux/arm64"}},
		{task: "release-promote", step: "promote",
			params: map[string]any{"FROM": image + "@" + index, "IMAGE": image, "VERSION": "v1.4.2", "REVISION": sha},
			flags:  map[string]string{"from": image + "@" + index, "repo": image, "version": "v1.4.2", "revision": sha}},
	}
	covered := map[string]bool{}
	for _, r := range rows {
		covered[r.task+"/"+r.step] = true
		t.Run(r.task+"/"+r.step, func(t *testing.T) {
			tr := newTaskRun(t, loadTask(t, r.task), r.params, r.workspaces)
			s := tr.step(t, r.step)
			argv, env := tr.render(s)
			argv = tr.stepResultArgs(t, s, argv)
			var flag func(name string) (string, bool)
			var args []string
			if argv[0] == "ciel" {
				var cmd *cobra.Command
				cmd, args = parseCiel(t, argv)
				flag = func(name string) (string, bool) {
					f := cmd.Flags().Lookup(name)
					if f == nil || !f.Changed {
						return "", false
					}
					return f.Value.String(), true
				}
			} else {
				flags := kanikoFlags(t, argv)
				flag = func(name string) (string, bool) { v, ok := flags[name]; return v, ok }
			}
			for k, want := range r.flags {
				if got, ok := flag(k); !ok || got != want {
					t.Errorf("flag %s = %q (given: %v), want %q in %q", k, got, ok, want, argv)
				}
			}
			if r.args != nil {
				if diff := cmp.Diff(r.args, args); diff != "" {
					t.Errorf("arguments (-want +got):\n%s", diff)
				}
			}
			for k, want := range r.env {
				if env[k] != want {
					t.Errorf("env %s = %q, want %q", k, env[k], want)
				}
			}
		})
	}
	entries, err := os.ReadDir(tasksDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		for _, s := range loadTask(t, e.Name()).Spec.Steps {
			if slices.Equal(s.Command, []string{"ciel"}) && !covered[e.Name()+"/"+s.Name] {
				t.Errorf("ciel step %s of Task %s has no row here", s.Name, e.Name())
			}
		}
	}
}

// TestKanikoBuildStepsRun evaluates kaniko-build's step when expressions:
// the clone steps run only with GIT_URL, and the fetch that may use http
// only with GIT_ALLOW_HTTP "true".
func TestKanikoBuildStepsRun(t *testing.T) {
	task := loadTask(t, "kaniko-build")
	base := map[string]any{"IMAGE": "registry.example.com/group/app", "TAG": "t", "PLATFORM": "linux/amd64"}
	with := func(kv ...string) map[string]any {
		p := map[string]any{}
		for k, v := range base {
			p[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			p[kv[i]] = kv[i+1]
		}
		return p
	}
	for _, tc := range []struct {
		name   string
		params map[string]any
		want   []string
	}{
		{"no GIT_URL: the workspace as it is", base, []string{"prepare", "build", "results"}},
		{"GIT_URL: the https-only fetch", with("GIT_URL", "https://gitlab.example.com/g/app.git", "REVISION", "abc"),
			[]string{"prepare", "clone-init", "clone-fetch", "clone-checkout", "build", "results"}},
		{"GIT_ALLOW_HTTP true: the fetch that may use http", with("GIT_URL", "http://gitlab.example.com/g/app.git", "REVISION", "abc", "GIT_ALLOW_HTTP", "true"),
			[]string{"prepare", "clone-init", "clone-fetch-http", "clone-checkout", "build", "results"}},
		{"GIT_ALLOW_HTTP not exactly true", with("GIT_URL", "http://gitlab.example.com/g/app.git", "REVISION", "abc", "GIT_ALLOW_HTTP", "True"),
			[]string{"prepare", "clone-init", "clone-fetch", "clone-checkout", "build", "results"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTaskRun(t, task, tc.params, map[string]string{"source": t.TempDir()})
			var got []string
			for _, s := range task.Spec.Steps {
				if tr.runs(s) {
					got = append(got, s.Name)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("steps run (-want +got):\n%s", diff)
			}
		})
	}
}

// runGit runs, in order, the git steps the run's params select, with the
// real git and each step's rendered environment.
func (tr *taskRun) runGit(t *testing.T) error {
	t.Helper()
	for _, s := range tr.task.Spec.Steps {
		if !tr.runs(s) || !slices.Equal(s.Command, []string{"git"}) {
			continue
		}
		argv, env := tr.render(s)
		cmd := exec.Command("git", argv[1:]...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("step %s: %q: %w\n%s", s.Name, argv, err, out)
		}
	}
	return nil
}

// TestKanikoBuildClonesTheRevision runs kaniko-build's clone steps with the
// real git against a repository served over HTTP on loopback: the exact
// commit is checked out in the source workspace, not the branch head; git
// refuses http unless GIT_ALLOW_HTTP is "true", and file, local paths and
// ext always.
func TestKanikoBuildClonesTheRevision(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CIEL_REQUIRE_REAL") == "1" {
			t.Fatal("git is not installed (CIEL_REQUIRE_REAL=1)")
		}
		t.Skip("git is not installed")
	}
	repo := t.TempDir()
	gitIn := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=ci", "-c", "user.email=ci@example.com"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	gitIn("init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(repo, "Dockerfile"), []byte("FROM scratch\nCOPY v1 /\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitIn("add", ".")
	gitIn("commit", "-q", "-m", "v1")
	want := gitIn("rev-parse", "HEAD")
	if err := os.WriteFile(filepath.Join(repo, "Dockerfile"), []byte("FROM scratch\nCOPY v2 /\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitIn("commit", "-q", "-am", "v2: the branch moved on after the push")

	// Served over plain HTTP by git's own smart HTTP server on loopback:
	// the Task lets git use http only with GIT_ALLOW_HTTP "true".
	url := gitHTTPServer(t, repo)
	task := loadTask(t, "kaniko-build")
	clone := func(gitURL string, params map[string]any) (string, error) {
		src := t.TempDir()
		p := map[string]any{"IMAGE": "registry.example.com/group/app", "TAG": "t", "PLATFORM": "linux/amd64", "GIT_URL": gitURL, "REVISION": want}
		for k, v := range params {
			p[k] = v
		}
		return src, newTaskRun(t, task, p, map[string]string{"source": src}).runGit(t)
	}
	for _, tc := range []struct {
		name, url string
		params    map[string]any
		want      string
	}{
		{name: "http without GIT_ALLOW_HTTP", url: url, want: "transport 'http' not allowed"},
		{name: "file", url: "file://" + repo, params: map[string]any{"GIT_ALLOW_HTTP": "true"}, want: "transport 'file' not allowed"},
		{name: "local path", url: repo, params: map[string]any{"GIT_ALLOW_HTTP": "true"}, want: "transport 'file' not allowed"},
		{name: "ext", url: "ext::sh -c touch% /tmp/pwned", params: map[string]any{"GIT_ALLOW_HTTP": "true"}, want: "transport 'ext' not allowed"},
	} {
		t.Run("refused "+tc.name, func(t *testing.T) {
			_, err := clone(tc.url, tc.params)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	src, err := clone(url, map[string]any{"GIT_ALLOW_HTTP": "true"})
	if err != nil {
		t.Fatal(err)
	}
	head, err := exec.Command("git", "-C", src, "-c", "safe.directory=*", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(head)); got != want {
		t.Errorf("checked out %s, want the pushed commit %s", got, want)
	}
	if df, _ := os.ReadFile(filepath.Join(src, "Dockerfile")); !strings.Contains(string(df), "COPY v1") {
		t.Errorf("Dockerfile of the wrong commit: %q", df)
	}
}

// gitHTTPServer serves the repository dir with git's own smart HTTP server
// (git http-backend, as CGI) on loopback and returns its clone URL.
func gitHTTPServer(t *testing.T, dir string) string {
	t.Helper()
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	h := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(dir), "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + t.TempDir()},
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/" + filepath.Base(dir)
}
