package celenv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestPathFunctions(t *testing.T) {
	vars := testVars()
	vars[VarBody].(map[string]any)["patterns"] = []any{"docs/**"}
	checkExprs(t, newEnv(t), vars, []valueCase{
		{"glob match", "'docs/guide/intro.md'.glob('docs/**/*.md')", true},
		{"glob no match", "'src/main.go'.glob('docs/**')", false},
		{"glob star stops at slash", "'a/b.md'.glob('*.md')", false},
		{"glob optional character", "['page.js', 'page.jsx', 'page.jsxx'].map(p, p.glob('*.jsx?'))", []any{true, true, false}},
		{"glob negated in CEL", "!'docs/a.md'.glob('docs/**')", false},
		{"glob on a dyn path", "body.files[0].glob('src/*.go')", true},

		{"matchesAny include", "body.files.matchesAny(['charts/**'])", true},
		{"matchesAny none", "body.files.matchesAny(['deploy/**'])", false},
		{"matchesAny exclusion", "['src/README.md'].matchesAny(['src/**', '!src/**/*.md'])", false},
		{"matchesAny exclusion leaves others", "body.files.matchesAny(['src/**', '!src/**/*.md'])", true},
		{"matchesAny re-include", "['README.md'].matchesAny(['*.md', '!README.md', 'README*'])", true},
		{"matchesAny only negative", "body.files.matchesAny(['!docs/**'])", false},
		{"matchesAny no patterns", "body.files.matchesAny([])", false},
		{"matchesAny no paths", "[].matchesAny(['**'])", false},
		{"matchesAny on extensions", "extensions.changed_files.all.matchesAny(['src/**', '!src/**/*.md'])", true},
		{"matchesAny one path", "'src/main.go'.matchesAny(['src/**', '!src/**/*.md'])", true},
		{"matchesAny one excluded path", "'src/a.md'.matchesAny(['src/**', '!src/**/*.md'])", false},
		{"matchesAny dyn path", "body.files[1].matchesAny(['src/**', '!**/*.md'])", false},
		{"matchesAny patterns from the body", "body.files.matchesAny(body.patterns)", true},

		{"filterPaths", "body.files.filterPaths(['src/**', '!**/*.md', 'charts/**'])", []any{"src/main.go", "charts/app/values.yaml"}},
		{"filterPaths nothing", "body.files.filterPaths(['x/**'])", []any{}},
		{"filterPaths size", "size(body.files.filterPaths(['**/*.md']))", int64(2)},
	}, wantValue)
}

func TestPathFunctionErrors(t *testing.T) {
	checkExprs(t, newEnv(t), testVars(), []errorCase{
		{"glob bad pattern", "'a'.glob('docs/[')", `glob: invalid path pattern "docs/[": unclosed [ (at offset 5)`},
		{"glob negated", "'a'.glob('!docs/**')", `glob: pattern "!docs/**": negation (!) only has a meaning in a pattern list (matchesAny, filterPaths): write !path.glob('...') instead`},
		{"matchesAny bad pattern", "['a'].matchesAny(['src/**', '?x'])", `matchesAny: pattern 1: invalid path pattern "?x": '?' must follow a character or a [...] class (at offset 0)`},
		{"matchesAny one path bad pattern", "'a'.matchesAny(['/src'])", `matchesAny: pattern 0: invalid path pattern "/src": paths are relative to the repository root: remove the leading / (at offset 0)`},
		{"filterPaths bad pattern", "['a'].filterPaths(['[z-a]'])", `filterPaths: pattern 0: invalid path pattern "[z-a]": invalid range z-a`},
		{"matchesAny non-string path", "body.mixed.matchesAny(['**'])", "matchesAny: paths: element 1 is double, want string"},
		{"filterPaths non-string path", "body.mixed.filterPaths(['**'])", "filterPaths: paths: element 1 is double, want string"},
		{"matchesAny non-string pattern", "body.files.matchesAny(body.mixed)", "matchesAny: patterns: element 1 is double, want string"},
		{"matchesAny on a number", "body.pull_request.commits.matchesAny(['**'])", "no such overload"},
		{"glob of an int", "1.glob('*')", "found no matching overload for 'glob'"},
	}, wantError)
}

// TestPatternCache compiles a constant pattern list once, whatever the number
// of evaluations, and keeps the cache bounded.
func TestPatternCache(t *testing.T) {
	env, st, err := build([]Option{WithCacheSize(3)})
	if err != nil {
		t.Fatal(err)
	}
	prg := program(t, env, "body.files.matchesAny(['src/**', '!**/*.md']) && body.files[0].glob('src/*')")
	for i := 0; i < 100; i++ {
		act, err := NewActivation(context.Background(), testVars())
		if err != nil {
			t.Fatal(err)
		}
		if out, _, err := prg.ContextEval(context.Background(), act); err != nil || native(out) != true {
			t.Fatalf("evaluation %d: %v, %v", i, out, err)
		}
	}
	if got := []int{st.lists.len(), st.patterns.len()}; !cmp.Equal(got, []int{1, 1}) {
		t.Errorf("cached lists, patterns = %v, want [1 1]", got)
	}
	for i := 0; i < 10; i++ {
		if _, _, err := eval(t, env, context.Background(), fmt.Sprintf("'a'.matchesAny(['p%d/**'])", i), testVars()); err != nil {
			t.Fatal(err)
		}
	}
	if got := st.lists.len(); got != 3 {
		t.Errorf("cached lists = %d, want the bound, 3", got)
	}
}

// TestPatternCacheKeys keeps lists that differ only in how their patterns
// split apart.
func TestPatternCacheKeys(t *testing.T) {
	checkExprs(t, newEnv(t), testVars(), []valueCase{
		{expr: "'ab'.matchesAny(['a', 'b'])", want: false},
		{expr: "'ab'.matchesAny(['ab'])", want: true},
		{expr: "'a'.matchesAny(['a', 'b'])", want: true},
		{expr: "'a'.matchesAny(['ab'])", want: false},
	}, wantValue)
}

// TestCodePoints checks codePoints against utf8.RuneCountInString across
// its eight-byte steps, with multi-byte and invalid UTF-8 at every offset.
func TestCodePoints(t *testing.T) {
	for _, tail := range []string{"", "é", "日本", "\xff", "\xe6\x97", "a\x80b"} {
		for n := range 20 {
			s := strings.Repeat("a", n) + tail + strings.Repeat("b", n%9)
			if got, want := codePoints(s), utf8.RuneCountInString(s); got != want {
				t.Errorf("codePoints(%q) = %d, want %d", s, got, want)
			}
		}
	}
}
