package gitlab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// FuzzDecode feeds arbitrary bodies and event types to Decode. Decode must
// not panic; the JSON it accepts must be exactly what encoding/json accepts
// (minus invalid UTF-8, which we reject) and decode to the same value; and a
// decoded event must be consistent: Kind, Push, Facts and changed files.
func FuzzDecode(f *testing.F) {
	for _, fx := range fixtures {
		f.Add(fx.header, readFixture(f, fx.file))
	}
	for _, s := range []string{
		`{}`, `[]`, `null`, `"x"`, `1`, `{"a":1e400}`, `{"a":"\ud83d\ude00\ud800"}`, "{\"a\":\"\xff\"}",
		`{"object_kind":"push","ref":"refs/heads/main","commits":[{"added":["a","b"],"removed":["a"]},{"added":["a"]}]}`,
		`{"object_kind":"tag_push","ref":"refs/tags/v1.2.3","after":"0000000000000000000000000000000000000000"}`,
		`{"object_kind":"push","ref":"refs/heads/main","commits":[{},{"added":[1]}]}`,
		`{"a":[[[[[[[[[[]]]]]]]]]]}`, `{"a":1} x`, `{"a":-0.0e-0}`,
		`{"object_kind":"merge_request","object_attributes":{"iid":3,"source_branch":"f","target_branch":"main","source_project_id":7,"target_project_id":42,"action":"update","oldrev":"839dc7c73c1f22b920b5eeacacc72503a86727a5"},"changes":{"labels":{"previous":[{"title":"a"}],"current":[{"title":"b"},{"title":"b"}]}}}`,
		`{"object_kind":"merge_request","object_attributes":{"iid":3,"source_branch":"f","target_branch":"main","assignee_ids":[1,2.5]}}`,
	} {
		f.Add("", []byte(s))
		f.Add(HeaderPush, []byte(s))
	}
	f.Fuzz(func(t *testing.T, eventType string, body []byte) {
		ev, err := Decode(eventType, body)

		// The JSON layer against encoding/json.
		var want any
		stdErr := json.Unmarshal(body, &want)
		got, ourErr := parseJSON(body, MaxDepthLimit)
		switch {
		case stdErr == nil && ourErr == nil:
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("value differs from encoding/json (-std +ours):\n%s", diff)
			}
		case stdErr == nil && utf8.Valid(body):
			t.Fatalf("encoding/json accepts, we reject: %v", ourErr)
		case stdErr != nil && ourErr == nil:
			t.Fatalf("we accept, encoding/json rejects: %v", stdErr)
		}
		// The size the engine's cost proof relies on bounds every value.
		if ourErr == nil {
			if _, size, err := parseJSONSized(body, MaxDepthLimit, false); err != nil || size < walkSize(got) {
				t.Fatalf("parseJSONSized: size %d, %v; the largest value has size %d", size, err, walkSize(got))
			}
		}

		if err != nil {
			msg := err.Error()
			artifact := strings.Contains(msg, "%!") && !strings.Contains(eventType, "%!") && !bytes.Contains(body, []byte("%!"))
			if msg == "" || artifact {
				t.Fatalf("malformed error message %q", msg)
			}
			return
		}
		checkEvent(t, eventType, ev, want)
	})
}

// checkEvent checks that a decoded event is consistent with itself and with
// encoding/json's reading of the same body.
func checkEvent(t *testing.T, eventType string, ev *Event, std any) {
	t.Helper()
	if ev.Body() == nil {
		t.Fatal("nil Body without error")
	}
	if diff := cmp.Diff(std, any(ev.Body())); diff != "" {
		t.Fatalf("Body differs from encoding/json (-std +ours):\n%s", diff)
	}
	if ev.Type != eventType {
		t.Fatalf("Type = %q, want %q", ev.Type, eventType)
	}
	if ok, _ := ev.Body()["object_kind"].(string); ok != ev.ObjectKind {
		t.Fatalf("ObjectKind = %q, body has %q", ev.ObjectKind, ok)
	}
	switch ev.Kind {
	case KindPush, KindTagPush:
		if ev.Push == nil {
			t.Fatalf("Kind %s without Push", ev.Kind)
		}
		if string(ev.Kind) != ev.ObjectKind || ev.Push.ObjectKind != ev.ObjectKind {
			t.Fatalf("Kind %s, ObjectKind %q, Push.ObjectKind %q", ev.Kind, ev.ObjectKind, ev.Push.ObjectKind)
		}
		if eventType != "" && eventType != HeaderSystem && eventType != headerFor(ev.Kind) {
			t.Fatalf("Kind %s accepted under X-Gitlab-Event %q", ev.Kind, eventType)
		}
		facts := ev.Push.Facts()
		if facts.IsBranch == facts.IsTag && (facts.IsBranch || ev.Kind == KindTagPush) {
			t.Fatalf("is_branch %v, is_tag %v for ref %q", facts.IsBranch, facts.IsTag, facts.Ref)
		}
		if facts.IsDelete && facts.SHA != "" {
			t.Fatalf("delete with sha %q", facts.SHA)
		}
		if len(facts.ShortSHA) > ShortSHALength || !strings.HasPrefix(facts.SHA, facts.ShortSHA) {
			t.Fatalf("short_sha %q of sha %q", facts.ShortSHA, facts.SHA)
		}
		if s := facts.RefSlug; len(s) > refSlugMax || strings.HasPrefix(s, "-") || strings.HasSuffix(s, "-") ||
			strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			t.Fatalf("ref_slug %q", s)
		}
		if len(facts.Map()) != 27 {
			t.Fatalf("Facts.Map has %d keys", len(facts.Map()))
		}
		checkChangedFiles(t, ev.Push)
	case KindMergeRequest:
		if ev.MergeRequest == nil || ev.Push != nil {
			t.Fatalf("Kind %s with MergeRequest %v, Push %v", ev.Kind, ev.MergeRequest != nil, ev.Push != nil)
		}
		if eventType != "" && eventType != HeaderSystem && eventType != HeaderMergeRequest {
			t.Fatalf("Kind %s accepted under X-Gitlab-Event %q", ev.Kind, eventType)
		}
		checkMergeRequest(t, ev.MergeRequest)
	case KindOther:
		if ev.Push != nil || ev.MergeRequest != nil {
			t.Fatal("KindOther with Push or MergeRequest")
		}
		if ev.ObjectKind == "push" || ev.ObjectKind == "tag_push" || ev.ObjectKind == "merge_request" {
			t.Fatalf("object_kind %q decoded as %s", ev.ObjectKind, ev.Kind)
		}
	default:
		t.Fatalf("unknown Kind %q", ev.Kind)
	}
}

