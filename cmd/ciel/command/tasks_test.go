package command

import (
	"bytes"
	"context"
	"encoding/json"
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
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/substitution"
	"sigs.k8s.io/yaml"

	"github.com/ciel-ci/ciel/internal/registrytest"
)

// This file runs the steps of the Tasks in tasks/ the way a Tekton pod
// runs them, in-process: params, results and workspaces substituted with
// Tekton's own substitution functions, step `when` expressions and step
// results resolved as Tekton's entrypoint does at run time, the ciel steps
// executed by the real command tree, git steps by the real git, and the
// Kaniko step by a stand-in that pushes an image of the platform it was
// asked for (a real Kaniko runs in the end-to-end suite). It proves that
// the YAML and the CLI agree on every flag, and walks build-multiarch and
// release over a registry.

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
	log        bytes.Buffer
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

// render returns a step's command line and environment as its container
// runs them: controller substitution, then the entrypoint's step results.
func (tr *taskRun) render(t *testing.T, s pipelinev1.Step) ([]string, map[string]string) {
	t.Helper()
	str, arr := tr.replacements(s.Name)
	var argv []string
	for _, a := range append(append([]string{}, s.Command...), s.Args...) {
		for _, a := range substitution.ApplyArrayReplacements(a, str, arr) {
			m := stepResultRef.FindStringSubmatch(a)
			if m == nil {
				argv = append(argv, a)
				continue
			}
			raw, err := os.ReadFile(filepath.Join(tr.steps, m[1], m[2]))
			if err != nil {
				t.Fatalf("step %s: step result %s of %s: %v", s.Name, m[2], m[1], err)
			}
			if m[3] != "" {
				if a != m[0] {
					t.Fatalf("step %s: an array step result must be a whole argument: %q", s.Name, a)
				}
				var vals []string
				if err := json.Unmarshal(raw, &vals); err != nil {
					t.Fatalf("step %s: array step result %s: %v", s.Name, m[2], err)
				}
				argv = append(argv, vals...)
				continue
			}
			argv = append(argv, strings.ReplaceAll(a, m[0], string(raw)))
		}
	}
	env := map[string]string{}
	for _, e := range s.Env {
		env[e.Name] = substitution.ApplyReplacements(e.Value, str)
	}
	return argv, env
}

// skipped evaluates a step's when expressions (input in/notin values).
func (tr *taskRun) skipped(s pipelinev1.Step) bool {
	str, _ := tr.replacements(s.Name)
	for _, w := range s.When {
		in := slices.Contains(w.Values, substitution.ApplyReplacements(w.Input, str))
		if (w.Operator == "in") != in {
			return true
		}
	}
	return false
}

// executor runs one rendered step.
type executor func(t *testing.T, argv []string, env map[string]string) error

// run executes the steps in order, stopping at the first failure.
func (tr *taskRun) run(t *testing.T, executors map[string]executor) error {
	t.Helper()
	for _, s := range tr.task.Spec.Steps {
		if tr.skipped(s) {
			fmt.Fprintf(&tr.log, "step %s: skipped\n", s.Name)
			continue
		}
		if err := os.MkdirAll(filepath.Join(tr.steps, s.Name), 0o755); err != nil {
			t.Fatal(err)
		}
		argv, env := tr.render(t, s)
		exec, ok := executors[argv[0]]
		if !ok {
			t.Fatalf("step %s: no executor for %q", s.Name, argv[0])
		}
		fmt.Fprintf(&tr.log, "step %s: %q\n", s.Name, argv)
		if err := exec(t, argv, env); err != nil {
			return fmt.Errorf("step %s: %w\n%s", s.Name, err, tr.log.String())
		}
	}
	return nil
}

func (tr *taskRun) result(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tr.results, name))
	if err != nil {
		t.Fatalf("result %s: %v\n%s", name, err, tr.log.String())
	}
	return string(b)
}

// cielExecutor runs the real command tree; /tekton/results (Tekton's
// documented results directory) maps to the run's results directory.
func cielExecutor(tr *taskRun) executor {
	return func(t *testing.T, argv []string, env map[string]string) error {
		args := slices.Clone(argv[1:])
		for i, a := range args {
			args[i] = strings.ReplaceAll(a, "/tekton/results", tr.results)
		}
		var r result
		if args[0] == "tekton" {
			r = runTekton(t, env, args[1:]...)
		} else {
			r = run(t, env, args...)
		}
		fmt.Fprintf(&tr.log, "%s%s", r.stdout, r.stderr)
		return r.err
	}
}

