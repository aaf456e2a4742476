package platform

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
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
			if got := Format(p); got != tc.want {
				t.Errorf("Parse(%q) = %s, want %s", tc.in, got, tc.want)
			}
			// Canonical spellings are fixed points.
			again, err := Parse(Format(p))
			if err != nil || !again.Equals(p) {
				t.Errorf("Parse(Format(%s)) = %v, %v", Format(p), again, err)
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
			if got := Format(p); got != tc.want {
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
		canon := Format(p)
		again, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(%q) accepted as %q, which does not parse: %v", s, canon, err)
		}
		if Format(again) != canon {
			t.Fatalf("not a fixed point: %q -> %q -> %q", s, canon, Format(again))
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
