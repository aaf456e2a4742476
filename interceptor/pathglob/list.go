package pathglob

import "fmt"

// List is an ordered list of patterns with GitHub's include/exclude rule: a
// path is included when the last pattern that matches it is positive. It is
// immutable and safe for concurrent use.
type List struct {
	patterns []*Pattern
	positive bool // at least one positive pattern: otherwise nothing is included
}

// CompileList compiles patterns in order. The error names the first pattern
// that does not compile, with its index.
func CompileList(patterns []string) (*List, error) {
	l := &List{patterns: make([]*Pattern, 0, len(patterns))}
	for i, s := range patterns {
		p, err := Compile(s)
		if err != nil {
			return nil, fmt.Errorf("pattern %d: %w", i, err)
		}
		l.patterns = append(l.patterns, p)
		if !p.negated {
			l.positive = true
		}
	}
	return l, nil
}

// Len returns the number of patterns.
func (l *List) Len() int { return len(l.patterns) }

// Patterns returns the patterns as given to CompileList.
func (l *List) Patterns() []string {
	out := make([]string, len(l.patterns))
	for i, p := range l.patterns {
		out[i] = p.text
	}
	return out
}

// Includes reports whether path is included: the last pattern matching it is
// positive.
func (l *List) Includes(path string) bool {
	if !l.positive {
		return false
	}
	for i := len(l.patterns) - 1; i >= 0; i-- {
		p := l.patterns[i]
		if p.Match(path) {
			return !p.negated
		}
	}
	return false
}

// IncludesAny reports whether at least one of paths is included.
func (l *List) IncludesAny(paths []string) bool {
	if !l.positive {
		return false
	}
	for _, path := range paths {
		if l.Includes(path) {
			return true
		}
	}
	return false
}

// Filter returns the included paths, in their order. It returns a new slice
// (empty, not nil, when nothing is included).
func (l *List) Filter(paths []string) []string {
	out := []string{}
	if !l.positive {
		return out
	}
	for _, path := range paths {
		if l.Includes(path) {
			out = append(out, path)
		}
	}
	return out
}
