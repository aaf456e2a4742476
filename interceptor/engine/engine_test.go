package engine

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ciel-ci/ciel/interceptor/gitlab"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "gitlab", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pushHeader(event string) http.Header {
	h := http.Header{}
	h.Set("X-Gitlab-Event", event)
	h.Set("Content-Type", "application/json")
	return h
}

func newEngine(t testing.TB, opts ...Option) *Engine {
	t.Helper()
	e, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEvaluateDecisions(t *testing.T) {
	e := newEngine(t)
	const srcChanged = `extensions.changed_files.all.matchesAny(["**", "!**/*.md", "!docs/**"])`
	tests := []struct {
		name    string
		fixture string
		event   string
		rules   Rules
		want    bool
	}{
		{"source push builds", "push.json", "Push Hook", Rules{Filter: srcChanged}, true},
		{"docs-only push skipped", "docs_only_push.json", "Push Hook", Rules{Filter: srcChanged}, false},
		{"branch delete", "branch_delete.json", "Push Hook", Rules{Filter: `!extensions.push.is_delete`}, false},
		{"blog regex filter", "push.json", "Push Hook", Rules{Filter: `body.commits.map(c, c.added + c.modified + c.removed).exists(fs, true in fs.map(f, matches(f, "^(cmd|tests)|^Gemfile$")))`}, true},
		{"blog regex filter misses", "push.json", "Push Hook", Rules{Filter: `body.commits.map(c, c.added + c.modified + c.removed).exists(fs, true in fs.map(f, matches(f, "^(app|tests)|^Gemfile$")))`}, false},
		{"semver tag", "tag_push.json", "Tag Push Hook", Rules{Filter: `extensions.push.is_tag && extensions.push.semver.valid`}, true},
		{"not a semver tag", "tag_push_not_semver.json", "Tag Push Hook", Rules{Filter: `extensions.push.semver.valid`}, false},
		{"truncated push", "truncated_push.json", "Push Hook", Rules{Filter: `extensions.changed_files.truncated`}, true},
		{"header", "push.json", "Push Hook", Rules{Filter: `header.canonical("X-Gitlab-Event") == "Push Hook"`}, true},
		{"merge request body only", "merge_request.json", "Merge Request Hook", Rules{Filter: `body.object_kind == "merge_request" && !has(extensions.push)`}, true},
		{"no filter continues", "push.json", "Push Hook", Rules{}, true},
		{"typed filter", "push.json", "Push Hook", Rules{Filter: `body.total_commits_count > 2.0 && extensions.changed_files.count > 3`, Typed: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := e.Compile(tt.rules)
			if err != nil {
				t.Fatal(err)
			}
			d, err := e.Evaluate(context.Background(), p, Input{Body: fixture(t, tt.fixture), Header: pushHeader(tt.event)})
			if err != nil {
				t.Fatal(err)
			}
			if d.Continue != tt.want {
				t.Errorf("Continue = %v, want %v", d.Continue, tt.want)
			}
			if d.Cost == 0 && tt.rules.Filter != "" {
				t.Error("Cost = 0, want the evaluation's cost")
			}
		})
	}
}

func TestOverlaysRenderLikeTriggers(t *testing.T) {
	e := newEngine(t)
	p, err := e.Compile(Rules{
		Filter: `true`,
		Overlays: []Overlay{
			{Key: "image_tag", Expression: `extensions.push.short_sha`},
			{Key: "build.platforms", Expression: `["linux/amd64", "linux/arm64"]`},
			{Key: "build.count", Expression: `size(body.commits)`},
			{Key: "raw", Expression: `b"hi"`},
			{Key: "push.extra", Expression: `"x"`},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.Evaluate(context.Background(), p, Input{Body: fixture(t, "push.json"), Header: pushHeader("Push Hook")})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, o := range d.Overlays {
		got[o.Key] = string(o.JSON)
	}
	want := map[string]string{
		"image_tag":       `"` + d.Push["short_sha"].(string) + `"`,
		"build.platforms": `["linux/amd64","linux/arm64"]`,
		"build.count":     `3`,
		"raw":             `"aGk="`,
		"push.extra":      `"x"`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("overlays (-want +got):\n%s", diff)
	}
	build, ok := d.Extensions["build"].(map[string]any)
	if !ok || build["count"] != float64(3) {
		t.Errorf("extensions.build = %#v, want the nested overlay values", d.Extensions["build"])
	}
	push := d.Extensions["push"].(map[string]any)
	if push["extra"] != "x" || push["short_sha"] != d.Push["short_sha"] {
		t.Errorf("extensions.push = %v, want the facts with the overlay written over them", push)
	}
	if _, ok := d.Extensions["changed_files"].(map[string]any); !ok {
		t.Errorf("extensions.changed_files missing: %v", d.Extensions)
	}
}

func TestFilterFalseSkipsOverlays(t *testing.T) {
	e := newEngine(t)
	p, err := e.Compile(Rules{Filter: `false`, Overlays: []Overlay{{Key: "boom", Expression: `body.nope`}}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.Evaluate(context.Background(), p, Input{Body: fixture(t, "push.json"), Header: pushHeader("Push Hook")})
	if err != nil {
		t.Fatal(err)
	}
	if d.Continue || len(d.Overlays) != 0 {
		t.Errorf("got Continue=%v overlays=%v, want false and none", d.Continue, d.Overlays)
	}
}

func TestCompileErrors(t *testing.T) {
	e := newEngine(t)
	tests := []struct {
		name  string
		rules Rules
		want  []string // substrings, one per ExprError in order
	}{
		{"syntax", Rules{Filter: `body.ref ==`}, []string{"filter", "1:12"}},
		{"filter not bool", Rules{Filter: `"yes"`}, []string{"a filter must be a bool"}},
		{"typed misspelling", Rules{Filter: `size(body.comits) > 0`, Typed: true}, []string{"undefined field 'comits'", "1:10"}},
		{"typed extensions", Rules{Filter: `extensions.push.shortsha == ""`, Typed: true}, []string{"undefined field 'shortsha'"}},
		{"typed changed files", Rules{Filter: `extensions.changed_files.al.size() > 0`, Typed: true}, []string{"undefined field 'al'"}},
		{"every bad expression listed", Rules{
			Filter:   `nope(`,
			Overlays: []Overlay{{Key: "a", Expression: `1 +`}, {Key: "b", Expression: `"ok"`}, {Key: "", Expression: `1`}, {Key: "b", Expression: `2`}},
		}, []string{"filter", "overlays[a]", "overlays[2]", "given twice"}},
		{"unknown function", Rules{Value: `frobnicate(body)`}, []string{"value", "undeclared reference to 'frobnicate'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.Compile(tt.rules)
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("Compile error = %v, want a *CompileError", err)
			}
			if KindOf(err) != KindCompile {
				t.Errorf("KindOf = %v, want compile", KindOf(err))
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}

func TestTypedKeepsRuntimeSemantics(t *testing.T) {
	e := newEngine(t)
	// body numbers are doubles at runtime, as in Triggers, typed or not.
	for _, typed := range []bool{false, true} {
		p, err := e.Compile(Rules{Value: `body.total_commits_count`, Typed: typed})
		if err != nil {
			t.Fatal(err)
		}
		d, err := e.Evaluate(context.Background(), p, Input{Body: fixture(t, "push.json"), Header: pushHeader("Push Hook")})
		if err != nil {
			t.Fatal(err)
		}
		if string(d.Value) != "3" {
			t.Errorf("typed=%v: value %s, want 3", typed, d.Value)
		}
	}
}

func TestEvaluateErrors(t *testing.T) {
	tests := []struct {
		name  string
		opts  []Option
		rules Rules
		body  string
		event string
		kind  Kind
		want  string
	}{
		{"malformed JSON", nil, Rules{Filter: `true`}, `{"ref": `, "Push Hook", KindInput, "body"},
		{"not an object", nil, Rules{Filter: `true`}, `[1,2]`, "Push Hook", KindInput, "body"},
		{"wrong field type", nil, Rules{Filter: `true`}, `{"object_kind":"push","ref":"refs/heads/main","commits":"nope"}`, "Push Hook", KindInput, "commits"},
		{"huge body", []Option{WithMaxBodyBytes(64)}, Rules{Filter: `true`}, `{"object_kind":"note","x":"` + strings.Repeat("a", 100) + `"}`, "Note Hook", KindInput, "too large"},
		{"no such key", nil, Rules{Filter: `body.nope == 1`}, `{"object_kind":"note"}`, "Note Hook", KindEval, "no such key"},
		{"dyn filter not bool", nil, Rules{Filter: `body.object_kind`}, `{"object_kind":"note"}`, "Note Hook", KindEval, "must be a bool"},
		{"cost limit", []Option{WithCostLimit(1000)}, Rules{Filter: `[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, a+b+c > 0)))`}, `{"object_kind":"note"}`, "Note Hook", KindLimit, "cost limit of 1000 exceeded"},
		{"overlay error names its key", nil, Rules{Overlays: []Overlay{{Key: "k", Expression: `body.missing`}}}, `{"object_kind":"note"}`, "Note Hook", KindEval, "overlays[k]"},
		{"overlay not renderable", nil, Rules{Overlays: []Overlay{{Key: "k", Expression: `duration("1s")`}}}, `{"object_kind":"note"}`, "Note Hook", KindEval, "overlays[k]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, tt.opts...)
			p, err := e.Compile(tt.rules)
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.Evaluate(context.Background(), p, Input{Body: []byte(tt.body), Header: pushHeader(tt.event)})
			if err == nil {
				t.Fatal("Evaluate succeeded, want an error")
			}
			if got := KindOf(err); got != tt.kind {
				t.Errorf("KindOf(%v) = %v, want %v", err, got, tt.kind)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// TestCostLimitAtEvaluation: an expression whose evaluation costs more than
// the limit compiles (cel-go's estimate gives no sound lower bound) and
// stops at evaluation with KindLimit.
func TestCostLimitAtEvaluation(t *testing.T) {
	e := newEngine(t, WithCostLimit(10))
	p, err := e.Compile(Rules{Filter: `[1,2,3,4,5,6,7,8,9,10,11,12].all(x, x > 0)`})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	_, err = e.Evaluate(context.Background(), p, Input{Body: []byte(`{"object_kind":"note"}`), Header: pushHeader("Note Hook")})
	if KindOf(err) != KindLimit || !strings.Contains(err.Error(), "cost limit of 10 exceeded") {
		t.Fatalf("error = %v, want the cost limit of KindLimit", err)
	}
}

// TestMaxEstimatedCost: the opt-in worst-case check rejects at compile time
// and names the sub-expression that carries the estimate.
func TestMaxEstimatedCost(t *testing.T) {
	e := newEngine(t, WithMaxEstimatedCost(1000))
	tests := []struct {
		expr string
		want string
	}{
		{`body.commits.exists(c, c.added.exists(f, f.startsWith("src/")))`,
			"most of it comes from `c.added.exists(f, f.startsWith(\"src/\"))` at 1:24, estimated up to 157286402 for each element of `body.commits`"},
		{`body.ref == 'x' && body.ref.substring(11) == 'x'`,
			"most of it comes from `body.ref.substring(11)` at 1:20, estimated up to 28835832"},
		{`body.object_kind == 'push' &&
  body.commits.map(c, c.message.split('\n')).size() > 2`,
			"most of it comes from `c.message.split('\\n')` at 2:23, estimated up to 28835853 for each element of `body.commits`"},
		{`{'a': body.ref.split('/'), 'b': body.commits.filter(c, c.id.size() > 3)}`,
			"most of it comes from `body.commits.filter(c, c.id.size() > 3)` at 1:33, estimated up to 419430413"},
		{`body.commits.exists(c, c.id == 'x')`,
			"most of it comes from `body.commits.exists(c, c.id == 'x')` at 1:1, estimated up to"},
		{`body.ref + body.before + body.after`,
			"no sub-expression carries most of it: the whole expression `body.ref + body.before + body.after`"},
		{`has(body.x) && size(body.commits.map(c, c.message)) > 0`,
			"most of it comes from `body.commits.map(c, c.message)` at 1:21"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			_, err := e.Compile(Rules{Value: tt.expr})
			if err == nil || !strings.Contains(err.Error(), "worst-case") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Compile error = %v, want a worst-case rejection naming %s", err, tt.want)
			}
		})
	}
	if _, err := e.Compile(Rules{Filter: `body.ref == "refs/heads/main"`}); err != nil {
		t.Fatalf("a cheap filter was rejected: %v", err)
	}
}

func TestDeadline(t *testing.T) {
	e := newEngine(t, WithTimeout(time.Millisecond), WithCostLimit(1<<62))
	p, err := e.Compile(Rules{Filter: `[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20].all(a, [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20].all(b, [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20].all(c, [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20].all(d, [1,2,3,4,5,6,7,8,9,10].all(f, a+b+c+d+f > 0)))))`})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Evaluate(context.Background(), p, Input{Body: []byte(`{"object_kind":"note"}`), Header: pushHeader("Note Hook")})
	if KindOf(err) != KindLimit || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("error = %v, want a deadline error of KindLimit", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = e.Evaluate(ctx, p, Input{Body: []byte(`{"object_kind":"note"}`), Header: pushHeader("Note Hook")})
	if KindOf(err) != KindLimit {
		t.Fatalf("error = %v, want KindLimit for a cancelled context", err)
	}
}

func TestChangedFilesSource(t *testing.T) {
	e := newEngine(t)
	p, err := e.Compile(Rules{Filter: `extensions.changed_files.all == ["from/api.go"] && extensions.changed_files.source == "api"`})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	api := gitlab.ChangedFilesFunc(func(ctx context.Context, ev *gitlab.PushEvent) (gitlab.ChangedFiles, error) {
		calls++
		return gitlab.ChangedFiles{All: []string{"from/api.go"}, Modified: []string{"from/api.go"}, Source: gitlab.SourceAPI}, nil
	})
	d, err := e.Evaluate(context.Background(), p, Input{Body: fixture(t, "truncated_push.json"), Header: pushHeader("Push Hook"), ChangedFiles: api})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Continue || calls != 1 {
		t.Errorf("Continue=%v calls=%d, want true and 1", d.Continue, calls)
	}
	down := gitlab.ChangedFilesFunc(func(context.Context, *gitlab.PushEvent) (gitlab.ChangedFiles, error) {
		return gitlab.ChangedFiles{}, errors.New("gitlab.example.com: 503 Service Unavailable")
	})
	_, err = e.Evaluate(context.Background(), p, Input{Body: fixture(t, "truncated_push.json"), Header: pushHeader("Push Hook"), ChangedFiles: down})
	if KindOf(err) != KindChangedFiles || !strings.Contains(err.Error(), "503") {
		t.Errorf("error = %v, want KindChangedFiles naming the cause", err)
	}
	// A non-push event never asks for changed files.
	_, err = e.Evaluate(context.Background(), mustCompile(t, e, Rules{Filter: `true`}), Input{Body: fixture(t, "merge_request.json"), Header: pushHeader("Merge Request Hook"), ChangedFiles: down})
	if err != nil {
		t.Errorf("merge request asked the changed files source: %v", err)
	}
}

func mustCompile(t testing.TB, e *Engine, r Rules) *Program {
	t.Helper()
	p, err := e.Compile(r)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type mapSecrets map[string]string

func (m mapSecrets) GetSecret(_ context.Context, ns, name, key string) ([]byte, error) {
	v, ok := m[ns+"/"+name+"/"+key]
	if !ok {
		return nil, errors.New("secret not found")
	}
	return []byte(v), nil
}

func TestCompareSecretReadsTheTriggerNamespace(t *testing.T) {
	e := newEngine(t, WithSecretGetter(mapSecrets{"team-a/webhook/token": "s3cret"}))
	p := mustCompile(t, e, Rules{Filter: `header.canonical("X-Gitlab-Token").compareSecret("token", "webhook")`})
	h := pushHeader("Push Hook")
	h.Set("X-Gitlab-Token", "s3cret")
	for ns, want := range map[string]bool{"team-a": true} {
		d, err := e.Evaluate(context.Background(), p, Input{Body: fixture(t, "push.json"), Header: h, Namespace: ns})
		if err != nil {
			t.Fatal(err)
		}
		if d.Continue != want {
			t.Errorf("namespace %s: Continue = %v, want %v", ns, d.Continue, want)
		}
	}
	if _, err := e.Evaluate(context.Background(), p, Input{Body: fixture(t, "push.json"), Header: h, Namespace: "team-b"}); err == nil {
		t.Error("a Secret of another namespace was read")
	}
}

func TestIncomingExtensionsVisibleNotReturned(t *testing.T) {
	e := newEngine(t)
	p := mustCompile(t, e, Rules{Filter: `extensions.earlier == "yes"`, Overlays: []Overlay{{Key: "copy", Expression: `extensions.earlier`}}})
	d, err := e.Evaluate(context.Background(), p, Input{Body: fixture(t, "push.json"), Header: pushHeader("Push Hook"), Extensions: map[string]any{"earlier": "yes"}})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Continue || d.Extensions["copy"] != "yes" {
		t.Fatalf("got %v, want the incoming extension visible", d.Extensions)
	}
	if _, ok := d.Extensions["earlier"]; ok {
		t.Error("incoming extensions were returned")
	}
}

func TestProgramCache(t *testing.T) {
	e := newEngine(t, WithCacheSize(2))
	for _, f := range []string{`true`, `false`, `true`, `1 == 1`, `2 == 2`} {
		mustCompile(t, e, Rules{Filter: f})
	}
	if n := e.cache.len(); n != 2 {
		t.Errorf("cache holds %d programs, want 2", n)
	}
	hits, _ := e.CacheStats()
	if hits != 1 {
		t.Errorf("cache hits = %d, want 1 (the second `true`)", hits)
	}
}

func TestConcurrentEvaluate(t *testing.T) {
	e := newEngine(t)
	p := mustCompile(t, e, Rules{Filter: `extensions.changed_files.all.exists(f, f.glob("**/*.go"))`, Overlays: []Overlay{{Key: "sha", Expression: `extensions.push.short_sha`}}})
	body := fixture(t, "push.json")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				d, err := e.Evaluate(context.Background(), p, Input{Body: body, Header: pushHeader("Push Hook")})
				if err != nil || !d.Continue {
					t.Errorf("Evaluate = %v, %v", d, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestDecisionJSONShape(t *testing.T) {
	e := newEngine(t)
	p := mustCompile(t, e, Rules{Value: `{"a": [1, 2.5, "x", true, null]}`})
	d, err := e.Evaluate(context.Background(), p, Input{Body: []byte(`{"object_kind":"note"}`), Header: pushHeader("Note Hook")})
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(d.Value, &v); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"a": []any{float64(1), 2.5, "x", true, nil}}, v); diff != "" {
		t.Error(diff)
	}
	if d.Push != nil || d.ChangedFiles != nil || d.Extensions != nil {
		t.Errorf("a note event got push facts: %v", d)
	}
}

func TestOptionsValidated(t *testing.T) {
	for _, o := range []Option{WithCostLimit(0), WithTimeout(0), WithCacheSize(0), WithSecretGetter(nil), WithDecoder(nil), WithMaxBodyBytes(-1), WithLogger(nil)} {
		if _, err := New(o); err == nil {
			t.Error("New accepted an invalid option")
		}
	}
}

// TestConflictingOptions: a decoder carries its own body limit, so a body
// limit beside it is refused with a message saying what to do, in either
// order, rather than one of them silently winning.
func TestConflictingOptions(t *testing.T) {
	d, err := gitlab.NewDecoder(gitlab.WithMaxBytes(1 << 10))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts []Option
		want string // "" for no error
	}{
		{name: "decoder alone", opts: []Option{WithDecoder(d)}},
		{name: "body limit alone", opts: []Option{WithMaxBodyBytes(1 << 10)}},
		{name: "decoder then body limit", opts: []Option{WithDecoder(d), WithMaxBodyBytes(1 << 20)}, want: "WithDecoder and WithMaxBodyBytes conflict"},
		{name: "body limit then decoder", opts: []Option{WithMaxBodyBytes(1 << 20), WithDecoder(d)}, want: "give gitlab.WithMaxBytes to the decoder instead"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts...)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("New: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("New = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestTriggersExpressionsCompile holds issue 19: expressions Tekton Triggers
// evaluates, which cel-go's cost estimate once made the engine refuse at
// compile time, give Triggers' results on GitLab's documented push.
func TestTriggersExpressionsCompile(t *testing.T) {
	e := newEngine(t)
	tests := []struct {
		expr string
		want string // the value's JSON
	}{
		{`body.ref.substring(11)`, `"master"`},
		{`body.ref.substring(body.ref.lastIndexOf('/') + 1)`, `"master"`},
		{`lists.range(size(body.commits))`, `[0,1]`},
		{`lists.range(size(body.commits)).map(i, body.commits[i].id.substring(0, 7))`, `["b6568db","da15608"]`},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			// As a filter, an overlay and a value: each is compiled.
			p, err := e.Compile(Rules{Filter: `size(` + tt.expr + `) > 0`, Overlays: []Overlay{{Key: "v", Expression: tt.expr}}, Value: tt.expr})
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			d, err := e.Evaluate(context.Background(), p, Input{Body: fixture(t, "documented_push.json"), Header: pushHeader("Push Hook")})
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			if !d.Continue || len(d.Overlays) != 1 {
				t.Fatalf("Continue = %v, %d overlays; want true, 1", d.Continue, len(d.Overlays))
			}
			if diff := cmp.Diff(tt.want, string(d.Value)); diff != "" {
				t.Errorf("value (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, string(d.Overlays[0].JSON)); diff != "" {
				t.Errorf("overlay (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRangeErrorsAtEvaluation: out-of-range arguments are cel-go's own
// errors at evaluation, not a compile-time rejection by an overflowed
// estimate.
func TestRangeErrorsAtEvaluation(t *testing.T) {
	for _, opts := range [][]Option{nil, {WithMaxEstimatedCost(1000)}} {
		testRangeErrorsAtEvaluation(t, newEngine(t, opts...))
	}
}

func testRangeErrorsAtEvaluation(t *testing.T, e *Engine) {
	tests := []struct{ expr, want string }{
		{`'tacocat'.substring(2, 1)`, "invalid substring range. start: 2, end: 1"},
		{`[1,2,3].slice(2, 1)`, "cannot slice(2, 1), start index must be less than or equal to end index"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			p, err := e.Compile(Rules{Value: tt.expr})
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			_, err = e.Evaluate(context.Background(), p, Input{Body: fixture(t, "documented_push.json"), Header: pushHeader("Push Hook")})
			if KindOf(err) != KindEval || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Evaluate error = %v, want an evaluation error containing %q", err, tt.want)
			}
		})
	}
}
