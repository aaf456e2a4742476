package command

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const (
	pushRequest = "../../../policies/testdata/push-src.http"
	pushBody    = "../../../interceptor/gitlab/testdata/push.json"
	docsBody    = "../../../interceptor/gitlab/testdata/docs_only_push.json"
	policyFile  = "../../../policies/build-on-change.yaml"
	// documentedPush is GitLab's documented push event.
	documentedPush = "../../../interceptor/gitlab/testdata/documented_push.json"
)

type result struct {
	stdout string
	code   int
	err    error
}

func run(t *testing.T, args ...string) result {
	t.Helper()
	cmd := NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return result{stdout: out.String(), code: ExitCode(err), err: err}
}

// documentedEval is the arguments evaluating expr on GitLab's documented
// push event.
func documentedEval(expr string) []string {
	return []string{"--expr", expr, "--body", documentedPush, "-H", "X-Gitlab-Event: Push Hook"}
}

// writeFile writes content to name (which may have folders) in a new
// temporary directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExitCodesAndFirstLine(t *testing.T) {
	exprFile := writeFile(t, "filter.cel", `extensions.changed_files.all.exists(f, f.glob("**/*.go"))`+"\n")
	secretDir := filepath.Dir(filepath.Dir(writeFile(t, "gitlab-webhook/token", "s3cret")))
	compareSecret := func(token string) []string {
		return []string{"--expr", `header.canonical("X-Gitlab-Token").compareSecret("token", "gitlab-webhook")`,
			"--body", pushBody, "-H", "X-Gitlab-Token: " + token, "--secret-dir", secretDir}
	}
	tests := []struct {
		name      string
		args      []string
		code      int
		firstLine string
		contains  []string
	}{
		{"tekton form true", []string{"-e", exprFile, "-r", pushRequest}, 0, "true", []string{"decision: continue"}},
		{"false exits 1", []string{"--expr", `body.ref == "refs/heads/nope"`, "-r", pushRequest}, 1, "false", []string{"decision: skip"}},
		{"non-bool value printed as JSON", []string{"--expr", `extensions.push.short_sha`, "-r", pushRequest}, 0, `"c95fc90a"`, nil},
		{"list value", []string{"--expr", `extensions.changed_files.all.filterPaths(["go.*"])`, "-r", pushRequest}, 0, `["go.mod","go.sum"]`, nil},
		{"body and header flags", []string{"--expr", `header.canonical("X-Gitlab-Event") == "Push Hook"`, "--body", pushBody, "-H", "X-Gitlab-Event: Push Hook"}, 0, "true", nil},
		{"files override", []string{"--expr", `extensions.changed_files.all == ["docs/a.md"] && extensions.changed_files.source == "override"`, "-r", pushRequest, "--files", "docs/a.md"}, 0, "true", nil},
		{"empty files override", []string{"--expr", `extensions.changed_files.count`, "-r", pushRequest, "--files", ""}, 0, "0", nil},
		{"policy true", []string{"--policy", policyFile, "-r", pushRequest}, 0, "true", []string{"image_tag: \"c95fc90a\"", "A internal/ledger/export.go", "changed files: 7"}},
		{"policy false", []string{"--policy", policyFile, "--body", docsBody, "-H", "X-Gitlab-Event: Push Hook"}, 1, "false", []string{"the filter is false"}},
		{"policy event type", []string{"--policy", policyFile, "--body", pushBody, "-H", "X-Gitlab-Event: System Hook"}, 1, "false", []string{"not one of the policy's eventTypes"}},
		{"requestURL from the request line", []string{"--expr", `requestURL`, "-r", pushRequest}, 0, `"http://el-ciel-gitlab.ci.svc.cluster.local:8080/gitlab"`, nil},
		{"url flag", []string{"--expr", `requestURL`, "-r", pushRequest, "--url", "https://x/y"}, 0, `"https://x/y"`, nil},
		{"compareSecret from --secret-dir, right token", compareSecret("s3cret"), 0, "true", nil},
		{"compareSecret from --secret-dir, wrong token", compareSecret("wrong"), 1, "false", nil},
		// Issue 19: expressions Tekton Triggers evaluates give Triggers'
		// results on GitLab's documented push.
		{"issue 19 substring", documentedEval(`body.ref.substring(11)`), 0, `"master"`, nil},
		{"issue 19 substring after lastIndexOf", documentedEval(`body.ref.substring(body.ref.lastIndexOf('/') + 1)`), 0, `"master"`, nil},
		{"issue 19 lists.range", documentedEval(`lists.range(size(body.commits))`), 0, `[0,1]`, nil},
		{"issue 19 lists.range map substring", documentedEval(`lists.range(size(body.commits)).map(i, body.commits[i].id.substring(0, 7))`), 0, `["b6568db","da15608"]`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d (err %v)\n%s", r.code, tt.code, r.err, r.stdout)
			}
			first, _, _ := strings.Cut(r.stdout, "\n")
			if first != tt.firstLine {
				t.Errorf("first line %q, want %q", first, tt.firstLine)
			}
			for _, c := range tt.contains {
				if !strings.Contains(r.stdout, c) {
					t.Errorf("output lacks %q:\n%s", c, r.stdout)
				}
			}
		})
	}
}

