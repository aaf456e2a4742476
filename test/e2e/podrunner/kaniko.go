package podrunner

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/spf13/pflag"
)

// SyntheticKaniko stands in for the Kaniko executor (phase 1 of the
// end-to-end plan): it parses the step's arguments with Kaniko v1.24's flag
// set, checks that the Dockerfile and context exist in the pod's volumes,
// and pushes a synthetic image for the platform being built — the
// --custom-platform if given, else the node's — to every --destination, then
// writes --digest-file and the other result files as Kaniko would. The
// image has one random layer; with --reproducible the layer is seeded from
// the build inputs (Dockerfile, context tree, build args, target, platform)
// and the creation time is the epoch, so the same inputs give the same
// digest, as with the real executor.
//
// Kaniko features it cannot model (tarball or OCI-layout outputs, remote
// contexts) make it return an error rather than pretend.
type SyntheticKaniko struct {
	// Transport reaches the registries (default: http.DefaultTransport).
	Transport http.RoundTripper
	// Now returns the image creation time without --reproducible
	// (default: time.Now).
	Now func() time.Time
}

var _ Executor = (*SyntheticKaniko)(nil)

// kanikoFlags are the flags of Kaniko v1.24's executor that a Task may set.
type kanikoFlags struct {
	dockerfile, context, contextSubPath, customPlatform, target string
	destinations, buildArgs, labels                             []string
	digestFile, imageNameDigestFile, imageNameTagDigestFile     string
	tarPath, ociLayoutPath, bucket, git                         string
	noPush, reproducible, insecure                              bool
	insecureRegistries                                          []string
}

