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
//
// Every push has a total budget, whatever GitLab answers: at most
// WithMaxCommits commits read one by one, WithMaxPages diff pages,
// WithMaxBytes bytes of responses and WithMaxDuration of time. Only paths
// are decoded (a diff's text is skipped). Past a cap the result is what was
// read so far with Truncated true, and the policy's truncated branch
// decides, as when GitLab cuts the payload. The client is built by package
// gitlabclient: it follows redirects only on the same host, so the token
// never leaves it.
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
	"github.com/ciel-ci/ciel/internal/gitlabclient"
	"github.com/ciel-ci/ciel/internal/logopt"
	"github.com/ciel-ci/ciel/internal/lru"
	"github.com/ciel-ci/ciel/internal/option"
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
	// maxCommitPages bounds the pages of one commit's diff.
	maxCommitPages = 50
	// DefaultMaxCommits bounds the commits whose diffs are read one by one
	// for one push.
	DefaultMaxCommits = 100
	// DefaultMaxPages bounds the diff pages (100 files each) read for one
	// push, all commits together.
	DefaultMaxPages = 200
	// DefaultMaxBytes bounds the bytes of GitLab's responses read for one
	// push: 200 pages of 100 paths fit with room to spare; a compare whose
	// inline diffs exceed it is cut.
	DefaultMaxBytes = 32 << 20
	// DefaultMaxDuration bounds the time spent on one push, below the
	// interceptor's request timeout so that a truncated answer still
	// arrives in time.
	DefaultMaxDuration = 10 * time.Second
)

// Stats are counters for metrics.
type Stats struct {
	Requests, Errors, CacheHits, Fallbacks atomic.Uint64
	// Truncations counts pushes whose lookup a limit cut.
	Truncations atomic.Uint64
}

// Source completes changed files from the GitLab API.
type Source struct {
	client       *gl.Client
	maxDiffFiles int
	limits       limits
	logger       *slog.Logger
	group        singleflight.Group
	cache        *lru.Cache[gitlab.ChangedFiles]
	commits      *lru.Cache[bool] // commits known to exist, by project path and SHA
	stats        Stats
}

var _ gitlab.ChangedFilesSource = (*Source)(nil)

type options struct {
	httpClient   *http.Client
	client       []gitlabclient.Option
	cacheSize    int
	maxDiffFiles int
	logger       *slog.Logger
	limits       limits
}

// limits are the caps of one push's lookup.
type limits struct {
	commits, pages int
	bytes          int64
	duration       time.Duration
}

// Option configures New.
type Option func(*options) error

// WithHTTPClient sets the HTTP client (its Transport is used; TLS settings
// for a private CA go there). Default: a client with DefaultTimeout.
func WithHTTPClient(c *http.Client) Option {
	return option.Check(c != nil, "http client is nil", func(o *options) { o.httpClient = c })
}

// WithTimeout bounds each request. Default: DefaultTimeout.
func WithTimeout(d time.Duration) Option { return clientOption(gitlabclient.WithTimeout(d)) }

// WithRetries sets how many times a request failing with 429, 5xx or a
// connection error is retried, with exponential backoff and jitter between
// waitMin and waitMax (Retry-After honoured). Default: DefaultRetries,
// 100ms to 2s.
func WithRetries(n int, waitMin, waitMax time.Duration) Option {
	return clientOption(gitlabclient.WithRetries(n, waitMin, waitMax))
}

// clientOption passes an option to the client's constructor (package
// gitlabclient), which validates it.
func clientOption(co gitlabclient.Option) Option {
	return option.Check(true, "", func(o *options) { o.client = append(o.client, co) })
}

// WithCacheSize sets how many compares are remembered. Default:
// DefaultCacheSize.
func WithCacheSize(n int) Option {
	return option.Check(n > 0, fmt.Sprintf("cache size must be positive, got %d", n), func(o *options) { o.cacheSize = n })
}

