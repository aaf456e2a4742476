// Package semver parses release versions strictly by Semantic Versioning
// 2.0.0 (https://semver.org), with one concession to how Git tags are
// spelled: an optional leading "v".
//
// It is the single place where ciel decides what a version is: the GitLab
// push facts (extensions.push.semver) and `ciel release promote` both use it,
// so a tag the interceptor calls a release is a tag the release tool accepts.
//
// Parsing is delegated to github.com/Masterminds/semver/v3's
// StrictNewVersion, which implements the SemVer 2.0 grammar (three numeric
// components without leading zeros, dot-separated pre-release and build
// identifiers of [0-9A-Za-z-]). golang.org/x/mod/semver was considered and
// rejected: it accepts the shorthands "v1" and "v1.2" as valid versions,
// which is exactly what a release tag must not be.
package semver

import (
	"errors"
	"fmt"
	"strings"

	msv "github.com/Masterminds/semver/v3"
)

// ErrInvalid is wrapped by every parse error.
var ErrInvalid = errors.New("not a semantic version")

// Version is a parsed SemVer 2.0 version.
type Version struct {
	// Original is the text as given, including a leading "v" if any.
	Original   string
	Major      uint64
	Minor      uint64
	Patch      uint64
	Prerelease string
	Build      string

	v *msv.Version
}

// Parse parses s as a strict SemVer 2.0 version with an optional leading
// "v". "v1.2" and "1.4" are errors: SemVer requires MAJOR.MINOR.PATCH.
func Parse(s string) (Version, error) {
	core := strings.TrimPrefix(s, "v")
	if s == "" {
		return Version{}, fmt.Errorf("%w: empty string", ErrInvalid)
	}
	if core == "" {
		return Version{}, fmt.Errorf("%w: %q has nothing after the \"v\"", ErrInvalid, s)
	}
	v, err := msv.StrictNewVersion(core)
	if err != nil {
		return Version{}, fmt.Errorf("%w: %q: %s", ErrInvalid, s, explain(core, err))
	}
	return Version{
		Original:   s,
		Major:      v.Major(),
		Minor:      v.Minor(),
		Patch:      v.Patch(),
		Prerelease: v.Prerelease(),
		Build:      v.Metadata(),
		v:          v,
	}, nil
}

// explain turns the library's terse errors into a sentence a release
// manager can act on.
func explain(core string, err error) string {
	numbers := core
	if i := strings.IndexAny(numbers, "-+"); i >= 0 {
		numbers = numbers[:i]
	}
	parts := strings.Split(numbers, ".")
	numeric := true
	for _, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			numeric = false
		}
	}
	switch {
	case !numeric:
		return "MAJOR, MINOR and PATCH must be non-negative integers (e.g. 1.4.2)"
	case len(parts) < 3:
		return fmt.Sprintf("has %d numeric component(s); SemVer 2.0 requires exactly three, MAJOR.MINOR.PATCH (e.g. %s)",
			len(parts), suggest(parts))
	case len(parts) > 3:
		return "has more than three numeric components; SemVer 2.0 requires exactly MAJOR.MINOR.PATCH"
	case errors.Is(err, msv.ErrSegmentStartsZero):
		return "a numeric component or identifier has a leading zero, which SemVer 2.0 forbids"
	case errors.Is(err, msv.ErrInvalidPrerelease):
		return "the pre-release part must be dot-separated, non-empty identifiers of [0-9A-Za-z-]"
	case errors.Is(err, msv.ErrInvalidMetadata):
		return "the build metadata must be dot-separated, non-empty identifiers of [0-9A-Za-z-]"
	case errors.Is(err, msv.ErrInvalidCharacters):
		return "MAJOR, MINOR and PATCH must be non-negative integers"
	default:
		return err.Error()
	}
}

func suggest(parts []string) string {
	out := make([]string, 0, 3)
	for _, p := range parts {
		if p == "" {
			p = "0"
		}
		out = append(out, p)
	}
	for len(out) < 3 {
		out = append(out, "0")
	}
	return strings.Join(out, ".")
}

// IsPrerelease reports whether v has a pre-release part (1.0.0-rc.1).
func (v Version) IsPrerelease() bool { return v.Prerelease != "" }

// Compare returns -1, 0 or +1 by SemVer 2.0 precedence. Build metadata is
// ignored, as the specification requires.
func (v Version) Compare(o Version) int {
	return v.lib().Compare(o.lib())
}

// lib returns the library value, rebuilding it for a Version assembled by
// hand (the zero Version is 0.0.0).
func (v Version) lib() *msv.Version {
	if v.v != nil {
		return v.v
	}
	return msv.New(v.Major, v.Minor, v.Patch, v.Prerelease, v.Build)
}

// String returns the canonical form without a leading "v".
func (v Version) String() string {
	return v.lib().String()
}