func parseKanikoFlags(args []string) (*kanikoFlags, error) {
	f := &kanikoFlags{}
	fs := pflag.NewFlagSet("executor", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVarP(&f.dockerfile, "dockerfile", "f", "Dockerfile", "")
	fs.StringVarP(&f.context, "context", "c", "/workspace/", "")
	fs.StringVar(&f.contextSubPath, "context-sub-path", "", "")
	fs.StringVarP(&f.bucket, "bucket", "b", "", "")
	fs.StringArrayVarP(&f.destinations, "destination", "d", nil, "")
	fs.StringVar(&f.customPlatform, "custom-platform", "", "")
	fs.StringVar(&f.customPlatform, "customPlatform", "", "")
	fs.StringArrayVar(&f.buildArgs, "build-arg", nil, "")
	fs.BoolVar(&f.insecure, "insecure", false, "")
	fs.StringVar(&f.tarPath, "tar-path", "", "")
	fs.StringVar(&f.tarPath, "tarPath", "", "")
	fs.BoolVar(&f.reproducible, "reproducible", false, "")
	fs.StringVar(&f.target, "target", "", "")
	fs.BoolVar(&f.noPush, "no-push", false, "")
	fs.StringVar(&f.digestFile, "digest-file", "", "")
	fs.StringVar(&f.imageNameDigestFile, "image-name-with-digest-file", "", "")
	fs.StringVar(&f.imageNameTagDigestFile, "image-name-tag-with-digest-file", "", "")
	fs.StringVar(&f.ociLayoutPath, "oci-layout-path", "", "")
	fs.StringArrayVar(&f.labels, "label", nil, "")
	fs.StringArrayVar(&f.insecureRegistries, "insecure-registry", nil, "")
	fs.Var(new(stringValue), "git", "")
	// Flags that change how Kaniko builds, caches or logs, not what a
	// synthetic image looks like.
	fs.StringP("verbosity", "v", "", "")
	for _, s := range []string{"log-format", "snapshot-mode", "snapshotMode", "kaniko-dir", "cache-repo", "cache-dir", "compression", "registry-client-cert"} {
		fs.String(s, "", "")
	}
	for _, s := range []string{"skip-tls-verify-registry", "registry-certificate", "registry-map", "registry-mirror", "ignore-path"} {
		fs.StringArray(s, nil, "")
	}
	for _, s := range []string{"log-timestamp", "force", "whitelist-var-run", "skip-tls-verify", "insecure-pull", "skip-tls-verify-pull",
		"push-ignore-immutable-tag-errors", "single-snapshot", "no-push-cache", "cache", "compressed-caching", "cleanup",
		"skip-default-registry-fallback", "ignore-var-run", "skip-unused-stages", "use-new-run", "cache-copy-layers",
		"cache-run-layers", "force-build-metadata", "skip-push-permission-check"} {
		fs.Bool(s, false, "")
	}
	for _, s := range []string{"push-retry", "image-fs-extract-retry", "image-download-retry", "compression-level"} {
		fs.Int(s, 0, "")
	}
	fs.Duration("cache-ttl", 0, "")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if g := fs.Lookup("git"); g.Changed {
		f.git = g.Value.String()
	}
	return f, nil
}

type stringValue string

func (s *stringValue) String() string     { return string(*s) }
func (s *stringValue) Set(v string) error { *s = stringValue(v); return nil }
func (s *stringValue) Type() string       { return "string" }

// Execute implements Executor.
func (k *SyntheticKaniko) Execute(ctx context.Context, s *Step) error {
	if len(s.Command) == 0 {
		return errors.New("kaniko: empty command")
	}
	f, err := parseKanikoFlags(s.Command[1:])
	if err != nil {
		// Kaniko itself would reject these arguments.
		fmt.Fprintf(s.Stderr, "Error: %v\n", err)
		return &ExitError{Code: 1}
	}
	switch {
	case f.tarPath != "", f.ociLayoutPath != "":
		return errors.New("kaniko: --tar-path and --oci-layout-path are not modelled by the synthetic executor")
	case f.bucket != "", f.git != "":
		return errors.New("kaniko: remote build contexts are not modelled by the synthetic executor")
	}
	contextDir := strings.TrimPrefix(f.context, "dir://")
	if strings.Contains(contextDir, "://") {
		return fmt.Errorf("kaniko: build context %q is not a directory; only dir:// contexts are modelled", f.context)
	}
	if f.contextSubPath != "" {
		contextDir = filepath.Join(contextDir, f.contextSubPath)
	}
	hostContext, err := s.HostPath(contextDir)
	if err != nil {
		return fmt.Errorf("kaniko: build context: %w", err)
	}
	if st, err := os.Stat(hostContext); err != nil || !st.IsDir() {
		fmt.Fprintf(s.Stderr, "Error: error resolving build context: %s is not a directory\n", f.context)
		return &ExitError{Code: 1}
	}
	dockerfile, err := k.readDockerfile(s, f.dockerfile, contextDir)
	if err != nil {
		fmt.Fprintf(s.Stderr, "Error: error resolving dockerfile path: %v\n", err)
		return &ExitError{Code: 1}
	}
	if len(f.destinations) == 0 && !f.noPush {
		fmt.Fprintln(s.Stderr, "Error: you must provide --destination, or use --no-push")
		return &ExitError{Code: 1}
	}
	plat := v1.Platform{OS: s.OS, Architecture: s.Arch, Variant: s.Variant}
	if f.customPlatform != "" {
		p, err := v1.ParsePlatform(f.customPlatform)
		if err == nil && (p.OS == "" || p.Architecture == "") {
			err = fmt.Errorf("%q names no OS or architecture", f.customPlatform)
		}
		if err != nil {
			fmt.Fprintf(s.Stderr, "Error: invalid --custom-platform: %v\n", err)
			return &ExitError{Code: 1}
		}
		plat = *p
	}

	img, err := k.image(hostContext, dockerfile, f, plat)
	if err != nil {
		return fmt.Errorf("kaniko: making the synthetic image: %w", err)
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("kaniko: %w", err)
	}
	fmt.Fprintf(s.Stdout, "INFO synthetic kaniko (ciel e2e pod runner): built %s for %s\n", digest, plat.String())
	var refs []name.Reference
	for _, d := range f.destinations {
		var opts []name.Option
		if f.insecure || contains(f.insecureRegistries, registryOf(d)) {
			opts = append(opts, name.Insecure)
		}
		ref, err := name.ParseReference(d, opts...)
		if err != nil {
			fmt.Fprintf(s.Stderr, "Error: invalid --destination %q: %v\n", d, err)
			return &ExitError{Code: 1}
		}
		refs = append(refs, ref)
	}
	if !f.noPush {
		tr := k.Transport
		if tr == nil {
			tr = http.DefaultTransport
		}
		for _, ref := range refs {
			if err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithTransport(tr)); err != nil {
				fmt.Fprintf(s.Stderr, "Error: failed to push to destination %s: %v\n", ref, err)
				return &ExitError{Code: 1}
			}
			fmt.Fprintf(s.Stdout, "INFO Pushed %s@%s\n", ref.Context(), digest)
		}
	}
	return k.writeResults(s, f, refs, digest)
}