// checkMergeRequest checks the invariants of extensions.merge_request.
func checkMergeRequest(t *testing.T, e *MergeRequestEvent) {
	t.Helper()
	f := e.Facts()
	if len(f.Map()) != 14 {
		t.Fatalf("MergeRequestFacts.Map has %d keys", len(f.Map()))
	}
	if f.IID <= 0 || f.SourceBranch == "" || f.TargetBranch == "" {
		t.Fatalf("accepted a merge request without iid or branches: %+v", f)
	}
	if f.HasNewCommits && (f.Action != ActionUpdate || e.ObjectAttributes.OldRev == "") {
		t.Fatalf("has_new_commits on action %q, oldrev %q", f.Action, e.ObjectAttributes.OldRev)
	}
	if f.FromFork != (f.SourceProjectID != f.TargetProjectID) || (f.FromFork && f.ForkRefusal() == "") {
		t.Fatalf("from_fork %v for projects %d -> %d", f.FromFork, f.SourceProjectID, f.TargetProjectID)
	}
	for _, added := range f.LabelsAdded {
		if slices.Contains(f.LabelsRemoved, added) {
			t.Fatalf("label %q both added and removed", added)
		}
	}
}

// checkChangedFiles compares PayloadChangedFiles with the reference model
// and checks the invariants of docs/extensions.md.
func checkChangedFiles(t *testing.T, e *PushEvent) {
	t.Helper()
	got := PayloadChangedFiles(e)
	if diff := cmp.Diff(referenceChangedFiles(e), got); diff != "" {
		t.Fatalf("PayloadChangedFiles differs from the model (-model +got):\n%s", diff)
	}
	seen := map[string]int{}
	for _, p := range got.All {
		seen[p]++
	}
	n := 0
	for _, list := range [][]string{got.Added, got.Modified, got.Removed} {
		for _, p := range list {
			if seen[p] != 1 {
				t.Fatalf("%q appears %d times in all", p, seen[p])
			}
			n++
		}
	}
	if n != len(got.All) {
		t.Fatalf("all has %d paths, the three lists %d", len(got.All), n)
	}
	m := got.Map()
	if m["count"] != int64(len(got.All)) {
		t.Fatalf("count %v, len(all) %d", m["count"], len(got.All))
	}
	for _, k := range []string{"all", "added", "modified", "removed"} {
		if m[k].([]any) == nil {
			t.Fatalf("%s is nil", k)
		}
	}
}

// FuzzChangedFiles drives PayloadChangedFiles with arbitrary commit lists
// over a small set of paths (so paths repeat), in both the linear and the
// map regime, against the reference model.
//
// ops is read a byte at a time: the top two bits pick added, modified,
// removed, or "start the next commit"; the low six bits pick one of 64
// paths (and with wide set, one of 64 paths padded so many are distinct).
func FuzzChangedFiles(f *testing.F) {
	f.Add([]byte{0x00, 0x41, 0xC0, 0x80, 0x00}, uint8(0), int64(2), false)
	f.Add([]byte{0x01, 0xC0, 0x81, 0xC0, 0x01}, uint8(1), int64(3), true)
	f.Add(slices.Repeat([]byte{0x05, 0x46, 0xC0, 0x87}, 20), uint8(2), int64(25), true)
	f.Add([]byte{}, uint8(0), int64(0), false)
	f.Add([]byte{0x3F, 0x7F, 0xBF, 0xFF}, uint8(3), int64(-1), false)
	f.Fuzz(func(t *testing.T, ops []byte, refs uint8, total int64, wide bool) {
		e := &PushEvent{ObjectKind: "push", Ref: "refs/heads/main", Before: shaA, After: shaB, TotalCommitsCount: total}
		if refs&1 != 0 {
			e.Before = zero40
		}
		if refs&2 != 0 {
			e.After = zero40
		}
		if refs&4 != 0 {
			e.ObjectKind, e.Ref = "tag_push", "refs/tags/v1.0.0"
		}
		if len(ops) > 0 {
			e.Commits = []Commit{{}}
		}
		for _, b := range ops {
			path := fmt.Sprintf("p%d", b&0x3F)
			if wide {
				path = fmt.Sprintf("dir%d/p%d", len(e.Commits), b&0x3F)
			}
			c := &e.Commits[len(e.Commits)-1]
			switch b >> 6 {
			case 0:
				c.Added = append(c.Added, path)
			case 1:
				c.Modified = append(c.Modified, path)
			case 2:
				c.Removed = append(c.Removed, path)
			case 3:
				e.Commits = append(e.Commits, Commit{})
			}
		}
		checkChangedFiles(t, e)
	})
}
