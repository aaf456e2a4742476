package celenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/go-cmp/cmp"
)

// testSHA and the body below follow Triggers' cel_test.go fixtures.
const testSHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"

func testBody() map[string]any {
	return map[string]any{
		"value":        "testing",
		"sha":          testSHA,
		"ref":          "refs/heads/master",
		"pull_request": map[string]any{"commits": 2},
		"upperMsg":     "THIS IS LOWER CASE",
		"b64value":     "ZXhhbXBsZQ==",
		"json_body":    `{"testing": "value", "number": 2}`,
		"yaml_body":    "key1: value1\nkey2: value2\nkey3: value3\n",
		"testURL":      "https://user:password@site.example.com/path/to?query=search#first",
		"multiURL":     "https://user:password@site.example.com/path/to?query=search&query=results",
		"jsonObject":   map[string]any{"string": "value", "integer": 2},
		"jsonArray":    []string{"one", "two"},
		"jsonObjects":  []map[string]any{{"testing1": map[string]any{"testing": []string{"test1", "test2"}}}},
		"numbers":      []int64{1, 2, 3, 4, 5},
		"emptyList":    []int64{},
		"files":        []any{"src/main.go", "src/README.md", "docs/intro.md", "charts/app/values.yaml"},
		"mixed":        []any{"src/a.go", 3.0},
		"valid_yaml":   "key1: value1\nkey2: value2\n",
		"invalid_yaml": "key1: value1key2: value2\n",
		"html":         map[string]any{"s": "<a href='x'>&</a>"},
	}
}

func testHeader() http.Header {
	h := http.Header{}
	h.Add("X-Test-Header", "value")
	h.Add("X-Gitlab-Event", "Push Hook")
	h.Add("X-Secret-Token", "secrettoken")
	h.Add("X-Multi", "first")
	h.Add("X-Multi", "second")
	return h
}

func testVars() map[string]any {
	return map[string]any{
		VarBody:       testBody(),
		VarHeader:     testHeader(),
		VarRequestURL: "https://example.com/testing?param=value",
		VarExtensions: map[string]any{
			"changed_files": map[string]any{"all": []any{"src/main.go", "README.md"}},
			"foo":           "bar",
		},
	}
}

// fakeSecrets is a SecretGetter over a map namespace/name/key → value that
// records the calls it gets.
type fakeSecrets struct {
	mu      sync.Mutex
	secrets map[string]string
	calls   []string
	err     error
}

var errNoSecret = errors.New("no such secret")

func (f *fakeSecrets) GetSecret(ctx context.Context, namespace, name, key string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, namespace+"/"+name+"/"+key)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if f.err != nil {
		return nil, f.err
	}
	v, ok := f.secrets[namespace+"/"+name+"/"+key]
	if !ok {
		return nil, fmt.Errorf("%w: %s/%s", errNoSecret, namespace, name)
	}
	return []byte(v), nil
}

// newEnv is New for tests: an error fails t.
func newEnv(t testing.TB, opts ...Option) *cel.Env {
	t.Helper()
	env, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// secretsEnv is an environment whose compareSecret reads values, a map
// namespace/name/key → value.
func secretsEnv(t testing.TB, values map[string]string) *cel.Env {
	t.Helper()
	return newEnv(t, WithSecretGetter(&fakeSecrets{secrets: values}))
}

// program compiles expr in env into a program with popts: an error fails t.
func program(t testing.TB, env *cel.Env, expr string, popts ...cel.ProgramOption) cel.Program {
	t.Helper()
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		t.Fatal(iss.Err())
	}
	prg, err := env.Program(ast, popts...)
	if err != nil {
		t.Fatal(err)
	}
	return prg
}

// exprCase is an expression and what it gives: a value in native's form
// (valueCase) or an error containing a string (errorCase).
type exprCase[W any] struct {
	name string
	expr string
	want W
}

type (
	valueCase = exprCase[any]
	errorCase = exprCase[string]
)

// checkExprs evaluates each case's expression in env over vars as a
// subtest (named by the expression when the case has no name), and checks
// the outcome with check: wantValue or wantError.
func checkExprs[W any](t *testing.T, env *cel.Env, vars map[string]any, tests []exprCase[W], check func(*testing.T, exprCase[W], ref.Val, error)) {
	t.Helper()
	for _, tc := range tests {
		name := tc.name
		if name == "" {
			name = tc.expr
		}
		t.Run(name, func(t *testing.T) {
			got, _, err := eval(t, env, context.Background(), tc.expr, vars)
			check(t, tc, got, err)
		})
	}
}

// wantValue checks that the expression gave the case's value.
func wantValue(t *testing.T, tc valueCase, got ref.Val, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", tc.expr, err)
	}
	if diff := cmp.Diff(tc.want, native(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", tc.expr, diff)
	}
}

// wantError checks that the expression failed with the case's error.
func wantError(t *testing.T, tc errorCase, got ref.Val, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s = %v, want an error containing %q", tc.expr, got, tc.want)
	}
	if !strings.Contains(err.Error(), tc.want) {
		t.Errorf("%s: error\n%s\nwant it to contain\n%s", tc.expr, err, tc.want)
	}
}

// eval compiles and evaluates expr in env with NewActivation(ctx, vars).
func eval(t testing.TB, env *cel.Env, ctx context.Context, expr string, vars map[string]any, popts ...cel.ProgramOption) (ref.Val, *cel.EvalDetails, error) {
	t.Helper()
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, nil, fmt.Errorf("compile: %w", iss.Err())
	}
	prg, err := env.Program(ast, popts...)
	if err != nil {
		return nil, nil, fmt.Errorf("program: %w", err)
	}
	act, err := NewActivation(ctx, vars)
	if err != nil {
		t.Fatal(err)
	}
	return prg.ContextEval(ctx, act)
}

// native turns a CEL value into plain Go values for cmp.Diff: maps become
// map[string]any (keys formatted), lists []any, and scalars their Go value.
func native(v ref.Val) any {
	switch v := v.(type) {
	case nil:
		return nil
	case types.Null:
		return nil
	case traits.Mapper:
		out := map[string]any{}
		for it := v.Iterator(); it.HasNext() == types.True; {
			k := it.Next()
			out[fmt.Sprint(k.Value())] = native(v.Get(k))
		}
		return out
	case traits.Lister:
		out := []any{}
		for it := v.Iterator(); it.HasNext() == types.True; {
			out = append(out, native(it.Next()))
		}
		return out
	default:
		return v.Value()
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
