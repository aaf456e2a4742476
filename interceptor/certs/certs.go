// Package certs gives the interceptor its serving certificate.
//
// Tekton Triggers' EventListener calls an https ClusterInterceptor only if
// the ClusterInterceptor carries a caBundle, and refuses to start at all if
// one labelled server/type=https has none. Two ways are supported:
//
//   - Manager (default in a cluster): a private CA and a serving certificate
//     for the interceptor's Service, kept in a Secret so every replica serves
//     the same certificate and a restart keeps it; the CA is written into the
//     caBundle of our ClusterInterceptor(s). Certificates are renewed well
//     before expiry; the bundle keeps the previous CA while certificates it
//     signed may still be in use.
//   - FileSource: certificate files managed by someone else (cert-manager),
//     reloaded when they change.
//
// Both expose GetCertificate for tls.Config, so rotation needs no restart.
package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/ciel-ci/ciel/internal/logopt"
	"github.com/ciel-ci/ciel/internal/option"
)

// Keys of the TLS Secret.
const (
	KeyCABundle = "ca.crt" // PEM: the current CA, then the previous one while still valid
	KeyCAKey    = "ca.key"
	KeyCert     = corev1.TLSCertKey       // tls.crt
	KeyKey      = corev1.TLSPrivateKeyKey // tls.key
)

// ClusterInterceptorResource is the Triggers resource whose caBundle we keep.
var ClusterInterceptorResource = schema.GroupVersionResource{Group: "triggers.tekton.dev", Version: "v1alpha1", Resource: "clusterinterceptors"}

type options struct {
	namespace     string
	secretName    string
	serviceName   string
	interceptors  []string
	caValidity    time.Duration
	certValidity  time.Duration
	renewFraction float64
	now           func() time.Time
	log           *slog.Logger
}

// Option configures a Manager.
type Option func(*options) error

// WithNamespace sets the namespace of the Secret and the Service. Required.
func WithNamespace(ns string) Option {
	return option.Check(ns != "", "namespace must not be empty", func(o *options) { o.namespace = ns })
}

// WithSecretName sets the TLS Secret's name. Default: "ciel-interceptor-tls".
func WithSecretName(n string) Option {
	return option.Check(n != "", "secret name must not be empty", func(o *options) { o.secretName = n })
}

// WithServiceName sets the Service the certificate is issued for (its
// in-cluster DNS names are the certificate's SANs). Default: "ciel-interceptor".
func WithServiceName(n string) Option {
	return option.Check(n != "", "service name must not be empty", func(o *options) { o.serviceName = n })
}

// WithClusterInterceptors names the ClusterInterceptors whose caBundle is
// kept current. Default: ["ciel"]. None means: do not patch any.
func WithClusterInterceptors(names ...string) Option {
	return option.Check(true, "", func(o *options) { o.interceptors = append([]string(nil), names...) })
}

// WithValidity sets the lifetimes of the CA and of serving certificates.
// Defaults: 5 years and 1 year. A certificate is renewed when less than a
// third of its lifetime is left.
func WithValidity(ca, cert time.Duration) Option {
	return option.Check(ca > 0 && cert > 0 && cert <= ca,
		fmt.Sprintf("invalid validity: CA %s, certificate %s (both positive, certificate not longer than CA)", ca, cert),
		func(o *options) { o.caValidity, o.certValidity = ca, cert })
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option {
	return option.Check(now != nil, "clock must not be nil", func(o *options) { o.now = now })
}

// WithLogger sets the logger. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { return logopt.Set(&o.log, l) }
}

// Manager keeps the serving certificate in a Secret and the CA in our
// ClusterInterceptors.
type Manager struct {
	secrets corev1client.SecretsGetter
	dyn     dynamic.Interface
	opts    options
	current atomic.Pointer[tls.Certificate]
	bundle  atomic.Pointer[[]byte]
}

