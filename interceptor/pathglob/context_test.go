package pathglob

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestMatchContextStops(t *testing.T) {
	p := MustCompile(strings.Repeat("*a", 512))
	l, err := CompileList([]string{strings.Repeat("*a", 512), "!b/**"})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("a", 1<<20)
	expired, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	tests := []struct {
		name string
		run  func(context.Context) error
	}{
		{"Pattern.MatchContext", func(ctx context.Context) error { _, err := p.MatchContext(ctx, long); return err }},
		{"List.IncludesContext", func(ctx context.Context) error { _, err := l.IncludesContext(ctx, long); return err }},
		{"List.IncludesAnyContext", func(ctx context.Context) error { _, err := l.IncludesAnyContext(ctx, []string{"x", long}); return err }},
		{"List.FilterContext", func(ctx context.Context) error { _, err := l.FilterContext(ctx, []string{long}); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(cancelled); !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled context: %v", err)
			}
			if err := tc.run(expired); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("a 1 MiB path against a 1 KiB pattern did not stop at the deadline: %v", err)
			}
		})
	}
}

func TestMatchContextAgreesWithMatch(t *testing.T) {
	for _, tc := range []struct{ pattern, path string }{
		{"docs/**/*.md", "docs/a/b.md"}, {"*.jsx?", "page.js"}, {strings.Repeat("*a", 40), strings.Repeat("ab", 100)},
		{strings.Repeat("[ab]?", 70) + "c", strings.Repeat("ab", 50) + "c"}, {"**/README.md", "README.md"},
	} {
		p := MustCompile(tc.pattern)
		got, err := p.MatchContext(context.Background(), tc.path)
		if err != nil || got != p.Match(tc.path) {
			t.Errorf("%q on %q: MatchContext %v %v, Match %v", tc.pattern, tc.path, got, err, p.Match(tc.path))
		}
	}
	if MustCompile("docs/**").Tokens() != 1 || MustCompile("*a*b").Tokens() < 3 {
		t.Error("Tokens: fast-path patterns count 1, automata their size")
	}
}

// BenchmarkMatchContext compares matching with and without the context
// checks on the worst-case automaton (the checks' overhead).
func BenchmarkMatchContext(b *testing.B) {
	p := MustCompile(strings.Repeat("*a", 40))
	path := strings.Repeat("a", 4096)
	b.Run("Match", func(b *testing.B) {
		for b.Loop() {
			p.Match(path)
		}
	})
	b.Run("MatchContext", func(b *testing.B) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		for b.Loop() {
			if _, err := p.MatchContext(ctx, path); err != nil {
				b.Fatal(err)
			}
		}
	})
}