// WithMaxDiffFiles sets the instance's "maximum diff files" limit: a
// compare listing that many files is completed commit by commit. Default:
// DefaultMaxDiffFiles.
func WithMaxDiffFiles(n int) Option {
	return option.Check(n > 0, fmt.Sprintf("max diff files must be positive, got %d", n), func(o *options) { o.maxDiffFiles = n })
}

// WithMaxCommits bounds the commits whose diffs are read one by one for one
// push; past it the result is truncated. Default: DefaultMaxCommits.
func WithMaxCommits(n int) Option {
	return option.Check(n > 0, fmt.Sprintf("max commits must be positive, got %d", n), func(o *options) { o.limits.commits = n })
}

// WithMaxPages bounds the diff pages read for one push, all commits
// together; past it the result is truncated. Default: DefaultMaxPages.
func WithMaxPages(n int) Option {
	return option.Check(n > 0, fmt.Sprintf("max pages must be positive, got %d", n), func(o *options) { o.limits.pages = n })
}

// WithMaxBytes bounds the bytes of GitLab's responses read for one push;
// past it the result is truncated. Default: DefaultMaxBytes.
func WithMaxBytes(n int64) Option {
	return option.Check(n > 0, fmt.Sprintf("max bytes must be positive, got %d", n), func(o *options) { o.limits.bytes = n })
}

// WithMaxDuration bounds the time spent on one push; past it the result is
// what was read, truncated. Default: DefaultMaxDuration.
func WithMaxDuration(d time.Duration) Option {
	return option.Check(d > 0, fmt.Sprintf("max duration must be positive, got %s", d), func(o *options) { o.limits.duration = d })
}

// WithLogger sets the logger. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { return logopt.Set(&o.logger, l) }
}

// New returns a Source for the GitLab at baseURL (https://gitlab.example.com)
// with an API token (read_api scope suffices).
func New(baseURL, token string, opts ...Option) (*Source, error) {
	o := options{cacheSize: DefaultCacheSize, maxDiffFiles: DefaultMaxDiffFiles, logger: logopt.Discard(),
		client: []gitlabclient.Option{gitlabclient.WithTimeout(DefaultTimeout), gitlabclient.WithRetries(DefaultRetries, 100*time.Millisecond, 2*time.Second)},
		limits: limits{commits: DefaultMaxCommits, pages: DefaultMaxPages, bytes: DefaultMaxBytes, duration: DefaultMaxDuration}}
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
	var rt http.RoundTripper = http.DefaultTransport
	if o.httpClient != nil && o.httpClient.Transport != nil {
		rt = o.httpClient.Transport
	}
	c, err := gitlabclient.New(context.Background(), baseURL, append(o.client, gitlabclient.WithToken(token),
		gitlabclient.WithTransport(countingTransport{rt}), gitlabclient.WithLogger(o.logger))...)
	if err != nil {
		return nil, fmt.Errorf("configuring the GitLab API client: %w", err)
	}
	return &Source{client: c, maxDiffFiles: o.maxDiffFiles, limits: o.limits, logger: o.logger,
		cache: lru.New[gitlab.ChangedFiles](o.cacheSize), commits: lru.New[bool](o.cacheSize)}, nil
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
	return s.lookup(ctx, key, true, func(ctx context.Context, b *budget) (gitlab.ChangedFiles, error) {
		return s.compare(ctx, b, pid, from, e.After, straight)
	}, func() gitlab.ChangedFiles {
		return gitlab.PayloadChangedFiles(e) // cut during the compare itself: the payload's list
	})
}

