package gitlab

import (
	"context"
	"hash/maphash"
	"strings"
)

// Source says where a ChangedFiles came from.
type Source string

// The sources of changed files (extensions.changed_files.source).
const (
	SourcePayload  Source = "payload"  // the commits listed in the webhook payload
	SourceAPI      Source = "api"      // the GitLab API's compare of before..after (interceptor/gitlabapi)
	SourceOverride Source = "override" // given by hand: cel-eval --files, a policy test case
	SourceNone     Source = "none"     // not computed: changed files turned off, or the ref was deleted
)

// ChangedFiles is extensions.changed_files: the paths a push changed, as the
// net change of each path over the push (docs/extensions.md). Its lists are
// read-only once computed: they may share an array (Added is All when the
// push only adds), and Map's values point into them.
type ChangedFiles struct {
	All      []string // Added, Modified and Removed together, in first-seen order
	Added    []string // did not exist before the push, exist after
	Modified []string // existed before and after
	Removed  []string // existed before, not after
	// Truncated reports that the lists are known to be incomplete: the
	// payload lists only some of the commits, or none of a force push's.
	Truncated bool
	Source    Source
}

// Map returns c as CEL and Tekton Triggers see it: the lists as []any of
// strings (never nil, so $(extensions.changed_files.added) renders [] and
// .exists() works on an empty push), count as int64, truncated as bool and
// source as string.
func (c ChangedFiles) Map() map[string]any {
	src := c.Source
	if src == "" {
		src = SourceNone
	}
	all := anyList(c.All)
	// A push that only adds (or only modifies, or only removes) paths has
	// that list equal to All, often sharing its array (pathTracker.result):
	// box it once.
	same := func(l []string) []any {
		if len(l) == len(c.All) && (len(l) == 0 || &l[0] == &c.All[0]) {
			return all
		}
		return anyList(l)
	}
	return map[string]any{
		"all":       all,
		"added":     same(c.Added),
		"modified":  same(c.Modified),
		"removed":   same(c.Removed),
		"count":     int64(len(c.All)),
		"truncated": c.Truncated,
		"source":    string(src),
	}
}

// anyList converts s for CEL. The strings are boxed in place (stringAt),
// not one allocation each and not copied: s must not be written afterwards
// (the lists of ChangedFiles and MergeRequestFacts are read-only once
// computed).
func anyList(s []string) []any {
	out := make([]any, len(s))
	for i := range s {
		out[i] = stringAt(&s[i])
	}
	return out
}

// ChangedFilesSource is how the engine obtains the changed files of a push.
// PayloadSource reads them from the payload; interceptor/gitlabapi completes
// truncated pushes from the GitLab API.
type ChangedFilesSource interface {
	ChangedFiles(ctx context.Context, e *PushEvent) (ChangedFiles, error)
}

// ChangedFilesFunc adapts a function to ChangedFilesSource.
type ChangedFilesFunc func(ctx context.Context, e *PushEvent) (ChangedFiles, error)

// ChangedFiles calls f.
func (f ChangedFilesFunc) ChangedFiles(ctx context.Context, e *PushEvent) (ChangedFiles, error) {
	return f(ctx, e)
}

// PayloadSource is the ChangedFilesSource that reads the webhook payload
// only (PayloadChangedFiles): no I/O, never an error but the context's.
type PayloadSource struct{}

var (
	_ ChangedFilesSource = PayloadSource{}
	_ ChangedFilesSource = ChangedFilesFunc(nil)
)

// ChangedFiles returns PayloadChangedFiles(e).
func (PayloadSource) ChangedFiles(ctx context.Context, e *PushEvent) (ChangedFiles, error) {
	if err := ctx.Err(); err != nil {
		return ChangedFiles{}, err
	}
	return PayloadChangedFiles(e), nil
}

// PayloadChangedFiles computes the changed files of a push from its payload.
//
// The commits are walked in payload order, oldest first, and each path ends
// in the list that describes its net change over the push: added then
// modified is added; modified then removed is removed; removed then added is
// modified; added then removed is in no list, since it existed neither before
// nor after — exactly what git diff before..after (and so GitLab's compare
// API) reports. A path in no list is not in All either.
//
// Truncated is set when the payload cannot list every change:
// total_commits_count exceeds the commits listed (GitLab sends the newest 20
// only), a branch push lists no commits although before is not zero (a force
// push that rewound the branch, whose changes are not commits), or a branch
// was created (GitLab lists the commits that are not on the default branch,
// at most 20). A deleted branch or tag has no changed files: Source is
// SourceNone. Otherwise Source is SourcePayload. For a tag push GitLab lists
// the tagged commit only, so the lists are that commit's own changes.
//
// Time and memory are linear in the number of paths listed.
func PayloadChangedFiles(e *PushEvent) ChangedFiles {
	if isZeroSHA(e.After) {
		return ChangedFiles{Source: SourceNone}
	}
	cf := ChangedFiles{Source: SourcePayload}
	cf.Truncated = e.TotalCommitsCount > int64(len(e.Commits))
	if !strings.HasPrefix(e.Ref, tagPrefix) && (isZeroSHA(e.Before) || len(e.Commits) == 0) {
		cf.Truncated = true
	}
	var t pathTracker
	t.walk(e.Commits)
	t.result(&cf)
	return cf
}

