package command

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ciel-ci/ciel/images/kaniko"
	"github.com/ciel-ci/ciel/images/ociindex"
	"github.com/ciel-ci/ciel/images/platform"
	"github.com/ciel-ci/ciel/internal/registryclient"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"
)

// maxResultBytes bounds what one step writes as Tekton results: Tekton
// reports a step's results in its container termination message, which
// Kubernetes caps at 4096 bytes for all of them together (with JSON
// quoting and the result names on top).
const maxResultBytes = 3072

// CABundleFile is the file the Tasks' ca-bundle workspace must hold.
const CABundleFile = "ca.crt"

func newTektonCmd(g *globals) *cobra.Command {
	cmd := newGroupCmd("tekton", "Steps of ciel's Tekton Tasks: compute what Tekton cannot, write Tekton results",
		newTektonPlanCmd(), newTektonKanikoArgsCmd(), newTektonKanikoResultsCmd(), newTektonTagArgsCmd(), newTektonFindIndexCmd(g))
	cmd.Long = `Helpers run as steps of the Tasks in tasks/: they compute values Tekton's
variable substitution cannot (split a platform, prefix every element of an
array, derive per-platform names), check them, and write Tekton result files
(no trailing newline; arrays as JSON).

Every output flag ending in -file names a result file to write
($(results.NAME.path) or $(step.results.NAME.path)); an empty path writes
nothing, so the commands also run by hand.`
	return cmd
}

// writeArrayResult writes an array result as Tekton reads it: a JSON array.
func writeArrayResult(path string, values []string) error {
	if path == "" {
		return nil
	}
	if values == nil {
		values = []string{}
	}
	b, err := json.Marshal(values)
	if err != nil {
		return err
	}
	return writeResult(path, string(b))
}

// checkResultSize fails early, with a message saying what to do, when the
// results of a step would not fit in its termination message.
func checkResultSize(what string, values ...string) error {
	n := 0
	for _, v := range values {
		n += len(v) + 2*strings.Count(v, `"`) + 8
	}
	if n > maxResultBytes {
		return fmt.Errorf("%s take %d bytes, more than the %d a Tekton step result can carry (the container termination message is capped at 4096 bytes): pass fewer or shorter values", what, n, maxResultBytes)
	}
	return nil
}

type planFlags struct {
	archesFile, platformsFile string
}

func newTektonPlanCmd() *cobra.Command {
	f := &planFlags{}
	cmd := &cobra.Command{
		Use:   "plan-platforms PLATFORM...",
		Short: "Canonicalise the platforms of a multi-arch build and list the node architectures to fan out over",
		Long: `Canonicalise the platforms of a multi-arch build (os/arch[/variant] or a bare
arch; an argument may hold several, comma-separated) and check that each can
be built natively on a node of its own architecture:

  - every platform must be linux: Kaniko builds Linux images only;
  - no two platforms may need the same node architecture: nodes advertise
    kubernetes.io/arch (e.g. arm) but not an ARM variant, so linux/arm/v6
    and linux/arm/v7 cannot be told apart when scheduling.

Spellings of one platform are merged (x86_64 = amd64 = linux/amd64,
aarch64 = linux/arm64/v8 = linux/arm64, armhf = linux/arm/v7).

--arches-file gets the kubernetes.io/arch values as a JSON array, in the
order the platforms were given: a Tekton matrix fans the build out over
them, and the PipelineRun's taskRunSpecs put each build on a node with
nodeSelector kubernetes.io/arch: $(params.PLATFORM). --platforms-file gets
the canonical platforms, comma-separated: what the merged index must
contain, and what each build resolves its architecture against.`,
		Example: `  ciel tekton plan-platforms linux/amd64 linux/arm64 \
    --arches-file $(results.ARCHES.path) --platforms-file $(results.PLATFORMS.path)`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			pl, err := platform.NewPlan(args...)
			if err != nil {
				return err
			}
			rows := [][]string{{"PLATFORM", "NODE ARCH (kubernetes.io/arch)"}}
			for _, p := range pl.Platforms {
				rows = append(rows, []string{p.String(), platform.NodeArch(p)})
			}
			if err := writeTable(cmd.OutOrStdout(), rows); err != nil {
				return err
			}
			if err := writeArrayResult(f.archesFile, pl.NodeArchs()); err != nil {
				return err
			}
			return writeResult(f.platformsFile, strings.Join(pl.Strings(), ","))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.archesFile, "arches-file", "", "write the node architectures here, as a JSON array (Tekton array result)")
	fl.StringVar(&f.platformsFile, "platforms-file", "", "write the canonical platforms here, comma-separated (Tekton result)")
	return cmd
}

