package pathglob

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// cheatSheet holds every example of GitHub's "Filter pattern cheat sheet"
// (workflow syntax for GitHub Actions): the special-character list, the
// branch and tag table and the file path table. Non-matches are ours, chosen
// next to each documented match.
var cheatSheet = []struct {
	name    string
	pattern string
	match   []string
	noMatch []string
}{
	// Special characters.
	{"star in a name", "Octo*", []string{"Octocat", "Octo"}, []string{"Octo/cat", "octocat"}},
	{"class lists", "[CB]at", []string{"Cat", "Bat"}, []string{"cat", "Hat", "at", "CBat"}},
	{"class range", "[1-2]00", []string{"100", "200"}, []string{"300", "00", "1200"}},
	{"class digits and lowercase", "[0-9a-z]", []string{"0", "9", "a", "z"}, []string{"A", "-", "", "ab"}},

	// Patterns to match branches and tags.
	{"feature/*", "feature/*", []string{"feature/my-branch", "feature/your-branch"}, []string{"feature/beta-a/my-branch", "feature", "features/x"}},
	{"feature/**", "feature/**", []string{"feature/beta-a/my-branch", "feature/your-branch", "feature/mona/the/octocat"}, []string{"feature", "other/feature/x"}},
	{"exact main", "main", []string{"main"}, []string{"main2", "xmain", "a/main"}},
	{"exact with slash", "releases/mona-the-octocat", []string{"releases/mona-the-octocat"}, []string{"releases/mona"}},
	{"branch star", "*", []string{"main", "releases"}, []string{"all/the/branches"}},
	{"branch globstar", "**", []string{"all/the/branches", "every/tag", "main"}, nil},
	{"star prefix", "*feature", []string{"mona-feature", "feature", "ver-10-feature"}, []string{"feature-x", "a/feature"}},
	{"v2*", "v2*", []string{"v2", "v2.0", "v2.9"}, []string{"v1.0", "v2/x"}},
	{"semver tags", "v[12].[0-9]+.[0-9]+", []string{"v1.10.1", "v2.0.0"}, []string{"v3.0.0", "v1..1", "v1.x.1", "v1.0"}},

	// Patterns to match file paths.
	{"star", "*", []string{"README.md", "server.rb"}, []string{"docs/README.md"}},
	{"optional char", "*.jsx?", []string{"page.js", "page.jsx"}, []string{"page.jsxx", "page.j", "a/page.js"}},
	{"globstar", "**", []string{"all/the/files.md", "x"}, nil},
	{"star suffix", "*.js", []string{"app.js", "index.js"}, []string{"js/index.js", "app.jsx"}},
	{"globstar suffix", "**.js", []string{"index.js", "js/index.js", "src/js/app.js"}, []string{"index.jsx", "index.ts"}},
	{"docs/*", "docs/*", []string{"docs/README.md", "docs/file.txt"}, []string{"docs/mona/octocat.txt", "README.md"}},
	{"docs/**", "docs/**", []string{"docs/README.md", "docs/mona/octocat.txt"}, []string{"README.md", "mydocs/x", "a/docs/x"}},
	{"docs/**/*.md", "docs/**/*.md", []string{"docs/README.md", "docs/mona/hello-world.md", "docs/a/markdown/file.md"}, []string{"docs/a.txt", "README.md", "x/docs/a.md"}},
	{"**/docs/**", "**/docs/**", []string{"docs/hello.md", "dir/docs/my-file.txt", "space/docs/plan/space.doc"}, []string{"mydocs/a", "docsx/a", "dir/docs"}},
	{"**/README.md", "**/README.md", []string{"README.md", "js/README.md"}, []string{"xREADME.md", "README.mdx", "js/README.md/x"}},
	{"**/*src/**", "**/*src/**", []string{"a/src/app.js", "my-src/code/js/app.js"}, []string{"src-a/app.js", "a/src"}},
	{"**/*-post.md", "**/*-post.md", []string{"my-post.md", "path/their-post.md"}, []string{"my-post.mdx", "post.md"}},
	{"**/migrate-*.sql", "**/migrate-*.sql", []string{"migrate-10909.sql", "db/migrate-v1.0.sql", "db/sept/migrate-v1.sql"}, []string{"migrate/x.sql", "db/migrate-v1.sql.bak"}},
}

