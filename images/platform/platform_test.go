package platform

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      error
	}{
		{in: "linux/amd64", want: "linux/amd64"},
		{in: "amd64", want: "linux/amd64"},
		{in: "  Linux/AMD64 ", want: "linux/amd64"},
		{in: "x86_64", want: "linux/amd64"},
		{in: "linux/x86-64", want: "linux/amd64"},
		{in: "linux/amd64/v1", want: "linux/amd64"},
		{in: "linux/amd64/v3", want: "linux/amd64/v3"},
		{in: "linux/amd64/2", want: "linux/amd64/v2"},
		{in: "linux/arm64", want: "linux/arm64"},
		{in: "arm64", want: "linux/arm64"},
		{in: "aarch64", want: "linux/arm64"},
		{in: "linux/arm64/v8", want: "linux/arm64"},
		{in: "linux/arm64/8", want: "linux/arm64"},
		{in: "linux/arm64/v9", want: "linux/arm64/v9"},
		{in: "linux/arm64/v8.2", want: "linux/arm64/v8.2"},
		{in: "arm", want: "linux/arm/v7"},
		{in: "linux/arm", want: "linux/arm/v7"},
		{in: "linux/arm/v6", want: "linux/arm/v6"},
		{in: "linux/arm/6", want: "linux/arm/v6"},
		{in: "armhf", want: "linux/arm/v7"},
		{in: "armel", want: "linux/arm/v6"},
		{in: "i686", want: "linux/386"},
		{in: "linux/386", want: "linux/386"},
		{in: "linux/ppc64le", want: "linux/ppc64le"},
		{in: "s390x", want: "linux/s390x"},
		{in: "linux/riscv64", want: "linux/riscv64"},
		{in: "windows/amd64", want: "windows/amd64"},
		{in: "macos/arm64", want: "darwin/arm64"},
		{in: "", err: ErrInvalid},
		{in: "   ", err: ErrInvalid},
		{in: "linux", err: ErrInvalid},
		{in: "windows", err: ErrInvalid},
		{in: "linux/", err: ErrInvalid},
		{in: "/amd64", err: ErrInvalid},
		{in: "linux/amd64/v3/x", err: ErrInvalid},
		{in: "linux/amd64/v9", err: ErrInvalid},
		{in: "linux/arm/v9", err: ErrInvalid},
		{in: "linux/arm64/v7", err: ErrInvalid},
		{in: "linux/386/v2", err: ErrInvalid},
		{in: "linux/amd 64", err: ErrInvalid},
		{in: "linux/$(params.x)", err: ErrInvalid},
		{in: "linux/amd64:10.0", err: ErrInvalid},
		{in: "linux/arm64/", err: ErrInvalid},
	} {
		t.Run(tc.in, func(t *testing.T) {
			p, err := Parse(tc.in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Parse(%q) = %v, %v; want error %v", tc.in, p, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if got := p.String(); got != tc.want {
				t.Errorf("Parse(%q) = %s, want %s", tc.in, got, tc.want)
			}
			// Canonical spellings are fixed points.
			again, err := Parse(p.String())
			if err != nil || !again.Equals(p) {
				t.Errorf("Parse(%s) = %v, %v", p.String(), again, err)
			}
		})
	}
}

