// Package gitlabstatus posts commit statuses to GitLab
// (POST /projects/:id/statuses/:sha, Commits.SetCommitStatus of
// gitlab.com/gitlab-org/api/client-go) and tells its caller what a failure
// means: retry later (network errors, timeouts, 408/409/429/5xx, 401/403
// until the token is fixed), give up (ErrRejected: 400s about the request
// itself, 404 for a missing project or commit), or nothing to do
// (ErrStateReached: GitLab refused the transition because the status is
// already in that state).
//
// The client does not retry by itself: the reporter's work queue does, with
// backoff, and drops a retry as soon as a newer state supersedes it.
package gitlabstatus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"github.com/ciel-ci/ciel/internal/gitlabclient"
	"github.com/ciel-ci/ciel/internal/logopt"
	"github.com/ciel-ci/ciel/internal/option"
	"github.com/ciel-ci/ciel/reporter/status"
)

var (
	// ErrStateReached means GitLab refused the transition because the
	// commit status already is in the posted state ("Cannot transition
	// status via :run from :running"): the post is done.
	ErrStateReached = errors.New("commit status already in that state")
	// ErrRejected means GitLab refused the request for a reason a retry
	// does not fix (unknown project or commit, invalid field).
	ErrRejected = errors.New("commit status rejected by GitLab")
)

// Error is a failed post. It wraps ErrRejected or ErrStateReached when one
// applies; any other Error is worth retrying.
type Error struct {
	// StatusCode is the HTTP status GitLab answered, 0 when the request got
	// no answer (network error, timeout).
	StatusCode int
	// RetryAfter is GitLab's Retry-After, 0 when absent.
	RetryAfter time.Duration
	kind       error
	err        error
}

func (e *Error) Error() string {
	if e.kind != nil {
		return e.kind.Error() + ": " + e.err.Error()
	}
	return e.err.Error()
}

// Unwrap returns the kind (ErrRejected, ErrStateReached) and the cause.
func (e *Error) Unwrap() []error {
	if e.kind == nil {
		return []error{e.err}
	}
	return []error{e.kind, e.err}
}

// Code is a short label for a post's outcome, for metrics: "ok", the HTTP
// status code ("500"), "timeout", "canceled" or "network".
func Code(err error) string {
	if err == nil {
		return "ok"
	}
	var e *Error
	if errors.As(err, &e) && e.StatusCode != 0 {
		return strconv.Itoa(e.StatusCode)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "network"
}

type options struct {
	client  []gitlabclient.Option
	timeout time.Duration
	log     *slog.Logger
}

// Option configures a Client.
type Option func(*options) error

// clientOption passes an option to the GitLab client's constructor
// (package gitlabclient), which validates it.
func clientOption(co gitlabclient.Option) Option {
	return option.Check(true, "", func(o *options) { o.client = append(o.client, co) })
}

// WithToken sets the GitLab access token (sent as PRIVATE-TOKEN). Exactly
// one of WithToken and WithTokenFile is required.
func WithToken(token string) Option {
	return clientOption(gitlabclient.WithToken(strings.TrimSpace(token)))
}

// WithTokenFile reads the access token from a file, such as a mounted
// Secret, and reads it again whenever the file changes, so a rotated token
// is used without a restart.
func WithTokenFile(path string) Option { return clientOption(gitlabclient.WithTokenFile(path)) }

// WithCAFile adds the PEM certificates in path to the system roots when
// verifying GitLab's certificate (a self-hosted GitLab with a private CA).
// Default: system roots only.
func WithCAFile(path string) Option { return clientOption(gitlabclient.WithCAFile(path)) }

// WithTimeout bounds each request. Default: 15s.
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		o.timeout = d // gitlabclient refuses d <= 0
		o.client = append(o.client, gitlabclient.WithTimeout(d))
		return nil
	}
}

// WithUserAgent sets the User-Agent. Default: "ciel-reporter".
func WithUserAgent(ua string) Option { return clientOption(gitlabclient.WithUserAgent(ua)) }

// WithTransport replaces the HTTP transport (tests, proxies). It conflicts
// with WithCAFile. Default: a clone of http.DefaultTransport.
func WithTransport(rt http.RoundTripper) Option { return clientOption(gitlabclient.WithTransport(rt)) }

// WithLogger sets the logger. Default: discard. Tokens are never logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		o.client = append(o.client, gitlabclient.WithLogger(l))
		return logopt.Set(&o.log, l)
	}
}

// Client posts commit statuses.
type Client struct {
	gl      *gitlab.Client
	timeout time.Duration
	log     *slog.Logger
}

// New returns a client for the GitLab at baseURL ("https://gitlab.example.com";
// "/api/v4" is added when missing). It does not retry (see the package
// doc).
func New(baseURL string, opts ...Option) (*Client, error) {
	o := options{timeout: 15 * time.Second, log: logopt.Discard()}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	gl, err := gitlabclient.New(context.Background(), baseURL, append([]gitlabclient.Option{
		gitlabclient.WithUserAgent("ciel-reporter"), gitlabclient.WithTimeout(o.timeout)}, o.client...)...)
	if err != nil {
		return nil, err
	}
	return &Client{gl: gl, timeout: o.timeout, log: o.log}, nil
}

// Post sets one commit status. A nil error means GitLab stored it; see
// Error for the others.
func (c *Client) Post(ctx context.Context, s status.Status) error {
	opt := &gitlab.SetCommitStatusOptions{
		State: gitlab.BuildStateValue(s.State),
		Name:  &s.Name,
	}
	if s.Ref != "" {
		opt.Ref = &s.Ref
	}
	if s.Description != "" {
		opt.Description = &s.Description
	}
	if s.TargetURL != "" {
		opt.TargetURL = &s.TargetURL
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, resp, err := c.gl.Commits.SetCommitStatus(s.ProjectID, s.SHA, opt, gitlab.WithContext(ctx))
	if err == nil {
		return nil
	}
	return classify(fmt.Sprintf("setting commit status %s=%s on project %s commit %s", s.Name, s.State, s.ProjectID, s.SHA), resp, err)
}

func classify(what string, resp *gitlab.Response, err error) error {
	e := &Error{err: fmt.Errorf("%s: %w", what, err)}
	var er *gitlab.ErrorResponse
	switch {
	case errors.As(err, &er) && er.Response != nil:
		e.StatusCode = er.Response.StatusCode
	case errors.Is(err, gitlab.ErrNotFound):
		e.StatusCode = http.StatusNotFound
	case resp != nil && resp.Response != nil:
		e.StatusCode = resp.StatusCode
	}
	if resp != nil && resp.Response != nil {
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"))
	}
	switch code := e.StatusCode; {
	case code == 0:
		// No answer: retry.
	case code == http.StatusBadRequest && er != nil &&
		(strings.Contains(er.Message, "Cannot transition status") || strings.Contains(string(er.Body), "Cannot transition status")):
		e.kind = ErrStateReached
	case code == http.StatusRequestTimeout, code == http.StatusConflict, code == http.StatusTooEarly,
		code == http.StatusTooManyRequests, code >= 500:
		// Transient by nature; 409 is "another update to this commit
		// status is in progress".
	case code == http.StatusUnauthorized, code == http.StatusForbidden:
		// Retried: a rotated token file or a granted permission heals it.
	case code >= 400:
		e.kind = ErrRejected
	}
	return e
}

func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
