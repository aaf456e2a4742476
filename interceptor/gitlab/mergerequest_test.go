package gitlab

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// mrBody is the documented merge request event with some of its fields
// replaced: edit(m) changes the decoded fixture before it is re-encoded.
func mrBody(t *testing.T, edits ...string) []byte {
	t.Helper()
	s := string(readFixture(t, "merge_request.json"))
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(s, edits[i]) {
			t.Fatalf("fixture has no %q", edits[i])
		}
		s = strings.Replace(s, edits[i], edits[i+1], 1)
	}
	return []byte(s)
}

const (
	oldrevLine   = `"oldrev": "839dc7c73c1f22b920b5eeacacc72503a86727a5",`
	labelsChange = `"labels": {
      "previous": [],`
)

func TestMergeRequestFacts(t *testing.T) {
	tests := []struct {
		name  string
		edits []string
		want  MergeRequestFacts
	}{
		{
			name: "documented update with commits and a label added",
			want: MergeRequestFacts{Action: "update", IID: 57, Title: "Refunds API", Labels: []string{"backend"},
				LabelsAdded: []string{"backend"}, LabelsRemoved: []string{}, SourceBranch: "feature/Refunds-API", TargetBranch: "main",
				SourceProjectID: 42, TargetProjectID: 42, SHA: "87b8ab59efd0b066aec5c7419999f9abea3db40e", HasNewCommits: true},
		},
		{
			name:  "update without oldrev edits metadata only",
			edits: []string{oldrevLine, ""},
			want: MergeRequestFacts{Action: "update", IID: 57, Title: "Refunds API", Labels: []string{"backend"},
				LabelsAdded: []string{"backend"}, LabelsRemoved: []string{}, SourceBranch: "feature/Refunds-API", TargetBranch: "main",
				SourceProjectID: 42, TargetProjectID: 42, SHA: "87b8ab59efd0b066aec5c7419999f9abea3db40e"},
		},
		{
			name:  "open is not an update: no new commits even with oldrev",
			edits: []string{`"action": "update"`, `"action": "open"`, `"draft": false`, `"draft": true`},
			want: MergeRequestFacts{Action: "open", IID: 57, Title: "Refunds API", Draft: true, Labels: []string{"backend"},
				LabelsAdded: []string{"backend"}, LabelsRemoved: []string{}, SourceBranch: "feature/Refunds-API", TargetBranch: "main",
				SourceProjectID: 42, TargetProjectID: 42, SHA: "87b8ab59efd0b066aec5c7419999f9abea3db40e"},
		},
		{
			name:  "work_in_progress alone is a draft; a label removed",
			edits: []string{`"work_in_progress": false`, `"work_in_progress": true`, labelsChange, `"labels": {"previous": [{"title": "stale"}, {"title": "backend"}],`},
			want: MergeRequestFacts{Action: "update", IID: 57, Title: "Refunds API", Draft: true, Labels: []string{"backend"},
				LabelsAdded: []string{}, LabelsRemoved: []string{"stale"}, SourceBranch: "feature/Refunds-API", TargetBranch: "main",
				SourceProjectID: 42, TargetProjectID: 42, SHA: "87b8ab59efd0b066aec5c7419999f9abea3db40e", HasNewCommits: true},
		},
		{
			name:  "from a fork",
			edits: []string{`"source_project_id": 42`, `"source_project_id": 977`},
			want: MergeRequestFacts{Action: "update", IID: 57, Title: "Refunds API", Labels: []string{"backend"},
				LabelsAdded: []string{"backend"}, LabelsRemoved: []string{}, SourceBranch: "feature/Refunds-API", TargetBranch: "main",
				SourceProjectID: 977, TargetProjectID: 42, FromFork: true, SHA: "87b8ab59efd0b066aec5c7419999f9abea3db40e", HasNewCommits: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Decode(HeaderMergeRequest, mrBody(t, tt.edits...))
			if err != nil {
				t.Fatal(err)
			}
			got := ev.MergeRequest.Facts()
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("facts (-want +got):\n%s", diff)
			}
			if got.FromFork != strings.Contains(got.ForkRefusal(), "fork") {
				t.Errorf("ForkRefusal %q for from_fork %v", got.ForkRefusal(), got.FromFork)
			}
		})
	}
}

func TestMergeRequestDecodeErrors(t *testing.T) {
	tests := []struct {
		name  string
		edits []string
		want  string
	}{
		{"iid a string", []string{`"iid": 57`, `"iid": "57"`}, "decoding merge_request event: object_attributes.iid: want integer, got string"},
		{"iid fractional", []string{`"iid": 57`, `"iid": 57.5`}, "decoding merge_request event: object_attributes.iid: want integer, got number 57.5"},
		{"iid missing", []string{`"iid": 57,`, ``}, "decoding merge_request event: object_attributes.iid: want the merge request's positive number, got 0"},
		{"label title a number", []string{`"title": "backend"`, `"title": 5`}, "decoding merge_request event: object_attributes.labels[0].title: want string, got number"},
		{"changed labels not a list", []string{`"previous": [],`, `"previous": {},`}, "decoding merge_request event: changes.labels.previous: want array, got object"},
		{"draft a string", []string{`"draft": false`, `"draft": "no"`}, "decoding merge_request event: object_attributes.draft: want boolean, got string"},
		{"assignee id fractional", []string{`"assignee_ids": [
      7
    ]`, `"assignee_ids": [7, 1.5]`}, "decoding merge_request event: object_attributes.assignee_ids[1]: want integer, got number 1.5"},
		{"oldrev not a SHA", []string{`"oldrev": "839dc7c73c1f22b920b5eeacacc72503a86727a5"`, `"oldrev": "HEAD~1"`}, `decoding merge_request event: object_attributes.oldrev "HEAD~1": want a commit SHA (40 or 64 hexadecimal digits)`},
		{"head not a SHA", []string{`"id": "87b8ab59efd0b066aec5c7419999f9abea3db40e"`, `"id": "--upload-pack=x"`}, `decoding merge_request event: object_attributes.last_commit.id "--upload-pack=x": want a commit SHA (40 or 64 hexadecimal digits)`},
		{"no source branch", []string{`"source_branch": "feature/Refunds-API",`, ``}, "decoding merge_request event: object_attributes.source_branch and target_branch: a merge request names both branches"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Decode(HeaderMergeRequest, mrBody(t, tt.edits...))
			if err == nil {
				t.Fatalf("Decode = %+v, want error %q", ev.MergeRequest, tt.want)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := Decode(HeaderMergeRequest, []byte(`{"object_kind":"merge_request"}`)); err == nil ||
		!strings.Contains(err.Error(), "object_attributes: missing") {
		t.Errorf("no object_attributes: %v", err)
	}
}