func TestSlugNodeArchBuildArgs(t *testing.T) {
	for _, tc := range []struct {
		in, slug, arch string
		args           []string
	}{
		{"linux/amd64", "linux-amd64", "amd64", []string{"TARGETPLATFORM=linux/amd64", "TARGETOS=linux", "TARGETARCH=amd64", "TARGETVARIANT="}},
		{"linux/arm/v7", "linux-arm-v7", "arm", []string{"TARGETPLATFORM=linux/arm/v7", "TARGETOS=linux", "TARGETARCH=arm", "TARGETVARIANT=v7"}},
		{"linux/arm64/v8.2", "linux-arm64-v8.2", "arm64", []string{"TARGETPLATFORM=linux/arm64/v8.2", "TARGETOS=linux", "TARGETARCH=arm64", "TARGETVARIANT=v8.2"}},
		{"linux/mips64_x", "linux-mips64-x", "mips64_x", nil},
	} {
		t.Run(tc.in, func(t *testing.T) {
			p, err := Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := Slug(p); got != tc.slug {
				t.Errorf("Slug = %q, want %q", got, tc.slug)
			}
			if got := NodeArch(p); got != tc.arch {
				t.Errorf("NodeArch = %q, want %q", got, tc.arch)
			}
			if tc.args != nil {
				if diff := cmp.Diff(tc.args, BuildArgs(p)); diff != "" {
					t.Errorf("BuildArgs (-want +got):\n%s", diff)
				}
				for i, kv := range BuildArgs(p) {
					if !strings.HasPrefix(kv, BuildArgNames[i]+"=") {
						t.Errorf("BuildArgs[%d] = %q, want key %s", i, kv, BuildArgNames[i])
					}
				}
			}
		})
	}
}

func TestNewPlan(t *testing.T) {
	for _, tc := range []struct {
		name      string
		in        []string
		platforms []string
		arches    []string
		err       error
		msg       string
	}{
		{name: "default pair", in: []string{"linux/amd64", "linux/arm64"},
			platforms: []string{"linux/amd64", "linux/arm64"}, arches: []string{"amd64", "arm64"}},
		{name: "order kept", in: []string{"linux/arm64", "linux/amd64"},
			platforms: []string{"linux/arm64", "linux/amd64"}, arches: []string{"arm64", "amd64"}},
		{name: "aliases merged", in: []string{"x86_64", "linux/amd64", "aarch64", "linux/arm64/v8"},
			platforms: []string{"linux/amd64", "linux/arm64"}, arches: []string{"amd64", "arm64"}},
		{name: "comma separated element", in: []string{"linux/amd64, linux/arm/v6", "linux/s390x"},
			platforms: []string{"linux/amd64", "linux/arm/v6", "linux/s390x"}, arches: []string{"amd64", "arm", "s390x"}},
		{name: "empty elements ignored", in: []string{"", "linux/amd64", ","},
			platforms: []string{"linux/amd64"}, arches: []string{"amd64"}},
		{name: "none", in: nil, err: ErrInvalid, msg: "no platforms"},
		{name: "only empty", in: []string{"", " , "}, err: ErrInvalid},
		{name: "windows", in: []string{"linux/amd64", "windows/amd64"}, err: ErrUnsupportedOS, msg: "windows/amd64: Kaniko builds Linux images only"},
		{name: "two arm variants", in: []string{"linux/arm/v6", "linux/arm/v7"}, err: ErrSameNodeArch,
			msg: "linux/arm/v6 and linux/arm/v7 both need nodes labelled kubernetes.io/arch=arm"},
		{name: "amd64 levels", in: []string{"linux/amd64", "linux/amd64/v3"}, err: ErrSameNodeArch},
		{name: "bad element", in: []string{"linux/amd64", "linux/arm64/v7"}, err: ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pl, err := NewPlan(tc.in...)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("NewPlan = %v, %v; want error %v", pl, err, tc.err)
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("error %q does not say %q", err, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.platforms, pl.Strings()); diff != "" {
				t.Errorf("Strings (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.arches, pl.NodeArchs()); diff != "" {
				t.Errorf("NodeArchs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name    string
		spec    string
		planned []string
		want    string
		err     error
	}{
		{name: "full, no plan", spec: "linux/arm64", want: "linux/arm64"},
		{name: "bare, no plan", spec: "arm64", want: "linux/arm64"},
		{name: "bare arm, no plan defaults to v7", spec: "arm", want: "linux/arm/v7"},
		{name: "bare arm picks the planned variant", spec: "arm", planned: []string{"linux/amd64", "linux/arm/v6"}, want: "linux/arm/v6"},
		{name: "bare amd64 picks the planned level", spec: "amd64", planned: []string{"linux/amd64/v3"}, want: "linux/amd64/v3"},
		{name: "full and planned", spec: "linux/arm64/v8", planned: []string{"linux/amd64", "linux/arm64"}, want: "linux/arm64"},
		{name: "planned as one comma list", spec: "arm64", planned: []string{"linux/amd64,linux/arm64"}, want: "linux/arm64"},
		{name: "full variant not planned", spec: "linux/arm/v7", planned: []string{"linux/arm/v6"}, err: ErrNotPlanned},
		{name: "bare not planned", spec: "s390x", planned: []string{"linux/amd64", "linux/arm64"}, err: ErrNotPlanned},
		{name: "windows", spec: "windows/amd64", err: ErrUnsupportedOS},
		{name: "invalid", spec: "linux/", err: ErrInvalid},
		{name: "invalid plan", spec: "amd64", planned: []string{"linux/arm/v6", "linux/arm/v7"}, err: ErrSameNodeArch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Resolve(tc.spec, tc.planned)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Resolve = %v, %v; want error %v", p, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := p.String(); got != tc.want {
				t.Errorf("Resolve = %s, want %s", got, tc.want)
			}
		})
	}
}

// FuzzParse: platform strings arrive from PipelineRun params; Parse must
// never panic, and what it accepts must be canonical, safe in a tag and a
// label value, and stable.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"linux/amd64", "arm", "linux/arm/v6", "aarch64", "windows/amd64", "linux/arm64/v8.2", "", "/", "a/b/c/d", "linux/amd64\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			return
		}
		canon := p.String()
		again, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(%q) accepted as %q, which does not parse: %v", s, canon, err)
		}
		if again.String() != canon {
			t.Fatalf("not a fixed point: %q -> %q -> %q", s, canon, again.String())
		}
		if !validLabelValue(NodeArch(p)) {
			t.Fatalf("NodeArch(%q) = %q is not a valid label value", s, NodeArch(p))
		}
		if strings.ContainsAny(Slug(p), "/:@ \t\n") {
			t.Fatalf("Slug(%q) = %q", s, Slug(p))
		}
	})
}