func registryOf(ref string) string {
	host, _, _ := strings.Cut(ref, "/")
	return host
}

// readDockerfile finds the Dockerfile as Kaniko does: the path as given,
// else relative to the context.
func (k *SyntheticKaniko) readDockerfile(s *Step, dockerfile, contextDir string) ([]byte, error) {
	candidates := []string{dockerfile}
	if !filepath.IsAbs(dockerfile) {
		candidates = append(candidates, filepath.Join(contextDir, dockerfile))
	}
	for _, c := range candidates {
		host, err := s.HostPath(c)
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(host); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("no Dockerfile at %s", dockerfile)
}

func (k *SyntheticKaniko) image(hostContext string, dockerfile []byte, f *kanikoFlags, plat v1.Platform) (v1.Image, error) {
	created := time.Unix(0, 0).UTC()
	var seed int64
	if f.reproducible {
		h := sha256.New()
		fmt.Fprintf(h, "platform %s\ntarget %s\nbuild-args %q\nlabels %q\n", plat.String(), f.target, f.buildArgs, f.labels)
		h.Write(dockerfile)
		if err := hashTree(h, hostContext); err != nil {
			return nil, err
		}
		seed = int64(binary.BigEndian.Uint64(h.Sum(nil)[:8]))
	} else {
		now := time.Now
		if k.Now != nil {
			now = k.Now
		}
		created = now().UTC()
		seed = created.UnixNano()
	}
	layer, err := random.Layer(1024, types.DockerLayer, random.WithSource(rand.NewSource(seed)))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant, cf.OSVersion = plat.OS, plat.Architecture, plat.Variant, plat.OSVersion
	cf.Created = v1.Time{Time: created}
	cf.Config.Labels = map[string]string{"dev.ciel.e2e.synthetic": "true"}
	for _, l := range f.labels {
		key, val, _ := strings.Cut(l, "=")
		cf.Config.Labels[key] = val
	}
	return mutate.ConfigFile(img, cf)
}

// hashTree hashes the names, modes and contents of the files below dir, in
// lexical order.
func hashTree(h io.Writer, dir string) error {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("hashing the build context: %w", err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s\n", rel)
		fh, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(h, fh)
		fh.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (k *SyntheticKaniko) writeResults(s *Step, f *kanikoFlags, refs []name.Reference, digest v1.Hash) error {
	write := func(containerPath, content string) error {
		host, err := s.HostPath(containerPath)
		if err != nil {
			return fmt.Errorf("kaniko: writing %s: %w", containerPath, err)
		}
		if err := os.WriteFile(host, []byte(content), 0o644); err != nil {
			return fmt.Errorf("kaniko: writing %s: %w", containerPath, err)
		}
		return nil
	}
	if f.digestFile != "" {
		if err := write(f.digestFile, digest.String()); err != nil {
			return err
		}
	}
	if f.imageNameDigestFile != "" {
		var b strings.Builder
		for _, r := range refs {
			fmt.Fprintf(&b, "%s@%s\n", r.Context().Name(), digest)
		}
		if err := write(f.imageNameDigestFile, b.String()); err != nil {
			return err
		}
	}
	if f.imageNameTagDigestFile != "" {
		var parts []string
		for _, r := range refs {
			tag := "latest"
			if t, ok := r.(name.Tag); ok {
				tag = t.TagStr()
			}
			parts = append(parts, fmt.Sprintf(`{"image":%q,"tag":%q,"digest":%q}`, r.Context().Name(), tag, digest.String()))
		}
		if err := write(f.imageNameTagDigestFile, "["+strings.Join(parts, ",")+"]"); err != nil {
			return err
		}
	}
	return nil
}