func TestErrorsExit2(t *testing.T) {
	bad := writeFile(t, "bad.json", `{"object_kind": "push", "commits": "nope"}`)
	huge := writeFile(t, "huge.json", `{"object_kind":"note","x":"`+strings.Repeat("a", 2048)+`"}`)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no expression", []string{"-r", pushRequest}, "exactly one of"},
		{"two expressions", []string{"--expr", "true", "--policy", policyFile, "-r", pushRequest}, "exactly one of"},
		{"no webhook", []string{"--expr", "true"}, "-r REQUEST_FILE or --body"},
		{"syntax error with position", []string{"--expr", "body.ref ==", "-r", pushRequest}, "1:12"},
		{"typed misspelling", []string{"--typed", "--expr", "size(body.comits) > 0", "-r", pushRequest}, "undefined field 'comits'"},
		{"runtime error", []string{"--expr", "body.nope", "-r", pushRequest}, "no such key"},
		{"wrong field type", []string{"--expr", "true", "--body", bad, "-H", "X-Gitlab-Event: Push Hook"}, "commits"},
		{"body over the limit", []string{"--expr", "true", "--body", huge, "--max-body-bytes", "1024"}, "too large"},
		{"missing file", []string{"--expr", "true", "--body", "/nonexistent.json"}, "no such file"},
		{"bad header", []string{"--expr", "true", "--body", pushBody, "-H", "nocolon"}, "Name: value"},
		{"bad output", []string{"--expr", "true", "--body", pushBody, "-o", "yaml"}, "text or json"},
		{"unknown flag", []string{"--nope"}, "unknown flag"},
		{"cost limit", []string{"--expr", "body.commits.all(c, body.commits.all(d, body.commits.all(e, true)))", "-r", pushRequest, "--cost-limit", "10"}, "cost limit"},
		// Range errors are evaluation errors (exit 2), not compile errors.
		{"substring range error", documentedEval(`'tacocat'.substring(2, 1)`), "invalid substring range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, tt.args...)
			if r.code != ExitError {
				t.Fatalf("exit %d, want 2\n%s", r.code, r.stdout)
			}
			msg := ""
			if r.err != nil {
				msg = r.err.Error()
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not mention %q", msg, tt.want)
			}
		})
	}
}

