package engine

import (
	"context"
	"testing"

	"github.com/google/cel-go/cel"
)

// The changed-files regex filter of GitLab users' blog posts.
const blogFilter = `body.commits.map(c, c.added + c.modified + c.removed).exists(fs, true in fs.map(f, matches(f, "^(app|tests)|^Gemfile$")))`

func BenchmarkEvaluate(b *testing.B) {
	e := newEngine(b)
	body := fixture(b, "push.json")
	h := pushHeader("Push Hook")
	for _, bc := range []struct {
		name  string
		rules Rules
	}{
		{"blog-filter", Rules{Filter: blogFilter}},
		{"glob-filter", Rules{Filter: `extensions.changed_files.all.matchesAny(["**", "!**/*.md", "!docs/**"])`}},
		{"filter+overlays", Rules{Filter: `!extensions.push.is_delete`, Overlays: []Overlay{
			{Key: "image_tag", Expression: `extensions.push.short_sha`},
			{Key: "ref_slug", Expression: `extensions.push.ref_slug`},
		}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := mustCompile(b, e, bc.rules)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Evaluate(context.Background(), p, Input{Body: body, Header: h}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCompileCached(b *testing.B) {
	e := newEngine(b)
	r := Rules{Filter: blogFilter}
	mustCompile(b, e, r)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Compile(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecisionParts splits BenchmarkDecision's ciel side (test/bench)
// into its steps, for docs/performance.md: the body's decoding, the rest of
// an evaluation on the decoded event (push facts, changed files,
// activation, deadline, the tracked filter), the whole evaluation with
// WithCostProof (as the interceptor runs), and cel-go alone running the
// same program on the decoded body with and without cost tracking.
func BenchmarkDecisionParts(b *testing.B) {
	e := newEngine(b)
	body := fixture(b, "push.json")
	h := pushHeader("Push Hook")
	p := mustCompile(b, e, Rules{Filter: blogFilter})
	ev, err := e.Decode(Input{Body: body, Header: h})
	if err != nil {
		b.Fatal(err)
	}
	run := func(name string, f func() error) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := f(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	run("decode", func() error { _, err := e.Decode(Input{Body: body, Header: h}); return err })
	run("evaluate-decoded", func() error {
		_, err := e.Evaluate(context.Background(), p, Input{Event: ev, Header: h})
		return err
	})
	run("evaluate", func() error {
		_, err := e.Evaluate(context.Background(), p, Input{Body: body, Header: h})
		return err
	})
	ep := newEngine(b, WithCostProof())
	pp := mustCompile(b, ep, Rules{Filter: blogFilter})
	run("evaluate-costproof", func() error {
		_, err := ep.Evaluate(context.Background(), pp, Input{Body: body, Header: h})
		return err
	})
	ast, iss := e.env.Compile(blogFilter)
	if iss.Err() != nil {
		b.Fatal(iss.Err())
	}
	act := map[string]any{"body": ev.Body()}
	for _, tracked := range []bool{true, false} {
		opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
		name := "cel-go-untracked"
		if tracked {
			opts = append(opts, cel.CostLimit(e.costLimit))
			name = "cel-go-tracked"
		}
		prog, err := e.env.Program(ast, opts...)
		if err != nil {
			b.Fatal(err)
		}
		run(name, func() error { _, _, err := prog.Eval(act); return err })
	}
}
