// Package gitlabapi completes the changed files of a push from the GitLab
// API when the webhook payload cannot list them: more than 20 commits, a
// new branch, a force push.
//
// Source implements gitlab.ChangedFilesSource. For a complete payload it
// returns the payload's list without a request. Otherwise it asks GitLab's
// repository compare API:
//
//   - an existing branch: compare before..after straight (two dots), so a
//     force push diffs the old tip against the new one, as git diff does;
//   - a new branch (before is all zeros): compare the project's default
//     branch with after through their merge base (three dots): what the
//     branch adds;
//   - a tag push or a deletion: no request; a tag's files are not what a
//     release decides on (docs/extensions.md).
//
// GitLab cuts large compares (the compare_timeout flag, or the diff list
// capped at its "maximum diff files" limit, 1,000 by default). Then the
// diffs of each commit of the range are fetched page by page and combined
// with the payload's net semantics (added then removed is nothing). Where
// completeness ends: GitLab also caps a single commit's diff list; a
// commit beyond that cap is not listed, and Truncated stays true then.
//
// Results are cached by (project, before, after), concurrent identical
// lookups share one request, and the client retries 429/5xx with backoff
// (honouring Retry-After) before giving up with an error that says why.
package gitlabapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go"
	"golang.org/x/sync/singleflight"

	"github.com/ciel-ci/ciel/interceptor/gitlab"
	"github.com/ciel-ci/ciel/internal/lru"
)

const (
	// DefaultTimeout bounds one HTTP request to GitLab.
	DefaultTimeout = 10 * time.Second
	// DefaultRetries is how many times a failed request is retried.
	DefaultRetries = 3
	// DefaultCacheSize is how many compares are remembered.
	DefaultCacheSize = 4096
	// DefaultMaxDiffFiles is GitLab's default "maximum diff files" limit:
	// a compare listing this many files may have been cut.
	DefaultMaxDiffFiles = 1000
	// maxCommitPages bounds the per-commit fallback.
	maxCommitPages = 50
)

// Stats are counters for metrics.
type Stats struct {
	Requests, Errors, CacheHits, Fallbacks atomic.Uint64
}

// Source completes changed files from the GitLab API.
type Source struct {
	client       *gl.Client
	maxDiffFiles int
	logger       *slog.Logger
	group        singleflight.Group
	cache        *lru.Cache[gitlab.ChangedFiles]
	stats        Stats
}

var _ gitlab.ChangedFilesSource = (*Source)(nil)

type options struct {
	httpClient   *http.Client
	timeout      time.Duration
	retries      int
	cacheSize    int
	maxDiffFiles int
	logger       *slog.Logger
	waitMin      time.Duration
	waitMax      time.Duration
}

// Option configures New.
type Option func(*options) error

// WithHTTPClient sets the HTTP client (its Transport is used; TLS settings
// for a private CA go there). Default: a client with DefaultTimeout.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) error {
		if c == nil {
			return errors.New("http client is nil")
		}
		o.httpClient = c
		return nil
	}
}

// WithTimeout bounds each request. Default: DefaultTimeout.
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("timeout must be positive, got %s", d)
		}
		o.timeout = d
		return nil
	}
}

// WithRetries sets how many times a request failing with 429, 5xx or a
// connection error is retried, with exponential backoff and jitter between
// waitMin and waitMax (Retry-After honoured). Default: DefaultRetries,
// 100ms to 2s.
func WithRetries(n int, waitMin, waitMax time.Duration) Option {
	return func(o *options) error {
		if n < 0 || waitMin <= 0 || waitMax < waitMin {
			return fmt.Errorf("retries %d between %s and %s: want n >= 0 and 0 < min <= max", n, waitMin, waitMax)
		}
		o.retries, o.waitMin, o.waitMax = n, waitMin, waitMax
		return nil
	}
}

// WithCacheSize sets how many compares are remembered. Default:
// DefaultCacheSize.
func WithCacheSize(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("cache size must be positive, got %d", n)
		}
		o.cacheSize = n
		return nil
	}
}

