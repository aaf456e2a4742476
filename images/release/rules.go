// Package release promotes a tested multi-arch index to release tags.
//
// Release managers push a Git tag such as v1.4.2; the commit's index was
// already built and tested on its branch push. Rebuilding at release time
// would take time and give different bits from what was tested, so the
// tested digest is promoted instead: a manifest PUT of the existing index
// under new tags, no blob copied, digest unchanged.
//
// Versions are strict SemVer 2.0 with an optional leading "v" (package
// github.com/ciel-ci/ciel/internal/semver): "v1.2" and "1.4" are refused.
//
// Which tags move is decided by PlanTags, a pure function of the new
// version, the tags already in the repository and Rules:
//
//   - the exact version tag (v1.4.2, spelled as the Git tag was) always;
//   - with Rules.Floating, v1.4, v1 and latest, each only if the new version
//     is the highest release in its range among the existing tags: tagging
//     v1.3.9 after v1.4.2 moves v1.3 but neither v1 nor latest (where
//     docker/metadata-action moves latest on any backport);
//   - a prerelease gets only its exact tag, unless Rules.FloatPrereleases;
//   - for 0.x versions v0 is not floated unless Rules.FloatMajorZero;
//   - latest follows Rules.Latest: auto (the rule above), always, never.
//
// Docker tags cannot hold "+", so build metadata is written as "_" (the
// convention Helm uses for OCI charts), or dropped with BuildMetadataDrop.
package release

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/ciel-ci/ciel/internal/semver"
)

// ErrRules is wrapped by errors about invalid Rules.
var ErrRules = errors.New("invalid release rules")

// LatestMode says when the "latest" tag moves.
type LatestMode string

// Latest modes.
const (
	// LatestAuto moves latest, with Rules.Floating, when the new version is
	// the highest release in the repository; never for a prerelease.
	LatestAuto LatestMode = "auto"
	// LatestAlways moves latest on every promotion, even without Floating.
	LatestAlways LatestMode = "always"
	// LatestNever never moves latest.
	LatestNever LatestMode = "never"
)

// Prefix says how tags are spelled.
type Prefix string

// Prefixes.
const (
	// PrefixKeep spells tags as the version was given: "v1.4.2" gives
	// v1.4.2, v1.4, v1; "1.4.2" gives 1.4.2, 1.4, 1.
	PrefixKeep Prefix = "keep"
	// PrefixV always writes a leading "v".
	PrefixV Prefix = "v"
	// PrefixNone never writes a leading "v".
	PrefixNone Prefix = "none"
)

// BuildMetadata says how "+build" is written into a tag.
type BuildMetadata string

// Build metadata modes.
const (
	// BuildMetadataUnderscore writes 1.0.0+build.5 as 1.0.0_build.5.
	BuildMetadataUnderscore BuildMetadata = "underscore"
	// BuildMetadataDrop writes 1.0.0+build.5 as 1.0.0.
	BuildMetadataDrop BuildMetadata = "drop"
)

// Rules configure which tags a promotion writes. The zero value writes only
// the exact version tag, spelled as given, build metadata with "_".
type Rules struct {
	// Floating also moves vMAJOR.MINOR, vMAJOR and (by Latest) latest.
	Floating bool
	// Latest says when latest moves; "" means LatestAuto.
	Latest LatestMode
	// FloatPrereleases lets a prerelease move vMAJOR.MINOR and vMAJOR when
	// it is the highest version (releases and prereleases) in their range;
	// latest still needs LatestAlways.
	FloatPrereleases bool
	// FloatMajorZero floats v0 for 0.x versions.
	FloatMajorZero bool
	// Prefix spells the tags; "" means PrefixKeep.
	Prefix Prefix
	// BuildMetadata says how "+build" is written; "" means
	// BuildMetadataUnderscore.
	BuildMetadata BuildMetadata
}

