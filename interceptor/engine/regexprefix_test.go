package engine

import (
	"regexp"
	"slices"
	"testing"
)

// prefixSubjects are paths and strings around the prefixes' edges: empty,
// exact, longer, case changed, invalid UTF-8, a newline.
var prefixSubjects = []string{
	"", "a", "app", "app/models/user.rb", "apps", "Gemfile", "Gemfile.lock", "gemfile", "tests/x", "test",
	"src/main.go", "x/src/main.go", "\xff", "\xffsrc", "é/x", "\nsrc/", "docs/README.md", "APP/x",
}

func TestRequiredPrefixes(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		want    []string // nil: no prefilter
	}{
		{`^(app|tests)|^Gemfile$`, []string{"app", "tests", "Gemfile"}},
		{`^src/`, []string{"src/"}},
		{`\Asrc/.*\.go$`, []string{"src/"}},
		{`(^docs/)`, []string{"docs/"}},
		{`^(?:a|b)c`, nil}, // the parser makes a|b the class [ab]
		{`^é/`, []string{"é/"}},
		{`src/`, nil},                                 // not anchored
		{`(?m)^src/`, nil},                            // start of a line, not of the text
		{`(?i)^src/`, nil},                            // case folded
		{`^(src/)?x`, nil},                            // optional first part
		{`^a|b`, nil},                                 // one branch not anchored
		{`^a|`, nil},                                  // an empty branch
		{`^`, nil},                                    // anchored, no literal
		{`^\x{FFFD}x`, nil},                           // U+FFFD also matches an invalid byte
		{`^[ab]x`, nil},                               // a class: no literal
		{`^(a`, nil},                                  // invalid
		{`^(app|tests)/.*`, []string{"app", "tests"}}, // the literal before the class
	} {
		got := requiredPrefixes(tc.pattern)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: prefixes %q, want %q", tc.pattern, got, tc.want)
		}
		re, err := regexp.Compile(tc.pattern)
		if err != nil {
			continue
		}
		for _, s := range prefixSubjects {
			if got != nil && !hasPrefix(s, got) && re.MatchString(s) {
				t.Errorf("%s matches %q, which the prefixes %q turn away", tc.pattern, s, got)
			}
		}
	}
}

// FuzzRequiredPrefixes: no string the prefixes turn away matches the
// pattern.
func FuzzRequiredPrefixes(f *testing.F) {
	for _, p := range []string{`^(app|tests)|^Gemfile$`, `^src/`, `(^a|^b)c`, `^(?:x(y|z))w`, `^a|^`} {
		for _, s := range prefixSubjects {
			f.Add(p, s)
		}
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		re, err := regexp.Compile(pattern)
		if err != nil {
			return
		}
		pre := requiredPrefixes(pattern)
		if pre != nil && !hasPrefix(s, pre) && re.MatchString(s) {
			t.Fatalf("%q matches %q, which the prefixes %q turn away", pattern, s, pre)
		}
	})
}
