// Package registryclient holds the registry settings every ciel command
// shares: credentials, trust, plain-HTTP registries, retries, timeouts and
// the user agent. It turns them into go-containerregistry options
// ([]remote.Option for requests, []name.Option for parsing references), so
// that `ciel index` and `ciel release` talk to registries the same way.
//
// Credentials come from authn.DefaultKeychain by default: the docker
// config.json Kaniko and docker use ($DOCKER_CONFIG/config.json, else
// ~/.docker/config.json), then podman's auth.json, then anonymous.
//
// Registries with a self-signed CA (a common pain with Tekton and Kaniko)
// are trusted with WithCAFile, which adds the PEM certificates of a file to
// the system roots; $SSL_CERT_FILE and $SSL_CERT_DIR keep working as Go
// documents. TLS verification is never switched off.
//
// Transient failures are retried with exponential backoff: HTTP 408, 429,
// 500, 502, 503, 504 (and the proxy codes 499 and 522), and dropped or reset
// connections. Writes are retried by go-containerregistry as a whole request,
// so a manifest PUT is never sent with a half-consumed body.
package registryclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ciel-ci/ciel/internal/capool"
	"github.com/ciel-ci/ciel/internal/logopt"
	"github.com/ciel-ci/ciel/internal/option"
)

// Defaults, in one place.
const (
	// DefaultUserAgent is sent (followed by go-containerregistry's own
	// product token) unless WithUserAgent says otherwise.
	DefaultUserAgent = "ciel"
	// DefaultAttempts is how many times a request is tried in all.
	DefaultAttempts = 5
	// DefaultRetryDelay is the wait before the first retry; each further
	// wait doubles, capped at maxRetryDelay.
	DefaultRetryDelay = 500 * time.Millisecond
	// DefaultResponseTimeout bounds the wait for a response's headers once a
	// request has been sent.
	DefaultResponseTimeout = 60 * time.Second
	// DefaultJobs is how many requests an operation may run in parallel.
	DefaultJobs = 4

	maxRetryDelay = 20 * time.Second
)

// retryStatusCodes are answered by registries and the proxies in front of
// them for conditions that pass: rate limits, restarts, overload.
var retryStatusCodes = []int{
	http.StatusRequestTimeout,
	http.StatusTooManyRequests,
	http.StatusInternalServerError,
	http.StatusBadGateway,
	http.StatusServiceUnavailable,
	http.StatusGatewayTimeout,
	499, // nginx: client closed request
	522, // Cloudflare: connection timed out
}

type options struct {
	keychain        authn.Keychain
	caFile          string
	insecure        bool
	userAgent       string
	attempts        int
	retryDelay      time.Duration
	responseTimeout time.Duration
	timeoutSet      bool
	jobs            int
	transport       http.RoundTripper
	logger          *slog.Logger
}

// Option configures a Client.
type Option func(*options) error

// WithKeychain sets where credentials come from. Default:
// authn.DefaultKeychain (docker config.json, honouring $DOCKER_CONFIG).
func WithKeychain(k authn.Keychain) Option {
	return option.Check(k != nil, "registry keychain must not be nil", func(o *options) { o.keychain = k })
}

// WithCAFile trusts the PEM certificates in path in addition to the system
// roots, for registries whose certificate is signed by a private CA. An empty
// path is ignored. Default: system roots only. The file is read by New.
func WithCAFile(path string) Option {
	return option.Check(true, "", func(o *options) { o.caFile = path })
}

// WithInsecure allows plain HTTP to every registry (after HTTPS is tried),
// for registries served without TLS. go-containerregistry already allows it
// for loopback, RFC 1918 and *.local addresses. It never disables TLS
// verification: use WithCAFile for self-signed certificates. Default: false.
func WithInsecure(insecure bool) Option {
	return option.Check(true, "", func(o *options) { o.insecure = insecure })
}

// WithUserAgent sets the product token sent in User-Agent. Default:
// DefaultUserAgent.
func WithUserAgent(ua string) Option {
	return option.Check(strings.TrimSpace(ua) != "", "user agent must not be empty", func(o *options) { o.userAgent = ua })
}

// WithRetry sets how many times a request is tried in all (1 means no
// retry) and the wait before the first retry; later waits double, up to
// 20s. Default: DefaultAttempts and DefaultRetryDelay.
func WithRetry(attempts int, firstDelay time.Duration) Option {
	msg := fmt.Sprintf("retry attempts must be at least 1, got %d", attempts)
	if attempts >= 1 {
		msg = fmt.Sprintf("retry delay must be positive, got %s", firstDelay)
	}
	return option.Check(attempts >= 1 && firstDelay > 0, msg, func(o *options) { o.attempts, o.retryDelay = attempts, firstDelay })
}

// WithResponseTimeout bounds how long a request waits for the response
// headers after it was sent; a registry that accepts the connection and
// then hangs fails (and is retried) instead of stalling the pipeline.
// Default: DefaultResponseTimeout. Bound a whole operation with its context.
func WithResponseTimeout(d time.Duration) Option {
	return option.Check(d > 0, fmt.Sprintf("response timeout must be positive, got %s", d),
		func(o *options) { o.responseTimeout, o.timeoutSet = d, true })
}

