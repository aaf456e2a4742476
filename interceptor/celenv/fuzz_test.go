package celenv

import (
	"context"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
)

// FuzzFunctions feeds untrusted strings (payload fields, header values) to
// every function that parses or scans one: none may panic, and a failure
// must be a CEL error, never an internal one.
func FuzzFunctions(f *testing.F) {
	env := secretsEnv(f, map[string]string{"ns/s/k": "v"})
	exprs := []string{
		"body.s.parseJSON()", "body.s.parseYAML()", "body.s.parseURL()", "body.s.decodeb64()",
		"body.s.truncate(body.n)", "body.s.translate(body.t, '$1')", "body.s.glob(body.t)",
		"[body.s].matchesAny([body.t, '!' + body.s])", "[body.s, body.t].filterPaths([body.s])",
		"header.match(body.s, body.t)", "header.canonical(body.s)", "body.s.compareSecret('k', 's')",
		"body.s.split(body.t).last()", "{'a': body.s}.marshalJSON()",
	}
	prgs := make([]cel.Program, len(exprs))
	for i, e := range exprs {
		prgs[i] = program(f, env, e, cel.CostLimit(10_000_000))
	}
	for _, seed := range [][2]string{
		{`{"a": [1, {"b": null}]}`, `**/*.md`}, {"a: 1\nb: [x]", "(a)"}, {"https://u:p@h/p?q=1#f", "[z-a]"},
		{"aGVsbG8=", "x?"}, {"héllo/wörld", "h*/w*"}, {"\xff\xfe", "\\"}, {"", ""},
	} {
		f.Add(seed[0], seed[1], int64(3))
	}
	f.Fuzz(func(t *testing.T, s, pattern string, n int64) {
		ctx := WithNamespace(context.Background(), "ns")
		act, err := NewActivation(ctx, map[string]any{
			VarBody:   map[string]any{"s": s, "t": pattern, "n": n},
			VarHeader: map[string][]string{"X": {s}},
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, prg := range prgs {
			_, _, err := prg.ContextEval(ctx, act)
			// cel-go reports a recovered panic as "internal error: ...".
			if err != nil && strings.HasPrefix(err.Error(), "internal error") {
				t.Fatalf("%s on %q, %q: %v", exprs[i], s, pattern, err)
			}
		}
	})
}
