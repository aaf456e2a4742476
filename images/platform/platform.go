// Package platform parses, canonicalises and matches image platforms
// (os/arch[/variant][:os.version]) and plans per-architecture builds on
// Kubernetes. It is ciel's one platform parser, built on
// go-containerregistry's v1.Platform: v1.ParsePlatform splits the text,
// Platform.String spells it, Platform.Satisfies matches it.
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
// "linux/arm64/v8" are "linux/arm64", and "armhf" is "linux/arm/v7" (Parse).
// A platform declared against an existing image is read as written
// (ParseExact) and compared with Matches, which treats the default variants
// (arm64/v8, amd64/v1, arm/v7) as implied.
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
	osVersion    = regexp.MustCompile(`^[a-z0-9]([a-z0-9_.+-]{0,126}[a-z0-9])?$`)
	arm64Variant = regexp.MustCompile(`^v?(8\.[1-9]|9(\.[0-9])?)$`)
)

// split reads the syntax both spellings share, "os/arch[/variant][:os.version]"
// or one bare word, with go-containerregistry's v1.ParsePlatform, and
// checks what that parser leaves unchecked: every part is a lowercase name,
// nothing is empty, at most one ':'. Case is ignored and surrounding space
// trimmed. bare reports a single word, which v1.ParsePlatform reads as an
// OS and which ciel reads as an architecture (the callers decide).
func split(s string) (p v1.Platform, bare bool, err error) {
	spec := strings.ToLower(strings.TrimSpace(s))
	if spec == "" {
		return v1.Platform{}, false, fmt.Errorf("%w: empty", ErrInvalid)
	}
	if strings.Count(spec, ":") > 1 {
		// v1.ParsePlatform would silently drop what follows a second ':'.
		return v1.Platform{}, false, fmt.Errorf("%w %q: more than one ':'", ErrInvalid, s)
	}
	base, version, hasVersion := strings.Cut(spec, ":")
	if hasVersion && version == "" {
		// v1.ParsePlatform would read "linux/amd64:" as linux/amd64.
		return v1.Platform{}, false, fmt.Errorf("%w %q: empty os.version after ':'", ErrInvalid, s)
	}
	gp, err := v1.ParsePlatform(spec)
	if err != nil {
		return v1.Platform{}, false, fmt.Errorf("%w %q: want os/arch[/variant][:os.version] or arch", ErrInvalid, s)
	}
	p = *gp
	switch strings.Count(base, "/") {
	case 0:
		bare = true
		p.OS, p.Architecture = "", p.OS
	case 2:
		if p.Variant == "" {
			return v1.Platform{}, false, fmt.Errorf("%w %q: empty variant", ErrInvalid, s)
		}
	}
	names := []string{p.OS, p.Architecture}
	if bare {
		names = names[1:]
	}
	for _, c := range names {
		if !component.MatchString(c) {
			return v1.Platform{}, false, fmt.Errorf("%w %q: %q is not an os or architecture name", ErrInvalid, s, c)
		}
	}
	if p.Variant != "" && !component.MatchString(p.Variant) || strings.Contains(p.Variant, "-") {
		return v1.Platform{}, false, fmt.Errorf("%w %q: %q is not a variant name", ErrInvalid, s, p.Variant)
	}
	if hasVersion && !osVersion.MatchString(p.OSVersion) {
		return v1.Platform{}, false, fmt.Errorf("%w %q: %q is not an os.version", ErrInvalid, s, p.OSVersion)
	}
	return p, bare, nil
}

// Parse parses "os/arch[/variant]" or a bare "arch" (whose OS is
// DefaultOS) and returns the canonical platform, the one a build targets.
// Case is ignored and surrounding space trimmed. Architecture aliases are
// normalised: x86_64 and x86-64 are amd64 (variant v1 dropped), aarch64 is
// arm64 (variant v8 dropped), armhf is arm/v7, armel is arm/v6, arm without
// a variant is arm/v7, and i386..i686 are 386. An os.version is refused: it
// names a Windows build, which has no place in a build platform.
func Parse(s string) (v1.Platform, error) {
	p, bare, err := split(s)
	if err != nil {
		return v1.Platform{}, err
	}
	if p.OSVersion != "" {
		return v1.Platform{}, fmt.Errorf("%w %q: a build platform has no os.version", ErrInvalid, s)
	}
	if bare {
		if isKnownOS(p.Architecture) {
			return v1.Platform{}, fmt.Errorf("%w %q: an operating system without an architecture (want os/arch[/variant] or arch)", ErrInvalid, s)
		}
		p.OS = DefaultOS
	}
	p.OS = normaliseOS(p.OS)
	if err := normaliseArch(&p); err != nil {
		return v1.Platform{}, fmt.Errorf("%w %q: %w", ErrInvalid, s, err)
	}
	return p, nil
}

