package gitlabapi

import (
	"context"
	"errors"
	"fmt"

	gl "gitlab.com/gitlab-org/api/client-go"

	"github.com/ciel-ci/ciel/interceptor/gitlab"
)

// maxMergeRequestPages bounds the pages of an MR's diff list read (100
// files a page): beyond it the list is Truncated.
const maxMergeRequestPages = 50

var _ gitlab.MergeRequestFilesSource = (*Source)(nil)

// MergeRequestFiles returns the changes of the merge request against its
// target branch from GitLab's MR diffs API
// (GET /projects/:id/merge_requests/:iid/diffs), read page by page, 100
// files a page, at most maxMergeRequestPages pages. The request goes to
// the target project, with this Source's token: a fork is never asked.
//
// Truncated is set when the pages ran out or the list reached the
// instance's "maximum diff files" limit (WithMaxDiffFiles), where GitLab
// stops listing an MR's files. Source is gitlab.SourceAPI. Results are
// cached by (project, MR, head SHA, target branch): a label edit after an
// update costs no request even when an expression reads the files.
func (s *Source) MergeRequestFiles(ctx context.Context, e *gitlab.MergeRequestEvent) (gitlab.ChangedFiles, error) {
	f := e.Facts()
	if f.TargetProjectID == 0 {
		return gitlab.ChangedFiles{}, errors.New("listing the merge request's changes: the payload has no target project id")
	}
	key := fmt.Sprintf("mr|%d|%d|%s|%s", f.TargetProjectID, f.IID, f.SHA, f.TargetBranch)
	if cf, ok := s.cache.Get(key); ok && f.SHA != "" {
		s.stats.CacheHits.Add(1)
		return cf, nil
	}
	// Without a head SHA there is nothing to key a cache on.
	return s.lookup(ctx, key, f.SHA != "", func(ctx context.Context, b *budget) (gitlab.ChangedFiles, error) {
		return s.mergeRequestDiffs(ctx, b, f.TargetProjectID, f.IID)
	}, unknownFiles)
}

// unknownFiles is the answer when a limit stopped a lookup before it read
// anything: no files known, Truncated.
func unknownFiles() gitlab.ChangedFiles {
	return gitlab.ChangedFiles{All: []string{}, Added: []string{}, Modified: []string{}, Removed: []string{},
		Source: gitlab.SourceAPI, Truncated: true}
}

func (s *Source) mergeRequestDiffs(ctx context.Context, b *budget, pid, iid int64) (gitlab.ChangedFiles, error) {
	var diffs []diffPaths
	for page := int64(1); ; page++ {
		if page > maxMergeRequestPages {
			return fromDiffs([][]diffPaths{diffs}, true), nil
		}
		if b.pages >= b.limits.pages {
			return fromDiffs([][]diffPaths{diffs}, true), errPageCap
		}
		b.pages++
		var d []diffPaths
		opt := &gl.ListMergeRequestDiffsOptions{ListOptions: gl.ListOptions{PerPage: 100, Page: page}}
		next, err := s.get(ctx, fmt.Sprintf("projects/%d/merge_requests/%d/diffs", pid, iid), opt, &d)
		if err != nil {
			if len(diffs) > 0 {
				return fromDiffs([][]diffPaths{diffs}, true), describe(fmt.Sprintf("listing the changes of merge request !%d in project %d", iid, pid), err)
			}
			return gitlab.ChangedFiles{}, describe(fmt.Sprintf("listing the changes of merge request !%d in project %d", iid, pid), err)
		}
		diffs = append(diffs, d...)
		if next == 0 {
			return fromDiffs([][]diffPaths{diffs}, len(diffs) >= s.maxDiffFiles), nil
		}
	}
}

// MergeRequestUpdateFiles returns the changes of this update only, from
// the repository compare API: oldrev..last_commit.id straight, in the
// target project (which keeps every MR head under
// refs/merge-requests/:iid/head, forks included). Like Compare it is
// cached, retried and completed commit by commit when GitLab cuts it.
func (s *Source) MergeRequestUpdateFiles(ctx context.Context, e *gitlab.MergeRequestEvent) (gitlab.ChangedFiles, error) {
	f := e.Facts()
	from := e.ObjectAttributes.OldRev
	switch {
	case from == "":
		return gitlab.NoChangedFiles(), nil
	case f.SHA == "":
		return gitlab.ChangedFiles{}, errors.New("listing the changes of the update: the payload has no last_commit.id")
	case f.TargetProjectID == 0:
		return gitlab.ChangedFiles{}, errors.New("listing the changes of the update: the payload has no target project id")
	}
	key := fmt.Sprintf("%d|%s|%s|%v", f.TargetProjectID, from, f.SHA, true)
	if cf, ok := s.cache.Get(key); ok {
		s.stats.CacheHits.Add(1)
		return cf, nil
	}
	return s.lookup(ctx, key, true, func(ctx context.Context, b *budget) (gitlab.ChangedFiles, error) {
		return s.compare(ctx, b, f.TargetProjectID, from, f.SHA, true)
	}, unknownFiles)
}
