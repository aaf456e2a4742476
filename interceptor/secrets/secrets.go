// Package secrets reads the Kubernetes Secrets an interceptor needs: the
// webhook token and signing token of a trigger (secretRef), the GitLab API
// token, and whatever CEL's compareSecret names.
//
// Two implementations share one method, GetSecret(ctx, namespace, name, key):
// kubesecrets.Getter reads through the API server with a short cache (the
// interceptor asks for the same Secret on every delivery), and Dir reads
// files laid out as <dir>/<name>/<key>, for local mode and cel-eval. The
// Kubernetes one lives in its own package so that cel-eval does not link
// client-go.
package secrets

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// ErrNotFound is returned when the Secret or its key does not exist.
var ErrNotFound = errors.New("secret not found")

// Getter returns the value of one key of a Secret.
type Getter interface {
	GetSecret(ctx context.Context, namespace, name, key string) ([]byte, error)
}

var _ Getter = Dir("")

// Names follow Kubernetes' rules: a Secret name is a DNS subdomain and a
// key is [-._a-zA-Z0-9]+. Checking them also keeps Dir inside its folder.
var (
	nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
	keyRE  = regexp.MustCompile(`^[-._a-zA-Z0-9]{1,253}$`)
)

// Validate checks a Secret name and key against Kubernetes' rules.
func Validate(name, key string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("invalid secret name %q: must be a lowercase DNS subdomain", name)
	}
	if !keyRE.MatchString(key) || key == "." || key == ".." {
		return fmt.Errorf("invalid secret key %q: must match [-._a-zA-Z0-9]+", key)
	}
	return nil
}

// Dir reads Secrets from files <dir>/<name>/<key>; the namespace is ignored
// (local mode has a single one). It is the layout `kubectl create secret`
// produces when a Secret is mounted as a volume under <dir>/<name>.
type Dir string

// GetSecret implements Getter.
func (d Dir) GetSecret(_ context.Context, _ string, name, key string) ([]byte, error) {
	if err := Validate(name, key); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(string(d), name, key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no file %s", ErrNotFound, filepath.Join(string(d), name, key))
	}
	if err != nil {
		return nil, fmt.Errorf("reading secret %s/%s: %w", name, key, err)
	}
	return b, nil
}