// NewManager returns a Manager. dyn may be nil when no ClusterInterceptor is
// to be patched.
func NewManager(secrets corev1client.SecretsGetter, dyn dynamic.Interface, opts ...Option) (*Manager, error) {
	o := options{
		secretName:    "ciel-interceptor-tls",
		serviceName:   "ciel-interceptor",
		interceptors:  []string{"ciel"},
		caValidity:    5 * 365 * 24 * time.Hour,
		certValidity:  365 * 24 * time.Hour,
		renewFraction: 1.0 / 3,
		now:           time.Now,
		log:           logopt.Discard(),
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.namespace == "" {
		return nil, errors.New("certs: WithNamespace is required")
	}
	if secrets == nil {
		return nil, errors.New("certs: secrets client must not be nil")
	}
	if dyn == nil && len(o.interceptors) > 0 {
		return nil, errors.New("certs: a dynamic client is needed to patch ClusterInterceptors")
	}
	return &Manager{secrets: secrets, dyn: dyn, opts: o}, nil
}

// DNSNames returns the names the serving certificate is valid for.
func (m *Manager) DNSNames() []string {
	s, ns := m.opts.serviceName, m.opts.namespace
	return []string{s, s + "." + ns, s + "." + ns + ".svc", s + "." + ns + ".svc.cluster.local"}
}

// GetCertificate serves the current certificate (for tls.Config).
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := m.current.Load()
	if c == nil {
		return nil, errors.New("no serving certificate yet")
	}
	return c, nil
}

// CABundle returns the PEM bundle clients must trust.
func (m *Manager) CABundle() []byte {
	if b := m.bundle.Load(); b != nil {
		return *b
	}
	return nil
}

// Ready reports whether a certificate is loaded.
func (m *Manager) Ready() bool { return m.current.Load() != nil }

// Run calls Sync now and then every interval until ctx ends. A failed Sync
// is logged and retried at the next tick; the certificate in use keeps
// serving.
func (m *Manager) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := m.Sync(ctx); err != nil && ctx.Err() == nil {
			m.opts.log.Error("syncing serving certificate", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sync makes sure the Secret holds a CA and a serving certificate that are
// valid for long enough (creating or renewing them), publishes the CA
// bundle to the ClusterInterceptors, then serves the certificate. The bundle
// is published before the certificate is swapped, so clients never see a
// certificate from a CA they were not yet told about.
func (m *Manager) Sync(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		data, err := m.ensureSecret(ctx)
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			if attempt < 3 {
				continue // another replica wrote it first: use theirs
			}
		}
		if err != nil {
			return err
		}
		if err := m.publish(ctx, data[KeyCABundle]); err != nil {
			return err
		}
		cert, err := tls.X509KeyPair(data[KeyCert], data[KeyKey])
		if err != nil {
			return fmt.Errorf("loading serving certificate from secret %s/%s: %w", m.opts.namespace, m.opts.secretName, err)
		}
		m.current.Store(&cert)
		b := append([]byte(nil), data[KeyCABundle]...)
		m.bundle.Store(&b)
		return nil
	}
}

func (m *Manager) ensureSecret(ctx context.Context) (map[string][]byte, error) {
	api := m.secrets.Secrets(m.opts.namespace)
	s, err := api.Get(ctx, m.opts.secretName, metav1.GetOptions{})
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading TLS secret %s/%s: %w", m.opts.namespace, m.opts.secretName, err)
	}
	if !exists {
		s = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: m.opts.namespace, Name: m.opts.secretName,
				Labels: map[string]string{"app.kubernetes.io/part-of": "ciel", "app.kubernetes.io/component": "interceptor"}},
			Type: corev1.SecretTypeOpaque,
		}
	}
	next, changed, err := m.renew(s.Data)
	if err != nil {
		return nil, err
	}
	if !changed {
		return s.Data, nil
	}
	s.Data = next
	if exists {
		_, err = api.Update(ctx, s, metav1.UpdateOptions{})
	} else {
		_, err = api.Create(ctx, s, metav1.CreateOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("writing TLS secret %s/%s: %w", m.opts.namespace, m.opts.secretName, err)
	}
	m.opts.log.Info("wrote serving certificate", "secret", m.opts.namespace+"/"+m.opts.secretName)
	return next, nil
}