// A path's net change so far, as two bits.
const (
	existedBit uint8 = 1 << iota // before the push, as the path's first mention implies
	existsBit                    // after the commits walked so far
)

// linearLimit is the number of paths up to which the tracker searches its
// list instead of building a table: pushes usually touch a handful of files.
const linearLimit = 16

// pathTracker keeps the paths in first-seen order with their state bits,
// and finds a path by a linear search up to linearLimit paths, then by an
// open-addressing table of indices into paths: a 4-byte slot per path at
// most half full, a third of what a map[string]int of the same paths takes
// (100,000 paths: 1 MiB against 3.3 MiB), and no second copy of the keys.
// The hash is seeded per process, as Go's maps are, so a payload cannot
// choose colliding paths.
type pathTracker struct {
	paths []string
	state []uint8 // existedBit | existsBit, per path
	slots []int32 // 1 + index into paths; 0 is an empty slot
	mask  uint64
}

var pathSeed = maphash.MakeSeed()

func (t *pathTracker) walk(commits []Commit) {
	n := 0
	for i := range commits {
		n += len(commits[i].Added) + len(commits[i].Modified) + len(commits[i].Removed)
	}
	t.paths = make([]string, 0, n)
	t.state = make([]uint8, 0, n)
	if n > linearLimit {
		// A body within any sane size limit lists far fewer than 2^30
		// paths (each takes at least 3 bytes), so indices fit an int32.
		size := 1
		for size < 2*n {
			size <<= 1
		}
		t.slots = make([]int32, size)
		t.mask = uint64(size - 1)
	}
	for i := range commits {
		c := &commits[i]
		for _, p := range c.Added {
			t.mention(p, existsBit)
		}
		for _, p := range c.Modified {
			t.mention(p, existedBit|existsBit)
		}
		for _, p := range c.Removed {
			t.mention(p, existedBit)
		}
	}
}

// mention records one commit's change to path: change's existedBit is what
// it implies about the path before the commit, its existsBit what it leaves
// after.
func (t *pathTracker) mention(path string, change uint8) {
	if t.slots != nil {
		for h := maphash.String(pathSeed, path) & t.mask; ; h = (h + 1) & t.mask {
			j := t.slots[h]
			if j == 0 {
				t.slots[h] = int32(len(t.paths) + 1)
				break
			}
			if t.paths[j-1] == path {
				t.state[j-1] = t.state[j-1]&existedBit | change&existsBit
				return
			}
		}
	} else {
		for i := range t.paths {
			if t.paths[i] == path {
				t.state[i] = t.state[i]&existedBit | change&existsBit
				return
			}
		}
	}
	t.paths = append(t.paths, path)
	t.state = append(t.state, change)
}

func (t *pathTracker) result(cf *ChangedFiles) {
	var added, modified, removed int
	for _, st := range t.state {
		switch st {
		case existsBit:
			added++
		case existedBit | existsBit:
			modified++
		case existedBit:
			removed++
		}
	}
	total := added + modified + removed
	if total > 0 && total == len(t.paths) && (added == total || modified == total || removed == total) {
		// One kind of change and no path dropped: the paths in order are
		// All, and that kind's list, as they are.
		cf.All = t.paths[:total:total]
		cf.Added, cf.Modified, cf.Removed = []string{}, []string{}, []string{}
		switch {
		case added == total:
			cf.Added = cf.All
		case modified == total:
			cf.Modified = cf.All
		default:
			cf.Removed = cf.All
		}
		return
	}
	cf.All = make([]string, 0, total)
	cf.Added = make([]string, 0, added)
	cf.Modified = make([]string, 0, modified)
	cf.Removed = make([]string, 0, removed)
	for i, st := range t.state {
		p := t.paths[i]
		switch st {
		case existsBit:
			cf.Added = append(cf.Added, p)
		case existedBit | existsBit:
			cf.Modified = append(cf.Modified, p)
		case existedBit:
			cf.Removed = append(cf.Removed, p)
		default:
			continue
		}
		cf.All = append(cf.All, p)
	}
}

// OverrideChangedFiles is the changed files given by hand (cel-eval --files,
// a policy test case): paths deduplicated in order, all listed as modified,
// Source SourceOverride, not truncated.
func OverrideChangedFiles(paths []string) ChangedFiles {
	var t pathTracker
	t.walk([]Commit{{Modified: paths}})
	cf := ChangedFiles{Source: SourceOverride}
	t.result(&cf)
	return cf
}