func (r Rules) withDefaults() (Rules, error) {
	if r.Latest == "" {
		r.Latest = LatestAuto
	}
	if r.Prefix == "" {
		r.Prefix = PrefixKeep
	}
	if r.BuildMetadata == "" {
		r.BuildMetadata = BuildMetadataUnderscore
	}
	switch r.Latest {
	case LatestAuto, LatestAlways, LatestNever:
	default:
		return r, fmt.Errorf("%w: latest mode %q (want auto, always or never)", ErrRules, r.Latest)
	}
	switch r.Prefix {
	case PrefixKeep, PrefixV, PrefixNone:
	default:
		return r, fmt.Errorf("%w: tag prefix %q (want keep, v or none)", ErrRules, r.Prefix)
	}
	switch r.BuildMetadata {
	case BuildMetadataUnderscore, BuildMetadataDrop:
	default:
		return r, fmt.Errorf("%w: build metadata mode %q (want underscore or drop)", ErrRules, r.BuildMetadata)
	}
	return r, nil
}

// Kind is the role of a tag in a release.
type Kind string

// Tag kinds.
const (
	KindExact  Kind = "exact"
	KindMinor  Kind = "minor"
	KindMajor  Kind = "major"
	KindLatest Kind = "latest"
)

// TagPlan is the decision for one tag.
type TagPlan struct {
	Tag  string `json:"tag"`
	Kind Kind   `json:"kind"`
	// Move is true when the tag is to point at the promoted index.
	Move bool `json:"move"`
	// Reason explains the decision in a sentence.
	Reason string `json:"reason"`
}

// Plan is the outcome of PlanTags.
type Plan struct {
	Version semver.Version `json:"-"`
	// Tags holds the exact tag first, then minor, major, latest (those
	// considered at all).
	Tags []TagPlan `json:"tags"`
	// SameVersion lists existing tags that spell the same version
	// differently (1.4.2 next to v1.4.2): a release must not give them
	// another digest either.
	SameVersion []string `json:"sameVersion,omitempty"`
}

// dockerTag is the grammar of a tag in the distribution spec.
var dockerTag = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// prefix returns the spelling prefix of tags for v.
func (r Rules) prefix(v semver.Version) string {
	switch r.Prefix {
	case PrefixV:
		return "v"
	case PrefixNone:
		return ""
	}
	if strings.HasPrefix(v.Original, "v") {
		return "v"
	}
	return ""
}

// ExactTag returns the tag the version itself is written under.
func ExactTag(v semver.Version, r Rules) (string, error) {
	r, err := r.withDefaults()
	if err != nil {
		return "", err
	}
	return exactTag(v, r)
}

func exactTag(v semver.Version, r Rules) (string, error) {
	var b strings.Builder
	b.WriteString(r.prefix(v))
	fmt.Fprintf(&b, "%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.Prerelease != "" {
		b.WriteString("-" + v.Prerelease)
	}
	if v.Build != "" && r.BuildMetadata == BuildMetadataUnderscore {
		b.WriteString("_" + v.Build)
	}
	tag := b.String()
	if !dockerTag.MatchString(tag) {
		return "", fmt.Errorf("version %s gives the tag %q, which is not a valid image tag (at most 128 characters of [A-Za-z0-9_.-])", v.Original, tag)
	}
	return tag, nil
}

// ParseTag reads an image tag as a version: an optional "v", and "_" in
// place of "+" before build metadata. ok is false for tags that are not
// strict SemVer (latest, v1.4, a commit SHA).
func ParseTag(tag string) (v semver.Version, ok bool) {
	s := tag
	if i := strings.IndexByte(s, '_'); i >= 0 {
		s = s[:i] + "+" + s[i+1:]
	}
	v, err := semver.Parse(s)
	if err != nil {
		return semver.Version{}, false
	}
	return v, true
}

type tagged struct {
	tag string
	v   semver.Version
}

