// Package secrets reads the Kubernetes Secrets an interceptor needs: the
// webhook token and signing token of a trigger (secretRef), the GitLab API
// token, and whatever CEL's compareSecret names.
//
// Two implementations share one method, GetSecret(ctx, namespace, name, key):
// Kubernetes reads through the API server with a short cache (the
// interceptor asks for the same Secret on every delivery), and Dir reads
// files laid out as <dir>/<name>/<key>, for local mode and cel-eval.
package secrets

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// ErrNotFound is returned when the Secret or its key does not exist.
var ErrNotFound = errors.New("secret not found")

// Getter returns the value of one key of a Secret.
type Getter interface {
	GetSecret(ctx context.Context, namespace, name, key string) ([]byte, error)
}

var (
	_ Getter = (*Kubernetes)(nil)
	_ Getter = Dir("")
)

// Names follow Kubernetes' rules: a Secret name is a DNS subdomain and a
// key is [-._a-zA-Z0-9]+. Checking them also keeps Dir inside its folder.
var (
	nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
	keyRE  = regexp.MustCompile(`^[-._a-zA-Z0-9]{1,253}$`)
)

func validate(name, key string) error {
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
	if err := validate(name, key); err != nil {
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

type kubeOptions struct {
	ttl    time.Duration
	negTTL time.Duration
	now    func() time.Time
	log    *slog.Logger
}

// KubernetesOption configures Kubernetes.
type KubernetesOption func(*kubeOptions) error

// WithTTL sets how long a Secret read is reused. Default: 30s, so a rotated
// token takes effect within half a minute.
func WithTTL(d time.Duration) KubernetesOption {
	return func(o *kubeOptions) error {
		if d < 0 {
			return fmt.Errorf("secret cache TTL must not be negative, got %s", d)
		}
		o.ttl = d
		return nil
	}
}

// WithNegativeTTL sets how long "not found" is remembered, so a delivery
// storm against a missing Secret does not become an API-server storm.
// Default: 5s.
func WithNegativeTTL(d time.Duration) KubernetesOption {
	return func(o *kubeOptions) error {
		if d < 0 {
			return fmt.Errorf("secret negative cache TTL must not be negative, got %s", d)
		}
		o.negTTL = d
		return nil
	}
}

// WithLogger sets the logger. Default: discard. Values are never logged.
func WithLogger(l *slog.Logger) KubernetesOption {
	return func(o *kubeOptions) error {
		if l == nil {
			return errors.New("logger must not be nil")
		}
		o.log = l
		return nil
	}
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) KubernetesOption {
	return func(o *kubeOptions) error {
		if now == nil {
			return errors.New("clock must not be nil")
		}
		o.now = now
		return nil
	}
}

type cached struct {
	data    map[string][]byte
	err     error
	expires time.Time
}

// Kubernetes reads Secrets through the API server, caching each Secret
// briefly. Concurrent reads of the same Secret share one request.
type Kubernetes struct {
	client corev1client.SecretsGetter
	opts   kubeOptions
	group  singleflight.Group
	mu     sync.Mutex
	cache  map[string]cached
}

// NewKubernetes returns a Getter reading through client.
func NewKubernetes(client corev1client.SecretsGetter, opts ...KubernetesOption) (*Kubernetes, error) {
	if client == nil {
		return nil, errors.New("kubernetes secrets client must not be nil")
	}
	o := kubeOptions{ttl: 30 * time.Second, negTTL: 5 * time.Second, now: time.Now, log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	return &Kubernetes{client: client, opts: o, cache: map[string]cached{}}, nil
}

// GetSecret implements Getter.
func (k *Kubernetes) GetSecret(ctx context.Context, namespace, name, key string) ([]byte, error) {
	if err := validate(name, key); err != nil {
		return nil, err
	}
	if namespace == "" {
		return nil, fmt.Errorf("reading secret %s: no namespace", name)
	}
	id := namespace + "/" + name
	k.mu.Lock()
	c, ok := k.cache[id]
	k.mu.Unlock()
	if !ok || !k.opts.now().Before(c.expires) {
		v, err, _ := k.group.Do(id, func() (any, error) { return k.fetch(ctx, namespace, name), nil })
		if err != nil {
			return nil, err
		}
		c = v.(cached)
	}
	if c.err != nil {
		return nil, c.err
	}
	val, ok := c.data[key]
	if !ok {
		return nil, fmt.Errorf("%w: secret %s/%s has no key %q", ErrNotFound, namespace, name, key)
	}
	return append([]byte(nil), val...), nil
}

func (k *Kubernetes) fetch(ctx context.Context, namespace, name string) cached {
	s, err := k.client.Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	now := k.opts.now()
	var c cached
	switch {
	case err == nil:
		c = cached{data: s.Data, expires: now.Add(k.opts.ttl)}
	case apierrors.IsNotFound(err):
		c = cached{err: fmt.Errorf("%w: secret %s/%s does not exist", ErrNotFound, namespace, name), expires: now.Add(k.opts.negTTL)}
	default:
		// Transient or permission errors are not cached: the next delivery asks again.
		k.opts.log.Warn("reading secret failed", "namespace", namespace, "name", name, "error", err)
		return cached{err: fmt.Errorf("reading secret %s/%s: %w", namespace, name, err)}
	}
	k.mu.Lock()
	k.cache[namespace+"/"+name] = c
	k.mu.Unlock()
	return c
}
