package server

import (
	"context"
	"log/slog"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	"google.golang.org/grpc/codes"

	"github.com/ciel-ci/ciel/interceptor/gitlab"
	"github.com/ciel-ci/ciel/interceptor/policy"
)

// Merge request events: where their changed files come from, and the
// refusal of merge requests from forks.

// refuseFork answers FailedPrecondition for a merge request from a fork,
// unless the allowForks param or the named policy's allowForks allows it.
func (s *Server) refuseFork(p Params, ev *gitlab.Event) *triggersv1.InterceptorResponse {
	allow := p.AllowForks
	if !allow && p.Policy != "" {
		if pol, ok := s.cfg.Policies.Set().Get(p.Policy); ok {
			allow = pol.AllowForks
		}
	}
	if reason := policy.ForkRefusal(ev, allow); reason != "" {
		return fail(codes.FailedPrecondition, reason)
	}
	return nil
}

// withMergeRequests adds to src the merge request files source the params
// ask for: none with changedFiles: off, the GitLab API when configured
// (failing open to unknown files with failOpen), else unknown files.
func (s *Server) withMergeRequests(src gitlab.ChangedFilesSource, p Params, log *slog.Logger) gitlab.ChangedFilesSource {
	var mr gitlab.MergeRequestFilesSource
	switch api, ok := s.cfg.API.(gitlab.MergeRequestFilesSource); {
	case p.ChangedFiles == ChangedFilesOff:
		mr = gitlab.FixedSource{Files: gitlab.NoChangedFiles()}
	case !ok:
		return src // the engine treats the MR's files as unknown
	case p.FailOpen:
		mr = failOpenMR{api: api, log: log}
	default:
		mr = api
	}
	return pushAndMR{ChangedFilesSource: src, mr: mr}
}

// pushAndMR is a push source and a merge request source in one.
type pushAndMR struct {
	gitlab.ChangedFilesSource
	mr gitlab.MergeRequestFilesSource
}

var _ gitlab.MergeRequestFilesSource = pushAndMR{}

func (s pushAndMR) MergeRequestFiles(ctx context.Context, e *gitlab.MergeRequestEvent) (gitlab.ChangedFiles, error) {
	return s.mr.MergeRequestFiles(ctx, e)
}

func (s pushAndMR) MergeRequestUpdateFiles(ctx context.Context, e *gitlab.MergeRequestEvent) (gitlab.ChangedFiles, error) {
	return s.mr.MergeRequestUpdateFiles(ctx, e)
}

// failOpenMR decides on unknown files (truncated, source none) when the
// GitLab API fails.
type failOpenMR struct {
	api gitlab.MergeRequestFilesSource
	log *slog.Logger
}

func (f failOpenMR) MergeRequestFiles(ctx context.Context, e *gitlab.MergeRequestEvent) (gitlab.ChangedFiles, error) {
	cf, err := f.api.MergeRequestFiles(ctx, e)
	return f.or("merge request files", cf, err)
}

func (f failOpenMR) MergeRequestUpdateFiles(ctx context.Context, e *gitlab.MergeRequestEvent) (gitlab.ChangedFiles, error) {
	cf, err := f.api.MergeRequestUpdateFiles(ctx, e)
	return f.or("merge request update files", cf, err)
}

// or is cf, or unknown files (logged) when the lookup of what failed.
func (f failOpenMR) or(what string, cf gitlab.ChangedFiles, err error) (gitlab.ChangedFiles, error) {
	if err != nil {
		f.log.Warn("GitLab API failed; failing open on unknown "+what, "error", err)
		return gitlab.UnknownChangedFiles(), nil
	}
	return cf, nil
}
