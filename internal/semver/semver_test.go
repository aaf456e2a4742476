package semver

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Version
		wantErr string
	}{
		{in: "1.4.2", want: Version{Original: "1.4.2", Major: 1, Minor: 4, Patch: 2}},
		{in: "v1.4.2", want: Version{Original: "v1.4.2", Major: 1, Minor: 4, Patch: 2}},
		{in: "v2.0.0-rc.1+build.5", want: Version{Original: "v2.0.0-rc.1+build.5", Major: 2, Prerelease: "rc.1", Build: "build.5"}},
		{in: "0.0.1-alpha-2", want: Version{Original: "0.0.1-alpha-2", Patch: 1, Prerelease: "alpha-2"}},
		{in: "1.0.0+20130313144700", want: Version{Original: "1.0.0+20130313144700", Major: 1, Build: "20130313144700"}},
		{in: "v1.2", wantErr: "exactly three, MAJOR.MINOR.PATCH (e.g. 1.2.0)"},
		{in: "1.4", wantErr: "exactly three"},
		{in: "v1", wantErr: "exactly three"},
		{in: "1.2.3.4", wantErr: "more than three"},
		{in: "01.2.3", wantErr: "leading zero"},
		{in: "1.2.3-01", wantErr: "leading zero"},
		{in: "1.2.3-", wantErr: "pre-release"},
		{in: "1.2.3-rc..1", wantErr: "pre-release"},
		{in: "1.2.3+", wantErr: "build metadata"},
		{in: "1.2.3+a_b", wantErr: "build metadata"},
		{in: "a.b.c", wantErr: "non-negative integers"},
		{in: "V1.2.3", wantErr: "non-negative integers"},
		{in: "vv1.2.3", wantErr: "non-negative integers"},
		{in: "latest", wantErr: "non-negative integers"},
		{in: "release-1", wantErr: "non-negative integers"},
		{in: "1..2", wantErr: "non-negative integers"},
		{in: "", wantErr: "empty"},
		{in: "v", wantErr: "nothing after"},
		{in: " 1.2.3", wantErr: "not a semantic version"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Parse(%q) = %+v, want error containing %q", tt.in, got, tt.wantErr)
				}
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) error = %v, want ErrInvalid containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreUnexported(Version{})); diff != "" {
				t.Errorf("Parse(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestCompare(t *testing.T) {
	// Precedence examples from the SemVer 2.0 specification, item 11.
	ordered := []string{
		"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
		"1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "2.0.0", "2.1.0", "2.1.1",
	}
	for i := range ordered {
		for j := range ordered {
			a, _ := Parse(ordered[i])
			b, _ := Parse(ordered[j])
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := a.Compare(b); got != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
	a, _ := Parse("v1.0.0+build.1")
	b, _ := Parse("1.0.0+build.2")
	if a.Compare(b) != 0 {
		t.Errorf("build metadata must not affect precedence")
	}
	if (Version{Major: 1}).Compare(b) != 0 {
		t.Errorf("a hand-built Version must compare by its fields")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"v1.2.3", "1.2", "1.2.3-rc.1+b", "v", "", "0.0.0-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Parse(s)
		if err != nil {
			return
		}
		// A version that parses must round-trip through its canonical form.
		again, err := Parse(v.String())
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", v.String(), s, err)
		}
		if again.Compare(v) != 0 || again.Build != v.Build {
			t.Fatalf("round trip of %q changed it: %q", s, again.String())
		}
	})
}
