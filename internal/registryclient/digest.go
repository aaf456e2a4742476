package registryclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"
)

// IsNotFound reports whether err is a registry's answer that a manifest or
// a repository does not exist: HTTP 404, or the MANIFEST_UNKNOWN and
// NAME_UNKNOWN error codes, which some registries send with another status.
func IsNotFound(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	if terr.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range terr.Errors {
		switch d.Code {
		case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode:
			return true
		}
	}
	return false
}

// Digest returns the digest ref points at, read with one HEAD request; ""
// when the manifest or the repository does not exist (IsNotFound).
func Digest(ctx context.Context, puller *remote.Puller, ref name.Reference) (string, error) {
	d, err := puller.Head(ctx, ref)
	switch {
	case err == nil:
		return d.Digest.String(), nil
	case IsNotFound(err):
		return "", nil
	}
	return "", fmt.Errorf("reading what %s points at: %w", ref, err)
}

// Digests is Digest for each of refs, at most jobs at a time (jobs < 1
// means DefaultJobs); the digests come in the order of refs. Every failure
// is returned, joined.
func Digests[R name.Reference](ctx context.Context, puller *remote.Puller, jobs int, refs []R) ([]string, error) {
	if jobs < 1 {
		jobs = DefaultJobs
	}
	out := make([]string, len(refs))
	errs := make([]error, len(refs))
	g := new(errgroup.Group)
	g.SetLimit(jobs)
	for i, ref := range refs {
		g.Go(func() error {
			out[i], errs[i] = Digest(ctx, puller, ref)
			return nil
		})
	}
	_ = g.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}
