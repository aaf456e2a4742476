package gitlab

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
)

// fixtures lists every payload in testdata with the header GitLab sends it
// with and the kind it decodes to.
var fixtures = []struct {
	file   string
	header string
	kind   Kind
}{
	{"push.json", HeaderPush, KindPush},
	{"docs_only_push.json", HeaderPush, KindPush},
	{"new_branch.json", HeaderPush, KindPush},
	{"new_branch_empty.json", HeaderPush, KindPush},
	{"force_push.json", HeaderPush, KindPush},
	{"branch_delete.json", HeaderPush, KindPush},
	{"truncated_push.json", HeaderPush, KindPush},
	{"net_changes_push.json", HeaderPush, KindPush},
	{"ci_skip_push.json", HeaderPush, KindPush},
	{"tag_push.json", HeaderTagPush, KindTagPush},
	{"tag_push_prerelease.json", HeaderTagPush, KindTagPush},
	{"tag_push_not_semver.json", HeaderTagPush, KindTagPush},
	{"tag_delete.json", HeaderTagPush, KindTagPush},
	{"merge_request.json", HeaderMergeRequest, KindMergeRequest},
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDecodeFixtures decodes every fixture and checks the result against
// encoding/json: Body against json.Unmarshal into map[string]any (what Tekton
// Triggers' CEL interceptor builds), Push against json.Unmarshal into
// PushEvent.
func TestDecodeFixtures(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.file, func(t *testing.T) {
			body := readFixture(t, fx.file)
			ev, err := Decode(fx.header, body)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if ev.Type != fx.header || ev.Kind != fx.kind {
				t.Errorf("Type, Kind = %q, %q; want %q, %q", ev.Type, ev.Kind, fx.header, fx.kind)
			}
			var wantBody map[string]any
			if err := json.Unmarshal(body, &wantBody); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantBody, ev.Body()); diff != "" {
				t.Errorf("Body differs from encoding/json (-want +got):\n%s", diff)
			}
			if ev.ObjectKind != wantBody["object_kind"] {
				t.Errorf("ObjectKind = %q, want %q", ev.ObjectKind, wantBody["object_kind"])
			}
			if fx.kind == KindMergeRequest {
				var wantMR MergeRequestEvent
				if err := json.Unmarshal(body, &wantMR); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(&wantMR, ev.MergeRequest); diff != "" {
					t.Errorf("MergeRequest differs from encoding/json (-want +got):\n%s", diff)
				}
			}
			if fx.kind == KindOther || fx.kind == KindMergeRequest {
				if ev.Push != nil {
					t.Errorf("Push = %+v, want nil for %s", ev.Push, fx.kind)
				}
				return
			}
			var wantPush PushEvent
			if err := json.Unmarshal(body, &wantPush); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&wantPush, ev.Push); diff != "" {
				t.Errorf("Push differs from encoding/json (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeKinds(t *testing.T) {
	const (
		push    = `{"object_kind":"push","ref":"refs/heads/main"}`
		tagPush = `{"object_kind":"tag_push","ref":"refs/tags/v1.0.0"}`
		mr      = `{"object_kind":"merge_request","object_attributes":{"iid":1,"source_branch":"f","target_branch":"main","target_project_id":1}}`
	)
	tests := []struct {
		name   string
		header string
		body   string
		want   Kind
	}{
		{"push with its header", HeaderPush, push, KindPush},
		{"push without header", "", push, KindPush},
		{"push from a system hook", HeaderSystem, push, KindPush},
		{"tag push with its header", HeaderTagPush, tagPush, KindTagPush},
		{"tag push without header", "", tagPush, KindTagPush},
		{"tag push from a system hook", HeaderSystem, tagPush, KindTagPush},
		{"merge request", "Merge Request Hook", mr, KindMergeRequest},
		{"merge request without header", "", mr, KindMergeRequest},
		{"merge request from a system hook", HeaderSystem, mr, KindMergeRequest},
		{"no object_kind", "", `{"event_name":"user_add_to_group"}`, KindOther},
		{"null object_kind", "Member Hook", `{"object_kind":null}`, KindOther},
		{"unknown header", "Future Hook", `{"object_kind":"future"}`, KindOther},
		{"system hook repository update", HeaderSystem, `{"event_name":"repository_update"}`, KindOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Decode(tt.header, []byte(tt.body))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if ev.Kind != tt.want {
				t.Errorf("Kind = %q, want %q", ev.Kind, tt.want)
			}
			if got, want := ev.Push != nil, tt.want == KindPush || tt.want == KindTagPush; got != want {
				t.Errorf("Push set = %v, want %v", got, want)
			}
			if got, want := ev.MergeRequest != nil, tt.want == KindMergeRequest; got != want {
				t.Errorf("MergeRequest set = %v, want %v", got, want)
			}
		})
	}
}

func TestDecodeNullsAndAbsences(t *testing.T) {
	tests := []struct {
		name string
		body string
		want *PushEvent
	}{
		{
			name: "commits missing",
			body: `{"object_kind":"push","ref":"refs/heads/main"}`,
			want: &PushEvent{ObjectKind: "push", Ref: "refs/heads/main"},
		},
		{
			name: "commits null, checkout_sha null, project null",
			body: `{"object_kind":"push","ref":"refs/heads/main","commits":null,"checkout_sha":null,"project":null}`,
			want: &PushEvent{ObjectKind: "push", Ref: "refs/heads/main"},
		},
		{
			name: "commits empty",
			body: `{"object_kind":"push","ref":"refs/heads/main","commits":[]}`,
			want: &PushEvent{ObjectKind: "push", Ref: "refs/heads/main", Commits: []Commit{}},
		},
		{
			name: "commit without changed-file lists",
			body: `{"object_kind":"push","ref":"refs/heads/main","commits":[{"id":"abc","added":null}]}`,
			want: &PushEvent{ObjectKind: "push", Ref: "refs/heads/main", Commits: []Commit{{ID: "abc"}}},
		},
		{
			name: "large integers and negative zero",
			body: `{"object_kind":"push","ref":"refs/heads/main","user_id":9007199254740992,"project_id":-0,"total_commits_count":2e1}`,
			want: &PushEvent{ObjectKind: "push", Ref: "refs/heads/main", UserID: 1 << 53, TotalCommitsCount: 20},
		},
		{
			name: "unknown fields ignored",
			body: `{"object_kind":"push","ref":"refs/heads/main","future":{"x":[1]},"project":{"id":3,"topics":["a"]}}`,
			want: &PushEvent{ObjectKind: "push", Ref: "refs/heads/main", Project: Project{ID: 3}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Decode("", []byte(tt.body))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(tt.want, ev.Push); diff != "" {
				t.Errorf("Push (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	deep := `{"a":` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + `}`
	const pushPrefix = `{"object_kind":"push","ref":"refs/heads/main",`
	tests := []struct {
		name   string
		header string
		body   string
		opts   []DecodeOption
		want   string
	}{
		{
			name: "empty body",
			want: "decoding webhook body: invalid JSON at byte offset 0 (line 1, column 1): empty input, want a JSON value",
		},
		{
			name: "whitespace only",
			body: " \n\t",
			want: "decoding webhook body: invalid JSON at byte offset 3 (line 2, column 2): empty input, want a JSON value",
		},
		{
			name: "truncated object",
			body: `{"a":1`,
			want: "decoding webhook body: invalid JSON at byte offset 6 (line 1, column 7): unexpected end of input after object member, want ',' or '}'",
		},
		{
			name: "trailing data",
			body: `{"a":1} {"b":2}`,
			want: "decoding webhook body: invalid JSON at byte offset 8 (line 1, column 9): unexpected character '{' after the top-level value",
		},
		{
			name: "error position on a later line",
			body: "{\n  \"a\": [1,\n  2 3]}",
			want: "decoding webhook body: invalid JSON at byte offset 17 (line 3, column 5): unexpected character '3' after array element, want ',' or ']'",
		},
		{
			name: "trailing comma",
			body: `{"a":1,}`,
			want: "decoding webhook body: invalid JSON at byte offset 7 (line 1, column 8): unexpected character '}', want a string object key",
		},
		{
			name: "missing colon",
			body: `{"a" 1}`,
			want: "decoding webhook body: invalid JSON at byte offset 5 (line 1, column 6): unexpected character '1' after object key, want ':'",
		},
		{
			name: "bad literal",
			body: `{"a":nul}`,
			want: "decoding webhook body: invalid JSON at byte offset 8 (line 1, column 9): unexpected character '}' in literal null",
		},
		{
			name: "leading zero",
			body: `{"a":01}`,
			want: "decoding webhook body: invalid JSON at byte offset 6 (line 1, column 7): unexpected character '1' after object member, want ',' or '}'",
		},
		{
			name: "number out of range",
			body: `{"a":1e400}`,
			want: "decoding webhook body: invalid JSON at byte offset 5 (line 1, column 6): number 1e400 does not fit in a 64-bit float",
		},
		{
			name: "long number out of range, shortened in the message",
			body: `{"a":` + strings.Repeat("9", 400) + `}`,
			want: "decoding webhook body: invalid JSON at byte offset 5 (line 1, column 6): number 99999999999999999999...9999999999999999 does not fit in a 64-bit float",
		},
		{
			name: "bad escape",
			body: `{"a":"\q"}`,
			want: `decoding webhook body: invalid JSON at byte offset 6 (line 1, column 7): invalid escape sequence \q`,
		},
		{
			name: "short unicode escape",
			body: `{"a":"\u12"}`,
			want: `decoding webhook body: invalid JSON at byte offset 6 (line 1, column 7): invalid \u escape, want four hexadecimal digits`,
		},
		{
			name: "raw control character",
			body: "{\"a\":\"x\ty\"}",
			want: "decoding webhook body: invalid JSON at byte offset 7 (line 1, column 8): control character U+0009 in a string (it must be escaped)",
		},
		{
			name: "unterminated string",
			body: `{"a":"abc`,
			want: "decoding webhook body: invalid JSON at byte offset 9 (line 1, column 10): unexpected end of input in the string that starts at byte offset 5",
		},
		{
			name: "invalid UTF-8 in a value",
			body: "{\"a\":\"caf\xe9\"}",
			want: "decoding webhook body: invalid JSON at byte offset 9 (line 1, column 10): invalid UTF-8 (byte 0xE9) in a string",
		},
		{
			name: "invalid UTF-8 in a key after an escape",
			body: "{\"\\n\xff\":1}",
			want: "decoding webhook body: invalid JSON at byte offset 4 (line 1, column 5): invalid UTF-8 (byte 0xFF) in a string",
		},
		{
			name: "UTF-8 encoded surrogate",
			body: "{\"a\":\"\xed\xa0\x80\"}",
			want: "decoding webhook body: invalid JSON at byte offset 6 (line 1, column 7): invalid UTF-8 (byte 0xED) in a string",
		},
		{
			name: "byte order mark",
			body: "\xef\xbb\xbf{}",
			want: "decoding webhook body: invalid JSON at byte offset 0 (line 1, column 1): unexpected character U+FEFF, want a value",
		},
		{
			name: "too deep",
			body: deep,
			want: "decoding webhook body: invalid JSON at byte offset 68 (line 1, column 69): nested deeper than 64 levels (WithMaxDepth raises the limit)",
		},
		{
			name: "too deep for a lower limit",
			body: `{"a":{"b":{}}}`,
			opts: []DecodeOption{WithMaxDepth(2)},
			want: "decoding webhook body: invalid JSON at byte offset 10 (line 1, column 11): nested deeper than 2 levels (WithMaxDepth raises the limit)",
		},
		{
			name: "array body",
			body: `[{"object_kind":"push"}]`,
			want: "decoding webhook body: got an array, want a JSON object",
		},
		{
			name: "string body",
			body: `"push"`,
			want: "decoding webhook body: got a string, want a JSON object",
		},
		{
			name: "null body",
			body: `null`,
			want: "decoding webhook body: got null, want a JSON object",
		},
		{
			name: "too large",
			body: `{"object_kind":"push"}`,
			opts: []DecodeOption{WithMaxBytes(16)},
			want: "webhook body too large: 22 bytes, over the limit of 16 bytes; raise the body size limit to accept it",
		},
		{
			name: "object_kind not a string",
			body: `{"object_kind":["push"]}`,
			want: "decoding webhook body: object_kind: want string, got array",
		},
		{
			name:   "push header, tag push payload",
			header: HeaderPush,
			body:   `{"object_kind":"tag_push","ref":"refs/tags/v1.0.0"}`,
			want:   `decoding webhook body: X-Gitlab-Event "Push Hook" wants object_kind "push", got "tag_push"`,
		},
		{
			name:   "tag push header, push payload (GitLab's test button)",
			header: HeaderTagPush,
			body:   `{"object_kind":"push","ref":"refs/heads/main"}`,
			want:   `decoding webhook body: X-Gitlab-Event "Tag Push Hook" wants object_kind "tag_push", got "push"`,
		},
		{
			name:   "push header, no object_kind",
			header: HeaderPush,
			body:   `{"ref":"refs/heads/main"}`,
			want:   `decoding webhook body: X-Gitlab-Event "Push Hook" wants object_kind "push", got none`,
		},
		{
			name:   "push payload under another header",
			header: "Merge Request Hook",
			body:   `{"object_kind":"push","ref":"refs/heads/main"}`,
			want:   `decoding webhook body: X-Gitlab-Event "Merge Request Hook" wants object_kind "merge_request", got "push"`,
		},
		{
			name: "commits not an array",
			body: pushPrefix + `"commits":"abc"}`,
			want: "decoding push event: commits: want array, got string",
		},
		{
			name: "commit not an object",
			body: pushPrefix + `"commits":[{},null]}`,
			want: "decoding push event: commits[1]: want object, got null",
		},
		{
			name: "added holds a number",
			body: pushPrefix + `"commits":[{},{},{},{"added":[1]}]}`,
			want: "decoding push event: commits[3].added[0]: want string, got number",
		},
		{
			name: "removed not an array",
			body: pushPrefix + `"commits":[{"removed":{"a":1}}]}`,
			want: "decoding push event: commits[0].removed: want array, got object",
		},
		{
			name: "author name not a string",
			body: pushPrefix + `"commits":[{"author":{"name":true}}]}`,
			want: "decoding push event: commits[0].author.name: want string, got boolean",
		},
		{
			name: "project id fractional",
			body: pushPrefix + `"project":{"id":1.5}}`,
			want: "decoding push event: project.id: want integer, got number 1.5",
		},
		{
			name: "user id beyond 2^53",
			body: pushPrefix + `"user_id":1e20}`,
			want: "decoding push event: user_id: want integer, got number 1e+20",
		},
		{
			name: "ref_protected a string",
			body: pushPrefix + `"ref_protected":"true"}`,
			want: "decoding push event: ref_protected: want boolean, got string",
		},
		{
			name: "total_commits_count negative",
			body: pushPrefix + `"total_commits_count":-1}`,
			want: "decoding push event: total_commits_count: want a count, got -1",
		},
		{
			name: "push_options an array",
			body: pushPrefix + `"push_options":[]}`,
			want: "decoding push event: push_options: want object, got array",
		},
		{
			name: "ref missing",
			body: `{"object_kind":"push"}`,
			want: "decoding push event: ref: missing; a push event names the pushed ref",
		},
		{
			name: "tag push of a branch",
			body: `{"object_kind":"tag_push","ref":"refs/heads/main"}`,
			want: `decoding tag_push event: ref "refs/heads/main" is not a tag (refs/tags/...), but object_kind is "tag_push"`,
		},
		{
			name: "push of a tag",
			body: `{"object_kind":"push","ref":"refs/tags/v1"}`,
			want: `decoding push event: ref "refs/tags/v1" is a tag, but object_kind is "push" (GitLab sends "tag_push" for tags)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Decode(tt.header, []byte(tt.body), tt.opts...)
			if err == nil {
				t.Fatalf("Decode = %+v, want error %q", ev, tt.want)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if got, want := errors.Is(err, ErrTooLarge), strings.Contains(tt.want, "too large"); got != want {
				t.Errorf("errors.Is(err, ErrTooLarge) = %v, want %v", got, want)
			}
		})
	}
}

func TestDecodeOptions(t *testing.T) {
	tests := []struct {
		name string
		opts []DecodeOption
		want string
	}{
		{"zero max bytes", []DecodeOption{WithMaxBytes(0)}, "configuring the webhook decoder: max bytes must be positive, got 0"},
		{"zero max depth", []DecodeOption{WithMaxDepth(0)}, "configuring the webhook decoder: max depth must be between 1 and 10000, got 0"},
		{"huge max depth", []DecodeOption{WithMaxDepth(MaxDepthLimit + 1)}, "configuring the webhook decoder: max depth must be between 1 and 10000, got 10001"},
		{"nil option", []DecodeOption{nil}, "configuring the webhook decoder: nil option"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewDecoder(tt.opts...)
			if err == nil {
				t.Fatalf("NewDecoder succeeded, want %q", tt.want)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if _, err := Decode("", []byte(`{}`), tt.opts...); err == nil || err.Error() != tt.want {
				t.Errorf("Decode error = %v, want %q", err, tt.want)
			}
		})
	}

	t.Run("limits are inclusive", func(t *testing.T) {
		body := []byte(`{"a":{"b":[]}}`)
		if _, err := Decode("", body, WithMaxBytes(len(body)), WithMaxDepth(3)); err != nil {
			t.Errorf("Decode at the exact limits: %v", err)
		}
	})
	t.Run("limits can be raised", func(t *testing.T) {
		body := []byte(`{"a":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`)
		if _, err := Decode("", body); err == nil {
			t.Error("Decode of 201 levels with the default limit succeeded")
		}
		if _, err := Decode("", body, WithMaxDepth(201)); err != nil {
			t.Errorf("Decode with WithMaxDepth(201): %v", err)
		}
	})
}

// TestDecodeMatchesEncodingJSON pins the corners of JSON where decoders
// differ: each body must decode to exactly what encoding/json builds.
func TestDecodeMatchesEncodingJSON(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"escapes", `{"s":"a\"b\\c\/d\be\ff\ng\rh\ti"}`},
		{"unicode escapes", `{"s":"\u00e9\u4e2d\u0000\uFFFF"}`},
		{"surrogate pair", `{"s":"\ud83d\ude00"}`},
		{"lone high surrogate", `{"s":"\ud83dx"}`},
		{"lone low surrogate", `{"s":"\ude00\ud83d"}`},
		{"high surrogate then non-surrogate escape", `{"s":"\ud83d\u0041"}`},
		{"two high surrogates", `{"s":"\ud83d\ud83d\ude00"}`},
		{"escaped key", `{"k\u0065y":1}`},
		{"raw UTF-8", `{"s":"日本語 ✓ 😀"}`},
		{"duplicate keys, last wins", `{"a":1,"a":{"b":2},"a":[3]}`},
		{"duplicate nested objects are not merged", `{"a":{"x":1},"a":{"y":2}}`},
		{"numbers", `{"n":[0,-0,1,-1,1.5,-2.25e-3,1E2,1e+2,123456789012345,1234567890123456789,9007199254740993,1e308,1e-400,0.1]}`},
		{"literals", `{"t":true,"f":false,"n":null}`},
		{"empty containers", `{"o":{},"a":[],"s":"","nested":[[],{},[{}]]}`},
		{"whitespace everywhere", " \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" : { } } \n"},
		{"long string", `{"s":"` + strings.Repeat("abcdefgh", 4096) + `"}`},
		{"long escaped string", `{"s":"` + strings.Repeat(`\n\u00e9x`, 4096) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Decode("", []byte(tt.body))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			var want map[string]any
			if err := json.Unmarshal([]byte(tt.body), &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, ev.Body()); diff != "" {
				t.Errorf("Body (-encoding/json +ours):\n%s", diff)
			}
		})
	}
}

// TestDecodeDoesNotAliasInput checks that Body does not change when the
// caller reuses its buffer (without WithSharedBody).
func TestDecodeDoesNotAliasInput(t *testing.T) {
	body := []byte(`{"object_kind":"push","ref":"refs/heads/main","commits":[{"added":["a.go"]}]}`)
	ev, err := Decode(HeaderPush, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = 'x'
	}
	if got := ev.Push.Commits[0].Added[0]; got != "a.go" {
		t.Errorf("after overwriting the input, Added[0] = %q", got)
	}
	if got := ev.Body()["ref"]; got != "refs/heads/main" {
		t.Errorf("after overwriting the input, Body[ref] = %q", got)
	}
}

// TestDecodeSharedBody checks that WithSharedBody decodes every fixture to
// the same event as the copying decoder, with its unescaped strings pointing
// into the caller's bytes rather than into a copy.
func TestDecodeSharedBody(t *testing.T) {
	copying, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	shared, err := NewDecoder(WithSharedBody())
	if err != nil {
		t.Fatal(err)
	}
	for _, fx := range fixtures {
		t.Run(fx.file, func(t *testing.T) {
			body := readFixture(t, fx.file)
			want, wantSize, err := copying.DecodeSized(fx.header, body)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range []*Decoder{shared, copying.SharedBody()} {
				got, size, err := d.DecodeSized(fx.header, body)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("shared decode differs (-copying +shared):\n%s", diff)
				}
				if size != wantSize {
					t.Errorf("size %d, want %d", size, wantSize)
				}
				kind, ok := got.Body()["object_kind"].(string)
				if !ok {
					t.Fatalf("object_kind %v", got.Body()["object_kind"])
				}
				if !within(kind, body) {
					t.Errorf("object_kind %q does not point into the body", kind)
				}
			}
		})
	}
	if _, err := shared.Decode("", nil); err == nil {
		t.Error("an empty shared body decoded without an error")
	}
}

// within reports whether s's bytes lie inside b.
func within(s string, b []byte) bool {
	if len(s) == 0 || len(b) == 0 {
		return false
	}
	p, lo := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(&b[0]))
	return p >= lo && p+uintptr(len(s)) <= lo+uintptr(len(b))
}

func TestDecoderConcurrentUse(t *testing.T) {
	d, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	bodies := make([][]byte, len(fixtures))
	for i, fx := range fixtures {
		bodies[i] = readFixture(t, fx.file)
	}
	want := make([]*Event, len(fixtures))
	for i, fx := range fixtures {
		if want[i], err = d.Decode(fx.header, bodies[i]); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error)
	for g := 0; g < 4; g++ {
		go func() {
			for n := 0; n < 20; n++ {
				for i, fx := range fixtures {
					ev, err := d.Decode(fx.header, bodies[i])
					if err != nil {
						done <- err
						return
					}
					if !cmp.Equal(want[i], ev) {
						done <- errors.New(fx.file + ": concurrent decode differs")
						return
					}
				}
			}
			done <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