func TestCheatSheet(t *testing.T) {
	for _, tc := range cheatSheet {
		t.Run(tc.name, func(t *testing.T) {
			checkMatches(t, tc.pattern, tc.match, true)
			checkMatches(t, tc.pattern, tc.noMatch, false)
		})
	}
}

// checkMatches compiles pattern and checks that Match says want for each
// of paths.
func checkMatches(t *testing.T, pattern string, paths []string, want bool) {
	t.Helper()
	p, err := Compile(pattern)
	if err != nil {
		t.Fatalf("Compile(%q): %v", pattern, err)
	}
	for _, path := range paths {
		if got := p.Match(path); got != want {
			t.Errorf("%q.Match(%q) = %v, want %v", pattern, path, got, want)
		}
	}
}

func TestListCheatSheet(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		paths    []string
		want     []string
	}{{
		name:     "negation excludes what an earlier pattern included",
		patterns: []string{"*.md", "!README.md"},
		paths:    []string{"hello.md", "README.md", "docs/hello.md"},
		want:     []string{"hello.md"},
	}, {
		name:     "a later positive pattern re-includes",
		patterns: []string{"*.md", "!README.md", "README*"},
		paths:    []string{"hello.md", "README.md", "README.doc", "docs/hello.md"},
		want:     []string{"hello.md", "README.md", "README.doc"},
	}, {
		name:     "source without its docs",
		patterns: []string{"src/**", "!src/**/*.md"},
		paths:    []string{"src/main.go", "src/README.md", "src/a/b/c.md", "src/a/b/c.go", "README.md"},
		want:     []string{"src/main.go", "src/a/b/c.go"},
	}, {
		name:     "only negative patterns include nothing",
		patterns: []string{"!docs/**"},
		paths:    []string{"src/main.go", "docs/a.md"},
		want:     []string{},
	}, {
		name:     "empty list includes nothing",
		patterns: nil,
		paths:    []string{"a"},
		want:     []string{},
	}, {
		name:     "negation before inclusion is overridden",
		patterns: []string{"!docs/**", "**"},
		paths:    []string{"docs/a.md", "b"},
		want:     []string{"docs/a.md", "b"},
	}, {
		name:     "no paths",
		patterns: []string{"**"},
		paths:    nil,
		want:     []string{},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := CompileList(tc.patterns)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, l.Filter(tc.paths)); diff != "" {
				t.Errorf("Filter (-want +got):\n%s", diff)
			}
			if got, want := l.IncludesAny(tc.paths), len(tc.want) > 0; got != want {
				t.Errorf("IncludesAny = %v, want %v", got, want)
			}
			for _, p := range tc.paths {
				want := false
				for _, w := range tc.want {
					want = want || w == p
				}
				if got := l.Includes(p); got != want {
					t.Errorf("Includes(%q) = %v, want %v", p, got, want)
				}
			}
			if diff := cmp.Diff(len(tc.patterns), l.Len()); diff != "" {
				t.Errorf("Len (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSemantics pins the choices the cheat sheet leaves open.
func TestSemantics(t *testing.T) {
	tests := []struct {
		pattern string
		path    string
		want    bool
	}{
		// ? is GitHub's "zero or one of the preceding character".
		{"Octoc?t", "Octocat", false},
		{"Octoc?t", "Octot", true},
		{"Octoc?t", "Octoct", true},
		{"colou?r", "color", true},
		{"colou?r", "colour", true},
		{"colou?r", "colouur", false},
		{"v[0-9]?", "v", true},
		{"v[0-9]?", "v7", true},
		{"v[0-9]?", "v77", false},
		// + is "one or more of the preceding character".
		{"a+b", "ab", true},
		{"a+b", "aaab", true},
		{"a+b", "b", false},
		{"[0-9]+", "2026", true},
		{"[0-9]+", "", false},
		{"x/+y", "x//y", true},
		// A quantifier binds to one character only.
		{"ab+", "abab", false},
		{"ab+", "abbb", true},
		// Escapes make special characters literal.
		{`\*.md`, "*.md", true},
		{`\*.md`, "a.md", false},
		{`a\?`, "a?", true},
		{`a\?`, "a", false},
		{`\[x]`, "[x]", true},
		{`\!important`, "!important", true},
		{`a\\b`, `a\b`, true},
		{`[\]]`, "]", true},
		// Characters without a meaning stand for themselves.
		{"a.b", "a.b", true},
		{"a.b", "axb", false},
		{"{a,b}", "{a,b}", true},
		{"a]", "a]", true},
		{"a(b)|c", "a(b)|c", true},
		{"a$^", "a$^", true},
		// ! only negates at the start.
		{"a!b", "a!b", true},
		{"!!a", "!a", true},
		// * and ** and segments.
		{"*", "", true},
		{"*/*", "a/b", true},
		{"*/*", "a/b/c", false},
		{"a/**/b", "a/b", true},
		{"a/**/b", "a/x/y/b", true},
		{"a/**/b", "ab", false},
		{"a/**", "a", false},
		{"a/**", "a/", true},
		{"a**", "a/b/c", true},
		{"a**/b", "a/b", true},
		{"a**/b", "axy/z/b", true},
		{"a**/b", "ab", false},
		{"***", "a/b", true},
		{"**/", "a/", true},
		{"**/", "", true},
		{"**/*", "a", true},
		{"**/*", "a/b/c", true},
		{"**/**", "a", true},
		{"**/**/x", "x", true},
		{"**/**/x", "a/b/x", true},
		{".*", ".github", true},
		{"*", ".hidden", true},
		{"**", "", true},
		// Case matters.
		{"README.md", "readme.md", false},
		// Classes with literal members, a dash at either end, and unicode.
		{"[-_]x", "-x", true},
		{"[-_]x", "_x", true},
		{"[a-c-e]", "-", true},
		{"[a-c-e]", "e", true},
		{"[a-c-e]", "d", false},
		{"[._]env", ".env", true},
		{"[é]", "é", true},
		{"caf[eé]", "café", true},
		// Unicode in literals and under quantifiers.
		{"é?x", "x", true},
		{"é?x", "éx", true},
		{"é+", "ééé", true},
		{"日本/*.md", "日本/a.md", true},
		{"*", "日本", true},
		// Bytes that are not UTF-8 are only matched by wildcards.
		{"a*", "a\xff", true},
		{"**", "\xff/\xfe", true},
		{"\uFFFD", "\xff", false},
		{"[a-z]", "\xff", false},
	}
	for _, tc := range tests {
		t.Run(tc.pattern+" "+tc.path, func(t *testing.T) {
			checkMatches(t, tc.pattern, []string{tc.path}, tc.want)
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		pattern string
		offset  int
		msg     string
	}{
		{"", 0, "empty pattern"},
		{"!", 1, "empty pattern"},
		{"/src/**", 0, "paths are relative to the repository root: remove the leading /"},
		{"!/src", 1, "paths are relative to the repository root: remove the leading /"},
		{"?a", 0, `'?' must follow a character or a [...] class`},
		{"+a", 0, `'+' must follow a character or a [...] class`},
		{"*?", 1, `'?' must follow a character or a [...] class`},
		{"**+", 2, `'+' must follow a character or a [...] class`},
		{"a??", 2, `'?' must follow a character or a [...] class`},
		{"a+?", 2, `'?' must follow a character or a [...] class`},
		{"a++", 2, `'+' must follow a character or a [...] class`},
		{"**/?", 3, `'?' must follow a character or a [...] class`},
		{"!?", 1, `'?' must follow a character or a [...] class`},
		{`a\`, 1, `unfinished escape: "\" must be followed by the character to match`},
		{`[a\`, 2, `unfinished escape: "\" must be followed by the character to match`},
		{"[abc", 0, "unclosed ["},
		{"x[", 1, "unclosed ["},
		{"[]", 0, "empty class []"},
		{"[!a]", 1, "negated classes are not supported: list the characters to match"},
		{"[^a]", 1, "negated classes are not supported: list the characters to match"},
		{"[a/b]", 2, `a [...] class cannot match "/"`},
		{"[z-a]", 1, "invalid range z-a: ranges must stay within a-z, A-Z or 0-9 and go upwards"},
		{"[A-z]", 1, "invalid range A-z: ranges must stay within a-z, A-Z or 0-9 and go upwards"},
		{"x[!--]", 2, "negated classes are not supported: list the characters to match"},
		{"[+--]", 1, "invalid range +--: ranges must stay within a-z, A-Z or 0-9 and go upwards"},
		{"a\xffb", 1, "not valid UTF-8"},
		{strings.Repeat("a", MaxPatternLength+1), MaxPatternLength, fmt.Sprintf("longer than %d bytes", MaxPatternLength)},
	}
	for _, tc := range tests {
		t.Run(tc.pattern, func(t *testing.T) {
			_, err := Compile(tc.pattern)
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Compile(%q) error = %v, want a *SyntaxError", tc.pattern, err)
			}
			want := &SyntaxError{Pattern: tc.pattern, Offset: tc.offset, Msg: tc.msg}
			if diff := cmp.Diff(want, se); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.pattern)) {
				t.Errorf("error %q does not name the pattern", err)
			}
		})
	}
}

func TestCompileListError(t *testing.T) {
	_, err := CompileList([]string{"src/**", "!docs/[", "x"})
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("CompileList error = %v, want a *SyntaxError", err)
	}
	want := `pattern 1: invalid path pattern "!docs/[": unclosed [ (at offset 6)`
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
}

func TestAccessors(t *testing.T) {
	p := MustCompile("!docs/**")
	if got := []any{p.String(), p.Negated(), p.Match("docs/a")}; !cmp.Equal(got, []any{"!docs/**", true, true}) {
		t.Errorf("String, Negated, Match = %v", got)
	}
	l, err := CompileList([]string{"a", "!b"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a", "!b"}, l.Patterns()); diff != "" {
		t.Errorf("Patterns (-want +got):\n%s", diff)
	}
	defer func() {
		if recover() == nil {
			t.Error("MustCompile of a bad pattern did not panic")
		}
	}()
	MustCompile("[")
}

// TestLongPatterns drives the multi-word automaton (more than 63 positions in
// the middle part) and checks it against the regexp oracle.
func TestLongPatterns(t *testing.T) {
	seg := "*/x?[a-c]+"
	pattern := "p/" + strings.Repeat(seg, 20) + "**" + "/q"
	p := MustCompile(pattern)
	if p.words < 2 {
		t.Fatalf("pattern compiled to %d words, want a multi-word automaton", p.words)
	}
	re := oracle(t, pattern)
	var paths []string
	for _, mid := range []string{"a/b", "a/xb", "a/c", "aa/xaa"} {
		paths = append(paths, "p/"+strings.Repeat(mid, 20)+"z/q", "p/"+strings.Repeat(mid, 20)+"/q", "p/"+strings.Repeat(mid, 19)+"/q")
	}
	matched := 0
	for _, path := range paths {
		got, want := p.Match(path), re.MatchString(path)
		if got != want {
			t.Errorf("Match(%q) = %v, oracle says %v", path, got, want)
		}
		if got {
			matched++
		}
	}
	if matched == 0 {
		t.Error("no path matched: the test exercises nothing")
	}
}

// oracle translates a valid pattern to an anchored Go regexp with the same
// meaning: an independent statement of the rules, used to check the automaton.
func oracle(t testing.TB, pattern string) *regexp.Regexp {
	t.Helper()
	body := strings.TrimPrefix(pattern, "!")
	var b strings.Builder
	b.WriteString(`(?s)^`)
	for i := 0; i < len(body); {
		switch c := body[i]; {
		case c == '\\':
			r, size := utf8.DecodeRuneInString(body[i+1:])
			b.WriteString(regexp.QuoteMeta(string(r)))
			i += 1 + size
		case c == '*':
			j := i
			for j < len(body) && body[j] == '*' {
				j++
			}
			switch {
			case j-i == 1:
				b.WriteString(`[^/]*`)
			case (i == 0 || body[i-1] == '/') && j < len(body) && body[j] == '/':
				b.WriteString(`(?:.*/)?`)
				j++
			default:
				b.WriteString(`.*`)
			}
			i = j
		case c == '?' || c == '+':
			b.WriteByte(c)
			i++
		case c == '[':
			type member struct {
				r   rune
				esc bool
			}
			var ms []member
			j := i + 1
			for body[j] != ']' {
				esc := body[j] == '\\'
				if esc {
					j++
				}
				r, size := utf8.DecodeRuneInString(body[j:])
				ms = append(ms, member{r, esc})
				j += size
			}
			b.WriteByte('[')
			for k := 0; k < len(ms); k++ {
				if k+2 < len(ms) && ms[k+1].r == '-' && !ms[k+1].esc {
					fmt.Fprintf(&b, `\x{%x}-\x{%x}`, ms[k].r, ms[k+2].r)
					k += 2
					continue
				}
				fmt.Fprintf(&b, `\x{%x}`, ms[k].r)
			}
			b.WriteByte(']')
			i = j + 1
		default:
			r, size := utf8.DecodeRuneInString(body[i:])
			b.WriteString(regexp.QuoteMeta(string(r)))
			i += size
		}
	}
	b.WriteString(`$`)
	re, err := regexp.Compile(b.String())
	if err != nil {
		t.Fatalf("oracle for %q: %v", pattern, err)
	}
	return re
}

func TestOracleAgreesOnCheatSheet(t *testing.T) {
	for _, tc := range cheatSheet {
		re := oracle(t, tc.pattern)
		for _, path := range append(append([]string{}, tc.match...), tc.noMatch...) {
			if got, want := MustCompile(tc.pattern).Match(path), re.MatchString(path); got != want {
				t.Errorf("%q on %q: Match = %v, oracle %v", tc.pattern, path, got, want)
			}
		}
	}
}

func FuzzMatch(f *testing.F) {
	for _, tc := range cheatSheet {
		for _, path := range append(append([]string{}, tc.match...), tc.noMatch...) {
			f.Add(tc.pattern, path)
		}
	}
	for _, s := range []string{"[a-c-e]x+", `\*\?`, "**/", "a/**/b?", "[", "!", "é?x", "x[!-]", "**/**/x"} {
		f.Add(s, "a/b/x")
	}
	f.Fuzz(func(t *testing.T, pattern, path string) {
		p, err := Compile(pattern)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Compile(%q) returned %T, want *SyntaxError", pattern, err)
			}
			if se.Offset < 0 || se.Offset > len(pattern) || se.Pattern != pattern || se.Msg == "" {
				t.Fatalf("Compile(%q): malformed error %#v", pattern, se)
			}
			return
		}
		got := p.Match(path)
		if !utf8.ValidString(path) {
			return // the oracle (regexp) reads bad bytes as U+FFFD; we match them only with wildcards
		}
		if want := oracle(t, pattern).MatchString(path); got != want {
			t.Fatalf("Compile(%q).Match(%q) = %v, oracle says %v", pattern, path, got, want)
		}
	})
}