type kanikoArgsFlags struct {
	image, tag, platform, platforms, cacheRepo string
	platformTag                                bool
	caDir, revision, source                    string
	platformFile, argsFile                     string
}

func newTektonKanikoArgsCmd() *cobra.Command {
	f := &kanikoArgsFlags{}
	cmd := &cobra.Command{
		Use:   "kaniko-args --image REPO --tag TAG --platform PLATFORM [flags] [-- KEY=VALUE...]",
		Short: "Compute the per-platform flags of one Kaniko build",
		Long: `Compute the Kaniko executor flags of one per-platform build that Tekton cannot
compute, and write them as a JSON array to --args-file (a step result the
executor step expands with $(steps.NAME.results.NAME[*])):

  --destination=REPO:TAG-linux-arm64       (REPO:TAG with --platform-tag=false)
  --custom-platform=linux/arm64
  --build-arg=TARGETPLATFORM=linux/arm64, TARGETOS, TARGETARCH, TARGETVARIANT
  --build-arg=KEY=VALUE                    for each positional argument
  --cache-repo=BASE/cache-linux-arm64      one cache repository per platform
  --registry-certificate=HOST=DIR/ca.crt   destination and cache registries,
                                           when --ca-dir is not empty
  --label=org.opencontainers.image.revision=... and .source=...

--platform is os/arch[/variant] or a bare architecture (a matrix value over
node architectures); with --platforms (the planned platforms,
comma-separated) a bare architecture takes the variant that was planned.
The canonical platform is written to --platform-file.

Kaniko's layer cache key does not include the platform: builds of several
platforms sharing one cache repository would reuse each other's layers,
hence the per-platform cache repository below --cache-repo (default: the
image repository).`,
		Example: `  ciel tekton kaniko-args --image registry.example.com/app --tag 1a2b3c4d \
    --platform arm64 --platforms linux/amd64,linux/arm64 \
    --platform-file $(results.PLATFORM.path) --args-file $(step.results.args.path) \
    -- GO_VERSION=1.26`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKanikoArgs(cmd, f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.image, "image", "", "repository to push to, REGISTRY/REPO (required)")
	fl.StringVar(&f.tag, "tag", "", "tag to push (required)")
	fl.BoolVar(&f.platformTag, "platform-tag", true, "append the platform to the tag (-linux-arm64), so that the builds of one run do not overwrite each other")
	fl.StringVar(&f.platform, "platform", "", "target platform: os/arch[/variant] or a bare architecture (required)")
	fl.StringVar(&f.platforms, "platforms", "", "the planned platforms, comma-separated: a bare --platform takes its variant from here")
	fl.StringVar(&f.cacheRepo, "cache-repo", "", "base of the per-platform cache repositories (default: --image)")
	fl.StringVar(&f.caDir, "ca-dir", "", "directory holding "+CABundleFile+" for registries with a private CA (the ca-bundle workspace; empty: none)")
	fl.StringVar(&f.revision, "revision", "", "commit built: the org.opencontainers.image.revision label (empty: none)")
	fl.StringVar(&f.source, "source", "", "repository URL: the org.opencontainers.image.source label, credentials removed (empty: none)")
	fl.StringVar(&f.platformFile, "platform-file", "", "write the canonical platform here (Tekton result)")
	fl.StringVar(&f.argsFile, "args-file", "", "write the executor flags here, as a JSON array (Tekton step result)")
	return cmd
}

func runKanikoArgs(cmd *cobra.Command, f *kanikoArgsFlags, buildArgs []string) error {
	for flag, v := range map[string]string{"--image": f.image, "--tag": f.tag, "--platform": f.platform} {
		if strings.TrimSpace(v) == "" {
			return usagef("%s is required", flag)
		}
	}
	var planned []string
	if f.platforms != "" {
		planned = []string{f.platforms}
	}
	p, err := platform.Resolve(f.platform, planned)
	if err != nil {
		return fmt.Errorf("resolving the platform to build: %w", err)
	}
	b := kaniko.Build{
		Image: f.image, Tag: f.tag, PlatformTag: f.platformTag, Platform: p,
		CacheRepo: f.cacheRepo, BuildArgs: buildArgs, Revision: f.revision, Source: f.source,
	}
	if f.caDir != "" {
		b.CAFile = filepath.Join(f.caDir, CABundleFile)
		if _, err := os.Stat(b.CAFile); err != nil {
			return fmt.Errorf("the ca-bundle workspace is bound but has no %s (bind a Secret or ConfigMap whose key %s holds the PEM CA, or map its key with items): %w", CABundleFile, CABundleFile, err)
		}
	}
	args, err := b.Args()
	if err != nil {
		return err
	}
	if err := checkResultSize("the Kaniko flags (mostly build arguments)", append(args, p.String())...); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "platform %s\n", p.String())
	for _, a := range args {
		fmt.Fprintln(out, a)
	}
	if err := writeResult(f.platformFile, p.String()); err != nil {
		return err
	}
	return writeArrayResult(f.argsFile, args)
}

