package server

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	"google.golang.org/grpc/codes"

	"github.com/ciel-ci/ciel/interceptor/gitlab"
	"github.com/ciel-ci/ciel/interceptor/pathglob"
)

// CommitChecker is what verifyCommit needs of interceptor/gitlabapi.
type CommitChecker interface {
	// CommitExists reports whether sha is a commit of the project at
	// path (path_with_namespace).
	CommitExists(ctx context.Context, projectPath, sha string) (bool, error)
}

// GitHost is a GitLab a clone URL may point to: a host (with its port, if
// any) and the path GitLab is served under ("" at the root, "/gitlab" for
// a relative URL root).
type GitHost struct {
	Host, Path string
}

// ParseGitHost reads "gitlab.example.com", "gitlab.example.com:8443",
// "gitlab.example.com/gitlab" or a URL such as --gitlab-url.
func ParseGitHost(s string) (GitHost, error) {
	raw := s
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return GitHost{}, fmt.Errorf("git host %q: want a host, host:port, host/path or a URL such as https://gitlab.example.com", raw)
	}
	return GitHost{Host: strings.ToLower(u.Host), Path: strings.TrimSuffix(u.Path, "/")}, nil
}

func (h GitHost) String() string { return h.Host + h.Path }

// checkProject refuses a push that names a repository other than its
// project, or a project the trigger does not allow. The payload is the
// attacker's: the clone URL and the web URL reach the PipelineRun (what is
// cloned, where statuses go), so both must be the project's own URLs on an
// allowed GitLab.
func (s *Server) checkProject(ctx context.Context, p Params, f repoIdentity) *triggersv1.InterceptorResponse {
	hosts := s.cfg.AllowedHosts
	if len(p.AllowedHosts) > 0 {
		hosts = hosts[:0:0]
		for _, h := range p.AllowedHosts {
			gh, err := ParseGitHost(h)
			if err != nil {
				return fail(codes.InvalidArgument, "param allowedHosts: "+err.Error())
			}
			hosts = append(hosts, gh)
		}
	}
	if f.ProjectPath == "" {
		return fail(codes.InvalidArgument, "the payload has no project.path_with_namespace: cannot tell which repository it is for")
	}
	if err := cleanProjectPath(f.ProjectPath); err != nil {
		return fail(codes.InvalidArgument, fmt.Sprintf("project.path_with_namespace %q: %v", short(f.ProjectPath), err))
	}
	for _, c := range []struct{ name, url, suffix string }{
		{"project.git_http_url", f.GitHTTPURL, ".git"},
		{"project.git_ssh_url", f.GitSSHURL, ".git"},
		{"project.web_url", f.ProjectURL, ""},
	} {
		if c.url == "" {
			continue
		}
		if err := checkRepoURL(c.url, f.ProjectPath, c.suffix, hosts); err != nil {
			return fail(codes.InvalidArgument, fmt.Sprintf("%s %q: %v: refusing a delivery that would build or report on another repository", c.name, short(c.url), err))
		}
	}
	if len(p.AllowedProjects) > 0 {
		// GitLab resolves project paths without regard to case: so does
		// the allow-list, or "!team-a/secret" would let team-a/Secret by.
		lower := make([]string, len(p.AllowedProjects))
		for i, pat := range p.AllowedProjects {
			lower[i] = strings.ToLower(pat)
		}
		l, err := pathglob.CompileList(lower)
		if err != nil {
			return fail(codes.InvalidArgument, "param allowedProjects: "+err.Error())
		}
		if !l.Includes(strings.ToLower(f.ProjectPath)) {
			return fail(codes.FailedPrecondition, fmt.Sprintf("project %q is not in allowedProjects %q of this trigger", short(f.ProjectPath), p.AllowedProjects))
		}
	}
	if p.VerifyCommit && !f.Deleted {
		if !isSHA(f.SHA) {
			return fail(codes.InvalidArgument, fmt.Sprintf("verifyCommit: the payload names no commit (%q is not a 40 or 64 hex digit SHA)", short(f.SHA)))
		}
		if s.cfg.Commits == nil {
			return fail(codes.FailedPrecondition, "param verifyCommit needs the GitLab API, which this interceptor is not configured for (--gitlab-url and a token)")
		}
		ok, err := s.cfg.Commits.CommitExists(ctx, f.ProjectPath, f.SHA)
		if err != nil {
			return fail(codes.Unavailable, fmt.Sprintf("verifying commit %s in %s: %v (failing closed)", short(f.SHA), short(f.ProjectPath), err))
		}
		if !ok {
			return fail(codes.InvalidArgument, fmt.Sprintf("commit %s is not in project %s on GitLab: refusing a forged or stale delivery", short(f.SHA), short(f.ProjectPath)))
		}
	}
	return nil
}

// repoIdentity is what an event says about the repository a build would
// clone and report on: for a push its project, for a merge request the
// target project (which holds every MR head, forks included) and the head.
type repoIdentity struct {
	ProjectPath, GitHTTPURL, GitSSHURL, ProjectURL, SHA string
	// Deleted is a push deleting its ref: it names no commit to verify.
	Deleted bool
}