// kanikoStandIn pushes, to --destination, an image of --custom-platform
// and writes its digest to --digest-file, after checking the flags a build
// of that platform must have.
func kanikoStandIn(seed string) executor {
	return func(t *testing.T, argv []string, env map[string]string) error {
		flags := map[string][]string{}
		for _, a := range argv[1:] {
			k, v, _ := strings.Cut(a, "=")
			flags[k] = append(flags[k], v)
		}
		one := func(k string) string {
			if len(flags[k]) != 1 {
				t.Fatalf("kaniko: want one %s, got %q", k, flags[k])
			}
			return flags[k][0]
		}
		p := one("--custom-platform")
		arch := strings.Split(p, "/")[1]
		for _, want := range []string{"TARGETPLATFORM=" + p, "TARGETOS=linux", "TARGETARCH=" + arch} {
			if !slices.Contains(flags["--build-arg"], want) {
				t.Errorf("kaniko: no --build-arg=%s in %q", want, argv)
			}
		}
		if c := one("--cache-repo"); !strings.HasSuffix(c, "/cache-"+strings.ReplaceAll(p, "/", "-")) {
			t.Errorf("kaniko: cache repository %s is not per platform", c)
		}
		if one("--reproducible") != "true" || one("--cache") != "true" || !strings.HasPrefix(one("--context"), "dir://") {
			t.Errorf("kaniko: flags %q", argv)
		}
		if env["DOCKER_CONFIG"] != "/kaniko/.docker" {
			t.Errorf("kaniko: DOCKER_CONFIG = %q", env["DOCKER_CONFIG"])
		}
		dest := push(t, one("--destination"), platformImage(t, p, seed))
		digest := dest[strings.Index(dest, "@")+1:]
		return os.WriteFile(one("--digest-file"), []byte(digest), 0o644)
	}
}

// gitExecutor runs the real git with the step's environment.
func gitExecutor(t *testing.T, argv []string, env map[string]string) error {
	cmd := exec.Command("git", argv[1:]...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%q: %w\n%s", argv, err, out)
	}
	return nil
}