// WithJobs sets how many requests one operation may run in parallel.
// Default: DefaultJobs.
func WithJobs(n int) Option {
	return option.Check(n >= 1, fmt.Sprintf("jobs must be at least 1, got %d", n), func(o *options) { o.jobs = n })
}

// WithTransport replaces the base HTTP transport (retries, authentication
// and the user agent are still layered on top). It cannot be combined with
// WithCAFile or WithResponseTimeout, which configure the default transport.
// Default: a clone of remote.DefaultTransport.
func WithTransport(rt http.RoundTripper) Option {
	return option.Check(rt != nil, "transport must not be nil", func(o *options) { o.transport = rt })
}

// WithLogger receives a warning for each retried request. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { return logopt.Set(&o.logger, l) }
}

// Client is a validated set of registry settings. It holds no connection
// state of its own and is safe for concurrent use.
type Client struct {
	keychain  authn.Keychain
	transport http.RoundTripper
	insecure  bool
	userAgent string
	backoff   remote.Backoff
	jobs      int
	logger    *slog.Logger
}

// New validates the options and builds a Client.
func New(opts ...Option) (*Client, error) {
	o := options{
		keychain:        authn.DefaultKeychain,
		userAgent:       DefaultUserAgent,
		attempts:        DefaultAttempts,
		retryDelay:      DefaultRetryDelay,
		responseTimeout: DefaultResponseTimeout,
		jobs:            DefaultJobs,
		logger:          logopt.Discard(),
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}

	rt := o.transport
	if rt != nil {
		if o.caFile != "" {
			return nil, errors.New("a CA file cannot be combined with a custom transport")
		}
		if o.timeoutSet {
			return nil, errors.New("a response timeout cannot be combined with a custom transport")
		}
	} else {
		t := remote.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = o.responseTimeout
		if o.caFile != "" {
			pool, err := capool.Load(o.caFile)
			if err != nil {
				return nil, err
			}
			t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		rt = t
	}
	return &Client{
		keychain:  o.keychain,
		transport: rt,
		insecure:  o.insecure,
		userAgent: o.userAgent,
		backoff: remote.Backoff{
			Duration: o.retryDelay,
			Factor:   2,
			Jitter:   0.1,
			Steps:    o.attempts,
			Cap:      maxRetryDelay,
		},
		jobs:   o.jobs,
		logger: o.logger,
	}, nil
}

// RemoteOptions returns the options for go-containerregistry's remote
// package; ctx bounds every request made with them, including lazy ones.
// Everything done with one call's options (one command's operation) shares
// each registry's answer to the API version check (GET /v2/), which
// go-containerregistry otherwise asks again for every repository it reads
// or writes.
func (c *Client) RemoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(c.keychain),
		remote.WithTransport(newPingShare(c.transport)),
		remote.WithUserAgent(c.userAgent),
		remote.WithRetryBackoff(c.backoff),
		remote.WithRetryPredicate(c.shouldRetry),
		remote.WithRetryStatusCodes(retryStatusCodes...),
		remote.WithJobs(c.jobs),
	}
}

// NameOptions returns the options for parsing references with
// go-containerregistry's name package.
func (c *Client) NameOptions() []name.Option {
	if c.insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

// ParseReference parses a tag or digest reference (REPO:TAG, REPO@sha256:…).
func (c *Client) ParseReference(s string) (name.Reference, error) {
	ref, err := name.ParseReference(s, c.NameOptions()...)
	if err != nil {
		return nil, fmt.Errorf("parsing image reference %q: %w", s, err)
	}
	return ref, nil
}

// ParseTag parses REPO:TAG and requires the tag to be spelled out: a
// missing tag is an error, not "latest".
func (c *Client) ParseTag(s string) (name.Tag, error) {
	opts := append(c.NameOptions(), name.WithDefaultTag(""))
	t, err := name.NewTag(s, opts...)
	if err != nil {
		return name.Tag{}, fmt.Errorf("parsing tag %q: %w", s, err)
	}
	if t.TagStr() == "" {
		return name.Tag{}, fmt.Errorf("parsing tag %q: no tag given (write REPO:TAG)", s)
	}
	return t, nil
}

// ParseRepository parses REGISTRY/REPO (no tag, no digest).
func (c *Client) ParseRepository(s string) (name.Repository, error) {
	r, err := name.NewRepository(s, c.NameOptions()...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("parsing repository %q: %w", s, err)
	}
	return r, nil
}

// shouldRetry reports whether err is worth another attempt: a registry
// answer that go-containerregistry classifies as temporary (the retried
// status codes), or a dropped connection. A cancelled or expired context is
// never retried.
func (c *Client) shouldRetry(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if !isTransient(err) {
		return false
	}
	c.logger.Warn("retrying registry request", "error", err)
	return true
}

func isTransient(err error) bool {
	var temp interface{ Temporary() bool }
	if errors.As(err, &temp) && temp.Temporary() {
		return true
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed)
}
