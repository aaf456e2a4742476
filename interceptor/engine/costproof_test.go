package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// proofExprs exercise every cost model the proof relies on: cel-go's
// macros and regular expressions, and celenv's functions over strings,
// headers, paths and JSON.
var proofExprs = []string{
	blogFilter,
	`extensions.changed_files.all.matchesAny(["**", "!**/*.md", "!docs/**"])`,
	`extensions.changed_files.all.filterPaths(["src/**"]).size() > 0`,
	`body.commits.all(c, body.commits.all(d, c.id != d.id || c == d))`,
	`body.commits.exists(c, c.message.contains("[skip ci]") || c.message.matches("(?i)wip"))`,
	`header.canonical("X-Gitlab-Event") == "Push Hook" && header.match("Content-Type", "application/json")`,
	`body.marshalJSON().size() > 10 && size(body.project.path_with_namespace.split("/")) == 2`,
	`body.ref.split("/").map(s, s.upperAscii()).join("-").size() > 0`,
	`extensions.push.ref_slug.truncate(5) + requestURL != "" && body.map(k, k).size() > 0`,
	`has(body.commits) && body.commits.map(c, c.added.map(a, a.size())).size() >= 0`,
	`"{\"a\": [1, 2]}".parseJSON().a.size() == 2 && body.object_kind != ""`,
}

// TestCostProofSound checks the claim WithCostProof rests on: whenever an
// expression would run untracked on a request, its tracked cost on that
// request is within proofMargin times the estimate at the proven size,
// hence within the limit. Every fixture payload and every expression above.
func TestCostProofSound(t *testing.T) {
	tracked := newEngine(t)
	proving := newEngine(t, WithCostProof())
	fixtures, err := filepath.Glob(filepath.Join("..", "gitlab", "testdata", "*.json"))
	if err != nil || len(fixtures) == 0 {
		t.Fatalf("fixtures: %v %v", fixtures, err)
	}
	untrackedRuns := 0
	for _, expr := range proofExprs {
		for _, fx := range fixtures {
			body, err := os.ReadFile(fx)
			if err != nil {
				t.Fatal(err)
			}
			kind := "Push Hook"
			switch base := filepath.Base(fx); {
			case strings.HasPrefix(base, "tag_"):
				kind = "Tag Push Hook"
			case strings.HasPrefix(base, "merge_request"):
				kind = "Merge Request Hook"
			}
			in := Input{Body: body, Header: pushHeader(kind), RequestURL: "http://el.ci.svc/"}
			pt := mustCompile(t, tracked, Rules{Value: expr})
			want, err := tracked.Evaluate(context.Background(), pt, in)
			if err != nil {
				continue // the expression does not apply to this payload
			}
			pp := mustCompile(t, proving, Rules{Value: expr})
			got, err := proving.Evaluate(context.Background(), pp, in)
			if err != nil {
				t.Fatalf("%s on %s: tracked succeeded, proven failed: %v", expr, fx, err)
			}
			if string(got.Value) != string(want.Value) {
				t.Errorf("%s on %s: value %s, tracked %s", expr, fx, got.Value, want.Value)
			}
			c := pp.value
			if got.Cost != 0 { // ran tracked: nothing to check
				continue
			}
			untrackedRuns++
			est, err := proving.env.EstimateCost(c.ast, sizeHints{max: c.proof.maxSize})
			if err != nil {
				t.Fatal(err)
			}
			if want.Cost > proofMargin*est.Max || proofMargin*est.Max > proving.costLimit {
				t.Errorf("%s on %s: ran untracked with actual cost %d, estimate %d at size %d, limit %d",
					expr, fx, want.Cost, est.Max, c.proof.maxSize, proving.costLimit)
			}
		}
	}
	if untrackedRuns == 0 {
		t.Fatal("no expression ran untracked: the test checks nothing")
	}
	t.Logf("%d evaluations ran untracked", untrackedRuns)
}

