package pathglob

import (
	"fmt"
	"testing"
)

// benchPatterns are typical path filters, from the cheapest shape (a literal
// prefix) to the general automaton.
var benchPatterns = []string{
	"src/**",
	"**/*.md",
	"docs/**/*.md",
	"**/*src/**",
	"v[12].[0-9]+.[0-9]+",
	"**/migrate-*.sql",
}

const benchPath = "services/payments/internal/src/handlers/refunds/migrate-2024-refund.sql"

// BenchmarkMatch compares the compiled pattern with an equivalent Go regexp.
func BenchmarkMatch(b *testing.B) {
	for _, pattern := range benchPatterns {
		p := MustCompile(pattern)
		re := oracle(b, pattern)
		b.Run(pattern+"/pathglob", func(b *testing.B) {
			for b.Loop() {
				p.Match(benchPath)
			}
		})
		b.Run(pattern+"/regexp", func(b *testing.B) {
			for b.Loop() {
				re.MatchString(benchPath)
			}
		})
	}
}

// BenchmarkListFilter runs a realistic include/exclude list over 10,000
// changed paths.
func BenchmarkListFilter(b *testing.B) {
	l, err := CompileList([]string{"src/**", "charts/**", "!**/*.md", "!**/testdata/**", "docs/api/**"})
	if err != nil {
		b.Fatal(err)
	}
	paths := make([]string, 10_000)
	for i := range paths {
		switch i % 4 {
		case 0:
			paths[i] = fmt.Sprintf("src/pkg%d/file%d.go", i%97, i)
		case 1:
			paths[i] = fmt.Sprintf("src/pkg%d/testdata/case%d.json", i%89, i)
		case 2:
			paths[i] = fmt.Sprintf("docs/guide/chapter%d.md", i)
		default:
			paths[i] = fmt.Sprintf("vendor/github.com/x/y%d/z.go", i)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		l.Filter(paths)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(paths)), "ns/path")
}

func BenchmarkCompile(b *testing.B) {
	for b.Loop() {
		for _, p := range benchPatterns {
			if _, err := Compile(p); err != nil {
				b.Fatal(err)
			}
		}
	}
}
