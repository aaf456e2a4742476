// Package gitlabclient builds the GitLab API client of every ciel component
// (the interceptor's changed-files lookups, the reporter's commit
// statuses): one constructor over gitlab.com/gitlab-org/api/client-go, so
// that the token, the certificate authorities, the retries and the redirect
// rule are set up once.
//
// The client sends its token as PRIVATE-TOKEN, from a string or from a
// file re-read when its content changes (package filewatch: a rotated
// Secret is used without a restart). It verifies GitLab with the system
// roots plus an optional CA file, follows redirects only on the same host
// (package httpredirect: the token never leaves it), bounds each request
// with a timeout, and retries only when asked to.
package gitlabclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"github.com/ciel-ci/ciel/internal/capool"
	"github.com/ciel-ci/ciel/internal/filewatch"
	"github.com/ciel-ci/ciel/internal/httpredirect"
	"github.com/ciel-ci/ciel/internal/logopt"
	"github.com/ciel-ci/ciel/internal/option"
)

// DefaultTimeout bounds one HTTP request to GitLab.
const DefaultTimeout = 10 * time.Second

// maxTokenBytes bounds a token file; longer content is cut there, as a
// token never is that long.
const maxTokenBytes = 64 << 10

type options struct {
	token, tokenFile string
	caFile           string
	transport        http.RoundTripper
	timeout          time.Duration
	retries          int
	waitMin, waitMax time.Duration
	userAgent        string
	log              *slog.Logger
}

// Option configures New.
type Option func(*options) error

// WithToken sets the access token (sent as PRIVATE-TOKEN). Exactly one of
// WithToken and WithTokenFile is required.
func WithToken(token string) Option {
	return option.Check(strings.TrimSpace(token) != "", "gitlab token must not be empty", func(o *options) { o.token = token })
}

// WithTokenFile reads the access token from a file, such as a mounted
// Secret, and again whenever its content changes, so a rotated token is
// used without a restart. A file that cannot be read or is empty fails the
// request (a retryable error), never the process.
func WithTokenFile(path string) Option {
	return option.Check(path != "", "gitlab token file must not be empty", func(o *options) { o.tokenFile = path })
}

// WithCAFile adds the PEM certificates in path to the system roots when
// verifying GitLab's certificate (a self-hosted GitLab with a private CA).
// It conflicts with WithTransport. Default: system roots only.
func WithCAFile(path string) Option {
	return option.Check(path != "", "gitlab CA file must not be empty", func(o *options) { o.caFile = path })
}

// WithTransport replaces the HTTP transport (tests, proxies, counting
// wrappers). It conflicts with WithCAFile. Default: a clone of
// http.DefaultTransport requiring TLS 1.2 or later.
func WithTransport(rt http.RoundTripper) Option {
	return option.Check(rt != nil, "transport must not be nil", func(o *options) { o.transport = rt })
}

// WithTimeout bounds each request. Default: DefaultTimeout.
func WithTimeout(d time.Duration) Option {
	return option.Check(d > 0, fmt.Sprintf("gitlab timeout must be positive, got %s", d), func(o *options) { o.timeout = d })
}

// WithRetries sets how many times a request failing with 429, 5xx or a
// connection error is retried, with exponential backoff and jitter between
// waitMin and waitMax (Retry-After honoured). Default: no retries.
func WithRetries(n int, waitMin, waitMax time.Duration) Option {
	return option.Check(n >= 0 && waitMin > 0 && waitMax >= waitMin,
		fmt.Sprintf("retries %d between %s and %s: want n >= 0 and 0 < min <= max", n, waitMin, waitMax),
		func(o *options) { o.retries, o.waitMin, o.waitMax = n, waitMin, waitMax })
}

// WithUserAgent sets the User-Agent. Default: client-go's.
func WithUserAgent(ua string) Option {
	return option.Check(ua != "", "user agent must not be empty", func(o *options) { o.userAgent = ua })
}

