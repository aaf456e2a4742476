package engine

import (
	"regexp/syntax"
	"strings"
	"unicode/utf8"
)

// Path filters are usually anchored regular expressions:
// `^(app|tests)|^Gemfile$`, `^src/`. Go's regexp runs its backtracker on
// every path even when the path's first bytes rule a match out; on the blog
// filter of BenchmarkDecision that was most of the fast path's time. The
// fast path first checks the literal prefixes every match of the pattern
// must start with, and runs the expression only on a path that has one.
// TestRequiredPrefixes and FuzzRequiredPrefixes check that no path the
// prefixes turn away would have matched.

// requiredPrefixes returns literal prefixes such that every string the
// pattern matches starts with one of them, or nil when the pattern does not
// pin one (not anchored at the start of the text, a case-insensitive or
// optional first part, an invalid pattern).
func requiredPrefixes(pattern string) []string {
	re, err := syntax.Parse(pattern, syntax.Perl) // as regexp.Compile parses
	if err != nil {
		return nil
	}
	pre, ok := anchoredPrefixes(re)
	if !ok {
		return nil
	}
	for _, p := range pre {
		if p == "" {
			return nil // some match may start with anything
		}
	}
	return pre
}

// anchoredPrefixes is requiredPrefixes for a node that must match at the
// start of the text: ok is false when it need not.
func anchoredPrefixes(re *syntax.Regexp) (pre []string, ok bool) {
	switch re.Op {
	case syntax.OpBeginText:
		return []string{""}, true
	case syntax.OpCapture:
		return anchoredPrefixes(re.Sub[0])
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			p, ok := anchoredPrefixes(sub)
			if !ok {
				return nil, false
			}
			pre = append(pre, p...)
		}
		return pre, true
	case syntax.OpConcat:
		if len(re.Sub) == 0 {
			return nil, false
		}
		if re.Sub[0].Op == syntax.OpBeginText {
			return literalPrefixes(re.Sub[1:]), true
		}
		// A match of the concatenation starts with a match of its first
		// part.
		return anchoredPrefixes(re.Sub[0])
	}
	return nil, false
}

// literalPrefixes returns the literals a match of the sequence seq must
// start with; {""} when it pins none.
func literalPrefixes(seq []*syntax.Regexp) []string {
	if len(seq) == 0 {
		return []string{""}
	}
	switch first := seq[0]; first.Op {
	case syntax.OpLiteral:
		s := string(first.Rune)
		if first.Flags&syntax.FoldCase != 0 || strings.ContainsRune(s, utf8.RuneError) {
			// Case folding, or U+FFFD, which also matches an invalid byte.
			return []string{""}
		}
		return []string{s}
	case syntax.OpCapture, syntax.OpConcat:
		return literalPrefixes(first.Sub)
	case syntax.OpAlternate:
		var pre []string
		for _, sub := range first.Sub {
			pre = append(pre, literalPrefixes([]*syntax.Regexp{sub})...)
		}
		return pre
	}
	return []string{""}
}

// hasPrefix reports whether s starts with one of pre.
func hasPrefix(s string, pre []string) bool {
	for _, p := range pre {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