// TestTasksBuildAndRelease walks build-multiarch (plan, one kaniko-build
// per node architecture, merge-index) and then release (plan, find-index,
// release-promote) over a registry, passing results between Tasks as the
// Pipelines do.
func TestTasksBuildAndRelease(t *testing.T) {
	host := registrytest.Memory(t)
	image := host + "/group/app"
	const sha = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
	const short = "sha-" + sha // the commit tag config/triggers gives

	plan := newTaskRun(t, loadTask(t, "platform-plan"), map[string]any{"PLATFORMS": []string{"linux/amd64", "aarch64"}}, nil)
	if err := plan.run(t, map[string]executor{"ciel": cielExecutor(plan)}); err != nil {
		t.Fatal(err)
	}
	var arches []string
	if err := json.Unmarshal([]byte(plan.result(t, "ARCHES")), &arches); err != nil {
		t.Fatal(err)
	}
	platforms := plan.result(t, "PLATFORMS")
	if diff := cmp.Diff([]string{"amd64", "arm64"}, arches); diff != "" {
		t.Fatalf("ARCHES (-want +got):\n%s", diff)
	}

	// The matrix: one build per node architecture, given as a bare arch.
	var urls []string
	for _, arch := range arches {
		b := newTaskRun(t, loadTask(t, "kaniko-build"), map[string]any{
			"IMAGE": image, "TAG": short, "PLATFORM": arch, "PLATFORMS": platforms, "REVISION": sha,
			"BUILD_ARGS": []string{"GO_VERSION=1.26"},
		}, map[string]string{"source": t.TempDir()})
		err := b.run(t, map[string]executor{"ciel": cielExecutor(b), "/kaniko/executor": kanikoStandIn(short), "git": gitExecutor})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.log.String(), "step clone-fetch: skipped") {
			t.Errorf("the clone ran without GIT_URL:\n%s", b.log.String())
		}
		url, digest := b.result(t, "IMAGE_URL"), b.result(t, "IMAGE_DIGEST")
		if url != image+"@"+digest || headDigest(t, image+":"+short+"-linux-"+arch) != digest {
			t.Errorf("build %s: IMAGE_URL %s, IMAGE_DIGEST %s, tag %s", arch, url, digest, headDigest(t, image+":"+short+"-linux-"+arch))
		}
		if got := b.result(t, "PLATFORM"); got != "linux/"+arch {
			t.Errorf("build %s: PLATFORM = %s", arch, got)
		}
		urls = append(urls, url)
	}
	slices.Reverse(urls) // matrix results arrive in no guaranteed order

	merge := newTaskRun(t, loadTask(t, "merge-index"), map[string]any{
		"IMAGE": image, "TAG": short, "EXTRA_TAGS": []string{"branch-main", ""}, "IMAGES": urls, "PLATFORMS": platforms, "REVISION": sha,
	}, nil)
	if err := merge.run(t, map[string]executor{"ciel": cielExecutor(merge)}); err != nil {
		t.Fatal(err)
	}
	index := merge.result(t, "IMAGE_DIGEST")
	if got := merge.result(t, "IMAGE_URL"); got != image+"@"+index {
		t.Errorf("merge IMAGE_URL = %s, want %s@%s", got, image, index)
	}
	for _, tag := range []string{short, "branch-main"} {
		if got := headDigest(t, image+":"+tag); got != index {
			t.Errorf("%s:%s = %q, want the index %s", image, tag, got, index)
		}
	}

	// release: the index exists, built from the tagged commit, so it is
	// promoted as is, by the digest resolve found (as pipelines/release).
	find := newTaskRun(t, loadTask(t, "find-index"), map[string]any{
		"IMAGE": image, "TAG": short, "PLATFORMS": platforms, "REVISION": sha, "REQUIRED": "true"}, nil)
	if err := find.run(t, map[string]executor{"ciel": cielExecutor(find)}); err != nil {
		t.Fatal(err)
	}
	if find.result(t, "FOUND") != "true" || find.result(t, "IMAGE_DIGEST") != index {
		t.Fatalf("find-index: FOUND %s, IMAGE_DIGEST %s\n%s", find.result(t, "FOUND"), find.result(t, "IMAGE_DIGEST"), find.log.String())
	}
	promote := newTaskRun(t, loadTask(t, "release-promote"), map[string]any{
		"FROM": find.result(t, "IMAGE_URL"), "IMAGE": image, "VERSION": "v1.4.2", "PLATFORMS": platforms, "REVISION": sha,
	}, nil)
	if err := promote.run(t, map[string]executor{"ciel": cielExecutor(promote)}); err != nil {
		t.Fatal(err)
	}
	if promote.result(t, "digest") != index || promote.result(t, "url") != image+":v1.4.2" {
		t.Errorf("promote: digest %s, url %s", promote.result(t, "digest"), promote.result(t, "url"))
	}
	for _, tag := range []string{"v1.4.2", "v1.4", "v1", "latest"} {
		if got := headDigest(t, image+":"+tag); got != index {
			t.Errorf("%s:%s = %q, want the index", image, tag, got)
		}
	}

	// A commit without an index is reported as not found.
	miss := newTaskRun(t, loadTask(t, "find-index"), map[string]any{"IMAGE": image, "TAG": "ffffffff", "PLATFORMS": platforms}, nil)
	if err := miss.run(t, map[string]executor{"ciel": cielExecutor(miss)}); err != nil {
		t.Fatal(err)
	}
	if got := miss.result(t, "FOUND"); got != "false" {
		t.Errorf("FOUND for a missing index = %s", got)
	}

	// The index of another commit under this commit's tag is refused by
	// find-index and by release-promote, before any write.
	other := strings.Repeat("9", 40)
	forged := newTaskRun(t, loadTask(t, "find-index"), map[string]any{"IMAGE": image, "TAG": short, "REVISION": other}, nil)
	if err := forged.run(t, map[string]executor{"ciel": cielExecutor(forged)}); err == nil || !strings.Contains(err.Error(), "not the commit "+other) {
		t.Errorf("find-index of another commit: %v", err)
	}
	refused := newTaskRun(t, loadTask(t, "release-promote"), map[string]any{
		"FROM": image + "@" + index, "IMAGE": image, "VERSION": "v9.0.0", "REVISION": other,
	}, nil)
	if err := refused.run(t, map[string]executor{"ciel": cielExecutor(refused)}); err == nil || !strings.Contains(err.Error(), "not the commit "+other) {
		t.Errorf("release-promote of another commit's index: %v", err)
	}
	if got := headDigest(t, image+":v9.0.0"); got != "" {
		t.Errorf("a refused promotion wrote v9.0.0: %s", got)
	}
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
	host := registrytest.Memory(t)
	clone := func(gitURL string, params map[string]any) (string, error) {
		src := t.TempDir()
		p := map[string]any{"IMAGE": host + "/group/app", "TAG": "t", "PLATFORM": "linux/amd64", "GIT_URL": gitURL, "REVISION": want}
		for k, v := range params {
			p[k] = v
		}
		b := newTaskRun(t, loadTask(t, "kaniko-build"), p, map[string]string{"source": src})
		return src, b.run(t, map[string]executor{"ciel": cielExecutor(b), "/kaniko/executor": kanikoStandIn("clone"), "git": gitExecutor})
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
