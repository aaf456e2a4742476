// Package platform canonicalises image platforms (os/arch[/variant]) and
// plans per-architecture builds on Kubernetes.
//
// Kaniko cannot cross-build an image whose Dockerfile runs commands, so a
// multi-arch build runs one Kaniko pod per platform, each on a node of that
// platform's architecture. Nodes advertise their architecture in the
// well-known label kubernetes.io/arch (Go's GOARCH: amd64, arm64, arm, ...)
// and their OS in kubernetes.io/os; they do not advertise an ARM variant.
// Plan turns the platforms a user asks for into the node architectures a
// Tekton matrix fans out over, and rejects what cannot be scheduled that
// way; Resolve maps one matrix value back to its full platform.
//
// Spellings are normalised the way containerd and Docker do, so that
// "x86_64", "amd64" and "linux/amd64" are one platform, "aarch64" and
// "linux/arm64/v8" are "linux/arm64", and "armhf" is "linux/arm/v7".
package platform

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DefaultOS is the OS of a platform given as a bare architecture.
const DefaultOS = "linux"

// Errors a caller may branch on; each is wrapped with the details.
var (
	// ErrInvalid: the text is not a platform.
	ErrInvalid = errors.New("invalid platform")
	// ErrUnsupportedOS: Kaniko builds Linux images only.
	ErrUnsupportedOS = errors.New("unsupported operating system")
	// ErrSameNodeArch: two platforms would need the same kind of node.
	ErrSameNodeArch = errors.New("platforms need the same node architecture")
	// ErrNotPlanned: a platform is not among the planned ones.
	ErrNotPlanned = errors.New("platform not planned")
)

var (
	// component is a platform part that is also a valid label value.
	component    = regexp.MustCompile(`^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$`)
	arm64Variant = regexp.MustCompile(`^v?(8\.[1-9]|9(\.[0-9])?)$`)
)

// Parse parses "os/arch[/variant]" or a bare "arch" (whose OS is
// DefaultOS) and returns the canonical platform. Case is ignored and
// surrounding space trimmed. Architecture aliases are normalised: x86_64 and
// x86-64 are amd64 (variant v1 dropped), aarch64 is arm64 (variant v8
// dropped), armhf is arm/v7, armel is arm/v6, arm without a variant is
// arm/v7, and i386..i686 are 386.
func Parse(s string) (v1.Platform, error) {
	spec := strings.ToLower(strings.TrimSpace(s))
	if spec == "" {
		return v1.Platform{}, fmt.Errorf("%w: empty", ErrInvalid)
	}
	parts := strings.Split(spec, "/")
	var p v1.Platform
	switch len(parts) {
	case 1:
		p = v1.Platform{OS: DefaultOS, Architecture: parts[0]}
		if isKnownOS(parts[0]) {
			return v1.Platform{}, fmt.Errorf("%w %q: an operating system without an architecture (want os/arch[/variant] or arch)", ErrInvalid, s)
		}
	case 2:
		p = v1.Platform{OS: parts[0], Architecture: parts[1]}
	case 3:
		p = v1.Platform{OS: parts[0], Architecture: parts[1], Variant: parts[2]}
		if p.Variant == "" {
			return v1.Platform{}, fmt.Errorf("%w %q: empty variant", ErrInvalid, s)
		}
	default:
		return v1.Platform{}, fmt.Errorf("%w %q: want os/arch[/variant] or arch", ErrInvalid, s)
	}
	for _, c := range []string{p.OS, p.Architecture} {
		if !component.MatchString(c) {
			return v1.Platform{}, fmt.Errorf("%w %q: %q is not an os or architecture name", ErrInvalid, s, c)
		}
	}
	if p.Variant != "" && !component.MatchString(p.Variant) || strings.Contains(p.Variant, "-") {
		return v1.Platform{}, fmt.Errorf("%w %q: %q is not a variant name", ErrInvalid, s, p.Variant)
	}
	p.OS = normaliseOS(p.OS)
	if err := normaliseArch(&p); err != nil {
		return v1.Platform{}, fmt.Errorf("%w %q: %w", ErrInvalid, s, err)
	}
	return p, nil
}

