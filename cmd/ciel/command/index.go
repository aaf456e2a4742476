package command

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ciel-ci/ciel/images/ociindex"
	"github.com/ciel-ci/ciel/images/platform"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
)

func newIndexCmd(g *globals) *cobra.Command {
	return newGroupCmd("index", "Merge per-architecture images into a multi-arch index, and inspect indexes",
		newIndexCreateCmd(g), newIndexInspectCmd(g))
}

// Standard OCI annotation keys the create command can set.
const (
	annotationSource  = "org.opencontainers.image.source"
	annotationVersion = "org.opencontainers.image.version"
	annotationCreated = "org.opencontainers.image.created"
)

type indexCreateFlags struct {
	tags         []string
	platforms    string
	template     string
	require      string
	format       string
	annotations  []string
	sourceURL    string
	revision     string
	imageVersion string
	created      string
	standard     bool
	replace      bool
	dryRun       bool
	digestFile   string
	urlFile      string
	refFile      string
	output       string
}

func newIndexCreateCmd(g *globals) *cobra.Command {
	f := &indexCreateFlags{}
	cmd := &cobra.Command{
		Use:   "create --tag REGISTRY/REPO:TAG [--tag ...] IMAGE[=PLATFORM] ...",
		Short: "Merge per-architecture images into one OCI image index (or Docker manifest list)",
		Long: `Merge per-architecture images into one multi-platform index and push it under
every --tag.

Sources are image references, preferably by digest (REPO@sha256:..., what
Kaniko's --digest-file gives). IMAGE=PLATFORM (e.g. =linux/arm64/v8) declares
the platform the image must be: the platform written into the index is always
read from the image config, and a declared platform that disagrees fails the
command before anything is pushed. A source that is itself an index is
flattened into its platform manifests (with =PLATFORM, only that platform is
taken); attestation manifests are kept with the manifest they describe.
manifest-tool's form is accepted too: --platforms linux/amd64,linux/arm64
--template REPO:TAG-ARCH (OS, ARCH and VARIANT are substituted).

The index lists manifests by platform, so the same inputs give the same
digest; a tag that already points at the index is left alone (a re-run pushes
nothing and prints the same digest). Tags are PUT one by one, after every
child is in place: a failure part-way leaves the earlier tags on the new index
and the later ones where they were; rerunning the same command converges (same
digest, only the missing tags written). Children read from another repository of
the same registry are linked by cross-repository blob mount; every child is
verified in the target repository before the index is PUT.

Output on stdout: the index digest, then REPO@DIGEST for each repository
tagged (-o json: a full report). For Tekton results (no trailing newline):
--digest-file gets the digest; --url-file the first --tag as given
(REGISTRY/REPO:TAG, without digest: Tekton Chains reads IMAGE_URL@IMAGE_DIGEST);
--ref-file the pinned REGISTRY/REPO@DIGEST. E.g.
--digest-file $(results.IMAGE_DIGEST.path) --url-file $(results.IMAGE_URL.path).

Standard annotations (OCI format only): org.opencontainers.image.source,
.revision, .version and .created come from --source-url, --revision,
--image-version and --created, which default to GitLab CI's CI_PROJECT_URL,
CI_COMMIT_SHA, CI_COMMIT_TAG and CI_COMMIT_TIMESTAMP (or SOURCE_DATE_EPOCH).
The creation time is never "now", so that re-runs give the same digest.`,
		Example: `  ciel index create --tag registry.example.com/app:1a2b3c4 \
    registry.example.com/app@sha256:aaaa...=linux/amd64 \
    registry.example.com/app@sha256:bbbb...=linux/arm64

  ciel index create --tag registry.example.com/app:1a2b3c4 \
    --platforms linux/amd64,linux/arm64 --template registry.example.com/app:1a2b3c4-ARCH \
    --require-platforms linux/amd64,linux/arm64 \
    --digest-file /tekton/results/IMAGE_DIGEST --url-file /tekton/results/IMAGE_URL`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runIndexCreate(cmd, g, f, args) },
	}
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.tags, "tag", "t", nil, "REGISTRY/REPO:TAG to push the index to (repeatable, at least one)")
	fl.StringVar(&f.platforms, "platforms", "", "with --template: comma-separated platforms os/arch[/variant] to expand the template for")
	fl.StringVar(&f.template, "template", "", "with --platforms: image reference in which OS, ARCH and VARIANT are substituted (manifest-tool's form)")
	fl.StringVar(&f.require, "require-platforms", "", "comma-separated platforms the index must contain, e.g. linux/amd64,linux/arm64")
	fl.StringVar(&f.format, "format", string(ociindex.FormatOCI), "index format: oci (OCI image index) or docker (Docker manifest list; OCI children are refused, never converted)")
	fl.StringArrayVar(&f.annotations, "annotation", nil, "KEY=VALUE annotation on the index (repeatable; OCI format only)")
	fl.StringVar(&f.sourceURL, "source-url", g.getenv("CI_PROJECT_URL"), "org.opencontainers.image.source (default $CI_PROJECT_URL)")
	fl.StringVar(&f.revision, "revision", g.getenv("CI_COMMIT_SHA"), "org.opencontainers.image.revision (default $CI_COMMIT_SHA)")
	fl.StringVar(&f.imageVersion, "image-version", g.getenv("CI_COMMIT_TAG"), "org.opencontainers.image.version (default $CI_COMMIT_TAG)")
	fl.StringVar(&f.created, "created", defaultCreated(g.getenv), "org.opencontainers.image.created, RFC 3339 (default $CI_COMMIT_TIMESTAMP, else $SOURCE_DATE_EPOCH)")
	fl.BoolVar(&f.standard, "standard-annotations", true, "set the org.opencontainers.image.* annotations above (OCI format)")
	fl.BoolVar(&f.replace, "replace", false, "let a later source replace an earlier one of the same platform instead of failing")
	fl.BoolVar(&f.dryRun, "dry-run", false, "read and verify the sources, print the index JSON, push nothing")
	fl.StringVar(&f.digestFile, "digest-file", "", "write the index digest to this file (Tekton result)")
	fl.StringVar(&f.urlFile, "url-file", "", "write the first --tag, REGISTRY/REPO:TAG, to this file (Tekton result IMAGE_URL)")
	fl.StringVar(&f.refFile, "ref-file", "", "write the pinned REGISTRY/REPO@DIGEST of the first --tag to this file (Tekton result)")
	fl.StringVarP(&f.output, "output", "o", "text", "output format: text or json")
	return cmd
}

