package celenv

import (
	"context"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/go-cmp/cmp"
)

func TestOptionErrors(t *testing.T) {
	getter := &fakeSecrets{}
	tests := []struct {
		name string
		opts []Option
		want string
	}{
		{"nil option", []Option{nil}, "building the CEL environment: nil option"},
		{"nil getter", []Option{WithSecretGetter(nil)}, "building the CEL environment: secret getter is nil"},
		{"getter twice", []Option{WithSecretGetter(getter), WithSecretGetter(getter)}, "building the CEL environment: secret getter set twice"},
		{"nil body type", []Option{WithBodyType(nil)}, "building the CEL environment: body type is nil"},
		{"body type twice", []Option{WithBodyType(cel.DynType), WithBodyType(cel.DynType)}, "building the CEL environment: body type set twice"},
		{"nil extensions type", []Option{WithExtensionsType(nil)}, "building the CEL environment: extensions type is nil"},
		{"extensions type twice", []Option{WithExtensionsType(cel.DynType), WithExtensionsType(cel.DynType)}, "building the CEL environment: extensions type set twice"},
		{"nil env option", []Option{WithEnvOptions(cel.Variable("x", cel.IntType), nil)}, "building the CEL environment: env option 1 is nil"},
		{"zero cache", []Option{WithCacheSize(0)}, "building the CEL environment: cache size 0: must be at least 1"},
		{"cache twice", []Option{WithCacheSize(1), WithCacheSize(2)}, "building the CEL environment: cache size set twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts...)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %q, want it to start with %q", err, tc.want)
			}
		})
	}
}

// TestTypedMode declares body with a richer type: the checker then rejects
// expressions that the default map(string, dyn) lets through to runtime.
func TestTypedMode(t *testing.T) {
	typed := newEnv(t,
		WithBodyType(cel.MapType(cel.StringType, cel.StringType)),
		WithExtensionsType(cel.MapType(cel.StringType, cel.ListType(cel.StringType))),
		WithEnvOptions(cel.Variable("trigger", cel.StringType)),
	)
	loose := newEnv(t)
	tests := []struct {
		expr             string
		typedOK, looseOK bool
	}{
		{"body.ref + 1", false, true},
		{"body.ref.startsWith('refs/')", true, true},
		{"extensions.files.matchesAny(['src/**'])", true, true},
		{"extensions.files + 1", false, true},
		{"trigger == 'push'", true, false},
	}
	for _, tc := range tests {
		_, iss := typed.Compile(tc.expr)
		if got := iss.Err() == nil; got != tc.typedOK {
			t.Errorf("typed Compile(%s) ok = %v, want %v (%v)", tc.expr, got, tc.typedOK, iss.Err())
		}
		_, iss = loose.Compile(tc.expr)
		if got := iss.Err() == nil; got != tc.looseOK {
			t.Errorf("default Compile(%s) ok = %v, want %v (%v)", tc.expr, got, tc.looseOK, iss.Err())
		}
	}
	got, _, err := eval(t, typed, context.Background(), "extensions.files.filterPaths(['src/**']) == [trigger]",
		map[string]any{VarExtensions: map[string][]string{"files": {"src/a", "b"}}, "trigger": "src/a"})
	if err != nil || native(got) != true {
		t.Errorf("typed evaluation = %v, %v; want true", got, err)
	}
}

func TestDeclarations(t *testing.T) {
	env := newEnv(t)
	vars := map[string]string{}
	for _, v := range env.Variables() {
		vars[v.Name()] = v.Type().String()
	}
	want := map[string]string{
		"body":       "map(string, dyn)",
		"extensions": "map(string, dyn)",
		"header":     "map(string, dyn)",
		"requestURL": "string",
	}
	if diff := cmp.Diff(want, vars); diff != "" {
		t.Errorf("variables (-want +got):\n%s", diff)
	}
	for _, fn := range []string{"match", "canonical", "truncate", "split", "join", "translate", "parseJSON", "parseYAML",
		"parseURL", "marshalJSON", "compareSecret", "first", "last", "decodeb64", "base64.decode", "base64.encode",
		"sets.contains", "lowerAscii", "glob", "matchesAny", "filterPaths"} {
		if !env.HasFunction(fn) {
			t.Errorf("function %s is not declared", fn)
		}
	}
}

func TestNewActivation(t *testing.T) {
	//nolint:staticcheck // a nil context is the case under test
	if _, err := NewActivation(nil, map[string]any{}); err == nil || err.Error() != "building the CEL activation: nil context" {
		t.Errorf("nil context: %v", err)
	}
	if _, err := NewActivation(context.Background(), 42); err == nil || !strings.HasPrefix(err.Error(), "building the CEL activation: ") {
		t.Errorf("bad vars: %v", err)
	}
	base, err := cel.NewActivation(map[string]any{"body": map[string]any{"a": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	act, err := NewActivation(context.Background(), base)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := act.ResolveName("body"); !ok || v == nil {
		t.Errorf("body not resolved through a wrapped activation")
	}
	if act.Parent() != base {
		t.Errorf("Parent is not the wrapped activation")
	}
	if _, ok := act.ResolveName("missing"); ok {
		t.Errorf("missing name resolved")
	}
	if ns, ok := NamespaceFrom(context.Background()); ok || ns != "" {
		t.Errorf("NamespaceFrom(empty) = %q, %v", ns, ok)
	}
	if ns, ok := NamespaceFrom(WithNamespace(context.Background(), "ci")); !ok || ns != "ci" {
		t.Errorf("NamespaceFrom = %q, %v", ns, ok)
	}
}
