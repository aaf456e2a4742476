package status

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// fixture is a PipelineRun and the TaskRuns in the cache next to it.
type fixture struct {
	pr  *v1.PipelineRun
	trs map[string]*v1.TaskRun
}

func (f fixture) TaskRun(namespace, name string) (*v1.TaskRun, bool) {
	tr, ok := f.trs[namespace+"/"+name]
	return tr, ok
}

func load(t testing.TB, file string) fixture {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{trs: map[string]*v1.TaskRun{}}
	for i, doc := range bytes.Split(b, []byte("\n---\n")) {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%s: document %d: %v", file, i, err)
		}
		switch meta.Kind {
		case "PipelineRun":
			f.pr = &v1.PipelineRun{}
			if err := yaml.UnmarshalStrict(doc, f.pr); err != nil {
				t.Fatalf("%s: document %d: %v", file, i, err)
			}
		case "TaskRun":
			tr := &v1.TaskRun{}
			if err := yaml.UnmarshalStrict(doc, tr); err != nil {
				t.Fatalf("%s: document %d: %v", file, i, err)
			}
			f.trs[tr.Namespace+"/"+tr.Name] = tr
		default:
			t.Fatalf("%s: document %d: unexpected kind %q", file, i, meta.Kind)
		}
	}
	if f.pr == nil {
		t.Fatalf("%s: no PipelineRun", file)
	}
	return f
}

func TestStateAndDescription(t *testing.T) {
	type want struct {
		State       State
		Description string
		Complete    bool
	}
	tests := []struct {
		file string
		want want
	}{
		{"created.yaml", want{Pending, "queued: PipelineRun ci/build-x7k2p", true}},
		{"pending.yaml", want{Pending, `queued: PipelineRun "build-x7k2p" is pending`, true}},
		{"resolving.yaml", want{Pending, "queued: PipelineRun ci/build-x7k2p awaiting remote resource", true}},
		{"started.yaml", want{Running, "running: PipelineRun ci/build-x7k2p", true}},
		{"running.yaml", want{Running, "running: PipelineRun ci/build-x7k2p", true}},
		{"cancelling-finally.yaml", want{Running, "running: PipelineRun ci/build-x7k2p (CancelledRunningFinally)", true}},
		{"succeeded.yaml", want{Success, "succeeded in 3m12s", true}},
		{"completed-skipped.yaml", want{Success, "succeeded in 1h1m0s, 2 tasks skipped", true}},
		{"failed-step.yaml", want{Failed, `task build failed (StepFailed): "step-build" exited with code 1`, true}},
		// lint's failure is tolerated (onError: continue), test was only
		// cancelled, the CustomRun is not a TaskRun: arm64 failed first.
		{"failed-several.yaml", want{Failed, `task build-arm64 failed: "step-build" exited with code 137: OOMKilled (+2 more)`, true}},
		{"failed-taskrun-not-cached.yaml", want{Failed, "failed: Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 0", false}},
		{"timeout.yaml", want{Failed, `failed (PipelineRunTimeout): PipelineRun "build-x7k2p" failed to finish within "1h0m0s"`, true}},
		{"pipeline-not-found.yaml", want{Failed, `failed (CouldntGetPipeline): [User error] Error retrieving pipeline for pipelinerun ci/build-x7k2p: error when listing pipelines for pipelineRun build-x7k2p: pipelines.tekton.dev "build" not found`, true}},
		{"cancelled.yaml", want{Canceled, `canceled: PipelineRun "build-x7k2p" was cancelled`, true}},
		{"failed-long-message.yaml", want{Failed, "task build failed: error building image: error building stage: failed to execute command: waiting for process to exit: exit status 1 error building image: error building stage: failed to execute command: waiting for process to exit: exit status 1 error b…", true}},
	}
	for _, tc := range tests {
		t.Run(strings.TrimSuffix(tc.file, ".yaml"), func(t *testing.T) {
			f := load(t, tc.file)
			var got want
			got.State = StateOf(f.pr)
			got.Description, got.Complete = Describe(f.pr, got.State, f)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if n := utf8.RuneCountInString(got.Description); n > MaxLength {
				t.Errorf("description is %d characters, GitLab accepts %d", n, MaxLength)
			}
		})
	}
}

func TestDescribeWithoutTaskRunCache(t *testing.T) {
	f := load(t, "failed-step.yaml")
	got, complete := Describe(f.pr, Failed, nil)
	if want := "failed: Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 1"; got != want || complete {
		t.Errorf("Describe() = %q, %v; want %q, false", got, complete, want)
	}
}

