package pathglob

import (
	"context"
	"fmt"
)

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

// Tokens is the total size of the patterns' automata (see
// Pattern.Tokens): including a path of n characters takes at most
// n × Tokens() steps.
func (l *List) Tokens() int {
	t := 0
	for _, p := range l.patterns {
		t += p.Tokens()
	}
	return t
}

// Includes reports whether path is included: the last pattern matching it is
// positive.
func (l *List) Includes(path string) bool {
	ok, _ := l.includes(nil, path)
	return ok
}

// IncludesContext is Includes that stops with ctx's error when ctx is done
// (see Pattern.MatchContext).
func (l *List) IncludesContext(ctx context.Context, path string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	return l.includes(ctx, path)
}

func (l *List) includes(ctx context.Context, path string) (bool, error) {
	if !l.positive {
		return false, nil
	}
	for i := len(l.patterns) - 1; i >= 0; i-- {
		p := l.patterns[i]
		ok, err := p.match(ctx, path)
		if err != nil {
			return false, err
		}
		if ok {
			return !p.negated, nil
		}
	}
	return false, nil
}

// IncludesAny reports whether at least one of paths is included.
func (l *List) IncludesAny(paths []string) bool {
	ok, _ := l.includesAny(nil, paths)
	return ok
}

// IncludesAnyContext is IncludesAny that stops with ctx's error when ctx
// is done, between paths and inside long ones.
func (l *List) IncludesAnyContext(ctx context.Context, paths []string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	return l.includesAny(ctx, paths)
}

func (l *List) includesAny(ctx context.Context, paths []string) (bool, error) {
	if !l.positive {
		return false, nil
	}
	for _, path := range paths {
		ok, err := l.includes(ctx, path)
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// Filter returns the included paths, in their order. It returns a new slice
// (empty, not nil, when nothing is included).
func (l *List) Filter(paths []string) []string {
	out, _ := l.filter(nil, paths)
	return out
}

// FilterContext is Filter that stops with ctx's error when ctx is done.
func (l *List) FilterContext(ctx context.Context, paths []string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return l.filter(ctx, paths)
}

func (l *List) filter(ctx context.Context, paths []string) ([]string, error) {
	out := []string{}
	if !l.positive {
		return out, nil
	}
	for _, path := range paths {
		ok, err := l.includes(ctx, path)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, path)
		}
	}
	return out, nil
}
