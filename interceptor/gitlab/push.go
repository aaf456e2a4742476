package gitlab

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// PushEvent is a push (object_kind "push", header "Push Hook") or tag push
// (object_kind "tag_push", header "Tag Push Hook") webhook, with every field
// of GitLab's "Push events" and "Tag events" documentation. A field that is
// absent or null holds its zero value: on a deleted ref GitLab sends
// checkout_sha null, on a tag push user_username and user_email may be
// missing, and user_email is "" or "[REDACTED]" for users without a public
// email.
type PushEvent struct {
	ObjectKind   string `json:"object_kind"`   // "push" or "tag_push"
	EventName    string `json:"event_name"`    // same as ObjectKind
	Before       string `json:"before"`        // the ref's previous commit; all zeros for a new ref
	After        string `json:"after"`         // the ref's new commit; all zeros for a deleted ref
	Ref          string `json:"ref"`           // refs/heads/<branch> or refs/tags/<tag>
	RefProtected bool   `json:"ref_protected"` // the ref is a protected branch or tag
	// CheckoutSHA is the commit to check out: After for a branch, the
	// tag's (dereferenced) commit for a tag; "" when the ref was deleted.
	CheckoutSHA string `json:"checkout_sha"`
	// Message is an annotated tag's message, or the push's message; often "".
	Message           string         `json:"message"`
	UserID            int64          `json:"user_id"`
	UserName          string         `json:"user_name"`
	UserUsername      string         `json:"user_username"`
	UserEmail         string         `json:"user_email"`
	UserAvatar        string         `json:"user_avatar"`
	ProjectID         int64          `json:"project_id"`
	Project           Project        `json:"project"`
	Repository        Repository     `json:"repository"` // deprecated by GitLab in favour of Project; still sent
	Commits           []Commit       `json:"commits"`    // oldest first; at most the newest 20 of the push
	TotalCommitsCount int64          `json:"total_commits_count"`
	PushOptions       map[string]any `json:"push_options,omitempty"` // git push -o values, e.g. {"ci": {"skip": true}}
}

// Project is the project a push went to.
type Project struct {
	ID                int64  `json:"id"`
	Name              string `json:"name"`
	Description       string `json:"description"`
	WebURL            string `json:"web_url"`
	AvatarURL         string `json:"avatar_url"`
	GitSSHURL         string `json:"git_ssh_url"`
	GitHTTPURL        string `json:"git_http_url"`
	Namespace         string `json:"namespace"`
	VisibilityLevel   int64  `json:"visibility_level"` // 0 private, 10 internal, 20 public
	PathWithNamespace string `json:"path_with_namespace"`
	DefaultBranch     string `json:"default_branch"`
	CIConfigPath      string `json:"ci_config_path"`
	Homepage          string `json:"homepage"`
	URL               string `json:"url"`
	SSHURL            string `json:"ssh_url"`
	HTTPURL           string `json:"http_url"`
}

// Repository is the deprecated repository block of a push event.
type Repository struct {
	Name            string `json:"name"`
	URL             string `json:"url"`
	Description     string `json:"description"`
	Homepage        string `json:"homepage"`
	GitHTTPURL      string `json:"git_http_url"`
	GitSSHURL       string `json:"git_ssh_url"`
	VisibilityLevel int64  `json:"visibility_level"`
}

// Commit is one commit of a push. Added, Modified and Removed are paths
// relative to the repository root; GitLab leaves them out when it did not
// compute changed files.
type Commit struct {
	ID        string   `json:"id"`
	Message   string   `json:"message"`
	Title     string   `json:"title"`
	Timestamp string   `json:"timestamp"` // ISO 8601, e.g. 2011-12-12T14:27:31+02:00
	URL       string   `json:"url"`
	Author    Author   `json:"author"`
	Added     []string `json:"added"`
	Modified  []string `json:"modified"`
	Removed   []string `json:"removed"`
}