// lookup runs fn once for concurrent callers of key, within one budget of
// the Source's limits (WithMaxCommits, WithMaxPages, WithMaxBytes,
// WithMaxDuration), and caches a complete answer when cache is set. When a
// cap stops fn, the answer is what fn read so far (or cut(), when it read
// nothing) with Truncated true: the policy's truncated branch decides.
func (s *Source) lookup(ctx context.Context, key string, cache bool, fn func(context.Context, *budget) (gitlab.ChangedFiles, error), cut func() gitlab.ChangedFiles) (gitlab.ChangedFiles, error) {
	ch := s.group.DoChan(key, func() (any, error) {
		// Shared by every caller of key: not bound to the first caller's
		// cancellation (its client going away must not fail the others),
		// only to the Source's own time cap; each caller still stops
		// waiting at its own deadline (below).
		b := &budget{limits: s.limits}
		bctx, cancel := context.WithTimeoutCause(withBudget(context.WithoutCancel(ctx), b), s.limits.duration, errTimeCap)
		defer cancel()
		cf, err := fn(bctx, b)
		if err != nil && b.capped(bctx, err) {
			s.stats.Truncations.Add(1)
			s.logger.WarnContext(ctx, "changed files cut by a limit", "lookup", key, "reason", b.reason(bctx, err),
				"pages", b.pages, "bytes", b.read.Load())
			// Source "" (nothing read): each caller falls back on its
			// own payload below, never on the first caller's.
			cf.Truncated = true
			return cf, nil
		}
		if err != nil {
			return nil, err
		}
		if cache {
			s.cache.Add(key, cf)
		}
		return cf, nil
	})
	var r singleflight.Result
	select {
	case r = <-ch:
	case <-ctx.Done():
		return gitlab.ChangedFiles{}, fmt.Errorf("listing changed files: %w", context.Cause(ctx))
	}
	if r.Err != nil {
		return gitlab.ChangedFiles{}, r.Err
	}
	cf := r.Val.(gitlab.ChangedFiles)
	if cf.Source == "" {
		cf = cut()
		cf.Truncated = true
	}
	return cf, nil
}

// compare asks GitLab within the budget b. When a cap stops it, it returns
// what it read so far with the error of the cap (budget.capped).
func (s *Source) compare(ctx context.Context, b *budget, pid int64, from, to string, straight bool) (gitlab.ChangedFiles, error) {
	var cmp compareResult
	opt := &gl.CompareOptions{From: &from, To: &to, Straight: &straight}
	if _, err := s.get(ctx, fmt.Sprintf("projects/%d/repository/compare", pid), opt, &cmp); err != nil {
		return gitlab.ChangedFiles{}, describe(fmt.Sprintf("comparing %s...%s in project %d", short(from), short(to), pid), err)
	}
	if !cmp.CompareTimeout && len(cmp.Diffs) < s.maxDiffFiles {
		return fromDiffs([][]diffPaths{cmp.Diffs}, false), nil
	}
	// Cut by GitLab: combine the commits' own diffs, oldest first.
	s.stats.Fallbacks.Add(1)
	s.logger.InfoContext(ctx, "compare cut by GitLab, reading commit diffs", "project", pid, "commits", len(cmp.Commits), "timeout", cmp.CompareTimeout)
	commits := cmp.Commits
	cut := false
	if len(commits) > b.commits {
		commits, cut = commits[:b.commits], true
	}
	all := make([][]diffPaths, 0, len(commits))
	for _, c := range commits {
		var diffs []diffPaths
		for page := 1; ; page++ {
			if page > maxCommitPages {
				cut = true
				break
			}
			if b.pages >= b.limits.pages {
				return fromDiffs(append(all, diffs), true), errPageCap
			}
			b.pages++
			var d []diffPaths
			opt := &gl.GetCommitDiffOptions{ListOptions: gl.ListOptions{PerPage: 100, Page: int64(page)}}
			next, err := s.get(ctx, fmt.Sprintf("projects/%d/repository/commits/%s/diff", pid, gl.PathEscape(c.ID)), opt, &d)
			if err != nil {
				return fromDiffs(append(all, diffs), true), describe(fmt.Sprintf("reading the diff of commit %s in project %d", short(c.ID), pid), err)
			}
			diffs = append(diffs, d...)
			if next == 0 {
				break
			}
		}
		all = append(all, diffs)
	}
	return fromDiffs(all, cut), nil
}

