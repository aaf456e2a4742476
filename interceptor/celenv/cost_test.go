package celenv

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
)

// costCase is an expression over body.s (a string of n characters) or
// body.l (a list of n paths) whose cost must grow linearly with n.
type costCase struct {
	name string
	expr string
	vars func(n int) map[string]any
}

func stringOf(n int) func(int) map[string]any {
	return func(n int) map[string]any {
		return map[string]any{VarBody: map[string]any{"s": strings.Repeat("a", n)}, VarHeader: http.Header{}}
	}
}

func pathsOf(n int) []any {
	l := make([]any, n)
	for i := range l {
		l[i] = fmt.Sprintf("src/pkg%d/file%d.go", i%10, i)
	}
	return l
}

var costCases = []costCase{
	{"parseJSON", "body.s.parseJSON()", func(n int) map[string]any {
		return map[string]any{VarBody: map[string]any{"s": `{"k":"` + strings.Repeat("a", n) + `"}`}}
	}},
	{"parseYAML", "body.s.parseYAML()", func(n int) map[string]any {
		return map[string]any{VarBody: map[string]any{"s": "k: " + strings.Repeat("a", n)}}
	}},
	{"parseURL", "body.s.parseURL()", func(n int) map[string]any {
		return map[string]any{VarBody: map[string]any{"s": "https://x/" + strings.Repeat("a", n)}}
	}},
	{"marshalJSON list", "body.l.marshalJSON()", func(n int) map[string]any {
		return map[string]any{VarBody: map[string]any{"l": pathsOf(n)}}
	}},
	{"marshalJSON map", "{'l': body.l}.marshalJSON()", func(n int) map[string]any {
		return map[string]any{VarBody: map[string]any{"l": pathsOf(n)}}
	}},
	{"truncate", "body.s.truncate(1000000000)", stringOf(0)},
	{"translate", "body.s.translate('a', 'b')", stringOf(0)},
	{"decodeb64", "body.s.decodeb64()", func(n int) map[string]any {
		return map[string]any{VarBody: map[string]any{"s": base64.StdEncoding.EncodeToString([]byte(strings.Repeat("a", n*3/4)))}}
	}},
	{"canonical", "header.canonical(body.s)", stringOf(0)},
	{"match", "header.match('x', body.s)", stringOf(0)},
	{"compareSecret", "body.s.compareSecret('k', 's')", stringOf(0)},
	{"glob", "body.s.glob('a*b')", stringOf(0)},
	{"matchesAny list", "body.l.matchesAny(['src/**/*.md', '!**/x'])", func(n int) map[string]any {
		return map[string]any{VarBody: map[string]any{"l": pathsOf(n)}}
	}},
	{"matchesAny typed list", "[body.s].matchesAny(['x'])", stringOf(0)},
	{"matchesAny string", "body.s.matchesAny(['*b', 'c'])", stringOf(0)},
	{"filterPaths", "body.l.filterPaths(['src/**/*.md'])", func(n int) map[string]any {
		return map[string]any{VarBody: map[string]any{"l": pathsOf(n)}}
	}},
}

func actualCost(t *testing.T, env *cel.Env, expr string, vars map[string]any) uint64 {
	t.Helper()
	ctx := WithNamespace(context.Background(), "ns")
	_, det, err := eval(t, env, ctx, expr, vars, cel.CostLimit(math.MaxUint64))
	if err != nil && !strings.Contains(err.Error(), "compareSecret") {
		t.Fatalf("%s: %v", expr, err)
	}
	if det == nil || det.ActualCost() == nil {
		t.Fatalf("%s: no actual cost", expr)
	}
	return *det.ActualCost()
}

// TestActualCostLinear checks that the runtime cost grows in proportion to
// the input: ten times the input costs about ten times as much.
func TestActualCostLinear(t *testing.T) {
	env := secretsEnv(t, map[string]string{"ns/s/k": "v"})
	for _, tc := range costCases {
		t.Run(tc.name, func(t *testing.T) {
			small := actualCost(t, env, tc.expr, tc.vars(2_000))
			large := actualCost(t, env, tc.expr, tc.vars(20_000))
			ratio := float64(large) / float64(small)
			t.Logf("cost %d at n=2000, %d at n=20000", small, large)
			if small < 20 {
				t.Errorf("cost %d at n=2000: the input size is not charged", small)
			}
			if ratio < 7 || ratio > 13 {
				t.Errorf("cost ratio %.2f for 10× the input, want about 10", ratio)
			}
		})
	}
}

// sizeEstimator knows the sizes of body.s (n characters) and body.l (n
// elements of 30 characters), as an engine's estimator would from its
// payload limits.
type sizeEstimator struct{ n uint64 }