// Author is a commit's author.
type Author struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// Ref prefixes.
const (
	branchPrefix = "refs/heads/"
	tagPrefix    = "refs/tags/"
)

// pushFromBody builds the typed event from the decoded body, checking every
// documented field's type.
func pushFromBody(m fields, blocks stringBlocks) (*PushEvent, error) {
	r := fieldReader{path: make([]pathSeg, 0, 6), blocks: blocks}
	e := &PushEvent{
		ObjectKind:        r.str(m, "object_kind"),
		EventName:         r.str(m, "event_name"),
		Before:            r.str(m, "before"),
		After:             r.str(m, "after"),
		Ref:               r.str(m, "ref"),
		RefProtected:      r.boolean(m, "ref_protected"),
		CheckoutSHA:       r.str(m, "checkout_sha"),
		Message:           r.str(m, "message"),
		UserID:            r.integer(m, "user_id"),
		UserName:          r.str(m, "user_name"),
		UserUsername:      r.str(m, "user_username"),
		UserEmail:         r.str(m, "user_email"),
		UserAvatar:        r.str(m, "user_avatar"),
		ProjectID:         r.integer(m, "project_id"),
		TotalCommitsCount: r.integer(m, "total_commits_count"),
		PushOptions:       r.plainObject(m, "push_options"),
	}
	e.Project = r.project(m, "project")
	e.Repository = r.repository(m, "repository")
	if list := r.array(m, "commits"); list != nil {
		e.Commits = make([]Commit, len(list))
		r.enter("commits")
		for i, item := range list {
			c, ok := asFields(item)
			if !ok {
				r.failIndex(i, "object", item)
				break
			}
			r.enterIndex(i)
			e.Commits[i] = Commit{
				ID:        r.str(c, "id"),
				Message:   r.str(c, "message"),
				Title:     r.str(c, "title"),
				Timestamp: r.str(c, "timestamp"),
				URL:       r.str(c, "url"),
				Added:     r.strings(c, "added"),
				Modified:  r.strings(c, "modified"),
				Removed:   r.strings(c, "removed"),
			}
			e.Commits[i].Author = nested(&r, c, "author", func(a fields) Author {
				return Author{Name: r.str(a, "name"), Email: r.str(a, "email")}
			})
			r.leave()
			if r.err != nil {
				break
			}
		}
		r.leave()
	}
	if r.err != nil {
		return nil, r.err
	}
	if e.TotalCommitsCount < 0 {
		return nil, fmt.Errorf("total_commits_count: want a count, got %d", e.TotalCommitsCount)
	}
	switch {
	case e.Ref == "":
		return nil, fmt.Errorf("ref: missing; a %s event names the pushed ref", e.ObjectKind)
	case e.ObjectKind == string(KindTagPush) && !strings.HasPrefix(e.Ref, tagPrefix):
		return nil, fmt.Errorf("ref %q is not a tag (%s...), but object_kind is %q", e.Ref, tagPrefix, e.ObjectKind)
	case e.ObjectKind == string(KindPush) && strings.HasPrefix(e.Ref, tagPrefix):
		return nil, fmt.Errorf("ref %q is a tag, but object_kind is %q (GitLab sends %q for tags)", e.Ref, e.ObjectKind, KindTagPush)
	}
	return e, nil
}

// fieldReader reads typed fields out of decoded JSON, remembering the first
// type error with its JSON path (commits[3].added[0]).
type fieldReader struct {
	path []pathSeg
	err  error
	// strs is where string lists are cut from, several to an allocation.
	strs []string
	// blocks are the parser's blocks of long string arrays, shared rather
	// than copied (sharedStrings).
	blocks stringBlocks
}

// stringSlice returns a slice of n strings, cut from a shared block (its
// capacity is n: appending to it never writes into a neighbour).
func (r *fieldReader) stringSlice(n int) []string {
	if n == 0 {
		return []string{} // empty, not nil, as encoding/json decodes []
	}
	if n > cap(r.strs)-len(r.strs) {
		r.strs = make([]string, 0, max(n, 16))
	}
	i := len(r.strs)
	r.strs = r.strs[:i+n]
	return r.strs[i : i+n : i+n]
}

