package status

import (
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	"knative.dev/pkg/apis"
)

// TaskRunGetter returns a TaskRun from a cache; found is false when the
// cache does not hold it (not yet seen, or already deleted).
type TaskRunGetter interface {
	TaskRun(namespace, name string) (tr *v1.TaskRun, found bool)
}

// Describe writes the one-line description of a PipelineRun in the given
// state, at most MaxLength characters:
//
//	pending   "queued: PipelineRun ns/name is pending"
//	running   "running: PipelineRun ns/name"
//	success   "succeeded in 3m12s"
//	failed    `task build failed (StepFailed): "step-build" exited with code 1`
//	canceled  "canceled: PipelineRun "name" was cancelled"
//
// For a failed run the failing TaskRun is found through
// status.childReferences: the first to fail (earliest completion), ignoring
// tasks whose failure the Pipeline tolerates (onError: continue) and
// cancelled ones when a real failure exists. complete is false when the
// run failed but the TaskRuns that explain it are not (yet) in the cache:
// the caller may wait a little and try again, or post the description
// as is, which then falls back on the PipelineRun's own condition.
func Describe(pr *v1.PipelineRun, state State, trs TaskRunGetter) (desc string, complete bool) {
	c := pr.Status.GetCondition(apis.ConditionSucceeded)
	var reason, message string
	if c != nil {
		reason, message = c.Reason, c.Message
	}
	complete = true
	switch state {
	case Pending:
		if reason != "" && message != "" {
			desc = "queued: " + message
		} else {
			desc = fmt.Sprintf("queued: PipelineRun %s/%s", pr.Namespace, pr.Name)
		}
	case Running:
		desc = fmt.Sprintf("running: PipelineRun %s/%s", pr.Namespace, pr.Name)
		if reason != "" && reason != v1.PipelineRunReasonStarted.String() && reason != v1.PipelineRunReasonRunning.String() {
			desc += " (" + reason + ")"
		}
	case Success:
		desc = "succeeded"
		if d, ok := duration(pr); ok {
			desc += " in " + d.String()
		}
		if n := len(pr.Status.SkippedTasks); n > 0 {
			desc += fmt.Sprintf(", %d %s skipped", n, plural(n, "task", "tasks"))
		}
	case Canceled:
		desc = "canceled"
		if message != "" {
			desc += ": " + message
		}
	case Failed:
		desc, complete = describeFailure(pr, reason, message, trs)
	default:
		desc = string(state)
	}
	return Truncate(desc, MaxLength), complete
}

type failure struct {
	task, reason, message string
	order                 int
	at                    time.Time
	cancelled             bool
}

func describeFailure(pr *v1.PipelineRun, reason, message string, trs TaskRunGetter) (string, bool) {
	var failures []failure
	missing := 0
	for i, ref := range pr.Status.ChildReferences {
		if ref.Kind != "" && ref.Kind != "TaskRun" {
			continue
		}
		var tr *v1.TaskRun
		found := false
		if trs != nil {
			tr, found = trs.TaskRun(pr.Namespace, ref.Name)
		}
		if !found || tr == nil {
			missing++
			continue
		}
		tc := tr.Status.GetCondition(apis.ConditionSucceeded)
		if tc == nil || tc.Status == corev1.ConditionUnknown {
			// Tekton marks a PipelineRun failed only after its TaskRuns
			// finished, so an unfinished one means the cache lags.
			missing++
			continue
		}
		if tc.Status != corev1.ConditionFalse {
			continue
		}
		if tr.Annotations[v1.PipelineTaskOnErrorAnnotation] == string(v1.PipelineTaskContinue) {
			continue
		}
		f := failure{task: ref.PipelineTaskName, reason: tc.Reason, message: tc.Message, order: i,
			cancelled: tc.Reason == v1.TaskRunReasonCancelled.String()}
		if f.task == "" {
			f.task = ref.Name
		}
		if tr.Status.CompletionTime != nil {
			f.at = tr.Status.CompletionTime.Time
		} else {
			f.at = tc.LastTransitionTime.Inner.Time
		}
		failures = append(failures, f)
	}
	// Timeouts and validation errors are about the PipelineRun itself; its
	// condition says it best, whatever the TaskRuns say.
	if reason == v1.PipelineRunReasonTimedOut.String() || len(failures) == 0 {
		desc := "failed"
		if reason != "" && reason != v1.PipelineRunReasonFailed.String() {
			desc += " (" + reason + ")"
		}
		if message != "" {
			desc += ": " + message
		}
		return desc, reason == v1.PipelineRunReasonTimedOut.String() || missing == 0
	}
	sort.SliceStable(failures, func(i, j int) bool {
		a, b := failures[i], failures[j]
		if a.cancelled != b.cancelled {
			return !a.cancelled
		}
		if !a.at.Equal(b.at) {
			return a.at.Before(b.at)
		}
		return a.order < b.order
	})
	f := failures[0]
	desc := "task " + f.task + " failed"
	if f.cancelled {
		desc = "task " + f.task + " was cancelled"
	}
	if f.reason != "" && f.reason != v1.TaskRunReasonFailed.String() && !f.cancelled {
		desc += " (" + f.reason + ")"
	}
	if f.message != "" {
		desc += ": " + f.message
	}
	if n := len(failures) - 1; n > 0 {
		// Keep the count visible even when the message is long.
		suffix := fmt.Sprintf(" (+%d more)", n)
		return Truncate(desc, MaxLength-len(suffix)) + suffix, true
	}
	return desc, true
}

func duration(pr *v1.PipelineRun) (time.Duration, bool) {
	s, e := pr.Status.StartTime, pr.Status.CompletionTime
	if s == nil || e == nil || e.Before(s) {
		return 0, false
	}
	return e.Sub(s.Time).Round(time.Second), true
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Truncate makes s a single line of at most n characters (runes): runs of
// whitespace, including newlines, become one space, control characters are
// dropped, and a cut string ends with "…".
func Truncate(s string, n int) string {
	var b strings.Builder
	space := false
	for _, r := range strings.TrimSpace(s) {
		switch {
		case unicode.IsSpace(r):
			space = true
			continue
		case unicode.IsControl(r) || r == unicode.ReplacementChar:
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	out := []rune(b.String())
	if n <= 0 {
		return ""
	}
	if len(out) <= n {
		return string(out)
	}
	return strings.TrimRight(string(out[:n-1]), " ") + "…"
}