func TestDescribeDeletedRun(t *testing.T) {
	// The reporter reports a run deleted before it finished as canceled;
	// the description then comes from the running object.
	f := load(t, "running.yaml")
	got, _ := Describe(f.pr, Canceled, f)
	if want := "canceled: Tasks Completed: 1 (Failed: 0, Cancelled 0), Incomplete: 2, Skipped: 0"; got != want {
		t.Errorf("Describe() = %q, want %q", got, want)
	}
}

func TestCommitOf(t *testing.T) {
	base := load(t, "created.yaml").pr
	tests := []struct {
		name string
		edit func(pr *v1.PipelineRun)
		want Commit
	}{{
		name: "contract",
		edit: func(*v1.PipelineRun) {},
		want: Commit{ProjectID: "42", Project: "group/app", ProjectURL: "https://gitlab.example.com/group/app",
			SHA: "0123456789abcdef0123456789abcdef01234567", Ref: "main", Pipeline: "build", Event: "Push Hook"},
	}, {
		name: "tag ref, upper-case SHA, no optional annotations",
		edit: func(pr *v1.PipelineRun) {
			pr.Labels[LabelSHA] = strings.ToUpper(pr.Labels[LabelSHA])
			pr.Annotations = map[string]string{AnnotationRef: "refs/tags/v1.2.3"}
		},
		want: Commit{ProjectID: "42", SHA: "0123456789abcdef0123456789abcdef01234567", Ref: "v1.2.3", Pipeline: "build"},
	}, {
		name: "SHA-256 repository",
		edit: func(pr *v1.PipelineRun) { pr.Labels[LabelSHA] = strings.Repeat("ab", 32) },
		want: Commit{ProjectID: "42", Project: "group/app", ProjectURL: "https://gitlab.example.com/group/app",
			SHA: strings.Repeat("ab", 32), Ref: "main", Pipeline: "build", Event: "Push Hook"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pr := base.DeepCopy()
			tc.edit(pr)
			got, err := CommitOf(pr)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestCommitOfRefuses: a PipelineRun whose labels or annotations break the
// contract is not reportable.
func TestCommitOfRefuses(t *testing.T) {
	base := load(t, "created.yaml").pr
	for name, edit := range map[string]func(pr *v1.PipelineRun){
		"no project ID":              func(pr *v1.PipelineRun) { delete(pr.Labels, LabelProjectID) },
		"project path instead of ID": func(pr *v1.PipelineRun) { pr.Labels[LabelProjectID] = "group-app" },
		"short SHA":                  func(pr *v1.PipelineRun) { pr.Labels[LabelSHA] = "0123456" },
		"zero project ID":            func(pr *v1.PipelineRun) { pr.Labels[LabelProjectID] = "0" },
		"no pipeline":                func(pr *v1.PipelineRun) { pr.Labels[LabelPipeline] = "" },
		"ref too long":               func(pr *v1.PipelineRun) { pr.Annotations[AnnotationRef] = "refs/heads/" + strings.Repeat("é", 256) },
		"ref with a newline":         func(pr *v1.PipelineRun) { pr.Annotations[AnnotationRef] = "main\nx" },
	} {
		t.Run(name, func(t *testing.T) {
			pr := base.DeepCopy()
			edit(pr)
			if _, err := CommitOf(pr); !errors.Is(err, ErrNotReportable) {
				t.Fatalf("CommitOf() error = %v, want ErrNotReportable", err)
			}
		})
	}
}

func TestNormalizeRef(t *testing.T) {
	for in, want := range map[string]string{
		"refs/heads/main":                  "main",
		"refs/heads/feature/x":             "feature/x",
		"refs/tags/v1.0.0":                 "v1.0.0",
		"main":                             "main",
		" refs/heads/main ":                "main",
		"refs/merge-requests/12/head":      "refs/merge-requests/12/head",
		"refs/heads/":                      "refs/heads/",
		"":                                 "",
		"refs/heads/refs/heads/confusing":  "refs/heads/confusing",
		"refs/remotes/origin/not-a-branch": "refs/remotes/origin/not-a-branch",
	} {
		if got := NormalizeRef(in); got != want {
			t.Errorf("NormalizeRef(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStates(t *testing.T) {
	for _, s := range []State{Pending, Running, Success, Failed, Canceled} {
		got, err := ParseState(string(s))
		if err != nil || got != s {
			t.Errorf("ParseState(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "Success", "skipped", "created"} {
		if _, err := ParseState(s); err == nil {
			t.Errorf("ParseState(%q) succeeded, want an error", s)
		}
	}
	got := []int{State("").Rank(), Pending.Rank(), Running.Rank(), Success.Rank(), Failed.Rank(), Canceled.Rank()}
	if diff := cmp.Diff([]int{0, 1, 2, 3, 3, 3}, got); diff != "" {
		t.Errorf("ranks (-want +got):\n%s", diff)
	}
	if Running.Terminal() || !Canceled.Terminal() {
		t.Error("Terminal() is wrong")
	}
	if got := Name("ciel/", "build-multiarch"); got != "ciel/build-multiarch" {
		t.Errorf("Name() = %q", got)
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"  two\n\tlines \r\n", 20, "two lines"},
		{"abcdef", 4, "abc…"},
		{"abc def", 5, "abc…"},
		{"日本語のテキスト", 4, "日本語…"},
		{"bell\x07 and nul\x00", 20, "bell and nul"},
		{"invalid \xff utf-8", 20, "invalid utf-8"},
		{"anything", 0, ""},
		{"exactly", 7, "exactly"},
	}
	for _, tc := range tests {
		if got := Truncate(tc.in, tc.n); got != tc.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func FuzzTruncate(f *testing.F) {
	for _, s := range []string{"", "a b", "x\ny", "日本語", "\xff\xfe", strings.Repeat("é", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Truncate(s, MaxLength)
		if !utf8.ValidString(got) {
			t.Fatalf("invalid UTF-8 %q", got)
		}
		if n := utf8.RuneCountInString(got); n > MaxLength {
			t.Fatalf("%d characters", n)
		}
		if strings.ContainsAny(got, "\n\r\t\x00") {
			t.Fatalf("not a single clean line: %q", got)
		}
	})
}

func TestURLTemplate(t *testing.T) {
	d := URLData{Cluster: "prod-eu", Namespace: "ci", Name: "build-x7k2p", Pipeline: "build", ProjectID: "42",
		Project: "group/app", SHA: "0123456789abcdef0123456789abcdef01234567", Ref: "feature/x"}
	tests := []struct {
		tmpl     string
		want     string
		parseErr bool
		wantErr  bool
	}{
		{tmpl: "https://tekton.example.com/#/namespaces/{{.Namespace}}/pipelineruns/{{.Name}}",
			want: "https://tekton.example.com/#/namespaces/ci/pipelineruns/build-x7k2p"},
		{tmpl: "https://dashboard.{{.Cluster}}.example.com/#/namespaces/{{.Namespace}}/pipelineruns/{{.Name}}?ref={{urlquery .Ref}}",
			want: "https://dashboard.prod-eu.example.com/#/namespaces/ci/pipelineruns/build-x7k2p?ref=feature%2Fx"},
		{tmpl: "https://ci.example.com/{{pathescape .Project}}/{{.SHA}}",
			want: "https://ci.example.com/group%2Fapp/0123456789abcdef0123456789abcdef01234567"},
		{tmpl: "", parseErr: true},
		{tmpl: "https://x/{{.Nope}}", parseErr: true},
		{tmpl: "https://x/{{.Name", parseErr: true},
		{tmpl: "/relative/{{.Name}}", parseErr: true},
		{tmpl: "ftp://x/{{.Name}}", parseErr: true},
		{tmpl: "https://x.example.com/{{.Name}}{{.Name}}{{.Name}}{{.Name}}{{.Name}}{{.Name}}{{.Name}}{{.Name}}{{.Name}}{{.Name}}{{.Name}}{{.Name}}{{.Name}}{{.Name}}{{.Name}}{{.Name}}{{.Name}}{{.Name}}{{.Name}}{{.Name}}{{.Name}}{{.Name}}",
			wantErr: true},
	}
	for _, tc := range tests {
		u, err := ParseURLTemplate(tc.tmpl)
		if tc.parseErr {
			if err == nil {
				t.Errorf("ParseURLTemplate(%q) succeeded, want an error", tc.tmpl)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseURLTemplate(%q): %v", tc.tmpl, err)
			continue
		}
		got, err := u.Render(d)
		if tc.wantErr {
			if err == nil {
				t.Errorf("Render(%q) = %q, want an error", tc.tmpl, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Render(%q) = %q, %v; want %q", tc.tmpl, got, err, tc.want)
		}
	}
}

func BenchmarkDescribeFailure(b *testing.B) {
	f := load(b, "failed-several.yaml")
	b.ReportAllocs()
	for b.Loop() {
		s := StateOf(f.pr)
		Describe(f.pr, s, f)
	}
}