// pathSeg is an object key, or an array index when key is "".
type pathSeg struct {
	key   string
	index int
}

func (r *fieldReader) enter(key string) { r.path = append(r.path, pathSeg{key: key}) }
func (r *fieldReader) enterIndex(i int) { r.path = append(r.path, pathSeg{index: i}) }
func (r *fieldReader) leave()           { r.path = r.path[:len(r.path)-1] }
func (r *fieldReader) failIndex(i int, want string, got any) {
	r.enterIndex(i)
	r.failHere(want, jsonType(got))
	r.leave()
}

func (r *fieldReader) fail(key, want string, got any) {
	r.enter(key)
	r.failHere(want, jsonType(got))
	r.leave()
}

func (r *fieldReader) failHere(want, got string) {
	if r.err != nil {
		return
	}
	var b strings.Builder
	for i, s := range r.path {
		switch {
		case s.key == "":
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
		case i > 0:
			b.WriteByte('.')
			fallthrough
		default:
			b.WriteString(s.key)
		}
	}
	r.err = &fieldError{Path: b.String(), Want: want, Got: got}
}

func (r *fieldReader) str(m fields, key string) string {
	switch v := m.field(key).(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		r.fail(key, "string", v)
		return ""
	}
}

func (r *fieldReader) boolean(m fields, key string) bool {
	switch v := m.field(key).(type) {
	case bool:
		return v
	case nil:
		return false
	default:
		r.fail(key, "boolean", v)
		return false
	}
}

// maxExactInt is 2^53: every integer up to it is exact in a float64.
const maxExactInt = 1 << 53

func (r *fieldReader) integer(m fields, key string) int64 {
	switch v := m.field(key).(type) {
	case float64:
		if v != math.Trunc(v) || math.Abs(v) > maxExactInt {
			r.enter(key)
			r.failHere("integer", "number "+strconv.FormatFloat(v, 'g', -1, 64))
			r.leave()
			return 0
		}
		return int64(v)
	case nil:
		return 0
	default:
		r.fail(key, "integer", v)
		return 0
	}
}

func (r *fieldReader) object(m fields, key string) fields {
	v := m.field(key)
	if v == nil {
		return nil
	}
	if f, ok := asFields(v); ok {
		return f
	}
	r.fail(key, "object", v)
	return nil
}

// plainObject is object as a map[string]any (Plain), for the typed
// events' untyped fields (push_options).
func (r *fieldReader) plainObject(m fields, key string) map[string]any {
	v := m.field(key)
	if v == nil {
		return nil
	}
	if _, ok := asFields(v); ok {
		p, _ := Plain(v).(map[string]any)
		return p
	}
	r.fail(key, "object", v)
	return nil
}

func (r *fieldReader) array(m fields, key string) []any {
	switch v := m.field(key).(type) {
	case []any:
		return v
	case nil:
		return nil
	default:
		r.fail(key, "array", v)
		return nil
	}
}

func (r *fieldReader) strings(m fields, key string) []string {
	list := r.array(m, key)
	if list == nil {
		return nil
	}
	if out, ok := sharedStrings(list, r.blocks); ok {
		return out // the parser's block for this array: no copy
	}
	out := r.stringSlice(len(list))
	for i, item := range list {
		s, ok := item.(string)
		if !ok {
			r.enter(key)
			r.failIndex(i, "string", item)
			r.leave()
			return nil
		}
		out[i] = s
	}
	return out
}

// fieldError is a push event field whose JSON type is not the documented one.
type fieldError struct {
	Path string // JSON path, e.g. commits[3].added[0]
	Want string // the documented type: string, integer, boolean, object, array
	Got  string // what the payload has: a JSON type, or "number 1.5" for a non-integer
}

func (e *fieldError) Error() string {
	return e.Path + ": want " + e.Want + ", got " + e.Got
}
