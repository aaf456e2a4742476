package celcompat_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/decls"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	celext "github.com/google/cel-go/ext"
	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	tcel "github.com/tektoncd/triggers/pkg/interceptors/cel"

	"github.com/ciel-ci/ciel/interceptor/celenv"
)

const namespace = "ci"

// payload is a GitLab push event, trimmed, plus fields for the functions.
const payload = `{
  "object_kind": "push",
  "ref": "refs/heads/feature/JIRA-12_new",
  "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
  "user_username": "jsmith",
  "project_id": 15,
  "total_commits_count": 4,
  "project": {"path_with_namespace": "mike/diaspora", "default_branch": "master", "web_url": "http://example.com/mike/diaspora"},
  "commits": [
    {"id": "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327", "message": "Update Catalan translation", "added": ["CHANGELOG"], "modified": ["app/controller/application.rb"], "removed": []},
    {"id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "message": "fixed readme", "added": [], "modified": ["README.md", "docs/a.md"], "removed": ["old.txt"]}
  ],
  "unicode": "héllo wörld",
  "b64": "aGVsbG8gd29ybGQ=",
  "b64bin": "/w==",
  "json": "{\"a\": {\"b\": [1, 2.5, \"x\", null, true]}, \"n\": 12345678901}",
  "badjson": "{\"a\":",
  "yaml": "a: 1\nb:\n  - x\n  - 2\nc: {d: true}\n",
  "url": "https://user:pw@gitlab.example.com:8443/group/proj.git?x=1&x=2&y=%20z#frag",
  "html": "<b>&</b>",
  "numbers": [1, 2, 3],
  "empty": [],
  "nested": {"a": [{"b": 1}, {"b": 2}]}
}`

var header = http.Header{
	"X-Gitlab-Event": {"Push Hook"},
	"X-Gitlab-Token": {"s3cret"},
	"X-Multi":        {"one", "two"},
	"Content-Type":   {"application/json"},
}

const requestURL = "https://el.example.com/hooks?trigger=build"

var extensions = map[string]any{
	"changed_files": map[string]any{"all": []any{"src/main.go", "src/README.md", "docs/a.md"}},
	"note":          "from an earlier interceptor",
}

// secrets holds namespace/name/key → value for both implementations.
var secrets = map[string]string{
	"ci/gitlab-webhook/token":    "s3cret",
	"other/gitlab-webhook/token": "other",
}

type triggersSecrets struct{}

func (triggersSecrets) Get(_ context.Context, ns string, sr *triggersv1.SecretRef) ([]byte, error) {
	v, ok := secrets[ns+"/"+sr.SecretName+"/"+sr.SecretKey]
	if !ok {
		return nil, fmt.Errorf("no secret %s/%s", ns, sr.SecretName)
	}
	return []byte(v), nil
}

type cielSecrets struct{}

func (cielSecrets) GetSecret(_ context.Context, ns, name, key string) ([]byte, error) {
	v, ok := secrets[ns+"/"+name+"/"+key]
	if !ok {
		return nil, fmt.Errorf("no secret %s/%s", ns, name)
	}
	return []byte(v), nil
}

// triggersEnv builds the environment as Triggers' interceptor does for each
// request (makeCelEnv is unexported; its composition is public).
func triggersEnv(t *testing.T) *cel.Env {
	t.Helper()
	mapStrDyn := types.NewMapType(types.StringType, types.DynType)
	env, err := cel.NewEnv(
		tcel.Triggers(context.Background(), namespace, triggersSecrets{}),
		celext.Strings(), celext.Encoders(), celext.Sets(), celext.Lists(), celext.Math(),
		cel.VariableDecls(
			decls.NewVariable("body", mapStrDyn),
			decls.NewVariable("header", mapStrDyn),
			decls.NewVariable("extensions", mapStrDyn),
			decls.NewVariable("requestURL", types.StringType),
		))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func vars(t *testing.T) map[string]any {
	t.Helper()
	var body map[string]any
	if err := json.Unmarshal([]byte(payload), &body); err != nil {
		t.Fatal(err)
	}
	return map[string]any{"body": body, "header": header, "requestURL": requestURL, "extensions": extensions}
}

type outcome struct {
	Compiled bool   // the expression compiled
	Err      bool   // evaluation failed (Triggers' panics are recovered as errors)
	Type     string // CEL type of the result
	Value    any    // the result as plain Go values
}

func (o outcome) String() string {
	return fmt.Sprintf("compiled=%v err=%v %s %#v", o.Compiled, o.Err, o.Type, o.Value)
}

func runTriggers(t *testing.T, env *cel.Env, expr string) (outcome, string) {
	t.Helper()
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return outcome{}, iss.Err().Error()
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return outcome{}, err.Error()
	}
	out, _, err := prg.Eval(vars(t))
	if err != nil {
		return outcome{Compiled: true, Err: true}, err.Error()
	}
	return outcome{Compiled: true, Type: out.Type().TypeName(), Value: plain(out)}, ""
}

func runCiel(t *testing.T, env *cel.Env, expr string) (outcome, string) {
	t.Helper()
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return outcome{}, iss.Err().Error()
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return outcome{}, err.Error()
	}
	ctx := celenv.WithNamespace(context.Background(), namespace)
	act, err := celenv.NewActivation(ctx, vars(t))
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := prg.ContextEval(ctx, act)
	if err != nil {
		return outcome{Compiled: true, Err: true}, err.Error()
	}
	return outcome{Compiled: true, Type: out.Type().TypeName(), Value: plain(out)}, ""
}

// plain turns a CEL value into Go values cmp can compare.
func plain(v ref.Val) any {
	switch v := v.(type) {
	case types.Null:
		return nil
	case traits.Mapper:
		out := map[string]any{}
		for it := v.Iterator(); it.HasNext() == types.True; {
			k := it.Next()
			out[fmt.Sprint(k.Value())] = plain(v.Get(k))
		}
		return out
	case traits.Lister:
		out := []any{}
		for it := v.Iterator(); it.HasNext() == types.True; {
			out = append(out, plain(it.Next()))
		}
		return out
	default:
		return v.Value()
	}
}