// defaultCreated is $CI_COMMIT_TIMESTAMP, else $SOURCE_DATE_EPOCH as RFC
// 3339, else empty: never the current time, which would change the digest
// of every re-run.
func defaultCreated(getenv func(string) string) string {
	if ts := getenv("CI_COMMIT_TIMESTAMP"); ts != "" {
		return ts
	}
	if epoch := getenv("SOURCE_DATE_EPOCH"); epoch != "" {
		if n, err := strconv.ParseInt(epoch, 10, 64); err == nil {
			return time.Unix(n, 0).UTC().Format(time.RFC3339)
		}
	}
	return ""
}

// checkOutput validates -o.
func checkOutput(o string) error {
	if o != "text" && o != "json" {
		return usagef("--output must be text or json, got %q", o)
	}
	return nil
}

// indexAnnotations merges the standard annotations and --annotation flags
// (which win).
func indexAnnotations(cmd *cobra.Command, f *indexCreateFlags, format ociindex.Format) (map[string]string, error) {
	if format == ociindex.FormatDocker {
		if len(f.annotations) > 0 {
			return nil, usagef("--annotation: a Docker manifest list has no annotations (use --format oci)")
		}
		for _, fl := range []string{"source-url", "revision", "image-version", "created"} {
			if cmd.Flags().Changed(fl) {
				return nil, usagef("--%s: a Docker manifest list has no annotations (use --format oci)", fl)
			}
		}
		return nil, nil
	}
	out := map[string]string{}
	if f.standard {
		if f.created != "" {
			if _, err := time.Parse(time.RFC3339, f.created); err != nil {
				return nil, usagef("--created %q is not an RFC 3339 time: %v", f.created, err)
			}
		}
		for k, v := range map[string]string{
			annotationSource:            f.sourceURL,
			ociindex.AnnotationRevision: f.revision,
			annotationVersion:           f.imageVersion,
			annotationCreated:           f.created,
		} {
			if v != "" {
				out[k] = v
			}
		}
	}
	for _, kv := range f.annotations {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, usagef("--annotation %q: want KEY=VALUE", kv)
		}
		out[k] = v
	}
	return out, nil
}