type kanikoResultsFlags struct {
	image, kanikoDigestFile, urlFile string
}

func newTektonKanikoResultsCmd() *cobra.Command {
	f := &kanikoResultsFlags{}
	cmd := &cobra.Command{
		Use:   "kaniko-results --image REPO --kaniko-digest-file PATH --url-file PATH",
		Short: "Turn the digest Kaniko wrote into the pinned image reference",
		Long: `Read the digest Kaniko wrote with --digest-file, check it, and write the
pinned reference REPO@sha256:... to --url-file (Kaniko's own
--image-name-with-digest-file ends with a newline, which would leak into
Tekton results).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.image == "" || f.kanikoDigestFile == "" {
				return usagef("--image and --kaniko-digest-file are required")
			}
			h, err := kaniko.ReadDigestFile(f.kanikoDigestFile)
			if err != nil {
				return err
			}
			ref, err := kaniko.PinnedReference(f.image, h)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintln(cmd.OutOrStdout(), ref.String()); err != nil {
				return err
			}
			return writeResult(f.urlFile, ref.String())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.image, "image", "", "repository the image was pushed to, REGISTRY/REPO (required)")
	fl.StringVar(&f.kanikoDigestFile, "kaniko-digest-file", "", "the file Kaniko's --digest-file wrote (required)")
	fl.StringVar(&f.urlFile, "url-file", "", "write REPO@sha256:... here (Tekton result)")
	return cmd
}

type tagArgsFlags struct {
	image, argsFile string
}

func newTektonTagArgsCmd() *cobra.Command {
	f := &tagArgsFlags{}
	cmd := &cobra.Command{
		Use:   "tag-args --image REPO TAG [EXTRA_TAG...]",
		Short: "Turn tag names into --tag=REPO:TAG flags",
		Long: `Turn tag names into --tag=REPO:TAG flags for ciel index create, written as a
JSON array to --args-file (a step result the next step expands with
$(steps.NAME.results.NAME[*])). The first tag is required; empty extra tags
are skipped (e.g. a branch slug that a manual run leaves empty) and
duplicates dropped; each tag must be a valid tag.`,
		Example: `  ciel tekton tag-args --image registry.example.com/app \
    --args-file $(step.results.tags.path) 1a2b3c4d main`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.image == "" {
				return usagef("--image is required")
			}
			if len(args) == 0 || strings.TrimSpace(args[0]) == "" {
				return usagef("the first tag is required")
			}
			var flags []string
			for _, tag := range args {
				tag = strings.TrimSpace(tag)
				if tag == "" {
					continue
				}
				t, err := kaniko.Build{Image: f.image, Tag: tag}.Destination()
				if err != nil {
					return err
				}
				if fl := "--tag=" + t.String(); !slices.Contains(flags, fl) {
					flags = append(flags, fl)
				}
			}
			if err := checkResultSize("the tags", flags...); err != nil {
				return err
			}
			for _, fl := range flags {
				fmt.Fprintln(cmd.OutOrStdout(), fl)
			}
			return writeArrayResult(f.argsFile, flags)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.image, "image", "", "repository the tags are in, REGISTRY/REPO (required)")
	fl.StringVar(&f.argsFile, "args-file", "", "write the --tag flags here, as a JSON array (Tekton step result)")
	return cmd
}

type findIndexFlags struct {
	image, tag, require, revision  string
	required                       bool
	foundFile, digestFile, urlFile string
}

func newTektonFindIndexCmd(g *globals) *cobra.Command {
	f := &findIndexFlags{}
	cmd := &cobra.Command{
		Use:   "find-index --image REPO --tag TAG [--require-platforms LIST]",
		Short: "Report whether a multi-arch index covering the required platforms exists",
		Long: `Look up REPO:TAG and report whether it is a multi-arch index that covers every
platform of --require-platforms (comma-separated; spellings are normalised, so
linux/arm64 matches an entry linux/arm64/v8). Writes "true" or "false" to
--found-file and, when found, the digest and pinned REPO@sha256:... to
--digest-file and --url-file.

A missing tag or repository, a single image, or an index lacking a required
platform is "not found" (exit 0, the reason printed): the release pipeline
then builds the index; with --required it fails the command instead. Any
other failure (authentication, TLS, a registry error after retries) fails the
command.

--revision (the full SHA of the commit being released) refuses, as a
failure, an index whose org.opencontainers.image.revision annotation is
another commit or absent: the tag was rewritten, and rebuilding over it would
hide that. The digest written is the one checked: promote that digest
(REPO@sha256:... from --url-file), never the tag again.`,
		Example: `  ciel tekton find-index --image registry.example.com/app \
    --tag sha-1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b --revision 1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b \
    --require-platforms linux/amd64,linux/arm64 --found-file $(results.FOUND.path)`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runFindIndex(cmd, g, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.image, "image", "", "repository, REGISTRY/REPO (required)")
	fl.StringVar(&f.tag, "tag", "", "tag to look up (required)")
	fl.StringVar(&f.require, "require-platforms", "", "comma-separated platforms the index must cover")
	fl.StringVar(&f.revision, "revision", "", "full SHA of the commit the index must have been built from (its org.opencontainers.image.revision); another commit fails (empty: no check)")
	fl.BoolVar(&f.required, "required", false, "fail instead of reporting \"not found\"")
	fl.StringVar(&f.foundFile, "found-file", "", `write "true" or "false" here (Tekton result)`)
	fl.StringVar(&f.digestFile, "digest-file", "", "when found, write the index digest here (Tekton result)")
	fl.StringVar(&f.urlFile, "url-file", "", "when found, write REPO@sha256:... here (Tekton result)")
	return cmd
}

func runFindIndex(cmd *cobra.Command, g *globals, f *findIndexFlags) error {
	if f.image == "" || f.tag == "" {
		return usagef("--image and --tag are required")
	}
	if _, err := (kaniko.Build{Image: f.image, Tag: f.tag}).Destination(); err != nil {
		return asUsage(err)
	}
	ref, err := g.client.ParseTag(f.image + ":" + f.tag)
	if err != nil {
		return asUsage(err)
	}
	if err := revisionFlag(f.revision); err != nil {
		return err
	}
	var required []v1.Platform
	if strings.TrimSpace(f.require) != "" {
		pl, err := platform.NewPlan(f.require)
		if err != nil {
			return usagef("--require-platforms: %v", err)
		}
		required = pl.Platforms
	}
	ctx, cancel := g.context(cmd)
	defer cancel()
	out := cmd.OutOrStdout()
	notFound := func(reason string) error {
		if f.required {
			return fmt.Errorf("no usable index: %s", reason)
		}
		fmt.Fprintf(out, "not found: %s\n", reason)
		return writeResult(f.foundFile, "false")
	}
	s, err := ociindex.Inspect(ctx, ref, ociindex.WithRemoteOptions(g.client.RemoteOptions(ctx)...))
	switch {
	case registryclient.IsNotFound(err):
		return notFound(fmt.Sprintf("%s does not exist", ref))
	case errors.Is(err, ociindex.ErrNotIndex):
		return notFound(fmt.Sprintf("%s is a single image, not a multi-arch index", ref))
	case err != nil:
		return fmt.Errorf("looking up %s: %w", ref, err)
	}
	if f.revision != "" {
		if err := ociindex.CheckRevision(s.Annotations, f.revision); err != nil {
			return fmt.Errorf("refusing %s (%s): %w", ref, s.Digest, err)
		}
	}
	// A planned platform is exact: its default variant is implied
	// (linux/arm64 is linux/arm64/v8, not any arm64), as the build made it.
	var missing []string
	for _, want := range required {
		if !slices.ContainsFunc(s.Manifests, func(e ociindex.Entry) bool {
			return e.AttestationFor == "" && e.PlatformDetail != nil && platform.Matches(*e.PlatformDetail, platform.Complete(want))
		}) {
			missing = append(missing, want.String())
		}
	}
	if len(missing) > 0 {
		return notFound(fmt.Sprintf("%s (%s) lacks %s", ref, s.Digest, strings.Join(missing, ", ")))
	}
	fmt.Fprintf(out, "found: %s\n", s.Reference)
	if err := writeResult(f.foundFile, "true"); err != nil {
		return err
	}
	if err := writeResult(f.digestFile, s.Digest); err != nil {
		return err
	}
	return writeResult(f.urlFile, s.Reference)
}
