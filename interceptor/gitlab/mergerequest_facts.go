package gitlab

import "fmt"

// MergeRequestFacts is what ciel derives from a merge request event:
// extensions.merge_request, with the keys and meanings documented in
// docs/extensions.md.
type MergeRequestFacts struct {
	Action          string   `json:"action"`
	IID             int64    `json:"iid"`
	Title           string   `json:"title"`
	Draft           bool     `json:"draft"`
	Labels          []string `json:"labels"`
	LabelsAdded     []string `json:"labels_added"`
	LabelsRemoved   []string `json:"labels_removed"`
	SourceBranch    string   `json:"source_branch"`
	TargetBranch    string   `json:"target_branch"`
	SourceProjectID int64    `json:"source_project_id"`
	TargetProjectID int64    `json:"target_project_id"`
	FromFork        bool     `json:"from_fork"`
	SHA             string   `json:"sha"`
	HasNewCommits   bool     `json:"has_new_commits"`
}

// Merge request actions (object_attributes.action) ciel treats specially.
const (
	ActionOpen   = "open"
	ActionReopen = "reopen"
	ActionUpdate = "update"
)

// Facts derives extensions.merge_request from the event.
//
// draft is draft or work_in_progress (GitLab sends both, older versions
// only the latter). labels are the titles of object_attributes.labels (the
// top-level labels when absent); labels_added and labels_removed compare
// changes.labels.current with changes.labels.previous and are empty when
// this event did not change the labels. The project ids fall back to the
// source and target project blocks, then to project; from_fork is true
// when the source and target projects differ. sha is last_commit.id, the
// MR's head. has_new_commits is true for an update that brought commits
// (GitLab sets oldrev then), false for an update of the description,
// labels, assignees or draft status.
func (e *MergeRequestEvent) Facts() MergeRequestFacts {
	a := &e.ObjectAttributes
	f := MergeRequestFacts{
		Action:          a.Action,
		IID:             a.IID,
		Title:           a.Title,
		Draft:           a.Draft || a.WorkInProgress,
		SourceBranch:    a.SourceBranch,
		TargetBranch:    a.TargetBranch,
		SourceProjectID: firstID(a.SourceProjectID, a.Source.ID, e.Project.ID),
		TargetProjectID: firstID(a.TargetProjectID, a.Target.ID, e.Project.ID),
		SHA:             a.LastCommit.ID,
		HasNewCommits:   a.Action == ActionUpdate && a.OldRev != "",
	}
	f.FromFork = f.SourceProjectID != f.TargetProjectID
	labels := a.Labels
	if labels == nil {
		labels = e.Labels
	}
	f.Labels = labelTitles(labels)
	f.LabelsAdded, f.LabelsRemoved = []string{}, []string{}
	if c := e.Changes.Labels; c != nil {
		prev, cur := labelTitles(c.Previous), labelTitles(c.Current)
		f.LabelsAdded = missingFrom(cur, prev)
		f.LabelsRemoved = missingFrom(prev, cur)
	}
	return f
}

// BringsCode reports whether the event may change what the MR would build:
// it was opened or reopened, or an update pushed commits.
func (f MergeRequestFacts) BringsCode() bool {
	return f.Action == ActionOpen || f.Action == ActionReopen || f.HasNewCommits
}

// ForkRefusal explains why a merge request from a fork is not built with
// the target project's credentials; "" when the MR is not from a fork.
func (f MergeRequestFacts) ForkRefusal() string {
	if !f.FromFork {
		return ""
	}
	return fmt.Sprintf("merge request !%d comes from a fork (project %d into project %d): building it would run "+
		"the fork's code with this project's credentials; a maintainer can allow it with the interceptor param "+
		"allowForks: true or a policy's allowForks: true", f.IID, f.SourceProjectID, f.TargetProjectID)
}

func firstID(ids ...int64) int64 {
	for _, id := range ids {
		if id != 0 {
			return id
		}
	}
	return 0
}

func labelTitles(labels []Label) []string {
	out := make([]string, 0, len(labels))
	for _, l := range labels {
		out = append(out, l.Title)
	}
	return out
}

// missingFrom returns the titles of a that are not in b, in a's order,
// each once.
func missingFrom(a, b []string) []string {
	in := make(map[string]bool, len(b))
	for _, s := range b {
		in[s] = true
	}
	out := []string{}
	for _, s := range a {
		if !in[s] {
			out = append(out, s)
			in[s] = true
		}
	}
	return out
}

// Map returns f as CEL and Tekton Triggers see it: strings, bools, int64
// and lists as []any of strings, under the keys of docs/extensions.md.
func (f MergeRequestFacts) Map() map[string]any {
	return map[string]any{
		"action":            f.Action,
		"iid":               f.IID,
		"title":             f.Title,
		"draft":             f.Draft,
		"labels":            anyList(f.Labels),
		"labels_added":      anyList(f.LabelsAdded),
		"labels_removed":    anyList(f.LabelsRemoved),
		"source_branch":     f.SourceBranch,
		"target_branch":     f.TargetBranch,
		"source_project_id": f.SourceProjectID,
		"target_project_id": f.TargetProjectID,
		"from_fork":         f.FromFork,
		"sha":               f.SHA,
		"has_new_commits":   f.HasNewCommits,
	}
}
