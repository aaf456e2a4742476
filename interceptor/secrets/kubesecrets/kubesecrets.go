// Package kubesecrets reads Kubernetes Secrets through the API server for
// the interceptor, with a short cache: the interceptor asks for the same
// Secret on every delivery.
package kubesecrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/ciel-ci/ciel/interceptor/secrets"
	"github.com/ciel-ci/ciel/internal/logopt"
	"github.com/ciel-ci/ciel/internal/option"
)

var _ secrets.Getter = (*Kubernetes)(nil)

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
	return option.Check(d >= 0, fmt.Sprintf("secret cache TTL must not be negative, got %s", d), func(o *kubeOptions) { o.ttl = d })
}

// WithNegativeTTL sets how long "not found" is remembered, so a delivery
// storm against a missing Secret does not become an API-server storm.
// Default: 5s.
func WithNegativeTTL(d time.Duration) KubernetesOption {
	return option.Check(d >= 0, fmt.Sprintf("secret negative cache TTL must not be negative, got %s", d), func(o *kubeOptions) { o.negTTL = d })
}

// WithLogger sets the logger. Default: discard. Values are never logged.
func WithLogger(l *slog.Logger) KubernetesOption {
	return func(o *kubeOptions) error { return logopt.Set(&o.log, l) }
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) KubernetesOption {
	return option.Check(now != nil, "clock must not be nil", func(o *kubeOptions) { o.now = now })
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
	o := kubeOptions{ttl: 30 * time.Second, negTTL: 5 * time.Second, now: time.Now, log: logopt.Discard()}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	return &Kubernetes{client: client, opts: o, cache: map[string]cached{}}, nil
}

// GetSecret implements Getter.
func (k *Kubernetes) GetSecret(ctx context.Context, namespace, name, key string) ([]byte, error) {
	if err := secrets.Validate(name, key); err != nil {
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
		return nil, fmt.Errorf("%w: secret %s/%s has no key %q", secrets.ErrNotFound, namespace, name, key)
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
		c = cached{err: fmt.Errorf("%w: secret %s/%s does not exist", secrets.ErrNotFound, namespace, name), expires: now.Add(k.opts.negTTL)}
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