func runIndexCreate(cmd *cobra.Command, g *globals, f *indexCreateFlags, args []string) error {
	if err := checkOutput(f.output); err != nil {
		return err
	}
	if len(f.tags) == 0 && !f.dryRun {
		return usagef("at least one --tag REGISTRY/REPO:TAG is required")
	}
	format := ociindex.Format(f.format)
	if format != ociindex.FormatOCI && format != ociindex.FormatDocker {
		return usagef("--format must be oci or docker, got %q", f.format)
	}
	var tags []name.Tag
	for _, s := range f.tags {
		t, err := g.client.ParseTag(s)
		if err != nil {
			return asUsage(err)
		}
		tags = append(tags, t)
	}
	var sources []ociindex.Source
	for _, a := range args {
		s, err := ociindex.ParseSource(a, g.client.NameOptions()...)
		if err != nil {
			return asUsage(err)
		}
		sources = append(sources, s)
	}
	if (f.platforms == "") != (f.template == "") {
		return usagef("--platforms and --template go together")
	}
	if f.template != "" {
		ps, err := platform.ParseExactList(f.platforms)
		if err != nil {
			return usagef("--platforms: %v", err)
		}
		expanded, err := ociindex.ExpandTemplate(f.template, ps, g.client.NameOptions()...)
		if err != nil {
			return asUsage(err)
		}
		sources = append(sources, expanded...)
	}
	if len(sources) == 0 {
		return usagef("no source images given (IMAGE[=PLATFORM] arguments or --platforms with --template)")
	}
	required, err := requiredFlag(f.require)
	if err != nil {
		return err
	}
	annotations, err := indexAnnotations(cmd, f, format)
	if err != nil {
		return err
	}

	ctx, cancel := g.context(cmd)
	defer cancel()
	opts := []ociindex.Option{
		ociindex.WithRemoteOptions(g.client.RemoteOptions(ctx)...),
		ociindex.WithFormat(format),
		ociindex.WithAnnotations(annotations),
		ociindex.WithReplace(f.replace),
		ociindex.WithRequirePlatforms(required...),
		ociindex.WithJobs(g.jobs),
		ociindex.WithLogger(g.logger),
	}
	out := cmd.OutOrStdout()
	if f.dryRun {
		ix, err := ociindex.Build(ctx, sources, opts...)
		if err != nil {
			return err
		}
		raw, _ := ix.RawManifest()
		d, _ := ix.Digest()
		g.logger.Info("dry run: nothing pushed", "digest", d.String())
		_, err = fmt.Fprintf(out, "%s\n", raw)
		return err
	}
	res, err := ociindex.Create(ctx, tags, sources, opts...)
	if err != nil {
		return err
	}
	digest := res.Digest().String()
	var pinned []string
	seen := map[string]bool{}
	for _, t := range tags {
		if r := t.Context().String(); !seen[r] {
			seen[r] = true
			pinned = append(pinned, t.Context().Digest(digest).String())
		}
	}
	if err := writeResult(f.digestFile, digest); err != nil {
		return err
	}
	if err := writeResult(f.urlFile, f.tags[0]); err != nil {
		return err
	}
	if err := writeResult(f.refFile, pinned[0]); err != nil {
		return err
	}
	if f.output == "json" {
		return writeJSON(out, createReport(res, pinned))
	}
	printCreateSummary(cmd.ErrOrStderr(), res)
	_, err = fmt.Fprintf(out, "%s\n%s\n", digest, strings.Join(pinned, "\n"))
	return err
}

type manifestJSON struct {
	Platform       string `json:"platform"`
	Digest         string `json:"digest"`
	MediaType      string `json:"mediaType"`
	Size           int64  `json:"size"`
	Source         string `json:"source"`
	AttestationFor string `json:"attestationFor,omitempty"`
}

type tagJSON struct {
	Tag      string `json:"tag"`
	Previous string `json:"previous,omitempty"`
	Updated  bool   `json:"updated"`
}

type createJSON struct {
	Digest     string         `json:"digest"`
	MediaType  string         `json:"mediaType"`
	Size       int64          `json:"size"`
	References []string       `json:"references"`
	Tags       []tagJSON      `json:"tags"`
	Manifests  []manifestJSON `json:"manifests"`
	Linked     []string       `json:"linked,omitempty"`
	Replaced   []string       `json:"replaced,omitempty"`
	Dropped    []string       `json:"dropped,omitempty"`
}

