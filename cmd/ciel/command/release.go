package command

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/ciel-ci/ciel/images/release"
	"github.com/ciel-ci/ciel/internal/semver"
	"github.com/spf13/cobra"
)

func newReleaseCmd(g *globals) *cobra.Command {
	return newGroupCmd("release", "Promote a tested multi-arch index to release tags", newPromoteCmd(g))
}

type promoteFlags struct {
	from             string
	version          string
	repo             string
	floating         bool
	latest           string
	floatPrereleases bool
	floatV0          bool
	prefix           string
	buildMetadata    string
	require          string
	revision         string
	force            bool
	dryRun           bool
	output           string
	resultsDir       string
}

// Files written into --results-dir.
const (
	resultDigest  = "digest"
	resultURL     = "url"
	resultTags    = "tags"
	resultChanged = "changed-tags"
)

func newPromoteCmd(g *globals) *cobra.Command {
	f := &promoteFlags{}
	cmd := &cobra.Command{
		Use:   "promote --from REPO@sha256:... --version vX.Y.Z [--revision SHA] [--repo REPO] [--floating] [--latest auto|always|never] [--dry-run]",
		Short: "Tag the tested index with a release version (strict SemVer); floating tags only move forward",
		Long: `Promote the multi-arch index built (and tested) for a commit to release tags,
without rebuilding: a manifest PUT of the same index under new tags, so no blob
is copied and the digest does not change (each tag is read back to verify).

--version is strict SemVer 2.0 with an optional leading v (1.4.2, v1.4.2,
v2.0.0-rc.1+build.5); v1.2 or 1.4 are refused with the reason. It defaults to
$CI_COMMIT_TAG, the Git tag of a GitLab tag pipeline.

Tags written: the exact version, spelled as given (--tag-prefix keep|v|none;
"+" of build metadata becomes "_", or --build-metadata drop). With --floating
also vMAJOR.MINOR, vMAJOR and latest, each only if the new version is the
highest release in its range among the tags already in the repository:
tagging v1.3.9 after v1.4.2 moves v1.3 but neither v1 nor latest. A
prerelease gets only its exact tag (--float-prereleases to let it move
vMAJOR.MINOR and vMAJOR). For 0.x, v0 is not floated unless --float-v0.
--latest auto (the rule above) | always | never.

Refused (exit 1, nothing written): a source that is a single image rather
than an index; an index lacking one of --require-platforms; with --revision
(the tagged commit's full SHA), an index whose org.opencontainers.image.revision
annotation is another commit or absent; an exact version
tag (or the same version spelled differently) that already points at another
digest, unless --force: releases are immutable. Re-running the same release
changes nothing.

Give --from by digest (REPO@sha256:..., e.g. the IMAGE_URL result of
ciel tekton find-index): a tag can be rewritten between the moment it was
checked and the promotion; a digest cannot.

--repo defaults to the repository of --from; another repository of the same
registry gets the index and its children by blob mount first.

Output: a table of tag, old digest, new digest (or "unchanged", or "kept" with
the reason); -o json for the full report. --results-dir DIR writes Tekton
result files (no trailing newline): digest (sha256:...), url (REPO:EXACT_TAG),
tags (comma-separated tags pointing at the digest afterwards) and
changed-tags (comma-separated tags created or moved; in a dry run, those
that would be).`,
		Example: `  ciel release promote --from registry.example.com/team/app@sha256:... --version v1.4.2 \
    --revision 1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b \
    --floating --require-platforms linux/amd64,linux/arm64 --results-dir /tekton/results

  ciel release promote --from registry.example.com/team/app@sha256:... --version v1.3.9 --floating --dry-run`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("%s takes no arguments (use --from and --version), got %q", cmd.CommandPath(), args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return runPromote(cmd, g, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.from, "from", "", "the tested index: REPO@sha256:... or REPO:TAG (required)")
	fl.StringVar(&f.version, "version", g.getenv("CI_COMMIT_TAG"), "release version, strict SemVer with optional v (default $CI_COMMIT_TAG)")
	fl.StringVar(&f.repo, "repo", "", "repository to tag (default: the repository of --from)")
	fl.BoolVar(&f.floating, "floating", false, "also move vMAJOR.MINOR, vMAJOR and latest when the version is the highest release in their range")
	fl.StringVar(&f.latest, "latest", string(release.LatestAuto), "when latest moves: auto (with --floating, highest release), always, never")
	fl.BoolVar(&f.floatPrereleases, "float-prereleases", false, "let a prerelease move vMAJOR.MINOR and vMAJOR when it is the highest version in their range")
	fl.BoolVar(&f.floatV0, "float-v0", false, "float v0 for 0.x versions")
	fl.StringVar(&f.prefix, "tag-prefix", string(release.PrefixKeep), `spelling of tags: keep (as the version was given), v, none`)
	fl.StringVar(&f.buildMetadata, "build-metadata", string(release.BuildMetadataUnderscore), `build metadata in the exact tag: underscore (+ becomes _) or drop`)
	fl.StringVar(&f.require, "require-platforms", "", "comma-separated platforms the index must contain, e.g. linux/amd64,linux/arm64")
	fl.StringVar(&f.revision, "revision", "", "full SHA of the released commit: refuse an index whose org.opencontainers.image.revision is not this commit (empty: no check)")
	fl.BoolVar(&f.force, "force", false, "let the exact version tag move to another digest (releases are immutable otherwise)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "read and plan, print what would change, write nothing to the registry")
	fl.StringVarP(&f.output, "output", "o", "text", "output format: text or json")
	fl.StringVar(&f.resultsDir, "results-dir", "", "write Tekton result files digest, url, tags and changed-tags into this directory")
	return cmd
}

func runPromote(cmd *cobra.Command, g *globals, f *promoteFlags) error {
	if err := checkOutput(f.output); err != nil {
		return err
	}
	if f.from == "" {
		return usagef("--from REPO@sha256:... or REPO:TAG is required")
	}
	if f.version == "" {
		return usagef("--version is required (or $CI_COMMIT_TAG)")
	}
	version, err := semver.Parse(f.version)
	if err != nil {
		return usagef("--version: %v", err)
	}
	from, err := g.client.ParseReference(f.from)
	if err != nil {
		return asUsage(err)
	}
	repo := from.Context()
	if f.repo != "" {
		if repo, err = g.client.ParseRepository(f.repo); err != nil {
			return asUsage(err)
		}
	}
	rules := release.Rules{
		Floating:         f.floating,
		Latest:           release.LatestMode(f.latest),
		FloatPrereleases: f.floatPrereleases,
		FloatMajorZero:   f.floatV0,
		Prefix:           release.Prefix(f.prefix),
		BuildMetadata:    release.BuildMetadata(f.buildMetadata),
	}
	exact, err := release.ExactTag(version, rules)
	if err != nil {
		return asUsage(err)
	}
	required, err := requiredFlag(f.require)
	if err != nil {
		return err
	}

	if err := revisionFlag(f.revision); err != nil {
		return err
	}

	ctx, cancel := g.context(cmd)
	defer cancel()
	rep, err := release.Promote(ctx, from, repo, version,
		release.WithRules(rules),
		release.WithRequirePlatforms(required...),
		release.WithRevision(f.revision),
		release.WithForce(f.force),
		release.WithDryRun(f.dryRun),
		release.WithRemoteOptions(g.client.RemoteOptions(ctx)...),
		release.WithLogger(g.logger),
	)
	if err != nil {
		return err
	}
	if f.resultsDir != "" {
		files := map[string]string{
			resultDigest:  rep.Digest,
			resultURL:     repo.Tag(exact).String(),
			resultTags:    strings.Join(rep.Current(), ","),
			resultChanged: strings.Join(rep.Changed(), ","),
		}
		for _, n := range []string{resultDigest, resultURL, resultTags, resultChanged} {
			if err := writeResult(filepath.Join(f.resultsDir, n), files[n]); err != nil {
				return err
			}
		}
	}
	if f.output == "json" {
		return writeJSON(cmd.OutOrStdout(), rep)
	}
	return printPromotion(cmd.OutOrStdout(), rep)
}

func printPromotion(w io.Writer, rep *release.Report) error {
	verb := "promoted"
	if rep.DryRun {
		verb = "dry run: would promote"
	}
	fmt.Fprintf(w, "%s %s as %s in %s\n", verb, rep.Source, rep.Version, rep.Repository)
	if rep.Linked {
		fmt.Fprintf(w, "(index and children linked from another repository by blob mount)\n")
	}
	fmt.Fprintln(w)
	rows := [][]string{{"TAG", "OLD", "NEW", "WHY"}}
	for _, t := range rep.Tags {
		old := "-"
		if t.Old != "" {
			old = short(t.Old)
		}
		var now string
		switch t.Action {
		case release.ActionUnchanged:
			now = "unchanged"
		case release.ActionKeep:
			now = "kept"
		default:
			now = short(t.New)
		}
		rows = append(rows, []string{t.Tag, old, now, t.Reason})
	}
	return writeTable(w, rows)
}