// renew returns the Secret data to use and whether it differs from data.
func (m *Manager) renew(data map[string][]byte) (map[string][]byte, bool, error) {
	now := m.opts.now()
	caCert, caKey, caErr := parseCA(data[KeyCABundle], data[KeyCAKey])
	var previous []*x509.Certificate
	if caErr == nil && m.dueForRenewal(caCert, now) {
		previous = append(previous, caCert)
		caErr = errors.New("CA due for renewal")
	}
	if caErr != nil {
		var err error
		caCert, caKey, err = newCA(now, m.opts.caValidity)
		if err != nil {
			return nil, false, err
		}
	}
	leafOK := caErr == nil && m.leafValid(data[KeyCert], data[KeyKey], caCert, now)
	if leafOK {
		return data, false, nil
	}
	certPEM, keyPEM, err := newLeaf(now, m.opts.certValidity, caCert, caKey, m.DNSNames())
	if err != nil {
		return nil, false, err
	}
	bundle := encodeCert(caCert)
	for _, p := range previous {
		if now.Before(p.NotAfter) {
			bundle = append(bundle, encodeCert(p)...)
		}
	}
	caKeyDER, err := x509.MarshalPKCS8PrivateKey(caKey)
	if err != nil {
		return nil, false, fmt.Errorf("encoding CA key: %w", err)
	}
	return map[string][]byte{
		KeyCABundle: bundle,
		KeyCAKey:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: caKeyDER}),
		KeyCert:     certPEM,
		KeyKey:      keyPEM,
	}, true, nil
}

func (m *Manager) dueForRenewal(c *x509.Certificate, now time.Time) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotAfter.Sub(now) < time.Duration(float64(life)*m.opts.renewFraction)
}

func (m *Manager) leafValid(certPEM, keyPEM []byte, ca *x509.Certificate, now time.Time) bool {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil || len(pair.Certificate) == 0 {
		return false
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || m.dueForRenewal(leaf, now) {
		return false
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, name := range m.DNSNames() {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, CurrentTime: now}); err != nil {
			return false
		}
	}
	return true
}

func (m *Manager) publish(ctx context.Context, bundle []byte) error {
	if len(m.opts.interceptors) == 0 {
		return nil
	}
	api := m.dyn.Resource(ClusterInterceptorResource)
	for _, name := range m.opts.interceptors {
		ci, err := api.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			m.opts.log.Warn("ClusterInterceptor not found; its caBundle will be set once it exists", "name", name)
			continue
		}
		if err != nil {
			return fmt.Errorf("reading ClusterInterceptor %s: %w", name, err)
		}
		if cur, ok := ci.Object["spec"].(map[string]any); ok {
			if cc, ok := cur["clientConfig"].(map[string]any); ok {
				if s, ok := cc["caBundle"].(string); ok && s == b64(bundle) {
					continue
				}
			}
		}
		patch, err := json.Marshal(map[string]any{"spec": map[string]any{"clientConfig": map[string]any{"caBundle": bundle}}})
		if err != nil {
			return fmt.Errorf("encoding caBundle patch: %w", err)
		}
		if _, err := api.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("writing caBundle of ClusterInterceptor %s: %w", name, err)
		}
		m.opts.log.Info("updated ClusterInterceptor caBundle", "name", name)
	}
	return nil
}

// b64 is how a []byte field (caBundle) appears in unstructured JSON.
func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func parseCA(bundlePEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	cert, err := fromPEM(bundlePEM, "CA certificate", x509.ParseCertificate)
	if err != nil {
		return nil, nil, err
	}
	key, err := fromPEM(keyPEM, "CA key", x509.ParsePKCS8PrivateKey)
	if err != nil {
		return nil, nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok || !publicKeysEqual(signer.Public(), cert.PublicKey) {
		return nil, nil, errors.New("CA key does not match the CA certificate")
	}
	return cert, signer, nil
}

// fromPEM parses the first PEM block of data with parse; what names it in
// the error when there is none.
func fromPEM[T any](data []byte, what string, parse func([]byte) (T, error)) (T, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		var zero T
		return zero, errors.New("no " + what)
	}
	return parse(block.Bytes)
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

func newCA(now time.Time, validity time.Duration) (*x509.Certificate, crypto.Signer, error) {
	cert, key, err := issue("CA", &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "ciel interceptor CA", Organization: []string{"ciel"}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func newLeaf(now time.Time, validity time.Duration, ca *x509.Certificate, caKey crypto.Signer, names []string) (certPEM, keyPEM []byte, err error) {
	notAfter := now.Add(validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	cert, key, err := issue("serving", &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, caKey)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding serving key: %w", err)
	}
	return encodeCert(cert), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// issue generates a P-256 key and the certificate tmpl describes for it,
// signed by parentKey for parent, or self-signed when parent is nil; what
// ("CA", "serving") names it in errors.
func issue(what string, tmpl, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating %s key: %w", what, err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("creating %s certificate: %w", what, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing %s certificate: %w", what, err)
	}
	return cert, key, nil
}

func encodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}