func validLabelValue(v string) bool {
	if len(v) == 0 || len(v) > 63 {
		return false
	}
	for i, r := range v {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || i == len(v)-1 || !strings.ContainsRune("-_.", r)) {
			return false
		}
	}
	return true
}

func TestParseExact(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want v1.Platform
		msg  string // the error says this; "" when accepted
	}{
		{in: "linux/amd64", want: v1.Platform{OS: "linux", Architecture: "amd64"}},
		{in: "linux/arm64/v8", want: v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}},
		{in: "Linux/ARM/v7", want: v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}},
		{in: "windows/amd64:10.0.17763.1879", want: v1.Platform{OS: "windows", Architecture: "amd64", OSVersion: "10.0.17763.1879"}},
		{in: "linux", msg: "os/arch"},
		{in: "amd64", msg: "os/arch"},
		{in: "linux/", msg: `"" is not an os or architecture name`},
		{in: "/amd64", msg: `"" is not an os or architecture name`},
		{in: "linux/arm/v7/x", msg: "os/arch"},
		{in: "linux/amd64:", msg: "empty os.version"},
		{in: "linux/amd64:1:2", msg: "more than one ':'"},
		{in: "linux/ amd64", msg: "not an os or architecture name"},
		{in: "linux/arm64/", msg: "empty variant"},
		{in: "", msg: "empty"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseExact(tc.in)
			if tc.msg != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("ParseExact(%q) = %v, %v; want ErrInvalid saying %q", tc.in, got, err, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseExact(%q) (-want +got):\n%s", tc.in, diff)
			}
			if again, err := ParseExact(got.String()); err != nil || !again.Equals(got) {
				t.Errorf("ParseExact(%q) = %v, %v: String does not round-trip", got.String(), again, err)
			}
		})
	}
}