// WithLogger sets the logger of client-go's warnings. Default: discard.
// Tokens are never logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { return logopt.Set(&o.log, l) }
}

// New returns a client for the GitLab at baseURL ("https://gitlab.example.com";
// "/api/v4" is added when missing). A token file is read now: one that
// cannot be read or is empty is an error.
func New(ctx context.Context, baseURL string, opts ...Option) (*gitlab.Client, error) {
	o := options{timeout: DefaultTimeout, log: logopt.Discard()}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	switch {
	case baseURL == "":
		return nil, errors.New("gitlab base URL must not be empty")
	case !strings.HasPrefix(baseURL, "https://") && !strings.HasPrefix(baseURL, "http://"):
		return nil, fmt.Errorf("gitlab base URL %q must start with https:// or http://", baseURL)
	case o.token == "" && o.tokenFile == "":
		return nil, errors.New("a gitlab token or token file is required")
	case o.token != "" && o.tokenFile != "":
		return nil, errors.New("gitlab token and token file are mutually exclusive")
	case o.transport != nil && o.caFile != "":
		return nil, errors.New("gitlab transport and CA file are mutually exclusive")
	}
	var auth gitlab.AuthSource = gitlab.AccessTokenAuthSource{Token: o.token}
	if o.tokenFile != "" {
		ft, err := newFileToken(ctx, o.tokenFile)
		if err != nil {
			return nil, err
		}
		auth = ft
	}
	rt := o.transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if o.caFile != "" {
			pool, err := capool.Load(o.caFile)
			if err != nil {
				return nil, fmt.Errorf("verifying GitLab: %w", err)
			}
			t.TLSClientConfig.RootCAs = pool
		}
		rt = t
	}
	copts := []gitlab.ClientOptionFunc{
		gitlab.WithURLWarningLogger(o.log),
		gitlab.WithBaseURL(strings.TrimSuffix(baseURL, "/")),
		// The token must not follow a redirect to another host.
		gitlab.WithHTTPClient(&http.Client{Transport: rt, Timeout: o.timeout, CheckRedirect: httpredirect.SameHost}),
	}
	if o.retries == 0 {
		copts = append(copts, gitlab.WithoutRetries())
	} else {
		copts = append(copts, gitlab.WithCustomRetryMax(o.retries), gitlab.WithCustomRetryWaitMinMax(o.waitMin, o.waitMax))
	}
	if o.userAgent != "" {
		copts = append(copts, gitlab.WithUserAgent(o.userAgent))
	}
	c, err := gitlab.NewAuthSourceClient(auth, copts...)
	if err != nil {
		return nil, fmt.Errorf("creating gitlab client for %s: %w", baseURL, err)
	}
	return c, nil
}

// fileToken is a gitlab.AuthSource reading the token from a file, again
// whenever its content changes.
type fileToken struct {
	token *filewatch.Value[string]
}

var _ gitlab.AuthSource = (*fileToken)(nil)

func newFileToken(ctx context.Context, path string) (*fileToken, error) {
	v, err := filewatch.New(ctx, filewatch.Files(path), func(context.Context) (string, error) {
		fh, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer fh.Close()
		b, err := io.ReadAll(io.LimitReader(fh, maxTokenBytes))
		if err != nil {
			return "", err
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("gitlab token file %s is empty", path)
		}
		return tok, nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading gitlab token file: %w", err)
	}
	return &fileToken{token: v}, nil
}

func (*fileToken) Init(context.Context, *gitlab.Client) error { return nil }

// Header reads the file again (a content hash; parsed only when changed).
// A file that became unreadable or empty fails the request rather than
// sending a token that was rotated away.
func (f *fileToken) Header(ctx context.Context) (string, string, error) {
	if _, err := f.token.Reload(ctx); err != nil {
		return "", "", fmt.Errorf("reading gitlab token file: %w", err)
	}
	tok, _ := f.token.Get()
	return gitlab.AccessTokenHeaderName, tok, nil
}
