package gitlab

import "context"

// MergeRequestFilesSource is how the engine obtains the changed files of a
// merge request event. interceptor/gitlabapi reads them from the GitLab
// API; a FixedSource gives them by hand. Without one, a merge request's
// changed files are unknown (UnknownChangedFiles): the payload lists none.
type MergeRequestFilesSource interface {
	// MergeRequestFiles returns the MR's changes against its target
	// branch, as GitLab's "Changes" tab shows them at the MR's head.
	MergeRequestFiles(ctx context.Context, e *MergeRequestEvent) (ChangedFiles, error)
	// MergeRequestUpdateFiles returns the changes of this update only:
	// oldrev..last_commit.id. Called only when the event has an oldrev.
	MergeRequestUpdateFiles(ctx context.Context, e *MergeRequestEvent) (ChangedFiles, error)
}

// UnknownChangedFiles is the changed files of an event whose files were not
// obtained: empty lists, Truncated (they are known to be incomplete) and
// Source SourceNone.
func UnknownChangedFiles() ChangedFiles {
	return ChangedFiles{All: []string{}, Added: []string{}, Modified: []string{}, Removed: []string{}, Truncated: true, Source: SourceNone}
}

// NoChangedFiles is the changed files of an event that changed none, or
// whose changed files were turned off: empty lists, complete, SourceNone.
func NoChangedFiles() ChangedFiles {
	return ChangedFiles{All: []string{}, Added: []string{}, Modified: []string{}, Removed: []string{}, Source: SourceNone}
}

// FixedSource gives the same changed files for every push and merge
// request, and for a merge request's update (cel-eval --files, a policy
// test case's changedFiles, the changedFiles: off param).
type FixedSource struct {
	Files ChangedFiles
}

var (
	_ ChangedFilesSource      = FixedSource{}
	_ MergeRequestFilesSource = FixedSource{}
)

// ChangedFiles returns s.Files.
func (s FixedSource) ChangedFiles(ctx context.Context, _ *PushEvent) (ChangedFiles, error) {
	return s.Files, ctx.Err()
}

// MergeRequestFiles returns s.Files.
func (s FixedSource) MergeRequestFiles(ctx context.Context, _ *MergeRequestEvent) (ChangedFiles, error) {
	return s.Files, ctx.Err()
}

// MergeRequestUpdateFiles returns s.Files.
func (s FixedSource) MergeRequestUpdateFiles(ctx context.Context, _ *MergeRequestEvent) (ChangedFiles, error) {
	return s.Files, ctx.Err()
}
