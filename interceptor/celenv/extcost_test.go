package celenv

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
)

// TestExtEstimatesBounded: the estimates of substring, slice and
// lists.range are finite whatever the arguments (cel-go's underflow on
// end < start, or MaxUint64 for a non-constant range size), and bound the
// cost cel-go tracks at runtime.
func TestExtEstimatesBounded(t *testing.T) {
	env := newEnv(t)
	const n = 2_000
	vars := map[string]any{VarBody: map[string]any{
		"s": strings.Repeat("a", n) + "/b",
		"l": pathsOf(n),
	}}
	tests := []struct {
		expr   string
		runErr string // the evaluation's error, empty when it succeeds
	}{
		{`body.s.substring(11)`, ""},
		{`body.s.substring(body.s.lastIndexOf('/') + 1)`, ""},
		{`body.s.substring(0, 7)`, ""},
		{`'tacocat'.substring(2, 1)`, "invalid substring range"},
		{`body.l.slice(1, 1500)`, ""},
		{`body.l.slice(size(body.l) / 2, size(body.l))`, ""},
		{`[1, 2, 3].slice(2, 1)`, "start index must be less than or equal to end index"},
		{`lists.range(size(body.l))`, ""},
		{`lists.range(size(body.l)).map(i, body.l[i].substring(0, 3))`, ""},
		{`lists.range(5)`, ""},
		{`lists.range(1000001)`, "exceeds maximum allowed (1000000)"}, // listsMaxRange
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			ast, iss := env.Compile(tt.expr)
			if iss.Err() != nil {
				t.Fatal(iss.Err())
			}
			est, err := env.EstimateCost(ast, sizeEstimator{n})
			if err != nil {
				t.Fatal(err)
			}
			if est.Max >= math.MaxUint64/2 || est.Min > est.Max {
				t.Errorf("estimate %+v: overflowed", est)
			}
			if tt.runErr != "" {
				_, _, err := eval(t, env, context.Background(), tt.expr, vars, cel.CostLimit(math.MaxUint64))
				if err == nil || !strings.Contains(err.Error(), tt.runErr) {
					t.Errorf("evaluation error %v, want %q", err, tt.runErr)
				}
				return
			}
			if got := actualCost(t, env, tt.expr, vars); got > est.Max {
				t.Errorf("actual cost %d over the estimate's maximum %d", got, est.Max)
			}
		})
	}
}