func childJSON(c ociindex.Child) manifestJSON {
	m := manifestJSON{
		Platform:  c.Descriptor.Platform.String(),
		Digest:    c.Descriptor.Digest.String(),
		MediaType: string(c.Descriptor.MediaType),
		Size:      c.Descriptor.Size,
		Source:    c.Source.String(),
	}
	if c.Subject != nil {
		m.AttestationFor = c.Subject.String()
	}
	return m
}

func createReport(res *ociindex.Result, pinned []string) createJSON {
	mt, _ := res.Index.MediaType()
	size, _ := res.Index.Size()
	r := createJSON{Digest: res.Digest().String(), MediaType: string(mt), Size: size, References: pinned}
	for _, t := range res.Tags {
		r.Tags = append(r.Tags, tagJSON{Tag: t.Tag.String(), Previous: t.Previous, Updated: t.Updated})
	}
	for _, c := range res.Index.Children() {
		r.Manifests = append(r.Manifests, childJSON(c))
	}
	for _, l := range res.Linked {
		r.Linked = append(r.Linked, l.String())
	}
	for _, c := range res.Index.Replaced() {
		r.Replaced = append(r.Replaced, c.Source.String())
	}
	for _, c := range res.Index.Dropped() {
		r.Dropped = append(r.Dropped, c.Source.String())
	}
	return r
}

// printCreateSummary writes a human summary (to stderr: stdout stays the
// digest and references, for scripts).
func printCreateSummary(w io.Writer, res *ociindex.Result) {
	rows := [][]string{{"PLATFORM", "DIGEST", "SOURCE"}}
	for _, c := range res.Index.Children() {
		p := c.Descriptor.Platform.String()
		if c.Subject != nil {
			p = "attestation of " + short(c.Subject.String())
		}
		rows = append(rows, []string{p, short(c.Descriptor.Digest.String()), c.Input})
	}
	_ = writeTable(w, rows)
	fmt.Fprintln(w)
	rows = [][]string{{"TAG", "BEFORE", "NOW"}}
	for _, t := range res.Tags {
		before, now := "(new)", short(res.Digest().String())
		if t.Previous != "" {
			before = short(t.Previous)
		}
		if !t.Updated {
			now = "unchanged"
		}
		rows = append(rows, []string{t.Tag.String(), before, now})
	}
	_ = writeTable(w, rows)
}

// short abbreviates a digest to its algorithm and 12 hex digits.
func short(d string) string {
	alg, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) <= 12 {
		return d
	}
	return alg + ":" + hex[:12]
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

type inspectFlags struct {
	output string
}

func newIndexInspectCmd(g *globals) *cobra.Command {
	f := &inspectFlags{}
	cmd := &cobra.Command{
		Use:   "inspect REF",
		Short: "Print the platforms, digests, media types and sizes of an index",
		Long: `Print the manifests an index lists: platform, digest, media type, size, and
for attestation manifests the manifest they describe. -o json prints the same
as JSON. Fails (exit 1) when REF is a single image rather than an index.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("%s takes exactly one reference, got %d", cmd.CommandPath(), len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(f.output); err != nil {
				return err
			}
			ref, err := g.client.ParseReference(args[0])
			if err != nil {
				return asUsage(err)
			}
			ctx, cancel := g.context(cmd)
			defer cancel()
			s, err := ociindex.Inspect(ctx, ref, ociindex.WithRemoteOptions(g.client.RemoteOptions(ctx)...))
			if err != nil {
				return err
			}
			if f.output == "json" {
				return writeJSON(cmd.OutOrStdout(), s)
			}
			return printSummary(cmd.OutOrStdout(), s)
		},
	}
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "output format: text or json")
	return cmd
}

func printSummary(w io.Writer, s *ociindex.Summary) error {
	fmt.Fprintf(w, "%s\n%s, %d bytes, %d manifests\n", s.Reference, s.MediaType, s.Size, len(s.Manifests))
	for _, k := range sortedKeys(s.Annotations) {
		fmt.Fprintf(w, "  %s=%s\n", k, s.Annotations[k])
	}
	fmt.Fprintln(w)
	rows := [][]string{{"PLATFORM", "DIGEST", "MEDIA TYPE", "SIZE", "NOTE"}}
	for _, m := range s.Manifests {
		p := m.Platform
		if p == "" {
			p = "-"
		}
		note := ""
		if m.AttestationFor != "" {
			note = "attestation of " + short(m.AttestationFor)
		}
		rows = append(rows, []string{p, m.Digest, string(m.MediaType), strconv.FormatInt(m.Size, 10), note})
	}
	return writeTable(w, rows)
}