// TestSplitDiffersFromGGCR names where ciel's reading departs from
// v1.ParsePlatform, which split is built on: each row is accepted by
// go-containerregistry and read otherwise (or refused) by ciel.
func TestSplitDiffersFromGGCR(t *testing.T) {
	for _, tc := range []struct {
		in, why string
		ggcr    v1.Platform
		ours    string // Parse's reading; "" when refused
	}{
		{in: "arm64", why: "a bare word is an architecture for ciel, an OS for ggcr",
			ggcr: v1.Platform{OS: "arm64"}, ours: "linux/arm64"},
		{in: "linux/amd64:", why: "an empty os.version is refused, not dropped",
			ggcr: v1.Platform{OS: "linux", Architecture: "amd64"}},
		{in: "linux/amd64:1:2", why: "a second ':' is refused, not ignored",
			ggcr: v1.Platform{OS: "linux", Architecture: "amd64"}},
		{in: "linux/", why: "an empty architecture is refused",
			ggcr: v1.Platform{OS: "linux"}},
		{in: "linux/arm64/", why: "an empty variant is refused",
			ggcr: v1.Platform{OS: "linux", Architecture: "arm64"}},
		{in: "Linux/AMD64", why: "names are lowercased",
			ggcr: v1.Platform{OS: "Linux", Architecture: "AMD64"}, ours: "linux/amd64"},
	} {
		t.Run(tc.why, func(t *testing.T) {
			g, err := v1.ParsePlatform(tc.in)
			if err != nil {
				t.Fatalf("v1.ParsePlatform(%q): %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.ggcr, *g); diff != "" {
				t.Errorf("v1.ParsePlatform(%q) changed (-want +got):\n%s", tc.in, diff)
			}
			p, err := Parse(tc.in)
			if tc.ours == "" {
				if err == nil {
					t.Errorf("Parse(%q) = %s, want an error", tc.in, p)
				}
				return
			}
			if err != nil || p.String() != tc.ours {
				t.Errorf("Parse(%q) = %s, %v; want %s", tc.in, p, err, tc.ours)
			}
		})
	}
}

func TestParseExactList(t *testing.T) {
	got, err := ParseExactList(" linux/amd64, linux/arm64/v8 ,")
	if err != nil {
		t.Fatal(err)
	}
	want := []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := ParseExactList("linux/amd64,linux"); err == nil {
		t.Error("a bad element was accepted")
	}
}

func TestMatches(t *testing.T) {
	for _, tc := range []struct {
		have, want string
		match      bool
	}{
		{"linux/amd64", "linux/amd64", true},
		{"linux/amd64/v1", "linux/amd64", true},
		{"linux/amd64", "linux/amd64/v1", true},
		{"linux/amd64", "linux/amd64/v3", false},
		{"linux/amd64", "linux/arm64", false},
		{"linux/amd64", "windows/amd64", false},
		{"linux/arm64", "linux/arm64/v8", true},
		{"linux/arm64/v8", "linux/arm64", true},
		{"linux/arm64", "linux/arm64/v9", false},
		{"linux/arm64/v9", "linux/arm64/v8", false},
		{"linux/arm", "linux/arm/v7", true},
		{"linux/arm/v6", "linux/arm/v7", false},
		{"linux/arm/v6", "linux/arm", true},
		{"windows/amd64:10.0.17763.1879", "windows/amd64", true},
		{"windows/amd64:10.0.17763.1879", "windows/amd64:10.0.20348.1", false},
	} {
		t.Run(tc.have+" for "+tc.want, func(t *testing.T) {
			have, err := ParseExact(tc.have)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ParseExact(tc.want)
			if err != nil {
				t.Fatal(err)
			}
			if got := Matches(have, want); got != tc.match {
				t.Errorf("Matches(%s, %s) = %v, want %v", tc.have, tc.want, got, tc.match)
			}
		})
	}
	feat := v1.Platform{OS: "windows", Architecture: "amd64", OSFeatures: []string{"win32k"}}
	if !Matches(feat, v1.Platform{OS: "windows", Architecture: "amd64", OSFeatures: []string{"win32k"}}) ||
		Matches(v1.Platform{OS: "windows", Architecture: "amd64"}, feat) {
		t.Error("os.features must be a subset of the image's")
	}
}