// Format returns the canonical spelling "os/arch[/variant]".
func Format(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Slug returns the platform as one tag- and repository-safe word:
// "linux-amd64", "linux-arm-v7".
func Slug(p v1.Platform) string {
	return strings.ReplaceAll(strings.ReplaceAll(Format(p), "/", "-"), "_", "-")
}

// NodeArch is the value of the kubernetes.io/arch label of the nodes that
// build p natively (Go's GOARCH, which is what the kubelet reports).
func NodeArch(p v1.Platform) string { return p.Architecture }

// BuildArgs returns the Dockerfile build arguments BuildKit predefines for
// the target platform, as KEY=VALUE: TARGETPLATFORM, TARGETOS, TARGETARCH
// and TARGETVARIANT (empty when p has no variant).
func BuildArgs(p v1.Platform) []string {
	return []string{
		"TARGETPLATFORM=" + Format(p),
		"TARGETOS=" + p.OS,
		"TARGETARCH=" + p.Architecture,
		"TARGETVARIANT=" + p.Variant,
	}
}

// BuildArgNames are the keys BuildArgs sets.
var BuildArgNames = []string{"TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT"}

// Plan is the schedulable form of a list of platforms.
type Plan struct {
	// Platforms are the canonical platforms, in the order first given,
	// without duplicates.
	Platforms []v1.Platform
}

// NodeArchs returns, per platform and in the same order, the
// kubernetes.io/arch value of the nodes that build it.
func (pl Plan) NodeArchs() []string {
	out := make([]string, len(pl.Platforms))
	for i, p := range pl.Platforms {
		out[i] = NodeArch(p)
	}
	return out
}

// Strings returns the canonical spellings of the platforms.
func (pl Plan) Strings() []string {
	out := make([]string, len(pl.Platforms))
	for i, p := range pl.Platforms {
		out[i] = Format(p)
	}
	return out
}

// NewPlan canonicalises specs (each as Parse accepts; an element may also
// hold several platforms separated by commas) and checks that each can be
// built on its own kind of node: every platform must be linux (Kaniko
// builds Linux images only), and no two different platforms may need the
// same node architecture (linux/arm/v6 and linux/arm/v7 would both land on
// nodes labelled kubernetes.io/arch=arm, which do not say which variant
// they run). Spellings of the same platform are merged.
func NewPlan(specs ...string) (Plan, error) {
	var pl Plan
	byArch := map[string]v1.Platform{}
	for _, spec := range specs {
		for _, s := range strings.Split(spec, ",") {
			if strings.TrimSpace(s) == "" {
				continue
			}
			p, err := Parse(s)
			if err != nil {
				return Plan{}, err
			}
			if p.OS != DefaultOS {
				return Plan{}, fmt.Errorf("%w: %s: Kaniko builds Linux images only", ErrUnsupportedOS, Format(p))
			}
			if prev, ok := byArch[p.Architecture]; ok {
				if prev.Equals(p) {
					continue
				}
				return Plan{}, fmt.Errorf("%w: %s and %s both need nodes labelled kubernetes.io/arch=%s, and nodes do not advertise their variant: build them in separate runs",
					ErrSameNodeArch, Format(prev), Format(p), NodeArch(p))
			}
			byArch[p.Architecture] = p
			pl.Platforms = append(pl.Platforms, p)
		}
	}
	if len(pl.Platforms) == 0 {
		return Plan{}, fmt.Errorf("%w: no platforms given", ErrInvalid)
	}
	return pl, nil
}

// Resolve returns the full platform a build for spec produces. spec is a
// platform as Parse accepts it, typically one value of a matrix over
// Plan.NodeArchs. When planned is not empty (the canonical platforms of the
// whole build, as Plan.Strings returns them), a bare architecture selects
// the planned platform of that architecture (so "arm" becomes
// "linux/arm/v6" when that is what was planned), and a platform that is not
// planned is an error. The result is always a linux platform.
func Resolve(spec string, planned []string) (v1.Platform, error) {
	p, err := Parse(spec)
	if err != nil {
		return v1.Platform{}, err
	}
	if p.OS != DefaultOS {
		return v1.Platform{}, fmt.Errorf("%w: %s: Kaniko builds Linux images only", ErrUnsupportedOS, Format(p))
	}
	if len(planned) == 0 {
		return p, nil
	}
	pl, err := NewPlan(planned...)
	if err != nil {
		return v1.Platform{}, fmt.Errorf("planned platforms: %w", err)
	}
	bare := !strings.Contains(spec, "/")
	for _, q := range pl.Platforms {
		if bare && q.Architecture == p.Architecture && q.OS == p.OS {
			return q, nil
		}
		if q.Equals(p) {
			return q, nil
		}
	}
	return v1.Platform{}, fmt.Errorf("%w: %s is not one of %s", ErrNotPlanned, strings.TrimSpace(spec), strings.Join(pl.Strings(), ", "))
}

var knownOS = []string{"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos", "aix", "android", "ios", "js", "wasip1", "plan9", "dragonfly"}

func isKnownOS(s string) bool { return slices.Contains(knownOS, normaliseOS(s)) }

func normaliseOS(os string) string {
	if os == "macos" {
		return "darwin"
	}
	return os
}

// normaliseArch applies containerd's architecture and variant aliases.
func normaliseArch(p *v1.Platform) error {
	switch p.Architecture {
	case "i386", "i486", "i586", "i686", "x86", "386":
		p.Architecture = "386"
		if p.Variant != "" {
			return fmt.Errorf("386 has no variant %q", p.Variant)
		}
	case "x86_64", "x86-64", "amd64":
		p.Architecture = "amd64"
		switch p.Variant {
		case "", "v1", "1":
			p.Variant = ""
		case "v2", "v3", "v4", "2", "3", "4":
			p.Variant = "v" + strings.TrimPrefix(p.Variant, "v")
		default:
			return fmt.Errorf("amd64 has no variant %q (want v1..v4)", p.Variant)
		}
	case "aarch64", "arm64":
		p.Architecture = "arm64"
		switch p.Variant {
		case "", "8", "v8", "v8.0":
			p.Variant = ""
		default:
			if !arm64Variant.MatchString(p.Variant) {
				return fmt.Errorf("arm64 has no variant %q (want v8, v8.1.., v9..)", p.Variant)
			}
			p.Variant = "v" + strings.TrimPrefix(p.Variant, "v")
		}
	case "armhf":
		p.Architecture, p.Variant = "arm", defaultVariant(p.Variant, "v7")
	case "armel":
		p.Architecture, p.Variant = "arm", defaultVariant(p.Variant, "v6")
	case "arm":
		switch p.Variant {
		case "":
			p.Variant = "v7"
		case "5", "6", "7", "8", "v5", "v6", "v7", "v8":
			p.Variant = "v" + strings.TrimPrefix(p.Variant, "v")
		default:
			return fmt.Errorf("arm has no variant %q (want v5..v8)", p.Variant)
		}
	}
	return nil
}

func defaultVariant(v, def string) string {
	if v == "" {
		return def
	}
	return "v" + strings.TrimPrefix(v, "v")
}