// get does one API request and decodes the answer into v; it returns
// GitLab's next page (0 when none).
func (s *Source) get(ctx context.Context, path string, opt, v any) (int64, error) {
	s.stats.Requests.Add(1)
	req, err := s.client.NewRequest(http.MethodGet, path, opt, []gl.RequestOptionFunc{gl.WithContext(ctx)})
	if err != nil {
		s.stats.Errors.Add(1)
		return 0, err
	}
	resp, err := s.client.Do(req, v)
	if err != nil {
		s.stats.Errors.Add(1)
		return 0, &requestError{resp: resp, err: err}
	}
	return resp.NextPage, nil
}

// compareResult is GitLab's compare answer, paths only.
type compareResult struct {
	Commits []struct {
		ID string `json:"id"`
	} `json:"commits"`
	Diffs          []diffPaths `json:"diffs"`
	CompareTimeout bool        `json:"compare_timeout"`
}

// diffPaths is one entry of a diff list without its text: the text is
// skipped by the decoder, never kept.
type diffPaths struct {
	OldPath     string `json:"old_path"`
	NewPath     string `json:"new_path"`
	NewFile     bool   `json:"new_file"`
	RenamedFile bool   `json:"renamed_file"`
	DeletedFile bool   `json:"deleted_file"`
}

// maxCommitBytes bounds GitLab's answer about one commit.
const maxCommitBytes = 1 << 20

// CommitExists reports whether sha is a commit of the project at
// projectPath (path_with_namespace), for the interceptor's verifyCommit: a
// forged payload naming a commit of another project, or none, is refused.
// It asks by path, not by the payload's project ID, so the answer is about
// the repository the clone URL names. A commit found is remembered (it
// cannot stop existing in a way that matters here); a 404 is false, any
// other failure an error.
func (s *Source) CommitExists(ctx context.Context, projectPath, sha string) (bool, error) {
	key := projectPath + "@" + sha
	if _, ok := s.commits.Get(key); ok {
		s.stats.CacheHits.Add(1)
		return true, nil
	}
	v, err, _ := s.group.Do("commit|"+key, func() (any, error) {
		b := &budget{limits: limits{bytes: maxCommitBytes}}
		var commit struct {
			ID string `json:"id"`
		}
		_, err := s.get(withBudget(ctx, b), fmt.Sprintf("projects/%s/repository/commits/%s", gl.PathEscape(projectPath), gl.PathEscape(sha)), nil, &commit)
		var re *requestError
		if errors.As(err, &re) && re.resp != nil && re.resp.StatusCode == http.StatusNotFound {
			return false, nil
		}
		if err != nil {
			return false, describe(fmt.Sprintf("looking up commit %s in %s", short(sha), projectPath), err)
		}
		// GitLab resolves refs and short SHAs too: only the full SHA counts.
		if !strings.EqualFold(commit.ID, sha) {
			return false, nil
		}
		s.commits.Add(key, true)
		return true, nil
	})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}

// fromDiffs turns diffs (one list per commit, oldest first) into changed
// files with the payload's net semantics.
func fromDiffs(commits [][]diffPaths, truncated bool) gitlab.ChangedFiles {
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

// requestError is a failed request with GitLab's answer, if any.
type requestError struct {
	resp *gl.Response
	err  error
}

func (e *requestError) Error() string { return e.err.Error() }
func (e *requestError) Unwrap() error { return e.err }

// describe says why a request failed, with GitLab's status when it answered.
func describe(what string, err error) error {
	var re *requestError
	if errors.As(err, &re) && re.resp != nil && re.resp.Response != nil {
		return fmt.Errorf("%s: GitLab answered %s: %w", what, re.resp.Status, re.err)
	}
	return fmt.Errorf("%s: GitLab unreachable: %w", what, err)
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