// PlanTags decides which tags a promotion of version v writes, given the
// tags already in the repository. It does no I/O.
func PlanTags(v semver.Version, existing []string, r Rules) (Plan, error) {
	r, err := r.withDefaults()
	if err != nil {
		return Plan{}, err
	}
	exact, err := exactTag(v, r)
	if err != nil {
		return Plan{}, err
	}
	plan := Plan{Version: v}
	plan.Tags = append(plan.Tags, TagPlan{Tag: exact, Kind: KindExact, Move: true, Reason: "the release itself"})

	var versions []tagged
	for _, t := range existing {
		pv, ok := ParseTag(t)
		if !ok {
			continue
		}
		versions = append(versions, tagged{tag: t, v: pv})
		if t != exact && pv.Compare(v) == 0 && (pv.Build == v.Build || r.BuildMetadata == BuildMetadataDrop) {
			plan.SameVersion = append(plan.SameVersion, t)
		}
	}

	p := r.prefix(v)
	pre := v.IsPrerelease()
	// The versions the new one is compared with: releases only, or with
	// FloatPrereleases and a prerelease, every version.
	pool := func(in func(semver.Version) bool) *tagged {
		var best *tagged
		for i := range versions {
			c := &versions[i]
			if (c.v.IsPrerelease() && !pre) || !in(c.v) {
				continue
			}
			if best == nil || c.v.Compare(best.v) > 0 {
				best = c
			}
		}
		return best
	}
	what := "release"
	if pre {
		what = "version"
	}
	decide := func(tag string, kind Kind, rangeName string, in func(semver.Version) bool) TagPlan {
		tp := TagPlan{Tag: tag, Kind: kind}
		best := pool(in)
		switch {
		case best == nil:
			tp.Move, tp.Reason = true, fmt.Sprintf("first %s in %s", what, rangeName)
		case v.Compare(best.v) > 0:
			tp.Move, tp.Reason = true, fmt.Sprintf("highest %s in %s (above %s)", what, rangeName, best.tag)
		case v.Compare(best.v) == 0:
			tp.Move, tp.Reason = true, fmt.Sprintf("highest %s in %s (same as %s)", what, rangeName, best.tag)
		default:
			tp.Reason = fmt.Sprintf("%s is higher", best.tag)
		}
		return tp
	}

	if r.Floating {
		minor := fmt.Sprintf("%s%d.%d", p, v.Major, v.Minor)
		major := fmt.Sprintf("%s%d", p, v.Major)
		rangeMinor := fmt.Sprintf("%d.%d.x", v.Major, v.Minor)
		rangeMajor := fmt.Sprintf("%d.x", v.Major)
		switch {
		case pre && !r.FloatPrereleases:
			plan.Tags = append(plan.Tags,
				TagPlan{Tag: minor, Kind: KindMinor, Reason: "a prerelease gets only its exact tag"},
				TagPlan{Tag: major, Kind: KindMajor, Reason: "a prerelease gets only its exact tag"})
		default:
			plan.Tags = append(plan.Tags, decide(minor, KindMinor, rangeMinor, func(o semver.Version) bool {
				return o.Major == v.Major && o.Minor == v.Minor
			}))
			if v.Major == 0 && !r.FloatMajorZero {
				plan.Tags = append(plan.Tags, TagPlan{Tag: major, Kind: KindMajor, Reason: "0.x: " + major + " is not floated unless asked"})
			} else {
				plan.Tags = append(plan.Tags, decide(major, KindMajor, rangeMajor, func(o semver.Version) bool {
					return o.Major == v.Major
				}))
			}
		}
	}

	switch {
	case r.Latest == LatestAlways:
		plan.Tags = append(plan.Tags, TagPlan{Tag: "latest", Kind: KindLatest, Move: true, Reason: "latest always moves"})
	case !r.Floating:
	case r.Latest == LatestNever:
		plan.Tags = append(plan.Tags, TagPlan{Tag: "latest", Kind: KindLatest, Reason: "latest never moves"})
	case pre:
		plan.Tags = append(plan.Tags, TagPlan{Tag: "latest", Kind: KindLatest, Reason: "a prerelease never moves latest on its own"})
	default:
		plan.Tags = append(plan.Tags, decide("latest", KindLatest, "the repository", func(semver.Version) bool { return true }))
	}
	return plan, nil
}

// String formats a plan as one line per tag, for logs and tests.
func (p Plan) String() string {
	var b strings.Builder
	for _, t := range p.Tags {
		b.WriteString(t.Tag + " " + strconv.FormatBool(t.Move) + ": " + t.Reason + "\n")
	}
	return b.String()
}