func (e sizeEstimator) EstimateSize(node checker.AstNode) *checker.SizeEstimate {
	switch strings.Join(node.Path(), ".") {
	case "body.s", "body.l":
		// Room for the few characters the cases add around n.
		return &checker.SizeEstimate{Min: 0, Max: e.n + 64}
	case "body.l.@items", "body.s.@items":
		return &checker.SizeEstimate{Min: 0, Max: 30}
	case "body":
		return &checker.SizeEstimate{Min: 0, Max: 1}
	case "header.@items":
		// canonical's cost counts the value found: header values are
		// bounded by the request, as in the engine's estimator.
		return &checker.SizeEstimate{Min: 0, Max: 30}
	}
	return nil
}

func (sizeEstimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// TestEstimatedCostLinear checks the checker's estimate the same way, and
// that the estimate bounds the actual cost.
func TestEstimatedCostLinear(t *testing.T) {
	env := secretsEnv(t, map[string]string{"ns/s/k": "v"})
	for _, tc := range costCases {
		t.Run(tc.name, func(t *testing.T) {
			ast, iss := env.Compile(tc.expr)
			if iss.Err() != nil {
				t.Fatal(iss.Err())
			}
			small, err := env.EstimateCost(ast, sizeEstimator{2_000})
			if err != nil {
				t.Fatal(err)
			}
			large, err := env.EstimateCost(ast, sizeEstimator{20_000})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("estimate %v at n=2000, %v at n=20000", small, large)
			if small.Max == math.MaxUint64 || large.Max == math.MaxUint64 {
				t.Fatalf("estimate unbounded: %v, %v", small, large)
			}
			if tc.name == "marshalJSON map" || tc.name == "marshalJSON list" {
				// The checker counts the receiver's entries but cannot see the
				// size of nested values: only the runtime counts the output.
				return
			}
			if ratio := float64(large.Max) / float64(small.Max); ratio < 7 || ratio > 13 {
				t.Errorf("estimate ratio %.2f for 10× the input, want about 10", ratio)
			}
			if actual := actualCost(t, env, tc.expr, tc.vars(2_000)); actual > small.Max {
				t.Errorf("actual cost %d above the estimate %v", actual, small)
			}
		})
	}
}

// TestCostLimit stops an evaluation whose input is too large for the limit.
func TestCostLimit(t *testing.T) {
	env := newEnv(t)
	vars := map[string]any{VarBody: map[string]any{"s": `"` + strings.Repeat("a", 1<<20) + `"`, "l": pathsOf(10_000)}}
	for _, expr := range []string{
		"body.s.parseJSON().size() > 0",
		"body.l.matchesAny(['docs/**'])",
		"body.l.filterPaths(['src/**']).size() > 0",
	} {
		_, _, err := eval(t, env, context.Background(), expr, vars, cel.CostLimit(50_000))
		if err == nil || !strings.Contains(err.Error(), "cost limit exceeded") {
			t.Errorf("%s: error %v, want the cost limit exceeded", expr, err)
		}
	}
}

// BenchmarkCostUnit reports how long one cost unit takes in our functions
// and in cel-go's own, to set the cost factors (ns/unit should be similar).
func BenchmarkCostUnit(b *testing.B) {
	env := newEnv(b)
	const n = 100_000
	long := strings.Repeat("abcdefghij", n/10)
	jsonDoc := `{"k":[` + strings.Repeat(`{"a":"bcdefg","n":12345},`, n/25) + `1]}`
	vars := map[string]any{VarBody: map[string]any{
		"s":    long,
		"json": jsonDoc,
		"yaml": "k:\n" + strings.Repeat("- {a: bcdefg, n: 12345}\n", n/25),
		"b64":  base64.StdEncoding.EncodeToString([]byte(long)),
		"l":    pathsOf(n / 25),
		"n":    pathsOf(n / 25),
	}, VarHeader: http.Header{}}
	for _, c := range []struct{ name, expr string }{
		{"cel/contains", "body.s.contains('zz')"},
		{"cel/split", "body.s.split('e').size()"},
		{"cel/comprehension", "body.l.all(p, p.startsWith('src/'))"},
		{"cel/matches", "body.s.matches('a.c')"},
		{"parseJSON", "body.json.parseJSON()"},
		{"parseYAML", "body.yaml.parseYAML()"},
		{"marshalJSON", "body.n.marshalJSON()"},
		{"decodeb64", "body.b64.decodeb64()"},
		{"truncate", "body.s.truncate(1000000)"},
		{"translate", "body.s.translate('a.c', 'x')"},
		{"matchesAny", "body.l.matchesAny(['docs/**', '**/*.md', '!**/testdata/**'])"},
		{"filterPaths", "body.l.filterPaths(['src/**/*.go', '!**/file1*'])"},
	} {
		prg := program(b, env, c.expr, cel.CostLimit(math.MaxUint64))
		act, err := NewActivation(context.Background(), vars)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			var cost uint64
			for b.Loop() {
				_, det, err := prg.ContextEval(context.Background(), act)
				if err != nil {
					b.Fatal(err)
				}
				cost = *det.ActualCost()
			}
			b.ReportMetric(float64(cost), "cost")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(cost), "ns/unit")
		})
	}
}