// WithMaxDiffFiles sets the instance's "maximum diff files" limit: a
// compare listing that many files is completed commit by commit. Default:
// DefaultMaxDiffFiles.
func WithMaxDiffFiles(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("max diff files must be positive, got %d", n)
		}
		o.maxDiffFiles = n
		return nil
	}
}

// WithLogger sets the logger. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("logger is nil")
		}
		o.logger = l
		return nil
	}
}

// New returns a Source for the GitLab at baseURL (https://gitlab.example.com)
// with an API token (read_api scope suffices).
func New(baseURL, token string, opts ...Option) (*Source, error) {
	o := options{timeout: DefaultTimeout, retries: DefaultRetries, cacheSize: DefaultCacheSize,
		maxDiffFiles: DefaultMaxDiffFiles, waitMin: 100 * time.Millisecond, waitMax: 2 * time.Second}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("configuring the GitLab API client: %w", err)
		}
	}
	if baseURL == "" {
		return nil, errors.New("configuring the GitLab API client: no base URL")
	}
	if token == "" {
		return nil, errors.New("configuring the GitLab API client: no token")
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	hc := o.httpClient
	if hc == nil {
		hc = &http.Client{}
	}
	hc = &http.Client{Transport: hc.Transport, Timeout: o.timeout, CheckRedirect: hc.CheckRedirect}
	copts := []gl.ClientOptionFunc{
		gl.WithBaseURL(strings.TrimSuffix(baseURL, "/") + "/api/v4"),
		gl.WithHTTPClient(hc),
		gl.WithCustomRetryMax(o.retries),
		gl.WithCustomRetryWaitMinMax(o.waitMin, o.waitMax),
	}
	if o.retries == 0 {
		copts = append(copts, gl.WithoutRetries())
	}
	c, err := gl.NewClient(token, copts...)
	if err != nil {
		return nil, fmt.Errorf("configuring the GitLab API client: %w", err)
	}
	return &Source{client: c, maxDiffFiles: o.maxDiffFiles, logger: o.logger, cache: lru.New[gitlab.ChangedFiles](o.cacheSize)}, nil
}

// Stats returns the counters (requests, errors, cache hits, fallbacks).
func (s *Source) Stats() *Stats { return &s.stats }

// ChangedFiles returns the payload's changed files when they are complete
// and the compare's otherwise.
func (s *Source) ChangedFiles(ctx context.Context, e *gitlab.PushEvent) (gitlab.ChangedFiles, error) {
	payload := gitlab.PayloadChangedFiles(e)
	if !payload.Truncated {
		return payload, nil
	}
	return s.Compare(ctx, e)
}

// Compare asks GitLab for the changed files of e whatever the payload says
// (the interceptor's changedFiles: api).
func (s *Source) Compare(ctx context.Context, e *gitlab.PushEvent) (gitlab.ChangedFiles, error) {
	facts := e.Facts()
	if facts.IsDelete || facts.IsTag {
		return gitlab.PayloadChangedFiles(e), nil
	}
	pid := e.ProjectID
	if pid == 0 {
		pid = e.Project.ID
	}
	if pid == 0 {
		return gitlab.ChangedFiles{}, errors.New("completing changed files: the payload has no project id")
	}
	from, straight := e.Before, true
	if facts.IsNewRef {
		if facts.DefaultBranch == "" {
			return gitlab.ChangedFiles{}, errors.New("completing changed files of a new branch: the payload names no default branch")
		}
		from, straight = facts.DefaultBranch, false
	}
	key := fmt.Sprintf("%d|%s|%s|%v", pid, from, e.After, straight)
	if cf, ok := s.cache.Get(key); ok {
		s.stats.CacheHits.Add(1)
		return cf, nil
	}
	v, err, _ := s.group.Do(key, func() (any, error) {
		cf, err := s.compare(ctx, pid, from, e.After, straight)
		if err != nil {
			return nil, err
		}
		s.cache.Add(key, cf)
		return cf, nil
	})
	if err != nil {
		return gitlab.ChangedFiles{}, err
	}
	return v.(gitlab.ChangedFiles), nil
}