// ParseExact parses "os/arch[/variant][:os.version]" as written, without
// normalising aliases or variants: linux/arm64/v8 stays linux/arm64/v8. It
// is how a platform is declared to `ciel index` and `ciel release` (a source
// IMAGE=PLATFORM, --platforms, --require-platforms), where it is compared
// with an image's own platform by Matches. The os and the architecture are
// required: a bare word is refused. Case is ignored and surrounding space
// trimmed.
func ParseExact(s string) (v1.Platform, error) {
	p, bare, err := split(s)
	if err != nil {
		return v1.Platform{}, err
	}
	if bare {
		return v1.Platform{}, fmt.Errorf("%w %q: want os/arch[/variant][:os.version]", ErrInvalid, s)
	}
	return p, nil
}

// ParseExactList parses a comma-separated list of platforms with
// ParseExact; empty elements are skipped.
func ParseExactList(s string) ([]v1.Platform, error) {
	var out []v1.Platform
	for _, f := range fields(s) {
		p, err := ParseExact(f)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// fields splits comma-separated specs, dropping empty elements.
func fields(specs ...string) []string {
	var out []string
	for _, spec := range specs {
		for _, f := range strings.Split(spec, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
	}
	return out
}

// Complete returns p with the variant a runtime assumes when none is given
// (arm64 is arm64/v8, amd64 is amd64/v1, arm is arm/v7, as containerd
// normalises them), so that two spellings of one platform are Equal.
func Complete(p v1.Platform) v1.Platform {
	if p.Variant == "" {
		switch p.Architecture {
		case "arm64":
			p.Variant = "v8"
		case "amd64":
			p.Variant = "v1"
		case "arm":
			p.Variant = "v7"
		}
	}
	return p
}

// Matches reports whether an image of platform have fits the wanted
// platform: have.Satisfies(want), where a variant want names is compared
// after Complete (linux/arm64 fits linux/arm64/v8, linux/arm/v6 does not
// fit linux/arm) and a variant want leaves out matches any.
func Matches(have, want v1.Platform) bool {
	if want.Variant != "" {
		have, want = Complete(have), Complete(want)
	}
	return have.Satisfies(want)
}

// Slug returns the platform as one tag- and repository-safe word:
// "linux-amd64", "linux-arm-v7".
func Slug(p v1.Platform) string {
	return strings.ReplaceAll(strings.ReplaceAll(p.String(), "/", "-"), "_", "-")
}

// NodeArch is the value of the kubernetes.io/arch label of the nodes that
// build p natively (Go's GOARCH, which is what the kubelet reports).
func NodeArch(p v1.Platform) string { return p.Architecture }

// BuildArgs returns the Dockerfile build arguments BuildKit predefines for
// the target platform, as KEY=VALUE: TARGETPLATFORM, TARGETOS, TARGETARCH
// and TARGETVARIANT (empty when p has no variant).
func BuildArgs(p v1.Platform) []string {
	return []string{
		"TARGETPLATFORM=" + p.String(),
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
		out[i] = p.String()
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
	for _, s := range fields(specs...) {
		p, err := Parse(s)
		if err != nil {
			return Plan{}, err
		}
		if p.OS != DefaultOS {
			return Plan{}, fmt.Errorf("%w: %s: Kaniko builds Linux images only", ErrUnsupportedOS, p.String())
		}
		if prev, ok := byArch[p.Architecture]; ok {
			if prev.Equals(p) {
				continue
			}
			return Plan{}, fmt.Errorf("%w: %s and %s both need nodes labelled kubernetes.io/arch=%s, and nodes do not advertise their variant: build them in separate runs",
				ErrSameNodeArch, prev.String(), p.String(), NodeArch(p))
		}
		byArch[p.Architecture] = p
		pl.Platforms = append(pl.Platforms, p)
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
		return v1.Platform{}, fmt.Errorf("%w: %s: Kaniko builds Linux images only", ErrUnsupportedOS, p.String())
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

// CheckRequired refuses a platform that cannot be required of an index: one
// without an os or an architecture, which would match images of any. It is
// the check of every WithRequirePlatforms option.
func CheckRequired(ps ...v1.Platform) error {
	for _, p := range ps {
		if p.OS == "" || p.Architecture == "" {
			return fmt.Errorf("required platform %q needs an os and an architecture", p.String())
		}
	}
	return nil
}