// TestCostProofKeepsLimits: with WithCostProof the cost limit and the
// deadline still stop an expression the estimate cannot bound.
// A comprehension variable over a computed list is as large as what
// computed it, not as the request's largest value: each level below
// doubles the string, so the proof must not run it untracked.
func TestCostProofNestedComputedLists(t *testing.T) {
	var m map[string]any
	if err := json.Unmarshal(fixture(t, "push.json"), &m); err != nil {
		t.Fatal(err)
	}
	m["pad"] = strings.Repeat("x", 900)
	body, _ := json.Marshal(m)
	expr := "a17.contains('zz') == false"
	for i := 17; i > 0; i-- {
		expr = fmt.Sprintf("[a%d+a%d].all(a%d, %s)", i-1, i-1, i, expr)
	}
	expr = "[body.pad].all(a0, " + expr + ")"
	e := newEngine(t, WithCostProof())
	p := mustCompile(t, e, Rules{Filter: expr})
	_, err := e.Evaluate(context.Background(), p, Input{Body: body, Header: pushHeader("Push Hook")})
	if KindOf(err) != KindLimit {
		t.Errorf("17 doublings of a 900-byte string: %v, want the cost limit", err)
	}
}

// provableFilter reads request values only: its estimate bounds its cost.
const provableFilter = `body.commits.exists(c, c.added.exists(f, f.startsWith("src/")) || c.modified.exists(f, matches(f, "^(app|tests)|^Gemfile$")))`

func TestCostProofKeepsLimits(t *testing.T) {
	body := fixture(t, "push.json")
	e := newEngine(t, WithCostProof(), WithCostLimit(1000))
	p := mustCompile(t, e, Rules{Filter: `[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, a+b+c > 0)))`})
	_, err := e.Evaluate(context.Background(), p, Input{Body: body, Header: pushHeader("Push Hook")})
	if KindOf(err) != KindLimit || !strings.Contains(err.Error(), "cost limit of 1000 exceeded") {
		t.Errorf("error %v, want the cost limit", err)
	}
	// A filter over request values only is proven on push.json at the
	// default limit, not at 1000. (The blog filter iterates a computed
	// list, whose elements the estimator cannot bound: always tracked.)
	p = mustCompile(t, e, Rules{Filter: provableFilter})
	d, err := e.Evaluate(context.Background(), p, Input{Body: body, Header: pushHeader("Push Hook")})
	if err != nil {
		t.Fatal(err)
	}
	if d.Cost == 0 {
		t.Error("the filter ran untracked at a limit of 1000; its estimate does not prove that")
	}
	// A header value larger than the proven size makes it tracked.
	e = newEngine(t, WithCostProof())
	p = mustCompile(t, e, Rules{Filter: provableFilter})
	h := pushHeader("Push Hook")
	d, err = e.Evaluate(context.Background(), p, Input{Body: body, Header: h})
	if err != nil || d.Cost != 0 {
		t.Fatalf("push.json: cost %d, %v; want untracked", d.Cost, err)
	}
	h.Set("X-Padding", strings.Repeat("x", int(p.filter.proof.maxSize)+1))
	d, err = e.Evaluate(context.Background(), p, Input{Body: body, Header: h})
	if err != nil || d.Cost == 0 {
		t.Errorf("with a header over the proven size: cost %d, %v; want tracked", d.Cost, err)
	}
	// marshalJSON's estimate counts entries, its cost the output: never
	// proven. A body of many small values marshals to far more than its
	// largest value.
	e = newEngine(t, WithCostProof(), WithCostLimit(5000))
	var b strings.Builder
	b.WriteString(`{"object_kind":"note","l":[`)
	for i := range 100 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + strings.Repeat("x", 90) + `"`)
	}
	b.WriteString(`]}`)
	p = mustCompile(t, e, Rules{Filter: `body.marshalJSON().size() > 0`})
	_, err = e.Evaluate(context.Background(), p, Input{Body: []byte(b.String()), Header: pushHeader("Note Hook")})
	if KindOf(err) != KindLimit {
		t.Errorf("marshalJSON of a %d-byte body at a limit of 5000: %v, want the cost limit", b.Len(), err)
	}
	e = newEngine(t, WithCostProof())
	p = mustCompile(t, e, Rules{Filter: provableFilter})

	// Extensions of a type the walk cannot measure make it tracked.
	d, err = e.Evaluate(context.Background(), p, Input{Body: body, Header: pushHeader("Push Hook"), Extensions: map[string]any{"x": struct{}{}}})
	if err != nil || d.Cost == 0 {
		t.Errorf("with unmeasurable extensions: cost %d, %v; want tracked", d.Cost, err)
	}
}
