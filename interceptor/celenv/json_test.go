package celenv

import (
	"context"
	"testing"

	"github.com/google/cel-go/common/types"
	"github.com/google/go-cmp/cmp"
)

func TestValueJSON(t *testing.T) {
	env := newEnv(t)
	tests := []struct {
		expr string
		want string
	}{
		{"'push'", `"push"`},
		{"true", `true`},
		{"42", `42`},
		{"-1.5", `-1.5`},
		{"2u", `2`},
		{"null", `null`},
		{"9007199254740993", `"9007199254740993"`},
		{"b'hi'", `"aGk="`},
		{"'<&>'", `"<&>"`},
		{"[1, 'a', [true]]", `[1,"a",[true]]`},
		{"{'b': 1, 'a': {'c': null}}", `{"a":{"c":null},"b":1}`},
		{"body.jsonObject", `{"integer":2,"string":"value"}`},
		{"body.emptyList", `[]`},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			v, _, err := eval(t, env, context.Background(), tc.expr, testVars())
			if err != nil {
				t.Fatal(err)
			}
			got, err := ValueJSON(v)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, string(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	for _, expr := range []string{"timestamp('2024-01-01T00:00:00Z')", "duration('1s')", "int", "optional.of(1)"} {
		v, _, err := eval(t, env, context.Background(), expr, testVars())
		if err != nil {
			continue // not declared in this environment: nothing to render
		}
		if got, err := ValueJSON(v); err == nil {
			t.Errorf("ValueJSON(%s) = %s, want an error", expr, got)
		}
	}
	if _, err := ValueJSON(nil); err == nil {
		t.Error("ValueJSON(nil): no error")
	}
	if _, err := ValueJSON(types.NewErr("boom")); err == nil || err.Error() != "rendering a CEL value as JSON: boom" {
		t.Errorf("ValueJSON(error) = %v", err)
	}
}
