package engine

import (
	"context"
	"testing"
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