func (s *Source) compare(ctx context.Context, pid int64, from, to string, straight bool) (gitlab.ChangedFiles, error) {
	s.stats.Requests.Add(1)
	cmp, resp, err := s.client.Repositories.Compare(pid, &gl.CompareOptions{From: &from, To: &to, Straight: &straight}, gl.WithContext(ctx))
	if err != nil {
		s.stats.Errors.Add(1)
		return gitlab.ChangedFiles{}, describe(fmt.Sprintf("comparing %s...%s in project %d", short(from), short(to), pid), resp, err)
	}
	if !cmp.CompareTimeout && len(cmp.Diffs) < s.maxDiffFiles {
		return fromDiffs([][]*gl.Diff{cmp.Diffs}, false), nil
	}
	// Cut by GitLab: combine the commits' own diffs, oldest first.
	s.stats.Fallbacks.Add(1)
	s.logger.InfoContext(ctx, "compare cut by GitLab, reading commit diffs", "project", pid, "commits", len(cmp.Commits), "timeout", cmp.CompareTimeout)
	var all [][]*gl.Diff
	cut := false
	for _, c := range cmp.Commits {
		var diffs []*gl.Diff
		opt := &gl.GetCommitDiffOptions{ListOptions: gl.ListOptions{PerPage: 100, Page: 1}}
		for page := 0; ; page++ {
			if page == maxCommitPages {
				cut = true
				break
			}
			s.stats.Requests.Add(1)
			d, resp, err := s.client.Commits.GetCommitDiff(pid, c.ID, opt, gl.WithContext(ctx))
			if err != nil {
				s.stats.Errors.Add(1)
				return gitlab.ChangedFiles{}, describe(fmt.Sprintf("reading the diff of commit %s in project %d", short(c.ID), pid), resp, err)
			}
			diffs = append(diffs, d...)
			if resp == nil || resp.NextPage == 0 {
				break
			}
			opt.Page = resp.NextPage
		}
		all = append(all, diffs)
	}
	return fromDiffs(all, cut), nil
}

// fromDiffs turns diffs (one list per commit, oldest first) into changed
// files with the payload's net semantics.
func fromDiffs(commits [][]*gl.Diff, truncated bool) gitlab.ChangedFiles {
	if len(commits) == 0 {
		return gitlab.ChangedFiles{All: []string{}, Added: []string{}, Modified: []string{}, Removed: []string{}, Source: gitlab.SourceAPI, Truncated: truncated}
	}
	ev := &gitlab.PushEvent{ObjectKind: "push", Ref: "refs/heads/x", Before: "1", After: "2",
		TotalCommitsCount: int64(len(commits))}
	for _, diffs := range commits {
		var c gitlab.Commit
		for _, d := range diffs {
			switch {
			case d.NewFile:
				c.Added = append(c.Added, d.NewPath)
			case d.DeletedFile:
				c.Removed = append(c.Removed, d.OldPath)
			case d.RenamedFile:
				c.Removed = append(c.Removed, d.OldPath)
				c.Added = append(c.Added, d.NewPath)
			default:
				c.Modified = append(c.Modified, d.NewPath)
			}
		}
		ev.Commits = append(ev.Commits, c)
	}
	cf := gitlab.PayloadChangedFiles(ev)
	cf.Source = gitlab.SourceAPI
	cf.Truncated = truncated
	return cf
}

// describe says why a request failed, with GitLab's status when it answered.
func describe(what string, resp *gl.Response, err error) error {
	if resp != nil && resp.Response != nil {
		return fmt.Errorf("%s: GitLab answered %s: %w", what, resp.Status, err)
	}
	return fmt.Errorf("%s: GitLab unreachable: %w", what, err)
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