// cleanProjectPath refuses a project path that is not in GitLab's own
// form (namespace/.../project: segments of letters, digits, '_', '-' and
// '.', none empty, "." or ".."): a path such as team-a/./secret or
// team-a//secret names the same repository to git as team-a/secret but
// would slip past an allowedProjects exclusion.
func cleanProjectPath(p string) error {
	segs := strings.Split(p, "/")
	if len(segs) < 2 {
		return errors.New("want namespace/project")
	}
	for _, seg := range segs {
		if seg == "" || seg == "." || seg == ".." {
			return errors.New("empty, . or .. segment")
		}
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
				return fmt.Errorf("character %q is not in a GitLab path", r)
			}
		}
	}
	return nil
}

// isSHA reports whether s is a full SHA-1 or SHA-256 commit ID.
func isSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// identity returns the repository ev names, and false for events that
// name none the interceptor checks.
func identity(ev *gitlab.Event) (repoIdentity, bool) {
	switch {
	case ev == nil:
		return repoIdentity{}, false
	case ev.Push != nil:
		f := ev.Push.Facts()
		return repoIdentity{ProjectPath: f.ProjectPath, GitHTTPURL: f.GitHTTPURL, GitSSHURL: f.GitSSHURL, ProjectURL: f.ProjectURL,
			SHA: f.SHA, Deleted: f.IsDelete}, true
	case ev.MergeRequest != nil:
		pr := ev.MergeRequest.Project
		return repoIdentity{ProjectPath: pr.PathWithNamespace, GitHTTPURL: pr.GitHTTPURL, GitSSHURL: pr.GitSSHURL,
			ProjectURL: pr.WebURL, SHA: ev.MergeRequest.Facts().SHA}, true
	}
	return repoIdentity{}, false
}

var errNotProject = errors.New("not the payload's project")

// checkRepoURL checks that raw (https://host/group/project.git,
// git@host:group/project.git, ssh://git@host:22/group/project.git) names
// projectPath on one of hosts (any host when hosts is empty).
func checkRepoURL(raw, projectPath, suffix string, hosts []GitHost) error {
	host, path, err := splitRepoURL(raw)
	if err != nil {
		return err
	}
	if strings.ContainsAny(path, "?#") || strings.Contains(path, "..") || strings.Contains(path, "%") {
		return errNotProject
	}
	want := "/" + projectPath + suffix
	if len(hosts) == 0 {
		if path != want {
			return fmt.Errorf("%w: the path is not /%s%s", errNotProject, projectPath, suffix)
		}
		return nil
	}
	for _, h := range hosts {
		if hostMatches(host, h.Host) && path == h.Path+want {
			return nil
		}
	}
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h.String()
	}
	return fmt.Errorf("%w on an allowed GitLab (%s)", errNotProject, strings.Join(names, ", "))
}

// hostMatches compares hosts, ignoring the port when the allowed entry has
// none (the SSH URL's port differs from the web one).
func hostMatches(got, allowed string) bool {
	if got == allowed {
		return true
	}
	if strings.Contains(allowed, ":") {
		return false
	}
	h, _, ok := strings.Cut(got, ":")
	return ok && h == allowed
}

// splitRepoURL returns the lowercase host (with port) and the path of a
// clone URL, including scp-like SSH ones.
func splitRepoURL(raw string) (host, path string, err error) {
	if !strings.Contains(raw, "://") {
		// scp-like: [user@]host:path. git takes the host from before the
		// first ':' (after the last '@' there), so must we: in
		// evil.example:x@gitlab.example.com:g/p.git git's host is
		// evil.example.
		hp, p, ok := strings.Cut(raw, ":")
		h := hp[strings.LastIndex(hp, "@")+1:]
		if !ok || h == "" || p == "" || strings.ContainsAny(hp, "/\\") || strings.ContainsAny(p, "@:\\") {
			return "", "", errors.New("not a URL")
		}
		return strings.ToLower(h), "/" + strings.TrimPrefix(p, "/"), nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", "", errors.New("not a URL")
	}
	switch u.Scheme {
	case "https", "http", "ssh":
	default:
		return "", "", fmt.Errorf("scheme %q is not https, http or ssh", u.Scheme)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", "", errNotProject
	}
	host = strings.ToLower(u.Host)
	if u.Scheme == "ssh" && u.Port() == "22" {
		host = strings.ToLower(u.Hostname())
	}
	return host, u.EscapedPath(), nil
}

// maxLogString bounds an attacker-controlled string quoted in a message or
// a log line; maxLogReason bounds a whole message in a log line.
const (
	maxLogString = 200
	maxLogReason = 1024
)

// short cuts an attacker-controlled string for a message or a log line.
func short(s string) string { return shortN(s, maxLogString) }

// shortN cuts s to at most n bytes (on a UTF-8 boundary) and says how long
// it was.
func shortN(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("…(%d bytes)", len(s))
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