func TestJSONOutput(t *testing.T) {
	r := run(t, "--policy", policyFile, "-r", pushRequest, "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %v", r.code, r.err)
	}
	if strings.Count(strings.TrimSpace(r.stdout), "\n") != 0 {
		t.Errorf("-o json printed more than one line:\n%s", r.stdout)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path []string
		want any
	}{
		{[]string{"value"}, true},
		{[]string{"continue"}, true},
		{[]string{"policy"}, "build-on-change"},
		{[]string{"overlays", "image_tag"}, "c95fc90a"},
		{[]string{"changed_files", "count"}, float64(7)},
		{[]string{"push", "branch"}, "main"},
	} {
		var got any = rep
		for _, k := range tc.path {
			m, _ := got.(map[string]any)
			got = m[k]
		}
		if got != tc.want {
			t.Errorf("report %s = %#v, want %#v", strings.Join(tc.path, "."), got, tc.want)
		}
	}

	r = run(t, "--expr", "body.ref ==", "-r", pushRequest, "-o", "json")
	if r.code != 2 {
		t.Fatalf("exit %d, want 2", r.code)
	}
	var fail struct {
		Error struct {
			Kind string `json:"kind"`
		} `json:"error"`
		CompileErrors []struct {
			Where  string `json:"Where"`
			Issues string `json:"Issues"`
		} `json:"compile_errors"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &fail); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if fail.Error.Kind != "compile" || len(fail.CompileErrors) != 1 || !strings.Contains(fail.CompileErrors[0].Issues, "1:12") {
		t.Errorf("error report %+v", fail)
	}
}

func TestRequestFileToleratesBadContentLength(t *testing.T) {
	body, err := os.ReadFile(pushBody)
	if err != nil {
		t.Fatal(err)
	}
	for name, head := range map[string]string{
		"too short": "POST / HTTP/1.1\nX-Gitlab-Event: Push Hook\nContent-Length: 10\n\n",
		"missing":   "POST /hooks HTTP/1.1\r\nX-Gitlab-Event: Push Hook\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			req := writeFile(t, "req.http", head+string(body))
			if r := run(t, "--expr", `extensions.push.short_sha == "c95fc90a"`, "-r", req); r.code != 0 {
				t.Errorf("exit %d (%v)\n%s", r.code, r.err, r.stdout)
			}
		})
	}
}

func TestTestSubcommand(t *testing.T) {
	r := run(t, "test", "../../../policies")
	if r.code != 0 {
		t.Fatalf("exit %d (%v)\n%s", r.code, r.err, r.stdout)
	}
	if !strings.Contains(r.stdout, "PASS  build-on-change: a source push builds") || !strings.Contains(r.stdout, "0 failed") {
		t.Errorf("output:\n%s", r.stdout)
	}

	dir := t.TempDir()
	b, err := os.ReadFile(pushBody)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "push.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	failing := filepath.Join(dir, "p.yaml")
	os.WriteFile(failing, []byte(`name: wrong
filter: extensions.push.is_tag
tests:
  - name: expects the impossible
    payload: push.json
    event: Push Hook
    expect: {continue: true}
`), 0o644)
	r = run(t, "test", failing)
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL  wrong: expects the impossible") || !strings.Contains(r.stdout, "1 failed") {
		t.Errorf("exit %d, output:\n%s", r.code, r.stdout)
	}

	broken := filepath.Join(dir, "broken.yaml")
	os.WriteFile(broken, []byte("name: broken\nfilter: 'body.ref =='\nfiltre: typo\n"), 0o644)
	r = run(t, "test", broken)
	if r.code != 2 || !strings.Contains(r.err.Error(), "filtre") {
		t.Errorf("exit %d, err %v", r.code, r.err)
	}
}

// TestBinary builds cel-eval as `go install` would and checks what users
// get: size within 20 MB, no Tekton Triggers interceptor code or knative
// linked, and the exit codes of the real process.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	deps, err := exec.Command(goBin, "list", "-deps", "github.com/ciel-ci/ciel/cmd/cel-eval").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, deps)
	}
	for _, bad := range []string{"github.com/tektoncd/triggers/pkg/interceptors", "knative.dev/"} {
		if strings.Contains(string(deps), bad) {
			t.Errorf("cel-eval links %s", bad)
		}
	}
	// Both what `go install` produces by default (with DWARF) and a
	// stripped release build stay within 20 MiB.
	dir := t.TempDir()
	bin := filepath.Join(dir, "cel-eval")
	for _, b := range []struct {
		out   string
		flags []string
		limit int64
	}{
		{filepath.Join(dir, "cel-eval-default"), nil, 20 << 20},
		{bin, []string{"-trimpath", "-ldflags=-s -w"}, 20 << 20},
	} {
		args := append(append([]string{"build", "-o", b.out}, b.flags...), "github.com/ciel-ci/ciel/cmd/cel-eval")
		if out, err := exec.Command(goBin, args...).CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		st, err := os.Stat(b.out)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("cel-eval %v: %.1f MB", b.flags, float64(st.Size())/(1<<20))
		if b.limit > 0 && st.Size() > b.limit {
			t.Errorf("cel-eval %v is %d bytes, over %d", b.flags, st.Size(), b.limit)
		}
	}
	for args, want := range map[string]int{
		"--expr true --body " + pushBody:  0,
		"--expr false --body " + pushBody: 1,
		"--expr nope( --body " + pushBody: 2,
	} {
		cmd := exec.Command(bin, strings.Fields(args)...)
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != want {
			t.Errorf("cel-eval %s: exit %d, want %d", args, code, want)
		}
	}
	// Issue 19: an expression Triggers evaluates, once refused at compile
	// time by a cost estimate.
	out, err := exec.Command(bin, documentedEval("body.ref.substring(11)")...).CombinedOutput()
	if first, _, _ := strings.Cut(string(out), "\n"); err != nil || first != `"master"` {
		t.Errorf("cel-eval --expr body.ref.substring(11): %v\n%s", err, out)
	}
}
