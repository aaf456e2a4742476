// Package status maps a Tekton PipelineRun to the GitLab commit status that
// reports it: the commit it belongs to (from the labels and annotations ciel's
// TriggerTemplates set), the GitLab state (pending, running, success, failed,
// canceled), a one-line description naming the failing task and its reason,
// and the link to the run.
//
// Everything here is pure: no I/O, no clocks. The reporter calls it from its
// workers with objects read from informer caches.
package status

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	"knative.dev/pkg/apis"
)

// The contract with ciel's TriggerTemplates (config/triggers): every
// PipelineRun started for a GitLab event carries these labels and
// annotations. Labels hold what the reporter selects on; annotations hold
// what may not fit a label value.
const (
	// LabelProjectID is the numeric GitLab project ID. The reporter addresses
	// the project by ID, so renames and transfers do not break reporting.
	LabelProjectID = "ciel.dev/gitlab-project-id"
	// LabelSHA is the full commit SHA (40 hex digits, or 64 for SHA-256
	// repositories).
	LabelSHA = "ciel.dev/gitlab-sha"
	// LabelPipeline names the ciel pipeline; the commit status is named
	// "<prefix><pipeline>", "ciel/<pipeline>" by default.
	LabelPipeline = "ciel.dev/pipeline"

	// AnnotationProject is the project's path_with_namespace.
	AnnotationProject = "ciel.dev/gitlab-project"
	// AnnotationRef is the pushed ref, "refs/heads/main" or "main".
	AnnotationRef = "ciel.dev/gitlab-ref"
	// AnnotationProjectURL is the project's web URL.
	AnnotationProjectURL = "ciel.dev/gitlab-url"
	// AnnotationEvent is the GitLab event kind ("push", "tag_push").
	AnnotationEvent = "ciel.dev/gitlab-event"

	// AnnotationReported is written by the reporter itself: the last state it
	// posted to GitLab for this PipelineRun. It is how a restarted reporter
	// knows what it already said without asking GitLab.
	AnnotationReported = "ciel.dev/reported-state"
)

// Selector is the label selector of the PipelineRuns (and, since Tekton
// copies a PipelineRun's labels to its TaskRuns, of the TaskRuns) the
// reporter watches.
const Selector = LabelProjectID + "," + LabelSHA + "," + LabelPipeline

// MaxLength is GitLab's limit, in characters, for a commit status's
// description, target_url and ref ("Must be 255 characters or fewer").
const MaxLength = 255

// State is a GitLab commit status state.
type State string

// The states the reporter posts.
const (
	Pending  State = "pending"
	Running  State = "running"
	Success  State = "success"
	Failed   State = "failed"
	Canceled State = "canceled"
)

// ParseState parses a state as written in AnnotationReported.
func ParseState(s string) (State, error) {
	switch st := State(s); st {
	case Pending, Running, Success, Failed, Canceled:
		return st, nil
	}
	return "", fmt.Errorf("unknown commit status state %q", s)
}

// Rank orders states for forward-only transitions: none (0) < pending (1) <
// running (2) < success, failed, canceled (3).
func (s State) Rank() int {
	switch s {
	case Pending:
		return 1
	case Running:
		return 2
	case Success, Failed, Canceled:
		return 3
	}
	return 0
}

// Terminal reports whether s is a final state.
func (s State) Terminal() bool { return s.Rank() == 3 }

// Commit identifies the commit status a PipelineRun reports to.
type Commit struct {
	ProjectID  string // numeric project ID (LabelProjectID)
	Project    string // path_with_namespace (AnnotationProject), may be empty
	ProjectURL string // project web URL (AnnotationProjectURL), may be empty
	SHA        string
	Ref        string // branch or tag name; empty lets GitLab choose
	Pipeline   string
	Event      string
}

var (
	projectIDRE = regexp.MustCompile(`^[1-9][0-9]{0,18}$`)
	shaRE       = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)
)

// ErrNotReportable is wrapped by CommitOf when a PipelineRun lacks the
// labels that tie it to a GitLab commit, or has malformed ones.
var ErrNotReportable = errors.New("pipelinerun is not reportable")

// CommitOf reads the commit a PipelineRun reports to from its labels and
// annotations, and checks them.
func CommitOf(pr *v1.PipelineRun) (Commit, error) {
	l, a := pr.GetLabels(), pr.GetAnnotations()
	c := Commit{
		ProjectID:  l[LabelProjectID],
		SHA:        strings.ToLower(l[LabelSHA]),
		Pipeline:   l[LabelPipeline],
		Project:    a[AnnotationProject],
		ProjectURL: a[AnnotationProjectURL],
		Ref:        NormalizeRef(a[AnnotationRef]),
		Event:      a[AnnotationEvent],
	}
	switch {
	case !projectIDRE.MatchString(c.ProjectID):
		return Commit{}, fmt.Errorf("%w: label %s=%q is not a project ID", ErrNotReportable, LabelProjectID, c.ProjectID)
	case !shaRE.MatchString(c.SHA):
		return Commit{}, fmt.Errorf("%w: label %s=%q is not a commit SHA", ErrNotReportable, LabelSHA, l[LabelSHA])
	case c.Pipeline == "":
		return Commit{}, fmt.Errorf("%w: label %s is empty", ErrNotReportable, LabelPipeline)
	case len([]rune(c.Ref)) > MaxLength:
		return Commit{}, fmt.Errorf("%w: annotation %s is longer than %d characters", ErrNotReportable, AnnotationRef, MaxLength)
	case strings.ContainsAny(c.Ref, "\x00\n\r"):
		return Commit{}, fmt.Errorf("%w: annotation %s contains control characters", ErrNotReportable, AnnotationRef)
	}
	return c, nil
}

// NormalizeRef turns a Git ref into what GitLab's commit status API calls a
// ref: branch and tag refs lose their "refs/heads/" or "refs/tags/" prefix,
// anything else (merge request refs) is kept as is.
func NormalizeRef(ref string) string {
	ref = strings.TrimSpace(ref)
	for _, p := range []string{"refs/heads/", "refs/tags/"} {
		if r, ok := strings.CutPrefix(ref, p); ok && r != "" {
			return r
		}
	}
	return ref
}

// StateOf maps the Succeeded condition of a PipelineRun to a GitLab state:
//
//   - no condition yet, spec.status PipelineRunPending, or still resolving
//     the Pipeline: pending (queued, nothing runs yet);
//   - Unknown otherwise (Started, Running, running finally tasks while
//     stopping or cancelling): running;
//   - True (Succeeded, Completed with skipped tasks): success;
//   - False with reason Cancelled: canceled;
//   - False with any other reason (Failed, PipelineRunTimeout, validation
//     and resolution errors): failed.
func StateOf(pr *v1.PipelineRun) State {
	c := pr.Status.GetCondition(apis.ConditionSucceeded)
	if c == nil {
		return Pending
	}
	switch c.Status {
	case corev1.ConditionTrue:
		return Success
	case corev1.ConditionFalse:
		if c.Reason == v1.PipelineRunReasonCancelled.String() {
			return Canceled
		}
		return Failed
	}
	switch c.Reason {
	case "", v1.PipelineRunReasonPending.String(), v1.PipelineRunReasonResolvingPipelineRef.String():
		return Pending
	}
	return Running
}

// Name is the commit status name of a pipeline: prefix + pipeline.
func Name(prefix, pipeline string) string { return prefix + pipeline }

// Status is one commit status to post.
type Status struct {
	Commit
	Name        string
	State       State
	Description string
	TargetURL   string
}
